//! `rstar quantize`: an HF model directory or a GGUF file to a GGUF file in one block format.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use rstar::backend::cpu::quant::QuantFormat;

#[derive(Args, Debug)]
pub struct QuantizeArgs {
    /// A Hugging Face model directory (config.json, safetensors, tokenizer.json) or a .gguf file.
    pub input: PathBuf,
    /// The GGUF file to write (written to OUTPUT.tmp, renamed when complete).
    pub output: PathBuf,
    /// Block format of the matrices (norms and biases stay F32).
    #[arg(long = "type", value_enum)]
    pub ty: QuantType,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum QuantType {
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    Q4_0,
    #[value(name = "q4_k")]
    Q4K,
    #[value(name = "q5_k")]
    Q5K,
    #[value(name = "q6_k")]
    Q6K,
}

impl QuantType {
    fn format(self) -> QuantFormat {
        match self {
            QuantType::Q8_0 => QuantFormat::Q8_0,
            QuantType::Q4_0 => QuantFormat::Q4_0,
            QuantType::Q4K => QuantFormat::Q4K,
            QuantType::Q5K => QuantFormat::Q5K,
            QuantType::Q6K => QuantFormat::Q6K,
        }
    }
}

pub fn run(args: QuantizeArgs) -> rstar::Result<()> {
    // One line rewritten in place on a terminal; a line per tenth of the tensors otherwise.
    let tty = std::io::stderr().is_terminal();
    let mut progress = |i: usize, n: usize, name: &str, ty: &str| {
        if tty {
            eprint!("\r\x1b[K[{}/{n}] {name} -> {ty}", i + 1);
            let _ = std::io::stderr().flush();
        } else if (i + 1) * 10 / n != i * 10 / n || i == 0 {
            eprintln!("[{}/{n}] {name} -> {ty}", i + 1);
        }
    };
    let report = rstar::model::gguf_write::quantize_model(
        &args.input,
        &args.output,
        args.ty.format(),
        &mut progress,
    )?;
    if tty {
        eprintln!();
    }
    for (name, ty) in &report.fallbacks {
        eprintln!("{name}: rows are not whole blocks of the type, written as {ty}");
    }
    let types: Vec<String> = report
        .types
        .iter()
        .map(|(t, n)| format!("{n} {t}"))
        .collect();
    println!(
        "wrote {} ({:.1} MB; tensors: {})",
        args.output.display(),
        report.bytes as f64 / 1e6,
        types.join(", ")
    );
    Ok(())
}

//! `rstar convert`: a GGUF file to a Hugging Face model directory.

use std::path::PathBuf;

use clap::Args;

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// The .gguf file to convert.
    pub input: PathBuf,
    /// Output directory (created if needed): config.json, model.safetensors, tokenizer.json,
    /// tokenizer_config.json, generation_config.json.
    pub output: PathBuf,
}

pub fn run(args: ConvertArgs) -> rstar::Result<()> {
    rstar::model::gguf_import::convert(&args.input, &args.output)?;
    println!("wrote {}", args.output.display());
    Ok(())
}

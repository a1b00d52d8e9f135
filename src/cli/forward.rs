//! `rstar forward`: logits for every input position, as JSON.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use rstar::engine::LoadedModel;

#[derive(Args, Debug)]
pub struct ForwardArgs {
    /// Model directory (config.json, *.safetensors) or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// Where the model runs: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: rstar::backend::Device,
    /// Input token ids, comma separated (e.g. 3,17,42).
    #[arg(long, value_delimiter = ',', required = true, num_args = 1..)]
    pub ids: Vec<u32>,
    #[command(flatten)]
    pub compute: super::ComputeArgs,
}

/// Prints `{"logits": [[...vocab floats...], ...]}`, one row per input position, computed in
/// `--precision` (default exact: f32 activations; on CUDA, exact splits activations into two bf16
/// halves for the GEMMs above 8 rows, fast rounds them to one).
pub fn run(args: ForwardArgs) -> rstar::Result<()> {
    args.compute.build()?.run(move || forward(args))
}

fn forward(args: ForwardArgs) -> rstar::Result<()> {
    let model =
        LoadedModel::load_on_with(&args.model, args.device, args.compute.quant_load())?.model;
    let mut cache = model.new_cache();
    let logits = model.forward(&args.ids, &mut cache, true)?;
    // Serialized as f32 (shortest round-trip form), not widened to f64.
    #[derive(serde::Serialize)]
    struct Out<'a> {
        logits: Vec<&'a [f32]>,
    }
    let out = Out {
        logits: logits.chunks(model.config.vocab_size).collect(),
    };
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let io = |e| rstar::Error::io("<stdout>", e);
    serde_json::to_writer(&mut stdout, &out).map_err(|e| io(e.into()))?;
    writeln!(stdout).map_err(io)?;
    stdout.flush().map_err(io)
}

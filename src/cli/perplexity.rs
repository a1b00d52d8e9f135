//! `rstar perplexity`: a model's perplexity on a text file, computed as llama.cpp's
//! `llama-perplexity` computes it (see `rstar::engine::perplexity`).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use rstar::engine::{perplexity, LoadedModel, PerplexityConfig};

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    /// Model directory or .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// UTF-8 text file to score.
    #[arg(long)]
    pub file: PathBuf,
    /// Tokens per chunk; the second half of each chunk is scored (llama.cpp's --ctx-size).
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Score only the first N chunks (default: every whole chunk of the text).
    #[arg(long)]
    pub chunks: Option<usize>,
    /// Where the model runs: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: rstar::backend::Device,
    /// Print one JSON object {"ppl","uncertainty","text_tokens","ctx","chunks","scored","bos",
    /// "running","seconds"} instead of llama.cpp's `Final estimate` line.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub compute: super::ComputeArgs,
}

pub fn run(args: PerplexityArgs) -> rstar::Result<()> {
    args.compute.build()?.run(move || perplexity_cmd(args))
}

/// Prints the running estimate to stderr as llama.cpp does (`[1]12.3456,[2]...`) and the final
/// estimate to stdout.
fn perplexity_cmd(args: PerplexityArgs) -> rstar::Result<()> {
    let text = std::fs::read_to_string(&args.file).map_err(|e| rstar::Error::io(&args.file, e))?;
    let lm = LoadedModel::load_on_with(&args.model, args.device, args.compute.quant_load())?;
    let cfg = PerplexityConfig {
        ctx: args.ctx,
        chunks: args.chunks,
    };
    let r = perplexity(&lm, &text, &cfg, &mut |p| {
        eprint!("[{}]{:.4},", p.chunk, p.ppl);
        if p.chunk == p.of {
            eprintln!();
        }
    })?;
    let mut out = std::io::stdout().lock();
    let line = if args.json {
        serde_json::to_string(&r).map_err(|e| rstar::Error::Internal(e.to_string()))?
    } else {
        format!(
            "Final estimate: PPL = {:.4} +/- {:.5}  ({} chunks of {} tokens, {} scored, {:.1} s)",
            r.ppl, r.uncertainty, r.chunks, r.ctx, r.scored, r.seconds
        )
    };
    writeln!(out, "{line}").map_err(|e| rstar::Error::io("<stdout>", e))
}

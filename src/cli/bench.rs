//! `rstar bench`: micro-benchmarks of library components.

use clap::{Args, Subcommand};
use rstar::bench::exec::{bench_exec, BenchExecConfig};
use rstar::Result;

/// `rstar bench KIND ...`, or `rstar bench --model DIR ...` for `rstar bench model --model DIR ...`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub kind: Option<BenchKind>,
    /// Without a KIND: the model benchmark's options.
    #[command(flatten)]
    pub model: BenchModelArgs,
}

#[derive(Subcommand, Debug)]
pub enum BenchKind {
    /// Snippets per second: the warm forked pool vs spawning python3 per snippet (floor) and vs
    /// exec in one warm interpreter without a sandbox (ceiling).
    Exec(BenchExecArgs),
    /// Model throughput (prefill, batched decode) next to the machine limits measured in the same run.
    Model(BenchModelArgs),
    /// The CUDA decoder on a random-weight model of a real shape (weights drawn on the device), next
    /// to the device's copy bandwidth and bf16 tensor-core rate measured in the same run.
    Cuda(BenchCudaArgs),
    /// Grow a search tree with the tree engine vs re-prefilling every path, a level batched
    /// together and (the reference's way) one expansion at a time.
    Tree(BenchTreeArgs),
}

#[derive(Args, Debug)]
pub struct BenchTreeArgs {
    /// Model directory.
    #[arg(long)]
    pub model: std::path::PathBuf,
    /// Where the model runs: cpu, cuda or cuda:N (on CUDA, tokens are sampled on the device).
    #[arg(long, default_value = "cpu")]
    pub device: rstar::backend::Device,
    /// Quantized GGUF weights: in-place (default) or expand (f32 at load); RSTAR_GGUF_EXPAND=1
    /// or =0 overrides it.
    #[arg(long, value_name = "in-place|expand")]
    pub quant_load: Option<rstar::engine::QuantLoad>,
    /// Tokens in the shared prompt.
    #[arg(long, default_value_t = 512)]
    pub prefix_tokens: usize,
    /// Children per expanded node.
    #[arg(long, default_value_t = 8)]
    pub width: usize,
    /// Levels below the root.
    #[arg(long, default_value_t = 3)]
    pub depth: usize,
    /// Tokens generated per node.
    #[arg(long, default_value_t = 32)]
    pub step_tokens: usize,
    /// Skip timing the naive re-prefill baselines.
    #[arg(long)]
    pub no_naive: bool,
    /// KV cache budget in MiB.
    #[arg(long, default_value_t = 4096)]
    pub kv_budget_mb: usize,
    /// Most sequences decoded together (the engine's `max_active`).
    #[arg(long, default_value_t = rstar::engine::EngineConfig::default().max_active)]
    pub max_active: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchModelArgs {
    /// Model directory (e.g. from `cargo run --release --example make_bench_model`).
    // Required by clap; an Option only so that `rstar bench KIND` parses without it.
    #[arg(long, required = true)]
    pub model: Option<std::path::PathBuf>,
    /// Prefill lengths.
    #[arg(long, value_delimiter = ',', default_value = "128,512", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub prompt_tokens: Vec<usize>,
    /// Decode steps per batch.
    #[arg(long, default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub decode_tokens: usize,
    /// Prompt length of each sequence before decoding (not timed): the context decode attends to.
    #[arg(long, default_value_t = 16, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub context_tokens: usize,
    /// Decode batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub batch: Vec<usize>,
    #[command(flatten)]
    pub compute: super::ComputeArgs,
    /// Repeats (medians are reported).
    #[arg(long, default_value_t = 3, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub repeats: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchExecArgs {
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Snippets through the warm pool.
    #[arg(long, default_value_t = 400)]
    pub n: usize,
    /// Snippets spawned one interpreter each.
    #[arg(long, default_value_t = 10)]
    pub n_spawn: usize,
    /// Concurrent workers (0: number of CPUs).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
}

#[derive(Args, Debug)]
pub struct BenchCudaArgs {
    /// Model shape: qwen2.5-math-7b, qwen2.5-1.5b or qwen2.5-0.5b.
    #[arg(long, default_value = "qwen2.5-math-7b")]
    pub shape: String,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub device: usize,
    /// Prompt length of the prefill measurement.
    #[arg(long, default_value_t = 2048)]
    pub prefill_tokens: usize,
    /// Prompt length of each sequence before decoding.
    #[arg(long, default_value_t = 128)]
    pub context_tokens: usize,
    /// Timed decode steps per batch size.
    #[arg(long, default_value_t = 32, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub decode_tokens: usize,
    /// Decode batch sizes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,32", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub batch: Vec<usize>,
    /// exact: split-bf16 GEMMs (about f32 activations); fast: one bf16 GEMM per matmul.
    #[arg(long, default_value = "fast")]
    pub precision: String,
    /// Print one JSON object (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let kind = args.kind.unwrap_or(BenchKind::Model(args.model));
    match kind {
        BenchKind::Cuda(a) => {
            let cfg = rstar::bench::cuda::CudaBenchConfig {
                shape: a.shape,
                device: a.device,
                prefill_tokens: a.prefill_tokens,
                context_tokens: a.context_tokens,
                decode_tokens: a.decode_tokens,
                batches: a.batch,
                precision: rstar::backend::cpu::Precision::parse(&a.precision).ok_or_else(
                    || {
                        rstar::Error::InvalidArgument(format!(
                            "--precision {}: expected exact or fast",
                            a.precision
                        ))
                    },
                )?,
            };
            let v = rstar::bench::cuda::bench_cuda(&cfg, |l| eprintln!("{l}"))?;
            if a.json {
                println!("{v}");
            } else {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            }
            Ok(())
        }
        BenchKind::Model(a) => a.compute.build()?.run(move || bench_model(a)),
        BenchKind::Tree(a) => {
            let lm = std::sync::Arc::new(rstar::engine::LoadedModel::load_on_with(
                &a.model,
                a.device,
                a.quant_load.unwrap_or_default(),
            )?);
            let shape = rstar::bench::tree::TreeShape {
                prefix_tokens: a.prefix_tokens,
                width: a.width,
                depth: a.depth,
                step_tokens: a.step_tokens,
                naive: !a.no_naive,
            };
            let cfg = rstar::engine::EngineConfig {
                kv_budget_bytes: a.kv_budget_mb << 20,
                max_active: a.max_active.max(1),
                ..Default::default()
            };
            let r = rstar::bench::tree::bench_tree(&lm, shape, cfg, &mut |level, nodes| {
                eprintln!("level {level}: {nodes} nodes");
            })?;
            if a.json {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            } else {
                let naive =
                    |s: Option<f64>, tokens: Option<u64>, x: Option<f64>| match (s, tokens, x) {
                        (Some(s), Some(t), Some(x)) => {
                            format!("{s:.2} s, {t} computed ({x:.1}x the tree's time)")
                        }
                        _ => "skipped".into(),
                    };
                println!(
                    "tree: {} nodes, {} unique tokens, {} computed ({:.3}x), {:.2} s\n\
                     naive batched (the ratio's denominator): {}\n\
                     naive one at a time: {}",
                    r.nodes,
                    r.unique_tokens,
                    r.tokens_computed,
                    r.tokens_computed as f64 / r.unique_tokens as f64,
                    r.seconds,
                    naive(
                        r.naive_batched_seconds,
                        r.naive_batched_tokens_computed,
                        r.speedup()
                    ),
                    naive(
                        r.naive_seconds,
                        r.naive_tokens_computed,
                        r.speedup_vs_one_at_a_time()
                    ),
                );
            }
            Ok(())
        }
        BenchKind::Exec(a) => {
            let r = bench_exec(&BenchExecConfig {
                n_pool: a.n,
                n_spawn: a.n_spawn,
                workers: a.workers,
            })?;
            if a.json {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            } else {
                println!(
                    "warm pool: {:.1} snippets/s ({} workers); spawn per snippet: {:.2} snippets/s; ratio {:.1}x\n\
                     in-process exec, no sandbox, one process (ceiling): {:.1} snippets/s; pool / in-process {:.2}",
                    r.pool_per_s, r.workers, r.spawn_per_s, r.ratio, r.in_process_per_s, r.pool_vs_in_process
                );
            }
            Ok(())
        }
    }
}

/// `rstar bench model`, run inside the `--precision`/`--threads` settings.
fn bench_model(a: BenchModelArgs) -> Result<()> {
    let dir = a
        .model
        .ok_or_else(|| rstar::Error::InvalidArgument("rstar bench: --model is required".into()))?;
    let lm = rstar::engine::LoadedModel::load_with(&dir, a.compute.quant_load())?;
    let model = &lm.model;
    let weight_bytes = model.weight_bytes() as u64;
    let cfg = rstar::bench::model::ModelBenchConfig {
        prompt_tokens: a.prompt_tokens,
        decode_tokens: a.decode_tokens,
        context_tokens: a.context_tokens,
        batches: a.batch,
        repeats: a.repeats,
    };
    let r = rstar::bench::model::bench_model(model, weight_bytes, &cfg)?;
    if a.json {
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
    } else {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    }
    Ok(())
}

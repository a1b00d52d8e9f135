//! `rstar bench`: micro-benchmarks of library components.

use clap::{Args, Subcommand};
use rstar::exec::bench::{bench_exec, BenchExecConfig};
use rstar::Result;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub kind: BenchKind,
}

#[derive(Subcommand, Debug)]
pub enum BenchKind {
    /// Snippets per second: the warm forked pool vs spawning python3 per snippet.
    Exec(BenchExecArgs),
    /// Grow a search tree with the tree engine vs re-prefilling every path (the reference's way).
    Tree(BenchTreeArgs),
}

#[derive(Args, Debug)]
pub struct BenchTreeArgs {
    /// Model directory.
    #[arg(long)]
    pub model: std::path::PathBuf,
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
    /// Skip timing the naive re-prefill baseline.
    #[arg(long)]
    pub no_naive: bool,
    /// KV cache budget in MiB.
    #[arg(long, default_value_t = 4096)]
    pub kv_budget_mb: usize,
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

pub fn run(args: BenchArgs) -> Result<()> {
    match args.kind {
        BenchKind::Tree(a) => {
            let lm = std::sync::Arc::new(rstar::engine::LoadedModel::load(&a.model)?);
            let shape = rstar::engine::bench::TreeShape {
                prefix_tokens: a.prefix_tokens,
                width: a.width,
                depth: a.depth,
                step_tokens: a.step_tokens,
                naive: !a.no_naive,
            };
            let cfg = rstar::engine::EngineConfig {
                kv_budget_bytes: a.kv_budget_mb << 20,
                ..Default::default()
            };
            let r = rstar::engine::bench::bench_tree(&lm, shape, cfg, &mut |level, nodes| {
                eprintln!("level {level}: {nodes} nodes");
            })?;
            if a.json {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            } else {
                println!(
                    "{} nodes, {} unique tokens, {} computed ({:.3}x), {:.2} s; naive {}",
                    r.nodes,
                    r.unique_tokens,
                    r.tokens_computed,
                    r.tokens_computed as f64 / r.unique_tokens as f64,
                    r.seconds,
                    r.naive_seconds
                        .map(|n| format!("{n:.2} s ({:.1}x slower)", n / r.seconds))
                        .unwrap_or_else(|| "skipped".into())
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
                    "warm pool: {:.1} snippets/s ({} workers); spawn per snippet: {:.2} snippets/s; ratio {:.1}x",
                    r.pool_per_s, r.workers, r.spawn_per_s, r.ratio
                );
            }
            Ok(())
        }
    }
}

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

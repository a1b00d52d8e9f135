//! `rstar mcts`: data synthesis over a problem file (resumable JSONL of annotated trees).

use std::path::PathBuf;

use clap::Args;
use rstar::search::solver::Purpose;

use super::progress::Display;
use super::search_args::SearchArgs;

#[derive(Args, Debug)]
pub struct MctsArgs {
    #[command(flatten)]
    pub search: SearchArgs,
    /// Problems: a JSON list, {"example": [...]} or JSONL of {question, answer}.
    #[arg(long)]
    pub data: PathBuf,
    /// Output JSONL (one tree per problem); an existing file is resumed.
    #[arg(long)]
    pub out: PathBuf,
    /// Problems searched together (their expansions share each batched decode).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
}

pub fn run(args: MctsArgs) -> rstar::Result<()> {
    args.search.compute.build()?.run(move || mcts(args))
}

fn mcts(args: MctsArgs) -> rstar::Result<()> {
    let mut solver = args.search.solver(None, Purpose::Synthesis)?;
    let mut display = Display::new(0, args.search.quiet);
    let sum = solver.synthesize(&args.data, &args.out, args.batch, &mut |p| {
        display.update(p)
    });
    display.finish();
    let sum = sum?;
    let s = &sum.stats;
    eprintln!(
        "done: {} problems ({} skipped), {} solved, {:.1} generated tokens/s",
        sum.problems,
        sum.skipped,
        sum.solved,
        sum.tokens as f64 / s.total_seconds.max(1e-9)
    );
    if !args.search.quiet {
        eprintln!(
            "time: total {:.2}s = decode {:.2}s + ppm {:.2}s + exec {:.2}s + search {:.2}s",
            s.total_seconds,
            s.policy_seconds,
            s.value_seconds,
            s.exec_seconds,
            s.bookkeeping_seconds
        );
        let engine = serde_json::to_string(&solver.engine_stats()).unwrap_or_default();
        eprintln!("engine: {engine}");
    }
    Ok(())
}

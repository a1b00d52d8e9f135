//! `rstar eval`: accuracy over a problem file (pass@1, maj@k, PPM-weighted@k, PPM-best), and
//! `rstar eval sweep`: every mode at every token budget, as a table and a plot
//! ([`rstar::search::sweep`]).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use rstar::data::Subset;
use rstar::search::solver::Purpose;
use rstar::search::Strategy;

use super::progress::Display;
use super::search_args::{SearchArgs, SearchMode, TestArgs};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub sweep: Option<EvalCommand>,
    #[command(flatten)]
    pub search: SearchArgs,
    #[command(flatten)]
    pub test: TestArgs,
    /// Problems: a JSON list, {"example": [...]} or JSONL of {question, answer}.
    #[arg(long, required = true)]
    pub data: Option<PathBuf>,
    /// Evaluate the first N problems only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Shuffle the problems with this seed first (then --limit takes a seeded random subset,
    /// the same on every machine).
    #[arg(long)]
    pub subset_seed: Option<u64>,
    /// Per-problem results (JSONL: answers, votes, trajectories), overwritten.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Problems searched together.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
}

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Every mode at every token budget: resumable per problem, a table and a plot in --out.
    Sweep(Box<SweepArgs>),
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    pub search: SearchArgs,
    #[command(flatten)]
    pub test: TestArgs,
    /// Problems: a JSON list, {"example": [...]} or JSONL of {question, answer}.
    #[arg(long)]
    pub data: PathBuf,
    /// Evaluate the first N problems only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Shuffle the problems with this seed first (then --limit takes a seeded random subset,
    /// the same on every machine).
    #[arg(long)]
    pub subset_seed: Option<u64>,
    /// Modes, comma-separated (greedy, maj, best-of-n, beam, dvts, mcts).
    #[arg(long, value_enum, value_delimiter = ',', required = true)]
    pub modes: Vec<SearchMode>,
    /// Generated-token budgets per problem and run, comma-separated (0 = none).
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub budgets: Vec<u64>,
    /// Directory of the per-cell results (resumed), table.md, table.json and accuracy.png.
    #[arg(long)]
    pub out: PathBuf,
    /// Problems searched together.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
}

pub fn run(args: EvalArgs) -> rstar::Result<()> {
    match args.sweep {
        Some(EvalCommand::Sweep(s)) => s.search.compute.build()?.run(move || sweep(*s)),
        None => args.search.compute.build()?.run(move || eval(args)),
    }
}

fn sweep(args: SweepArgs) -> rstar::Result<()> {
    let solver = args.search.solver(Some(&args.test), Purpose::TestTime);
    let mut solver = solver?;
    let modes: Vec<Strategy> = args.modes.iter().map(|&m| m.into()).collect();
    let mut display = Display::new(0, args.search.quiet);
    let rows = solver.sweep(
        &args.data,
        Subset {
            limit: args.limit,
            seed: args.subset_seed,
        },
        &modes,
        &args.budgets,
        &args.out,
        args.batch,
        &mut |p| display.update(p),
    );
    display.finish();
    let rows = rows?;
    let mut out = std::io::stdout().lock();
    write!(out, "{}", rstar::search::sweep::table(&rows))
        .map_err(|e| rstar::Error::io("<stdout>", e))?;
    Ok(())
}

fn eval(args: EvalArgs) -> rstar::Result<()> {
    let data = args
        .data
        .clone()
        .ok_or_else(|| rstar::Error::InvalidArgument("eval needs --data".into()))?;
    let mut solver = args.search.solver(Some(&args.test), Purpose::TestTime)?;
    let mut display = Display::new(0, args.search.quiet);
    let sum = solver.evaluate_file(
        &data,
        Subset {
            limit: args.limit,
            seed: args.subset_seed,
        },
        args.batch,
        args.out.as_deref(),
        &mut |p| display.update(p),
    );
    display.finish();
    let sum = sum?;
    let a = &sum.accuracy;
    let k = if sum.vote_size == 0 {
        "all".to_string()
    } else {
        sum.vote_size.to_string()
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "problems {} | pass@1 {:.4} | maj@{k} {:.4} | ppm-weighted@{k} {:.4} | ppm-best {:.4} | any {:.4}",
        a.problems,
        a.rate(a.pass1),
        a.rate(a.majority),
        a.rate(a.weighted),
        a.rate(a.ppm_best),
        a.rate(a.any),
    )
    .map_err(|e| rstar::Error::io("<stdout>", e))?;
    Ok(())
}

//! `rstar eval`: accuracy over a problem file (pass@1, maj@k, PPM-weighted@k, PPM-best).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use rstar::search::solver::Purpose;

use super::progress::Display;
use super::search_args::{SearchArgs, TestArgs};

#[derive(Args, Debug)]
pub struct EvalArgs {
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
    /// Per-problem results (JSONL: answers, votes, trajectories), overwritten.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Problems searched together.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
}

pub fn run(args: EvalArgs) -> rstar::Result<()> {
    args.search.compute.build()?.run(move || eval(args))
}

fn eval(args: EvalArgs) -> rstar::Result<()> {
    let mut solver = args.search.solver(Some(&args.test), Purpose::TestTime)?;
    let mut display = Display::new(0, args.search.quiet);
    let sum = solver.evaluate_file(
        &args.data,
        args.limit,
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

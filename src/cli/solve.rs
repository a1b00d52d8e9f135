//! `rstar solve`: one question at test time; prints the best solution and its answer, or the
//! typed [`rstar::search::solver::Solution`] as JSON.

use std::io::Write;

use clap::Args;
use rstar::search::solver::Purpose;

use super::search_args::{SearchArgs, TestArgs};

#[derive(Args, Debug)]
pub struct SolveArgs {
    #[command(flatten)]
    pub search: SearchArgs,
    #[command(flatten)]
    pub test: TestArgs,
    /// The question.
    pub question: String,
    /// Print the trajectories, votes and stats as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: SolveArgs) -> rstar::Result<()> {
    args.search.compute.build()?.run(move || solve(args))
}

fn solve(args: SolveArgs) -> rstar::Result<()> {
    let mut solver = args.search.solver(Some(&args.test), Purpose::TestTime)?;
    let solution = solver.solve(&args.question)?;
    let io_err = |e| rstar::Error::io("<stdout>", e);
    let mut out = std::io::stdout().lock();
    if args.json {
        let json = serde_json::to_string(&solution)
            .map_err(|e| rstar::Error::Internal(format!("serialising a solution: {e}")))?;
        writeln!(out, "{json}").map_err(io_err)?;
        return Ok(());
    }
    match solution.best() {
        Some(t) => {
            writeln!(out, "{}", t.solution).map_err(io_err)?;
            writeln!(out, "answer: {}", t.answer).map_err(io_err)?;
        }
        None => {
            let why = solution
                .no_answer
                .map_or("no path answered", |w| w.describe());
            writeln!(out, "no answer found: {why} ({})", solution.ends.summary())
                .map_err(io_err)?;
            if let Some(e) = &solution.last_error {
                writeln!(out, "last program error: {e}").map_err(io_err)?
            }
        }
    }
    Ok(())
}

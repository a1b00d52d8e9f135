//! `rstar gen-problems`: math word problems of graded difficulty as JSONL, optionally with
//! code-augmented solutions (SFT `query`/`response` fields).

use std::path::PathBuf;

use clap::Args;
use rstar::data::generate::{generate, write_jsonl, MAX_LEVEL};

#[derive(Args, Debug)]
pub struct GenProblemsArgs {
    /// Difficulty 1..=4: 1 arithmetic, 2 + fractions, 3 + percentages, 4 + linear equations.
    #[arg(long)]
    pub level: u32,
    #[arg(long)]
    pub count: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output JSONL: {question, answer, level, kind} (+ {query, response} with --solutions).
    #[arg(long)]
    pub out: PathBuf,
    /// Include the programmatically written code-augmented solutions.
    #[arg(long)]
    pub solutions: bool,
}

pub fn run(a: GenProblemsArgs) -> rstar::Result<()> {
    let ps = generate(a.level, a.count, a.seed)?;
    write_jsonl(&a.out, &ps, a.solutions)?;
    eprintln!(
        "{}: {} problems of level {}/{MAX_LEVEL}",
        a.out.display(),
        ps.len(),
        a.level
    );
    Ok(())
}

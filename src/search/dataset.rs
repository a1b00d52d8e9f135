//! Data synthesis over a problem file: resumable, append-only JSONL of whole trees (spec 7.3),
//! in the format of [`crate::data::trees`]. A line is written, flushed and fsynced as soon as its
//! problem is done. On start, complete lines are read back and their problems skipped; a torn
//! last line (no newline, or not JSON) is cut off, so a killed run neither loses nor duplicates.

use std::path::Path;

use crate::data::durable::{append_line, json_line};
use crate::data::problems::Problem;
use crate::data::trees::{open_output, record};
use crate::error::{Error, Result};
use crate::search::api::{Models, SearchConfig, SearchStats};
use crate::search::mcts::search;

/// What a dataset run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunSummary {
    pub problems: usize,
    pub skipped: usize,
    pub solved: usize,
    pub stats: SearchStats,
    /// Tokens the policy generated in this run.
    pub tokens: u64,
}

/// Runs the problems not yet in `out`, `batch` at a time in lock-step, appending one line per
/// problem. `progress(done, total, summary)` after each batch and between rollouts; false
/// cancels with [`Error::Cancelled`] (finished problems stay written).
pub fn run_dataset(
    problems: &[Problem],
    out: &Path,
    cfg: &SearchConfig,
    batch: usize,
    models: &mut Models<'_, '_>,
    progress: &mut dyn FnMut(usize, usize, &RunSummary) -> bool,
) -> Result<RunSummary> {
    let (mut file, done) = open_output(out)?;
    let tokens0 = models.policy.tokens_generated();
    let todo: Vec<&Problem> = problems.iter().filter(|p| !done.contains(&p.id)).collect();
    let mut sum = RunSummary {
        problems: problems.len(),
        skipped: problems.len() - todo.len(),
        ..RunSummary::default()
    };
    let mut finished = sum.skipped;
    for chunk in todo.chunks(batch.max(1)) {
        let ps: Vec<Problem> = chunk.iter().map(|p| (*p).clone()).collect();
        let mut stats = sum.stats;
        let trees = search(&ps, cfg, models, &mut stats, &mut |_, _| {
            progress(finished, problems.len(), &sum)
        })?;
        sum.stats = stats;
        for (p, t) in ps.iter().zip(&trees) {
            let r = record(p, t);
            if r["solved"] == true {
                sum.solved += 1;
            }
            append_line(&mut file, out, &json_line(&r)?)?;
            finished += 1;
        }
        sum.tokens = models.policy.tokens_generated() - tokens0;
        if !progress(finished, problems.len(), &sum) {
            return Err(Error::Cancelled);
        }
    }
    Ok(sum)
}

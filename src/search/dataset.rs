//! Data synthesis over a problem file: resumable, append-only JSONL of whole trees (spec 7.3).
//!
//! Each output line is `{index, question, answer, rstar, prediction, correct, solved}` where
//! `rstar` is [`Tree::to_rstar_json`]. A line is written, flushed and fsynced as soon as its
//! problem is done. On start, complete lines are read back and their problems skipped; a torn
//! last line (no newline, or not JSON) is cut off, so a killed run neither loses nor duplicates.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::grade;
use crate::search::mcts::{
    search, MctsConfig, Policy, Problem, SearchStats, StepRunner, ValueModel,
};
use crate::search::tree::Tree;

/// Reads `{question, answer}` records from a JSON list, a `{"example": [...]}` object or JSONL.
/// Ids are the record positions.
pub fn load_problems(path: &Path) -> Result<Vec<Problem>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let records: Vec<(usize, Value)> = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(v)) => v.into_iter().enumerate().map(|(i, r)| (i + 1, r)).collect(),
        Ok(Value::Object(mut m)) if m.get("example").is_some_and(Value::is_array) => {
            match m.remove("example") {
                Some(Value::Array(v)) => {
                    v.into_iter().enumerate().map(|(i, r)| (i + 1, r)).collect()
                }
                _ => Vec::new(),
            }
        }
        _ => {
            let mut v = Vec::new();
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let r = serde_json::from_str(line)
                    .map_err(|e| Error::format(path, format!("line {}: {e}", i + 1)))?;
                v.push((i + 1, r));
            }
            v
        }
    };
    let mut out = Vec::with_capacity(records.len());
    for (k, (line, r)) in records.into_iter().enumerate() {
        let field = |name: &str| -> Result<String> {
            match r.get(name) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Number(n)) => Ok(n.to_string()),
                _ => Err(Error::format(
                    path,
                    format!("record {line}: field `{name}` missing or not a string"),
                )),
            }
        };
        out.push(Problem {
            id: k as u64,
            question: field("question")?,
            answer: Some(field("answer")?),
        });
    }
    Ok(out)
}

/// Opens `path` for appending after dropping a torn last line; returns the file and the indices
/// already done. A complete line that is not a tree record is an error naming the line.
pub fn open_output(path: &Path) -> Result<(File, HashSet<u64>)> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    let mut done = HashSet::new();
    let mut keep = 0usize;
    let mut start = 0usize;
    let mut line_no = 0usize;
    while start < bytes.len() {
        line_no += 1;
        let Some(nl) = bytes[start..].iter().position(|&b| b == b'\n') else {
            break; // torn: no newline
        };
        let line = &bytes[start..start + nl];
        let end = start + nl + 1;
        if !line.iter().all(u8::is_ascii_whitespace) {
            let v: Value = match serde_json::from_slice(line) {
                Ok(v) => v,
                // Only the last line may be torn.
                Err(_) if end == bytes.len() => break,
                Err(e) => return Err(Error::format(path, format!("line {line_no}: {e}"))),
            };
            let idx = v.get("index").and_then(Value::as_u64).ok_or_else(|| {
                Error::format(path, format!("line {line_no}: field `index` missing"))
            })?;
            done.insert(idx);
        }
        keep = end;
        start = end;
    }
    if keep < bytes.len() {
        f.set_len(keep as u64).map_err(|e| Error::io(path, e))?;
    }
    f.seek(SeekFrom::End(0)).map_err(|e| Error::io(path, e))?;
    Ok((f, done))
}

/// The output record of one problem.
pub fn record(p: &Problem, tree: &Tree) -> Value {
    let gt = p.answer.clone().unwrap_or_default();
    let prediction = tree
        .best_answer()
        .and_then(|i| tree.nodes[i].final_answer.clone());
    let correct = prediction.as_deref().map(|a| grade::equal(a, &gt));
    let solved = tree.answers().any(|(_, n)| {
        n.final_answer
            .as_deref()
            .is_some_and(|a| grade::equal(a, &gt))
    });
    json!({
        "index": p.id,
        "question": p.question,
        "answer": gt,
        "rstar": tree.to_rstar_json(),
        "prediction": prediction,
        "correct": correct,
        "solved": solved,
    })
}

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
#[allow(clippy::too_many_arguments)]
pub fn run_dataset<'v>(
    problems: &[Problem],
    out: &Path,
    cfg: &MctsConfig,
    batch: usize,
    policy: &mut dyn Policy,
    mut value: Option<&mut (dyn ValueModel + 'v)>,
    runner: &dyn StepRunner,
    progress: &mut dyn FnMut(usize, usize, &RunSummary) -> bool,
) -> Result<RunSummary> {
    let (mut file, done) = open_output(out)?;
    let tokens0 = policy.tokens_generated();
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
        let trees = search(
            &ps,
            cfg,
            policy,
            value.as_deref_mut(),
            runner,
            &mut stats,
            &mut |_, _| progress(finished, problems.len(), &sum),
        )?;
        sum.stats = stats;
        for (p, t) in ps.iter().zip(&trees) {
            let r = record(p, t);
            if r["solved"] == true {
                sum.solved += 1;
            }
            let mut line = serde_json::to_string(&r)
                .map_err(|e| Error::Internal(format!("serialising a tree: {e}")))?;
            line.push('\n');
            file.write_all(line.as_bytes())
                .and_then(|_| file.flush())
                .and_then(|_| file.sync_data())
                .map_err(|e| Error::io(out, e))?;
            finished += 1;
        }
        sum.tokens = policy.tokens_generated() - tokens0;
        if !progress(finished, problems.len(), &sum) {
            return Err(Error::Cancelled);
        }
    }
    Ok(sum)
}

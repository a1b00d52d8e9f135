//! The trees JSONL that `rstar mcts` writes and extraction reads (spec 7.3): one line per problem,
//! `{index, question, answer, rstar, prediction, correct, solved}` where `rstar` is
//! [`Tree::to_rstar_json`] ([`record`]); resuming an output file ([`open_output`]); reading a
//! file back, ours or the reference's ([`read_trees`], [`tree_from_rstar`]).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde_json::{json, Value};

use crate::data::problems::Problem;
use crate::data::tree::{End, NodeId, Tree, TOO_MANY_CODE_ERRORS, TOO_MANY_STEPS};
use crate::error::{Error, Result};
use crate::grade;
use crate::steps;

/// One line of an MCTS output file.
#[derive(Debug, Clone)]
pub struct TreeRecord {
    pub index: u64,
    pub question: String,
    /// Ground truth.
    pub answer: String,
    pub tree: Tree,
}

fn parse_tags(tag: &str) -> Option<Vec<u32>> {
    tag.split('.').map(|s| s.parse().ok()).collect()
}

/// Rebuilds a [`Tree`] from the `rstar` map (tag -> node state) of [`Tree::to_rstar_json`], or of
/// the reference's output (which lacks `end`, `correct`, `failure`: they are inferred from
/// `final_answer` and the text). Errors name the tag and field.
pub fn tree_from_rstar(question: &str, rstar: &Value) -> std::result::Result<Tree, String> {
    let map = rstar
        .as_object()
        .ok_or("field `rstar`: expected an object of tag -> node")?;
    let mut tagged: Vec<(Vec<u32>, &String, &Value)> = Vec::with_capacity(map.len());
    for (tag, node) in map {
        let t = parse_tags(tag)
            .filter(|t| t.first() == Some(&0))
            .ok_or_else(|| format!("field `rstar`: bad node tag `{tag}`"))?;
        tagged.push((t, tag, node));
    }
    // Parents before children, siblings in child order ("0.10" after "0.9").
    tagged.sort_by(|a, b| a.0.cmp(&b.0));
    if tagged.first().map(|t| t.0.len()) != Some(1) {
        return Err("field `rstar`: no root node `0`".into());
    }
    let mut tree = Tree::new(question);
    let mut ids: HashMap<&str, NodeId> = HashMap::new();
    for (k, (_, tag, v)) in tagged.iter().enumerate() {
        let field = |f: &str| format!("field `rstar.{tag}.{f}`");
        let num = |f: &str| -> std::result::Result<f64, String> {
            v.get(f)
                .and_then(Value::as_f64)
                .ok_or_else(|| format!("{}: expected a number", field(f)))
        };
        let id = if k == 0 {
            0
        } else {
            let ptag = tag.rsplit_once('.').map(|p| p.0).unwrap_or("0");
            let &parent = ids
                .get(ptag)
                .ok_or_else(|| format!("field `rstar`: node `{tag}` has no parent `{ptag}`"))?;
            let text = v
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{}: expected a string", field("text")))?;
            let id = tree.add_child(parent, text);
            tree.nodes[id].tag = (*tag).clone();
            id
        };
        ids.insert(tag.as_str(), id);
        let n = &mut tree.nodes[id];
        let visits = num("visit_count")?;
        let q = num("q_value")?;
        n.visit_count = visits as u32;
        n.value_sum = match v.get("value_sum").and_then(Value::as_f64) {
            Some(s) => s,
            None => q * visits,
        };
        n.value = v
            .get("value")
            .and_then(Value::as_f64)
            .filter(|&x| x != -100.0);
        n.final_answer = v
            .get("final_answer")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        n.failure = v.get("failure").and_then(Value::as_str).map(str::to_owned);
        n.correct = v.get("correct").and_then(Value::as_bool);
        n.consecutive_errors = v
            .get("consecutive_errors")
            .and_then(Value::as_u64)
            .unwrap_or(0) as u32;
        n.observation = v
            .get("observation")
            .and_then(Value::as_str)
            .map(str::to_owned);
        n.end = match v.get("end") {
            Some(Value::Null) => None,
            Some(e) => Some(
                serde_json::from_value::<End>(e.clone())
                    .map_err(|err| format!("{}: {err}", field("end")))?,
            ),
            // The reference's trees: infer from the final answer.
            None => match n.final_answer.as_deref() {
                Some(TOO_MANY_CODE_ERRORS) => Some(End::Errors),
                Some(TOO_MANY_STEPS) => Some(End::Depth),
                Some(_) if id != 0 && steps::classify(&n.text) == steps::StepKind::Answer => {
                    Some(End::Answer)
                }
                _ => None,
            },
        };
    }
    Ok(tree)
}

/// Reads every line of an MCTS output file; a malformed line is an error naming the file and line.
pub fn read_trees(path: &Path) -> Result<Vec<TreeRecord>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_trees(&text, path)
}

/// As [`read_trees`], on the text of the file `path` (named in errors).
pub fn parse_trees(text: &str, path: &Path) -> Result<Vec<TreeRecord>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |m: String| Error::format(path, format!("line {}: {m}", i + 1));
        let v: Value = serde_json::from_str(line).map_err(|e| err(format!("invalid JSON: {e}")))?;
        let s = |f: &str| -> Result<String> {
            match v.get(f) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Number(n)) => Ok(n.to_string()),
                _ => Err(err(format!("field `{f}`: expected a string"))),
            }
        };
        let question = s("question")?;
        let answer = s("answer")?;
        let index = v
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(out.len() as u64);
        let rstar = v
            .get("rstar")
            .ok_or_else(|| err("field `rstar` missing".into()))?;
        let tree = tree_from_rstar(&question, rstar).map_err(err)?;
        out.push(TreeRecord {
            index,
            question,
            answer,
            tree,
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
    let (keep, done) = resume_point(&bytes, path)?;
    if keep < bytes.len() {
        f.set_len(keep as u64).map_err(|e| Error::io(path, e))?;
    }
    f.seek(SeekFrom::End(0)).map_err(|e| Error::io(path, e))?;
    Ok((f, done))
}

/// Where an output file's complete records end and the indices they hold: the file `path` (named
/// in errors) with contents `bytes` is cut back to `keep` bytes (dropping a torn last line) before
/// appending. A complete line that is not a record with an `index` is an error naming the line.
pub fn resume_point(bytes: &[u8], path: &Path) -> Result<(usize, HashSet<u64>)> {
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
    Ok((keep, done))
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

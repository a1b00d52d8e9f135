//! Training data out of search trees (spec 5.1, 5.2, 5.4): the SFT set and the PPM preference
//! pairs, read from the JSONL that `rstar mcts` writes ([`crate::data::trees`]) and written in
//! the formats of rStar's `sft_data_examples.json` / `rm_data_examples.json`, which
//! [`crate::data::training`] loads.
//!
//! **Trajectories.** A trajectory is a root-to-leaf path ending at a valid answer node (spec 5.1);
//! its step Q-values are those of the path's nodes below the root, answer node included. It is
//! *correct* when the tree says so (`correct`), or, for trees without that field (the
//! reference's), when [`grade::equal`] accepts its `final_answer` against the record's `answer`.
//! It *contains an execution error* when a step on it failed (`failure` set or
//! `consecutive_errors > 0`, possible with `errors_threshold > 1`) or, with
//! [`ExtractConfig::drop_error_text`] (the reference's `sample_sft_data.py`), when its text
//! contains "error" in any case.
//!
//! **SFT set** ([`sft_records`]): per problem the `sft_per_problem` (2) correct, error-free
//! trajectories with the highest mean Q, ties broken by the higher minimum Q, then by tree order.
//! Output `{query, response}` with `response` the concatenated step texts.
//!
//! **Preference pairs** ([`pair_records`]), two kinds:
//! * *step pairs* (per shared prefix, `extra_rm_file.py`): at every node, its children are the
//!   candidate next steps. Children whose subtree holds a correct answer are positives (highest Q
//!   first), children whose subtree holds a wrong answer (or, with `error_negatives`, a failed
//!   leaf) are negatives (lowest Q first). The first `per_side` (2) of each are paired; when one
//!   side has exactly one candidate the other side takes up to `fallback_per_side` (4). Output
//!   `{prompt: prompt + path to the parent, pos: chosen step, neg: rejected step, pos_count,
//!   neg_count}`.
//! * *trajectory pairs* (the paper's final-step rule, and the whole-solution pairs of
//!   `rm_data_examples.json`): the `per_side` correct error-free trajectories with the highest
//!   mean Q against the `per_side` wrong ones with the lowest mean Q; the prompt is the question
//!   only (`<|user|>:\n{question}`) and each side starts with `\n<|assistant|>: ...`.
//!
//! Every pair must pass two filters (`sample_rm_data.py`): Q(pos) − Q(neg) ≥ `min_margin` (0.5;
//! mean Q for trajectory pairs), and the two texts must differ enough: their Levenshtein distance
//! over Unicode scalar values must be at least `min_edit_distance` (20, the reference's
//! `editdistance.eval(chosen, rejected) >= 20`), so near-identical steps that differ in a
//! number or a name do not become pairs.
//!
//! Not implemented from the reference: its path-average test (the mean Q along the chosen step's
//! greedy-best continuation must exceed the rejected one's greedy-worst); the margin filter covers
//! most of what it removes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::prompts::{self, SFT_PROMPT};
use crate::data::tree::{End, NodeId, Tree};
use crate::data::trees::{read_trees, TreeRecord};
use crate::error::{Error, Result};
use crate::grade;

/// Every knob of extraction; defaults from the spec (5.2, 5.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExtractConfig {
    /// Correct trajectories kept per problem for SFT (`--n 2`).
    pub sft_per_problem: usize,
    /// Drop trajectories whose text contains "error" (any case), as `sample_sft_data.py` does,
    /// on top of those with a failed step. Applies to SFT and to positive trajectories.
    pub drop_error_text: bool,
    /// Positives and negatives taken per shared prefix (top-2 vs bottom-2).
    pub per_side: usize,
    /// When one side has exactly one candidate, the other side takes up to this many.
    pub fallback_per_side: usize,
    /// Minimum Q(pos) − Q(neg).
    pub min_margin: f64,
    /// Minimum Levenshtein distance (in characters) between the two texts of a pair.
    pub min_edit_distance: usize,
    /// Count failed leaves (execution errors, too many steps) as negatives, like wrong answers.
    /// The reference's `extra_rm_file.py` counts them as neither; rStar's released pairs
    /// (`rm_data_examples.json`) do contain failed-code negatives, and the PPM must learn to rank
    /// them low, so the default is on.
    pub error_negatives: bool,
    /// Also emit whole-trajectory pairs (the paper's final-answer-step rule).
    pub trajectory_pairs: bool,
    /// The policy prompt with `{question}` (`train_SFT.py`'s source and `extra_rm_file.py`'s prefix;
    /// one newline before `<|assistant|>`).
    pub prompt_template: String,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        ExtractConfig {
            sft_per_problem: 2,
            drop_error_text: true,
            per_side: 2,
            fallback_per_side: 4,
            min_margin: 0.5,
            min_edit_distance: 20,
            error_negatives: true,
            trajectory_pairs: true,
            prompt_template: SFT_PROMPT.into(),
        }
    }
}

impl ExtractConfig {
    /// Rejects values extraction cannot run with.
    pub fn validate(&self) -> Result<()> {
        if self.per_side == 0 {
            return Err(Error::InvalidArgument("per_side must be at least 1".into()));
        }
        if !self.min_margin.is_finite() {
            return Err(Error::InvalidArgument("min_margin must be finite".into()));
        }
        prompts::check(&self.prompt_template, "prompt_template")
    }

    fn prompt(&self, question: &str) -> String {
        prompts::fill(&self.prompt_template, question)
    }
}

/// An SFT example in the `sft_data_examples.json` format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftRecord {
    pub query: String,
    pub response: String,
}

/// A preference pair in the `rm_data_examples.json` format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairRecord {
    pub prompt: String,
    pub pos: String,
    pub neg: String,
    pub neg_count: usize,
    pub pos_count: usize,
}

/// A root-to-answer path of a tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    pub leaf: NodeId,
    pub mean_q: f64,
    pub min_q: f64,
    pub correct: bool,
    /// A step failed, or (with `drop_error_text`) the text mentions "error".
    pub has_error: bool,
}

/// Levenshtein distance between two strings, over Unicode scalar values.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

fn mean_min(qs: &[f64]) -> (f64, f64) {
    if qs.is_empty() {
        return (0.0, 0.0);
    }
    let mean = qs.iter().sum::<f64>() / qs.len() as f64;
    (mean, qs.iter().copied().fold(f64::INFINITY, f64::min))
}

fn answer_correct(rec: &TreeRecord, id: NodeId) -> bool {
    let n = &rec.tree.nodes[id];
    n.correct.unwrap_or_else(|| {
        n.final_answer
            .as_deref()
            .is_some_and(|a| grade::equal(a, &rec.answer))
    })
}

fn step_failed(tree: &Tree, id: NodeId) -> bool {
    let n = &tree.nodes[id];
    n.failure.is_some() || n.consecutive_errors > 0
}

/// Every trajectory of a tree (valid answer leaves), in tree order.
pub fn trajectories(rec: &TreeRecord, cfg: &ExtractConfig) -> Vec<Trajectory> {
    let t = &rec.tree;
    t.answers()
        .map(|(leaf, _)| {
            let path = t.path(leaf);
            let qs: Vec<f64> = path.iter().map(|&i| t.nodes[i].q_value()).collect();
            let (mean_q, min_q) = mean_min(&qs);
            let has_error = path.iter().any(|&i| step_failed(t, i))
                || (cfg.drop_error_text && t.solution(leaf).to_lowercase().contains("error"));
            Trajectory {
                leaf,
                mean_q,
                min_q,
                correct: answer_correct(rec, leaf),
                has_error,
            }
        })
        .collect()
}

/// Correct, error-free trajectories, best first: mean Q descending, then min Q descending, then
/// tree order.
fn best_correct(rec: &TreeRecord, cfg: &ExtractConfig) -> Vec<Trajectory> {
    let mut v: Vec<Trajectory> = trajectories(rec, cfg)
        .into_iter()
        .filter(|t| t.correct && !t.has_error)
        .collect();
    v.sort_by(|a, b| {
        b.mean_q
            .total_cmp(&a.mean_q)
            .then(b.min_q.total_cmp(&a.min_q))
    });
    v
}

/// The SFT examples of one tree (see the module doc).
pub fn sft_records(rec: &TreeRecord, cfg: &ExtractConfig) -> Vec<SftRecord> {
    best_correct(rec, cfg)
        .into_iter()
        .take(cfg.sft_per_problem)
        .map(|t| SftRecord {
            query: rec.question.clone(),
            response: rec.tree.solution(t.leaf),
        })
        .collect()
}

/// Per node: (correct answer leaves, negative leaves) in its subtree.
fn outcome_counts(rec: &TreeRecord, cfg: &ExtractConfig) -> Vec<(usize, usize)> {
    let t = &rec.tree;
    let mut counts = vec![(0usize, 0usize); t.nodes.len()];
    // Children always come after their parent in `nodes`: accumulate bottom-up.
    for id in (0..t.nodes.len()).rev() {
        let n = &t.nodes[id];
        if n.children.is_empty() {
            match n.end {
                Some(End::Answer) if answer_correct(rec, id) => counts[id].0 += 1,
                Some(End::Answer) => counts[id].1 += 1,
                Some(e) if e.is_invalid() && cfg.error_negatives => counts[id].1 += 1,
                _ => {}
            }
        }
        if let Some(p) = n.parent {
            counts[p].0 += counts[id].0;
            counts[p].1 += counts[id].1;
        }
    }
    counts
}

/// Side sizes: `per_side` each, or `fallback_per_side` for one side when the other has exactly one.
fn side_sizes(cfg: &ExtractConfig, n_pos: usize, n_neg: usize) -> (usize, usize) {
    let k = cfg.per_side;
    let f = cfg.fallback_per_side.max(k);
    let kp = if n_neg == 1 { f } else { k };
    let kn = if n_pos == 1 { f } else { k };
    (n_pos.min(kp), n_neg.min(kn))
}

/// Every (pos, neg) combination that passes the margin and distance filters.
fn filtered_pairs<'a>(
    cfg: &ExtractConfig,
    prompt: &str,
    pos: &[(f64, &'a str)],
    neg: &[(f64, &'a str)],
    out: &mut Vec<PairRecord>,
) {
    for &(qp, tp) in pos {
        for &(qn, tn) in neg {
            if qp - qn >= cfg.min_margin && levenshtein(tp, tn) >= cfg.min_edit_distance {
                out.push(PairRecord {
                    prompt: prompt.to_owned(),
                    pos: tp.to_owned(),
                    neg: tn.to_owned(),
                    neg_count: neg.len(),
                    pos_count: pos.len(),
                });
            }
        }
    }
}

fn borrowed(v: &[(f64, String)]) -> Vec<(f64, &str)> {
    v.iter().map(|(q, s)| (*q, s.as_str())).collect()
}

/// The preference pairs of one tree (see the module doc): step pairs in breadth-first node order,
/// then trajectory pairs.
pub fn pair_records(rec: &TreeRecord, cfg: &ExtractConfig) -> Vec<PairRecord> {
    let t = &rec.tree;
    let counts = outcome_counts(rec, cfg);
    let base = cfg.prompt(&rec.question);
    let mut out = Vec::new();
    let mut queue = std::collections::VecDeque::from([0usize]);
    while let Some(id) = queue.pop_front() {
        let ch = &t.nodes[id].children;
        queue.extend(ch.iter().copied());
        let q = |i: &NodeId| t.nodes[*i].q_value();
        let mut pos: Vec<NodeId> = ch.iter().copied().filter(|&c| counts[c].0 > 0).collect();
        let mut neg: Vec<NodeId> = ch.iter().copied().filter(|&c| counts[c].1 > 0).collect();
        if pos.is_empty() || neg.is_empty() {
            continue;
        }
        pos.sort_by(|a, b| q(b).total_cmp(&q(a)));
        neg.sort_by(|a, b| q(a).total_cmp(&q(b)));
        let (kp, kn) = side_sizes(cfg, pos.len(), neg.len());
        let side = |v: &[NodeId], k: usize| -> Vec<(f64, &str)> {
            v[..k]
                .iter()
                .map(|i| (q(i), t.nodes[*i].text.as_str()))
                .collect()
        };
        let prompt = format!("{base}{}", t.solution(id));
        filtered_pairs(cfg, &prompt, &side(&pos, kp), &side(&neg, kn), &mut out);
    }
    if cfg.trajectory_pairs {
        let pos = best_correct(rec, cfg);
        let mut neg: Vec<Trajectory> = trajectories(rec, cfg)
            .into_iter()
            .filter(|t| !t.correct)
            .collect();
        neg.sort_by(|a, b| {
            a.mean_q
                .total_cmp(&b.mean_q)
                .then(a.min_q.total_cmp(&b.min_q))
        });
        // rm_data_examples.json: the prompt is the user turn, each side opens the assistant turn.
        let split = base.find("\n<|assistant|>").unwrap_or(base.len());
        let (prompt, opener) = base.split_at(split);
        let texts = |v: &[Trajectory]| -> Vec<(f64, String)> {
            v.iter()
                .take(cfg.per_side)
                .map(|tr| (tr.mean_q, format!("{opener}{}", t.solution(tr.leaf))))
                .collect()
        };
        let (p, n) = (texts(&pos), texts(&neg));
        filtered_pairs(cfg, prompt, &borrowed(&p), &borrowed(&n), &mut out);
    }
    out
}

/// What to extract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractKind {
    Sft,
    Pairs,
}

/// What an extraction produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExtractSummary {
    pub trees: usize,
    /// Trees that gave at least one record.
    pub trees_used: usize,
    pub records: usize,
}

/// Writes records as a JSON array, one record per line (the examples' format, diffable), through
/// a temporary file renamed into place, so a crash never leaves a half-written `out`.
pub fn write_json_array<T: Serialize>(out: &Path, records: &[T]) -> Result<()> {
    let mut buf = String::from("[\n");
    for (i, r) in records.iter().enumerate() {
        let s = serde_json::to_string(r)
            .map_err(|e| Error::Internal(format!("serialising a record: {e}")))?;
        buf.push_str(&s);
        buf.push_str(if i + 1 < records.len() { ",\n" } else { "\n" });
    }
    buf.push_str("]\n");
    crate::data::durable::write_atomic(out, buf.as_bytes())
}

/// Reads `trees`, extracts `kind` from every tree and writes the records to `out`.
pub fn extract_file(
    trees: &Path,
    out: &Path,
    kind: ExtractKind,
    cfg: &ExtractConfig,
) -> Result<ExtractSummary> {
    cfg.validate()?;
    let recs = read_trees(trees)?;
    let mut sum = ExtractSummary {
        trees: recs.len(),
        ..ExtractSummary::default()
    };
    match kind {
        ExtractKind::Sft => collect(&recs, |r| sft_records(r, cfg), out, &mut sum)?,
        ExtractKind::Pairs => collect(&recs, |r| pair_records(r, cfg), out, &mut sum)?,
    }
    Ok(sum)
}

fn collect<T: Serialize>(
    recs: &[TreeRecord],
    per_tree: impl Fn(&TreeRecord) -> Vec<T>,
    out: &Path,
    sum: &mut ExtractSummary,
) -> Result<()> {
    let mut all = Vec::new();
    for r in recs {
        let v = per_tree(r);
        sum.trees_used += usize::from(!v.is_empty());
        all.extend(v);
    }
    sum.records = all.len();
    write_json_array(out, &all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tree::TOO_MANY_CODE_ERRORS;
    use crate::data::trees::tree_from_rstar;

    /// A node with N visits and a value sum chosen so Q = sum / N is the stated value.
    fn node(t: &mut Tree, parent: NodeId, text: &str, n: u32, sum: f64) -> NodeId {
        let id = t.add_child(parent, text);
        t.nodes[id].visit_count = n;
        t.nodes[id].value_sum = sum;
        id
    }

    fn answer(t: &mut Tree, parent: NodeId, text: &str, correct: bool, n: u32, sum: f64) -> NodeId {
        let id = node(t, parent, text, n, sum);
        t.nodes[id].end = Some(End::Answer);
        t.nodes[id].final_answer = grade::extract_answer(text);
        t.nodes[id].correct = Some(correct);
        id
    }

    // Texts of the main tree. Correct answers are long, wrong ones short, so whole trajectories
    // differ by far more than 20 characters; F and D differ in one character.
    const A: &str = "<code>\n# Step 1: apples bought\na = 2\n<end_of_step>";
    const A1: &str =
        "<answer>From the result, we can see that Janet has \\boxed{5} apples.<end_of_answer>";
    const A2: &str = "<answer>\\boxed{7}<end_of_answer>";
    const B: &str = "<code>\n# Step 1: add the apples Janet already has to the ones she buys today at the market\ntotal = 3 + 2\n<end_of_step>";
    const B1: &str = "<answer>From the result, we can see that the total number of apples is \\boxed{5}.<end_of_answer>";
    const C: &str = "<code>\nprint(1/0)<end_of_code>\n<output>ZeroDivisionError: division by zero<end_of_output>";
    const D: &str = "<code>\n# Step 1: count all apples\nn = 6\n<end_of_step>";
    const D1: &str = "<answer>\\boxed{9}<end_of_answer>";
    const E: &str = "<code>\n# Step 1: guard against a ZeroDivisionError\nx = 5\n<end_of_step>";
    const E1: &str =
        "<answer>From the result, we can see that the answer is \\boxed{5}.<end_of_answer>";
    const F: &str = "<code>\n# Step 1: count all apples\nn = 5\n<end_of_step>";
    const F1: &str =
        "<answer>From the result, we can see that Janet now has \\boxed{5} apples.<end_of_answer>";
    const G: &str = "<code>\n# Step 1: think about it for a while before writing any code at all\ny = 1\n<end_of_step>";
    const G1: &str =
        "<answer>Therefore, after all of this, the answer is \\boxed{5}.<end_of_answer>";
    const G2: &str = "<answer>\\boxed{4}<end_of_answer>";

    /// root: A(0.5){A1 ok 1, A2 wrong -1}, B(1){B1 ok 1}, C(-1, failed code), D(-1){D1 wrong -1},
    /// E(0){E1 ok 1; E mentions "Error"}, F(0.75){F1 ok 0.75}, G(0){G1 ok 0.2, G2 wrong -0.2}.
    fn main_tree() -> TreeRecord {
        let mut t = Tree::new("Janet has 3 apples and buys 2 more. How many?");
        t.nodes[0].visit_count = 12;
        let a = node(&mut t, 0, A, 4, 2.0);
        answer(&mut t, a, A1, true, 3, 3.0);
        answer(&mut t, a, A2, false, 1, -1.0);
        let b = node(&mut t, 0, B, 2, 2.0);
        answer(&mut t, b, B1, true, 2, 2.0);
        let c = node(&mut t, 0, C, 1, -1.0);
        t.nodes[c].end = Some(End::Errors);
        t.nodes[c].failure = Some("ZeroDivisionError: division by zero".into());
        t.nodes[c].consecutive_errors = 1;
        t.nodes[c].final_answer = Some(TOO_MANY_CODE_ERRORS.into());
        let d = node(&mut t, 0, D, 2, -2.0);
        answer(&mut t, d, D1, false, 2, -2.0);
        let e = node(&mut t, 0, E, 2, 0.0);
        answer(&mut t, e, E1, true, 1, 1.0);
        let f = node(&mut t, 0, F, 4, 3.0);
        answer(&mut t, f, F1, true, 4, 3.0);
        let g = node(&mut t, 0, G, 2, 0.0);
        answer(&mut t, g, G1, true, 5, 1.0);
        answer(&mut t, g, G2, false, 5, -1.0);
        TreeRecord {
            index: 0,
            question: t.question.clone(),
            answer: "5".into(),
            tree: t,
        }
    }

    /// Through the JSONL layout `rstar mcts` writes, and back.
    fn round_trip(rec: &TreeRecord) -> TreeRecord {
        let line = serde_json::json!({
            "index": rec.index, "question": rec.question, "answer": rec.answer,
            "rstar": rec.tree.to_rstar_json(),
        });
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), format!("{line}\n")).unwrap();
        read_trees(f.path()).unwrap().remove(0)
    }

    fn base() -> String {
        prompts::fill(SFT_PROMPT, "Janet has 3 apples and buys 2 more. How many?")
    }

    #[test]
    fn levenshtein_known_values() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("flaw", "lawn"), 2);
        assert_eq!(levenshtein("é€x", "e€"), 2);
        assert_eq!(levenshtein(F, D), 1);
    }

    #[test]
    fn sft_takes_top_two_correct_error_free_by_mean_q_then_min_q() {
        let rec = round_trip(&main_tree());
        let cfg = ExtractConfig::default();
        // Correct: B->B1 mean 1; F->F1 mean 0.75 min 0.75; A->A1 mean 0.75 min 0.5;
        // G->G1 mean 0.1; E->E1 mentions "Error" (dropped).
        let got = sft_records(&rec, &cfg);
        assert_eq!(
            got,
            vec![
                SftRecord {
                    query: rec.question.clone(),
                    response: format!("{B}{B1}"),
                },
                SftRecord {
                    query: rec.question.clone(),
                    response: format!("{F}{F1}"),
                },
            ]
        );
        // Without the text rule E->E1 (mean 0.5) ranks after A->A1 and still misses the top 2.
        let cfg3 = ExtractConfig {
            sft_per_problem: 5,
            drop_error_text: false,
            ..cfg
        };
        let r: Vec<String> = sft_records(&rec, &cfg3)
            .into_iter()
            .map(|s| s.response)
            .collect();
        let want: Vec<String> = [(B, B1), (F, F1), (A, A1), (E, E1), (G, G1)]
            .iter()
            .map(|(s, a)| format!("{s}{a}"))
            .collect();
        assert_eq!(r, want);
    }

    #[test]
    fn sft_skips_trajectories_with_a_failed_step() {
        // errors_threshold 2: a failed step that is not terminal, then a correct answer.
        let mut t = Tree::new("q");
        let s = node(&mut t, 0, "<code>\nx = 1/0\n<end_of_step>", 1, 1.0);
        t.nodes[s].failure = Some("ZeroDivisionError".into());
        t.nodes[s].consecutive_errors = 1;
        answer(&mut t, s, "<answer>\\boxed{5}<end_of_answer>", true, 1, 1.0);
        let rec = TreeRecord {
            index: 3,
            question: "q".into(),
            answer: "5".into(),
            tree: t,
        };
        let cfg = ExtractConfig {
            drop_error_text: false,
            ..ExtractConfig::default()
        };
        assert!(sft_records(&round_trip(&rec), &cfg).is_empty());
    }

    #[test]
    fn step_and_trajectory_pairs_of_the_main_tree() {
        let rec = round_trip(&main_tree());
        let got = pair_records(&rec, &ExtractConfig::default());
        let p = |prompt: &str, pos: &str, neg: &str, pc: usize, nc: usize| PairRecord {
            prompt: prompt.into(),
            pos: pos.into(),
            neg: neg.into(),
            neg_count: nc,
            pos_count: pc,
        };
        let base = base();
        let (user, opener) = base.split_at(base.find("\n<|assistant|>").unwrap());
        let traj = |s: &str, a: &str| format!("{opener}{s}{a}");
        // Fixture assumptions the filters rely on (independent of the code under test).
        // A length difference of 20 bounds the edit distance from below.
        let far = |x: &str, y: &str| x.chars().count().abs_diff(y.chars().count()) >= 20;
        for (x, y) in [(B, C), (B, D), (F, C), (B, G), (F, G)] {
            assert!(far(x, y), "{x} / {y}");
        }
        for (x, y) in [
            (B, B1, D, D1),
            (B, B1, A, A2),
            (F, F1, D, D1),
            (F, F1, A, A2),
        ]
        .map(|(s, a, t, b)| (traj(s, a), traj(t, b)))
        {
            assert!(far(&x, &y), "{x} / {y}");
        }
        let want = vec![
            // Root: positives B (1), F (0.75) [A 0.5, E 0, G 0 dropped]; negatives C (-1, failed
            // code), D (-1) [G 0, A 0.5 dropped]. F/D differ in one character: filtered.
            p(&base, B, C, 2, 2),
            p(&base, B, D, 2, 2),
            p(&base, F, C, 2, 2),
            // Under A: A1 (1) vs A2 (-1); G1 (0.2) vs G2 (-0.2) fails the 0.5 margin.
            p(&format!("{base}{A}"), A1, A2, 1, 1),
            // Whole trajectories: B->B1 (1), F->F1 (0.75) vs D->D1 (-1), A->A2 (-0.25).
            p(user, &traj(B, B1), &traj(D, D1), 2, 2),
            p(user, &traj(B, B1), &traj(A, A2), 2, 2),
            p(user, &traj(F, F1), &traj(D, D1), 2, 2),
            p(user, &traj(F, F1), &traj(A, A2), 2, 2),
        ];
        assert_eq!(got, want);
        // Without failed-code negatives the root's negatives are D (-1) and G (0): B-D, B-G
        // (margin 1), F-G (0.75); F-D is still too similar.
        let cfg = ExtractConfig {
            error_negatives: false,
            trajectory_pairs: false,
            ..ExtractConfig::default()
        };
        let got: Vec<(String, String)> = pair_records(&rec, &cfg)
            .into_iter()
            .map(|r| (r.pos, r.neg))
            .collect();
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(got, vec![s(B, D), s(B, G), s(F, G), s(A1, A2)]);
    }

    #[test]
    fn one_positive_takes_up_to_four_negatives() {
        let mut t = Tree::new("q2");
        let long =
            "<answer>From the result, we can see that the answer is \\boxed{5}.<end_of_answer>";
        answer(&mut t, 0, long, true, 1, 0.9);
        for (k, q) in [-1.0, -0.8, -0.6, -0.4, 0.5].iter().enumerate() {
            answer(
                &mut t,
                0,
                &format!("<answer>\\boxed{{{}}}<end_of_answer>", k + 10),
                false,
                1,
                *q,
            );
        }
        let rec = round_trip(&TreeRecord {
            index: 1,
            question: "q2".into(),
            answer: "5".into(),
            tree: t,
        });
        let cfg = ExtractConfig {
            trajectory_pairs: false,
            ..ExtractConfig::default()
        };
        let got = pair_records(&rec, &cfg);
        let negs: Vec<&str> = got.iter().map(|r| r.neg.as_str()).collect();
        assert_eq!(
            negs,
            vec![
                "<answer>\\boxed{10}<end_of_answer>",
                "<answer>\\boxed{11}<end_of_answer>",
                "<answer>\\boxed{12}<end_of_answer>",
                "<answer>\\boxed{13}<end_of_answer>",
            ]
        );
        assert!(got
            .iter()
            .all(|r| r.pos == long && r.pos_count == 1 && r.neg_count == 4));
        // A 1.45 margin keeps the negatives at Q <= -0.55: -1, -0.8, -0.6 (not -0.4).
        let strict = ExtractConfig {
            min_margin: 1.45,
            ..cfg
        };
        assert_eq!(pair_records(&rec, &strict).len(), 3);
    }

    #[test]
    fn reference_trees_without_our_fields_are_graded() {
        // The reference's layout: no `end`, `correct`, `failure`; q_value and visit_count only.
        let rstar = serde_json::json!({
            "0": {"text": "", "extra_info": "question: q", "q_value": 0.0, "visit_count": 2, "value": -100, "final_answer": ""},
            "0.1": {"text": "<answer>\\boxed{\\frac{1}{2}}<end_of_answer>", "q_value": 1.0, "visit_count": 1, "value": 1.0, "final_answer": "\\frac{1}{2}"},
            "0.2": {"text": "<answer>\\boxed{3}<end_of_answer>", "q_value": -1.0, "visit_count": 1, "value": -1.0, "final_answer": "3"},
            "0.10": {"text": "<code>\n1/0<end_of_code>", "q_value": -1.0, "visit_count": 1, "value": -1.0, "final_answer": TOO_MANY_CODE_ERRORS},
        });
        let t = tree_from_rstar("q", &rstar).unwrap();
        assert_eq!(t.nodes[3].tag, "0.10");
        assert_eq!(t.nodes[3].end, Some(End::Errors));
        let rec = TreeRecord {
            index: 0,
            question: "q".into(),
            answer: "0.5".into(),
            tree: t,
        };
        let sft = sft_records(&rec, &ExtractConfig::default());
        assert_eq!(sft.len(), 1);
        assert_eq!(
            sft[0].response,
            "<answer>\\boxed{\\frac{1}{2}}<end_of_answer>"
        );
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let good = serde_json::json!({"index": 0, "question": "q", "answer": "1",
            "rstar": {"0": {"text": "", "q_value": 0.0, "visit_count": 0}}});
        std::fs::write(f.path(), format!("{good}\n\n{{\"index\": 1, \"quest\n")).unwrap();
        let e = read_trees(f.path()).unwrap_err().to_string();
        assert!(
            e.contains(&f.path().display().to_string()) && e.contains("line 3"),
            "{e}"
        );
        let bad = serde_json::json!({"question": "q", "answer": "1",
            "rstar": {"0": {"text": "", "q_value": 0.0, "visit_count": 0}, "0.1.1": {"text": "x", "q_value": 0.0, "visit_count": 0}}});
        std::fs::write(f.path(), format!("{good}\n{bad}\n")).unwrap();
        let e = read_trees(f.path()).unwrap_err().to_string();
        assert!(
            e.contains("line 2") && e.contains("0.1.1") && e.contains("parent"),
            "{e}"
        );
        let bad = serde_json::json!({"question": "q", "answer": "1",
            "rstar": {"0": {"text": "", "q_value": "high", "visit_count": 0}}});
        std::fs::write(f.path(), format!("{bad}\n")).unwrap();
        let e = read_trees(f.path()).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("rstar.0.q_value"), "{e}");
    }
}

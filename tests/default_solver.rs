//! The default solver as a new user meets it: `rstar solve "question"` without `--policy` uses
//! the default model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, fetched once by the asset switch) with
//! its `qwen2.5` preset, i.e. tool-format steps whose programs really run. One of the ten word
//! problems of `data/own_word_problems.jsonl` (written for librstar, answers worked by hand),
//! greedy; the other nine are measured by `rstar eval` (docs/evaluation.md), not here, to keep
//! CI short.

mod common;

use std::process::Command;

use serde_json::Value;

#[test]
fn the_default_solver_answers_an_own_word_problem_with_code() {
    if !common::executor_available() {
        return;
    }
    let Some(_) = common::asset(rstar::search::default_model::DEFAULT_ASSET) else {
        return;
    };
    let data = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/own_word_problems.jsonl"),
    )
    .unwrap();
    // The train problem: two legs at two speeds (290 km).
    let problem: Value = serde_json::from_str(data.lines().nth(2).unwrap()).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_rstar"))
        .env_remove("RSTAR_DEFAULT_MODEL")
        .args(["solve", "--quiet", "--json"])
        .arg(problem["question"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["answer"], problem["answer"], "{v}");
    // The preset's tool format: a ```python block whose real output was appended.
    let t = &v["trajectories"][0]["solution"];
    let s = t.as_str().unwrap();
    assert!(s.contains("```python") && s.contains("```output"), "{s}");
    assert!(v["tokens"]["generated"].as_u64().unwrap() > 0, "{v}");
}

//! `rstar evolve` end to end on a tiny random fixture model: stage markers, resumability (a rerun
//! skips every finished stage and leaves the trees untouched), rounds.json's shape, and, from a
//! hand-seeded round-1 tree with a correct trajectory, real SFT and PPM stages whose models drive
//! a PPM-augmented round 2. Skips when the Python executor is unavailable.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

const PROBLEMS: &str = r#"[{"question": "What is 6 times 7?", "answer": "42"},
 {"question": "What is 2 plus 3?", "answer": "5"},
 {"question": "What is 10 minus 4?", "answer": "6"}]"#;

const CONFIG: &str = r#"{"mcts": {"rollouts": 2, "width": 2, "max_depth": 2, "max_step_tokens": 6,
  "errors_threshold": 2}, "round1_rollouts": 2, "batch": 2,
  "sft": {"max_steps": 1, "batch_size": 1, "seq_len": 1024, "lr": 0.0001},
  "ppm": {"max_steps": 1, "batch_size": 1, "seq_len": 1024, "lr": 0.0001},
  "holdout": 0.34, "eval_ppm_rollouts": 1}"#;

const STAGES: [&str; 5] = ["mcts", "extract", "sft", "ppm", "eval"];

fn evolve(dir: &Path, rounds: usize) -> (String, String) {
    let model = common::fixtures().join("models/qwen2-f32-v5");
    let o = Command::new(env!("CARGO_BIN_EXE_rstar"))
        .args(["evolve", "--policy"])
        .arg(&model)
        .arg("--data")
        .arg(dir.join("problems.json"))
        .arg("--workdir")
        .arg(dir.join("work"))
        .arg("--config")
        .arg(dir.join("config.json"))
        .args(["--rounds", &rounds.to_string()])
        .output()
        .unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    );
    assert!(o.status.success(), "{err}");
    (out, err)
}

fn setup() -> Option<tempfile::TempDir> {
    if !common::executor_available() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("problems.json"), PROBLEMS).unwrap();
    std::fs::write(dir.path().join("config.json"), CONFIG).unwrap();
    Some(dir)
}

fn rounds(dir: &Path) -> Vec<Value> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("work/rounds.json")).unwrap()).unwrap()
}

#[test]
fn one_round_writes_every_stage_and_a_rerun_skips_them() {
    let Some(dir) = setup() else { return };
    let (out, _) = evolve(dir.path(), 1);
    let r1 = dir.path().join("work/round-1");
    for s in STAGES {
        assert!(r1.join(format!("{s}.done")).is_file(), "{s}.done missing");
    }
    let trees = std::fs::read_to_string(r1.join("trees.jsonl")).unwrap();
    // 3 problems, holdout 0.34 -> 1 held out (the last), 2 searched.
    assert_eq!(trees.lines().count(), 2);
    let rows = rounds(dir.path());
    assert_eq!(rows.len(), 2);
    // Round 0: the base policy, evaluated only.
    let r0 = &rows[0];
    assert_eq!(
        (r0["round"].as_u64(), r0["heldout"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(r0["mode"].is_null() && r0["problems"] == 0, "{r0}");
    assert!(dir.path().join("work/round-0/eval.done").is_file());
    let png = std::fs::read(dir.path().join("work/rounds.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let r = &rows[1];
    assert_eq!(r["round"], 1);
    assert_eq!(r["mode"], "terminal-guided");
    assert_eq!(
        (r["problems"].as_u64(), r["heldout"].as_u64()),
        (Some(2), Some(1))
    );
    let cov = r["coverage"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&cov));
    assert_eq!(cov, r["solved"].as_f64().unwrap() / 2.0);
    for k in [
        "sft_examples",
        "pairs",
        "greedy_correct",
        "greedy_pass1",
        "seconds",
    ] {
        assert!(r.get(k).is_some(), "rounds.json lacks {k}");
    }
    assert!(
        out.contains("coverage") && out.contains("greedy pass@1"),
        "{out}"
    );

    let (_, err) = evolve(dir.path(), 1);
    assert!(err.contains("round 0: eval done already, skipped"), "{err}");
    for s in STAGES {
        assert!(
            err.contains(&format!("round 1: {s} done already, skipped")),
            "{s} not skipped:\n{err}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(r1.join("trees.jsonl")).unwrap(),
        trees
    );
    assert_eq!(rounds(dir.path()), rows);
}

/// A round-1 tree for "What is 6 times 7?" with a correct and a wrong trajectory.
fn seeded_tree() -> Value {
    common::two_branch_record(
        "What is 6 times 7?",
        "42",
        (
            "<code>\n# Step 1: multiply the numbers\nprint(6 * 7)\n<end_of_code>\n<output>42<end_of_output>",
            "\n<answer>From the result, the product is \\boxed{42}.<end_of_answer>",
        ),
        (
            "<code>\nprint(6 + 7)\n<end_of_code>\n<output>13<end_of_output>",
            "\n<answer>\\boxed{13}<end_of_answer>",
            "13",
        ),
    )
}

#[test]
fn seeded_round_trains_policy_and_ppm_and_round_two_uses_them() {
    let Some(dir) = setup() else { return };
    let r1 = dir.path().join("work/round-1");
    std::fs::create_dir_all(&r1).unwrap();
    std::fs::write(r1.join("trees.jsonl"), format!("{}\n", seeded_tree())).unwrap();
    let marker = json!({"mode": "terminal-guided", "rollouts": 2, "policy": "seeded", "ppm": null,
        "problems": 2, "solved": 1, "seconds": 0.0});
    std::fs::write(r1.join("mcts.done"), marker.to_string()).unwrap();
    let (_, err) = evolve(dir.path(), 2);
    assert!(err.contains("round 1: mcts done already, skipped"), "{err}");
    // One correct trajectory -> one SFT example; pairs: the root's step pair and the trajectory
    // pair (margin 2, texts far apart).
    let rows = rounds(dir.path());
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["round"], 0);
    let rows = &rows[1..];
    assert_eq!(
        (rows[0]["sft_examples"].as_u64(), rows[0]["pairs"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(rows[0]["policy_trained"], true);
    assert_eq!(rows[0]["ppm_trained"], true);
    assert!(r1.join("policy/config.json").is_file());
    assert!(r1.join("ppm/value_head.safetensors").is_file());
    assert!(
        !r1.join("policy/checkpoint").exists(),
        "training state is dropped when done"
    );
    // Round 2 searches with round 1's policy and PPM.
    assert_eq!(rows[1]["mode"], "ppm-augmented");
    let m2: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("work/round-2/mcts.done")).unwrap(),
    )
    .unwrap();
    assert!(m2["policy"].as_str().unwrap().ends_with("round-1/policy"));
    assert!(m2["ppm"].as_str().unwrap().ends_with("round-1/ppm"));
    // PPM-guided evaluation ran (a PPM exists).
    assert!(rows[0]["ppm_accuracy"].is_number());
}

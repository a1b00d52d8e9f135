//! Crash safety of the resumable commands: `rstar mcts` and `rstar evolve` on the tiny fixture
//! model are SIGKILLed at 20 seeded random moments each, uniform over 1.5 times an uninterrupted
//! run's length (kills accumulate on one output: every rerun resumes from what the last one left; a run
//! that finishes before its kill starts the output over), then run to completion. After every kill the
//! output holds only valid JSONL lines (a torn last line without a newline is allowed: the next
//! run drops it) and no problem twice; at the end every problem is there exactly once and the
//! result equals an uninterrupted reference run. Also: an output on a full filesystem gives a
//! typed error and leaves the lines already written valid.
//!
//! `RSTAR_CRASH_KILLS` changes the number of kills (default 20).

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const PROBLEMS: &str = r#"[{"question": "What is 6 times 7?", "answer": "42"},
 {"question": "What is 2 plus 3?", "answer": "5"},
 {"question": "What is 10 minus 4?", "answer": "6"},
 {"question": "What is 9 divided by 3?", "answer": "3"},
 {"question": "What is 5 squared?", "answer": "25"},
 {"question": "What is 100 minus 1?", "answer": "99"}]"#;

const EVOLVE_CONFIG: &str = r#"{"mcts": {"rollouts": 2, "width": 2, "max_depth": 2,
  "max_step_tokens": 6, "errors_threshold": 2}, "round1_rollouts": 2, "batch": 2,
  "sft": {"max_steps": 3, "batch_size": 1, "seq_len": 1024, "lr": 0.0001, "save_every": 1},
  "ppm": {"max_steps": 3, "batch_size": 1, "seq_len": 1024, "lr": 0.0001, "save_every": 1},
  "holdout": 0.34, "eval_ppm_rollouts": 1}"#;

fn kills() -> usize {
    std::env::var("RSTAR_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

fn model() -> PathBuf {
    common::fixtures().join("models/qwen2-f32-v5")
}

fn executor() -> Option<()> {
    match rstar::exec::Executor::new(rstar::exec::ExecConfig::default()) {
        Ok(_) => Some(()),
        Err(e) => common::python_missing(&e.to_string()),
    }
}

/// SplitMix64: the kill moments are a function of the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, max)`.
    fn below(&mut self, max: Duration) -> Duration {
        let ms = max.as_millis().max(1) as u64;
        Duration::from_millis(self.next() % ms)
    }
}

fn mcts_cmd(data: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rstar"));
    cmd.args(["mcts", "--policy"])
        .arg(model())
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(["--rollouts", "3", "--width", "3", "--max-depth", "3"])
        .args(["--max-step-tokens", "6", "--errors-threshold", "2"])
        .args(["--batch", "2", "--quiet"]);
    cmd
}

fn evolve_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rstar"));
    cmd.args(["evolve", "--policy"])
        .arg(model())
        .arg("--data")
        .arg(dir.join("problems.json"))
        .arg("--workdir")
        .arg(dir.join("work"))
        .arg("--config")
        .arg(dir.join("config.json"))
        .args(["--rounds", "1"]);
    cmd
}

fn run_to_end(mut cmd: Command) -> Duration {
    let t0 = Instant::now();
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    t0.elapsed()
}

/// The complete lines of a JSONL file, each parsed; a last line without a newline (torn by a
/// kill) is ignored when `torn_ok`, else it fails.
fn jsonl(path: &Path, torn_ok: bool) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(p) => &text[..=p],
        None => "",
    };
    assert!(
        torn_ok || complete.len() == text.len(),
        "{}: a torn last line after a completed run",
        path.display()
    );
    complete
        .lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{} line {}: {e}", path.display(), i + 1))
        })
        .collect()
}

/// Asserts no problem index appears twice; returns the indices.
fn unique_indices(path: &Path, torn_ok: bool) -> HashSet<u64> {
    let mut seen = HashSet::new();
    for r in jsonl(path, torn_ok) {
        let i = r["index"].as_u64().expect("index");
        assert!(seen.insert(i), "{}: problem {i} twice", path.display());
    }
    seen
}

/// Kills `start()`'s process at `n` seeded moments, each uniform in `[0, span)`; a run that ends
/// first (the job is done) is followed by `reset()` so kills keep landing on real work. After each
/// kill `check(kill, written)` looks at what is on disk. Returns how many runs finished on their
/// own.
fn kill_at_random_moments(
    n: usize,
    seed: u64,
    span: Duration,
    mut start: impl FnMut() -> Command,
    mut reset: impl FnMut(),
    mut check: impl FnMut(usize),
) -> usize {
    let mut rng = Rng(seed);
    let (mut killed, mut finished) = (0, 0);
    while killed < n {
        let delay = rng.below(span);
        let mut child = start()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while t0.elapsed() < delay && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(status) = child.try_wait().unwrap() {
            let o = child.wait_with_output().unwrap();
            assert!(status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            finished += 1;
            reset();
            continue;
        }
        child.kill().unwrap(); // SIGKILL: no handler, no flush, no clean-up
        child.wait().unwrap();
        killed += 1;
        check(killed);
    }
    finished
}

#[test]
fn mcts_survives_sigkill_at_random_moments() {
    let Some(()) = executor() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("problems.json");
    std::fs::write(&data, PROBLEMS).unwrap();
    let reference = dir.path().join("reference.jsonl");
    let t_ref = run_to_end(mcts_cmd(&data, &reference));
    let want = jsonl(&reference, false);
    assert_eq!(want.len(), 6);

    let out = dir.path().join("killed.jsonl");
    let n = kills();
    let mut resumed = 0;
    let finished = kill_at_random_moments(
        n,
        0x5eed_0001,
        t_ref * 3 / 2,
        || mcts_cmd(&data, &out),
        || std::fs::remove_file(&out).unwrap(),
        |_| {
            if !unique_indices(&out, true).is_empty() {
                resumed += 1;
            }
        },
    );
    // The kills must have hit runs with work already on disk, or resuming was never tested.
    assert!(resumed > 0, "no kill left a finished problem on disk");
    run_to_end(mcts_cmd(&data, &out));
    let got = jsonl(&out, false);
    let key = |r: &Value| r["index"].as_u64().unwrap();
    let mut got_sorted = got.clone();
    got_sorted.sort_by_key(key);
    let mut want_sorted = want.clone();
    want_sorted.sort_by_key(key);
    assert_eq!(
        got_sorted, want_sorted,
        "after {n} kills ({finished} runs finished on their own): lost, duplicated or different trees"
    );
    eprintln!(
        "mcts: reference {t_ref:?}, {n} kills ({resumed} with problems on disk), \
         {finished} runs finished between kills"
    );
}

/// What a finished one-round evolve work directory holds that must not depend on kills: the
/// round's trees (sorted by index), SFT set and pairs, the stage markers present, and rounds.json
/// without timings.
fn evolve_outcome(work: &Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    {
        let (r, rd) = (1, work.join("round-1"));
        let mut trees = jsonl(&rd.join("trees.jsonl"), false);
        let idx = unique_indices(&rd.join("trees.jsonl"), false);
        assert_eq!(idx.len(), 4, "round {r}: 4 training problems, each once");
        trees.sort_by_key(|t| t["index"].as_u64());
        out.push((format!("round-{r}/trees"), Value::Array(trees)));
        for f in ["sft.json", "pairs.json"] {
            let text = std::fs::read_to_string(rd.join(f)).unwrap();
            out.push((
                format!("round-{r}/{f}"),
                serde_json::from_str(&text).unwrap(),
            ));
        }
        for s in ["mcts", "extract", "sft", "ppm", "eval"] {
            assert!(
                rd.join(format!("{s}.done")).is_file(),
                "round {r}: {s}.done"
            );
        }
    }
    let text = std::fs::read_to_string(work.join("rounds.json")).unwrap();
    let mut rows: Value = serde_json::from_str(&text).unwrap();
    for row in rows.as_array_mut().unwrap() {
        row.as_object_mut().unwrap().remove("seconds");
    }
    out.push(("rounds.json".into(), rows));
    out
}

#[test]
fn evolve_survives_sigkill_at_random_moments() {
    let Some(()) = executor() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let setup = |name: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("problems.json"), PROBLEMS).unwrap();
        std::fs::write(d.join("config.json"), EVOLVE_CONFIG).unwrap();
        d
    };
    let reference = setup("reference");
    let t_ref = run_to_end(evolve_cmd(&reference));
    let want = evolve_outcome(&reference.join("work"));

    let killed = setup("killed");
    let n = kills();
    let mut resumed = 0;
    let work = killed.join("work");
    let finished = kill_at_random_moments(
        n,
        0x5eed_0002,
        t_ref * 3 / 2,
        || evolve_cmd(&killed),
        || std::fs::remove_dir_all(&work).unwrap(),
        |_| {
            let trees = work.join("round-1/trees.jsonl");
            if trees.is_file() && !unique_indices(&trees, true).is_empty() {
                resumed += 1;
            }
            let rounds = work.join("rounds.json");
            if rounds.is_file() {
                let text = std::fs::read_to_string(&rounds).unwrap();
                serde_json::from_str::<Value>(&text).expect("rounds.json is whole JSON");
            }
        },
    );
    run_to_end(evolve_cmd(&killed));
    let got = evolve_outcome(&work);
    for ((name, g), (_, w)) in got.iter().zip(&want) {
        assert_eq!(
            g, w,
            "{name} differs from the uninterrupted run after {n} kills ({finished} finished)"
        );
    }
    assert!(resumed > 0, "no kill left a searched problem on disk");
    eprintln!(
        "evolve: reference {t_ref:?}, {n} kills ({resumed} with trees on disk), \
         {finished} runs finished between kills"
    );
}

/// Mounts a 64 KiB tmpfs at `dir` (root only); None, after saying why, when that is not allowed.
fn tiny_tmpfs(dir: &Path) -> Option<()> {
    std::fs::create_dir_all(dir).unwrap();
    let o = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(dir)
        .output();
    match o {
        Ok(o) if o.status.success() => Some(()),
        Ok(o) => {
            println!(
                "SKIPPED: cannot mount a tmpfs (needs root): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            None
        }
        Err(e) => {
            println!("SKIPPED: cannot run mount: {e}");
            None
        }
    }
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn mcts_output_on_a_full_disk_fails_cleanly_and_keeps_whole_lines() {
    let Some(()) = executor() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("problems.json");
    std::fs::write(&data, PROBLEMS).unwrap();
    let reference = dir.path().join("reference.jsonl");
    run_to_end(mcts_cmd(&data, &reference));
    let want = std::fs::read_to_string(&reference).unwrap();
    let first = want.find('\n').unwrap() + 1;

    let full = dir.path().join("full");
    let Some(()) = tiny_tmpfs(&full) else { return };
    let _unmount = Unmount(full.clone());
    // Leave room (whole 4 KiB pages) for the first line and a part of the second only.
    let room = first.div_ceil(4096) * 4096;
    assert!(
        want.len() > room,
        "the output ({} bytes) must not fit in {room}",
        want.len()
    );
    let filler = vec![b'x'; 64 * 1024 - room];
    std::fs::write(full.join("filler"), filler).unwrap();
    let out = full.join("out.jsonl");
    let o = mcts_cmd(&data, &out).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "mcts succeeded on a full disk");
    assert!(
        err.contains("out.jsonl") && err.contains("No space left on device"),
        "the error names the file and ENOSPC: {err}"
    );
    // Only whole lines, each one the reference's line for its problem.
    let got = std::fs::read_to_string(&out).unwrap();
    assert!(
        got.is_empty() || got.ends_with('\n'),
        "a torn line was left"
    );
    let kept = jsonl(&out, false);
    assert!(!kept.is_empty(), "the first line fitted and was kept");
    let want_lines = jsonl(&reference, false);
    for r in &kept {
        assert!(
            want_lines.contains(r),
            "a kept line differs from the reference"
        );
    }
    // With room again, a rerun completes the file.
    std::fs::remove_file(full.join("filler")).unwrap();
    run_to_end(mcts_cmd(&data, &out));
    assert_eq!(unique_indices(&out, false).len(), 6);
}

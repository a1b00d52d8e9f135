//! Containment: hostile snippets end as failed steps with a reason, the host keeps running and
//! no process is left behind. Skips (with a message) when Python with sympy is unavailable.

use rstar::exec::{ExecConfig, Executor};
use rstar::steps::{FailureRule, StepOutcome};

fn executor(cfg: ExecConfig) -> Option<Executor> {
    match Executor::new(cfg) {
        Ok(e) => Some(e),
        Err(e) => {
            eprintln!("skipping executor test: {e}");
            None
        }
    }
}

/// Pids whose parent chain reaches this process.
#[cfg(target_os = "linux")]
fn descendants() -> Vec<u32> {
    let me = std::process::id();
    let mut parent = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let ppid: u32 = after
            .split(' ')
            .nth(1)
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        parent.insert(pid, ppid);
    }
    parent
        .keys()
        .copied()
        .filter(|&p| {
            let mut cur = p;
            for _ in 0..64 {
                match parent.get(&cur) {
                    Some(&pp) if pp == me => return true,
                    Some(&pp) if pp > 1 => cur = pp,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}

#[test]
fn hostile_snippets_are_contained() {
    std::env::set_var("RSTAR_TEST_SECRET", "hunter2");
    let Some(ex) = executor(ExecConfig {
        workers: 2,
        timeout_s: 2.0,
        ..ExecConfig::default()
    }) else {
        return;
    };
    eprintln!("sandbox layers: {}", ex.info().sandbox);
    let outside = std::env::temp_dir().join(format!("rstar-escape-{}", std::process::id()));
    let cases: Vec<(&str, String)> = vec![
        ("infinite loop", "while True:\n    pass".into()),
        ("fork bomb", "import os\nwhile True:\n    os.fork()".into()),
        ("10 GB allocation", "x = bytearray(10 * 1024**3)\nprint(len(x))".into()),
        ("write outside", format!("open({:?}, 'w').write('x')", outside.display().to_string())),
        ("socket", "import socket\ns = socket.create_connection(('1.1.1.1', 80), timeout=1)".into()),
        (
            "parent environment",
            "import os\nassert 'RSTAR_TEST_SECRET' not in os.environ\nfor p in (os.getppid(), 1):\n    data = open('/proc/%d/environ' % p, 'rb').read()\n    assert b'hunter2' not in data\nraise RuntimeError('environment was not readable')".into(),
        ),
        ("kill parent", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('still here')".into()),
        ("kill everything", "import os\nos.kill(-1, 9)".into()),
        (
            "daemonized child",
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nraise SystemExit(3)".into(),
        ),
    ];
    let codes: Vec<&str> = cases.iter().map(|(_, c)| c.as_str()).collect();
    let results = ex.run_many(&codes);
    for ((name, _), r) in cases.iter().zip(&results) {
        let o = StepOutcome::from_exec(r, FailureRule::Execution);
        eprintln!("{name}: failed={} reason={:?}", o.failed, o.reason);
        assert!(o.failed, "{name} should fail: {r:?}");
        assert!(
            o.reason.as_deref().is_some_and(|s| !s.is_empty()),
            "{name}: no reason"
        );
    }
    assert!(!outside.exists(), "the snippet wrote {}", outside.display());
    // the pool still works after all that
    let ok = ex.run("from sympy import Rational\nprint(Rational(1, 3) + Rational(1, 6))");
    assert!(ok.ok, "{ok:?}");
    assert_eq!(ok.stdout.trim(), "1/2");
    drop(ex);
    #[cfg(target_os = "linux")]
    {
        let mut left = descendants();
        for _ in 0..50 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
            left = descendants();
        }
        assert!(left.is_empty(), "processes left behind: {left:?}");
    }
}

#[test]
fn timeout_output_and_nonblocking_api() {
    let Some(ex) = executor(ExecConfig {
        workers: 1,
        timeout_s: 1.0,
        ..ExecConfig::default()
    }) else {
        return;
    };
    let mut t = ex.submit("import time\ntime.sleep(0.3)\nprint(42)");
    assert!(t.poll().is_none());
    let r = t.wait();
    assert!(r.ok && r.stdout.trim() == "42", "{r:?}");
    let r = ex.run("import time\ntime.sleep(5)");
    assert!(r.timed_out && !r.ok);
    assert!(r.error.as_deref().unwrap_or("").starts_with("TimeoutError"));
    let r = ex.run("x = 1\n  y = 2");
    assert_eq!(
        r.error.as_deref(),
        Some("IndentationError: unexpected indent (<unknown>, line 2)")
    );
    let r = ex.run("1 + 2");
    assert_eq!(r.stdout.trim(), "3");
}

/// An interpreter that dies before its worker says hello: `Executor::new` fails (after one more
/// try) with the exit status and what it wrote to stderr, instead of a bare "did not start".
#[cfg(unix)]
#[test]
fn a_worker_that_dies_at_start_is_reported_with_its_stderr() {
    use std::os::unix::fs::PermissionsExt;
    if std::env::var_os("RSTAR_PYTHON").is_some_and(|v| !v.is_empty()) {
        eprintln!("skipping: RSTAR_PYTHON overrides the configured interpreter");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("python");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'ImportError: no module named boom' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let e = Executor::new(ExecConfig {
        python: Some(fake),
        workers: 1,
        ..Default::default()
    })
    .err()
    .expect("a dead interpreter cannot make an executor")
    .to_string();
    assert!(e.contains("exited before it started, twice"), "{e}");
    assert!(e.contains("ImportError: no module named boom"), "{e}");
    assert!(e.contains("exit status: 3"), "{e}");
}

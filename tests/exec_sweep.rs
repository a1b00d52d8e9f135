//! A host killed with SIGKILL takes its executor workers with it (PR_SET_PDEATHSIG), and they
//! cannot clean up; the next executor removes the temporary directory they left. A test binary of
//! its own, so its `rstar exec` children do not count as leftovers in the containment tests.

mod common;

#[cfg(target_os = "linux")]
#[test]
fn what_a_killed_host_leaves_is_swept_by_the_next_executor() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    if let Err(e) = rstar::exec::Executor::new(rstar::exec::ExecConfig::default()) {
        return common::python_missing(&e.to_string()).unwrap_or(());
    }
    let exec = |code: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_rstar"))
            .args(["exec", "--timeout", "60"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(code.as_bytes()).unwrap();
        c
    };
    let ppid = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()
    };
    let mut host = exec("import time\ntime.sleep(50)\n");
    // The host's worker, and the directory it names after its pid.
    let tmp = std::env::temp_dir();
    let t0 = std::time::Instant::now();
    let dir = loop {
        let workers: Vec<u32> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
            .filter(|&p| ppid(p) == Some(host.id()))
            .collect();
        let found = std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                workers
                    .iter()
                    .any(|w| name.starts_with(&format!("rstar-exec-{w}-")))
            });
        if let Some(d) = found {
            break d;
        }
        assert!(
            t0.elapsed().as_secs() < 60,
            "the worker never made its directory"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    std::thread::sleep(std::time::Duration::from_millis(300)); // the snippet is running
    host.kill().unwrap();
    host.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300)); // the workers die with their host
    assert!(
        dir.exists(),
        "a killed worker cannot remove {}",
        dir.display()
    );
    let next = exec("print(1)\n").wait_with_output().unwrap();
    assert!(next.status.success());
    assert!(!dir.exists(), "{} was left behind", dir.display());
}

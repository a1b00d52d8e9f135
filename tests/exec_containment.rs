//! Containment: hostile snippets must not have their effect. Each case plants something the
//! snippet should not reach (a secret in a file or in an environment, a listening socket, a
//! sibling process) and asserts the effect did not happen: the secret is absent from everything
//! the snippet returned, the listener received nothing, the file was not created, the sibling and
//! this process are alive and untraced. The sandbox's layer report is asserted too.
//!
//! Run as root and as an unprivileged user (`.ci/run` does both). Without Python + sympy the
//! tests print `SKIPPED` (`RSTAR_REQUIRE_PYTHON=1` makes that a failure); a strict executor
//! refusing for a missing layer is accepted only without `RSTAR_REQUIRE_SANDBOX=1`.

mod common;

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rstar::exec::{ExecConfig, ExecResult, Executor, SandboxMode};
use rstar::Error;

fn executor(cfg: ExecConfig) -> Option<Executor> {
    match Executor::new(cfg) {
        Ok(e) => Some(e),
        Err(Error::Sandbox { layer, reason }) => {
            assert!(
                std::env::var_os("RSTAR_REQUIRE_SANDBOX").is_none(),
                "RSTAR_REQUIRE_SANDBOX is set, but the executor refused: layer {layer}: {reason}"
            );
            assert!(!layer.is_empty() && !reason.is_empty());
            println!("SKIPPED: the executor refused to run code (fail closed): {layer}: {reason}");
            None
        }
        Err(e) => common::python_missing(&e.to_string()),
    }
}

/// Everything a snippet handed back, to search for what it must not have seen.
fn all_text(r: &ExecResult) -> String {
    format!("{}\n{}\n{:?}", r.stdout, r.stderr, r.error)
}

/// A random token nobody could guess or find by accident.
fn token(tag: &str) -> String {
    let mut b = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("/dev/urandom");
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{tag}{hex}")
}

/// Pids whose parent chain reaches this process.
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

fn tracer_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("TracerPid:"))
        .map(|l| l["TracerPid:".len()..].trim().to_string())
        .unwrap_or_else(|| "gone".into())
}

/// The layer report: every layer a strict executor needs is there and active.
fn assert_layers(ex: &Executor) {
    let s = ex.sandbox();
    println!("sandbox ({}):", s.mode.as_str());
    for (k, l) in &s.layers {
        println!(
            "  {k}: active={} required={} {}",
            l.active, l.required, l.detail
        );
    }
    assert_eq!(s.mode, SandboxMode::Strict);
    assert!(s.refused.is_none(), "{:?}", s.refused);
    assert!(s.missing().is_empty(), "missing: {:?}", s.missing());
    let mut need = vec![
        "pid_namespace",
        "mount_namespace",
        "landlock",
        "seccomp",
        "no_new_privs",
        "capabilities",
        "rlimits",
        "process_limit",
    ];
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        need.push("user_namespace");
    }
    for k in need {
        let l = s
            .layers
            .get(k)
            .unwrap_or_else(|| panic!("layer {k} not reported"));
        assert!(l.active && l.required, "layer {k}: {l:?}");
    }
}

/// Files, sockets and a sibling process the snippets must not reach.
struct Bait {
    _dir: tempfile::TempDir,
    private_file: String,
    private_secret: String,
    public_file: String,
    public_secret: String,
    write_target: String,
    unix_path: String,
    abstract_name: String,
    tcp_port: u16,
    udp_port: u16,
    env_secret: String,
    sibling: std::process::Child,
    received: Arc<AtomicUsize>,
}

fn bait() -> Bait {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let private_secret = token("PRIVATE");
    let public_secret = token("PUBLIC");
    let (private_file, public_file) = (p("id_rsa"), p("notes.txt"));
    std::fs::write(&private_file, &private_secret).unwrap();
    std::fs::set_permissions(&private_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&public_file, &public_secret).unwrap();
    std::fs::set_permissions(&public_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let unix_path = p("listener.sock");
    let unix = UnixListener::bind(&unix_path).unwrap();
    std::fs::set_permissions(&unix_path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let abstract_name = token("rstar-test-");
    let addr = {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes()).unwrap()
    };
    let abstract_l = UnixListener::bind_addr(&addr).unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (tcp_port, udp_port) = (
        tcp.local_addr().unwrap().port(),
        udp.local_addr().unwrap().port(),
    );
    for l in [unix, abstract_l] {
        let n = Arc::clone(&received);
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                n.fetch_add(1, Ordering::SeqCst);
                let mut buf = Vec::new();
                let _ = s.read_to_end(&mut buf);
            }
        });
    }
    let n = Arc::clone(&received);
    std::thread::spawn(move || {
        for s in tcp.incoming().flatten() {
            drop(s);
            n.fetch_add(1, Ordering::SeqCst);
        }
    });
    let n = Arc::clone(&received);
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while udp.recv(&mut buf).is_ok() {
            n.fetch_add(1, Ordering::SeqCst);
        }
    });
    let env_secret = token("ENV");
    let sibling = std::process::Command::new("sleep")
        .arg("120")
        .env("RSTAR_TEST_SECRET", &env_secret)
        .spawn()
        .expect("spawn sleep");
    Bait {
        write_target: p("written-by-snippet"),
        _dir: dir,
        private_file,
        private_secret,
        public_file,
        public_secret,
        unix_path,
        abstract_name,
        tcp_port,
        udp_port,
        env_secret,
        sibling,
        received,
    }
}

#[test]
fn hostile_snippets_have_no_effect() {
    let b = bait();
    // The test process's own environment too (the worker is started with an empty one).
    std::env::set_var("RSTAR_TEST_SECRET", &b.env_secret);
    let cap = 1 << 16;
    let Some(ex) = executor(ExecConfig {
        workers: 2,
        timeout_s: 3.0,
        output_cap: cap,
        max_processes: 16,
        ..ExecConfig::default()
    }) else {
        return;
    };
    assert_layers(&ex);
    let me = std::process::id();
    let sib = b.sibling.id();
    let read = |path: &str| {
        format!(
            "for p in [{path:?}]:\n    try:\n        print(open(p).read())\n    except Exception as e:\n        print('denied', e)"
        )
    };
    let cases: Vec<(&str, String)> = vec![
        ("read 0600 file", read(&b.private_file)),
        ("read world-readable file", read(&b.public_file)),
        (
            "unix socket",
            format!(
                "import socket\nfor a in ({:?}, '\\0' + {:?}):\n    try:\n        s = socket.socket(socket.AF_UNIX)\n        s.connect(a)\n        s.sendall(b'leak')\n        print('sent', a)\n    except Exception as e:\n        print('denied', e)",
                b.unix_path, b.abstract_name
            ),
        ),
        (
            "unix socketpair",
            "import socket\na, b = socket.socketpair()\nprint('socketpair made')".into(),
        ),
        (
            "internet sockets",
            format!(
                "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {}), timeout=1).sendall(b'leak')\nexcept Exception as e:\n    print('tcp denied', e)\ntry:\n    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'leak', ('127.0.0.1', {}))\nexcept Exception as e:\n    print('udp denied', e)",
                b.tcp_port, b.udp_port
            ),
        ),
        (
            "list processes",
            "import os\nfor p in sorted(os.listdir('/proc')):\n    if p.isdigit():\n        try:\n            print('PID', p, open('/proc/%s/cmdline' % p, 'rb').read()[:200])\n        except Exception as e:\n            print('PID', p, e)".into(),
        ),
        (
            "parent environment",
            format!(
                "import os\nprint(dict(os.environ))\nfor p in ['self', '1', str(os.getppid()), '{me}', '{sib}'] + os.listdir('/proc'):\n    try:\n        print(p, open('/proc/%s/environ' % p, 'rb').read())\n    except Exception as e:\n        print(p, 'denied', e)"
            ),
        ),
        (
            "ptrace sibling",
            format!(
                "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nfor pid in [{sib}, {me}, os.getppid(), 1] + [int(p) for p in os.listdir('/proc') if p.isdigit()]:\n    if pid != os.getpid():\n        print(pid, libc.ptrace(16, pid, 0, 0), ctypes.get_errno())\ntry:\n    print(open('/proc/{sib}/mem', 'rb').read(16))\nexcept Exception as e:\n    print('mem denied', e)"
            ),
        ),
        (
            "write outside",
            format!(
                "try:\n    open({:?}, 'w').write('x')\nexcept Exception as e:\n    print('denied', e)",
                b.write_target
            ),
        ),
        (
            "kill parent",
            format!(
                "import os, signal\nfor pid in (os.getppid(), 1, -1, 0, {me}, {sib}):\n    try:\n        os.kill(pid, signal.SIGKILL)\n    except Exception as e:\n        print(pid, 'denied', e)\nprint('still here')"
            ),
        ),
        (
            "fork bomb",
            "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(60)\n            os._exit(0)\n        n += 1\nexcept OSError as e:\n    print('FORKED', n, e)".into(),
        ),
        (
            "10 GB allocation",
            "x = bytearray(10 * 1024**3)\nprint('ALLOCATED', len(x))".into(),
        ),
        ("infinite loop", "while True:\n    pass".into()),
        ("output flood", "while True:\n    print('x' * 1000)".into()),
    ];
    let codes: Vec<&str> = cases.iter().map(|(_, c)| c.as_str()).collect();
    let t0 = std::time::Instant::now();
    let results = ex.run_many(&codes);
    let took = t0.elapsed();
    let secrets = [&b.private_secret, &b.public_secret, &b.env_secret];
    for ((name, _), r) in cases.iter().zip(&results) {
        println!(
            "{name}: ok={} error={:?} stdout={:?}",
            r.ok,
            r.error,
            r.stdout.chars().take(300).collect::<String>()
        );
        assert_eq!(r.sandbox, SandboxMode::Strict, "{name}");
        for s in secrets {
            assert!(
                !all_text(r).contains(s.as_str()),
                "{name}: leaked {s}: {r:?}"
            );
        }
    }
    let by = |n: &str| &results[cases.iter().position(|(c, _)| *c == n).unwrap()];
    // Each case ran (its own output is there) and had no effect.
    assert!(by("read 0600 file").stdout.contains("denied"));
    assert!(by("read world-readable file").stdout.contains("denied"));
    assert!(
        !by("unix socket").stdout.contains("sent"),
        "{:?}",
        by("unix socket")
    );
    assert!(!by("unix socketpair").stdout.contains("socketpair made"));
    assert!(by("internet sockets").stdout.contains("udp denied"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        b.received.load(Ordering::SeqCst),
        0,
        "a listener was reached"
    );
    let procs = by("list processes");
    assert!(procs.stdout.contains("PID"), "{procs:?}");
    assert!(
        !procs.stdout.contains("exec_containment") && !procs.stdout.contains("sleep"),
        "{procs:?}"
    );
    assert!(procs.stdout.matches("PID").count() <= 3, "{procs:?}");
    assert!(
        by("parent environment").ok,
        "{:?}",
        by("parent environment")
    );
    assert_eq!(tracer_of(sib), "0", "the sibling was ptraced");
    assert_eq!(tracer_of(me), "0", "this test was ptraced");
    assert!(
        !Path::new(&b.write_target).exists(),
        "the snippet wrote outside its temp dir"
    );
    assert!(by("kill parent").stdout.contains("still here"));
    let mut sibling = b.sibling;
    assert!(
        sibling.try_wait().unwrap().is_none(),
        "the sibling was killed"
    );
    let bomb = by("fork bomb");
    let forked: usize = bomb
        .stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the fork bomb did not report: {bomb:?}"));
    assert!(forked < 16, "{forked} processes forked past a limit of 16");
    let alloc = by("10 GB allocation");
    assert!(
        !alloc.stdout.contains("ALLOCATED")
            && alloc.error.as_deref().unwrap_or("").contains("MemoryError"),
        "{alloc:?}"
    );
    let inf = by("infinite loop");
    assert!(inf.timed_out && !inf.ok, "{inf:?}");
    let flood = by("output flood");
    assert!(
        !flood.ok && flood.stdout.len() <= cap,
        "{} bytes kept",
        flood.stdout.len()
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // The pool still works, and numpy/scipy/sympy load what they need inside the sandbox.
    let ok = ex.run("from sympy import Rational, integrate, Symbol\nimport numpy, scipy.special, scipy.linalg\nx = Symbol('x')\nprint(Rational(1, 3) + Rational(1, 6), integrate(x**2, (x, 0, 3)), numpy.linalg.det(numpy.eye(3)), round(float(scipy.special.gamma(5))), scipy.linalg.inv(numpy.eye(2))[0][0])");
    assert!(ok.ok, "{ok:?}");
    assert_eq!(ok.stdout.trim(), "1/2 9 1.0 24 1.0");
    drop(ex);
    let _ = sibling.kill();
    let _ = sibling.wait();
    let mut left = descendants();
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        left = descendants();
    }
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

/// Weak mode runs, and says so in every result.
#[test]
fn weak_mode_is_visible_in_every_result() {
    let Some(ex) = executor(ExecConfig {
        workers: 1,
        sandbox: SandboxMode::Weak,
        ..ExecConfig::default()
    }) else {
        return;
    };
    assert_eq!(ex.sandbox().mode, SandboxMode::Weak);
    let r = ex.run("print(6 * 7)");
    assert!(r.ok && r.stdout.trim() == "42", "{r:?}");
    assert_eq!(r.sandbox, SandboxMode::Weak);
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
#[test]
fn a_worker_that_dies_at_start_is_reported_with_its_stderr() {
    if std::env::var_os("RSTAR_PYTHON").is_some_and(|v| !v.is_empty()) {
        println!("SKIPPED: RSTAR_PYTHON overrides the configured interpreter");
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

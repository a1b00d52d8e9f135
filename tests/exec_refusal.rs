//! Fail closed: when a required sandbox layer cannot be set up, a strict executor refuses to run
//! code with a typed error naming the layer; a weak one runs, reports the layer missing and marks
//! every result `weak`. The layer is taken away for real: the interpreter is started through a
//! wrapper that installs a seccomp filter making `landlock_create_ruleset` fail with ENOSYS (as on
//! a kernel without Landlock) before it execs the real interpreter.

mod common;

use std::os::unix::fs::PermissionsExt;

use rstar::exec::{find_python, ExecConfig, Executor, SandboxMode};
use rstar::Error;

/// A Python script that hides Landlock from the interpreter it then execs.
const NO_LANDLOCK: &str = r#"import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
LD, JEQ, RET = 0x20, 0x15, 0x06
prog = [(LD, 0, 0, 0), (JEQ, 0, 1, 444), (RET, 0, 0, 0x00050000 | 38), (RET, 0, 0, 0x7FFF0000)]
raw = b"".join(struct.pack("HBBI", *i) for i in prog)
buf = ctypes.create_string_buffer(raw, len(raw))
class F(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
f = F(len(prog), ctypes.addressof(buf))
assert libc.prctl(38, 1, 0, 0, 0) == 0 and libc.prctl(22, 2, ctypes.byref(f), 0, 0) == 0
os.execv(REAL, [REAL] + sys.argv[1:])
"#;

fn wrapper(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    if std::env::consts::ARCH != "x86_64" {
        println!("SKIPPED: the wrapper's filter uses x86_64 syscall numbers");
        return None;
    }
    let real = find_python(None);
    let real = if real.is_absolute() {
        real
    } else {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .map(|d| d.join(&real))
            .find(|p| p.exists())?
    };
    let w = dir.join("python-without-landlock");
    let script = format!(
        "#!{} -I\nREAL = {:?}\n{NO_LANDLOCK}",
        real.display(),
        real.display().to_string()
    );
    std::fs::write(&w, script).unwrap();
    std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o755)).unwrap();
    Some(w)
}

#[test]
fn a_missing_layer_is_refused_unless_weak() {
    if std::env::var_os("RSTAR_PYTHON").is_some_and(|v| !v.is_empty()) {
        println!("SKIPPED: RSTAR_PYTHON overrides the configured interpreter");
        return;
    }
    // The real interpreter must work first, else there is nothing to take a layer from.
    if let Err(e) = Executor::new(ExecConfig {
        workers: 1,
        ..ExecConfig::default()
    }) {
        if !matches!(e, Error::Sandbox { .. }) {
            return common::python_missing(&e.to_string()).unwrap_or(());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(w) = wrapper(dir.path()) else {
        return;
    };
    let cfg = |sandbox| ExecConfig {
        python: Some(w.clone()),
        workers: 1,
        sandbox,
        ..ExecConfig::default()
    };
    match Executor::new(cfg(SandboxMode::Strict)) {
        Err(Error::Sandbox { layer, reason }) => {
            println!("refused: {layer}: {reason}");
            assert_eq!(layer, "landlock");
            assert!(reason.contains("Landlock"), "{reason}");
        }
        Err(e) => panic!("expected a sandbox refusal, got: {e}"),
        Ok(ex) => panic!("a strict executor without Landlock ran: {:?}", ex.sandbox()),
    }
    let ex = Executor::new(cfg(SandboxMode::Weak)).expect("a weak executor runs");
    let s = ex.sandbox();
    assert_eq!(s.mode, SandboxMode::Weak);
    assert!(!s.layers["landlock"].active, "{s:?}");
    assert_eq!(s.missing().len(), 1, "{:?}", s.missing());
    assert!(s.layers["seccomp"].active, "{s:?}");
    let r = ex.run("print(6 * 7)");
    assert!(r.ok && r.stdout.trim() == "42", "{r:?}");
    assert_eq!(r.sandbox, SandboxMode::Weak);
}

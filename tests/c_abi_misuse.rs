//! Builds tests/c/misuse_test.c with AddressSanitizer, UndefinedBehaviorSanitizer and
//! LeakSanitizer (the C side is instrumented; ASan's allocator also checks the library's
//! malloc/free) and runs it on the tiny model: C ABI misuse must come back as status codes,
//! and the v3 calls (grade, exec, caller's code runner, annotation mode) must work.

use std::path::{Path, PathBuf};
use std::process::Command;

fn target_dir() -> PathBuf {
    // .../target/<profile>/deps/c_abi_misuse-<hash>
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// The tiny model used by the binding tests: `$RSTAR_TINY_MODEL`, else `models/tiny` (a
/// directory with `policy/` and `ppm/`).
fn tiny_model(root: &Path) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("RSTAR_TINY_MODEL").map(PathBuf::from),
        Some(root.join("models/tiny")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|d| d.join("policy/config.json").is_file() && d.join("ppm").is_dir())
}

#[test]
fn c_abi_misuse_under_sanitizers() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lib_dir = target_dir();
    let so = lib_dir.join("librstar.so");
    if !so.is_file() {
        println!(
            "SKIPPED: {} not built (run `cargo build` first)",
            so.display()
        );
        return;
    }
    let Some(model) = tiny_model(&root) else {
        println!("SKIPPED: no tiny model (models/tiny or $RSTAR_TINY_MODEL)");
        return;
    };
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let exe = lib_dir.join("rstar_c_misuse_test");
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-O1"])
        .args(["-fsanitize=address,undefined", "-fno-sanitize-recover=all"])
        .arg("-fno-omit-frame-pointer")
        .arg(root.join("tests/c/misuse_test.c"))
        .arg(format!("-I{}", root.join("include").display()))
        .arg(format!("-L{}", lib_dir.display()))
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .args(["-lrstar", "-lpthread", "-o"])
        .arg(&exe)
        .status()
        .expect("a C compiler (cc)");
    assert!(status.success(), "misuse_test.c failed to compile");
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(&exe)
        .arg(model.join("policy"))
        .arg(model.join("ppm"))
        .arg(work.path())
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:exitcode=23",
        )
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let executor_missing = stderr.contains("cannot import") || stderr.contains("no Python");
    if !out.status.success()
        && executor_missing
        && std::env::var_os("RSTAR_REQUIRE_PYTHON").is_none()
    {
        println!("SKIPPED: the Python executor is unavailable:\n{stderr}");
        return;
    }
    assert!(
        out.status.success() && stdout.contains("misuse: ok"),
        "misuse test failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        !stderr.contains("Sanitizer") && !stderr.contains("runtime error"),
        "sanitizer report:\n{stderr}"
    );
}

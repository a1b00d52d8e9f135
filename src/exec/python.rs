//! The Python environment the executor runs: where it is looked for and how `rstar setup-python`
//! makes one (a venv with sympy, numpy and scipy from PyPI in the user cache directory).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// Packages a step may import (rStar's prompt names math, sympy, scipy, numpy).
pub const STEP_PACKAGES: &[&str] = &["sympy", "numpy", "scipy"];

/// `$XDG_CACHE_HOME/rstar/python`, else `~/.cache/rstar/python`, else `./.rstar-python`.
pub fn default_venv_dir() -> PathBuf {
    let nonempty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(x) = nonempty("XDG_CACHE_HOME") {
        return x.join("rstar").join("python");
    }
    if let Some(h) = nonempty("HOME") {
        return h.join(".cache").join("rstar").join("python");
    }
    PathBuf::from(".rstar-python")
}

/// The interpreter inside a venv directory.
pub fn venv_python(dir: &Path) -> PathBuf {
    if cfg!(windows) {
        dir.join("Scripts").join("python.exe")
    } else {
        dir.join("bin").join("python")
    }
}

/// The interpreter to use: `RSTAR_PYTHON`, else `configured`, else the default venv if it
/// exists, else `python3` from PATH.
pub fn find_python(configured: Option<&Path>) -> PathBuf {
    if let Some(p) = std::env::var_os("RSTAR_PYTHON").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = configured {
        return p.to_path_buf();
    }
    let venv = venv_python(&default_venv_dir());
    if venv.exists() {
        return venv;
    }
    PathBuf::from("python3")
}

fn run_step(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .map_err(|e| Error::Exec(format!("{what}: cannot run {:?}: {e}", cmd.get_program())))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Exec(format!("{what} failed ({status})")))
    }
}

/// Creates (or updates) a venv at `dir` with `base_python` and installs [`STEP_PACKAGES`] from
/// PyPI; returns the venv's interpreter. Progress goes to the caller's stdout/stderr.
pub fn setup_venv(dir: &Path, base_python: &Path) -> Result<PathBuf> {
    let py = venv_python(dir);
    if !py.exists() {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        run_step(
            Command::new(base_python).arg("-m").arg("venv").arg(dir),
            "creating the venv (on Debian: apt-get install python3-venv)",
        )?;
    }
    run_step(
        Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(STEP_PACKAGES),
        "pip install sympy numpy scipy",
    )?;
    run_step(
        Command::new(&py).args(["-c", "import sympy, numpy, scipy"]),
        "checking the installed packages",
    )?;
    Ok(py)
}

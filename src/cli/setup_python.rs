//! `rstar setup-python`: make the venv the executor uses (sympy, numpy, scipy from PyPI).

use std::path::PathBuf;

use clap::Args;
use rstar::exec::{default_venv_dir, python::setup_venv};
use rstar::Result;

#[derive(Args, Debug)]
pub struct SetupPythonArgs {
    /// Where to create the venv (default: $XDG_CACHE_HOME/rstar/python or ~/.cache/rstar/python).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Interpreter that creates the venv.
    #[arg(long, default_value = "python3")]
    pub python: PathBuf,
}

pub fn run(args: SetupPythonArgs) -> Result<()> {
    let dir = args.dir.unwrap_or_else(default_venv_dir);
    let py = setup_venv(&dir, &args.python)?;
    println!("{}", py.display());
    Ok(())
}

//! `rstar exec`: run Python code from stdin in the sandboxed executor.

use std::io::Read;

use clap::Args;
use rstar::exec::{ExecConfig, SandboxMode};
use rstar::{Error, Result};

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Wall-clock limit in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// `strict` refuses to run when a sandbox layer is missing; `weak` runs anyway (reported).
    #[arg(long, default_value = "strict")]
    pub sandbox: SandboxMode,
}

pub fn run(args: ExecArgs) -> Result<()> {
    let mut code = String::new();
    std::io::stdin()
        .read_to_string(&mut code)
        .map_err(|e| Error::io("<stdin>", e))?;
    let r = rstar::exec::run_once(
        &code,
        ExecConfig {
            timeout_s: args.timeout,
            require_sympy: false,
            sandbox: args.sandbox,
            ..ExecConfig::default()
        },
    )?;
    println!(
        "{}",
        serde_json::to_string(&r).map_err(|e| Error::Internal(e.to_string()))?
    );
    Ok(())
}

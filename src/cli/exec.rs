//! `rstar exec`: run Python code from stdin in the sandboxed executor.

use std::io::Read;

use clap::Args;
use rstar::exec::{ExecConfig, Executor, SandboxMode};
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
    let ex = Executor::new(ExecConfig {
        workers: 1,
        timeout_s: args.timeout,
        require_sympy: false,
        sandbox: args.sandbox,
        ..ExecConfig::default()
    })?;
    let r = ex.run(&code);
    println!(
        "{}",
        serde_json::json!({
            "ok": r.ok, "output": r.stdout, "error": r.error, "elapsed_ms": r.elapsed_ms,
            "sandbox": ex.sandbox(),
        })
    );
    Ok(())
}

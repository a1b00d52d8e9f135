//! Executor throughput: the warm forked pool against spawning one interpreter per snippet.

use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Serialize;

use super::{find_python, ExecConfig, Executor};
use crate::{Error, Result};

/// A typical rStar step program: imports sympy, a few exact computations, one print.
pub const TYPICAL_STEP: &str = "from sympy import symbols, Rational, sqrt, expand
# Step 1: define the side lengths
a = Rational(3, 4)
b = sqrt(2) * a
x = symbols('x')
# Step 2: expand the expression and evaluate it at x = 2
result = expand((x + b)**2 - x**2)
# Now print the final answer
print(result, result.subs(x, 2))
";
/// How much to run.
#[derive(Debug, Clone)]
pub struct BenchExecConfig {
    pub n_pool: usize,
    pub n_spawn: usize,
    /// 0: number of CPUs.
    pub workers: usize,
}

/// Measured rates.
#[derive(Debug, Clone, Serialize)]
pub struct BenchExecReport {
    pub snippet: &'static str,
    pub python: String,
    pub workers: usize,
    pub pool_runs: usize,
    pub pool_per_s: f64,
    pub spawn_runs: usize,
    pub spawn_per_s: f64,
    pub ratio: f64,
    pub failures: usize,
}

/// Runs [`TYPICAL_STEP`] through a warm pool (after start-up) and by spawning the interpreter.
pub fn bench_exec(cfg: &BenchExecConfig) -> Result<BenchExecReport> {
    let ex = Executor::new(ExecConfig {
        workers: cfg.workers,
        ..ExecConfig::default()
    })?;
    let workers = ex.worker_count();
    // one warm-up round so every worker has served once
    let _ = ex.run_many(&vec![TYPICAL_STEP; workers]);
    let codes = vec![TYPICAL_STEP; cfg.n_pool.max(1)];
    let t = Instant::now();
    let results = ex.run_many(&codes);
    let pool_s = t.elapsed().as_secs_f64();
    let failures = results.iter().filter(|r| !r.ok).count();
    let python = find_python(ex.config().python.as_deref());
    drop(ex);
    let n_spawn = cfg.n_spawn.max(1);
    let t = Instant::now();
    for _ in 0..n_spawn {
        let st = Command::new(&python)
            .arg("-c")
            .arg(TYPICAL_STEP)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| Error::Exec(format!("spawning {}: {e}", python.display())))?;
        if !st.success() {
            return Err(Error::Exec(format!(
                "{} failed on the benchmark snippet",
                python.display()
            )));
        }
    }
    let spawn_s = t.elapsed().as_secs_f64();
    let pool_per_s = codes.len() as f64 / pool_s;
    let spawn_per_s = n_spawn as f64 / spawn_s;
    Ok(BenchExecReport {
        snippet: TYPICAL_STEP,
        python: python.display().to_string(),
        workers,
        pool_runs: codes.len(),
        pool_per_s,
        spawn_runs: n_spawn,
        spawn_per_s,
        ratio: pool_per_s / spawn_per_s,
        failures,
    })
}

//! Executor throughput: the warm forked pool against spawning one interpreter per snippet (the
//! floor: a cold `python3` start each time) and against `exec` in one warm interpreter without
//! any isolation (the ceiling: rStar's own in-process way, one process).

use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Serialize;

use crate::exec::{find_python, ExecConfig, Executor};
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

/// The benchmark's step programs, all importing sympy: exact arithmetic and expansion, a linear
/// equation, a rational series, number theory, a 2x2 matrix. `{a}`..`{e}` are replaced by numbers
/// that change from run to run ([`bench_snippet`]), so that no cache (sympy's, or one warmed up
/// in the worker) can answer a step it has seen before.
pub const STEP_TEMPLATES: [&str; 5] = [
    "from sympy import symbols, Rational, sqrt, expand
# Step 1: define the side lengths
a = Rational({a}, {b})
b = sqrt({c}) * a
x = symbols('x')
# Step 2: expand the expression and evaluate it at x = {d}
result = expand((x + b)**2 - x**2)
# Now print the final answer
print(result, result.subs(x, {d}))
",
    "from sympy import symbols, Eq, solve
# Step 1: set up the equation {a}x + {b} = {c}
x = symbols('x')
solution = solve(Eq({a} * x + {b}, {c}), x)
# Now print the final answer
print(solution[0])
",
    "from sympy import Rational
# Step 1: add up the terms 1/(k(k+{d})) for k = 1..{e}
total = sum(Rational(1, k * (k + {d})) for k in range(1, {e} + 1))
# Now print the final answer
print(total)
",
    "from sympy import divisors, factorint, gcd
# Step 1: factor n and add up its divisors
n = {a} * {e}
factors = factorint(n)
# Now print the final answer
print(factors, sum(divisors(n)), gcd(n, {c}))
",
    "from sympy import Matrix, Rational
# Step 1: the coefficient matrix
M = Matrix([[{a}, {b}], [{c}, Rational({d}, {e})]])
# Now print the determinant and the inverse
print(M.det(), M.inv())
",
];

/// Run `i` of the benchmark: template `i % 5` with numbers derived from `i`.
pub fn bench_snippet(i: usize) -> String {
    let t = STEP_TEMPLATES[i % STEP_TEMPLATES.len()];
    let j = i / STEP_TEMPLATES.len();
    let a = 2 + j % 37;
    let b = 3 + (j * 7) % 41;
    let c = 2 + (j * 13) % 53;
    let d = 1 + (j * 5) % 9;
    let e = 10 + (j * 11) % 31;
    t.replace("{a}", &a.to_string())
        .replace("{b}", &b.to_string())
        .replace("{c}", &c.to_string())
        .replace("{d}", &d.to_string())
        .replace("{e}", &e.to_string())
}

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
    /// The step programs the runs rotate through, numbers varied per run ([`bench_snippet`]).
    pub snippets: Vec<&'static str>,
    pub python: String,
    pub workers: usize,
    pub pool_runs: usize,
    pub pool_per_s: f64,
    pub spawn_runs: usize,
    pub spawn_per_s: f64,
    /// Pool over spawn.
    pub ratio: f64,
    pub failures: usize,
    /// The same snippets `exec`ed one after another in one warm interpreter, no sandbox, no
    /// fork (after one warm-up snippet): the ceiling of any isolation, per process.
    pub in_process_runs: usize,
    pub in_process_per_s: f64,
    /// Pool over in-process (the pool runs `workers` processes at once).
    pub pool_vs_in_process: f64,
}

/// Runs the snippets of stdin (a JSON list) through `exec` in this interpreter, stdout captured,
/// the first as warm-up; prints `{"seconds": s, "failures": n}` for the rest.
const IN_PROCESS_DRIVER: &str = r#"
import contextlib, io, json, sys, time
codes = json.load(sys.stdin)
def run(code):
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            exec(code, {"__name__": "__main__"})
        return True
    except Exception:
        return False
run(codes[0])
t = time.perf_counter()
failures = sum(not run(c) for c in codes[1:])
print(json.dumps({"seconds": time.perf_counter() - t, "failures": failures}))
"#;

/// `n` snippets `exec`ed in one warm `python` process; returns snippets per second.
fn in_process_rate(python: &std::path::Path, n: usize) -> Result<f64> {
    use std::io::Write;
    let err = |m: String| Error::Exec(format!("in-process ceiling with {}: {m}", python.display()));
    let mut codes = vec![bench_snippet(2_000_000)];
    codes.extend((0..n).map(bench_snippet));
    let mut child = Command::new(python)
        .arg("-c")
        .arg(IN_PROCESS_DRIVER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("spawning: {e}")))?;
    let input = serde_json::to_vec(&codes).map_err(|e| err(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&input).map_err(|e| err(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        err(format!(
            "{e}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    })?;
    match (v["seconds"].as_f64(), v["failures"].as_u64()) {
        (Some(s), Some(0)) if s > 0.0 => Ok(n as f64 / s),
        _ => Err(err(format!("the snippets did not all run: {v}"))),
    }
}

/// Runs the [`STEP_TEMPLATES`] rotation (numbers varied per run) through a warm pool, after
/// start-up and one warm-up round of other numbers, and by spawning the interpreter per snippet.
pub fn bench_exec(cfg: &BenchExecConfig) -> Result<BenchExecReport> {
    let ex = Executor::new(ExecConfig {
        workers: cfg.workers,
        ..ExecConfig::default()
    })?;
    let workers = ex.worker_count();
    // one warm-up round so every worker has served once (runs numbered after the measured ones)
    let warm: Vec<String> = (0..workers).map(|i| bench_snippet(1_000_000 + i)).collect();
    let _ = ex.run_many(&warm);
    let codes: Vec<String> = (0..cfg.n_pool.max(1)).map(bench_snippet).collect();
    let t = Instant::now();
    let results = ex.run_many(&codes);
    let pool_s = t.elapsed().as_secs_f64();
    let failures = results.iter().filter(|r| !r.ok).count();
    let python = find_python(ex.config().python.as_deref());
    drop(ex);
    let n_spawn = cfg.n_spawn.max(1);
    let t = Instant::now();
    for i in 0..n_spawn {
        let st = Command::new(&python)
            .arg("-c")
            .arg(bench_snippet(i))
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
    let in_process_per_s = in_process_rate(&python, codes.len())?;
    Ok(BenchExecReport {
        snippets: STEP_TEMPLATES.to_vec(),
        python: python.display().to_string(),
        workers,
        pool_runs: codes.len(),
        pool_per_s,
        spawn_runs: n_spawn,
        spawn_per_s,
        ratio: pool_per_s / spawn_per_s,
        failures,
        in_process_runs: codes.len(),
        in_process_per_s,
        pool_vs_in_process: pool_per_s / in_process_per_s,
    })
}

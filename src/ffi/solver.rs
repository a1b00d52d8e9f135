//! The solver handle of the C ABI: `rstar_solver_*` over [`crate::search::solver::Solver`]
//! (test-time search: MCTS, beam, best-of-N or greedy, with votes over runs; MCTS annotation for
//! data synthesis), and the caller's code runner (`rstar_code_runner`). Only parses and converts:
//! what the solver loads and how it searches is resolved by `Solver::new`.

use std::ffi::{c_char, c_void};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use super::{
    arg, c_str, fill_params, guard, new_c_string, out, precision_param, read_params, sandbox_param,
};
use crate::backend::cpu::Compute;
use crate::data::problems::{problem_from_record, Problem};
use crate::error::{Error, Result, Status};
use crate::exec::{ExecConfig, ExecResult, SandboxMode};
use crate::search::api::StepRunner;
use crate::search::eval::Progress;
use crate::search::solver::{CodeRunner, Purpose, Settings, Solver, SolverOptions};

/// Problems searched together by `rstar_solver_run_dataset`.
const DATASET_BATCH: usize = 8;

/// `rstar_solver_params.mode`: test-time search (the default).
pub const RSTAR_SOLVER_MODE_INFERENCE: u32 = 0;
/// `rstar_solver_params.mode`: MCTS annotation for data synthesis (needs `policy`):
/// `rstar_solver_run_dataset` writes annotated trees as JSONL and resumes a partial file.
pub const RSTAR_SOLVER_MODE_ANNOTATION: u32 = 1;

/// A policy (+ optional PPM) with a search configuration and a code runner.
///
/// Thread-safety: `rstar_solver_solve` and `rstar_solver_run_dataset` on one solver are
/// serialised by an internal lock (a second thread waits for the first call to return);
/// `rstar_solver_cancel` may be called from any thread at any time, also during those calls.
/// Different solvers may be used from different threads at once. `rstar_solver_free` must not
/// race any other call on the same solver.
///
/// Callbacks: the progress callback of `rstar_solver_run_dataset` and the solver's
/// `rstar_code_runner` run on a library thread (or the calling thread) while the calling thread
/// is blocked in the call; for one solver they are never called concurrently.
pub struct rstar_solver {
    inner: Mutex<Solver>,
    cancel: Arc<AtomicBool>,
    /// Precision and threads of the searches (`rstar_solver_params`; see `Compute::run`).
    compute: Compute,
    /// `RSTAR_SOLVER_MODE_*` the solver was made for.
    mode: u32,
}

/// Where a `rstar_code_runner` puts the outcome of one program: set with
/// `rstar_code_result_set` during the callback. Owned by the library.
pub struct rstar_code_result {
    result: Option<ExecResult>,
}

/// Runs one program of a search step instead of the built-in sandbox. `code` is `len` bytes of
/// UTF-8 Python followed by a NUL, valid only during the call; `timeout_s` is the step's time
/// limit. Report the outcome with `rstar_code_result_set(result, ...)`; a runner that sets
/// nothing makes the step fail. Must not unwind (no C++ exception, no longjmp) out of the call.
pub type rstar_code_runner = Option<
    unsafe extern "C" fn(
        code: *const c_char,
        len: usize,
        timeout_s: f64,
        result: *mut rstar_code_result,
        user_data: *mut c_void,
    ),
>;

/// How a solver is made. Fill with `rstar_solver_default_params`, then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rstar_solver_params {
    /// sizeof(rstar_solver_params), set by rstar_solver_default_params.
    pub struct_size: u32,
    /// Policy model directory or .gguf, or a name (`tiny`, `qwen2.5-coder-1.5b`); NULL = the
    /// default model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, fetched once into the asset cache, or
    /// `$RSTAR_DEFAULT_MODEL`). A Qwen2.5 instruct policy gets the `qwen2.5` search preset under
    /// `config`; `tiny` brings its PPM (when `ppm` is NULL) and its search settings (when
    /// `config` is NULL).
    pub policy: *const c_char,
    /// Process preference model directory, or NULL.
    pub ppm: *const c_char,
    /// Search configuration text (JSON object or TOML, the keys of `rstar --help`'s `--config`),
    /// or NULL for the defaults; an unknown key is `RSTAR_STATUS_FORMAT` naming it.
    pub config: *const c_char,
    /// "cpu", "cuda" or "cuda:N"; NULL = the configuration's device.
    pub device: *const c_char,
    /// Matmul precision: 0 exact (default), 1 fast (bf16 activations where the CPU has them).
    pub precision: u32,
    /// Compute threads: 0 = one per core (default); more than 1024 is invalid.
    pub threads: u32,
    /// Sandboxed Python workers (programs run at once): 0 = one per core (default).
    pub executor_workers: u32,
    /// Time limit per step's program in seconds; 0 = the configuration's `exec_timeout_s`.
    pub step_timeout_s: f64,
    /// Address-space limit per step's program in bytes; 0 = the default (2 GiB).
    pub step_memory_bytes: u64,
    /// `RSTAR_SOLVER_MODE_INFERENCE` (default) or `RSTAR_SOLVER_MODE_ANNOTATION`.
    pub mode: u32,
    /// 0: refuse to run code when a sandbox layer is missing (default); 1: run with the layers
    /// that could be set up (weaker isolation, reported in every result).
    pub weak_sandbox: u32,
    /// Runs the steps' programs instead of the built-in sandbox when not NULL.
    pub code_runner: rstar_code_runner,
    /// Passed to `code_runner` untouched.
    pub code_runner_user_data: *mut c_void,
    /// KV cache element type of the policy's and the PPM's engines: 0 f32 (the default), 1 f16,
    /// 2 bf16 (half the memory, K/V rounded; CPU only).
    pub kv_dtype: u32,
    /// Quantized GGUF policy weights: 0 the configuration's `quant_load` (in place unless it
    /// says `expand`), 1 expanded to f32 at load (6-8x the memory). The environment's
    /// `RSTAR_GGUF_EXPAND=1` (or `=0`) overrides both.
    pub quant_load: u32,
}

/// Progress of `rstar_solver_run_dataset`, passed to `rstar_solver_callback`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rstar_solver_progress {
    /// sizeof(rstar_solver_progress) as the library was built; fields may be added at the end.
    pub struct_size: u32,
    /// Problems finished.
    pub done: u64,
    /// Problems in the run.
    pub total: u64,
    /// Problems whose PPM-best answer is correct so far.
    pub solved: u64,
    /// Search runs finished (problems × runs; MCTS rollouts count per problem).
    pub rollouts: u64,
    /// Tokens the policy generated.
    pub tokens: u64,
    pub elapsed_secs: f64,
}

impl From<&Progress> for rstar_solver_progress {
    fn from(p: &Progress) -> Self {
        rstar_solver_progress {
            struct_size: std::mem::size_of::<rstar_solver_progress>() as u32,
            done: p.done as u64,
            total: p.total as u64,
            solved: p.solved as u64,
            rollouts: p.rollouts,
            tokens: p.tokens,
            elapsed_secs: p.elapsed_s,
        }
    }
}

/// Called after every search step and every finished batch of problems (progress valid only
/// during the call). Return false to cancel: the call then returns `RSTAR_STATUS_CANCELLED`.
pub type rstar_solver_callback = Option<
    unsafe extern "C" fn(progress: *const rstar_solver_progress, user_data: *mut c_void) -> bool,
>;

fn lock(s: &rstar_solver) -> Result<std::sync::MutexGuard<'_, Solver>> {
    s.inner
        .lock()
        .map_err(|_| Error::Internal("a previous call on this solver panicked".into()))
}

/// `sizeof(rstar_solver_params)` in ABI version 3 (before `kv_dtype` and `quant_load`).
const SOLVER_PARAMS_EARLIER: &[usize] = &[super::size_before!(rstar_solver_params, kv_dtype)];

fn default_solver_params() -> rstar_solver_params {
    rstar_solver_params {
        struct_size: std::mem::size_of::<rstar_solver_params>() as u32,
        policy: std::ptr::null(),
        ppm: std::ptr::null(),
        config: std::ptr::null(),
        device: std::ptr::null(),
        precision: 0,
        threads: 0,
        executor_workers: 0,
        step_timeout_s: 0.0,
        step_memory_bytes: 0,
        mode: RSTAR_SOLVER_MODE_INFERENCE,
        weak_sandbox: 0,
        code_runner: None,
        code_runner_user_data: std::ptr::null_mut(),
        kv_dtype: 0,
        quant_load: 0,
    }
}

/// Fills `params` with defaults and sets `struct_size`. Set `params->struct_size =
/// sizeof(rstar_solver_params)` first: a newer library then fills only the fields of the caller's
/// (older, smaller) struct and leaves `struct_size` as it is. Any other `struct_size` (0,
/// uninitialised) gets the whole struct of this library's header.
///
/// # Safety
/// `params` is NULL (ignored) or a writable `rstar_solver_params` of this header, or of an older
/// one with `struct_size` set to its sizeof.
#[no_mangle]
pub unsafe extern "C" fn rstar_solver_default_params(params: *mut rstar_solver_params) {
    // SAFETY: NULL, or writable for the size `fill_params` reads from it, per the contract.
    unsafe { fill_params(params, default_solver_params(), SOLVER_PARAMS_EARLIER) }
}

/// The caller's `rstar_code_runner` as the search's step runner.
struct CallerRunner {
    run: unsafe extern "C" fn(*const c_char, usize, f64, *mut rstar_code_result, *mut c_void),
    user_data: *mut c_void,
    /// The resolved per-step time limit (f64 bits), set once the solver's configuration is known.
    timeout_s: std::sync::atomic::AtomicU64,
}

// SAFETY: the header tells callers that the runner is called from a library thread, one call at
// a time per solver (the solver's lock serialises the searches that call it).
unsafe impl Send for CallerRunner {}
// SAFETY: as for Send: the search calls `run_many` from one thread at a time.
unsafe impl Sync for CallerRunner {}

impl StepRunner for CallerRunner {
    fn run_many(&self, programs: &[String]) -> Vec<ExecResult> {
        programs.iter().map(|p| self.run_one(p)).collect()
    }
}

impl CallerRunner {
    fn run_one(&self, code: &str) -> ExecResult {
        let mut buf = Vec::with_capacity(code.len() + 1);
        buf.extend_from_slice(code.as_bytes());
        buf.push(0);
        let mut slot = rstar_code_result { result: None };
        let t0 = std::time::Instant::now();
        // SAFETY: a valid function per the header's contract; `buf` is NUL-terminated and
        // `slot` outlives the call.
        unsafe {
            (self.run)(
                buf.as_ptr() as *const c_char,
                code.len(),
                f64::from_bits(self.timeout_s.load(Ordering::Relaxed)),
                &mut slot,
                self.user_data,
            )
        };
        let mut r = slot.result.unwrap_or_else(|| {
            exec_result(false, "", Some("CodeRunnerError: the runner set no result"))
        });
        r.elapsed_ms = t0.elapsed().as_secs_f64() * 1e3;
        r
    }
}

fn exec_result(ok: bool, stdout: &str, error: Option<&str>) -> ExecResult {
    ExecResult {
        ok,
        stdout: stdout.into(),
        stderr: String::new(),
        error: error.map(str::to_owned),
        exit: None,
        signal: None,
        timed_out: false,
        elapsed_ms: 0.0,
        sandbox: SandboxMode::Weak,
    }
}

/// Reports the outcome of one program from inside a `rstar_code_runner`: `ok` when it ran to the
/// end without an exception, `output` its stdout (NULL = ""), `error` (NULL when ok) the
/// exception as `"<Type>: <message>"`. The strings are copied. A second call replaces the first.
///
/// # Safety
/// `result` is the pointer the runner was given, during the runner's call; `output` and `error`
/// are NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn rstar_code_result_set(
    result: *mut rstar_code_result,
    ok: bool,
    output: *const c_char,
    error: *const c_char,
) -> Status {
    guard(|| {
        let r = out(result, "result")?;
        let text = |p: *const c_char, name: &str| -> Result<Option<&str>> {
            Ok(match p.is_null() {
                true => None,
                false => Some(c_str(p, name)?),
            })
        };
        let output = text(output, "output")?.unwrap_or("");
        let error = text(error, "error")?;
        let error = match (ok, error) {
            (false, None) => Some("Error: the code runner reported a failure"),
            (_, e) => e,
        };
        r.result = Some(exec_result(ok, output, error));
        Ok(())
    })
}

fn opt_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>> {
    Ok(match p.is_null() {
        true => None,
        false => Some(c_str(p, what)?),
    })
}

/// `rstar_solver_params` as solver options, and the caller's runner when it has one.
fn solver_options(p: &rstar_solver_params) -> Result<(SolverOptions, Option<Arc<CallerRunner>>)> {
    let mut overrides = Map::new();
    if let Some(d) = opt_str(p.device, "params.device")? {
        overrides.insert("device".into(), Value::from(d));
    }
    if super::quant_load_param(p.quant_load)? == crate::engine::QuantLoad::Expand {
        overrides.insert("quant_load".into(), Value::from("expand"));
    }
    if p.step_timeout_s != 0.0 {
        if !(p.step_timeout_s.is_finite() && p.step_timeout_s > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "params.step_timeout_s {}: expected > 0 seconds (0 = the configuration's)",
                p.step_timeout_s
            )));
        }
        overrides.insert("exec_timeout_s".into(), Value::from(p.step_timeout_s));
    }
    let purpose = match p.mode {
        RSTAR_SOLVER_MODE_INFERENCE => Purpose::TestTime,
        RSTAR_SOLVER_MODE_ANNOTATION => Purpose::Synthesis,
        m => {
            return Err(Error::InvalidArgument(format!(
                "params.mode {m}: expected 0 (inference) or 1 (annotation)"
            )))
        }
    };
    let sandbox = sandbox_param(p.weak_sandbox)?;
    let defaults = ExecConfig::default();
    let caller = p.code_runner.map(|run| {
        Arc::new(CallerRunner {
            run,
            user_data: p.code_runner_user_data,
            timeout_s: Default::default(),
        })
    });
    let runner = match &caller {
        Some(c) => CodeRunner::Custom(c.clone()),
        None => CodeRunner::Sandbox(ExecConfig {
            workers: p.executor_workers as usize,
            memory_bytes: match p.step_memory_bytes {
                0 => defaults.memory_bytes,
                m => m,
            },
            sandbox,
            ..defaults
        }),
    };
    let opts = SolverOptions {
        policy: opt_str(p.policy, "params.policy")?.map(PathBuf::from),
        ppm: opt_str(p.ppm, "params.ppm")?.map(PathBuf::from),
        settings: opt_str(p.config, "params.config")?.map(|t| Settings::Text(t.to_owned())),
        overrides,
        purpose,
        runner,
    };
    Ok((opts, caller))
}

/// Creates a solver from `params` (NULL = all defaults: the default model, inference): loads the
/// policy and the PPM, starts the sandboxed Python executor unless `params.code_runner` is set.
/// `RSTAR_STATUS_INVALID_ARGUMENT` names a bad field (also a NULL policy in annotation mode, or a
/// missing default model), `RSTAR_STATUS_FORMAT` a bad configuration key, `RSTAR_STATUS_EXEC`
/// an executor that cannot start (or refuses to: a sandbox layer missing in strict mode). On
/// success `*out` owns the solver; free it with `rstar_solver_free`.
///
/// # Safety
/// `params` is NULL or filled by `rstar_solver_default_params` (its strings NULL or
/// NUL-terminated UTF-8, valid for the call; `code_runner` NULL or a valid function that stays
/// valid, with its `user_data`, until the solver is freed); `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rstar_solver_new_with_params(
    params: *const rstar_solver_params,
    out: *mut *mut rstar_solver,
) -> Status {
    guard(|| {
        let out = self::out(out, "out")?;
        *out = std::ptr::null_mut();
        let p = read_params(params, default_solver_params())?;
        let (opts, caller) = solver_options(&p)?;
        let precision = precision_param(p.precision)?;
        let compute = Compute::new(precision, p.threads as usize, "params.threads")?
            .with_kv_dtype(super::kv_dtype_param(p.kv_dtype)?);
        let solver = compute.run(|| Solver::new(opts))?;
        if let Some(c) = caller {
            let t = solver.config().exec_timeout_s;
            c.timeout_s.store(t.to_bits(), Ordering::Relaxed);
        }
        let cancel = solver.cancel_flag();
        *out = super::new_handle(
            rstar_solver {
                inner: Mutex::new(solver),
                cancel,
                compute,
                mode: p.mode,
            },
            "solver",
        );
        Ok(())
    })
}

/// The ABI v2 constructor, kept: as `rstar_solver_new_with_params` with `policy`, `ppm` and
/// `config` set and every other field at its default (inference mode).
///
/// # Safety
/// `policy_path`, `ppm_path` and `config` are NULL or NUL-terminated UTF-8; `out` points to
/// writable storage for a pointer.
#[no_mangle]
pub unsafe extern "C" fn rstar_solver_new(
    policy_path: *const c_char,
    ppm_path: *const c_char,
    config: *const c_char,
    out: *mut *mut rstar_solver,
) -> Status {
    let p = rstar_solver_params {
        policy: policy_path,
        ppm: ppm_path,
        config,
        ..default_solver_params()
    };
    // SAFETY: the caller's guarantees on the strings and `out` are those this call needs.
    unsafe { rstar_solver_new_with_params(&p, out) }
}

/// Solves one question. On success `*result_json` receives a JSON object to free with
/// `rstar_string_free`: `{"question", "answer" (PPM-best, or null), "pass1", "majority",
/// "weighted", "k", "trajectories": [{"run", "tag", "answer", "value", "solution"}], "stats",
/// "engine"}`. Returns `RSTAR_STATUS_CANCELLED` when `rstar_solver_cancel` was called (during
/// the call, or since the last call returned). The search runs in inference mode, also on a
/// solver made for annotation.
///
/// # Safety
/// `solver` is a live solver; `question` is NUL-terminated UTF-8; `result_json` is writable.
#[no_mangle]
pub unsafe extern "C" fn rstar_solver_solve(
    solver: *mut rstar_solver,
    question: *const c_char,
    result_json: *mut *mut c_char,
) -> Status {
    guard(|| {
        let result = out(result_json, "result_json")?;
        *result = std::ptr::null_mut();
        let s = arg(solver, "solver")?;
        let q = c_str(question, "question")?;
        let mut solver = lock(s)?;
        let solver = &mut *solver;
        let solution = s.compute.run(|| solver.solve(q))?;
        *result = new_c_string(&super::to_json(&solution)?);
        Ok(())
    })
}

/// Runs a problem file (a JSON list, `{"example": [...]}` or JSONL of `{question, answer}`),
/// 8 problems in lock-step. `callback` (may be NULL) gets progress; returning false, or
/// `rstar_solver_cancel`, stops the run with `RSTAR_STATUS_CANCELLED` (lines already written
/// stay). The summary, when `summary_json` is not NULL, is freed with `rstar_string_free`.
///
/// Inference mode (evaluation): the first `limit` problems (0 = all); when `results_path` is not
/// NULL, one JSON line per problem is written there (the file is overwritten). Summary:
/// `{"accuracy": {"problems", "pass1", "majority", "weighted", "ppm_best", "any"} (counts),
/// "vote_size", "runs", "search", "stats", "tokens"}`.
///
/// Annotation mode (data synthesis, as `rstar mcts`): `results_path` is required and receives
/// one annotated search tree per problem as JSONL; problems already in the file are skipped, so
/// a cancelled or crashed run resumes where it stopped. `limit` must be 0. Summary:
/// `{"problems", "skipped", "solved", "stats", "tokens"}`.
///
/// # Safety
/// `solver` is live; `data_path` is NUL-terminated UTF-8; `results_path` is NULL or
/// NUL-terminated UTF-8; `callback` is NULL or a valid function; `user_data` is passed through
/// untouched; `summary_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rstar_solver_run_dataset(
    solver: *mut rstar_solver,
    data_path: *const c_char,
    limit: usize,
    results_path: *const c_char,
    callback: rstar_solver_callback,
    user_data: *mut c_void,
    summary_json: *mut *mut c_char,
) -> Status {
    guard(|| {
        if !summary_json.is_null() {
            *out(summary_json, "summary_json")? = std::ptr::null_mut();
        }
        let s = arg(solver, "solver")?;
        let data = c_str(data_path, "data_path")?;
        let results = if results_path.is_null() {
            None
        } else {
            Some(Path::new(c_str(results_path, "results_path")?))
        };
        let mut call = |p: &Progress| match callback {
            Some(cb) => {
                let cp = rstar_solver_progress::from(p);
                // SAFETY: the caller guarantees `cb` is a valid function taking these
                // arguments; `cp` lives for the duration of the call.
                unsafe { cb(&cp, user_data) }
            }
            None => true,
        };
        let annotate = s.mode == RSTAR_SOLVER_MODE_ANNOTATION;
        if annotate && (results.is_none() || limit != 0) {
            return Err(Error::InvalidArgument(
                "annotation mode needs `results_path` (the trees' JSONL) and `limit` 0".into(),
            ));
        }
        let mut solver = lock(s)?;
        let state = super::CallerState((&mut *solver, &mut call));
        let summary = s.compute.run(move || {
            let state = state;
            let (solver, call) = state.0;
            let data = Path::new(data);
            match results {
                Some(out) if annotate => {
                    super::to_json(&solver.synthesize(data, out, DATASET_BATCH, call)?)
                }
                _ => super::to_json(&solver.evaluate_file(
                    data,
                    crate::data::Subset::first((limit > 0).then_some(limit)),
                    DATASET_BATCH,
                    results,
                    call,
                )?),
            }
        })?;
        if !summary_json.is_null() {
            *out(summary_json, "summary_json")? = new_c_string(&summary);
        }
        Ok(())
    })
}

/// Runs the given problems together (lock-step) and returns their output lines, for a caller
/// that writes the output file itself (a distributed run with one writer, e.g. the Python
/// package's `rstar.ray`). `problems_json` is a JSON array of `{"index": N, "problem": RECORD}`:
/// `N` is the problem's position in its dataset (search seeds are keyed by it, so a problem gets
/// the same result as in `rstar_solver_run_dataset`) and `RECORD` a problem record in any format
/// a problem file may hold. On success `*lines` receives JSONL text (one line per problem, in
/// input order, each ending in `\n`) to free with `rstar_string_free`: in annotation mode the
/// tree records `rstar_solver_run_dataset` appends, in inference mode the per-problem results it
/// writes. `RSTAR_STATUS_FORMAT` names a bad problem; `rstar_solver_cancel` stops the call with
/// `RSTAR_STATUS_CANCELLED`.
///
/// # Safety
/// `solver` is live; `problems_json` is NUL-terminated UTF-8; `lines` is writable.
#[no_mangle]
pub unsafe extern "C" fn rstar_solver_run_problems(
    solver: *mut rstar_solver,
    problems_json: *const c_char,
    lines: *mut *mut c_char,
) -> Status {
    guard(|| {
        let result = out(lines, "lines")?;
        *result = std::ptr::null_mut();
        let s = arg(solver, "solver")?;
        let problems = parse_problem_list(c_str(problems_json, "problems_json")?)?;
        let annotate = s.mode == RSTAR_SOLVER_MODE_ANNOTATION;
        let mut solver = lock(s)?;
        let solver = &mut *solver;
        let text = s.compute.run(|| solver.run_problems(&problems, annotate))?;
        *result = new_c_string(&text.concat());
        Ok(())
    })
}

/// The problems of `rstar_solver_run_problems`' JSON array (`{"index", "problem"}` items).
fn parse_problem_list(text: &str) -> Result<Vec<Problem>> {
    let what = Path::new("problems_json");
    let items: Vec<Value> = serde_json::from_str(text)
        .map_err(|e| Error::format(what, format!("not a JSON array: {e}")))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let index = item.get("index").and_then(Value::as_u64);
            match (index, item.get("problem")) {
                (Some(id), Some(r)) => problem_from_record(id, r, what),
                _ => Err(Error::format(
                    what,
                    format!("item {i}: expected {{\"index\": N, \"problem\": {{...}}}}"),
                )),
            }
        })
        .collect()
}

/// Asks the running (or the next) `rstar_solver_solve` / `rstar_solver_run_dataset` on this
/// solver to stop at its next search step. Safe to call from any thread.
///
/// # Safety
/// `solver` is NULL (ignored) or a live solver.
#[no_mangle]
pub unsafe extern "C" fn rstar_solver_cancel(solver: *const rstar_solver) {
    // SAFETY: per the contract, NULL or a live solver; only the atomic flag is touched.
    if let Some(s) = unsafe { solver.as_ref() } {
        s.cancel.store(true, Ordering::Relaxed);
    }
}

/// Frees a solver. NULL is ignored; a second free is
/// `RSTAR_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `solver` is NULL or came from `rstar_solver_new*`, is not used afterwards, and no other
/// thread is inside a call on it.
#[no_mangle]
pub unsafe extern "C" fn rstar_solver_free(solver: *mut rstar_solver) -> Status {
    // SAFETY: per the contract, no call on the handle is running.
    unsafe { super::free_handle(solver, "solver") }
}

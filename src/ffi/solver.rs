//! The solver handle of the C ABI: `rstar_solver_*` over [`crate::search::solver::Solver`]
//! (test-time search: MCTS, beam, best-of-N or greedy, with votes over runs).
//!
//! Thread-safety: calls on one `rstar_solver` are serialised by an internal lock (a second
//! thread waits), except `rstar_solver_cancel`, which may be called from any thread at any time.
//! Different solvers may be used from different threads at once.

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{arg, c_str, guard, new_c_string, out};
use crate::backend::cpu::{Compute, Precision};
use crate::error::{Error, Result, Status};
use crate::search::eval::Progress;
use crate::search::solver::{Settings, Solver, SolverOptions};

/// Problems searched together by `rstar_solver_run_dataset`.
const DATASET_BATCH: usize = 8;

/// A policy (+ optional PPM) with a search configuration.
pub struct rstar_solver {
    inner: Mutex<Solver>,
    cancel: Arc<AtomicBool>,
    /// All cores, `exact`, on the calling thread (see `Compute::run`).
    compute: crate::backend::cpu::Compute,
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

/// Creates a solver: loads the policy (HF directory or .gguf), the PPM when `ppm_path` is not
/// NULL, and starts the Python executor. A NULL `policy_path` means the self-evolved default model
/// (`models/default` of the source tree, or `$RSTAR_DEFAULT_MODEL`), with its PPM when `ppm_path`
/// is NULL and its search settings when `config` is NULL; `RSTAR_STATUS_INVALID_ARGUMENT` when
/// it is missing. `config` is NULL (defaults) or the search configuration
/// as a JSON object or TOML text with the keys of `rstar --help`'s `--config` (`search`
/// "mcts"|"beam"|"best-of-n"|"greedy", `rollouts`, `width`, `beam_width`, `best_of`, `runs`,
/// `vote_size`, `max_depth`, `c_puct`, `temperature`, `top_p`, `stop`, `errors_threshold`,
/// `exec_timeout_s`, `max_step_tokens`, `device` "cpu"|"cuda"|"cuda:N", ...); an unknown key is
/// `RSTAR_STATUS_FORMAT` naming it. The search always runs in inference mode here. Returns `RSTAR_STATUS_EXEC` when the executor
/// cannot start. On success `*out` owns the solver; free it with `rstar_solver_free`.
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
    guard(|| {
        let out = self::out(out, "out")?;
        *out = std::ptr::null_mut();
        let opt_path = |p: *const c_char, what: &str| -> Result<Option<PathBuf>> {
            Ok(match p.is_null() {
                true => None,
                false => Some(PathBuf::from(c_str(p, what)?)),
            })
        };
        let settings = match config.is_null() {
            true => None,
            false => Some(Settings::Text(c_str(config, "config")?.to_owned())),
        };
        let solver = Solver::new(SolverOptions {
            policy: opt_path(policy_path, "policy_path")?,
            ppm: opt_path(ppm_path, "ppm_path")?,
            settings,
            ..SolverOptions::default()
        })?;
        let cancel = solver.cancel_flag();
        *out = Box::into_raw(Box::new(rstar_solver {
            inner: Mutex::new(solver),
            cancel,
            compute: Compute::new(Precision::Exact, 0, "threads")?,
        }));
        Ok(())
    })
}

/// Solves one question. On success `*result_json` receives a JSON object to free with
/// `rstar_string_free`: `{"question", "answer" (PPM-best, or null), "pass1", "majority",
/// "weighted", "k", "trajectories": [{"run", "tag", "answer", "value", "solution"}], "stats",
/// "engine"}`. Returns `RSTAR_STATUS_CANCELLED` when `rstar_solver_cancel` was called.
///
/// # Safety
/// `solver` is a live solver; `question` is NUL-terminated UTF-8; `result_json` is writable.
#[no_mangle]
pub unsafe extern "C" fn rstar_solver_solve(
    solver: *const rstar_solver,
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

/// Evaluates a problem file (a JSON list, `{"example": [...]}` or JSONL of `{question,
/// answer}`): the first `limit` problems (0 = all), 8 in lock-step. When `results_path` is not
/// NULL, one JSON line per problem is written there (the file is overwritten). `callback` (may
/// be NULL) gets progress; returning false, or `rstar_solver_cancel`, stops the run with
/// `RSTAR_STATUS_CANCELLED` (lines already written stay). On success, if `summary_json` is not
/// NULL, it receives `{"accuracy": {"problems", "pass1", "majority", "weighted", "ppm_best",
/// "any"} (counts), "vote_size", "runs", "search", "stats", "tokens"}`; free it with
/// `rstar_string_free`.
///
/// # Safety
/// `solver` is live; `data_path` is NUL-terminated UTF-8; `results_path` is NULL or
/// NUL-terminated UTF-8; `callback` is NULL or a valid function; `user_data` is passed through
/// untouched; `summary_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rstar_solver_run_dataset(
    solver: *const rstar_solver,
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
        let mut solver = lock(s)?;
        let state = super::CallerState((&mut *solver, &mut call));
        let sum = s.compute.run(move || {
            let state = state;
            let (solver, call) = state.0;
            solver.evaluate_file(
                Path::new(data),
                (limit > 0).then_some(limit),
                DATASET_BATCH,
                results,
                call,
            )
        })?;
        if !summary_json.is_null() {
            *out(summary_json, "summary_json")? = new_c_string(&super::to_json(&sum)?);
        }
        Ok(())
    })
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

/// Frees a solver. NULL is ignored.
///
/// # Safety
/// `solver` is NULL or came from `rstar_solver_new`, is not used afterwards, and no other
/// thread is inside a call on it.
#[no_mangle]
pub unsafe extern "C" fn rstar_solver_free(solver: *mut rstar_solver) {
    if !solver.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: per the contract, the pointer came from Box::into_raw in rstar_solver_new.
            drop(unsafe { Box::from_raw(solver) })
        }));
    }
}

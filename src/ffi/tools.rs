//! Stateless calls of the C ABI: grading (`rstar_grade`), answer extraction
//! (`rstar_extract_answer`) and one program in the sandbox (`rstar_exec`). Thin wrappers over
//! [`crate::grade`] and [`crate::exec::run_once`]; every function here may be called from any
//! thread at any time.

use std::ffi::c_char;
use std::path::PathBuf;

use super::{c_str, fill_params, guard, new_c_string, out, read_params, sandbox_param};
use crate::error::Status;
use crate::exec::ExecConfig;

/// Whether a predicted answer equals the reference answer, as the search grades them (numbers,
/// fractions, percentages, LaTeX, intervals, equations, multiple choice; no sympy). Symmetric.
/// `pred` should be an extracted answer (`rstar_extract_answer`).
///
/// # Safety
/// `pred` and `answer` are NUL-terminated UTF-8; `equal` is writable.
#[no_mangle]
pub unsafe extern "C" fn rstar_grade(
    pred: *const c_char,
    answer: *const c_char,
    equal: *mut bool,
) -> Status {
    guard(|| {
        let equal = out(equal, "equal")?;
        *equal = false;
        *equal = crate::grade::equal(c_str(pred, "pred")?, c_str(answer, "answer")?);
        Ok(())
    })
}

/// The final answer in a solution text (the last `\boxed{...}`, or "The answer is ..."). On
/// success `*answer` is a new string (free with `rstar_string_free`), or NULL when the text has
/// no answer.
///
/// # Safety
/// `text` is NUL-terminated UTF-8; `answer` is writable.
#[no_mangle]
pub unsafe extern "C" fn rstar_extract_answer(
    text: *const c_char,
    answer: *mut *mut c_char,
) -> Status {
    guard(|| {
        let answer = out(answer, "answer")?;
        *answer = std::ptr::null_mut();
        if let Some(a) = crate::grade::extract_answer(c_str(text, "text")?) {
            *answer = new_c_string(&a);
        }
        Ok(())
    })
}

/// Settings of `rstar_exec`. Fill with `rstar_exec_default_params`, then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rstar_exec_params {
    /// sizeof(rstar_exec_params), set by rstar_exec_default_params.
    pub struct_size: u32,
    /// Wall-clock limit in seconds (default 10).
    pub timeout_s: f64,
    /// Address-space limit in bytes (default 2 GiB; 0 = none).
    pub memory_bytes: u64,
    /// 0: refuse to run when a sandbox layer is missing (default); 1: run with the layers that
    /// could be set up (reported in the result's `sandbox`).
    pub weak_sandbox: u32,
    /// Python interpreter; NULL = the executor's search (`$RSTAR_PYTHON`, the rstar venv, python3).
    pub python: *const c_char,
}

fn default_exec_params() -> rstar_exec_params {
    let d = ExecConfig::default();
    rstar_exec_params {
        struct_size: std::mem::size_of::<rstar_exec_params>() as u32,
        timeout_s: d.timeout_s,
        memory_bytes: d.memory_bytes,
        weak_sandbox: 0,
        python: std::ptr::null(),
    }
}

/// Fills `params` with defaults and sets `struct_size`. Set `params->struct_size =
/// sizeof(rstar_exec_params)` first: a newer library then fills only the fields of the caller's
/// (older, smaller) struct and leaves `struct_size` as it is. Any other `struct_size` (0,
/// uninitialised) gets the whole struct of this library's header.
///
/// # Safety
/// `params` is NULL (ignored) or a writable `rstar_exec_params` of this header, or of an older
/// one with `struct_size` set to its sizeof.
#[no_mangle]
pub unsafe extern "C" fn rstar_exec_default_params(params: *mut rstar_exec_params) {
    // SAFETY: NULL, or writable for the size `fill_params` reads from it, per the contract.
    unsafe { fill_params(params, default_exec_params(), &[]) }
}

/// Runs one Python program in the sandboxed executor (a fresh worker: ~0.1 s to start). A program
/// that fails is still `RSTAR_STATUS_OK`: `*result_json` receives `{"ok", "output" (stdout),
/// "error" ("<Type>: <message>" or null), "timed_out", "elapsed_ms", "sandbox": {"mode",
/// "layers", "refused"}}` (free with `rstar_string_free`). `RSTAR_STATUS_EXEC` when no
/// interpreter starts or, in strict mode, a sandbox layer is missing (the message names it).
///
/// # Safety
/// `code` is NUL-terminated UTF-8; `params` NULL or filled by `rstar_exec_default_params`;
/// `result_json` is writable.
#[no_mangle]
pub unsafe extern "C" fn rstar_exec(
    code: *const c_char,
    params: *const rstar_exec_params,
    result_json: *mut *mut c_char,
) -> Status {
    guard(|| {
        let result = out(result_json, "result_json")?;
        *result = std::ptr::null_mut();
        let code = c_str(code, "code")?;
        let p = read_params(params, default_exec_params())?;
        let sandbox = sandbox_param(p.weak_sandbox)?;
        let python = match p.python.is_null() {
            true => None,
            false => Some(PathBuf::from(c_str(p.python, "params.python")?)),
        };
        let r = crate::exec::run_once(
            code,
            ExecConfig {
                python,
                timeout_s: p.timeout_s,
                memory_bytes: p.memory_bytes,
                require_sympy: false,
                sandbox,
                ..ExecConfig::default()
            },
        )?;
        *result = new_c_string(&super::to_json(&r)?);
        Ok(())
    })
}

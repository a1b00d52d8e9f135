//! The self-evolution loop of the C ABI: `rstar_evolve_run` over [`crate::train::evolve::evolve`],
//! the same library call as `rstar evolve` (MCTS synthesis in annotation mode, extraction, policy
//! SFT, PPM training, evaluation; resumable stage by stage in its work directory).
//!
//! Thread-safety: `rstar_evolve_run` blocks the calling thread; its callback runs on the calling
//! thread or a library thread while the caller waits. Runs on different work directories may go
//! on at once; two runs on one work directory at once are not supported.

use std::ffi::{c_char, c_void, CString};
use std::path::PathBuf;

use super::train::rstar_train_progress;
use super::{
    c_str, fill_params, guard, new_c_string, out, precision_param, read_params, CallerState,
};
use crate::backend::cpu::Compute;
use crate::error::{Error, Result, Status};
use crate::train::evolve::{evolve, Event, EvolveConfig, EvolveOptions, Stage};

/// `rstar_evolve_event.kind`: a stage starts (`skipped` = 0) or is skipped as already done (1).
pub const RSTAR_EVOLVE_EVENT_STAGE: u32 = 0;
/// `kind`: MCTS synthesis or evaluation finished `done` of `total` problems.
pub const RSTAR_EVOLVE_EVENT_PROBLEMS: u32 = 1;
/// `kind`: a training stage (SFT or PPM) took an optimizer step (`train` holds its progress).
pub const RSTAR_EVOLVE_EVENT_TRAIN: u32 = 2;
/// `kind`: a round finished (`round_json` holds its row of the per-round table).
pub const RSTAR_EVOLVE_EVENT_ROUND: u32 = 3;

/// `rstar_evolve_event.stage`: MCTS synthesis (annotation mode) over the training problems.
pub const RSTAR_EVOLVE_STAGE_MCTS: u32 = 0;
/// `stage`: extraction of the SFT set and the preference pairs from the round's trees.
pub const RSTAR_EVOLVE_STAGE_EXTRACT: u32 = 1;
/// `stage`: policy SFT.
pub const RSTAR_EVOLVE_STAGE_SFT: u32 = 2;
/// `stage`: PPM training.
pub const RSTAR_EVOLVE_STAGE_PPM: u32 = 3;
/// `stage`: evaluation on the held-out problems.
pub const RSTAR_EVOLVE_STAGE_EVAL: u32 = 4;

/// How `rstar_evolve_run` runs (the arguments of `rstar evolve`). Fill with
/// `rstar_evolve_default_params`, then change fields.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rstar_evolve_params {
    /// sizeof(rstar_evolve_params), set by rstar_evolve_default_params.
    pub struct_size: u32,
    /// Base policy model directory (required): searched in round 1, fine-tuned from every round.
    pub policy: *const c_char,
    /// Training problems (required): a JSON list, {"example": [...]} or JSONL of {question, answer}.
    pub data: *const c_char,
    /// Held-out problems, or NULL for the last `holdout` fraction of `data`.
    pub eval_data: *const c_char,
    /// SFT examples mixed into every round's policy SFT set, or NULL.
    pub replay_data: *const c_char,
    /// Work directory (required): round-N/ stages and rounds.json; a rerun skips finished stages
    /// and resumes the interrupted one.
    pub workdir: *const c_char,
    /// Rounds to run (default 2; at least 1).
    pub rounds: u32,
    /// The evolve configuration as JSON (the keys of `rstar evolve --config`), or NULL for the
    /// defaults; an unknown key is `RSTAR_STATUS_FORMAT` naming it.
    pub config: *const c_char,
    /// Matmul precision of the search stages: 0 exact (default), 1 fast. Training is f32.
    pub precision: u32,
    /// Compute threads: 0 = one per core (default); more than 1024 is invalid.
    pub threads: u32,
}

/// What `rstar_evolve_callback` receives; valid only during the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rstar_evolve_event {
    /// sizeof(rstar_evolve_event) as the library was built; fields may be added at the end.
    pub struct_size: u32,
    /// `RSTAR_EVOLVE_EVENT_*`.
    pub kind: u32,
    /// Round (0: the base policy's evaluation).
    pub round: u32,
    /// `RSTAR_EVOLVE_STAGE_*` of the stage in progress.
    pub stage: u32,
    /// STAGE events: 1 when the stage is skipped because it finished in an earlier run.
    pub skipped: u32,
    /// PROBLEMS events: problems done and in the stage.
    pub done: u64,
    pub total: u64,
    /// TRAIN events: the training stage's progress (else zeroed).
    pub train: rstar_train_progress,
    /// ROUND events: the round's row as JSON (`round`, `coverage`, `sft_examples`, `pairs`,
    /// `greedy_pass1`, `ppm_accuracy`, ...); NULL otherwise.
    pub round_json: *const c_char,
}

/// Called for every event of `rstar_evolve_run`. Return false to cancel: the run stops at its next
/// event with `RSTAR_STATUS_CANCELLED`, keeping what a rerun resumes from.
pub type rstar_evolve_callback =
    Option<unsafe extern "C" fn(event: *const rstar_evolve_event, user_data: *mut c_void) -> bool>;

fn default_evolve_params() -> rstar_evolve_params {
    rstar_evolve_params {
        struct_size: std::mem::size_of::<rstar_evolve_params>() as u32,
        policy: std::ptr::null(),
        data: std::ptr::null(),
        eval_data: std::ptr::null(),
        replay_data: std::ptr::null(),
        workdir: std::ptr::null(),
        rounds: 2,
        config: std::ptr::null(),
        precision: 0,
        threads: 0,
    }
}

/// Fills `params` with defaults and sets `struct_size`. Set `params->struct_size =
/// sizeof(rstar_evolve_params)` first: a newer library then fills only the fields of the caller's
/// (older, smaller) struct and leaves `struct_size` as it is. Any other `struct_size` (0,
/// uninitialised) gets the whole struct of this library's header.
///
/// # Safety
/// `params` is NULL (ignored) or a writable `rstar_evolve_params` of this header, or of an older
/// one with `struct_size` set to its sizeof.
#[no_mangle]
pub unsafe extern "C" fn rstar_evolve_default_params(params: *mut rstar_evolve_params) {
    // SAFETY: NULL, or writable for the size `fill_params` reads from it, per the contract.
    unsafe { fill_params(params, default_evolve_params(), &[]) }
}

fn opt_path(p: *const c_char, name: &str) -> Result<Option<PathBuf>> {
    if p.is_null() {
        Ok(None)
    } else {
        c_str(p, name).map(|s| Some(PathBuf::from(s)))
    }
}

fn required(p: *const c_char, name: &str) -> Result<PathBuf> {
    opt_path(p, name)?
        .ok_or_else(|| Error::InvalidArgument(format!("params.{name} must not be NULL")))
}

fn options(p: &rstar_evolve_params) -> Result<EvolveOptions> {
    let config = if p.config.is_null() {
        EvolveConfig::default()
    } else {
        serde_json::from_str(c_str(p.config, "params.config")?)
            .map_err(|e| Error::format("params.config", format!("evolve config: {e}")))?
    };
    Ok(EvolveOptions {
        policy: required(p.policy, "policy")?,
        data: required(p.data, "data")?,
        eval_data: opt_path(p.eval_data, "params.eval_data")?,
        replay_data: opt_path(p.replay_data, "params.replay_data")?,
        rounds: p.rounds as usize,
        workdir: required(p.workdir, "workdir")?,
        config,
    })
}

fn stage_code(s: Stage) -> u32 {
    match s {
        Stage::Mcts => RSTAR_EVOLVE_STAGE_MCTS,
        Stage::Extract => RSTAR_EVOLVE_STAGE_EXTRACT,
        Stage::Sft => RSTAR_EVOLVE_STAGE_SFT,
        Stage::Ppm => RSTAR_EVOLVE_STAGE_PPM,
        Stage::Eval => RSTAR_EVOLVE_STAGE_EVAL,
    }
}

/// The C event of `e` (`None` for events C does not see: training start and end), with the round
/// and stage in progress tracked in `at`; `json` keeps a ROUND event's text alive for the call.
fn c_event(e: &Event<'_>, at: &mut (u32, u32), json: &mut CString) -> Option<rstar_evolve_event> {
    let zero_train = rstar_train_progress::from(&crate::train::Progress::default());
    let mut ev = rstar_evolve_event {
        struct_size: std::mem::size_of::<rstar_evolve_event>() as u32,
        kind: RSTAR_EVOLVE_EVENT_STAGE,
        round: at.0,
        stage: at.1,
        skipped: 0,
        done: 0,
        total: 0,
        train: zero_train,
        round_json: std::ptr::null(),
    };
    match e {
        Event::Stage {
            round,
            stage,
            skipped,
        } => {
            *at = (*round as u32, stage_code(*stage));
            (ev.round, ev.stage, ev.skipped) = (at.0, at.1, u32::from(*skipped));
        }
        Event::Problems { done, total } => {
            ev.kind = RSTAR_EVOLVE_EVENT_PROBLEMS;
            (ev.done, ev.total) = (*done as u64, *total as u64);
        }
        Event::Train(p) => {
            ev.kind = RSTAR_EVOLVE_EVENT_TRAIN;
            ev.train = rstar_train_progress::from(*p);
        }
        Event::Round(row) => {
            ev.kind = RSTAR_EVOLVE_EVENT_ROUND;
            ev.round = row.round as u32;
            let text = serde_json::to_string(row).unwrap_or_default();
            *json = CString::new(text).unwrap_or_default();
            ev.round_json = json.as_ptr();
        }
        Event::TrainStart { .. } | Event::TrainEnd => return None,
    }
    Some(ev)
}

/// Runs (or resumes) `params.rounds` self-evolution rounds, as `rstar evolve` does, calling
/// `callback` (may be NULL) for every event. On success `*rounds_json` (when not NULL) receives
/// the per-round table as a JSON array (the content of `workdir/rounds.json`, round 0 first when
/// there are held-out problems), to free with `rstar_string_free`. Returns
/// `RSTAR_STATUS_CANCELLED` when the callback returned false; calling again with the same
/// `workdir` resumes (finished stages are skipped, training continues from its saved state).
/// `RSTAR_STATUS_INVALID_ARGUMENT` names a bad field; `RSTAR_STATUS_EXEC` an executor that cannot
/// start.
///
/// # Safety
/// `params` is filled by `rstar_evolve_default_params` (strings NULL or NUL-terminated UTF-8,
/// valid for the call); `callback` is NULL or a valid function, called with `user_data`
/// untouched; `rounds_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rstar_evolve_run(
    params: *const rstar_evolve_params,
    callback: rstar_evolve_callback,
    user_data: *mut c_void,
    rounds_json: *mut *mut c_char,
) -> Status {
    guard(|| {
        if !rounds_json.is_null() {
            *out(rounds_json, "rounds_json")? = std::ptr::null_mut();
        }
        if params.is_null() {
            return Err(Error::InvalidArgument("params must not be NULL".into()));
        }
        let p = read_params(params, default_evolve_params())?;
        let opts = options(&p)?;
        let compute = Compute::new(
            precision_param(p.precision)?,
            p.threads as usize,
            "params.threads",
        )?;
        let mut at = (0u32, RSTAR_EVOLVE_STAGE_EVAL);
        let mut json = CString::default();
        let mut call = |e: Event<'_>| match (callback, c_event(&e, &mut at, &mut json)) {
            (Some(cb), Some(ev)) => {
                // SAFETY: the caller guarantees `cb` is a valid function taking these arguments;
                // `ev` (and the string it points to) lives for the duration of the call.
                unsafe { cb(&ev, user_data) }
            }
            _ => true,
        };
        let state = CallerState((&opts, &mut call));
        let rows = compute.run(move || {
            let state = state;
            let (opts, call) = state.0;
            evolve(opts, call)
        })?;
        if !rounds_json.is_null() {
            *out(rounds_json, "rounds_json")? = new_c_string(&super::to_json(&rows)?);
        }
        Ok(())
    })
}

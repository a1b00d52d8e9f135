//! The trainer handle of the C ABI: `rstar_trainer_*` over [`crate::train::Trainer`].
//!
//! Thread-safety: every call on one `rstar_trainer` is serialised by an internal lock, except
//! `rstar_trainer_cancel`, which may be called from any thread at any time (e.g. while another
//! thread is inside `rstar_trainer_step`).

use std::ffi::{c_char, c_void};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{arg, c_str, guard, out};
use crate::error::{Error, Result, Status};
use crate::train::{Progress, TrainConfig, Trainer};

/// A training run (SFT or PPM) over one model and dataset.
///
/// Thread-safety: calls on one trainer are serialised by an internal lock; `rstar_trainer_cancel`
/// may be called from any thread at any time, also during `rstar_trainer_step`/`_epoch`. The
/// progress callback runs on the calling thread, between optimizer steps.
pub struct rstar_trainer {
    inner: Mutex<Trainer>,
    cancel: Arc<AtomicBool>,
}

/// Progress after an optimizer step, passed to `rstar_train_callback`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rstar_train_progress {
    /// sizeof(rstar_train_progress) as the library was built; fields may be added at the end.
    pub struct_size: u32,
    /// Epoch in progress, 0-based.
    pub epoch: u32,
    /// Optimizer steps done.
    pub step: u64,
    /// Optimizer steps of the whole run.
    pub total_steps: u64,
    /// Loss of the last step.
    pub loss: f64,
    /// Global gradient norm of the last step (before clipping).
    pub grad_norm: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Tokens processed since the trainer was made or resumed.
    pub tokens: u64,
    pub tokens_per_sec: f64,
    pub elapsed_secs: f64,
    pub eta_secs: f64,
}

impl From<&Progress> for rstar_train_progress {
    fn from(p: &Progress) -> Self {
        rstar_train_progress {
            struct_size: std::mem::size_of::<rstar_train_progress>() as u32,
            epoch: p.epoch as u32,
            step: p.step as u64,
            total_steps: p.total_steps as u64,
            loss: p.loss,
            grad_norm: p.grad_norm,
            lr: p.lr,
            tokens: p.tokens,
            tokens_per_sec: p.tokens_per_sec,
            elapsed_secs: p.elapsed_secs,
            eta_secs: p.eta_secs,
        }
    }
}

/// Called after every optimizer step with the progress (valid only during the call). Return false
/// to stop; the call then returns `RSTAR_STATUS_CANCELLED` after saving resumable state.
pub type rstar_train_callback = Option<
    unsafe extern "C" fn(progress: *const rstar_train_progress, user_data: *mut c_void) -> bool,
>;

fn take_path(cfg: &mut serde_json::Value, key: &str) -> Result<Option<PathBuf>> {
    match cfg.as_object_mut().and_then(|o| o.remove(key)) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(PathBuf::from(s))),
        Some(_) => Err(Error::InvalidArgument(format!(
            "config `{key}`: expected a path string"
        ))),
    }
}

/// Creates a trainer from a model directory and a JSON config. The config is an object with any of
/// the fields of the Rust `TrainConfig` (`task` "sft"|"ppm", `optimizer` "adamw"|"sgd", `lr`,
/// `epochs`, `batch_size`, `grad_accum`, `max_steps`, `seq_len`, `lora_rank`, `seed`, `schedule`,
/// `warmup_steps`, `weight_decay`, `max_grad_norm`, `checkpointing`, `save_every`, ...) plus
/// `data` (a dataset path, loaded now) and `state_dir` (where resumable state is written, and
/// resumed from if it holds any). NULL or "{}" means defaults (SFT). Unknown fields are errors.
/// On success `*out` owns the trainer; free it with `rstar_trainer_free`.
///
/// # Safety
/// `model_dir` is a NUL-terminated UTF-8 path; `config_json` is NULL or a NUL-terminated UTF-8
/// string; `out` points to writable storage for a pointer.
#[no_mangle]
pub unsafe extern "C" fn rstar_trainer_new(
    model_dir: *const c_char,
    config_json: *const c_char,
    out: *mut *mut rstar_trainer,
) -> Status {
    guard(|| {
        let out = self::out(out, "out")?;
        *out = std::ptr::null_mut();
        let dir = c_str(model_dir, "model_dir")?;
        let mut cfg: serde_json::Value = if config_json.is_null() {
            serde_json::json!({})
        } else {
            serde_json::from_str(c_str(config_json, "config_json")?)
                .map_err(|e| Error::InvalidArgument(format!("config_json: {e}")))?
        };
        let data = take_path(&mut cfg, "data")?;
        let state = take_path(&mut cfg, "state_dir")?;
        let config = TrainConfig::from_json(&cfg)?;
        let mut t = Trainer::new(Path::new(dir), config)?;
        if let Some(d) = data {
            t.load_data(&d)?;
            if let Some(s) = &state {
                t.resume(s)?;
            }
        }
        t.set_state_dir(state);
        let cancel = t.cancel_flag();
        *out = super::new_handle(
            rstar_trainer {
                inner: Mutex::new(t),
                cancel,
            },
            "trainer",
        );
        Ok(())
    })
}

/// Loads (replaces) the dataset; `*n_examples` (if not NULL) receives the number of usable examples.
///
/// # Safety
/// `trainer` is a live trainer; `path` a NUL-terminated UTF-8 path; `n_examples` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rstar_trainer_load_data(
    trainer: *mut rstar_trainer,
    path: *const c_char,
    n_examples: *mut usize,
) -> Status {
    guard(|| {
        let t = arg(trainer, "trainer")?;
        let path = c_str(path, "path")?;
        let (n, _) = lock(t)?.load_data(Path::new(path))?;
        if !n_examples.is_null() {
            *out(n_examples, "n_examples")? = n;
        }
        Ok(())
    })
}

fn lock(t: &rstar_trainer) -> Result<std::sync::MutexGuard<'_, Trainer>> {
    t.inner
        .lock()
        .map_err(|_| Error::Internal("a previous call on this trainer panicked".into()))
}

fn run_with(
    t: &rstar_trainer,
    cb: rstar_train_callback,
    user_data: *mut c_void,
    f: impl FnOnce(&mut Trainer, &mut dyn FnMut(&Progress) -> bool) -> Result<Option<Progress>>,
) -> Result<()> {
    let mut trainer = lock(t)?;
    let mut call = |p: &Progress| match cb {
        Some(cb) => {
            let cp = rstar_train_progress::from(p);
            // SAFETY: the caller guarantees `cb` is a valid function taking these arguments;
            // `cp` lives for the duration of the call.
            unsafe { cb(&cp, user_data) }
        }
        None => true,
    };
    let r = f(&mut trainer, &mut call);
    t.cancel.store(false, Ordering::Relaxed);
    r.map(|_| ())
}

/// Runs up to `n_steps` optimizer steps (fewer when the run ends), calling `callback` (may be NULL)
/// after each. Returns `RSTAR_STATUS_CANCELLED` when the callback returned false or
/// `rstar_trainer_cancel` was called.
///
/// # Safety
/// `trainer` is a live trainer; `callback` is NULL or a valid function; `user_data` is passed
/// through untouched.
#[no_mangle]
pub unsafe extern "C" fn rstar_trainer_step(
    trainer: *mut rstar_trainer,
    n_steps: u32,
    callback: rstar_train_callback,
    user_data: *mut c_void,
) -> Status {
    guard(|| {
        let t = arg(trainer, "trainer")?;
        run_with(t, callback, user_data, |tr, cb| {
            tr.run(Some(n_steps as usize), cb)
        })
    })
}

/// Runs the rest of the current epoch (or the next one), like `rstar_trainer_step`.
///
/// # Safety
/// As `rstar_trainer_step`.
#[no_mangle]
pub unsafe extern "C" fn rstar_trainer_epoch(
    trainer: *mut rstar_trainer,
    callback: rstar_train_callback,
    user_data: *mut c_void,
) -> Status {
    guard(|| {
        let t = arg(trainer, "trainer")?;
        run_with(t, callback, user_data, |tr, cb| tr.run_epoch(cb))
    })
}

/// Whether the run is over (epochs or `max_steps` used up).
///
/// # Safety
/// `trainer` is a live trainer; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rstar_trainer_finished(
    trainer: *const rstar_trainer,
    out: *mut bool,
) -> Status {
    guard(|| {
        let t = arg(trainer, "trainer")?;
        *self::out(out, "out")? = lock(t)?.finished();
        Ok(())
    })
}

/// Saves the model as a Hugging Face directory (`value_head.safetensors` for a PPM; LoRA merged,
/// with the PEFT adapter under `dir/adapter`).
///
/// # Safety
/// `trainer` is a live trainer; `dir` a NUL-terminated UTF-8 path.
#[no_mangle]
pub unsafe extern "C" fn rstar_trainer_save(
    trainer: *mut rstar_trainer,
    dir: *const c_char,
) -> Status {
    guard(|| {
        let t = arg(trainer, "trainer")?;
        let dir = c_str(dir, "dir")?;
        lock(t)?.save(Path::new(dir))
    })
}

/// Asks a running (or the next) `rstar_trainer_step`/`rstar_trainer_epoch` to stop after the
/// current optimizer step. Safe to call from any thread.
///
/// # Safety
/// `trainer` is NULL (ignored) or a live trainer.
#[no_mangle]
pub unsafe extern "C" fn rstar_trainer_cancel(trainer: *const rstar_trainer) {
    // SAFETY: per the contract, NULL or a live trainer; only the atomic flag is touched.
    if let Some(t) = unsafe { trainer.as_ref() } {
        t.cancel.store(true, Ordering::Relaxed);
    }
}

/// Frees a trainer. NULL is ignored; a second free is
/// `RSTAR_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `trainer` is NULL or came from `rstar_trainer_new`, is not used afterwards, and no other thread
/// is inside a call on it.
#[no_mangle]
pub unsafe extern "C" fn rstar_trainer_free(trainer: *mut rstar_trainer) -> Status {
    // SAFETY: per the contract, no call on the handle is running.
    unsafe { super::free_handle(trainer, "trainer") }
}

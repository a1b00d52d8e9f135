//! The tree engine and the process reward model in the C ABI: `rstar_engine_*` over
//! [`crate::engine::Engine`] and `rstar_ppm_*` over [`crate::engine::ppm::Scorer`].
//!
//! Thread-safety: an `rstar_engine` or `rstar_ppm` serialises calls with an internal lock, so it may
//! be shared between threads, but calls do not run in parallel; use one handle per thread for that.
//! Sequence ids are `uint64_t` values valid within their engine.

use std::ffi::c_char;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{
    arg, c_str, default_generate_params, fill_params, guard, new_c_string, out, read_params, slice,
};
use super::{rstar_generate_params, rstar_model, to_generate_params};
use crate::engine::ppm::{Ppm, Scorer};
use crate::engine::{Engine, EngineConfig, SeqId};
use crate::error::{Error, Result, Status};

/// Sizing of an engine's KV cache and batches. Fill with `rstar_engine_default_params`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct rstar_engine_params {
    /// sizeof(rstar_engine_params), set by rstar_engine_default_params.
    pub struct_size: u32,
    /// Tokens per KV block (default 16).
    pub block_size: u32,
    /// KV cache memory in MiB (default 1024); cached prefixes are evicted LRU beyond it.
    pub kv_budget_mb: u32,
    /// Most tokens per forward pass (default 512).
    pub max_batch_tokens: u32,
    /// Most sequences generating at once (default 256).
    pub max_active: u32,
}

fn default_engine_params() -> rstar_engine_params {
    let d = EngineConfig::default();
    rstar_engine_params {
        struct_size: std::mem::size_of::<rstar_engine_params>() as u32,
        block_size: d.block_size as u32,
        kv_budget_mb: (d.kv_budget_bytes >> 20) as u32,
        max_batch_tokens: d.max_batch_tokens as u32,
        max_active: d.max_active as u32,
    }
}

/// The engine sizing of `p`, with KV caches stored as `kv_dtype` (the model's `kv_dtype`).
fn to_engine_config(
    p: *const rstar_engine_params,
    kv_dtype: crate::backend::cpu::KvDtype,
) -> Result<EngineConfig> {
    let p = read_params(p, default_engine_params())?;
    Ok(EngineConfig {
        block_size: p.block_size as usize,
        kv_budget_bytes: (p.kv_budget_mb as usize) << 20,
        max_batch_tokens: p.max_batch_tokens as usize,
        max_active: p.max_active as usize,
        kv_dtype,
    })
}

/// Fills `params` with defaults and sets `struct_size`. Set `params->struct_size =
/// sizeof(rstar_engine_params)` first: a newer library then fills only the fields of the caller's
/// (older, smaller) struct and leaves `struct_size` as it is. Any other `struct_size` (0,
/// uninitialised) gets the whole struct of this library's header.
///
/// # Safety
/// `params` is NULL (ignored) or a writable `rstar_engine_params` of this header, or of an older
/// one with `struct_size` set to its sizeof.
#[no_mangle]
pub unsafe extern "C" fn rstar_engine_default_params(params: *mut rstar_engine_params) {
    // SAFETY: NULL, or writable for the size `fill_params` reads from it, per the contract.
    unsafe { fill_params(params, default_engine_params(), &[]) }
}

/// Many sequences over one model: prefix cache, forks, batched expansion.
///
/// Thread-safety: calls on one engine are serialised by an internal lock (a second thread waits);
/// use one engine per thread to run in parallel. Calls that change the engine take a non-const
/// pointer. No callbacks.
pub struct rstar_engine {
    inner: Mutex<Engine>,
    /// The model's precision and threads (`rstar_model_params`).
    compute: crate::backend::cpu::Compute,
}

fn lock(e: &rstar_engine) -> Result<std::sync::MutexGuard<'_, Engine>> {
    e.inner
        .lock()
        .map_err(|_| Error::Internal("engine lock poisoned by an earlier failure".into()))
}

/// Creates an engine over `model` (which must outlive nothing: the engine keeps its own reference).
/// `params` may be NULL for defaults. Free with `rstar_engine_free`.
///
/// # Safety
/// `model` is live; `params` is NULL or filled by `rstar_engine_default_params`; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rstar_engine_new(
    model: *const rstar_model,
    params: *const rstar_engine_params,
    out: *mut *mut rstar_engine,
) -> Status {
    guard(|| {
        let out = self::out(out, "out")?;
        *out = std::ptr::null_mut();
        let m = arg(model, "model")?;
        let engine = Engine::new(
            m.inner.clone(),
            to_engine_config(params, m.compute.kv_dtype())?,
        )?;
        *out = super::new_handle(
            rstar_engine {
                inner: Mutex::new(engine),
                compute: m.compute.clone(),
            },
            "engine",
        );
        Ok(())
    })
}

/// Frees an engine and all its sequences. NULL is ignored; a second free is
/// `RSTAR_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `engine` is NULL or came from `rstar_engine_new` and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn rstar_engine_free(engine: *mut rstar_engine) -> Status {
    // SAFETY: per the contract, no call on the handle is running.
    unsafe { super::free_handle(engine, "engine") }
}

/// Adds a sequence of `n_ids` tokens (reusing cached KV of its prefix); `*seq` receives its id.
///
/// # Safety
/// `engine` is live; `ids` points to `n_ids` ids; `seq` is writable.
#[no_mangle]
pub unsafe extern "C" fn rstar_engine_add(
    engine: *mut rstar_engine,
    ids: *const u32,
    n_ids: usize,
    seq: *mut u64,
) -> Status {
    guard(|| {
        let seq = out(seq, "seq")?;
        let ids = slice(ids, n_ids, "ids")?;
        *seq = lock(arg(engine, "engine")?)?.add(ids)?.0;
        Ok(())
    })
}

/// Forks `seq` (shares its KV; no copy); `*child` receives the new id.
///
/// # Safety
/// `engine` is live; `child` is writable.
#[no_mangle]
pub unsafe extern "C" fn rstar_engine_fork(
    engine: *mut rstar_engine,
    seq: u64,
    child: *mut u64,
) -> Status {
    guard(|| {
        let child = out(child, "child")?;
        *child = lock(arg(engine, "engine")?)?.fork(SeqId(seq))?.0;
        Ok(())
    })
}

/// Appends tokens to a sequence (computed lazily, batched with other work).
///
/// # Safety
/// `engine` is live; `ids` points to `n_ids` ids.
#[no_mangle]
pub unsafe extern "C" fn rstar_engine_append(
    engine: *mut rstar_engine,
    seq: u64,
    ids: *const u32,
    n_ids: usize,
) -> Status {
    guard(|| {
        let ids = slice(ids, n_ids, "ids")?;
        lock(arg(engine, "engine")?)?.append(SeqId(seq), ids)
    })
}

/// Drops a sequence (its blocks stay cached for prefix reuse until evicted).
///
/// # Safety
/// `engine` is live.
#[no_mangle]
pub unsafe extern "C" fn rstar_engine_remove(engine: *mut rstar_engine, seq: u64) -> Status {
    guard(|| lock(arg(engine, "engine")?)?.remove(SeqId(seq)))
}

/// Samples `n` continuations of `seq`, all decoded together; child `i` samples with seed
/// `params.seed + i`. `*result_json` receives
/// `{"candidates": [{"seq", "ids", "text", "finish_reason", "stop_string", ...}], "stats": {...}}`
/// (free with `rstar_string_free`). The child sequences stay in the engine: remove them when done.
///
/// # Safety
/// `engine` is live; `params` NULL or filled by `rstar_generate_default_params`; `result_json` writable.
#[no_mangle]
pub unsafe extern "C" fn rstar_engine_expand(
    engine: *mut rstar_engine,
    seq: u64,
    n: u32,
    params: *const rstar_generate_params,
    result_json: *mut *mut c_char,
) -> Status {
    guard(|| {
        let result = out(result_json, "result_json")?;
        *result = std::ptr::null_mut();
        let params = to_generate_params(&read_params(params, default_generate_params())?)?;
        let e = arg(engine, "engine")?;
        let mut eng = lock(e)?;
        let eng = &mut *eng;
        let cands = e
            .compute
            .run(|| eng.expand(SeqId(seq), n as usize, &params))?;
        let v = serde_json::json!({ "candidates": cands, "stats": eng.stats() });
        *result = new_c_string(&v.to_string());
        Ok(())
    })
}

/// Engine statistics as JSON (tokens requested/computed, cache hits, blocks in use/free/cached/
/// evicted, time per phase); free with `rstar_string_free`.
///
/// # Safety
/// `engine` is live; `stats_json` is writable.
#[no_mangle]
pub unsafe extern "C" fn rstar_engine_stats(
    engine: *const rstar_engine,
    stats_json: *mut *mut c_char,
) -> Status {
    guard(|| {
        let res = out(stats_json, "stats_json")?;
        let s = serde_json::to_string(&lock(arg(engine, "engine")?)?.stats())
            .map_err(|e| Error::Internal(e.to_string()))?;
        *res = new_c_string(&s);
        Ok(())
    })
}

/// A process reward model with its own KV cache (see `rstar_ppm_score`).
///
/// Thread-safety: `rstar_ppm_score` calls on one PPM are serialised by an internal lock.
pub struct rstar_ppm {
    inner: Mutex<Scorer>,
}

/// Loads a PPM directory (decoder + value_head.safetensors, rStar/trl combined checkpoint, or
/// Qwen2ForProcessRewardModel). `params` sizes its KV cache (NULL: defaults).
///
/// # Safety
/// `path` is NUL-terminated; `params` NULL or filled by `rstar_engine_default_params`; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn rstar_ppm_load(
    path: *const c_char,
    params: *const rstar_engine_params,
    out: *mut *mut rstar_ppm,
) -> Status {
    guard(|| {
        let out = self::out(out, "out")?;
        *out = std::ptr::null_mut();
        let ppm = Arc::new(Ppm::load(Path::new(c_str(path, "path")?))?);
        let scorer = Scorer::new(
            ppm,
            to_engine_config(params, crate::backend::cpu::KvDtype::F32)?,
        )?;
        *out = super::new_handle(
            rstar_ppm {
                inner: Mutex::new(scorer),
            },
            "ppm",
        );
        Ok(())
    })
}

/// Frees a PPM. NULL is ignored; a second free is
/// `RSTAR_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `ppm` is NULL or came from `rstar_ppm_load` and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn rstar_ppm_free(ppm: *mut rstar_ppm) -> Status {
    // SAFETY: per the contract, no call on the handle is running.
    unsafe { super::free_handle(ppm, "ppm") }
}

/// Scores `n_seqs` sequences (sequence `i` is `seqs[i][0 .. lens[i]]`) in batched passes that share
/// common prefixes; `values[i]` receives the raw head output at the last token (rStar's MCTS uses
/// tanh(raw / 5); for a Qwen2.5-Math-PRM head it is the probability of a correct step).
///
/// # Safety
/// `ppm` is live; `seqs` and `lens` point to `n_seqs` entries; each `seqs[i]` to `lens[i]` ids;
/// `values` to `n_seqs` writable floats.
#[no_mangle]
pub unsafe extern "C" fn rstar_ppm_score(
    ppm: *mut rstar_ppm,
    seqs: *const *const u32,
    lens: *const usize,
    n_seqs: usize,
    values: *mut f32,
) -> Status {
    guard(|| {
        let ptrs = slice(seqs, n_seqs, "seqs")?;
        let lens = slice(lens, n_seqs, "lens")?;
        if n_seqs > 0 && values.is_null() {
            return Err(Error::InvalidArgument("`values` is NULL".into()));
        }
        let owned = ptrs
            .iter()
            .zip(lens)
            .enumerate()
            .map(|(i, (&p, &n))| slice(p, n, &format!("seqs[{i}]")).map(<[u32]>::to_vec))
            .collect::<Result<Vec<_>>>()?;
        let v = arg(ppm, "ppm")?
            .inner
            .lock()
            .map_err(|_| Error::Internal("ppm lock poisoned".into()))?
            .score(&owned)?;
        // SAFETY: non-NULL (checked) and, per the contract, room for n_seqs floats.
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), values, v.len()) };
        Ok(())
    })
}

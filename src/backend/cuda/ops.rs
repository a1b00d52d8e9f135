//! Typed launches of the kernels in `kernels/*.cu`, one function per op. Buffers are passed as
//! device addresses ([`Ptr`]); callers own the memory (cudarc `CudaSlice`s) and keep it alive until
//! the stream has run the launch (the decoder syncs once per forward pass).

use std::collections::HashMap;
use std::sync::Mutex;

use cudarc::driver::{CudaSlice, DevicePtr, LaunchConfig, PushKernelArg};
use half::bf16;

use super::Gpu;
use crate::backend::DType;
use crate::error::{Error, Result};

/// A device address (byte-addressed).
pub type Ptr = u64;

/// The device address of `s`, offset by `elems` elements.
pub fn ptr<T>(gpu: &Gpu, s: &CudaSlice<T>, elems: usize) -> Ptr {
    let (p, _sync) = s.device_ptr(&gpu.stream);
    p + (elems * std::mem::size_of::<T>()) as u64
}

/// One kernel argument.
#[derive(Debug, Clone, Copy)]
pub enum Arg {
    P(Ptr),
    I(i32),
    U(u64),
    F(f32),
}

fn err(what: &str, e: impl std::fmt::Debug) -> Error {
    Error::Device(format!("{what}: {e:?}"))
}

/// Launches `file::name` on `grid` blocks of `block` threads with `smem` bytes of dynamic shared
/// memory.
pub fn launch(
    gpu: &Gpu,
    file: &'static str,
    name: &'static str,
    grid: (u32, u32, u32),
    block: u32,
    smem: u32,
    args: &[Arg],
) -> Result<()> {
    let f = gpu.func(file, name)?;
    if smem > 48 * 1024 && gpu.raise_smem_limit(name, smem) {
        use cudarc::driver::sys::CUfunction_attribute_enum as FA;
        f.set_attribute(
            FA::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            smem as i32,
        )
        .map_err(|e| err(&format!("{name}: shared memory {smem} bytes"), e))?;
    }
    let mut b = gpu.stream.launch_builder(&f);
    for a in args {
        match a {
            Arg::P(p) => b.arg(p),
            Arg::I(i) => b.arg(i),
            Arg::U(u) => b.arg(u),
            Arg::F(x) => b.arg(x),
        };
    }
    let cfg = LaunchConfig {
        grid_dim: grid,
        block_dim: (block, 1, 1),
        shared_mem_bytes: smem,
    };
    // SAFETY: every kernel in kernels/*.cu takes exactly the arguments its wrapper below passes, in
    // order and with matching C types (pointers as u64, int as i32, float as f32, u64 as u64); the
    // pointed-to buffers are sized by the wrappers' callers for the grid launched here.
    unsafe { b.launch(cfg) }.map_err(|e| err(name, e))?;
    Ok(())
}

fn grid_1d(n: usize, block: usize) -> u32 {
    n.div_ceil(block).clamp(1, 65535 * 16) as u32
}

/// A kernel of `elementwise.cu` over `n` items: 256-thread blocks, no shared memory.
fn elementwise(gpu: &Gpu, name: &'static str, n: usize, args: &[Arg]) -> Result<()> {
    launch(
        gpu,
        "elementwise",
        name,
        (grid_1d(n, 256), 1, 1),
        256,
        0,
        args,
    )
}

fn dtype_suffix(dt: DType) -> Result<&'static str> {
    match dt {
        DType::F32 => Ok("f32"),
        DType::F16 => Ok("f16"),
        DType::BF16 => Ok("bf16"),
        #[allow(unreachable_patterns)]
        other => Err(Error::Unsupported(format!(
            "{} weights on the CUDA backend",
            other.name()
        ))),
    }
}

/// `out[r] = table[ids[r]]` as f32, `h` wide.
pub fn embed(
    gpu: &Gpu,
    dt: DType,
    table: Ptr,
    ids: Ptr,
    out: Ptr,
    t: usize,
    h: usize,
) -> Result<()> {
    let name = match dtype_suffix(dt)? {
        "f32" => "embed_f32",
        "f16" => "embed_f16",
        _ => "embed_bf16",
    };
    launch(
        gpu,
        "elementwise",
        name,
        (t as u32, 1, 1),
        256,
        0,
        &[Arg::P(table), Arg::P(ids), Arg::P(out), Arg::I(h as i32)],
    )
}

/// RMSNorm of `rows` rows of width `d` (`add_rms_norm` with nothing to add).
pub fn rms_norm(
    gpu: &Gpu,
    x: Ptr,
    w: Ptr,
    eps: f32,
    out: Ptr,
    rows: usize,
    d: usize,
) -> Result<()> {
    add_rms_norm(gpu, x, 0, w, eps, out, rows, d)
}

/// Head layout of a rope / attention call.
#[derive(Debug, Clone, Copy)]
pub struct Heads {
    pub nh: usize,
    pub nkv: usize,
    pub hd: usize,
}

/// The operands of [`rope_store_kv`]: `t` rows of `qkv`, each token's position and K/V store
/// row, the RoPE frequencies (`half` of them), and where q, k and v go.
#[derive(Debug, Clone, Copy)]
pub struct RopeStore {
    pub qkv: Ptr,
    pub pos: Ptr,
    pub kv_row: Ptr,
    pub inv_freq: Ptr,
    pub half: usize,
    pub heads: Heads,
    pub q_out: Ptr,
    pub k_store: Ptr,
    pub v_store: Ptr,
    pub t: usize,
}

/// Rotary embedding of q and k of `t` tokens, q to `q_out`, k and v to their K/V store rows.
pub fn rope_store_kv(gpu: &Gpu, r: RopeStore) -> Result<()> {
    let RopeStore {
        qkv,
        pos,
        kv_row,
        inv_freq,
        half,
        heads,
        q_out,
        k_store,
        v_store,
        t,
    } = r;
    launch(
        gpu,
        "elementwise",
        "rope_store_kv",
        (t as u32, 1, 1),
        1024,
        0,
        &[
            Arg::P(qkv),
            Arg::P(pos),
            Arg::P(kv_row),
            Arg::P(inv_freq),
            Arg::I(half as i32),
            Arg::I(heads.nh as i32),
            Arg::I(heads.nkv as i32),
            Arg::I(heads.hd as i32),
            Arg::P(q_out),
            Arg::P(k_store),
            Arg::P(v_store),
        ],
    )
}

/// `act[r] = silu(gate[r]) * up[r]` from `gu` rows `[gate | up]`.
pub fn silu_mul(gpu: &Gpu, gu: Ptr, act: Ptr, rows: usize, inter: usize) -> Result<()> {
    let n = rows * inter;
    elementwise(
        gpu,
        "silu_mul",
        n,
        &[
            Arg::P(gu),
            Arg::P(act),
            Arg::I(inter as i32),
            Arg::U(n as u64),
        ],
    )
}

/// `x += y` over `n` elements.
pub fn add(gpu: &Gpu, x: Ptr, y: Ptr, n: usize) -> Result<()> {
    elementwise(
        gpu,
        "add_inplace",
        n,
        &[Arg::P(x), Arg::P(y), Arg::U(n as u64)],
    )
}

/// `out[r, j] += b[j]` for `rows` rows of row stride `ld`.
pub fn add_bias(gpu: &Gpu, out: Ptr, b: Ptr, n: usize, ld: usize, rows: usize) -> Result<()> {
    let total = n * rows;
    elementwise(
        gpu,
        "add_bias",
        total,
        &[
            Arg::P(out),
            Arg::P(b),
            Arg::I(n as i32),
            Arg::I(ld as i32),
            Arg::U(total as u64),
        ],
    )
}

/// `x += y; out = rms_norm(x) * w` for `rows` rows of width `d` (`y` = 0: no add).
#[allow(clippy::too_many_arguments)]
pub fn add_rms_norm(
    gpu: &Gpu,
    x: Ptr,
    y: Ptr,
    w: Ptr,
    eps: f32,
    out: Ptr,
    rows: usize,
    d: usize,
) -> Result<()> {
    launch(
        gpu,
        "elementwise",
        "add_rms_norm",
        (rows as u32, 1, 1),
        1024,
        0,
        &[
            Arg::P(x),
            Arg::P(y),
            Arg::P(w),
            Arg::F(eps),
            Arg::P(out),
            Arg::I(d as i32),
        ],
    )
}

/// `dst[..n] = bf16(src)`, `dst[n..2n] = bf16(src - dst[..n])`.
pub fn to_bf16_split(gpu: &Gpu, src: Ptr, dst: Ptr, n: usize) -> Result<()> {
    elementwise(
        gpu,
        "to_bf16_split",
        n,
        &[Arg::P(src), Arg::P(dst), Arg::U(n as u64)],
    )
}

/// `out[r, col0 + j] = s[r, j] + s[m + r, j]` (`s` is `[2m, n]`).
pub fn add_halves(
    gpu: &Gpu,
    s: Ptr,
    out: Ptr,
    m: usize,
    n: usize,
    ld: usize,
    col0: usize,
) -> Result<()> {
    elementwise(
        gpu,
        "add_halves",
        m * n,
        &[
            Arg::P(s),
            Arg::P(out),
            Arg::I(m as i32),
            Arg::I(n as i32),
            Arg::I(ld as i32),
            Arg::I(col0 as i32),
        ],
    )
}

/// `dst = bf16(src)` over `n` elements.
pub fn to_bf16(gpu: &Gpu, src: Ptr, dst: Ptr, n: usize) -> Result<()> {
    elementwise(
        gpu,
        "to_bf16",
        n,
        &[Arg::P(src), Arg::P(dst), Arg::U(n as u64)],
    )
}

/// Fills `n` bf16 values with a seeded uniform pattern in `[-scale, scale)`.
pub fn fill_random_bf16(gpu: &Gpu, dst: Ptr, n: usize, seed: u64, scale: f32) -> Result<()> {
    launch(
        gpu,
        "elementwise",
        "fill_random_bf16",
        (grid_1d(n, 256).min(65535), 1, 1),
        256,
        0,
        &[Arg::P(dst), Arg::U(n as u64), Arg::U(seed), Arg::F(scale)],
    )
}

/// A weight matrix `[n, k]` on the device in its stored dtype.
#[derive(Debug)]
pub struct DevMatrix {
    pub buf: CudaSlice<u8>,
    pub dtype: DType,
    pub n: usize,
    pub k: usize,
}

/// `out[i, col0 + j] = x[i] . w[j]` for `m` rows with the GEMV kernels (any m, 8 rows per pass).
pub fn gemv(
    gpu: &Gpu,
    x: Ptr,
    w: &DevMatrix,
    out: Ptr,
    m: usize,
    ld: usize,
    col0: usize,
) -> Result<()> {
    let sfx = dtype_suffix(w.dtype)?;
    let vec_width = if w.dtype == DType::F32 { 4 } else { 8 };
    let vec = w.k.is_multiple_of(vec_width) as i32;
    let wp = ptr(gpu, &w.buf, 0);
    let mut i = 0;
    while i < m {
        let rows = match m - i {
            r if r >= 8 => 8,
            r if r >= 4 => 4,
            r if r >= 2 => 2,
            _ => 1,
        };
        let name: &'static str = match (sfx, rows) {
            ("bf16", 8) => "gemv_bf16_m8",
            ("bf16", 4) => "gemv_bf16_m4",
            ("bf16", 2) => "gemv_bf16_m2",
            ("bf16", _) => "gemv_bf16_m1",
            ("f16", 8) => "gemv_f16_m8",
            ("f16", 4) => "gemv_f16_m4",
            ("f16", 2) => "gemv_f16_m2",
            ("f16", _) => "gemv_f16_m1",
            (_, 8) => "gemv_f32_m8",
            (_, 4) => "gemv_f32_m4",
            (_, 2) => "gemv_f32_m2",
            _ => "gemv_f32_m1",
        };
        launch(
            gpu,
            "gemv",
            name,
            (w.n.div_ceil(8) as u32, 1, 1),
            256,
            0,
            &[
                Arg::P(x + (i * w.k * 4) as u64),
                Arg::P(wp),
                Arg::P(out + (i * ld * 4) as u64),
                Arg::I(w.n as i32),
                Arg::I(w.k as i32),
                Arg::I(ld as i32),
                Arg::I(col0 as i32),
                Arg::I(vec),
            ],
        )?;
        i += rows;
    }
    Ok(())
}

/// A GEMM's operands: `c[i, col0 + j] = a[i] . b[j]` with bf16 `a [m, k]` and `b [n, k]`, f32 `c`
/// rows `ldc` apart.
#[derive(Debug, Clone, Copy)]
pub struct Gemm {
    pub a: Ptr,
    pub b: Ptr,
    pub c: Ptr,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub ldc: usize,
    pub col0: usize,
}

/// Hand-written tensor-core GEMM (see [`Gemm`]).
pub fn gemm_wmma(gpu: &Gpu, g: Gemm) -> Result<()> {
    let Gemm {
        a,
        b,
        c,
        m,
        n,
        k,
        ldc,
        col0,
    } = g;
    launch(
        gpu,
        "gemm",
        "gemm_bf16",
        (n.div_ceil(128) as u32, m.div_ceil(128) as u32, 1),
        256,
        0,
        &[
            Arg::P(a),
            Arg::P(b),
            Arg::P(c),
            Arg::I(m as i32),
            Arg::I(n as i32),
            Arg::I(k as i32),
            Arg::I(ldc as i32),
            Arg::I(col0 as i32),
        ],
    )
}

/// The same product through cuBLAS (bf16 inputs, f32 output and accumulation).
pub fn gemm_cublas(gpu: &Gpu, g: Gemm) -> Result<()> {
    let Gemm {
        a,
        b,
        c,
        m,
        n,
        k,
        ldc,
        col0,
    } = g;
    use cudarc::cublas::{result, sys};
    let (alpha, beta) = (1f32, 0f32);
    // Row-major C [m, ldc] is column-major C^T [n, m]: C^T = B (n x k) . A^T, where the row-major
    // B [n, k] is column-major k x n (transpose it) and row-major A [m, k] is column-major k x m.
    // SAFETY: the pointers address device buffers of the sizes the caller passed; cuBLAS runs on
    // the backend's stream.
    unsafe {
        result::gemm_ex(
            *gpu.blas.handle(),
            sys::cublasOperation_t::CUBLAS_OP_T,
            sys::cublasOperation_t::CUBLAS_OP_N,
            n as i32,
            m as i32,
            k as i32,
            &alpha as *const f32 as *const _,
            b as *const std::ffi::c_void,
            sys::cudaDataType::CUDA_R_16BF,
            k as i32,
            a as *const std::ffi::c_void,
            sys::cudaDataType::CUDA_R_16BF,
            k as i32,
            &beta as *const f32 as *const _,
            (c + (col0 * 4) as u64) as *mut std::ffi::c_void,
            sys::cudaDataType::CUDA_R_32F,
            ldc as i32,
            sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .map_err(|e| err("cublasGemmEx", e))
}

/// Milliseconds the work queued by `f` takes on the device (CUDA events around it).
pub fn timed_ms(gpu: &Gpu, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
    use cudarc::driver::sys::CUevent_flags;
    let ev = || {
        gpu.ctx
            .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .map_err(|e| err("event", e))
    };
    let (start, end) = (ev()?, ev()?);
    start.record(&gpu.stream).map_err(|e| err("event", e))?;
    f()?;
    end.record(&gpu.stream).map_err(|e| err("event", e))?;
    end.synchronize().map_err(|e| err("event", e))?;
    Ok(start.elapsed_ms(&end).map_err(|e| err("event", e))? as f64)
}

/// Which GEMM implementation serves a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmImpl {
    Wmma,
    Cublas,
}

/// Per-shape choice between the hand-written GEMM and cuBLAS, measured on first use of each shape
/// (`m` rounded up to a power of two). `RSTAR_CUDA_GEMM=wmma|cublas` forces one.
#[derive(Debug, Default)]
pub struct GemmTuner {
    choice: Mutex<HashMap<(usize, usize, usize), GemmImpl>>,
}

impl GemmTuner {
    pub fn forced() -> Option<GemmImpl> {
        match std::env::var("RSTAR_CUDA_GEMM").ok()?.as_str() {
            "wmma" => Some(GemmImpl::Wmma),
            "cublas" => Some(GemmImpl::Cublas),
            _ => None,
        }
    }

    /// Runs the product with the faster implementation for this shape.
    pub fn gemm(&self, gpu: &Gpu, g: Gemm) -> Result<GemmImpl> {
        let key = (g.m.next_power_of_two(), g.n, g.k);
        let known =
            Self::forced().or_else(|| self.choice.lock().expect("tuner").get(&key).copied());
        let pick = match known {
            Some(p) => p,
            None => {
                let time = |imp: GemmImpl| -> Result<f64> {
                    let run = |imp| match imp {
                        GemmImpl::Wmma => gemm_wmma(gpu, g),
                        GemmImpl::Cublas => gemm_cublas(gpu, g),
                    };
                    run(imp)?; // warm-up
                    timed_ms(gpu, &mut || (0..3).try_for_each(|_| run(imp)))
                };
                let (tw, tc) = (time(GemmImpl::Wmma)?, time(GemmImpl::Cublas)?);
                let p = if tw <= tc {
                    GemmImpl::Wmma
                } else {
                    GemmImpl::Cublas
                };
                self.choice.lock().expect("tuner").insert(key, p);
                p
            }
        };
        match pick {
            GemmImpl::Wmma => gemm_wmma(gpu, g)?,
            GemmImpl::Cublas => gemm_cublas(gpu, g)?,
        }
        Ok(pick)
    }

    /// The measured choices so far: `((m bucket, n, k), impl)`.
    pub fn choices(&self) -> Vec<((usize, usize, usize), GemmImpl)> {
        let mut v: Vec<_> = self
            .choice
            .lock()
            .expect("tuner")
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }
}

/// One attention tile (mirrors `struct Tile` in kernels/attention.cu).
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Tile {
    pub seq: u32,
    pub tok0: u32,
    pub pos0: u32,
    pub ntok: u32,
}

/// Rows of query heads a block takes at most (tokens x heads of one kv group): `ROWS` in
/// kernels/attention.cu.
pub fn attn_rows_max(_heads: Heads) -> usize {
    32
}

/// Head layouts the attention kernel takes: at most 32 query heads per kv head, head dim <= 256.
pub fn attn_supported(heads: Heads) -> Result<()> {
    if heads.nkv == 0
        || !heads.nh.is_multiple_of(heads.nkv)
        || heads.nh / heads.nkv > 32
        || heads.hd > 256
    {
        return Err(Error::Unsupported(format!(
            "CUDA attention with {} query heads, {} kv heads, head dim {} (needs at most 32 query \
             heads per kv head and head dim <= 256)",
            heads.nh, heads.nkv, heads.hd
        )));
    }
    Ok(())
}

/// The K/V positions one block stages per step (`KB` in kernels/attention.cu).
pub const ATTN_KB: usize = 32;

/// Cuts sequences `(start, len)` into attention tiles; returns the tiles and the most K/V chunks any
/// tile scans.
pub fn attn_tiles(seqs: &[(usize, usize)], heads: Heads) -> (Vec<Tile>, usize) {
    let per_tile = (attn_rows_max(heads) / (heads.nh / heads.nkv)).max(1);
    let mut tiles = Vec::new();
    let mut tok = 0usize;
    let mut max_chunks = 1;
    for (si, &(start, len)) in seqs.iter().enumerate() {
        let mut i = 0;
        while i < len {
            let n = per_tile.min(len - i);
            tiles.push(Tile {
                seq: si as u32,
                tok0: (tok + i) as u32,
                pos0: (start + i) as u32,
                ntok: n as u32,
            });
            max_chunks = max_chunks.max((start + i + n).div_ceil(ATTN_KB));
            i += n;
        }
        tok += len;
    }
    (tiles, max_chunks)
}

/// Dynamic shared memory of one attention block.
pub fn attn_smem(heads: Heads) -> usize {
    let (r, hd, kb) = (attn_rows_max(heads), heads.hd, ATTN_KB);
    4 * (r * (hd + 1) + kb * (hd + 1) + kb * hd + r * kb + 3 * r)
}

/// The operands of [`attention`]. `tiles`, `tables` (all block tables concatenated) and
/// `table_off` (each sequence's offset into them) are device arrays; `part` holds
/// `splits * t * (qd + 2 * nh)` floats when `splits > 1`.
#[derive(Debug, Clone, Copy)]
pub struct PagedAttn {
    pub q: Ptr,
    pub k_store: Ptr,
    pub v_store: Ptr,
    pub tiles: Ptr,
    pub n_tiles: usize,
    pub tables: Ptr,
    pub table_off: Ptr,
    pub heads: Heads,
    pub block_size: usize,
    pub window: Option<usize>,
    pub splits: usize,
    pub t: usize,
    pub out: Ptr,
    pub part: Ptr,
}

/// Paged causal attention for one layer (see [`PagedAttn`]).
pub fn attention(gpu: &Gpu, a: PagedAttn) -> Result<()> {
    let PagedAttn {
        q,
        k_store,
        v_store,
        tiles,
        n_tiles,
        tables,
        table_off,
        heads,
        block_size,
        window,
        splits,
        t,
        out,
        part,
    } = a;
    let scale = 1.0 / (heads.hd as f32).sqrt();
    launch(
        gpu,
        "attention",
        "attn_paged",
        (n_tiles as u32, heads.nkv as u32, splits as u32),
        128,
        attn_smem(heads) as u32,
        &[
            Arg::P(q),
            Arg::P(k_store),
            Arg::P(v_store),
            Arg::P(tiles),
            Arg::P(tables),
            Arg::P(table_off),
            Arg::I(heads.nh as i32),
            Arg::I(heads.nkv as i32),
            Arg::I(heads.hd as i32),
            Arg::I(block_size as i32),
            Arg::I(window.unwrap_or(0) as i32),
            Arg::F(scale),
            Arg::I(attn_rows_max(heads) as i32),
            Arg::I(splits as i32),
            Arg::I(t as i32),
            Arg::P(out),
            Arg::P(part),
        ],
    )?;
    if splits > 1 {
        launch(
            gpu,
            "attention",
            "attn_combine",
            (t as u32, 1, 1),
            1024,
            0,
            &[
                Arg::P(part),
                Arg::I(splits as i32),
                Arg::I(t as i32),
                Arg::I(heads.nh as i32),
                Arg::I(heads.hd as i32),
                Arg::P(out),
            ],
        )?;
    }
    Ok(())
}

/// How many K/V splits a launch of `n_tiles` tiles scanning up to `max_chunks` chunks should use:
/// enough blocks to fill the device twice over, at least one chunk per split, at most 32.
pub fn attn_splits(gpu: &Gpu, n_tiles: usize, nkv: usize, max_chunks: usize) -> usize {
    let blocks = n_tiles * nkv;
    let want = (2 * gpu.sm_count).div_ceil(blocks.max(1));
    want.min(max_chunks).clamp(1, 32)
}

/// Per-row sampling parameters (mirrors `struct SampleParams` in kernels/sampling.cu).
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SampleParams {
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub pad: u32,
    pub seed: u64,
    pub counter: u64,
}

/// Picks one token id per row of `logits [rows, n]`; `scratch` holds `rows * n` floats.
pub fn sample(
    gpu: &Gpu,
    logits: Ptr,
    params: Ptr,
    n: usize,
    scratch: Ptr,
    out_ids: Ptr,
    rows: usize,
) -> Result<()> {
    launch(
        gpu,
        "sampling",
        "sample_rows",
        (rows as u32, 1, 1),
        1024,
        0,
        &[
            Arg::P(logits),
            Arg::P(params),
            Arg::I(n as i32),
            Arg::P(scratch),
            Arg::P(out_ids),
        ],
    )
}

/// Uploads host data.
pub fn upload<T: cudarc::driver::DeviceRepr>(gpu: &Gpu, data: &[T]) -> Result<CudaSlice<T>> {
    gpu.stream.clone_htod(data).map_err(|e| err("upload", e))
}

/// Allocates `n` zeroed elements.
pub fn zeros<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    gpu: &Gpu,
    n: usize,
) -> Result<CudaSlice<T>> {
    gpu.stream
        .alloc_zeros::<T>(n.max(1))
        .map_err(|e| Error::OutOfMemory(format!("device allocation of {n} elements: {e:?}")))
}

/// Downloads a whole buffer (synchronising the stream).
pub fn download<T: cudarc::driver::DeviceRepr + Default + Clone>(
    gpu: &Gpu,
    s: &CudaSlice<T>,
) -> Result<Vec<T>> {
    gpu.stream.clone_dtoh(s).map_err(|e| err("download", e))
}

/// Uploads a host weight matrix in its dtype; ggml blocks are dequantized to f32 first (exactly
/// the values the CPU computes with), since the device kernels take float weights only.
pub fn upload_matrix(gpu: &Gpu, w: &crate::backend::Weight) -> Result<DevMatrix> {
    let expanded;
    let w = if w.is_quantized() {
        expanded = w.to_f32_weight();
        &expanded
    } else {
        w
    };
    let (n, k) = match w.shape.as_slice() {
        [n, k] => (*n, *k),
        [k] => (1, *k),
        s => return Err(Error::Internal(format!("matrix of shape {s:?}"))),
    };
    Ok(DevMatrix {
        buf: upload(gpu, w.raw())?,
        dtype: w.dtype,
        n,
        k,
    })
}

/// Reinterprets bf16 values as their bits for upload.
pub fn bf16_bits(v: &[bf16]) -> &[u16] {
    bytemuck::cast_slice(v)
}

//! Matmuls on ggml-quantized weights, read in place (from a memory map) and never expanded.
//!
//! Owns the block formats ([`QuantFormat`]: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K; layouts and
//! decoders in [`blocks`]), their dequantization to f32 (the single source of truth, used by the
//! GGUF loader too), and the quantized GEMV/GEMM `out[i, j] = sum_k x[i, k] * w[j, k]` in two
//! precisions:
//! - `exact`: each block is decoded to f32 in registers with ggml's own float expression (so the
//!   weights equal [`dequantize`]'s bit for bit) and multiplied into f32 accumulators;
//! - `fast`: the activations are quantized per block to 8 bits (llama.cpp's `q8_0` for the 32-value
//!   formats, `q8_K` with 16-value sums for the K-quants, see [`act`]) and each block's dot product
//!   is an integer sum `sum sc * q * a`, scaled in f32.
//!
//! One driver ([`drive`]) walks weight rows and blocks for every format and path; a path ([`Isa`]:
//! scalar here, [`avx2`], [`avx512`] with or without VNNI) supplies only the block primitives. An
//! output element's arithmetic depends on the path alone, never on `m`, on the tile or on the
//! threads, so batch-1 and batched results are bit-identical.

pub mod act;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod blocks;
pub mod quantize;
#[cfg(target_arch = "x86_64")]
mod unpack;

use std::ops::Range;

pub use act::ActQ8;
use blocks::{Decoded, Format};

use super::{Kernel, Precision};
use crate::{Error, Result};

/// A ggml block format librstar computes with. Ids are ggml's `enum ggml_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantFormat {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
}

/// Runs `$body` with `$F` bound to the block type of format `$f` (each block type in [`blocks`]
/// is named as its variant).
macro_rules! with_format {
    ($f:expr, $F:ident => $body:expr) => {
        with_format!(@ $f, $F, $body, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2K, Q3K, Q4K, Q5K, Q6K)
    };
    (@ $f:expr, $F:ident, $body:expr, $($v:ident),*) => {
        match $f {
            $(QuantFormat::$v => {
                type $F = blocks::$v;
                $body
            })*
        }
    };
}

impl QuantFormat {
    /// Every format.
    pub const ALL: [QuantFormat; 10] = [
        QuantFormat::Q4_0,
        QuantFormat::Q4_1,
        QuantFormat::Q5_0,
        QuantFormat::Q5_1,
        QuantFormat::Q8_0,
        QuantFormat::Q2K,
        QuantFormat::Q3K,
        QuantFormat::Q4K,
        QuantFormat::Q5K,
        QuantFormat::Q6K,
    ];

    /// ggml's type id.
    pub fn ggml_id(self) -> u32 {
        match self {
            QuantFormat::Q4_0 => 2,
            QuantFormat::Q4_1 => 3,
            QuantFormat::Q5_0 => 6,
            QuantFormat::Q5_1 => 7,
            QuantFormat::Q8_0 => 8,
            QuantFormat::Q2K => 10,
            QuantFormat::Q3K => 11,
            QuantFormat::Q4K => 12,
            QuantFormat::Q5K => 13,
            QuantFormat::Q6K => 14,
        }
    }

    /// From ggml's type id; None for other types.
    pub fn from_ggml_id(id: u32) -> Option<QuantFormat> {
        QuantFormat::ALL.into_iter().find(|f| f.ggml_id() == id)
    }

    /// ggml's name.
    pub fn name(self) -> &'static str {
        match self {
            QuantFormat::Q4_0 => "Q4_0",
            QuantFormat::Q4_1 => "Q4_1",
            QuantFormat::Q5_0 => "Q5_0",
            QuantFormat::Q5_1 => "Q5_1",
            QuantFormat::Q8_0 => "Q8_0",
            QuantFormat::Q2K => "Q2_K",
            QuantFormat::Q3K => "Q3_K",
            QuantFormat::Q4K => "Q4_K",
            QuantFormat::Q5K => "Q5_K",
            QuantFormat::Q6K => "Q6_K",
        }
    }

    /// Values per block.
    pub fn block_values(self) -> usize {
        with_format!(self, F => F::QK)
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        with_format!(self, F => F::BYTES)
    }
}

/// Decodes `src` (whole blocks of `format`) into `out` with ggml's float expression (bit for bit
/// what ggml's `dequantize_row_*` and the `gguf` Python package compute). Errors when the lengths
/// disagree.
pub fn dequantize(format: QuantFormat, src: &[u8], out: &mut [f32]) -> Result<()> {
    let (qk, bytes) = (format.block_values(), format.block_bytes());
    if !src.len().is_multiple_of(bytes) || src.len() / bytes * qk != out.len() {
        return Err(Error::InvalidArgument(format!(
            "{} bytes of {} cannot hold {} values",
            src.len(),
            format.name(),
            out.len()
        )));
    }
    with_format!(format, F => dequantize_blocks::<F>(src, out));
    Ok(())
}

fn dequantize_blocks<F: Format>(src: &[u8], out: &mut [f32]) {
    let mut dec = Decoded::default();
    for (b, y) in src.chunks_exact(F::BYTES).zip(out.chunks_exact_mut(F::QK)) {
        F::decode(b, &mut dec);
        for (t, (y, q)) in y
            .chunks_exact_mut(16)
            .zip(dec.q.chunks_exact(16))
            .enumerate()
        {
            let (fd, fo) = dec.factors(t);
            for (y, &q) in y.iter_mut().zip(q) {
                *y = fd * q as f32 + fo;
            }
        }
    }
}

/// A quantized weight matrix of `rows` x `cols` values, row-major, each row `cols / QK` blocks:
/// what a GGUF tensor of shape `[cols, rows]` holds (ggml lists the fastest dimension first).
#[derive(Debug, Clone, Copy)]
pub struct QuantMatrix<'a> {
    pub format: QuantFormat,
    pub data: &'a [u8],
    pub rows: usize,
    pub cols: usize,
}

impl<'a> QuantMatrix<'a> {
    /// Checks that `cols` is whole blocks and `data` holds exactly `rows` rows of them.
    pub fn new(format: QuantFormat, data: &'a [u8], rows: usize, cols: usize) -> Result<Self> {
        let qk = format.block_values();
        let want = (cols / qk)
            .checked_mul(format.block_bytes())
            .and_then(|r| r.checked_mul(rows));
        if !cols.is_multiple_of(qk) || want != Some(data.len()) {
            return Err(Error::InvalidArgument(format!(
                "{} matrix {rows}x{cols}: {} bytes, expected {} ({}-value blocks of {} bytes)",
                format.name(),
                data.len(),
                want.map_or("overflow".into(), |w| w.to_string()),
                qk,
                format.block_bytes()
            )));
        }
        Ok(QuantMatrix {
            format,
            data,
            rows,
            cols,
        })
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.cols / self.format.block_values() * self.format.block_bytes()
    }
}

/// The code path of a quantized matmul, resolved from a [`Kernel`] on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantPath {
    Scalar,
    Avx2,
    /// AVX-512F/BW; `vnni`: with `vpdpbusd` for the integer dots.
    Avx512 {
        vnni: bool,
    },
}

impl QuantPath {
    /// The path for matmul kernel `k` (the f32/bf16 setting; `neon` uses the scalar path for now).
    /// Errors when the CPU lacks the kernel's features.
    pub fn for_kernel(k: Kernel) -> Result<QuantPath> {
        if !k.available() {
            return Err(Error::Unsupported(format!(
                "kernel `{}` on this CPU",
                k.name()
            )));
        }
        Ok(match k {
            Kernel::Scalar | Kernel::Neon => QuantPath::Scalar,
            Kernel::Avx2 => QuantPath::Avx2,
            Kernel::Avx512 | Kernel::Avx512Bf16 | Kernel::Amx => QuantPath::Avx512 {
                vnni: avx512_vnni(),
            },
        })
    }

    /// Every path this CPU runs, slowest first.
    pub fn available_all() -> Vec<QuantPath> {
        let mut v = vec![QuantPath::Scalar];
        if Kernel::Avx2.available() {
            v.push(QuantPath::Avx2);
        }
        if Kernel::Avx512.available() {
            v.push(QuantPath::Avx512 { vnni: false });
            if avx512_vnni() {
                v.push(QuantPath::Avx512 { vnni: true });
            }
        }
        v
    }
}

fn avx512_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// How a quantized matmul runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantRun {
    pub precision: Precision,
    pub path: QuantPath,
    /// Split the weight rows over the threads of the CPU team enlisted on this thread (inside a
    /// [`super::Compute::run`]), else the rayon pool; false: this thread only. Every output element
    /// is computed the same way either way, so the results are the same bit for bit.
    pub threaded: bool,
}

/// `out[i * ld + j] = sum_k x[i * cols + k] * w[j, k]` for `i < m`, `j < w.rows`. `fast` quantizes
/// `x` first ([`ActQ8::quantize`]); [`matmul_q8`] takes it quantized.
pub fn matmul(
    w: &QuantMatrix,
    x: &[f32],
    m: usize,
    out: &mut [f32],
    ld: usize,
    run: QuantRun,
) -> Result<()> {
    check_io(w, x.len(), m, out.len(), ld)?;
    let q8;
    let acts = match run.precision {
        Precision::Exact => Acts::F32(x),
        Precision::Fast => {
            q8 = ActQ8::quantize(w.format, x, m, w.cols);
            Acts::Q8(&q8)
        }
    };
    run_rows(run.path, w, acts, m, out, ld, run.threaded);
    Ok(())
}

/// As [`matmul`] in `fast` precision with the activations already quantized for `w.format` (one
/// quantization serves every matrix of the same format and width, e.g. q, k and v); the precision
/// of `run` is ignored.
pub fn matmul_q8(
    w: &QuantMatrix,
    a: &ActQ8,
    out: &mut [f32],
    ld: usize,
    run: QuantRun,
) -> Result<()> {
    check_io(w, a.m() * w.cols, a.m(), out.len(), ld)?;
    a.check(w.format, w.cols)?;
    run_rows(run.path, w, Acts::Q8(a), a.m(), out, ld, run.threaded);
    Ok(())
}

/// One weight of [`matmul_q8_parts`]: `w` against activations `a` (quantized for it), its outputs
/// in columns `col..col + w.rows` of each output row.
#[derive(Clone, Copy)]
pub struct Part<'a> {
    pub w: QuantMatrix<'a>,
    pub a: &'a ActQ8,
    pub col: usize,
}

/// [`matmul_q8`] of several weights (q, k and v, or gate and up) into one output: at batch 1
/// (below the panel GEMM's rows) every part's row tasks run in one parallel section, one fork and
/// join instead of one per weight (a decode step of Qwen2.5-0.5B forked 169 times, 97 with this);
/// otherwise one [`matmul_q8`] per part. Every output element is computed as [`matmul_q8`]
/// computes it, so the results are the same bit for bit.
pub fn matmul_q8_parts(parts: &[Part], out: &mut [f32], ld: usize, run: QuantRun) -> Result<()> {
    for p in parts {
        let need = p.col.checked_add(p.w.rows).filter(|&c| c <= ld);
        if need.is_none() {
            return Err(Error::InvalidArgument(format!(
                "{} part {}x{} at column {} exceeds the output's {ld} columns",
                p.w.format.name(),
                p.w.rows,
                p.w.cols,
                p.col
            )));
        }
        check_io(
            &p.w,
            p.a.m() * p.w.cols,
            p.a.m(),
            out.len().saturating_sub(p.col),
            ld,
        )?;
        p.a.check(p.w.format, p.w.cols)?;
    }
    let m = parts.first().map_or(0, |p| p.a.m());
    if m == 0 {
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    let panels = m >= gemm::FAST_MIN_M;
    #[cfg(not(target_arch = "x86_64"))]
    let panels = false;
    let (n, mixed) = (parts.len(), parts.iter().any(|p| p.a.m() != m));
    if !run.threaded || !(2..=MAX_PARTS).contains(&n) || panels || mixed {
        for p in parts {
            run_rows(
                run.path,
                &p.w,
                Acts::Q8(p.a),
                p.a.m(),
                &mut out[p.col..],
                ld,
                run.threaded,
            );
        }
        return Ok(());
    }
    // Row tasks of about equal bytes across the parts, about four per thread in all; part `i` has
    // tasks `ends[i - 1]..ends[i]` of `per[i]` rows (arrays, not vectors: the decode step
    // allocates nothing).
    let bytes: usize = parts.iter().map(|p| p.w.data.len()).sum();
    let per_task = bytes.div_ceil(4 * super::team::threads()).max(1);
    let (mut per, mut ends) = ([0usize; MAX_PARTS], [0usize; MAX_PARTS]);
    for (i, p) in parts.iter().enumerate() {
        per[i] = (per_task / p.w.row_bytes().max(1))
            .next_multiple_of(ROWS)
            .max(ROWS);
        ends[i] = if i == 0 { 0 } else { ends[i - 1] } + p.w.rows.div_ceil(per[i]);
    }
    let base = OutPtr::new(out);
    super::par_for(ends[n - 1], |t| {
        let i = ends[..n].iter().position(|&e| t < e).unwrap_or(n - 1);
        let c = t - if i == 0 { 0 } else { ends[i - 1] };
        let (p, rows) = (
            &parts[i],
            c * per[i]..((c + 1) * per[i]).min(parts[i].w.rows),
        );
        self::run(
            run.path,
            Job::new(&p.w, rows, Acts::Q8(p.a), m, &base.from(p.col), ld),
        );
    });
    Ok(())
}

/// Parts [`matmul_q8_parts`] runs in one section (q, k, v and a spare).
pub(crate) const MAX_PARTS: usize = 4;

/// Weight rows per parallel task: a multiple of 8, about four tasks per thread.
fn rows_per_task(rows: usize) -> usize {
    rows.div_ceil(4 * super::team::threads())
        .next_multiple_of(8)
}

fn run_rows(
    path: QuantPath,
    w: &QuantMatrix,
    acts: Acts,
    m: usize,
    out: &mut [f32],
    ld: usize,
    par: bool,
) {
    let out = OutPtr::new(out);
    #[cfg(target_arch = "x86_64")]
    if match acts {
        Acts::F32(x) if m >= gemm::EXACT_MIN_M => gemm::exact(path, w, x, m, &out, ld, par),
        Acts::Q8(a) if m >= gemm::FAST_MIN_M => gemm::fast(path, w, a, &out, ld, par),
        _ => false,
    } {
        return;
    }
    if !par {
        return run(path, Job::new(w, 0..w.rows, acts, m, &out, ld));
    }
    let per = rows_per_task(w.rows);
    super::par_for(w.rows.div_ceil(per), |c| {
        let rows = c * per..((c + 1) * per).min(w.rows);
        run(path, Job::new(w, rows, acts, m, &out, ld));
    });
}

fn check_io(w: &QuantMatrix, x_len: usize, m: usize, out_len: usize, ld: usize) -> Result<()> {
    let need_out = if m == 0 { 0 } else { (m - 1) * ld + w.rows };
    if x_len != m * w.cols || ld < w.rows || out_len < need_out {
        return Err(Error::InvalidArgument(format!(
            "{} matmul {}x{} with m = {m}: {x_len} activations (want {}), out {out_len} with ld \
             {ld} (want ld >= {} and {need_out} values)",
            w.format.name(),
            w.rows,
            w.cols,
            m * w.cols,
            w.rows
        )));
    }
    Ok(())
}

/// The activations of a job: f32 for `exact`, quantized for `fast`.
#[derive(Clone, Copy)]
enum Acts<'a> {
    F32(&'a [f32]),
    Q8(&'a ActQ8),
}

/// The output of a job, shared by the threads that fill disjoint `(i, j)` elements of it.
struct OutPtr {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the jobs sharing an `OutPtr` write disjoint elements (disjoint row ranges of `w`), and
// the `&mut [f32]` it came from stays borrowed while they run.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    fn new(out: &mut [f32]) -> OutPtr {
        OutPtr {
            ptr: out.as_mut_ptr(),
            len: out.len(),
        }
    }

    /// The elements from `col` on (checked by the callers to lie inside).
    fn from(&self, col: usize) -> OutPtr {
        assert!(
            col <= self.len,
            "quantized matmul output column out of bounds"
        );
        OutPtr {
            // SAFETY: `col <= len` (asserted above): inside the allocation or one past its end.
            ptr: unsafe { self.ptr.add(col) },
            len: self.len - col,
        }
    }

    #[inline(always)]
    fn set(&self, at: usize, v: f32) {
        assert!(at < self.len, "quantized matmul output index out of bounds");
        // SAFETY: `at` is in bounds (checked above) and no other job writes this element.
        unsafe { *self.ptr.add(at) = v }
    }
}

/// One call of the driver: rows `rows` of `w` against `m` activation rows.
struct Job<'a> {
    format: QuantFormat,
    w: &'a [u8],
    row_bytes: usize,
    cols: usize,
    rows: Range<usize>,
    acts: Acts<'a>,
    m: usize,
    out: &'a OutPtr,
    ld: usize,
}

impl<'a> Job<'a> {
    fn new(
        w: &QuantMatrix<'a>,
        rows: Range<usize>,
        acts: Acts<'a>,
        m: usize,
        out: &'a OutPtr,
        ld: usize,
    ) -> Job<'a> {
        Job {
            format: w.format,
            w: w.data,
            row_bytes: w.row_bytes(),
            cols: w.cols,
            rows,
            acts,
            m,
            out,
            ld,
        }
    }
}

fn run(path: QuantPath, job: Job) {
    with_format!(job.format, F => run_format::<F>(path, job))
}

fn run_format<F: Format>(path: QuantPath, job: Job) {
    match path {
        QuantPath::Scalar => drive::<F, Scalar>(&job),
        #[cfg(target_arch = "x86_64")]
        QuantPath::Avx2 => {
            assert!(Kernel::Avx2.available(), "avx2 path on a CPU without AVX2");
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            unsafe { avx2::drive::<F>(&job) }
        }
        #[cfg(target_arch = "x86_64")]
        QuantPath::Avx512 { vnni } => {
            assert!(
                Kernel::Avx512.available() && Kernel::Avx2.available() && (!vnni || avx512_vnni()),
                "avx512 path on a CPU without AVX-512"
            );
            // SAFETY: the CPU has the features (checked above).
            unsafe {
                if vnni {
                    avx512::drive_vnni::<F>(&job)
                } else {
                    avx512::drive::<F>(&job)
                }
            }
        }
        #[allow(unreachable_patterns)]
        _ => drive::<F, Scalar>(&job),
    }
}

/// The block primitives a code path supplies to [`drive`].
trait Isa: Sized {
    /// A running f32 sum for one output element (a vector of partial sums).
    type Acc: Copy;
    fn zero() -> Self::Acc;
    /// `acc[r] += sum_l w[l] * x[r][l]` over the `qk` values of block `dec` (decoded to f32 by
    /// [`Decoded::factors`]); every `x[r]` holds `qk` values.
    ///
    /// # Safety
    /// The CPU has the path's features.
    unsafe fn exact<const R: usize>(
        dec: &Decoded,
        qk: usize,
        x: [&[f32]; R],
        acc: &mut [Self::Acc; R],
    );
    /// The sum of an accumulator's lanes, in a fixed order.
    ///
    /// # Safety
    /// The CPU has the path's features.
    unsafe fn hsum(acc: Self::Acc) -> f32;
    /// `sum_l sc[l / 16] * q[l] * a[l]` over the `qk` values of block `dec`; `a` holds `qk` values
    /// in `-127..=127`.
    ///
    /// # Safety
    /// The CPU has the path's features.
    unsafe fn int_dot(dec: &Decoded, qk: usize, a: &[i8]) -> i32;

    /// `acc[r] += sum_l w[l] * x[r][l]` over block `b` of format `F` (`F::BYTES` bytes; every
    /// `x[r]` holds `F::QK` values). Leaves `dec` holding at least the block's scales. This
    /// default decodes into `dec` and calls [`Isa::exact`]; the SIMD paths unpack in registers.
    ///
    /// # Safety
    /// The CPU has the path's features.
    #[inline(always)]
    unsafe fn block_exact<F: Format, const R: usize>(
        b: &[u8],
        dec: &mut Decoded,
        x: [&[f32]; R],
        acc: &mut [Self::Acc; R],
    ) {
        F::decode(b, dec);
        // SAFETY: forwarded from the caller.
        unsafe { Self::exact::<R>(dec, F::QK, x, acc) }
    }

    /// A block's integer dot before its horizontal sum (a vector of partial sums).
    type ISum: Copy;

    /// The sum of `v`'s lanes.
    ///
    /// # Safety
    /// The CPU has the path's features.
    unsafe fn hsum1(v: Self::ISum) -> i32;

    /// Block `b` of format `F` against `R` activation rows `a[r] = (quants, 16-value sums)`
    /// (`F::QK` quants in -127..=127 each): per row, [`Isa::int_dot`] before its horizontal sum
    /// ([`Isa::hsum1`] gives it) and the min sum `sum_t mn[t] * bsum[t]` (exact integers). The
    /// block is decoded once for all rows; `dec` is left holding at least its scales. This default
    /// decodes into `dec`; the SIMD paths unpack in registers.
    ///
    /// # Safety
    /// The CPU has the path's features.
    unsafe fn block_isums<F: Format, const R: usize>(
        b: &[u8],
        dec: &mut Decoded,
        a: [(&[i8], &[i32]); R],
    ) -> [(Self::ISum, i32); R];

    /// `fast` outputs of the weight rows `w` (whole rows of blocks of `F`, all of one length)
    /// against activation row `i` of `a`: each element exactly as [`fast_tile`] computes it alone
    /// (the batch-1 GEMV). This default runs [`fast_tile`] per row; the x86 paths combine the
    /// rows' blocks in one vector (`avx2::fast_rows`).
    ///
    /// # Safety
    /// The CPU has the path's features.
    #[inline(always)]
    unsafe fn fast_rows<F: Format>(
        a: &ActQ8,
        i: usize,
        w: [&[u8]; ROWS],
        dec: &mut Decoded,
    ) -> [f32; ROWS] {
        let mut out = [0f32; ROWS];
        // A loop, not a closure: see `fast_tile`.
        for (o, w) in out.iter_mut().zip(w) {
            *o = fast_tile::<F, Self, 1>(a, w, i, dec)[0];
        }
        out
    }
}

/// Weight rows [`Isa::fast_rows`] computes together (the f32 lanes of a 256-bit vector).
const ROWS: usize = 8;

/// `sum_t mn[t] * bsum[t]` over the 16-value sub-blocks of a block of `F` (0 without mins).
#[inline(always)]
fn min_sum<F: Format>(dec: &Decoded, bsum: &[i32]) -> i32 {
    if !F::MINS {
        return 0; // every `mn` is 0
    }
    (0..F::QK / 16).map(|t| dec.mn[t] as i32 * bsum[t]).sum()
}

/// The scalar path: the reference the SIMD paths are tested against.
struct Scalar;

impl Isa for Scalar {
    type Acc = f32;
    fn zero() -> f32 {
        0.0
    }
    unsafe fn exact<const R: usize>(dec: &Decoded, qk: usize, x: [&[f32]; R], acc: &mut [f32; R]) {
        for t in 0..qk / 16 {
            let (fd, fo) = dec.factors(t);
            for l in 16 * t..16 * t + 16 {
                let w = fd * dec.q[l] as f32 + fo;
                for (a, x) in acc.iter_mut().zip(&x) {
                    *a += w * x[l];
                }
            }
        }
    }
    unsafe fn hsum(acc: f32) -> f32 {
        acc
    }
    unsafe fn int_dot(dec: &Decoded, qk: usize, a: &[i8]) -> i32 {
        (0..qk)
            .map(|l| dec.sc[l / 16] as i32 * dec.q[l] as i32 * a[l] as i32)
            .sum()
    }

    type ISum = i32;
    unsafe fn hsum1(v: i32) -> i32 {
        v
    }
    unsafe fn block_isums<F: Format, const R: usize>(
        b: &[u8],
        dec: &mut Decoded,
        a: [(&[i8], &[i32]); R],
    ) -> [(i32, i32); R] {
        F::decode(b, dec);
        // SAFETY: the scalar path needs no CPU features.
        a.map(|(q, bsum)| {
            (
                unsafe { Self::int_dot(dec, F::QK, q) },
                min_sum::<F>(dec, bsum),
            )
        })
    }
}

/// Activation rows per tile: each decoded block is used against this many rows, whose running
/// sums stay in registers.
const TILE: usize = 4;

/// Bytes of weight rows in a panel of [`drive`]: they stay in L2 while every tile of activation
/// rows passes over them.
const PANEL_BYTES: usize = 128 << 10;

/// The one matmul loop, for every format `F` and path `K`: panels of weight rows that fit in L2;
/// in each, a tile of activation rows at a time (the rows left over one by one; in `fast`, against
/// [`ROWS`] weight rows at a time) against every weight row of the panel, block by block. The
/// order changes no output element's arithmetic.
#[inline(always)]
fn drive<F: Format, K: Isa>(job: &Job) {
    let mut dec = Decoded::default();
    let tiles = job.m / TILE * TILE;
    let panel = (PANEL_BYTES / job.row_bytes.max(1))
        .max(1)
        .next_multiple_of(ROWS);
    let mut p0 = job.rows.start;
    while p0 < job.rows.end {
        let p1 = (p0 + panel).min(job.rows.end);
        let wrow = |j: usize| &job.w[j * job.row_bytes..(j + 1) * job.row_bytes];
        for i0 in (0..tiles).step_by(TILE) {
            for j in p0..p1 {
                row_tile::<F, K, TILE>(job, wrow(j), i0, j, &mut dec);
            }
        }
        for i in tiles..job.m {
            let mut j = p0;
            if let Acts::Q8(a) = job.acts {
                while j + ROWS <= p1 {
                    let w: [&[u8]; ROWS] = std::array::from_fn(|r| wrow(j + r));
                    // SAFETY: `drive` runs under the features of `K` (see `run_format`).
                    let out = unsafe { K::fast_rows::<F>(a, i, w, &mut dec) };
                    for (r, o) in out.into_iter().enumerate() {
                        job.out.set(i * job.ld + j + r, o);
                    }
                    j += ROWS;
                }
            }
            for j in j..p1 {
                row_tile::<F, K, 1>(job, wrow(j), i, j, &mut dec);
            }
        }
        p0 = p1;
    }
}

/// Output elements `(i0..i0 + R, j)`: weight row `wrow` against activation rows `i0..i0 + R`.
#[inline(always)]
fn row_tile<F: Format, K: Isa, const R: usize>(
    job: &Job,
    wrow: &[u8],
    i0: usize,
    j: usize,
    dec: &mut Decoded,
) {
    let qk = F::QK;
    let mut out = [0f32; R];
    match job.acts {
        Acts::F32(x) => {
            let mut acc = [K::zero(); R];
            for (b, blk) in wrow.chunks_exact(F::BYTES).enumerate() {
                let xs: [&[f32]; R] =
                    std::array::from_fn(|r| &x[(i0 + r) * job.cols + b * qk..][..qk]);
                // SAFETY: `drive` runs under the features of `K` (see `run_format`); every `xs[r]`
                // holds `qk` values.
                unsafe { K::block_exact::<F, R>(blk, dec, xs, &mut acc) };
            }
            for (o, a) in out.iter_mut().zip(acc) {
                // SAFETY: as above.
                *o = unsafe { K::hsum(a) };
            }
        }
        Acts::Q8(a) => out = fast_tile::<F, K, R>(a, wrow, i0, dec),
    }
    for (r, o) in out.into_iter().enumerate() {
        job.out.set((i0 + r) * job.ld + j, o);
    }
}

/// `fast` outputs `(i0..i0 + R, j)` of weight row `wrow`: per block, the exact integer sums, then
/// `out += da * (d * isum - dmin * msum)` in f32, block by block in order (whatever the path or
/// `R`, so every path gives the scalar path's floats). Reducing four 32-value blocks by one
/// `vphaddd` tree was measured slower (Q8_0 GEMV 1.2-1.5 GB/s against 1.7-1.9 on the loaded
/// 2-core Xeon): the arrays it needs spill.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // `r` and `k` index several parallel arrays
fn fast_tile<F: Format, K: Isa, const R: usize>(
    a: &ActQ8,
    wrow: &[u8],
    i0: usize,
    dec: &mut Decoded,
) -> [f32; R] {
    // Loops, not closures, around the `K` calls: a closure would not inherit the target features
    // of `drive`, and the intrinsics inside would become calls.
    let nb = wrow.len() / F::BYTES;
    let mut out = [0f32; R];
    for b in 0..nb {
        let mut qs: [(&[i8], &[i32]); R] = [(&[], &[]); R];
        let mut da = [0f32; R];
        for r in 0..R {
            let (q, d, s) = a.block((i0 + r) * nb + b);
            (qs[r], da[r]) = ((q, s), d);
        }
        let blk = &wrow[b * F::BYTES..(b + 1) * F::BYTES];
        // SAFETY: `drive` runs under the features of `K` (see `run_format`); every quant block
        // holds `QK` values in -127..=127.
        let v = unsafe { K::block_isums::<F, R>(blk, dec, qs) };
        for r in 0..R {
            // SAFETY: as above.
            let isum = unsafe { K::hsum1(v[r].0) };
            out[r] += da[r] * (dec.d * isum as f32 - dec.dmin * v[r].1 as f32);
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod gemm;
#[cfg(target_arch = "x86_64")]
mod panel;
#[cfg(test)]
mod tests;

//! SIMD matmul kernels with runtime dispatch, and the run-wide kernel/precision settings.
//!
//! Every matmul computes `out[i, j] = sum_k x[i, k] * w[j, k]` tile by tile: a tile holds `R` input
//! rows and `C` weight rows, and each (row, column) pair owns one vector accumulator that walks `k`
//! in steps of the vector width, is reduced horizontally in a fixed order, and then takes the
//! leftover `k % width` products one by one. The arithmetic of an output element therefore depends
//! only on the kernel path, never on the tile shape, on `m` or on which rows are batched together:
//! batch-1 GEMV (tiles `1 x NV`) and the blocked GEMM (tiles `MR x NR`) give bit-identical results,
//! which the engine's batched == alone tests rely on (in both precisions).
//!
//! Paths: `scalar` (the reference in `super`), `avx2` (AVX2+FMA+F16C, 8 lanes), `avx512`
//! (AVX-512F/BW, 16 lanes), `avx512bf16` (AVX-512 plus `vdpbf16ps` for bf16 weights in `fast`
//! precision), `amx` (`avx512bf16` plus AMX tiles for bf16 weights at every batch size: in `exact`
//! with f32 activations split into three bf16 terms; see `amx.rs`) and
//! `neon` (aarch64, f32/bf16 weights). Weights are read in their stored dtype straight from the
//! mmap and widened in registers.
//! `RSTAR_KERNEL=scalar|avx2|avx512|avx512bf16|amx|neon` forces a path (an unavailable one is an
//! error at first use); otherwise the best available is used.

use std::sync::atomic::{AtomicU8, Ordering};

use half::{bf16, f16};

/// A matmul code path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Scalar = 1,
    Avx2 = 2,
    Avx512 = 3,
    Avx512Bf16 = 4,
    Neon = 5,
    Amx = 6,
}

impl Kernel {
    /// Every path, slowest first.
    const ALL: [Kernel; 6] = [
        Kernel::Scalar,
        Kernel::Avx2,
        Kernel::Avx512,
        Kernel::Avx512Bf16,
        Kernel::Amx,
        Kernel::Neon,
    ];

    /// Name as `RSTAR_KERNEL` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
            Kernel::Avx512Bf16 => "avx512bf16",
            Kernel::Amx => "amx",
            Kernel::Neon => "neon",
        }
    }

    /// Parses a name as `RSTAR_KERNEL` spells it.
    pub fn parse(s: &str) -> Option<Kernel> {
        Kernel::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Whether this CPU can run the path.
    pub fn available(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Bf16 => {
                Kernel::Avx512.available() && is_x86_feature_detected!("avx512bf16")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Amx => Kernel::Avx512Bf16.available() && super::amx::available(),
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Whether the path is only selected on CPUs with AVX2 and FMA (every x86 path but `scalar`),
    /// so the AVX2 elementwise and attention kernels may run under it.
    pub fn has_avx2_fma(self) -> bool {
        matches!(
            self,
            Kernel::Avx2 | Kernel::Avx512 | Kernel::Avx512Bf16 | Kernel::Amx
        )
    }

    /// The paths this CPU can run, slowest first.
    pub fn available_all() -> Vec<Kernel> {
        Kernel::ALL.into_iter().filter(|k| k.available()).collect()
    }

    /// The fastest available path.
    pub fn best() -> Kernel {
        *Kernel::available_all().last().unwrap_or(&Kernel::Scalar)
    }

    fn from_u8(v: u8) -> Option<Kernel> {
        Kernel::ALL.into_iter().find(|k| *k as u8 == v)
    }
}

/// Numerics of the matmuls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 activations, f32 accumulation (HF float32 parity). On the `amx` path, bf16 weights
    /// multiply the activations' exact split into three bf16 terms on AMX tiles.
    #[default]
    Exact = 0,
    /// Activations rounded to bf16 for matmuls with bf16 weights on the `avx512bf16` and `amx`
    /// paths (`vdpbf16ps` or AMX tiles, f32 accumulation); on other paths the same as `exact`.
    Fast = 1,
}

impl Precision {
    /// Parses `exact` or `fast`.
    pub fn parse(s: &str) -> Option<Precision> {
        match s {
            "exact" => Some(Precision::Exact),
            "fast" => Some(Precision::Fast),
            _ => None,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Precision, String> {
        Precision::parse(s).ok_or_else(|| format!("`{s}`: expected exact or fast"))
    }
}

static KERNEL: AtomicU8 = AtomicU8::new(0);
static PRECISION: AtomicU8 = AtomicU8::new(0);

/// The matmul path in use: the one [`set_kernel`] forced, else `RSTAR_KERNEL` if set and valid
/// (see [`kernel_from_env`]), else the best one. Read once.
pub fn kernel() -> Kernel {
    if let Some(k) = Kernel::from_u8(KERNEL.load(Ordering::Relaxed)) {
        return k;
    }
    let k = kernel_from_env()
        .ok()
        .flatten()
        .unwrap_or_else(Kernel::best);
    KERNEL.store(k as u8, Ordering::Relaxed);
    k
}

/// The path `RSTAR_KERNEL` asks for: `None` when unset or empty, an error naming the variable when
/// it names no path or one this CPU cannot run. [`crate::backend::cpu::Compute::new`] checks it,
/// so the CLI and the C API refuse a bad value up front (a bare [`kernel`] call falls back to the
/// best path).
pub fn kernel_from_env() -> crate::Result<Option<Kernel>> {
    let s = match std::env::var("RSTAR_KERNEL") {
        Ok(s) if !s.is_empty() => s,
        _ => return Ok(None),
    };
    let bad = |why: &str| {
        Err(crate::Error::InvalidArgument(format!(
            "RSTAR_KERNEL={s}: {why}"
        )))
    };
    match Kernel::parse(&s) {
        None => bad("expected scalar, avx2, avx512, avx512bf16, amx or neon"),
        Some(k) if !k.available() => bad("this CPU cannot run it"),
        Some(k) => Ok(Some(k)),
    }
}

/// Forces a path for the whole process (tests loop over paths with this).
pub fn set_kernel(k: Kernel) -> Result<(), String> {
    if !k.available() {
        return Err(format!("kernel {} is not available on this CPU", k.name()));
    }
    KERNEL.store(k as u8, Ordering::Relaxed);
    Ok(())
}

thread_local! {
    /// This thread's precision while a [`crate::backend::cpu::Compute::run`] is in progress.
    static PRECISION_HERE: std::cell::Cell<Option<Precision>> = const { std::cell::Cell::new(None) };
}

/// Current matmul precision: the one of the [`crate::backend::cpu::Compute::run`] in progress on
/// this thread, else the process-wide one (`exact` unless set).
pub fn precision() -> Precision {
    if let Some(p) = PRECISION_HERE.with(std::cell::Cell::get) {
        return p;
    }
    if PRECISION.load(Ordering::Relaxed) == 1 {
        Precision::Fast
    } else {
        Precision::Exact
    }
}

/// Runs `f` with [`precision`] answering `p` on this thread (restored afterwards, also on panic).
pub(super) fn with_precision<R>(p: Precision, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Precision>);
    impl Drop for Restore {
        fn drop(&mut self) {
            PRECISION_HERE.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(PRECISION_HERE.with(|c| c.replace(Some(p))));
    f()
}

/// Sets the matmul precision for the whole process.
pub fn set_precision(p: Precision) {
    PRECISION.store(p as u8, Ordering::Relaxed);
}

/// One matmul's operands as raw pointers: `x` is `[m, k]` (row stride `k`), `w` is `[n, k]`, `out`
/// points at column 0 of the output block with row stride `ld`. The caller guarantees the bounds.
pub(super) struct Job<X, W> {
    pub x: *const X,
    pub m: usize,
    pub k: usize,
    pub w: *const W,
    pub out: *mut f32,
    pub ld: usize,
    /// Weight rows at `w`: a streaming tile may prefetch rows past its chunk's end up to here.
    pub n: usize,
    /// The weights are read from memory (the mmap), not from a packed chunk hot in L2.
    stream: bool,
    /// A packed chunk's job, or a broadcast GEMM's: the next chunk's stored weights (`ahead_len` bytes, or null), which
    /// its tiles prefetch into L2 a slice each while they compute, so the next widening finds
    /// them there instead of waiting on memory.
    pub ahead: *const i8,
    pub ahead_len: usize,
    /// The inputs packed for the broadcast GEMM (`bcast::pack`), or null.
    pub xp: *const u32,
}

impl<X, W> Job<X, W> {
    /// A matmul of `n` weight rows read from memory (see [`Job`] for the operands).
    pub fn new(
        x: *const X,
        m: usize,
        k: usize,
        (w, n): (*const W, usize),
        out: *mut f32,
        ld: usize,
    ) -> Self {
        Job {
            x,
            m,
            k,
            w,
            out,
            ld,
            n,
            stream: true,
            ahead: std::ptr::null(),
            ahead_len: 0,
            xp: std::ptr::null(),
        }
    }
}

impl<X, W> Clone for Job<X, W> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<X, W> Copy for Job<X, W> {}

// SAFETY: a `Job` is shared between rayon tasks that write disjoint column ranges of `out` and only
// read `x` and `w`, which outlive the parallel section (it ends before `matmul` returns).
unsafe impl<X, W> Sync for Job<X, W> {}

/// Computes the columns `j0..j1` of a job for all its rows.
pub(super) type BlockFn<X, W> = unsafe fn(&Job<X, W>, usize, usize);

/// The f32-weight variant of a path for a narrower weight dtype, used when many rows share each
/// weight row: a chunk of weight rows is widened once into a per-thread f32 buffer (hot in L2) and
/// every row tile then runs the plain f32 kernel on it, instead of widening in registers once per
/// row tile. Widening is exact, so results are bit-identical to the unpacked path.
pub(super) struct Packed<X, W> {
    pub block: BlockFn<X, f32>,
    pub widen: fn(&[W], &mut [f32]),
}

/// A path's broadcast GEMM (`bcast.rs`): the block function, which packs each chunk of weight rows
/// itself, and the packing of the inputs, `step` elements per 16 units.
#[cfg(target_arch = "x86_64")]
pub(super) struct Bcast<X, W> {
    pub gemm: BlockFn<X, W>,
    pub pack_x: unsafe fn(*const X, usize, usize, &mut [u32]),
    pub step: usize,
}
#[cfg(not(target_arch = "x86_64"))]
pub(super) struct Bcast<X, W>(std::marker::PhantomData<(X, W)>);

/// Rows from which a matmul packs its weights when it has a [`Packed`] variant (and no broadcast
/// GEMM). Below, the weights stream past 4-row tiles (see [`block`]): measured (benches/kernels.rs,
/// `gemm`, 16 rows in `exact`), 70-73% of the f32 peak streaming against 57-58% packed on AVX-512,
/// 84-87% against 64-81% on AVX2.
const PACK_MIN_M: usize = 32;

/// Rows from which a matmul runs the broadcast GEMM where its path has one (`bcast.rs`). Below,
/// a tile of 32 input rows would be mostly padding: measured (benches/kernels.rs, `gemm`, 16 rows),
/// a tile of one vector of 16 rows reached 47-54% of the f32 peak where the dot-product tiles
/// reach 62-73%.
#[cfg(target_arch = "x86_64")]
const BCAST_MIN_M: usize = 32;

pub(super) fn widen_bf16(w: &[bf16], out: &mut [f32]) {
    #[inline(always)]
    fn widen(w: &[bf16], out: &mut [f32]) {
        for (o, b) in out.iter_mut().zip(w) {
            *o = f32::from_bits((b.to_bits() as u32) << 16);
        }
    }
    /// The same loop, vectorised 8 (or 16) lanes wide by the compiler.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn widen_avx2(w: &[bf16], out: &mut [f32]) {
        widen(w, out)
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just above).
        return unsafe { widen_avx2(w, out) };
    }
    widen(w, out)
}

pub(super) fn widen_f16(w: &[f16], out: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    w.convert_to_f32_slice(out);
}

thread_local! {
    /// A chunk of weight rows widened to f32 (grows to the largest chunk, then reused).
    static PACKED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(target_arch = "x86_64")]
thread_local! {
    /// The inputs packed for the broadcast GEMM (grows to the largest, then reused).
    static BCAST_X: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `block` over column chunks of `n` on the rayon pool: for batch 1, chunks small enough for
/// every thread to get several (GEMV is bandwidth bound; both cores must stream); for `m > 1`,
/// [`GEMM_CHUNK`] weight rows, which stay in L2 while all `m` inputs pass over them.
/// With `packed` and at least [`PACK_MIN_M`] rows, each chunk is widened first (see [`Packed`]).
/// With a broadcast GEMM for the path and at least [`BCAST_MIN_M`] rows, the inputs are packed once
/// and every chunk runs it instead (no widening: it packs its chunks itself), with the same results
/// bit for bit (see `bcast.rs`).
/// No allocation once the per-thread buffers have grown.
pub(super) fn run_job<X, W>(
    job: &Job<X, W>,
    n: usize,
    block: BlockFn<X, W>,
    packed: Option<Packed<X, W>>,
    bcast: Option<Bcast<X, W>>,
) {
    #[cfg(target_arch = "x86_64")]
    if let Some(b) = bcast.filter(|b| job.m >= BCAST_MIN_M && job.k >= b.step && bcast_enabled()) {
        return super::with_scratch(&BCAST_X, |buf| {
            let buf = super::aligned(buf, super::bcast::packed_len(job.m, job.k, b.step), 1 << 14);
            // SAFETY: `job.x` holds `m * k` inputs (the caller's guarantee); `buf` is as long as
            // `packed_len` says; the path's CPU features are present (it was chosen as available).
            unsafe { (b.pack_x)(job.x, job.m, job.k, buf) };
            let with = Job {
                xp: buf.as_ptr(),
                ..*job
            };
            run_chunks(
                &with,
                n,
                b.gemm,
                None,
                Split::Every(super::bcast::chunk(job.k)),
            )
        });
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bcast;
    let packed = packed.filter(|_| job.m >= PACK_MIN_M);
    let split = if job.m > 1 {
        Split::Every(gemm_chunk(job.k, packed.is_some()))
    } else {
        let threads = super::team::threads().max(1);
        Split::Even((threads * 4).min(n.div_ceil(GEMM_CHUNK)))
    };
    run_chunks(job, n, block, packed, split)
}

/// How [`run_chunks`] cuts the `n` weight rows into chunks.
#[derive(Clone, Copy)]
enum Split {
    /// Chunks of this many rows (the last one shorter).
    Every(usize),
    /// This many chunks of nearly equal size, cut at the multiples of [`GEMM_CHUNK`] nearest to
    /// the even cuts (so every tile width divides them). Batch 1 runs a few chunks per thread,
    /// and fixed chunks of 120 rows left the o and down projections (896 rows) split 480 / 416
    /// between the team's two members, whose ranges are the first and second half of the chunks:
    /// one waited on the other for an eighth of a section (`perf`: the helper spun 9% of its time).
    Even(usize),
}

impl Split {
    fn count(self, n: usize) -> usize {
        match self {
            Split::Every(rows) => n.div_ceil(rows.max(1)),
            Split::Even(chunks) => chunks.max(1),
        }
    }

    /// Rows `j0..j1` of chunk `c` (empty past the last).
    fn span(self, c: usize, n: usize) -> (usize, usize) {
        let cut = |c: usize| match self {
            Split::Every(rows) => (c * rows).min(n),
            Split::Even(chunks) => {
                let chunks = chunks.max(1);
                if c >= chunks {
                    n
                } else {
                    ((c * n / chunks + GEMM_CHUNK / 2) / GEMM_CHUNK * GEMM_CHUNK).min(n)
                }
            }
        };
        (cut(c), cut(c + 1))
    }
}

/// Whether the broadcast GEMM runs (`RSTAR_BCAST=0` turns it off, read once: for comparisons).
#[cfg(target_arch = "x86_64")]
fn bcast_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("RSTAR_BCAST").map_or(true, |v| v != "0"))
}

/// [`run_job`] once the algorithm is chosen: `block` (or the packed variant's) over column chunks
/// cut as `split` says.
fn run_chunks<X, W>(
    job: &Job<X, W>,
    n: usize,
    block: BlockFn<X, W>,
    packed: Option<Packed<X, W>>,
    split: Split,
) {
    let threads = super::team::threads().max(1);
    let work = job.m * n * job.k;
    let chunks = split.count(n);
    let one = |c: usize| {
        let (j0, j1) = split.span(c, n);
        match &packed {
            Some(p) => PACKED.with(|buf| {
                let mut buf = buf.borrow_mut();
                let k = job.k;
                let len = (j1 - j0) * k;
                // In 64 KiB steps: the chunks of most matmuls then fit the first size a thread
                // grows to, so a thread that meets a wider `k` later rarely reallocates.
                let buf = super::aligned(&mut buf, len, 1 << 14);
                // SAFETY: weight rows `j0..j1 <= n` of `k` elements each lie inside `job.w`.
                let w = unsafe { std::slice::from_raw_parts(job.w.add(j0 * k), (j1 - j0) * k) };
                (p.widen)(w, buf);
                // The chunk this thread most likely takes next (rayon splits ranges in halves; the
                // team walks contiguous ranges).
                let (n0, n1) = split.span(c + 1, n);
                let sub = Job {
                    x: job.x,
                    m: job.m,
                    k,
                    w: buf.as_ptr(),
                    // SAFETY: column `j0 < n <= ld` of output row 0.
                    out: unsafe { job.out.add(j0) },
                    ld: job.ld,
                    n: j1 - j0,
                    stream: false,
                    // SAFETY: weight rows `n0..n1 <= n` lie inside `job.w` (empty at the end).
                    ahead: unsafe { job.w.add(n0 * k) } as *const i8,
                    ahead_len: (n1 - n0) * k * std::mem::size_of::<W>(),
                    xp: std::ptr::null(),
                };
                // SAFETY: `sub` covers the same inputs and outputs as columns `j0..j1` of `job`,
                // with its `j1 - j0` weight rows in `buf`.
                unsafe { (p.block)(&sub, 0, j1 - j0) }
            }),
            // The broadcast GEMM reads its chunk's weights once, to pack them: its tiles prefetch
            // the next chunk's (as the packed path's do), so that packing finds them in L2.
            None if !job.xp.is_null() => {
                let n1 = split.span(c + 1, n).1;
                let sub = Job {
                    // SAFETY: weight rows `j1..n1 <= n` lie inside `job.w` (empty at the end).
                    ahead: unsafe { job.w.add(j1 * job.k) } as *const i8,
                    ahead_len: (n1 - j1) * job.k * std::mem::size_of::<W>(),
                    ..*job
                };
                // SAFETY: as below; `sub` differs from `job` in its prefetch range only.
                unsafe { block(&sub, j0, j1) }
            }
            // SAFETY: `j0..j1` lies inside `0..n` and chunks are disjoint; the caller of `run_job`
            // guarantees `job` covers `[m, k]` inputs, `[n, k]` weights and `m` output rows of
            // `ld >= n`.
            None => unsafe { block(job, j0, j1) },
        }
    };
    if threads == 1 || work < super::PAR_THRESHOLD || chunks == 1 {
        (0..chunks).for_each(one);
    } else {
        super::par_for(chunks, one);
    }
}

/// One kernel path for one (activation, weight) dtype pair: vector loads, multiply-accumulate and
/// the fixed-order horizontal sum. Scalar `xf`/`wf` widen the leftover elements.
pub(super) trait Dot {
    type X: Copy;
    type W: Copy;
    type Xv: Copy;
    type Wv: Copy;
    type Acc: Copy;
    /// Elements of `k` per vector step.
    const STEP: usize;
    unsafe fn zero() -> Self::Acc;
    unsafe fn lx(p: *const Self::X) -> Self::Xv;
    unsafe fn lw(p: *const Self::W) -> Self::Wv;
    unsafe fn fma(x: Self::Xv, w: Self::Wv, acc: Self::Acc) -> Self::Acc;
    unsafe fn hsum(a: Self::Acc) -> f32;
    fn xf(x: Self::X) -> f32;
    fn wf(w: Self::W) -> f32;
}

/// Weight rows per parallel chunk when `m > 1`: a multiple of every path's tile widths (3 and 4
/// GEMM columns, 8 GEMV columns), small enough that the chunk stays in L2 (for `k` up to about
/// 2700 in f32) while every row tile passes over it, and fine enough to balance the threads.
/// (Walking `k` in L1-sized blocks with the accumulators kept live measured slower here.)
pub(super) const GEMM_CHUNK: usize = 24;

/// Weight rows per chunk of a matmul with `m > 1` and rows of `k` elements: [`GEMM_CHUNK`], halved
/// where packed f32 chunks of 24 rows would pass 256 KiB (the down projection, k = 4864: on the
/// 2-core Zen 5 VM its `exact` m = 512 GEMM went from 290-312 to 328-343 GFLOP/s, and the 512-token
/// `exact` prefill from 403-441 to 431-466 tok/s, 9 rounds alternating builds; the other shapes
/// lost 0-17% at 12 rows, and the `fast` kernels' gains at 12 rows, 5-20% in the kernel benchmark,
/// did not show in the model's prefill). `RSTAR_GEMM_CHUNK` overrides it (rounded up to a
/// multiple of 12), read once.
fn gemm_chunk(k: usize, packed: bool) -> usize {
    static CHUNK: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let set = CHUNK.get_or_init(|| {
        std::env::var("RSTAR_GEMM_CHUNK")
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|&c| c > 0)
            .map(|c| c.next_multiple_of(GEMM_CHUNK / 2))
    });
    match *set {
        Some(c) => c,
        None if packed && 4 * k * GEMM_CHUNK > 256 << 10 => GEMM_CHUNK / 2,
        None => GEMM_CHUNK,
    }
}

/// One `R x C` tile at input row `i`, weight row `j`: each accumulator walks `k` in vector steps,
/// then the fixed-order horizontal sum and the `k % STEP` leftover products one by one.
///
/// With `next` (the GEMV path on x86), the `C` weight rows after this tile's are prefetched front
/// to back, a slice per step, so the next tile finds them in cache. They are contiguous, so this
/// turns `C` short streams the hardware prefetcher would ramp up on separately (rows of 896 bf16
/// are 28 cache lines) into one linear read: measured on the 2-core Zen 3 VM, 8 interleaved
/// 1792-byte rows read at 7.6-8 GB/s without it and 13.4-14.9 GB/s with it. The prefetches go to
/// L2 (`T1`), not L1: on the 2-core Xeon (AVX-512) L1 prefetches filled the L1 miss buffers and
/// stalled, and `T1` took batch-1 decode of the 0.5B shape from 16.8 to 20.0 tok/s in `exact` and
/// from 21.3 to 22.9 in `fast` (3 rounds alternating the builds), batch 4 and 8 up 2-6%.
#[inline(always)]
unsafe fn tile<D: Dot, const R: usize, const C: usize>(
    jb: &Job<D::X, D::W>,
    i: usize,
    j: usize,
    next: bool,
) {
    let k = jb.k;
    let x = jb.x.add(i * k);
    let w = jb.w.add(j * k);
    let mut acc = [[D::zero(); C]; R];
    let main = k - k % D::STEP;
    // The next tile's rows are as long as this tile's, so each vector step prefetches as many of
    // their bytes as it reads (whole cache lines): a count known at compile time, so the
    // prefetches unroll. With the count computed at run time, a loop of 3 (`exact`) or 6 (`fast`)
    // prefetches per step, batch-1 decode of the 0.5B shape ran 0-2% (`exact`) and 3-7% (`fast`)
    // slower on the 2-core Zen 5 VM (one process alternating the two, 8-10 rounds).
    let next_bytes = C * k * std::mem::size_of::<D::W>();
    let per_step = (C * D::STEP * std::mem::size_of::<D::W>()).next_multiple_of(64);
    let next_rows = w.add(C * k) as *const i8;
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (next_bytes, per_step, next_rows);
    let mut kk = 0;
    // Two loops, so the tiles that prefetch nothing (all GEMM tiles) carry no prefetch
    // bookkeeping: the 4x3 f32 loop went from about 30 to 22 instructions per step (7 loads,
    // 12 FMAs, the loop's add, compare and branch).
    if next {
        while kk < main {
            #[cfg(target_arch = "x86_64")]
            {
                let off = kk / D::STEP * per_step;
                for b in (0..per_step).step_by(64) {
                    if off + b < next_bytes {
                        // SAFETY: a prefetch never faults; the address lies inside the next
                        // tile's rows, which the caller guarantees exist (`next`).
                        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                            next_rows.add(off + b),
                        );
                    }
                }
            }
            step::<D, R, C>(&mut acc, x, w, k, kk);
            kk += D::STEP;
        }
    } else {
        while kk < main {
            step::<D, R, C>(&mut acc, x, w, k, kk);
            kk += D::STEP;
        }
    }
    for (r, ar) in acc.iter().enumerate() {
        for (c, &a) in ar.iter().enumerate() {
            let mut s = D::hsum(a);
            for t in main..k {
                s += D::xf(*x.add(r * k + t)) * D::wf(*w.add(c * k + t));
            }
            *jb.out.add((i + r) * jb.ld + j + c) = s;
        }
    }
}

/// One vector step at `kk` of an `R x C` tile's accumulators (rows of `k` at `x` and `w`). A
/// function, not a closure: closures do not inherit the caller's `target_feature`s, and the
/// intrinsics in them would not inline.
#[inline(always)]
unsafe fn step<D: Dot, const R: usize, const C: usize>(
    acc: &mut [[D::Acc; C]; R],
    x: *const D::X,
    w: *const D::W,
    k: usize,
    kk: usize,
) {
    let mut wv = [D::lw(w.add(kk)); C];
    for (c, v) in wv.iter_mut().enumerate().skip(1) {
        *v = D::lw(w.add(c * k + kk));
    }
    for (r, ar) in acc.iter_mut().enumerate() {
        let xv = D::lx(x.add(r * k + kk));
        for (a, &wc) in ar.iter_mut().zip(&wv) {
            *a = D::fma(xv, wc, *a);
        }
    }
}

/// Columns `j0..j1` for input rows `i..i + R`, `C` weight rows at a time.
#[inline(always)]
unsafe fn cols<D: Dot, const R: usize, const C: usize>(
    jb: &Job<D::X, D::W>,
    i: usize,
    j0: usize,
    j1: usize,
) {
    let mut j = j0;
    let mut pf = Ahead::plan(jb, i, R, (j1 - j0) / C + (j1 - j0) % C);
    while j + C <= j1 {
        pf.next(jb);
        // GEMV tiles reading from memory prefetch the next tile (packed weights are hot in L2
        // already), past the chunk's end too: the chunk a thread takes next is most often the one
        // that follows (the team walks contiguous ranges), and its first tile otherwise waited on
        // memory (see `block`).
        tile::<D, R, C>(jb, i, j, R == 1 && jb.stream && j + 2 * C <= jb.n);
        j += C;
    }
    while j < j1 {
        pf.next(jb);
        tile::<D, R, 1>(jb, i, j, false);
        j += 1;
    }
}

/// The slices of [`Job::ahead`] that the tiles of one row tile of `cols` prefetch into L2: the
/// next chunk's bytes spread evenly over the chunk's tiles, a few cache lines before each, so the
/// prefetches never crowd a tile's own loads. Measured on the 2-core Zen 3 VM, widening waited on
/// memory for about 12% of batch-32 decode without them, 6% with.
struct Ahead {
    at: usize,
    end: usize,
    step: usize,
}

impl Ahead {
    /// The share of rows `i..i + r` (of the job's `m`) of the next chunk, over `tiles` tiles.
    #[inline(always)]
    fn plan<X, W>(jb: &Job<X, W>, i: usize, r: usize, tiles: usize) -> Ahead {
        if jb.ahead.is_null() || jb.ahead_len == 0 {
            return Ahead {
                at: 0,
                end: 0,
                step: 0,
            };
        }
        let (len, m) = (jb.ahead_len, jb.m);
        let (at, end) = ((i * len / m) & !63, (i + r) * len / m);
        Ahead {
            at,
            end,
            step: (end - at).div_ceil(tiles.max(1)).next_multiple_of(64),
        }
    }

    /// Prefetches the next tile's slice.
    #[inline(always)]
    fn next<X, W>(&mut self, jb: &Job<X, W>) {
        let stop = (self.at + self.step).min(self.end);
        #[cfg(target_arch = "x86_64")]
        while self.at < stop {
            // SAFETY: a prefetch never faults; `at < ahead_len`, inside the next chunk.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                    jb.ahead.add(self.at),
                )
            };
            self.at += 64;
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = jb;
        self.at = self.at.max(stop);
    }
}

/// Input rows `i0..i1` against weight rows `j..j + C`: `MR x C` tiles, one tile for the rows left
/// over; with `next`, the first tile prefetches the `C` weight rows that follow.
#[inline(always)]
unsafe fn rows<D: Dot, const MR: usize, const C: usize>(
    jb: &Job<D::X, D::W>,
    i0: usize,
    i1: usize,
    j: usize,
    next: bool,
) {
    let mut i = i0;
    while i + MR <= i1 {
        tile::<D, MR, C>(jb, i, j, next && i == i0);
        i += MR;
    }
    // The rows left over as one tile, which reads each weight vector once (`MR` is 4 on every
    // path).
    let first = next && i == i0;
    match i1 - i {
        0 => {}
        1 => tile::<D, 1, C>(jb, i, j, first),
        2 => tile::<D, 2, C>(jb, i, j, first),
        3 => tile::<D, 3, C>(jb, i, j, first),
        _ => {
            while i < i1 {
                tile::<D, 1, C>(jb, i, j, next && i == i0);
                i += 1;
            }
        }
    }
}

/// Input rows per block of a small batch that streams its weights (see [`block`]).
const STREAM_ROWS: usize = 8;

/// Columns `j0..j1` for all rows. Packed weights (hot in L2) and batch 1: row tile by row tile,
/// `MR x NR` GEMM tiles and, for leftover rows and batch 1, `1 x NV` GEMV tiles.
///
/// A small batch (fewer rows than [`PACK_MIN_M`]) whose weights are read from memory goes the
/// other way round: each group of `NR` weight rows meets every input row while it is in L1, and
/// the first row's tile prefetches the next group, so the stream overlaps the other rows'
/// arithmetic. Row tile by row tile, the first tile waited on memory while the others found the
/// chunk in L2: measured on the 2-core Zen 3 VM, batch-8 decode of the 0.5B shape went from
/// 49-51 to 63-81 tok/s, batch 4 from 37-38 to 48-55. More than [`STREAM_ROWS`] rows go a block of
/// them at a time over the whole chunk, so that a block's inputs stay in L1 (28 KiB at `k` = 896)
/// while the weight groups pass: the first block streams the chunk from memory, the others find it
/// in L2. Measured on the 2-core Zen 5 VM (`rstar bench`, 2 runs each), batch-16 / 24 decode in
/// `exact` went from 266-267 / 297-298 to 318-320 / 333-339 tok/s (blocks of 12: 274 / 299; of 4:
/// 305-307 / 327-330), in `fast` from 376-377 / 408-409 to 388-401 / 456-459. The arithmetic of
/// each output is the same in any order.
///
/// The prefetch of the next weight group runs past `j1` into the next chunk (up to the job's `n`
/// rows): chunks here are 24 rows, and the first group of each used to wait on memory. Measured on
/// the 2-core Zen 5 VM, one process alternating the two builds' behaviour 6-10 times: decode of the
/// 0.5B shape at batch 2 / 4 / 8 / 16 in `exact` +18 / +14 / +8 / +4% (111 -> 131 tok/s at batch
/// 2), `fast` batch 4 / 8 / 16 +19 / +8 / +3%, batch 1 +1%.
#[inline(always)]
unsafe fn block<D: Dot, const MR: usize, const NR: usize, const NV: usize>(
    jb: &Job<D::X, D::W>,
    j0: usize,
    j1: usize,
) {
    if jb.stream && jb.m > 1 && jb.m < PACK_MIN_M {
        let mut i0 = 0;
        while i0 < jb.m {
            let i1 = (i0 + STREAM_ROWS).min(jb.m);
            let mut j = j0;
            while j + NR <= j1 {
                rows::<D, MR, NR>(jb, i0, i1, j, i0 == 0 && j + 2 * NR <= jb.n);
                j += NR;
            }
            while j < j1 {
                rows::<D, MR, 1>(jb, i0, i1, j, false);
                j += 1;
            }
            i0 = i1;
        }
        return;
    }
    let mut i = 0;
    while i + MR <= jb.m {
        cols::<D, MR, NR>(jb, i, j0, j1);
        i += MR;
    }
    while i < jb.m {
        cols::<D, 1, NV>(jb, i, j0, j1);
        i += 1;
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    //! AVX2 and AVX-512 instances of [`Dot`](super::Dot) and their `target_feature` entry points.
    use super::*;
    use half::{bf16, f16};
    use std::arch::x86_64::*;

    /// Defines a `Dot` impl; `$lw` widens `$n` weights at `p` to an f32 vector.
    macro_rules! dot_f32x {
        ($name:ident, $w:ty, $v:ty, $n:expr, $zero:ident, $lx:ident, $fma:ident, |$p:ident| $lw:expr, |$a:ident| $hsum:expr) => {
            pub struct $name;
            impl Dot for $name {
                type X = f32;
                type W = $w;
                type Xv = $v;
                type Wv = $v;
                type Acc = $v;
                const STEP: usize = $n;
                #[inline(always)]
                unsafe fn zero() -> $v {
                    $zero()
                }
                #[inline(always)]
                unsafe fn lx(p: *const f32) -> $v {
                    $lx(p)
                }
                #[inline(always)]
                unsafe fn lw($p: *const $w) -> $v {
                    $lw
                }
                #[inline(always)]
                unsafe fn fma(x: $v, w: $v, acc: $v) -> $v {
                    $fma(x, w, acc)
                }
                #[inline(always)]
                unsafe fn hsum($a: $v) -> f32 {
                    $hsum
                }
                #[inline(always)]
                fn xf(x: f32) -> f32 {
                    x
                }
                #[inline(always)]
                fn wf(w: $w) -> f32 {
                    w.to_f32_()
                }
            }
        };
    }

    /// Widening of one stored weight element (f32 is the identity).
    pub trait ToF32 {
        fn to_f32_(self) -> f32;
    }
    impl ToF32 for f32 {
        #[inline(always)]
        fn to_f32_(self) -> f32 {
            self
        }
    }
    impl ToF32 for bf16 {
        #[inline(always)]
        fn to_f32_(self) -> f32 {
            self.to_f32()
        }
    }
    impl ToF32 for f16 {
        #[inline(always)]
        fn to_f32_(self) -> f32 {
            self.to_f32()
        }
    }

    /// Sum of the 8 lanes in a fixed order.
    #[inline(always)]
    pub(in crate::backend::cpu) unsafe fn hsum256(a: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// Sum of the 16 lanes in a fixed order: the two halves lane by lane, then [`hsum256`]. The
    /// broadcast GEMM (`bcast.rs`) sums its 16 passes in the same tree.
    #[inline(always)]
    pub(in crate::backend::cpu) unsafe fn hsum512(a: __m512) -> f32 {
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)));
        hsum256(_mm256_add_ps(_mm512_castps512_ps256(a), hi))
    }

    dot_f32x!(
        Avx2F32,
        f32,
        __m256,
        8,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_fmadd_ps,
        |p| _mm256_loadu_ps(p),
        |a| hsum256(a)
    );
    dot_f32x!(
        Avx2Bf16,
        bf16,
        __m256,
        8,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_fmadd_ps,
        |p| _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i)),
            16
        )),
        |a| hsum256(a)
    );
    dot_f32x!(
        Avx2F16,
        f16,
        __m256,
        8,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_fmadd_ps,
        |p| _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)),
        |a| hsum256(a)
    );

    dot_f32x!(
        Avx512F32,
        f32,
        __m512,
        16,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_fmadd_ps,
        |p| _mm512_loadu_ps(p),
        |a| hsum512(a)
    );
    dot_f32x!(
        Avx512Bf16W,
        bf16,
        __m512,
        16,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_fmadd_ps,
        |p| _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i)),
            16
        )),
        |a| hsum512(a)
    );
    dot_f32x!(
        Avx512F16,
        f16,
        __m512,
        16,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_fmadd_ps,
        |p| _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)),
        |a| hsum512(a)
    );

    /// bf16 activations x bf16 weights with `vdpbf16ps` (pairs of products summed into f32 lanes).
    pub struct DpBf16;
    impl Dot for DpBf16 {
        type X = bf16;
        type W = bf16;
        type Xv = __m512bh;
        type Wv = __m512bh;
        type Acc = __m512;
        const STEP: usize = 32;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn lx(p: *const bf16) -> __m512bh {
            // SAFETY (caller): 32 elements readable at `p`; __m512bh is 64 bytes like __m512i.
            std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(p as *const __m512i))
        }
        #[inline(always)]
        unsafe fn lw(p: *const bf16) -> __m512bh {
            Self::lx(p)
        }
        #[inline(always)]
        unsafe fn fma(x: __m512bh, w: __m512bh, acc: __m512) -> __m512 {
            _mm512_dpbf16_ps(acc, x, w)
        }
        #[inline(always)]
        unsafe fn hsum(a: __m512) -> f32 {
            hsum512(a)
        }
        #[inline(always)]
        fn xf(x: bf16) -> f32 {
            x.to_f32()
        }
        #[inline(always)]
        fn wf(w: bf16) -> f32 {
            w.to_f32()
        }
    }

    use super::super::bcast;

    impl bcast::Units for Avx512F32 {
        #[inline(always)]
        unsafe fn xu(v: __m512i) -> __m512 {
            _mm512_castsi512_ps(v)
        }
        #[inline(always)]
        unsafe fn wu(v: __m512i) -> __m512 {
            _mm512_castsi512_ps(v)
        }
    }
    impl bcast::Units for DpBf16 {
        #[inline(always)]
        unsafe fn xu(v: __m512i) -> __m512bh {
            // SAFETY (caller): __m512bh is 64 bytes like __m512i.
            std::mem::transmute::<__m512i, __m512bh>(v)
        }
        #[inline(always)]
        unsafe fn wu(v: __m512i) -> __m512bh {
            Self::xu(v)
        }
    }

    /// AVX-512 broadcast GEMM entry point (see `bcast.rs`).
    ///
    /// # Safety
    /// The CPU supports AVX-512F/BW; `jb` and `j0..j1` are in bounds (see [`Job`]) and `jb.xp`
    /// holds its packed inputs.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn gemm_avx512<D: bcast::Units, S: bcast::Src>(
        jb: &Job<D::X, S::T>,
        j0: usize,
        j1: usize,
    ) {
        bcast::gemm::<D, S>(jb, j0, j1)
    }

    /// AVX512_BF16 broadcast GEMM entry point (see `bcast.rs`).
    ///
    /// # Safety
    /// As [`gemm_avx512`], and the CPU supports AVX512_BF16.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn gemm_avx512bf16<D: bcast::Units, S: bcast::Src>(
        jb: &Job<D::X, S::T>,
        j0: usize,
        j1: usize,
    ) {
        bcast::gemm::<D, S>(jb, j0, j1)
    }

    /// AVX2 entry point: 4x3 GEMM tiles (12 accumulators of 16 ymm), 1x8 GEMV tiles.
    ///
    /// # Safety
    /// The CPU supports AVX2, FMA and F16C; `jb` and `j0..j1` are in bounds (see [`Job`]).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn block_avx2<D: Dot>(jb: &Job<D::X, D::W>, j0: usize, j1: usize) {
        block::<D, 4, 3, 8>(jb, j0, j1)
    }

    /// AVX-512 entry point: 4x4 GEMM tiles (16 accumulators of 32 zmm), 1x6 GEMV tiles. Measured
    /// (benches/kernels.rs, `gemm`, batches of 8 and 16 in `exact`): 4x4 tiles reach 62-73% of the
    /// f32 peak, where 6x4 tiles (24 accumulators) reached 33-42% and 4x5 or 4x6 about 30%. Batch-1
    /// decode of the 0.5B shape in `exact` (`rstar bench`, 4 runs each): 1x6 GEMV tiles 69.9-71.0
    /// tok/s, 1x4 68.7-70.0, 1x8 59.1-61.1 (0.73-0.77 of the read limit against 0.87-0.88); in
    /// `fast` all three within 68-71.
    ///
    /// # Safety
    /// The CPU supports AVX-512F/BW (and F16C); `jb` and `j0..j1` are in bounds (see [`Job`]).
    #[target_feature(enable = "avx512f,avx512bw,f16c,fma")]
    pub unsafe fn block_avx512<D: Dot>(jb: &Job<D::X, D::W>, j0: usize, j1: usize) {
        block::<D, 4, 4, 6>(jb, j0, j1)
    }

    /// AVX512_BF16 entry point, tiles as [`block_avx512`].
    ///
    /// # Safety
    /// The CPU supports AVX-512F/BW and AVX512_BF16; `jb` and `j0..j1` are in bounds.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub unsafe fn block_avx512bf16<D: Dot>(jb: &Job<D::X, D::W>, j0: usize, j1: usize) {
        block::<D, 4, 4, 6>(jb, j0, j1)
    }
}

#[cfg(target_arch = "aarch64")]
pub(super) mod arm {
    //! NEON instances of [`Dot`](super::Dot) (f32 and bf16 weights; f16 uses the scalar path).
    use super::*;
    use std::arch::aarch64::*;

    #[inline(always)]
    unsafe fn hsum(a: float32x4_t) -> f32 {
        vaddvq_f32(a)
    }

    pub struct NeonF32;
    impl Dot for NeonF32 {
        type X = f32;
        type W = f32;
        type Xv = float32x4_t;
        type Wv = float32x4_t;
        type Acc = float32x4_t;
        const STEP: usize = 4;
        #[inline(always)]
        unsafe fn zero() -> float32x4_t {
            vdupq_n_f32(0.0)
        }
        #[inline(always)]
        unsafe fn lx(p: *const f32) -> float32x4_t {
            vld1q_f32(p)
        }
        #[inline(always)]
        unsafe fn lw(p: *const f32) -> float32x4_t {
            vld1q_f32(p)
        }
        #[inline(always)]
        unsafe fn fma(x: float32x4_t, w: float32x4_t, acc: float32x4_t) -> float32x4_t {
            vfmaq_f32(acc, x, w)
        }
        #[inline(always)]
        unsafe fn hsum(a: float32x4_t) -> f32 {
            hsum(a)
        }
        fn xf(x: f32) -> f32 {
            x
        }
        fn wf(w: f32) -> f32 {
            w
        }
    }

    pub struct NeonBf16;
    impl Dot for NeonBf16 {
        type X = f32;
        type W = bf16;
        type Xv = float32x4_t;
        type Wv = float32x4_t;
        type Acc = float32x4_t;
        const STEP: usize = 4;
        #[inline(always)]
        unsafe fn zero() -> float32x4_t {
            vdupq_n_f32(0.0)
        }
        #[inline(always)]
        unsafe fn lx(p: *const f32) -> float32x4_t {
            vld1q_f32(p)
        }
        #[inline(always)]
        unsafe fn lw(p: *const bf16) -> float32x4_t {
            vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(p as *const u16)))
        }
        #[inline(always)]
        unsafe fn fma(x: float32x4_t, w: float32x4_t, acc: float32x4_t) -> float32x4_t {
            vfmaq_f32(acc, x, w)
        }
        #[inline(always)]
        unsafe fn hsum(a: float32x4_t) -> f32 {
            hsum(a)
        }
        fn xf(x: f32) -> f32 {
            x
        }
        fn wf(w: bf16) -> f32 {
            w.to_f32()
        }
    }

    /// NEON entry point: 4x4 GEMM tiles, 1x8 GEMV tiles.
    ///
    /// # Safety
    /// The CPU supports NEON; `jb` and `j0..j1` are in bounds (see [`Job`]).
    #[target_feature(enable = "neon")]
    pub unsafe fn block_neon<D: Dot>(jb: &Job<D::X, D::W>, j0: usize, j1: usize) {
        block::<D, 4, 4, 8>(jb, j0, j1)
    }
}

/// A weight dtype with a scalar reference dot product in `super`.
pub(super) trait RefDot: Copy + Sized {
    fn dot(x: &[f32], w: &[Self]) -> f32;
}
impl RefDot for f32 {
    fn dot(x: &[f32], w: &[f32]) -> f32 {
        super::dot_f32(x, w)
    }
}
impl RefDot for bf16 {
    fn dot(x: &[f32], w: &[bf16]) -> f32 {
        super::dot_bf16(x, w)
    }
}
impl RefDot for f16 {
    fn dot(x: &[f32], w: &[f16]) -> f32 {
        super::dot_f16(x, w)
    }
}

/// Scalar reference as a [`BlockFn`]: one `super::dot_*` per output element.
///
/// # Safety
/// `jb` and `j0..j1` are in bounds (see [`Job`]).
pub(super) unsafe fn block_scalar<W: RefDot>(jb: &Job<f32, W>, j0: usize, j1: usize) {
    let k = jb.k;
    for i in 0..jb.m {
        // SAFETY: row `i < m` of `x` and rows `j < n` of `w` hold `k` elements each.
        let xi = std::slice::from_raw_parts(jb.x.add(i * k), k);
        for j in j0..j1 {
            let wj = std::slice::from_raw_parts(jb.w.add(j * k), k);
            *jb.out.add(i * jb.ld + j) = W::dot(xi, wj);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::{dot_bf16, dot_f16, dot_f32, matmul_parts, matmul_with};
    use super::*;
    use crate::backend::Weight;

    pub(crate) use super::super::rand::rand_vec;

    /// Every split covers `0..n` once, in order; even splits cut at multiples of `GEMM_CHUNK` and
    /// give two threads' halves within a chunk's rounding of each other.
    #[test]
    fn splits_cover_every_row_once_and_even_splits_balance() {
        for n in [1, 8, 23, 24, 25, 896, 1152, 4864, 9728, 151_936] {
            for split in [
                Split::Every(24),
                Split::Every(7),
                Split::Even(8),
                Split::Even(3),
            ] {
                let count = split.count(n);
                let mut next = 0;
                for c in 0..count {
                    let (j0, j1) = split.span(c, n);
                    assert_eq!(j0, next, "n {n} chunk {c}");
                    assert!(j1 >= j0 && j1 <= n);
                    if let Split::Even(_) = split {
                        assert!(j1 == n || j1 % GEMM_CHUNK == 0, "n {n} cut {j1}");
                    }
                    next = j1;
                }
                assert_eq!(next, n, "n {n}");
                assert_eq!(split.span(count, n), (n, n));
            }
            let (_, half) = Split::Even(8).span(3, n);
            let other = n - half;
            assert!(
                half.abs_diff(other) <= GEMM_CHUNK,
                "n {n}: {half} / {other}"
            );
        }
    }

    /// `matmul_parts` (q|k|v fused on `amx`: one packing, one section) gives every weight's
    /// columns bit for bit as one `matmul` per weight does, in both precisions, on the path in use.
    #[test]
    fn matmul_parts_equals_one_matmul_per_weight() {
        let k = 64;
        let ns = [40, 16, 33];
        let ws: Vec<Weight> = ns
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let v: Vec<bf16> = rand_vec(n * k, 100 + i as u64)
                    .iter()
                    .map(|&f| bf16::from_f32(f))
                    .collect();
                Weight::from_bf16(&v, vec![n, k])
            })
            .collect();
        let total: usize = ns.iter().sum();
        let ld = total + 5;
        for m in [1, 5, 34] {
            let x = rand_vec(m * k, m as u64);
            for prec in [Precision::Exact, Precision::Fast] {
                let mut fused = vec![f32::NAN; m * ld];
                with_precision(prec, || matmul_parts(&x, m, &ws, &mut fused, ld, 2));
                let mut apart = vec![f32::NAN; m * ld];
                let mut col = 2;
                for w in &ws {
                    matmul_with(kernel(), prec, &x, m, w, &mut apart, ld, col);
                    col += w.shape[0];
                }
                for (i, (f, a)) in fused.iter().zip(&apart).enumerate() {
                    assert_eq!(f.to_bits(), a.to_bits(), "{prec:?} m{m} element {i}");
                }
            }
        }
    }

    /// Every available SIMD path matches the scalar reference (`dot_*` per element, f64-checked
    /// tolerance) for f32/bf16/f16 weights, odd and even `k`, batch 1 and GEMM shapes, packed and
    /// k-blocked; and a row's result is bit-identical whether computed alone or in a batch.
    #[test]
    fn simd_paths_match_scalar_reference() {
        for &(m, n, k) in &[
            (1, 37, 1),
            (1, 19, 7),
            (1, 300, 131),
            (3, 41, 64),
            (7, 53, 133),
            (13, 130, 96),
            (25, 17, 200),
            // Weights streamed past 4-row tiles (m < PACK_MIN_M), long rows with a tail, a
            // leftover row.
            (17, 61, 1100),
            (2, 50, 1037),
            (16, 29, 2816),
            // Packed weights (m >= PACK_MIN_M) where there is no broadcast GEMM.
            (34, 21, 1037),
            // k a multiple of 32 (the AMX path): odd activation groups, a partial weight tile.
            (33, 70, 256),
            // The broadcast GEMM (m >= 32 on AVX-512): a tail of k, weight rows left over from
            // 12-row tiles (4-row and 1-row tiles), several chunks, a partial last row tile.
            (72, 29, 1037),
            (70, 101, 96),
            (66, 30, 2816),
            // Up to 64 rows the broadcast GEMM reads the weights as stored (`bcast::direct`):
            // odd and even lanes, a tail of k, rows past L1 (in blocks of steps).
            (40, 29, 1037),
            (33, 101, 96),
            (64, 30, 2816),
            (1, 40, 64),
        ] {
            let x = rand_vec(m * k, (m * 1000 + k) as u64);
            let wv = rand_vec(n * k, (n * 7 + k) as u64);
            let wb: Vec<bf16> = wv.iter().map(|&v| bf16::from_f32(v)).collect();
            let wh: Vec<f16> = wv.iter().map(|&v| f16::from_f32(v)).collect();
            let weights = [
                Weight::from_f32(&wv, vec![n, k]),
                Weight::from_bf16(&wb, vec![n, k]),
                Weight::from_f16(&wh, vec![n, k]),
            ];
            for (wi, w) in weights.iter().enumerate() {
                let reference = |i: usize, j: usize| {
                    let xi = &x[i * k..(i + 1) * k];
                    match wi {
                        0 => dot_f32(xi, &wv[j * k..(j + 1) * k]),
                        1 => dot_bf16(xi, &wb[j * k..(j + 1) * k]),
                        _ => dot_f16(xi, &wh[j * k..(j + 1) * k]),
                    }
                };
                for kern in Kernel::available_all() {
                    for prec in [Precision::Exact, Precision::Fast] {
                        let ld = n + 3;
                        let mut out = vec![f32::NAN; m * ld];
                        matmul_with(kern, prec, &x, m, w, &mut out, ld, 2);
                        // Fast on the bf16 path rounds activations: bf16 relative error per product.
                        let tol = if prec == Precision::Fast
                            && matches!(kern, Kernel::Avx512Bf16 | Kernel::Amx)
                        {
                            1e-2 * (k as f32).sqrt()
                        } else {
                            2e-5 * (k as f32).sqrt()
                        };
                        for i in 0..m {
                            for j in 0..n {
                                let (got, want) = (out[i * ld + 2 + j], reference(i, j));
                                assert!(
                                    (got - want).abs() <= tol,
                                    "{} {prec:?} w{wi} m{m} n{n} k{k} ({i},{j}): {got} vs {want}",
                                    kern.name()
                                );
                            }
                            let mut alone = vec![0f32; n];
                            matmul_with(kern, prec, &x[i * k..(i + 1) * k], 1, w, &mut alone, n, 0);
                            let batched = &out[i * ld + 2..i * ld + 2 + n];
                            assert_eq!(
                                &alone[..],
                                batched,
                                "{} {prec:?}: row {i} alone != batched",
                                kern.name()
                            );
                        }
                    }
                }
            }
        }
    }
}

//! Intel AMX tiles (`tdpbf16ps`) for `fast` matmuls with bf16 weights: the `amx` kernel path.
//!
//! `out = x @ w.T` is computed transposed, `out.T = w @ x.T`. The weights, stored `[n, k]` in bf16,
//! are AMX's A operand, loaded straight from the mmap 16 rows by 32 elements (one 64-byte line per
//! row) at a time. The activations, rounded to bf16 as `fast` rounds them on the `avx512bf16` path,
//! are packed once per matmul into B's pair-interleaved layout (see [`pack_x`]). A 16 x 16 f32 tile
//! of `out.T` accumulates `tdpbf16ps` over the 32-wide blocks of `k`, front to back.
//!
//! Every output element takes the same steps whatever `m` (from [`MIN_M`] on), the tile it lands in
//! or its neighbours: the instruction computes each element from its own weight row and activation
//! row only, and padded rows and columns are zeros whose outputs are dropped. Below [`MIN_M`] rows
//! the `vdpbf16ps` path runs instead, which sums in another order: on this path, unlike every other,
//! a row's `fast` result differs in its last bits between a matmul of fewer than [`MIN_M`] rows and
//! one of more (batched decode against decode alone, a prefill against the same tokens decoded one
//! by one). Streamed from memory by AMX, batch-1 decode of the 0.5B shape measured 14-15.5 tok/s
//! against 22.5 for `vdpbf16ps` (2-core Xeon VM), so batch 1 keeps `vdpbf16ps`. Used where `k` is a
//! multiple of 32 (the widths of every model family this crate loads); other `k` take the
//! `vdpbf16ps` path at every `m`.

use std::arch::asm;
use std::arch::x86_64::__cpuid_count;
use std::sync::OnceLock;

use half::bf16;
use rayon::prelude::*;

/// Rows from which a `fast` bf16 matmul on the `amx` path uses the tiles. On the 2-core Xeon, batch
/// 2 / 4 / 8 decode of the 0.5B shape ran 42.5 / 83 / 154 tok/s with them from 2 rows, against
/// 40 / 64 / 155 from 8 rows (`vdpbf16ps` below); batch 1 streamed by AMX, 14-15.5 against 22.5.
pub(super) const MIN_M: usize = 2;
/// Elements of `k` per tile step (16 pairs of bf16 = one 64-byte tile row).
pub(super) const KB: usize = 32;
/// Rows of a tile, and f32 columns of an output tile.
const T: usize = 16;
/// Weight rows per parallel task: they stay in L2 while the activation groups pass over them.
/// (128 measured slower for the projections of width 896-1152: too few tasks for two threads.)
const MAX_TASK: usize = 4 * T;
/// bf16 elements in one packed activation tile (1 KiB).
const TILE: usize = T * KB;

/// Whether this CPU has AMX-TILE and AMX-BF16 and the kernel lets this process use the tile data
/// (Linux asks for it: `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, once per process).
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(detect)
}

#[cfg(target_os = "linux")]
fn detect() -> bool {
    // Leaf 7 reports AMX in EDX: bit 22 AMX-BF16, bit 24 AMX-TILE.
    let l7 = __cpuid_count(7, 0);
    if (l7.edx >> 22) & 1 == 0 || (l7.edx >> 24) & 1 == 0 {
        return false;
    }
    let ret: i64;
    // SAFETY: the `arch_prctl` system call (158 on x86_64) with ARCH_REQ_XCOMP_PERM (0x1023) and
    // XFEATURE_XTILEDATA (18): integer arguments only, it touches none of this process's memory.
    // The syscall instruction clobbers rcx and r11.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") 158i64 => ret,
            in("rdi") 0x1023i64,
            in("rsi") 18i64,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn detect() -> bool {
    false
}

/// The tile configuration: palette 1, tiles 0-7 all 16 rows of 64 bytes (0-3 f32 accumulators of
/// `out.T`, 4-5 weight tiles, 6-7 activation tiles).
#[repr(C, align(64))]
struct Config([u8; 64]);

impl Config {
    fn new() -> Config {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&64u16.to_le_bytes());
            c[48 + t] = T as u8;
        }
        Config(c)
    }
}

/// The tiles of one thread, configured on creation and released on drop (so a thread that stops
/// using them does not carry 8 KiB of tile state through every context switch).
struct Tiles;

impl Tiles {
    /// # Safety
    /// [`available`] returned true.
    unsafe fn new() -> Tiles {
        let cfg = Config::new();
        // SAFETY (caller): AMX is present and permitted; `cfg` is a valid palette-1 configuration.
        asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
        Tiles
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: tiles were configured by `Tiles::new` on this thread.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// Rounds activation rows `x` (`[m, k]`, `k % 32 == 0`) to bf16 into AMX B tiles: group `g` holds
/// rows `16g..16g + 16` (zeros past `m`), and its block `b` of `k` is the 1 KiB tile at element
/// `(g * k / 32 + b) * 512`, whose pair-row `p`, column `c` holds `x[16g + c][32b + 2p..][..2]`.
pub fn pack_x(x: &[f32], m: usize, k: usize, out: &mut [bf16]) {
    let kbs = k / KB;
    let groups = m.div_ceil(T);
    assert!(k.is_multiple_of(KB) && x.len() >= m * k && out.len() >= groups * kbs * TILE);
    out[..groups * kbs * TILE]
        .par_chunks_mut(kbs * TILE)
        .enumerate()
        .for_each(|(g, grp)| {
            for (b, tile) in grp.chunks_exact_mut(TILE).enumerate() {
                for c in 0..T {
                    let r = g * T + c;
                    if r < m {
                        let src = &x[r * k + b * KB..r * k + (b + 1) * KB];
                        for (p, pair) in src.chunks_exact(2).enumerate() {
                            tile[p * 2 * T + 2 * c] = bf16::from_f32(pair[0]);
                            tile[p * 2 * T + 2 * c + 1] = bf16::from_f32(pair[1]);
                        }
                    } else {
                        for p in 0..T {
                            tile[p * 2 * T + 2 * c] = bf16::ZERO;
                            tile[p * 2 * T + 2 * c + 1] = bf16::ZERO;
                        }
                    }
                }
            }
        });
}

thread_local! {
    /// Packed activations of the running matmul (grows to the largest, then reused).
    static XB: std::cell::RefCell<Vec<bf16>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The last weight rows of a matrix whose `n` is not a multiple of 16, zero-padded to a tile.
    static TAIL: std::cell::RefCell<Vec<bf16>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `out[i * ld + j] = sum_k x[i, k] * w[j, k]` for `i < m`, `j < n`: bf16 weights `[n, k]` with
/// `k % 32 == 0`, activations rounded to bf16, f32 accumulation.
///
/// # Safety
/// [`available`] returned true; `out` is valid for writes of rows `0..m` of `n` elements at stride
/// `ld >= n`, and nothing else accesses them during the call.
pub unsafe fn matmul(
    x: &[f32],
    m: usize,
    k: usize,
    w: &[bf16],
    n: usize,
    out: *mut f32,
    ld: usize,
) {
    assert!(k.is_multiple_of(KB) && k > 0 && w.len() >= n * k && x.len() >= m * k);
    if m == 0 || n == 0 {
        return;
    }
    super::with_scratch(&XB, |xb| {
        let groups = m.div_ceil(T);
        let xb = super::aligned(xb, groups * k * T, 1 << 14);
        pack_x(x, m, k, xb);
        let threads = rayon::current_num_threads().max(1);
        let chunk = MAX_TASK;
        let job = Job {
            x: xb.as_ptr(),
            groups,
            m,
            k,
            w: w.as_ptr(),
            n,
            out,
            ld,
        };
        let chunks = n.div_ceil(chunk);
        let one = |c: usize| {
            // SAFETY: the caller guarantees AMX and the output bounds; chunks are disjoint.
            unsafe { job.rows(c * chunk, ((c + 1) * chunk).min(n)) }
        };
        if threads == 1 || m * n * k < super::PAR_THRESHOLD || chunks == 1 {
            (0..chunks).for_each(one);
        } else {
            (0..chunks).into_par_iter().for_each(one);
        }
    })
}

/// One matmul's operands (see [`matmul`]); `x` is packed by [`pack_x`].
struct Job {
    x: *const bf16,
    groups: usize,
    m: usize,
    k: usize,
    w: *const bf16,
    n: usize,
    out: *mut f32,
    ld: usize,
}

// SAFETY: shared by rayon tasks that only read `x` and `w` and write disjoint columns of `out`,
// all of which outlive the parallel section.
unsafe impl Sync for Job {}

impl Job {
    /// Output columns (weight rows) `j0..j1` (at most [`MAX_TASK`]): every pair of activation
    /// groups against the task's weight tiles, two at a time. Groups outside measured 3-9% faster
    /// on the 512-token `fast` prefill than weight tiles outside (3 rounds alternating builds).
    unsafe fn rows(&self, j0: usize, j1: usize) {
        let _tiles = Tiles::new();
        let k = self.k;
        TAIL.with(|tail| {
            let mut tail = tail.borrow_mut();
            // Weight tiles: straight from `w`, or the zero-padded copy of a partial last tile.
            let mut a = [std::ptr::null::<bf16>(); MAX_TASK / T];
            let tiles = (j1 - j0).div_ceil(T);
            for (t, at) in a.iter_mut().enumerate().take(tiles) {
                let r = j0 + t * T;
                *at = if r + T <= self.n {
                    self.w.add(r * k)
                } else {
                    let rows = self.n - r;
                    tail.clear();
                    tail.resize(T * k, bf16::ZERO);
                    // SAFETY: rows `r..n` of `w` exist.
                    let src = std::slice::from_raw_parts(self.w.add(r * k), rows * k);
                    tail[..rows * k].copy_from_slice(src);
                    tail.as_ptr()
                };
            }
            // Activation groups outside, weight tiles inside: a pair of groups is read once per
            // task while the task's weight rows (in L2) pass over it.
            let mut g = 0;
            while g < self.groups {
                let nb = (self.groups - g).min(2);
                let mut t = 0;
                while t < tiles {
                    let na = (tiles - t).min(2);
                    self.block([a[t], a[t + na - 1]], na, g, nb, j0 + t * T);
                    t += na;
                }
                g += nb;
            }
        })
    }

    /// `na` weight tiles at `a` (rows `j..`) against activation groups `g..g + nb`: accumulate
    /// over all of `k`, then write the valid part of each 16 x 16 tile of `out.T` to `out`.
    #[inline(always)]
    unsafe fn block(&self, a: [*const bf16; 2], na: usize, g: usize, nb: usize, j: usize) {
        let k = self.k;
        let kbs = k / KB;
        let sa = k * 2; // bytes between weight rows
        let sb = 2 * T * 2; // bytes between rows of a packed tile
        let b0 = self.x.add(g * kbs * TILE);
        let b1 = self.x.add((g + 1).min(self.groups - 1) * kbs * TILE);
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
        for b in 0..kbs {
            asm!(
                "tileloadd tmm4, [{a} + {s}]",
                "tileloadd tmm6, [{b} + {t}]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                a = in(reg) a[0].add(b * KB),
                s = in(reg) sa,
                b = in(reg) b0.add(b * TILE),
                t = in(reg) sb,
                options(nostack, readonly)
            );
            if nb == 2 {
                asm!(
                    "tileloadd tmm7, [{b} + {t}]",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    b = in(reg) b1.add(b * TILE),
                    t = in(reg) sb,
                    options(nostack, readonly)
                );
            }
            if na == 2 {
                asm!(
                    "tileloadd tmm5, [{a} + {s}]",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    a = in(reg) a[1].add(b * KB),
                    s = in(reg) sa,
                    options(nostack, readonly)
                );
                if nb == 2 {
                    asm!("tdpbf16ps tmm3, tmm5, tmm7", options(nostack, nomem));
                }
            }
        }
        let mut c = Acc([0f32; 4 * T * T]);
        let cp = c.0.as_mut_ptr();
        asm!(
            "tilestored [{p} + {s}], tmm0",
            "tilestored [{p1} + {s}], tmm1",
            "tilestored [{p2} + {s}], tmm2",
            "tilestored [{p3} + {s}], tmm3",
            p = in(reg) cp,
            p1 = in(reg) cp.add(T * T),
            p2 = in(reg) cp.add(2 * T * T),
            p3 = in(reg) cp.add(3 * T * T),
            s = in(reg) T * 4,
            options(nostack)
        );
        for ai in 0..na {
            let rows = (self.n - (j + ai * T)).min(T);
            for bi in 0..nb {
                let i0 = (g + bi) * T;
                let tile = &c.0[(ai * 2 + bi) * T * T..][..T * T];
                for ci in 0..(self.m - i0).min(T) {
                    let o = self.out.add((i0 + ci) * self.ld + j + ai * T);
                    for r in 0..rows {
                        *o.add(r) = tile[r * T + ci];
                    }
                }
            }
        }
    }
}

/// Four 16 x 16 f32 output tiles.
#[repr(C, align(64))]
struct Acc([f32; 4 * T * T]);

/// Register-resident `tdpbf16ps` loop (4 independent accumulator tiles) for the harness's AMX
/// peak: returns the multiply-adds done, times two.
///
/// # Safety
/// [`available`] returned true.
pub unsafe fn peak(iters: usize) -> f64 {
    let _tiles = Tiles::new();
    asm!(
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        "tilezero tmm4",
        "tilezero tmm5",
        "tilezero tmm6",
        "tilezero tmm7",
        options(nostack, nomem)
    );
    for _ in 0..iters {
        asm!(
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            options(nostack, nomem)
        );
    }
    (iters * 4 * T * T * KB * 2) as f64
}

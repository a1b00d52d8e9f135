//! Intel AMX tiles (`tdpbf16ps`) for matmuls with bf16 weights: the `amx` kernel path.
//!
//! `out = x @ w.T` is computed transposed, `out.T = w @ x.T`. The weights, stored `[n, k]` in bf16,
//! are AMX's A operand, loaded straight from the mmap 16 rows by 32 elements (one 64-byte line per
//! row) at a time. The activations are packed once per matmul into B's pair-interleaved layout
//! (see [`pack_x`]): in `fast` rounded to bf16, as the `avx512bf16` path rounds them; in `exact`
//! split into three bf16 terms `hi + mid + lo`, which carry all 24 bits of each f32, and whose
//! products (exact in f32) are accumulated apart and summed smallest first. A 16 x 16 f32 tile of
//! `out.T` accumulates `tdpbf16ps` over the 32-wide blocks of `k`, front to back.
//!
//! Every output element takes the same steps whatever `m`, the tile it lands in or its neighbours:
//! the instruction computes each element from its own weight row and activation column only, and
//! padded rows and columns are zeros whose outputs are dropped. So activation and accumulator tiles
//! are only as wide as the columns a matmul uses (1 at batch 1 in `fast`, whose packing is then a
//! plain rounding with nothing to zero and whose output tile is one contiguous row: against
//! 16-column tiles, batch-1 decode of the 0.5B shape gained 1.5-3% in `fast` and about 1% in
//! `exact`, 3 rounds alternating builds). Every `m` takes this path, in both
//! precisions, so batched results equal results computed alone, as on every other path. (Batch 1
//! too: streamed from memory by AMX tiles, with the spinning team and no software prefetch,
//! batch-1 decode of the 0.5B shape measured 25.5-26.0 tok/s in `fast` against 24.0-24.3 on the
//! `vdpbf16ps` GEMV, and 24.1-24.9 in `exact`.) Used where `k` is a multiple of 32 (the widths of
//! every model family this crate loads); other `k` take the `avx512bf16` path's kernels.

use std::arch::asm;
use std::arch::x86_64::__cpuid_count;
use std::sync::OnceLock;

use half::bf16;

/// Elements of `k` per tile step (16 pairs of bf16 = one 64-byte tile row).
pub(super) const KB: usize = 32;
/// Rows of a tile, and f32 columns of an output tile.
const T: usize = 16;
/// Weight rows per parallel task: they stay in L2 while the activation groups pass over them.
/// (128 measured slower for the projections of width 896-1152: too few tasks for two threads.)
const MAX_TASK: usize = 4 * T;

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

/// The tile configuration: palette 1, tiles 0-7 all 16 rows: 0-3 f32 accumulators of `out.T` and
/// 6-7 activation tiles, `width` columns of 4 bytes; 4-5 weight tiles of 64 bytes.
#[repr(C, align(64))]
struct Config([u8; 64]);

impl Config {
    fn new(width: usize) -> Config {
        let mut c = [0u8; 64];
        c[0] = 1;
        for t in 0..8 {
            let bytes = if t == 4 || t == 5 {
                64
            } else {
                4 * width as u16
            };
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&bytes.to_le_bytes());
            c[48 + t] = T as u8;
        }
        Config(c)
    }
}

/// The tiles of one thread, configured on creation and released on drop (so a thread that stops
/// using them does not carry 8 KiB of tile state through every context switch).
struct Tiles;

impl Tiles {
    /// Accumulator and activation tiles `width` columns wide (1 to 16).
    ///
    /// # Safety
    /// [`available`] returned true.
    unsafe fn new(width: usize) -> Tiles {
        debug_assert!((1..=T).contains(&width));
        let cfg = Config::new(width);
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

/// Activation rows `x` (`[m, k]`, `k % 32 == 0`) as AMX B tiles, each row as `parts` bf16 terms
/// (1: its rounding; 3: `hi + mid + lo`, each the rounding of what the earlier ones leave, which
/// together carry all 24 bits of an f32). Tiles are `w = width(m, parts)` columns of 4 bytes wide
/// (16 from 16 rows in `fast`, 15 from 5 in `exact`; 1 or 3 at batch 1, which packs no zeros and
/// accumulates no unused columns). Group `g` holds rows `g * rows_per_group(parts)..`, one tile
/// column per term (term `s` of the group's row `q` in column `q * parts + s`; unused columns and
/// rows past `m` are zeros). Its block `b` of `k` is the tile at element `(g * k / 32 + b) * 32w`,
/// whose pair-row `p`, column `c` holds the column's term of elements `32b + 2p` and `32b + 2p + 1`.
pub fn pack_x(x: &[f32], m: usize, k: usize, parts: usize, out: &mut [bf16]) {
    let kbs = k / KB;
    let rpg = rows_per_group(parts);
    let w = width(m, parts);
    let groups = m.div_ceil(rpg);
    assert!(k.is_multiple_of(KB) && x.len() >= m * k && out.len() >= groups * kbs * KB * w);
    assert!(parts == 1 || parts == 3);
    super::par_chunks_mut(&mut out[..groups * kbs * KB * w], kbs * KB * w, |g, grp| {
        let rows = rpg.min(m - g * rpg);
        if rows * parts < w {
            grp.fill(bf16::ZERO);
        }
        for q in 0..rows {
            let row = &x[(g * rpg + q) * k..][..k];
            // SAFETY: the `amx` path implies AVX-512F/BW; `grp` holds `kbs` tiles of width `w`
            // and column `q * parts + parts - 1 < w`.
            unsafe { pack_row(row, grp, q * parts, parts, w) };
        }
    });
}

/// Writes the `parts` terms of one activation row into tile columns `col..col + parts` of a
/// group's `k / 32` tiles of width `w`: per block of 32 elements, each term's 16 bf16 pairs go down
/// one column (a scatter of 16 dwords, one per tile row; at width 1 one contiguous store). The
/// rounding is [`bf16::from_f32`]'s, bit for bit (nearest even; a NaN keeps its payload, made
/// quiet).
///
/// # Safety
/// The CPU supports AVX-512F/BW; `grp.len() >= row.len() / 32 * 32 * w` and `col + parts <= w`.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_row(row: &[f32], grp: &mut [bf16], col: usize, parts: usize, w: usize) {
    use std::arch::x86_64::*;
    let round = |v: __m512| -> __m512 {
        let bits = _mm512_castps_si512(v);
        let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
        let up = _mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb));
        let high = _mm512_set1_epi32(0xFFFF_0000u32 as i32);
        let nan = _mm512_cmpgt_epi32_mask(
            _mm512_and_si512(bits, _mm512_set1_epi32(0x7FFF_FFFF)),
            _mm512_set1_epi32(0x7F80_0000),
        );
        let quiet = _mm512_and_si512(_mm512_or_si512(bits, _mm512_set1_epi32(0x0040_0000)), high);
        _mm512_castsi512_ps(_mm512_mask_mov_epi32(
            _mm512_and_si512(up, high),
            nan,
            quiet,
        ))
    };
    // Word 2i + 1 of each input (the bf16 in a rounded f32's high half), both inputs in order.
    let odd = _mm512_set_epi16(
        63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25, 23, 21, 19,
        17, 15, 13, 11, 9, 7, 5, 3, 1,
    );
    // Dword offsets of the 16 tile rows (`w` dwords apart).
    let rows = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32(w as i32),
    );
    for (b, block) in row.chunks_exact(KB).enumerate() {
        let mut rest = [
            _mm512_loadu_ps(block.as_ptr()),
            _mm512_loadu_ps(block.as_ptr().add(16)),
        ];
        let base = grp.as_mut_ptr().add(b * KB * w + 2 * col) as *mut i32;
        for s in 0..parts {
            let t = [round(rest[0]), round(rest[1])];
            let pairs = _mm512_permutex2var_epi16(
                _mm512_castps_si512(t[0]),
                odd,
                _mm512_castps_si512(t[1]),
            );
            if w == 1 {
                _mm512_storeu_si512(base as *mut _, pairs);
            } else {
                _mm512_i32scatter_epi32::<4>(base.add(s), rows, pairs);
            }
            rest = [_mm512_sub_ps(rest[0], t[0]), _mm512_sub_ps(rest[1], t[1])];
        }
    }
}

/// Scalar reference of [`pack_x`].
#[cfg(test)]
fn pack_x_scalar(x: &[f32], m: usize, k: usize, parts: usize, out: &mut [bf16]) {
    let rpg = rows_per_group(parts);
    let w = width(m, parts);
    for (g, grp) in out.chunks_exact_mut(k / KB * KB * w).enumerate() {
        grp.fill(bf16::ZERO);
        for q in 0..rpg.min(m.saturating_sub(g * rpg)) {
            let row = &x[(g * rpg + q) * k..][..k];
            for (e, &v) in row.iter().enumerate() {
                let at = e / KB * KB * w + e % KB / 2 * 2 * w + 2 * q * parts + e % 2;
                let mut rest = v;
                for s in 0..parts {
                    let t = bf16::from_f32(rest);
                    grp[at + 2 * s] = t;
                    rest -= t.to_f32();
                }
            }
        }
    }
}

/// Activation rows per packed group: 16 tile columns hold 16 rows of one term or 5 of three.
fn rows_per_group(parts: usize) -> usize {
    T / parts
}

/// Columns of the packed activation and accumulator tiles for `m` rows: as many as a group uses
/// (every tile element is computed from its own weight row and activation column alone, so the
/// width changes no result).
fn width(m: usize, parts: usize) -> usize {
    rows_per_group(parts).min(m) * parts
}

thread_local! {
    /// Packed activations of the running matmul (grows to the largest, then reused).
    static XB: std::cell::RefCell<Vec<bf16>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The last weight rows of a matrix whose `n` is not a multiple of 16, zero-padded to a tile.
    static TAIL: std::cell::RefCell<Vec<bf16>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One weight matrix of a [`matmul`]: `n` rows of `k` bf16 at `w`, written to the output columns
/// that start at `out`.
pub struct Mat {
    pub w: *const bf16,
    pub n: usize,
    pub out: *mut f32,
}

// SAFETY: shared by the section's threads, which only read `w` and write disjoint columns of
// `out` (see `matmul`).
unsafe impl Sync for Mat {}

/// `out[i * ld + j] = sum_k x[i, k] * w[j, k]` for `i < m`, `j < n`, for each of `mats` (one
/// input, several weights side by side, as q|k|v: one packing and one parallel section for all):
/// bf16 weights `[n, k]` with `k % 32 == 0`, f32 accumulation; the activations rounded to bf16
/// (`parts == 1`, `fast`) or split into three bf16 terms whose products are accumulated apart and
/// summed smallest first (`parts == 3`, `exact`: the f32 activations to within their last bit;
/// see [`pack_x`]).
///
/// # Safety
/// [`available`] returned true; each `w` holds `n * k` elements; each `out` is valid for writes of
/// rows `0..m` of `n` elements at stride `ld >= n`, no two overlap, and nothing else accesses them
/// during the call.
pub unsafe fn matmul(x: &[f32], m: usize, k: usize, mats: &[Mat], ld: usize, parts: usize) {
    assert!(k.is_multiple_of(KB) && k > 0 && x.len() >= m * k);
    assert!(parts == 1 || parts == 3);
    let n_all: usize = mats.iter().map(|p| p.n).sum();
    if m == 0 || n_all == 0 {
        return;
    }
    super::with_scratch(&XB, |xb| {
        let groups = m.div_ceil(rows_per_group(parts));
        let width = width(m, parts);
        let xb = super::aligned(xb, groups * k * width, 1 << 14);
        pack_x(x, m, k, parts, xb);
        let threads = super::team::threads().max(1);
        // Batch 1 streams the weights from memory: about 16 tasks per thread, so the threads end
        // together (batch-1 `exact` decode of the 0.5B shape: 19.2-19.4 tok/s with 4 per thread,
        // 21.3-21.6 with 16, 32 or 64).
        let chunk = |n: usize| {
            if m == 1 {
                n.div_ceil(threads * 16).next_multiple_of(2 * T)
            } else {
                MAX_TASK
            }
        };
        let chunks: usize = mats.iter().map(|p| p.n.div_ceil(chunk(p.n))).sum();
        let base = Job {
            x: xb.as_ptr(),
            groups,
            m,
            k,
            w: std::ptr::null(),
            n: 0,
            out: std::ptr::null_mut(),
            ld,
            parts,
            width,
        };
        let base = &base;
        // Task `c` of the concatenated chunk lists.
        let one = |mut c: usize| {
            for p in mats {
                let (size, count) = (chunk(p.n), p.n.div_ceil(chunk(p.n)));
                if c < count {
                    let job = Job {
                        w: p.w,
                        n: p.n,
                        out: p.out,
                        ..*base
                    };
                    // SAFETY: the caller guarantees AMX, the weights and the output bounds;
                    // chunks are disjoint.
                    return unsafe { job.rows(c * size, ((c + 1) * size).min(p.n)) };
                }
                c -= count;
            }
        };
        if threads == 1 || m * n_all * k < super::PAR_THRESHOLD || chunks == 1 {
            (0..chunks).for_each(one);
        } else {
            super::par_for(chunks, one);
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
    /// bf16 terms per activation row, and columns of the packed tiles (see [`pack_x`]).
    parts: usize,
    width: usize,
}

// SAFETY: shared by rayon tasks that only read `x` and `w` and write disjoint columns of `out`,
// all of which outlive the parallel section.
unsafe impl Sync for Job {}

impl Job {
    /// Output columns (weight rows) `j0..j1` (at most [`MAX_TASK`]): every pair of activation
    /// groups against the task's weight tiles, two at a time. Groups outside measured 3-9% faster
    /// on the 512-token `fast` prefill than weight tiles outside (3 rounds alternating builds).
    unsafe fn rows(&self, j0: usize, j1: usize) {
        let _tiles = Tiles::new(self.width);
        let k = self.k;
        TAIL.with(|tail| {
            let mut tail = tail.borrow_mut();
            // Weight tiles: straight from `w`, or the zero-padded copy of a partial last tile
            // (made once per task).
            let tiles = (j1 - j0).div_ceil(T);
            let last = j0 + (tiles - 1) * T;
            let tail_at = (last + T > self.n).then(|| {
                let rows = self.n - last;
                tail.clear();
                tail.resize(T * k, bf16::ZERO);
                // SAFETY: rows `last..n` of `w` exist.
                let src = std::slice::from_raw_parts(self.w.add(last * k), rows * k);
                tail[..rows * k].copy_from_slice(src);
                tail.as_ptr()
            });
            let a = |t: usize| match tail_at {
                Some(p) if t == tiles - 1 => p,
                _ => self.w.add((j0 + t * T) * k),
            };
            // Activation groups outside, weight tiles inside: a pair of groups is read once per
            // task while the task's weight rows (in L2) pass over it.
            let mut g = 0;
            while g < self.groups {
                let nb = (self.groups - g).min(2);
                let mut t = 0;
                while t < tiles {
                    let na = (tiles - t).min(2);
                    // No software prefetch at batch 1, where the weights stream from memory: with
                    // the spinning team the hardware prefetcher alone did best. Prefetching the
                    // next two tiles into L2 a slice per step gave 23.1-23.4 tok/s of batch-1
                    // `exact` decode (0.5B shape), 21.0-21.3 when it also ran past the task's end,
                    // and 24.1-24.9 without it (3 rounds alternating).
                    let (a0, a1) = (a(t), a(t + na - 1));
                    self.block([a0, a1], na, g, nb, j0 + t * T);
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
        let w = self.width;
        let sb = 4 * w; // bytes between rows of a packed tile
        let tile = KB * w; // elements of a packed tile
        let b0 = self.x.add(g * kbs * tile);
        let b1 = self.x.add((g + 1).min(self.groups - 1) * kbs * tile);
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
                b = in(reg) b0.add(b * tile),
                t = in(reg) sb,
                options(nostack, readonly)
            );
            if nb == 2 {
                asm!(
                    "tileloadd tmm7, [{b} + {t}]",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    b = in(reg) b1.add(b * tile),
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
        // Only the tiles in use are stored, and only they are read below (no zeroing: at batch 1
        // that was 4 KiB of memset per 32 weight rows, 0.6% of a decode step's samples).
        let mut c = std::mem::MaybeUninit::<Acc>::uninit();
        let cp = c.as_mut_ptr() as *mut f32;
        // Tile registers are named in the template, hence a macro, not a function.
        macro_rules! store {
            ($tmm:literal, $i:expr) => {
                asm!(
                    concat!("tilestored [{p} + {s}], ", $tmm),
                    p = in(reg) cp.add($i * T * w),
                    s = in(reg) w * 4,
                    options(nostack)
                )
            };
        }
        store!("tmm0", 0);
        if nb == 2 {
            store!("tmm1", 1);
        }
        if na == 2 {
            store!("tmm2", 2);
            if nb == 2 {
                store!("tmm3", 3);
            }
        }
        let rpg = rows_per_group(self.parts);
        for ai in 0..na {
            let rows = (self.n - (j + ai * T)).min(T);
            for bi in 0..nb {
                let q0 = (g + bi) * rpg;
                // Stored just above (tile `ai * 2 + bi` for every `ai < na`, `bi < nb`).
                let acc = (cp as *const f32).add((ai * 2 + bi) * T * w);
                for q in 0..(self.m - q0).min(rpg) {
                    let o = self.out.add((q0 + q) * self.ld + j + ai * T);
                    // SAFETY: the `amx` path implies AVX-512F; the columns read lie in the tile
                    // and the `rows` lanes written are output columns `j + ai * T..` of row
                    // `q0 + q`, inside the caller's bounds.
                    store_column(acc, w, q * self.parts, self.parts, rows, o);
                }
            }
        }
    }
}

/// Output row `o[..rows]` from columns `col..col + parts` of a 16 x `w` f32 tile (one gather per
/// column; at width 1 one load): the terms' products summed smallest first (`-0.0 + v` is `v`, bit
/// for bit).
///
/// # Safety
/// The CPU supports AVX-512F; `tile` holds `16 * w` floats, `col + parts <= w`, `o` is writable for
/// `rows <= 16` floats.
#[target_feature(enable = "avx512f")]
unsafe fn store_column(
    tile: *const f32,
    w: usize,
    col: usize,
    parts: usize,
    rows: usize,
    o: *mut f32,
) {
    use std::arch::x86_64::*;
    let mask = ((1u32 << rows) - 1) as u16;
    if w == 1 {
        return _mm512_mask_storeu_ps(o, mask, _mm512_loadu_ps(tile));
    }
    let idx = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32(w as i32),
    );
    let mut sum = _mm512_set1_ps(-0.0);
    for s in (0..parts).rev() {
        sum = _mm512_add_ps(sum, _mm512_i32gather_ps::<4>(idx, tile.add(col + s)));
    }
    _mm512_mask_storeu_ps(o, mask, sum);
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
    let _tiles = Tiles::new(T);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector packer against the scalar one, bit for bit: both term counts, partial groups,
    /// and inputs that round up, tie, overflow to infinity, or are NaN, infinite or denormal.
    #[test]
    fn pack_x_matches_scalar_reference() {
        if !available() {
            return println!("skipped: no AMX on this CPU");
        }
        let k = 96;
        let mut x = super::super::simd::tests::rand_vec(13 * k, 3);
        let special = [
            f32::NAN,
            -f32::NAN,
            f32::INFINITY,
            f32::MAX,
            1e-40,
            -3.0e-39,
            1.0 + 1.0 / 256.0,
            1.0 + 3.0 / 256.0,
            f32::from_bits(0x7FC0_1234),
            0.1,
        ];
        x[..special.len()].copy_from_slice(&special);
        for (parts, m) in [1, 3]
            .into_iter()
            .flat_map(|p| [1usize, 2, 5, 13].map(|m| (p, m)))
        {
            let len = m.div_ceil(rows_per_group(parts)) * k * width(m, parts);
            let (mut want, mut got) = (vec![bf16::ONE; len], vec![bf16::ONE; len]);
            pack_x_scalar(&x, m, k, parts, &mut want);
            pack_x(&x, m, k, parts, &mut got);
            let bits = |v: &[bf16]| v.iter().map(|b| b.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "parts {parts}, m {m}");
        }
    }
}

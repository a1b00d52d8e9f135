//! Half-precision K/V: the storage dtype of a KV cache ([`KvDtype`]), the view of one layer's K or
//! V that attention reads ([`KvRows`]), rounding rows into f16/bf16 and widening them back.
//!
//! [`attention_kv`] over a half-precision layer widens the blocks its sequences see into a
//! per-thread f32 scratch and runs [`attention`] there. Widening is exact, so the result is f32
//! attention on the rounded K/V, and a row's result still does not depend on the batch (the
//! scratch only renumbers blocks). [`widen_scalar`] is the reference of the SIMD widening.

use half::{bf16, f16};

use super::attention::{attention, AttnSeq, AttnShape};

/// Element type of the K/V cache on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KvDtype {
    /// f32 (exact; the only dtype of the CUDA decoder).
    #[default]
    F32,
    /// IEEE half, rounded to nearest even: half the bytes, 11-bit mantissa.
    F16,
    /// bfloat16, rounded to nearest even: half the bytes, f32's range, 8-bit mantissa.
    Bf16,
}

impl KvDtype {
    /// Parses `f32`, `f16` or `bf16`.
    pub fn parse(s: &str) -> Option<KvDtype> {
        match s {
            "f32" => Some(KvDtype::F32),
            "f16" => Some(KvDtype::F16),
            "bf16" => Some(KvDtype::Bf16),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KvDtype::F32 => "f32",
            KvDtype::F16 => "f16",
            KvDtype::Bf16 => "bf16",
        }
    }

    /// Bytes per element.
    pub fn bytes(self) -> usize {
        match self {
            KvDtype::F32 => 4,
            KvDtype::F16 | KvDtype::Bf16 => 2,
        }
    }
}

impl std::str::FromStr for KvDtype {
    type Err = String;

    fn from_str(s: &str) -> Result<KvDtype, String> {
        KvDtype::parse(s).ok_or_else(|| format!("`{s}`: expected f32, f16 or bf16"))
    }
}

/// One layer's K or V memory, rows `[num_blocks * block_size, kv_dim]`.
#[derive(Debug, Clone, Copy)]
pub enum KvRows<'a> {
    F32(&'a [f32]),
    /// f16 bit patterns.
    F16(&'a [u16]),
    /// bf16 bit patterns.
    Bf16(&'a [u16]),
}

/// Rounds `src` into `dst` (bit patterns of `dtype`, nearest even). `dtype` must be half-precision;
/// f32 has nothing to round (the caller copies).
pub fn narrow(dtype: KvDtype, src: &[f32], dst: &mut [u16]) {
    match dtype {
        KvDtype::F16 => dst
            .iter_mut()
            .zip(src)
            .for_each(|(d, &s)| *d = f16::from_f32(s).to_bits()),
        KvDtype::Bf16 => dst
            .iter_mut()
            .zip(src)
            .for_each(|(d, &s)| *d = bf16::from_f32(s).to_bits()),
        KvDtype::F32 => unreachable!("narrow is for half-precision dtypes"),
    }
}

/// The scalar reference of [`widen`]: `dst[i] = src[i]` as f32 (`f16` when `is_f16`, else bf16).
pub fn widen_scalar(is_f16: bool, src: &[u16], dst: &mut [f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = if is_f16 {
            f16::from_bits(s).to_f32()
        } else {
            f32::from_bits((s as u32) << 16)
        };
    }
}

/// Widens `src` into `dst` (same length), 8 at a time with F16C or a 16-bit shift where available.
pub fn widen(is_f16: bool, src: &[u16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "widen: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c") {
        // SAFETY: AVX2 and F16C were just detected; the lengths are equal.
        return unsafe { widen_avx2(is_f16, src, dst) };
    }
    widen_scalar(is_f16, src, dst)
}

/// # Safety
/// AVX2 and F16C must be available and `src.len() == dst.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn widen_avx2(is_f16: bool, src: &[u16], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = src.len() / 8 * 8;
    for i in (0..n).step_by(8) {
        // SAFETY: `i + 8 <= n <= len` for both slices.
        unsafe {
            let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
            let f = if is_f16 {
                _mm256_cvtph_ps(h)
            } else {
                _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
            };
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), f);
        }
    }
    widen_scalar(is_f16, &src[n..], &mut dst[n..]);
}

/// This thread's widened blocks: the distinct block ids the call sees, their K and V in f32, and
/// the sequences' block tables renumbered into them.
#[derive(Default)]
struct Wide {
    blocks: Vec<u32>,
    k: Vec<f32>,
    v: Vec<f32>,
    tables: Vec<u32>,
}

thread_local! {
    static WIDE: std::cell::RefCell<Wide> = std::cell::RefCell::new(Wide::default());
}

/// [`attention`] over a layer stored as `k`, `v` (both of one dtype): f32 directly, half precision
/// through a widened copy of the blocks the sequences see.
pub fn attention_kv(
    q: &[f32],
    k: KvRows,
    v: KvRows,
    seqs: &[AttnSeq],
    s: AttnShape,
    out: &mut [f32],
) {
    let (is_f16, kh, vh) = match (k, v) {
        (KvRows::F32(k), KvRows::F32(v)) => return attention(q, k, v, seqs, s, out),
        (KvRows::F16(k), KvRows::F16(v)) => (true, k, v),
        (KvRows::Bf16(k), KvRows::Bf16(v)) => (false, k, v),
        _ => panic!("attention_kv: K and V have different dtypes"),
    };
    let bs = s.block_size;
    let row = bs * s.n_kv_heads * s.head_dim;
    let seen = |sq: &AttnSeq| (sq.start + sq.len).div_ceil(bs);
    super::with_scratch(&WIDE, |w| {
        w.blocks.clear();
        for sq in seqs {
            w.blocks.extend_from_slice(&sq.table[..seen(sq)]);
        }
        w.blocks.sort_unstable();
        w.blocks.dedup();
        let n = w.blocks.len() * row;
        w.k.resize(n, 0.0);
        w.v.resize(n, 0.0);
        for (i, &b) in w.blocks.iter().enumerate() {
            let src = b as usize * row..(b as usize + 1) * row;
            widen(is_f16, &kh[src.clone()], &mut w.k[i * row..(i + 1) * row]);
            widen(is_f16, &vh[src], &mut w.v[i * row..(i + 1) * row]);
        }
        w.tables.clear();
        for sq in seqs {
            for b in &sq.table[..seen(sq)] {
                let at = w
                    .blocks
                    .binary_search(b)
                    .expect("every seen block was collected");
                w.tables.push(at as u32);
            }
        }
        let mut at = 0;
        let renumbered: Vec<AttnSeq> = seqs
            .iter()
            .map(|sq| {
                let n = seen(sq);
                at += n;
                AttnSeq {
                    table: &w.tables[at - n..at],
                    ..*sq
                }
            })
            .collect();
        attention(q, &w.k, &w.v, &renumbered, s, out)
    })
}

#[cfg(test)]
mod tests {
    use super::super::rand::rand_vec;
    use super::*;

    /// Every f16 and bf16 bit pattern widens the same on the SIMD path as on the scalar one, and
    /// the scalar one agrees with the `half` crate (NaNs: both NaN).
    #[test]
    fn widening_matches_scalar_and_half() {
        let all: Vec<u16> = (0..=u16::MAX).collect();
        for is_f16 in [true, false] {
            let (mut got, mut want) = (vec![0f32; all.len()], vec![0f32; all.len()]);
            // An odd length exercises the scalar tail of the SIMD path.
            widen(is_f16, &all[..65533], &mut got[..65533]);
            widen(is_f16, &all[65533..], &mut got[65533..]);
            widen_scalar(is_f16, &all, &mut want);
            for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
                let h = if is_f16 {
                    f16::from_bits(i as u16).to_f32()
                } else {
                    bf16::from_bits(i as u16).to_f32()
                };
                let same =
                    |x: f32, y: f32| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan());
                assert!(same(a, b) && same(b, h), "{is_f16} {i:#06x}: {a} {b} {h}");
            }
        }
    }

    /// Attention on a half-precision layer equals f32 attention on K/V rounded by the `half` crate,
    /// bit for bit; and a decode row's result is the same batched or alone.
    #[test]
    fn half_attention_is_f32_attention_on_rounded_kv() {
        let (n_heads, n_kv, hd, bs, nb) = (8, 2, 64, 4, 30);
        let kvd = n_kv * hd;
        let k: Vec<f32> = rand_vec(nb * bs * kvd, 7).iter().map(|x| x * 3.0).collect();
        let v = rand_vec(nb * bs * kvd, 8);
        let t1: Vec<u32> = (0..15).rev().collect();
        let t2: Vec<u32> = (10..30).collect();
        // Sequences sharing blocks 10..15, as a shared prefix does.
        let seqs = [
            AttnSeq {
                table: &t1,
                start: 0,
                len: 30,
            },
            AttnSeq {
                table: &t2,
                start: 50,
                len: 1,
            },
        ];
        let rows = 31;
        let q = rand_vec(rows * n_heads * hd, 9);
        let shape = AttnShape {
            n_heads,
            n_kv_heads: n_kv,
            head_dim: hd,
            block_size: bs,
            window: None,
        };
        for dtype in [KvDtype::F16, KvDtype::Bf16] {
            let round = |x: &[f32]| -> Vec<f32> {
                x.iter()
                    .map(|&x| match dtype {
                        KvDtype::F16 => f16::from_f32(x).to_f32(),
                        _ => bf16::from_f32(x).to_f32(),
                    })
                    .collect()
            };
            let (kr, vr) = (round(&k), round(&v));
            let mut want = vec![0f32; rows * n_heads * hd];
            attention(&q, &kr, &vr, &seqs, shape, &mut want);
            let (mut kh, mut vh) = (vec![0u16; k.len()], vec![0u16; v.len()]);
            narrow(dtype, &k, &mut kh);
            narrow(dtype, &v, &mut vh);
            let view = |x| match dtype {
                KvDtype::F16 => KvRows::F16(x),
                _ => KvRows::Bf16(x),
            };
            let mut got = vec![f32::NAN; want.len()];
            attention_kv(&q, view(&kh), view(&vh), &seqs, shape, &mut got);
            assert_eq!(got, want, "{dtype:?}");
            let qd = n_heads * hd;
            let mut alone = vec![0f32; qd];
            attention_kv(
                &q[30 * qd..],
                view(&kh),
                view(&vh),
                &seqs[1..],
                shape,
                &mut alone,
            );
            assert_eq!(&alone[..], &got[30 * qd..], "{dtype:?} alone");
            // Rounding moved the result (the reference is not the f32 one).
            let mut exact = vec![0f32; want.len()];
            attention(&q, &k, &v, &seqs, shape, &mut exact);
            assert_ne!(exact, want);
        }
    }
}

//! Machine limits measured beside the model benchmarks: the memory read rate over a buffer larger
//! than the last-level cache, and the register-resident f32, bf16 dot-product and AMX multiply-add
//! peaks, on the threads the matmuls run on.

use std::time::Instant;

use crate::backend::cpu::memory::Mapping;
use crate::backend::cpu::{broadcast, kernel, par_for, Kernel};

/// A buffer of `bytes` (a multiple of 8) for [`read_bandwidth`], on huge pages where the kernel
/// gives them (as weights are: see [`crate::backend::cpu::memory`]), every byte written.
pub fn read_buffer(bytes: usize) -> Mapping {
    let mut m = Mapping::zeroed(bytes);
    if let Some(b) = m.bytes_mut() {
        b.fill(1);
    }
    m
}

/// GB/s of all threads reading disjoint parts of `buf` (larger than the last-level cache): the
/// best of three access patterns, 1, 8 and 16 interleaved streams per thread (a GEMV tile reads 8
/// weight rows, an AMX tile 16; on some machines several streams per core are needed to reach the
/// memory's rate), each a 64-byte line per stream and step, in the widest vectors the CPU has. On
/// the 2-core Xeon they read 18, 23 and 30.4 GB/s; the scalar loops used before (1 stream, and 8
/// streams interleaved by the u64) read 21 and 26.8, below the 28 GB/s that the AMX GEMV of
/// `cargo bench --bench kernels` streamed (all over 4 KiB pages). Over 2 MiB pages the 16 streams
/// read 29-30 GB/s there, against 18-27 GB/s over 4 KiB pages in the same runs (the VM's rate over
/// 4 KiB pages drifted over hours, and weights on huge pages then streamed faster than that
/// "limit"), so the model harness reads the weights' own memory and the kernel benchmarks a
/// [`read_buffer`]. Runs on the threads the model's matmuls run on (the team of the
/// [`crate::backend::cpu::Compute::run`] in progress, else the rayon pool).
pub fn read_bandwidth(buf: &[u64]) -> f64 {
    let rate = |f: fn(&[u64]) -> u64| {
        let t0 = Instant::now();
        let x = std::sync::atomic::AtomicU64::new(0);
        par_for(buf.len().div_ceil(1 << 16), |c| {
            let part = &buf[c << 16..((c + 1) << 16).min(buf.len())];
            x.fetch_xor(f(part), std::sync::atomic::Ordering::Relaxed);
        });
        std::hint::black_box(x);
        (buf.len() * 8) as f64 / t0.elapsed().as_secs_f64() / 1e9
    };
    let one = rate(streams::<1>);
    let eight = rate(streams::<8>);
    let sixteen = rate(streams::<16>);
    one.max(eight).max(sixteen)
}

/// XOR of `c` read as `S` equal interleaved streams, one 64-byte line of each per step (plus the
/// leftover elements), in AVX-512 or AVX2 registers where the CPU has them.
fn streams<const S: usize>(c: &[u64]) -> u64 {
    #[inline(always)]
    fn go<const S: usize>(c: &[u64]) -> u64 {
        let per = c.len() / (8 * S) * 8;
        let mut acc = [[0u64; 8]; S];
        for i in (0..per).step_by(8) {
            for (s, a) in acc.iter_mut().enumerate() {
                let line = &c[s * per + i..s * per + i + 8];
                for (x, &v) in a.iter_mut().zip(line) {
                    *x ^= v;
                }
            }
        }
        let rest = c[S * per..].iter().fold(0, |a, &b| a ^ b);
        acc.iter().flatten().fold(rest, |a, &b| a ^ b)
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn avx512<const S: usize>(c: &[u64]) -> u64 {
            go::<S>(c)
        }
        #[target_feature(enable = "avx2")]
        fn avx2<const S: usize>(c: &[u64]) -> u64 {
            go::<S>(c)
        }
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is present (checked just above).
            return unsafe { avx512::<S>(c) };
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present (checked just above).
            return unsafe { avx2::<S>(c) };
        }
    }
    go::<S>(c)
}

/// Register-resident multiply-add loops on every compute thread at once (as [`read_bandwidth`]):
/// (f32 GFLOP/s, bf16 dot-product GFLOP/s, AMX bf16 GFLOP/s).
pub fn compute_peaks() -> (f64, Option<f64>, Option<f64>) {
    let run = |f: fn(usize) -> f64| -> f64 {
        let iters = 4_000_000;
        let t0 = Instant::now();
        let sum = std::sync::Mutex::new(0f64);
        broadcast(|_| {
            let v = f(iters);
            *sum.lock().unwrap_or_else(|e| e.into_inner()) += v;
        });
        let flops = sum.into_inner().unwrap_or_else(|e| e.into_inner());
        flops / t0.elapsed().as_secs_f64() / 1e9
    };
    let k = kernel();
    #[cfg(target_arch = "x86_64")]
    {
        let f32_peak = match k {
            Kernel::Avx512 | Kernel::Avx512Bf16 | Kernel::Amx => run(peak::fma512),
            Kernel::Avx2 => run(peak::fma256),
            _ => run(peak::fma_scalar),
        };
        let bf16 = matches!(k, Kernel::Avx512Bf16 | Kernel::Amx).then(|| run(peak::dpbf16));
        // SAFETY: the `amx` path is only selected where AMX is available.
        let amx =
            (k == Kernel::Amx).then(|| run(|n| unsafe { crate::backend::cpu::amx::peak(n / 16) }));
        (f32_peak, bf16, amx)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = k;
        (run(peak::fma_scalar), None, None)
    }
}

mod peak {
    //! Peak-rate loops: 12 independent accumulators (enough to cover FMA latency x throughput).

    /// Scalar f32 multiply-adds (the compiler may vectorize; a lower bound).
    pub fn fma_scalar(iters: usize) -> f64 {
        let mut a = [1.0f32; 12];
        for _ in 0..iters {
            for v in a.iter_mut() {
                *v = v.mul_add(0.999_999, 1e-7);
            }
        }
        std::hint::black_box(a);
        (iters * 12 * 2) as f64
    }

    #[cfg(target_arch = "x86_64")]
    macro_rules! peak_loop {
        ($name:ident, $inner:ident, $feat:literal, $v:ty, $set1:ident, $op:expr, $flops:expr) => {
            pub fn $name(iters: usize) -> f64 {
                use std::arch::x86_64::*;
                #[target_feature(enable = $feat)]
                unsafe fn $inner(iters: usize) {
                    let b = $set1(0.999_999);
                    let mut acc = [$set1(1.0); 12];
                    for _ in 0..iters {
                        for a in acc.iter_mut() {
                            *a = $op(*a, b);
                        }
                    }
                    std::hint::black_box(acc);
                }
                // SAFETY: only called when `kernel()` selected a path whose features are present.
                unsafe { $inner(iters) };
                (iters * 12) as f64 * $flops
            }
        };
    }

    #[cfg(target_arch = "x86_64")]
    peak_loop!(
        fma256,
        inner256,
        "avx2,fma",
        __m256,
        _mm256_set1_ps,
        |a, b| _mm256_fmadd_ps(a, b, b),
        16.0
    );
    #[cfg(target_arch = "x86_64")]
    peak_loop!(
        fma512,
        inner512,
        "avx512f",
        __m512,
        _mm512_set1_ps,
        |a, b| _mm512_fmadd_ps(a, b, b),
        32.0
    );
    #[cfg(target_arch = "x86_64")]
    peak_loop!(
        dpbf16,
        innerbf16,
        "avx512f,avx512bf16",
        __m512,
        _mm512_set1_ps,
        // `b`'s f32 bits read as two bf16 values: 0x3F7F3F7F is the pair (0.996, 0.996), so the
        // products are ordinary numbers (0.999999's low half would be a bf16 NaN).
        |a, _b: __m512| _mm512_dpbf16_ps(
            a,
            std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(0x3F7F_3F7F)),
            std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(0x3F7F_3F7F))
        ),
        64.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every stream pattern reads every element once: its XOR is the plain fold's.
    #[test]
    fn read_patterns_cover_every_element() {
        let v: Vec<u64> = (0..5000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        for len in [0, 7, 64, 1000, 4099, 5000] {
            let c = &v[..len];
            let want = c.iter().fold(0, |a, &b| a ^ b);
            assert_eq!(streams::<1>(c), want, "1 stream, {len}");
            assert_eq!(streams::<8>(c), want, "8 streams, {len}");
            assert_eq!(streams::<16>(c), want, "16 streams, {len}");
        }
    }
}

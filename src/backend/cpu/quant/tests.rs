//! Every path against the scalar reference, and both precisions against f64 sums of the
//! dequantized values (the dequantization itself is checked against the `gguf` Python package in
//! tests/gguf_quant.rs).

use super::*;

/// Byte offsets of each format's f16 scale fields (random bytes there could be inf or NaN).
fn f16_fields(f: QuantFormat) -> &'static [usize] {
    match f {
        QuantFormat::Q4_0 | QuantFormat::Q5_0 | QuantFormat::Q8_0 => &[0],
        QuantFormat::Q4_1 | QuantFormat::Q5_1 | QuantFormat::Q4K | QuantFormat::Q5K => &[0, 2],
        QuantFormat::Q2K => &[80, 82],
        QuantFormat::Q3K => &[108],
        QuantFormat::Q6K => &[208],
    }
}

pub(super) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// `rows` x `cols` random weights of format `f` with scales in +-0.05.
pub(super) fn random_matrix(f: QuantFormat, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let bytes = f.block_bytes();
    let mut w: Vec<u8> = (0..rows * cols / f.block_values() * bytes)
        .map(|_| rng.next() as u8)
        .collect();
    for blk in w.chunks_exact_mut(bytes) {
        for &o in f16_fields(f) {
            let s = half::f16::from_f32(rng.f32() * 0.05).to_le_bytes();
            blk[o..o + 2].copy_from_slice(&s);
        }
    }
    w
}

/// `sum_k w[j, k] * x[i, k]` in f64 with the sum of magnitudes, for the tolerance.
pub(super) fn reference(
    wf: &[f32],
    x: &[f32],
    m: usize,
    rows: usize,
    cols: usize,
) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for i in 0..m {
        for j in 0..rows {
            let (mut s, mut a) = (0f64, 0f64);
            for k in 0..cols {
                let p = wf[j * cols + k] as f64 * x[i * cols + k] as f64;
                s += p;
                a += p.abs();
            }
            out.push((s, a));
        }
    }
    out
}

fn run_path(w: &QuantMatrix, x: &[f32], m: usize, p: Precision, path: QuantPath) -> Vec<f32> {
    run_on(w, x, m, p, path, false)
}

pub(super) fn run_on(
    w: &QuantMatrix,
    x: &[f32],
    m: usize,
    p: Precision,
    path: QuantPath,
    threaded: bool,
) -> Vec<f32> {
    let mut out = vec![f32::NAN; m * w.rows];
    let run = QuantRun {
        precision: p,
        path,
        threaded,
    };
    matmul(w, x, m, &mut out, w.rows, run).unwrap();
    out
}

/// Every value within `1e-5` of the sum of magnitudes of its f64 reference.
pub(super) fn assert_close(got: &[f32], want: &[(f64, f64)], what: &str) {
    for (k, (&g, &(w, mag))) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(err <= 1e-5 * mag + 1e-30, "{what} {k}: {g} vs {w}");
    }
}

/// Batch 1 and a tile with rows left over, with weight rows fewer than, and not a multiple of, the
/// eight the batch-1 `fast` path combines.
const SHAPES: [(usize, usize, usize); 4] = [(1, 7, 512), (6, 5, 768), (1, 21, 512), (5, 19, 512)];

#[test]
fn every_path_matches_references() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for f in QuantFormat::ALL {
        for (m, rows, cols) in SHAPES {
            let data = random_matrix(f, rows, cols, &mut rng);
            let w = QuantMatrix::new(f, &data, rows, cols).unwrap();
            let x: Vec<f32> = (0..m * cols).map(|_| rng.f32()).collect();
            let mut wf = vec![0f32; rows * cols];
            dequantize(f, &data, &mut wf).unwrap();
            let exact_ref = reference(&wf, &x, m, rows, cols);
            let a = ActQ8::quantize(f, &x, m, cols);
            let xq: Vec<f32> = (0..m * cols)
                .map(|k| a.value(k / f.block_values(), k % f.block_values()))
                .collect();
            let fast_ref = reference(&wf, &xq, m, rows, cols);
            let scalar_fast = run_path(&w, &x, m, Precision::Fast, QuantPath::Scalar);
            for path in QuantPath::available_all() {
                let what = format!("{} {m}x{rows}x{cols} {path:?}", f.name());
                let exact = run_path(&w, &x, m, Precision::Exact, path);
                let fast = run_path(&w, &x, m, Precision::Fast, path);
                assert_close(&exact, &exact_ref, &format!("{what} exact"));
                assert_close(&fast, &fast_ref, &format!("{what} fast"));
                // Integer dots are exact and the f32 scaling is shared: bit-identical.
                assert_eq!(
                    fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    scalar_fast.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    "{what} fast vs scalar"
                );
            }
        }
    }
}

#[test]
fn batched_rows_equal_rows_alone() {
    let mut rng = Rng(77);
    let (m, rows, cols) = (7, 37, 512);
    for f in [QuantFormat::Q4_1, QuantFormat::Q4K, QuantFormat::Q6K] {
        let data = random_matrix(f, rows, cols, &mut rng);
        let w = QuantMatrix::new(f, &data, rows, cols).unwrap();
        let x: Vec<f32> = (0..m * cols).map(|_| rng.f32()).collect();
        for path in QuantPath::available_all() {
            for p in [Precision::Exact, Precision::Fast] {
                let all = run_path(&w, &x, m, p, path);
                let par = run_on(&w, &x, m, p, path, true);
                assert_eq!(par, all, "{f:?} {path:?} {p:?} threaded");
                for i in 0..m {
                    let one = run_path(&w, &x[i * cols..(i + 1) * cols], 1, p, path);
                    assert_eq!(
                        one,
                        all[i * rows..(i + 1) * rows],
                        "{f:?} {path:?} {p:?} row {i}"
                    );
                }
            }
        }
    }
}

/// [`matmul_q8_parts`] on a team of threads (its one-section batch-1 path, and the per-part path
/// from the panel GEMM's rows) equals each part alone on one thread, bit for bit, with the parts'
/// columns side by side and the columns around them untouched.
#[test]
fn parts_in_one_section_equal_parts_alone() {
    let mut rng = Rng(4242);
    let cols = 512;
    // q|k|v of unequal row counts (not multiples of 8), two formats on one quantization (32-value
    // blocks), and a K-quant part with its own.
    let shapes = [
        (QuantFormat::Q5_0, 45),
        (QuantFormat::Q8_0, 13),
        (QuantFormat::Q4_1, 21),
    ];
    let k_shapes = [(QuantFormat::Q4K, 40), (QuantFormat::Q6K, 11)];
    let team = super::super::team::Team::new(2).expect("team");
    for set in [&shapes[..], &k_shapes[..]] {
        let data: Vec<Vec<u8>> = set
            .iter()
            .map(|&(f, rows)| random_matrix(f, rows, cols, &mut rng))
            .collect();
        let ws: Vec<QuantMatrix> = set
            .iter()
            .zip(&data)
            .map(|(&(f, rows), d)| QuantMatrix::new(f, d, rows, cols).unwrap())
            .collect();
        let n: usize = ws.iter().map(|w| w.rows).sum();
        let ld = n + 3;
        for m in [1, 2, 5] {
            let x: Vec<f32> = (0..m * cols).map(|_| rng.f32()).collect();
            let acts: Vec<ActQ8> = ws
                .iter()
                .map(|w| ActQ8::quantize(w.format, &x, m, cols))
                .collect();
            for path in QuantPath::available_all() {
                let mut want = vec![-1f32; m * ld];
                let mut col = 1;
                for (w, a) in ws.iter().zip(&acts) {
                    let run = QuantRun {
                        precision: Precision::Fast,
                        path,
                        threaded: false,
                    };
                    matmul_q8(w, a, &mut want[col..], ld, run).unwrap();
                    col += w.rows;
                }
                let mut col = 1;
                let parts: Vec<Part> = ws
                    .iter()
                    .zip(&acts)
                    .map(|(w, a)| {
                        col += w.rows;
                        Part {
                            w: *w,
                            a,
                            col: col - w.rows,
                        }
                    })
                    .collect();
                let mut got = vec![-1f32; m * ld];
                let run = QuantRun {
                    precision: Precision::Fast,
                    path,
                    threaded: true,
                };
                team.enlist(|| matmul_q8_parts(&parts, &mut got, ld, run))
                    .unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{set:?} m = {m} {path:?}");
            }
        }
    }
    // A part reaching past the output's columns is an error, not a write out of bounds.
    let data = one_block_rows();
    let w = QuantMatrix::new(QuantFormat::Q8_0, &data, 8, 32).unwrap();
    let a = ActQ8::quantize(QuantFormat::Q8_0, &[0.5; 32], 1, 32);
    let run = QuantRun {
        precision: Precision::Fast,
        path: QuantPath::Scalar,
        threaded: true,
    };
    let mut out = vec![0f32; 12];
    assert!(matmul_q8_parts(&[Part { w, a: &a, col: 4 }], &mut out, 12, run).is_ok());
    assert!(matmul_q8_parts(&[Part { w, a: &a, col: 5 }], &mut out, 12, run).is_err());
    assert!(matmul_q8_parts(&[Part { w, a: &a, col: 4 }], &mut out[..11], 12, run).is_err());
}

/// Eight Q8_0 rows of one block (scale 0.01, quants 1).
fn one_block_rows() -> Vec<u8> {
    let mut blk = half::f16::from_f32(0.01).to_le_bytes().to_vec();
    blk.extend([1u8; 32]);
    blk.repeat(8)
}

#[test]
fn bad_shapes_are_errors() {
    let data = vec![0u8; 2 * 144];
    assert!(QuantMatrix::new(QuantFormat::Q4K, &data, 2, 256).is_ok());
    assert!(QuantMatrix::new(QuantFormat::Q4K, &data[1..], 2, 256).is_err());
    assert!(QuantMatrix::new(QuantFormat::Q4K, &data, 1, 512).is_ok());
    assert!(QuantMatrix::new(QuantFormat::Q4K, &data, 2, 255).is_err());
    let w = QuantMatrix::new(QuantFormat::Q4K, &data, 2, 256).unwrap();
    let mut out = [0f32; 2];
    let x = [0f32; 256];
    let r = QuantRun {
        precision: Precision::Exact,
        path: QuantPath::Scalar,
        threaded: false,
    };
    assert!(matmul(&w, &x, 1, &mut out, 2, r).is_ok());
    assert!(matmul(&w, &x[..255], 1, &mut out, 2, r).is_err());
    assert!(matmul(&w, &x, 1, &mut out[..1], 2, r).is_err());
    assert!(matmul(&w, &x, 1, &mut out, 1, r).is_err());
    let a = ActQ8::quantize(QuantFormat::Q8_0, &x, 1, 256);
    assert!(matmul_q8(&w, &a, &mut out, 2, r).is_err());
    assert!(dequantize(QuantFormat::Q4K, &data[..143], &mut [0f32; 256]).is_err());
}

#[test]
fn q8_activations_follow_llama_cpp() {
    // q8_0: d = amax / 127, round half away from zero.
    let mut x = [0f32; 32];
    x[0] = 1.27;
    x[1] = -0.635; // exactly -63.5 steps: rounds away to -64
    x[2] = 0.005;
    let a = ActQ8::quantize(QuantFormat::Q8_0, &x, 1, 32);
    let (q, d, bsum) = a.block(0);
    assert_eq!((q[0], q[1], q[2], d), (127, -64, 1, 1.27f32 / 127.0));
    assert_eq!(bsum[0], 127 - 64 + 1);
    // q8_K: the value of largest magnitude maps to -127 (so negative d when it is positive).
    let mut x = [0f32; 256];
    x[5] = 2.0;
    x[6] = -1.0;
    let a = ActQ8::quantize(QuantFormat::Q4K, &x, 1, 256);
    let (q, d, _) = a.block(0);
    assert_eq!((q[5], q[6], d), (-127, 64, 2.0 / -127.0)); // -63.5 -> 64 (ties to even)
}

#[cfg(target_arch = "x86_64")]
#[test]
fn unpackers_match_the_decoder() {
    fn check<F: blocks::Format>(rng: &mut Rng) {
        for _ in 0..50 {
            let b: Vec<u8> = (0..F::BYTES).map(|_| rng.next() as u8).collect();
            let mut want = [0i8; blocks::QK_K];
            F::quants(&b, &mut want);
            // SAFETY: the CPU has AVX2 (checked by the caller); `F` has an unpacker.
            let got = unsafe { unpack::quants::<F>(&b) };
            let got: Vec<i8> = got
                .iter()
                .flat_map(|v| {
                    // SAFETY: a `__m256i` is 32 bytes.
                    unsafe { std::mem::transmute::<std::arch::x86_64::__m256i, [i8; 32]>(*v) }
                })
                .collect();
            assert_eq!(got[..F::QK], want[..F::QK], "{:?}", F::KIND);
        }
    }
    if !Kernel::Avx2.available() {
        println!("SKIPPED: no AVX2 on this CPU");
        return;
    }
    let mut rng = Rng(5);
    let mut tested = 0;
    for f in QuantFormat::ALL {
        with_format!(f, F => if unpack::has::<F>() {
            check::<F>(&mut rng);
            tested += 1;
        });
    }
    assert_eq!(tested, 8);
}

#[test]
fn f16_scales_convert_exactly() {
    // Every f16 bit pattern, through a Q8_0 block's scale, against `half`.
    let mut b = [0u8; 34];
    for h in 0..=u16::MAX {
        b[..2].copy_from_slice(&h.to_le_bytes());
        let mut dec = blocks::Decoded::default();
        <blocks::Q8_0 as blocks::Format>::scales(&b, &mut dec);
        let want = half::f16::from_bits(h).to_f32();
        assert_eq!(dec.d.to_bits(), want.to_bits(), "f16 {h:#06x}");
    }
}

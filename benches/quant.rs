//! Quantized GEMV microbenchmark: `cargo bench --bench quant [-- FILTER]`.
//!
//! Batch-1 `y = W x` on the quantized blocks in place (`backend::cpu::quant::matmul`), single
//! thread (`RSTAR_BENCH_THREADS=2`: split over the rayon pool), for the Qwen2.5-0.5B shapes
//! (896x896, 4864x896, 896x4864 and the 151936x896 vocabulary) in Q4_K, Q6_K, Q5_0, Q8_0 and Q4_1
//! (the types of the Qwen Q4_K_M and SmolLM2 Q4_1 files), `exact` and `fast`. Each line reports
//! the weight bytes read per second (median of the repeats, and the best) and its fraction of the
//! memory-read limit measured in the same run on the same threads (`bench::read_bandwidth`,
//! sampled between the kernels, over 512 MiB). Weights are copies of a random matrix stacked past
//! 640 MiB, walked in turn, so they come from memory (not the 260 MiB L3 of the test machine) as
//! in a real decode.
//!
//! Then `m`-row matmuls (batch 4 to 32: batched decode; 128 and 512: prefill) on the 896x4864
//! shape: GOP/s (two per multiply-add) and rows per second against batch 1 in the same run. Shapes
//! with 896 columns do not exist in the K formats (not whole 256-value blocks; llama.cpp quantizes
//! those tensors in a fallback type: Q5_0 in Q4_K_M files, Q8_0 for Q6_K).
//!
//! `RSTAR_KERNEL` picks the path (default: the best, with VNNI where the CPU has it);
//! `RSTAR_BENCH_REPEATS` (default 5) the repeats. A FILTER (substring of a line's name) runs only
//! the matching lines.

use std::time::Instant;

use rstar::backend::cpu::quant::{matmul, QuantFormat, QuantMatrix, QuantPath, QuantRun};
use rstar::backend::cpu::{kernel, Precision};
use rstar::bench::machine::{read_bandwidth, read_buffer};

const SHAPES: [(&str, usize, usize); 4] = [
    ("attn 896x896", 896, 896),
    ("mlp up 4864x896", 4864, 896),
    ("mlp down 896x4864", 896, 4864),
    ("vocab 151936x896", 151936, 896),
];
const FORMATS: [QuantFormat; 5] = [
    QuantFormat::Q4K,
    QuantFormat::Q6K,
    QuantFormat::Q5_0,
    QuantFormat::Q8_0,
    QuantFormat::Q4_1,
];

/// Bytes of stacked weight copies a benchmark walks: past the 260 MiB L3 of the test machine.
const STACK: usize = 640 << 20;

/// Copies of a `rows` x `cols` matrix of format `f`, consecutive in `data`, past [`STACK`] bytes.
fn stack(data: &[u8], f: QuantFormat, rows: usize, cols: usize) -> Vec<QuantMatrix<'_>> {
    let mbytes = rows * cols / f.block_values() * f.block_bytes();
    data.chunks_exact(mbytes)
        .take(STACK.div_ceil(mbytes))
        .map(|d| QuantMatrix::new(f, d, rows, cols).expect("shape"))
        .collect()
}

fn random_bytes(n: usize, mut s: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.extend_from_slice(&s.to_le_bytes());
    }
    v.truncate(n);
    v
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Seconds per call of an `m`-row matmul (one sample per repeat), walking the stacked `mats`.
fn seconds_per_call(
    mats: &[QuantMatrix],
    x: &[f32],
    m: usize,
    p: Precision,
    path: QuantPath,
    repeats: usize,
) -> Vec<f64> {
    let rows = mats[0].rows;
    let mut y = vec![0f32; m * rows];
    let mut next = 0;
    let mut call = |y: &mut [f32]| {
        let run = QuantRun {
            precision: p,
            path,
            threaded: threaded(),
        };
        matmul(&mats[next], x, m, y, rows, run).expect("matmul");
        next = (next + 1) % mats.len();
    };
    call(&mut y);
    // Batch 1 and batched decode walk every copy (weights from memory); prefill-sized `m` is
    // compute-bound, three calls per sample.
    let calls = if m >= 128 { 3 } else { mats.len().max(3) };
    let runs = (0..repeats)
        .map(|_| {
            let t0 = Instant::now();
            for _ in 0..calls {
                call(&mut y);
            }
            t0.elapsed().as_secs_f64() / calls as f64
        })
        .collect();
    std::hint::black_box(&y);
    runs
}

/// `m`-row matmuls (batched decode 8 and 32, prefill 128 and 512) on the 896x4864 shape (whole
/// blocks in every format): GOP/s and rows per second against batch 1, in the same run.
fn gemm_lines(data: &[u8], filter: Option<&str>, path: QuantPath, repeats: usize) {
    let (rows, cols) = (896, 4864);
    for f in FORMATS {
        for p in [Precision::Exact, Precision::Fast] {
            let name = format!("gemm {} 896x4864 {p:?}", f.name()).to_lowercase();
            if filter.is_some_and(|s| !name.contains(s)) {
                continue;
            }
            let mats = stack(data, f, rows, cols);
            let t1 = median(seconds_per_call(
                &mats,
                &activations(cols),
                1,
                p,
                path,
                repeats,
            ));
            for m in [4, 8, 16, 32, 128, 512] {
                let x = activations(m * cols);
                let t = median(seconds_per_call(&mats, &x, m, p, path, repeats));
                println!(
                    "{name} m={m:<3} {:7.1} GOP/s, {:5.2}x the rows/s of batch 1",
                    2.0 * (m * rows * cols) as f64 / t / 1e9,
                    m as f64 * t1 / t
                );
            }
        }
    }
}

fn activations(n: usize) -> Vec<f32> {
    (0..n)
        .map(|k| ((k * 7919) % 1000) as f32 / 1e3 - 0.5)
        .collect()
}

/// `RSTAR_BENCH_THREADS=2` (any value but 1): the matmuls split their rows over the rayon pool
/// (`QuantRun::threaded`) and the read limit is measured on that pool.
fn threaded() -> bool {
    std::env::var("RSTAR_BENCH_THREADS").is_ok_and(|v| v != "1")
}

fn read_gb_s(pool: &rayon::ThreadPool) -> f64 {
    let buf = read_buffer(512 << 20);
    let bytes = bytemuck::cast_slice(&buf);
    if threaded() {
        read_bandwidth(bytes)
    } else {
        pool.install(|| read_bandwidth(bytes))
    }
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let filter = filter.as_deref();
    let repeats: usize = std::env::var("RSTAR_BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let path = QuantPath::for_kernel(kernel()).expect("kernel");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let data = random_bytes(STACK + (160 << 20), 0x5EED);
    let mut limits = vec![read_gb_s(&pool)];
    let threads = if threaded() {
        format!("{} threads", rayon::current_num_threads())
    } else {
        "single thread".into()
    };
    println!("path {path:?}, {threads}, {repeats} repeats");
    for (shape, rows, cols) in SHAPES {
        for f in FORMATS {
            for p in [Precision::Exact, Precision::Fast] {
                let name = format!("gemv {} {shape} {p:?}", f.name()).to_lowercase();
                if filter.is_some_and(|s| !name.contains(s)) {
                    continue;
                }
                if !cols.is_multiple_of(f.block_values()) {
                    // As in the real files: llama.cpp stores such tensors in a fallback type.
                    println!(
                        "{name:<44} n/a: {cols} columns are not whole {}-value blocks",
                        f.block_values()
                    );
                    continue;
                }
                let mbytes = rows * cols / f.block_values() * f.block_bytes();
                let mats = stack(&data, f, rows, cols);
                let x = activations(cols);
                let t = seconds_per_call(&mats, &x, 1, p, path, repeats);
                let gb_s: Vec<f64> = t.iter().map(|t| mbytes as f64 / t / 1e9).collect();
                let best = gb_s.iter().copied().fold(0.0, f64::max);
                let gb_s = median(gb_s);
                limits.push(read_gb_s(&pool));
                let limit = median(limits.clone());
                println!(
                    "{name:<44} {:6.2} GB/s (best {:6.2}) = {:5.1}% of {limit:.1} GB/s read",
                    gb_s,
                    best,
                    100.0 * gb_s / limit
                );
            }
        }
    }
    gemm_lines(&data, filter, path, repeats);
}

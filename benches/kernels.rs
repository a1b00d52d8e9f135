//! Kernel microbenchmarks: `cargo bench --bench kernels [-- FILTER]`.
//!
//! Each line is the median of several runs of one kernel on one shape of Qwen2.5-0.5B, reported as
//! a fraction of the machine limit measured in the same run (interleaved with the kernels):
//! - GEMV (`m = 1`, decode): weight bytes per second against the read bandwidth, over a stack of
//!   layers larger than the last-level cache so the weights come from memory as in a real decode;
//! - GEMM (`m > 1`, prefill and batched decode): multiply-adds against the f32 FMA peak, and on
//!   paths with bf16 products the same shapes in `fast` (`... bf16 fast`) against the path's bf16
//!   peak (`vdpbf16ps` on `avx512bf16`, the AMX tiles on `amx`);
//! - attention (causal prefill and single-token decode over a 512-token context): FLOP/s against
//!   the f32 FMA peak;
//! - sampling one token (temperature 1, no top-k/top-p) from a 151936-entry vocabulary: time per
//!   draw against one argmax pass over the same logits, timed in the same run.
//!
//! `RSTAR_KERNEL` picks the path as everywhere else; `RSTAR_BENCH_REPEATS` (default 5) the repeats;
//! `RAYON_NUM_THREADS` the threads (the parallel sections run on a `Compute`'s team, as in a model).
//! A FILTER (substring of a line's name) runs only the matching lines.

use std::time::Instant;

use half::bf16;
use rstar::backend::cpu::rand::rand_vec;
use rstar::backend::cpu::{self, AttnSeq, AttnShape};
use rstar::backend::Weight;
use rstar::bench::machine::{compute_peaks, read_bandwidth};

const HIDDEN: usize = 896;
const INTER: usize = 4864;
const HEADS: usize = 14;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 64;

fn bf16_weight(n: usize, k: usize, seed: u64) -> Weight {
    let v: Vec<bf16> = rand_vec(n * k, seed)
        .into_iter()
        .map(|x| bf16::from_f32(x * 0.02))
        .collect();
    Weight::from_bf16(&v, vec![n, k])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Times `f` `repeats` times (after one warm-up) and returns the (median, fastest) seconds per
/// call. A sample runs `f` back to back for at least 20 ms: a matmul of 32 rows takes a tenth of a
/// millisecond, and timed alone its few samples could all fall inside one passing disturbance (a
/// helper thread descheduled while the kernel released the limits' 512 MiB buffer, say), which
/// showed as a stable 5x slowdown of whichever shape came first. The fastest sample shows what
/// the kernel does when the machine leaves it alone; the median what to expect.
fn time(repeats: usize, mut f: impl FnMut()) -> (f64, f64) {
    let t0 = Instant::now();
    f();
    let once = t0.elapsed().as_secs_f64().max(1e-7);
    let calls = ((0.02 / once).ceil() as usize).clamp(1, 10_000);
    let runs: Vec<f64> = (0..repeats)
        .map(|_| {
            let t0 = Instant::now();
            for _ in 0..calls {
                f();
            }
            t0.elapsed().as_secs_f64() / calls as f64
        })
        .collect();
    let best = runs.iter().copied().fold(f64::INFINITY, f64::min);
    (median(runs), best)
}

struct Limits {
    read_gb_s: Vec<f64>,
    f32_gflop_s: Vec<f64>,
    /// The bf16 peak of the `fast` matmuls: AMX tiles on the `amx` path, else `vdpbf16ps`.
    bf16_gflop_s: Vec<f64>,
}

impl Limits {
    /// Measures both limits once more (called between kernels so they share the machine's state).
    fn sample(&mut self) {
        // A fresh buffer on huge pages, as this benchmark's weights are, released at once.
        let buf = rstar::bench::machine::read_buffer(512 << 20);
        self.read_gb_s
            .push(read_bandwidth(bytemuck::cast_slice(&buf)));
        let (f32_peak, dp, amx) = compute_peaks();
        self.f32_gflop_s.push(f32_peak);
        self.bf16_gflop_s.extend(amx.or(dp));
    }
    fn read(&self) -> f64 {
        median(self.read_gb_s.clone())
    }
    fn flops(&self) -> f64 {
        median(self.f32_gflop_s.clone())
    }
}

fn report(label: &str, gflop_s: f64, best: f64, peak: f64) {
    report_vs(label, gflop_s, best, peak, "f32 FMA peak");
}

fn report_vs(label: &str, gflop_s: f64, best: f64, peak: f64, of: &str) {
    println!(
        "{label:<26} {gflop_s:8.2} GFLOP/s {:5.1}% of {of} (best {best:.2}, {:.1}%)",
        100.0 * gflop_s / peak,
        100.0 * best / peak
    );
}

fn main() {
    // As in a model run: the parallel sections go to the spinning team of a `Compute` (its thread
    // count is rayon's, so `RAYON_NUM_THREADS` sets it). On rayon's pool each section woke a
    // sleeping worker, and a small matmul then timed at half speed in some runs and not in others.
    let compute = match cpu::Compute::new(cpu::precision(), 0, "RAYON_NUM_THREADS") {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    compute.run(run);
}

fn run() {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let repeats: usize = std::env::var("RSTAR_BENCH_REPEATS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let mut lim = Limits {
        read_gb_s: vec![],
        f32_gflop_s: vec![],
        bf16_gflop_s: vec![],
    };
    lim.sample();
    println!(
        "kernel {} | threads {} | read {:.1} GB/s | f32 FMA {:.1} GFLOP/s",
        cpu::kernel().name(),
        rayon::current_num_threads(),
        lim.read(),
        lim.flops()
    );
    let shapes = [
        ("qkv", HIDDEN + 2 * KV_HEADS * HEAD_DIM, HIDDEN),
        ("o", HIDDEN, HIDDEN),
        ("gate_up", 2 * INTER, HIDDEN),
        ("down", HIDDEN, INTER),
    ];

    // GEMV over 6 layers' weights (about 180 MB of bf16, far above the last-level cache).
    if "gemv layer stack m=1 bf16".contains(&filter) {
        let layers: Vec<Vec<Weight>> = (0..6)
            .map(|l| {
                shapes
                    .iter()
                    .enumerate()
                    .map(|(i, &(_, n, k))| bf16_weight(n, k, (l * 10 + i) as u64))
                    .collect()
            })
            .collect();
        let bytes: usize = layers.iter().flatten().map(|w| w.numel() * 2).sum();
        let x = rand_vec(INTER, 7);
        let mut out = vec![0f32; 2 * INTER];
        // On the threads a model run uses (see `Compute::run`).
        let compute = cpu::Compute::new(cpu::Precision::Exact, 0, "threads").unwrap();
        let (s, best) = time(repeats, || {
            compute.run(|| {
                for l in &layers {
                    for w in l {
                        cpu::matmul(&x, 1, w, &mut out, w.shape[0], 0);
                    }
                }
            })
        });
        lim.sample();
        let gb_s = bytes as f64 / s / 1e9;
        println!(
            "gemv layer stack m=1 bf16  {:8.2} GB/s  {:5.1}% of read bandwidth (best {:.2})",
            gb_s,
            100.0 * gb_s / lim.read(),
            bytes as f64 / best / 1e9
        );
    }

    // Every shape in `exact` (against the f32 FMA peak) and, where the path has bf16 products, in
    // `fast` (against its bf16 peak: `vdpbf16ps` on `avx512bf16`, the AMX tiles on `amx`).
    for prec in [cpu::Precision::Exact, cpu::Precision::Fast] {
        let fast = prec == cpu::Precision::Fast;
        if fast && lim.bf16_gflop_s.is_empty() {
            continue;
        }
        let compute = cpu::Compute::new(prec, 0, "precision").unwrap();
        let of = match (fast, cpu::kernel()) {
            (false, _) => "f32 FMA peak",
            (true, cpu::Kernel::Amx) => "AMX bf16 peak",
            _ => "bf16 dot peak",
        };
        for &m in &[4usize, 8, 16, 32, 128, 512] {
            for &(name, n, k) in &shapes {
                let label = format!("gemm {name} m={m} bf16{}", if fast { " fast" } else { "" });
                if !label.contains(&filter) {
                    continue;
                }
                let w = bf16_weight(n, k, 99);
                let x = rand_vec(m * k, 5);
                let mut out = vec![0f32; m * n];
                let (s, best) = time(repeats, || {
                    compute.run(|| cpu::matmul(&x, m, &w, &mut out, n, 0))
                });
                lim.sample();
                let flop = 2.0 * (m * n * k) as f64;
                let peak = if fast {
                    median(lim.bf16_gflop_s.clone())
                } else {
                    lim.flops()
                };
                report_vs(&label, flop / s / 1e9, flop / best / 1e9, peak, of);
            }
        }
    }

    // Attention over one sequence's paged K/V: causal prefill of 512 rows, then one decode row.
    let shape = AttnShape {
        n_heads: HEADS,
        n_kv_heads: KV_HEADS,
        head_dim: HEAD_DIM,
        block_size: 16,
        window: None,
    };
    let ctx = 512;
    let kvd = KV_HEADS * HEAD_DIM;
    let qd = HEADS * HEAD_DIM;
    let k = rand_vec(ctx * kvd, 11);
    let v = rand_vec(ctx * kvd, 12);
    let table: Vec<u32> = (0..(ctx / 16) as u32).rev().collect();
    for (label, start, len) in [
        ("attention prefill 512", 0, ctx),
        ("attention decode ctx 512", ctx - 1, 1),
    ] {
        if !label.contains(&filter) {
            continue;
        }
        let q = rand_vec(len * qd, 13);
        let mut out = vec![0f32; len * qd];
        let seqs = [AttnSeq {
            table: &table,
            start,
            len,
        }];
        let (s, best) = time(repeats, || {
            cpu::attention(&q, &k, &v, &seqs, shape, &mut out)
        });
        lim.sample();
        // Two multiply-adds (QK and PV) per head dim per visible key per head.
        let keys: usize = (start..start + len).map(|p| p + 1).sum();
        let flop = 4.0 * (keys * HEADS * HEAD_DIM) as f64;
        report(label, flop / s / 1e9, flop / best / 1e9, lim.flops());
    }
    let label = "sample vocab 151936 t=1";
    if label.contains(&filter) {
        // Logits spread like a small model's (a few units), so the draw lands deep in the vocabulary.
        let logits: Vec<f32> = rand_vec(151_936, 21).iter().map(|v| v * 6.0).collect();
        let mut sampler = rstar::engine::Sampler::new(rstar::engine::SamplingParams {
            temperature: 1.0,
            seed: 3,
            ..Default::default()
        });
        let mut sink = 0u32;
        let (s, _) = time(repeats * 20, || sink ^= sampler.sample(&logits));
        let (a, _) = time(repeats * 20, || {
            sink ^= rstar::engine::sampling::argmax(std::hint::black_box(&logits))
        });
        println!(
            "{label:<32} {:>8.1} us per draw ({:.1}x one argmax pass){}",
            s * 1e6,
            s / a,
            if sink == u32::MAX { "!" } else { "" }
        );
    }
    println!(
        "limits (medians over the run): read {:.1} GB/s, f32 FMA {:.1} GFLOP/s",
        lim.read(),
        lim.flops()
    );
}

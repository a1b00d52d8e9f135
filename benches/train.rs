//! Training benchmarks: `cargo bench --bench train -- speed|rss`.
//!
//! * `speed`: one LoRA (rank 16, every projection) forward + backward on the Qwen2.5-0.5B shape
//!   (random weights, 512 tokens, loss on every position), as tokens/s and as a fraction of the f32
//!   FMA peak measured in the same run, next to the inference GEMM (`cpu::matmul`, bf16 weights,
//!   the MLP's gate/up shape, 512 rows) and the training GEMM (`train::ops::gemm`, f32) on the same
//!   shape. FLOPs count what is computed: the forward, plus the backward's input gradients (about
//!   one forward again: frozen weights get no gradient) and the attention backward.
//! * `rss`: peak resident memory of one SFT forward + backward on one sequence of 1k, 2k, 4k and 8k
//!   tokens, with and without gradient checkpointing, on a small random Qwen2 shape (hidden 256,
//!   8 layers, 4 heads, 2 KV heads, MLP 1024, vocabulary 8192, LoRA rank 8). Each point runs in a
//!   child process of this binary so its peak (`VmHWM`) is its own.
//!
//! `RAYON_NUM_THREADS` sets the threads. The machine may be shared: rerun and compare medians.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use half::bf16;
use rstar::backend::cpu::rand::rand_vec;
use rstar::backend::cpu::{self, Compute, Precision};
use rstar::backend::Weight;
use rstar::bench::machine::compute_peaks;
use rstar::bench::shapes::Qwen2Shape;
use rstar::model::{ModelConfig, WeightStore};
use rstar::train::init::{init_weights, InitConfig};
use rstar::train::ops::{gemm, Mat};
use rstar::train::{LoraSpec, Objective, Packed, TrainModel};

/// The Qwen2.5-0.5B shape of the speed benchmark.
fn qwen05b() -> Qwen2Shape {
    Qwen2Shape::named("qwen2.5-0.5b").expect("a known shape")
}

const SMALL: Qwen2Shape = Qwen2Shape {
    hidden: 256,
    layers: 8,
    heads: 4,
    kv_heads: 2,
    inter: 1024,
    vocab: 8192,
};

/// A random-weight tied Qwen2 model of `s` with LoRA of `rank` on every projection.
fn model(s: &Qwen2Shape, rank: usize) -> TrainModel {
    let ic = InitConfig {
        vocab_size: s.vocab,
        hidden_size: s.hidden,
        num_layers: s.layers,
        num_heads: s.heads,
        num_kv_heads: s.kv_heads,
        intermediate_size: s.inter,
        max_position_embeddings: 32768,
        ..InitConfig::default()
    };
    let cfg = s.config_json();
    let config = ModelConfig::from_json(&cfg, Path::new("bench")).unwrap();
    // Stored in bf16 (as the real checkpoint), so the f32 copy training makes is the big one.
    let weights: HashMap<String, Weight> = init_weights(&ic, s.vocab)
        .into_iter()
        .map(|(n, shape, v)| {
            let b: Vec<bf16> = v.iter().map(|&x| bf16::from_f32(x)).collect();
            (n, Weight::from_bf16(&b, shape))
        })
        .collect();
    let store = WeightStore::from_weights(Path::new("bench"), weights);
    let mut m = TrainModel::from_store(config, &store).unwrap();
    drop(store);
    m.add_lora(LoraSpec::all_projections(rank), 1).unwrap();
    m
}

/// One sequence of `t` random tokens with the loss on every next token.
fn batch(t: usize, vocab: usize) -> (Packed, Objective) {
    let ids: Vec<u32> = rand_vec(t, 7)
        .iter()
        .map(|x| ((x.abs() * 1e6) as usize % vocab) as u32)
        .collect();
    let mut p = Packed::default();
    p.push_sequence(&ids);
    let targets: Vec<(usize, u32)> = (0..t - 1).map(|i| (i, ids[i + 1])).collect();
    let weight = 1.0 / targets.len() as f32;
    (p, Objective::Lm { targets, weight })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn vm_hwm_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// User + system CPU seconds of this process so far (all threads): less sensitive than wall time
/// to other processes on the machine.
fn cpu_seconds() -> f64 {
    // SAFETY: `getrusage` fills the zeroed struct it is given and reads nothing else.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn speed() {
    let peak = || compute_peaks().0;
    let mut peaks = vec![peak()];
    let q = qwen05b();
    let (m, n, k) = (512, 2 * q.inter, q.hidden);
    let flop = 2.0 * (m * n * k) as f64;
    let wb: Vec<bf16> = rand_vec(n * k, 3)
        .iter()
        .map(|&x| bf16::from_f32(x * 0.02))
        .collect();
    let w = Weight::from_bf16(&wb, vec![n, k]);
    let wf: Vec<f32> = wb.iter().map(|x| x.to_f32()).collect();
    let x = rand_vec(m * k, 5);
    let mut out = vec![0f32; m * n];
    let mut inf = Vec::new();
    let mut trn = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        cpu::matmul(&x, m, &w, &mut out, n, 0);
        inf.push(flop / t0.elapsed().as_secs_f64() / 1e9);
        let t0 = Instant::now();
        gemm(m, k, n, Mat::rows(&x, k), Mat::t(&wf, k), 0.0, &mut out, n);
        trn.push(flop / t0.elapsed().as_secs_f64() / 1e9);
    }
    peaks.push(peak());
    let t = 512;
    let tm = model(&q, 16);
    let (p, obj) = batch(t, q.vocab);
    let fwd = tm.forward_fmas(&p, t - 1);
    // Forward, input-gradient backward (frozen weights: no weight gradients), attention's extra
    // backward pass: counted as 2x the forward plus LoRA's small products (not counted).
    let work = 2.0 * 2.0 * fwd;
    let mut steps = Vec::new();
    let mut cpu = Vec::new();
    for i in 0..3 {
        let mut g = tm.new_grads();
        let (t0, c0) = (Instant::now(), cpu_seconds());
        tm.forward_backward(&p, &obj, &mut g).unwrap();
        let (s, c) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
        if i > 0 {
            steps.push(s);
            cpu.push(c);
        }
        peaks.push(peak());
    }
    let pk = median(peaks);
    let s = median(steps);
    println!("f32 FMA peak (median of the run): {pk:.1} GFLOP/s");
    let pct = |g: f64| 100.0 * g / pk;
    let (gi, gt) = (median(inf), median(trn));
    println!(
        "inference GEMM cpu::matmul bf16 {m}x{n}x{k}: {gi:.1} GFLOP/s ({:.1}% of peak)",
        pct(gi)
    );
    println!(
        "training GEMM train::ops::gemm f32 {m}x{n}x{k}: {gt:.1} GFLOP/s ({:.1}% of peak)",
        pct(gt)
    );
    let gf = work / s / 1e9;
    println!(
        "train step qwen2.5-0.5b LoRA r16, {t} tokens: {s:.2} s, {:.0} tokens/s, {gf:.1} GFLOP/s ({:.1}% of peak); 6N-convention {:.1} GFLOP/s",
        t as f64 / s,
        pct(gf),
        3.0 * 2.0 * fwd / s / 1e9
    );
    let (c, threads) = (median(cpu), rayon::current_num_threads().max(1));
    let gc = work / c / 1e9;
    println!(
        "train step CPU time (getrusage, {threads} threads): {c:.2} s, {gc:.1} GFLOP per CPU-second ({:.1}% of the per-thread peak {:.1} GFLOP/s)",
        100.0 * gc * threads as f64 / pk,
        pk / threads as f64
    );
}

fn rss_one(t: usize, checkpointing: bool) {
    let mut tm = model(&SMALL, 8);
    tm.checkpointing = checkpointing;
    let (p, obj) = batch(t, SMALL.vocab);
    let base = vm_hwm_mib();
    let mut g = tm.new_grads();
    let t0 = Instant::now();
    let loss = tm.forward_backward(&p, &obj, &mut g).unwrap();
    println!(
        "seq {t:5} checkpointing {:5}: peak RSS {:7.1} MiB (model + batch {base:6.1} MiB), {:.1} s, loss {loss:.3}",
        checkpointing,
        vm_hwm_mib(),
        t0.elapsed().as_secs_f64()
    );
}

fn rss() {
    let exe = std::env::current_exe().unwrap();
    for t in [1024, 2048, 4096, 8192] {
        for ck in [false, true] {
            let st = std::process::Command::new(&exe)
                .args(["rss-one", &t.to_string(), &ck.to_string()])
                .status()
                .unwrap();
            assert!(st.success());
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let compute = Compute::new(Precision::Exact, 0, "RAYON_NUM_THREADS").unwrap();
    compute.run(|| match args.first().map(String::as_str) {
        Some("speed") => speed(),
        Some("rss") => rss(),
        Some("rss-one") => rss_one(args[1].parse().unwrap(), args[2] == "true"),
        _ => {
            speed();
            rss();
        }
    });
}

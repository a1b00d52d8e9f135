//! Training throughput (forward + backward + SGD) as a fraction of the machine's f32 FMA roofline.
//!
//! `cargo run --release --example train_throughput [hidden] [layers] [seq]` builds a random
//! Llama-shaped model (default hidden 512, 4 layers, vocab 4096), trains a few SFT steps on random
//! tokens, and prints tokens/s, achieved multiply-adds/s (forward counted once, backward twice) and
//! the peak measured in the same run with AVX2 FMA loops on every thread.

use std::time::Instant;

use rayon::prelude::*;
use rstar::data::training::SftExample;
use rstar::model::layout::{LayerLayout, EMBED, FINAL_NORM, LM_HEAD};
use rstar::model::ModelConfig;
use rstar::train::checkpoint::write_safetensors;
use rstar::train::optim::OptimizerKind;
use rstar::train::{TrainConfig, Trainer};

/// FMAs per second of one thread running 10 independent 8-wide FMA chains.
#[cfg(target_arch = "x86_64")]
fn fma_peak_thread(iters: u64) -> f64 {
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run(iters: u64) -> f32 {
        use std::arch::x86_64::*;
        let mut acc = [_mm256_set1_ps(0.0); 10];
        let a = _mm256_set1_ps(0.999_999);
        let b = _mm256_set1_ps(1e-7);
        for _ in 0..iters {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let mut out = [0f32; 8];
        let mut s = _mm256_set1_ps(0.0);
        for x in acc {
            s = _mm256_add_ps(s, x);
        }
        _mm256_storeu_ps(out.as_mut_ptr(), s);
        out.iter().sum()
    }
    if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
        return 0.0;
    }
    let t = Instant::now();
    // SAFETY: the features were detected above.
    let r = unsafe { run(iters) };
    std::hint::black_box(r);
    (iters * 80) as f64 / t.elapsed().as_secs_f64()
}

#[cfg(not(target_arch = "x86_64"))]
fn fma_peak_thread(_iters: u64) -> f64 {
    0.0
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (hidden, layers, seq) = (
        args.first().copied().unwrap_or(512),
        args.get(1).copied().unwrap_or(4),
        args.get(2).copied().unwrap_or(256),
    );
    let threads = rayon::current_num_threads();
    let peak: f64 = (0..threads)
        .into_par_iter()
        .map(|_| fma_peak_thread(50_000_000))
        .sum();

    let dir = tempfile::tempdir().expect("tempdir");
    let (vocab, inter, heads) = (4096usize, hidden * 8 / 3 / 64 * 64, hidden / 64);
    let cfg = serde_json::json!({"model_type": "llama", "vocab_size": vocab, "hidden_size": hidden,
        "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": heads / 2, "rms_norm_eps": 1e-6, "tie_word_embeddings": false,
        "max_position_embeddings": 4096});
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).expect("config");
    let mc = ModelConfig::from_json(&cfg, &dir.path().join("config.json")).expect("config");
    let mut rng = 1u64;
    let mut rand = |n: usize, s: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * s
            })
            .collect()
    };
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = vec![
        (EMBED.into(), vec![vocab, hidden], rand(vocab * hidden, 0.1)),
        (
            LM_HEAD.into(),
            vec![vocab, hidden],
            rand(vocab * hidden, 0.1),
        ),
        (FINAL_NORM.into(), vec![hidden], vec![1.0; hidden]),
    ];
    for i in 0..layers {
        let l = LayerLayout::new(&mc, i);
        tensors.push((l.attn_norm.clone(), vec![hidden], vec![1.0; hidden]));
        tensors.push((l.mlp_norm.clone(), vec![hidden], vec![1.0; hidden]));
        for lin in l.linears() {
            for (n, rows) in &lin.parts {
                let s = 1.0 / (lin.in_dim as f32).sqrt();
                tensors.push((
                    format!("{n}.weight"),
                    vec![*rows, lin.in_dim],
                    rand(rows * lin.in_dim, s),
                ));
            }
        }
    }
    let refs: Vec<_> = tensors
        .iter()
        .map(|(n, s, v)| (n.clone(), s.clone(), &v[..]))
        .collect();
    write_safetensors(&dir.path().join("model.safetensors"), &refs, None).expect("weights");
    drop(tensors);

    let tc = TrainConfig {
        optimizer: OptimizerKind::Sgd,
        lr: 1e-3,
        batch_size: 4,
        seq_len: 2 * seq,
        shuffle: false,
        save_every: None,
        ..TrainConfig::default()
    };
    let mut t = Trainer::new(dir.path(), tc).expect("trainer");
    let examples = (0..16)
        .map(|k| {
            let ids: Vec<u32> = (0..seq)
                .map(|j| ((j * 7919 + k * 31) % vocab) as u32)
                .collect();
            let mut target = vec![true; seq];
            target[..seq / 4].iter_mut().for_each(|x| *x = false);
            SftExample { ids, target }
        })
        .collect();
    t.set_sft_examples(examples);
    t.step().expect("warm-up step");
    let fma0 = t.fmas_done();
    let start = Instant::now();
    let mut tokens = 0u64;
    for _ in 0..2 {
        let p = t.step().expect("step").expect("not finished");
        tokens = p.tokens;
    }
    let secs = start.elapsed().as_secs_f64();
    let fmas = t.fmas_done() - fma0;
    let step_tokens = 2.0 * 4.0 * seq as f64;
    let rate = fmas / secs;
    println!(
        "model: hidden {hidden}, {layers} layers, inter {inter}, vocab {vocab}; {} params; {threads} threads",
        t.model.params.iter().map(|p| p.value.len()).sum::<usize>()
    );
    println!(
        "train: {:.0} tokens/s (forward+backward+SGD), {:.2} GFMA/s ({} tokens total)",
        step_tokens / secs,
        rate / 1e9,
        tokens
    );
    if peak > 0.0 {
        println!(
            "peak: {:.2} GFMA/s (AVX2 FMA, {threads} threads) -> {:.1}% of the FMA roofline",
            peak / 1e9,
            100.0 * rate / peak
        );
    } else {
        println!("peak: no AVX2/FMA on this CPU");
    }
}

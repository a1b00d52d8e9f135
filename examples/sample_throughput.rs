//! Per-token cost of the work between two forward passes: one `Sampler::sample` call on a
//! vocabulary-sized logit row, and one incremental detokenisation step.
//!
//! `cargo run --release --example sample_throughput [model_dir] [vocab]` times the sampler on
//! random rows of `vocab` logits (default 151936, Qwen2.5's) for a flat row (a random model: top-p
//! keeps most of the vocabulary) and a peaked one (a trained model: top-p keeps a few ids), then,
//! when `model_dir` has a tokenizer.json, times `Tokenizer::stream` pushing random ids.

use std::path::Path;
use std::time::Instant;

use rstar::engine::{Sampler, SamplingParams};
use rstar::rng::Rng;
use rstar::tokenizer::Tokenizer;

/// Approximately normal logits (sum of four uniforms), scaled by `scale`.
fn logits(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let s: f64 = (0..4).map(|_| rng.next_f64() - 0.5).sum();
            s as f32 * scale
        })
        .collect()
}

fn time_sampler(name: &str, row: &[f32], params: SamplingParams) {
    let mut s = Sampler::new(params);
    let reps = 50;
    s.sample(row);
    let t = Instant::now();
    let mut acc = 0u64;
    for _ in 0..reps {
        acc = acc.wrapping_add(s.sample(row) as u64);
    }
    let per = t.elapsed().as_secs_f64() / reps as f64;
    println!(
        "sample {name:<34} T={} top_k={:<3} top_p={:<4}: {:8.3} ms/call (checksum {acc})",
        params.temperature,
        params.top_k,
        params.top_p,
        per * 1e3
    );
}

fn main() -> rstar::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let vocab: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(151_936);
    let mut rng = Rng::new(1);
    let flat = logits(&mut rng, vocab, 2.0);
    let peaked = logits(&mut rng, vocab, 30.0);
    for (name, row) in [("flat (random model)", &flat), ("peaked", &peaked)] {
        for (t, k, p) in [
            (0.0, 0, 1.0),
            (1.0, 0, 1.0),
            (1.0, 0, 0.95),
            (0.9, 50, 0.95),
        ] {
            let params = SamplingParams {
                temperature: t,
                top_k: k,
                top_p: p,
                seed: 7,
            };
            time_sampler(name, row, params);
        }
    }
    if let Some(dir) = args.get(1) {
        let tok = Tokenizer::from_dir(Path::new(dir))?;
        let n = tok.vocab_size() as u64;
        let mut stream = tok.stream();
        let tokens = 64;
        let t = Instant::now();
        let mut bytes = 0;
        for _ in 0..tokens {
            let id = (rng.next_u64() % n) as u32;
            if let Some(d) = stream.push(id)? {
                bytes += d.len();
            }
        }
        let per = t.elapsed().as_secs_f64() / tokens as f64;
        println!(
            "stream decode ({dir}, vocab {n}): {:8.3} ms/token ({bytes} bytes)",
            per * 1e3
        );
    }
    Ok(())
}

//! The CPU decode hot path allocates nothing once its buffers have grown: a counting global
//! allocator watches the decoder's forward passes, the LM head and sampling over many decode steps
//! of a batch (both the threaded and the packed-weight GEMM paths run at this size).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rstar::backend::cpu::{Compute, KvDtype, Precision};
use rstar::engine::{LoadedModel, Sampler, SamplingParams};
use rstar::model::{Model, SeqChunk};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to the system allocator with the caller's arguments unchanged; the
// counter has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as is (the caller upholds `alloc`'s contract).
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Held by each test: the counter is process-wide, so another test's allocations would count.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn decode_steps_allocate_nothing_once_warm() {
    // Two threads, as a run of the CLI or the C API uses them: a pool and the spinning team that
    // serves the forward pass's parallel sections.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let compute = Compute::new(Precision::Exact, 2, "threads").unwrap();
    for name in ["qwen2-bf16-v5", "llama-f32-v5", "phi3-f16-v5"] {
        let lm = LoadedModel::load(&common::fixtures().join("models").join(name)).unwrap();
        check_steps(&lm.model, &compute, 16, name);
    }
}

/// The quantized `fast` path on the real SmolLM2-135M Q4_1 file: batch 1 and 2 (where a matmul's
/// parts share one parallel section) and 8 (the int8 panel GEMM).
#[test]
fn quantized_decode_steps_allocate_nothing_once_warm() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(dir) = common::asset(&rstar::assets::SMOLLM2) else {
        return;
    };
    let compute = Compute::new(Precision::Fast, 2, "threads").unwrap();
    let lm = LoadedModel::load(&dir.join(rstar::assets::SMOLLM2_FILE)).unwrap();
    for seqs in [1, 2, 8] {
        check_steps(
            &lm.model,
            &compute,
            seqs,
            &format!("SmolLM2 Q4_1, {seqs} sequences"),
        );
    }
}

/// Decode steps of `seqs` sequences (after an 8-token prompt each), the allocations of the second
/// pass of 24 steps counted: at most 4, in at most 2 steps.
fn check_steps(model: &Model, compute: &Compute, seqs: usize, name: &str) {
    let vocab = model.config.vocab_size as u32;
    // `seqs` sequences of 8 prompt tokens, each owning 4 blocks of 16 positions.
    let (block, prompt, steps) = (16usize, 8usize, 24usize);
    let mut kv = model.new_kv_store(block, seqs * 4, KvDtype::F32).unwrap();
    let tables: Vec<Vec<u32>> = (0..seqs)
        .map(|s| (0..4).map(|b| (s * 4 + b) as u32).collect())
        .collect();
    let mut samplers: Vec<Sampler> = (0..seqs)
        .map(|s| {
            Sampler::new(SamplingParams {
                temperature: 0.8,
                top_k: 20,
                top_p: 0.9,
                seed: s as u64,
            })
        })
        .collect();
    let (mut tokens, mut hidden, mut logits) = (Vec::new(), Vec::new(), Vec::new());
    let mut chunks: Vec<SeqChunk> = Vec::with_capacity(seqs);
    let mut next: Vec<u32> = (0..seqs as u32).map(|s| (s * 7 + 1) % vocab).collect();
    let mut counted = Vec::new();
    compute.run(|| {
        // Prefill of every prompt in one pass.
        tokens.extend((0..seqs * prompt).map(|i| (i as u32 * 13 + 5) % vocab));
        chunks.extend(tables.iter().map(|t| SeqChunk {
            table: t,
            start: 0,
            len: prompt,
        }));
        model
            .forward_batch_into(&tokens, &chunks, &mut kv, &mut hidden)
            .unwrap();
        // Two passes of the same decode steps (the second rewrites the same KV rows): the
        // first grows the buffers to their sizes; the second must not allocate.
        for pass in 0..2 {
            for step in 0..steps {
                let before = ALLOCATIONS.load(Ordering::Relaxed);
                tokens.clear();
                tokens.extend_from_slice(&next);
                chunks.clear();
                chunks.extend(tables.iter().map(|t| SeqChunk {
                    table: t,
                    start: prompt + step,
                    len: 1,
                }));
                model
                    .forward_batch_into(&tokens, &chunks, &mut kv, &mut hidden)
                    .unwrap();
                model.logits_into(&hidden, &mut logits).unwrap();
                for (s, sampler) in samplers.iter_mut().enumerate() {
                    let v = vocab as usize;
                    next[s] = sampler.sample(&logits[s * v..(s + 1) * v]);
                }
                if pass == 1 {
                    counted.push(ALLOCATIONS.load(Ordering::Relaxed) - before);
                }
            }
        }
    });
    // Per-thread scratch (packed weights, attention scores) grows the first time its thread
    // meets a shape, and which worker steals which chunk is up to the scheduler: a worker may
    // meet its first packed chunk only in the second pass. That is at most a few allocations
    // per thread for the whole run; anything allocated per token would show in every step.
    let total: usize = counted.iter().sum();
    assert!(
        total <= 4 && counted.iter().filter(|&&n| n > 0).count() <= 2,
        "{name}: allocations per decode step {counted:?}"
    );
    assert!(next.iter().all(|&t| t < vocab));
}

//! The tree engine against a reference that recomputes every sequence from scratch: forked, batched,
//! evicted and reused paths must give the same logits and tokens as one sequence run alone.

mod common;

use std::sync::Arc;

use rstar::backend::cpu::KvDtype;
use rstar::engine::{
    generate, Engine, EngineConfig, GenerateParams, LoadedModel, Request, SamplingParams, SeqId,
};
use rstar::rng::Rng;

fn lm(name: &str) -> Arc<LoadedModel> {
    Arc::new(LoadedModel::load(&common::fixtures().join("models").join(name)).unwrap())
}

/// Logits of the last token, computed alone from scratch.
fn reference(lm: &LoadedModel, tokens: &[u32]) -> Vec<f32> {
    let mut cache = lm.model.new_cache();
    lm.model.forward(tokens, &mut cache, false).unwrap()
}

#[test]
fn random_fork_append_drop_evict_matches_recompute() {
    let mut cow = 0;
    for (name, budget_blocks, block_size) in [
        ("qwen2-f32-v5", 24, 4),
        ("mistral-bf16-legacy", 40, 16),
        ("phi3-f16-v5", 30, 2),
    ] {
        let lm = lm(name);
        let probe = lm.model.kv_bytes_per_block(block_size, KvDtype::F32);
        let mut eng = Engine::new(
            lm.clone(),
            EngineConfig {
                block_size,
                kv_budget_bytes: budget_blocks * probe,
                max_batch_tokens: 7, // forces chunked prefill mixed with decode tokens
                max_active: 4,
                kv_dtype: KvDtype::F32,
            },
        )
        .unwrap();
        let mut rng = Rng::new(99);
        let mut live: Vec<SeqId> = Vec::new();
        let prompts: Vec<Vec<u32>> = (0..3)
            .map(|p| {
                (0..9 + p * 5)
                    .map(|i| ((i * 31 + p * 7) % 380) as u32 + 1)
                    .collect()
            })
            .collect();
        let mut checked = 0;
        for step in 0..240 {
            let r = rng.next_u64() % 11;
            let res = (|| -> rstar::Result<()> {
                if live.is_empty() || r < 2 {
                    // New sequence from a known prompt (prefix reuse) plus a random tail.
                    let mut t = prompts[(rng.next_u64() % 3) as usize].clone();
                    t.truncate(3 + (rng.next_u64() % t.len() as u64) as usize);
                    live.push(eng.add(&t)?);
                } else if r < 4 {
                    let p = live[(rng.next_u64() as usize) % live.len()];
                    live.push(eng.fork(p)?);
                } else if r < 7 {
                    let s = live[(rng.next_u64() as usize) % live.len()];
                    let n = 1 + rng.next_u64() % 6;
                    let toks: Vec<u32> = (0..n).map(|_| (rng.next_u64() % 384) as u32).collect();
                    if eng.tokens(s)?.len() + toks.len() < 200 {
                        eng.append(s, &toks)?;
                    }
                } else if r < 8 && live.len() > 1 {
                    let i = (rng.next_u64() as usize) % live.len();
                    eng.remove(live.swap_remove(i))?;
                } else if r == 10 {
                    // Cut back (possibly into a cached or shared block) and branch from there.
                    let s = live[(rng.next_u64() as usize) % live.len()];
                    let len = eng.tokens(s)?.len();
                    eng.truncate(s, 1 + (rng.next_u64() as usize) % len)?;
                } else {
                    // Compute a random subset together and compare with from-scratch logits.
                    let k = 1 + (rng.next_u64() as usize) % live.len().min(4);
                    let mut ids: Vec<SeqId> = (0..k)
                        .map(|_| live[(rng.next_u64() as usize) % live.len()])
                        .collect();
                    ids.sort();
                    ids.dedup();
                    let got = eng.logits(&ids)?;
                    for (id, g) in ids.iter().zip(got) {
                        let want = reference(&lm, eng.tokens(*id)?);
                        assert_eq!(g, want, "{name} step {step}: sequence {} differs", id.0);
                        checked += 1;
                    }
                }
                Ok(())
            })();
            if let Err(e) = res {
                // Running out of blocks with too many live sequences is allowed: drop one and go on.
                assert!(matches!(e, rstar::Error::OutOfMemory(_)), "{e}");
                let i = (rng.next_u64() as usize) % live.len();
                eng.remove(live.swap_remove(i)).unwrap();
            }
        }
        let st = eng.stats();
        println!("{name}: {checked} checks, stats {st:?}");
        assert!(checked > 20);
        assert!(st.cache_hit_tokens > 0, "prefix reuse exercised");
        assert!(st.blocks.blocks_evicted > 0, "eviction exercised");
        cow += st.blocks.copy_on_write;
    }
    assert!(cow > 0, "copy-on-write exercised");
}

#[test]
fn expand_and_batched_run_equal_solo_generation() {
    let lm = lm("llama-f32-v5");
    let prompt: Vec<u32> = (1..30).collect();
    let params = GenerateParams {
        max_new_tokens: 10,
        sampling: SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.9,
            seed: 5,
        },
        ignore_eos: true,
        ..Default::default()
    };
    let mut eng = Engine::new(lm.clone(), EngineConfig::default()).unwrap();
    let root = eng.add(&prompt).unwrap();
    let cands = eng.expand(root, 6, &params).unwrap();
    assert_eq!(cands.len(), 6);
    for (i, c) in cands.iter().enumerate() {
        let mut p = params.clone();
        p.sampling.seed += i as u64;
        let solo = generate(&lm, &prompt, &p, &mut |_| true).unwrap();
        assert_eq!(c.output.ids, solo.ids, "candidate {i}");
        assert_eq!(eng.tokens(c.seq).unwrap()[prompt.len()..], solo.ids[..]);
    }
    // Greedy continuations of the candidates, batched with continuous batching (max_active 2).
    let mut eng2 = Engine::new(
        lm.clone(),
        EngineConfig {
            max_active: 2,
            ..EngineConfig::default()
        },
    )
    .unwrap();
    let greedy = GenerateParams {
        max_new_tokens: 5,
        ignore_eos: true,
        ..Default::default()
    };
    let mut reqs: Vec<Request> = Vec::new();
    for c in &cands {
        let seq = eng2.add(eng.tokens(c.seq).unwrap()).unwrap();
        eng2.compute(&[seq]).unwrap(); // so later prompts find its blocks cached
        reqs.push(Request {
            seq,
            params: greedy.clone(),
        });
    }
    let outs = eng2.run(&reqs, &mut |_, _| true).unwrap();
    for (c, o) in cands.iter().zip(&outs) {
        let solo = generate(&lm, eng.tokens(c.seq).unwrap(), &greedy, &mut |_| true).unwrap();
        assert_eq!(o.ids, solo.ids);
    }
    // The shared prompt was computed once across the 6 children; the second engine reused
    // the prompt's full blocks for all but the first request.
    let st = eng.stats();
    assert!(
        st.tokens_computed < (prompt.len() + 6 * 10) as u64,
        "{st:?}"
    );
    assert!(
        eng2.stats().cache_hit_tokens >= 5 * 16,
        "{:?}",
        eng2.stats()
    );
}

/// Forward passes run concurrently on a rayon pool of 8 threads (a caller's own parallel loop): a
/// thread that waits inside one pass's parallel matmul may run another pass meanwhile (work
/// stealing). The nested pass must neither trip over the per-thread scratch of the outer one (with
/// a plain `borrow_mut` this panicked in 20 runs of 20) nor change its numbers: every result equals
/// the same pass run alone.
#[test]
fn forwards_nested_by_work_stealing_match_alone() {
    use rayon::prelude::*;
    for name in ["qwen2-f32-v5", "llama-bf16-v5"] {
        let lm = lm(name);
        let prompts: Vec<Vec<u32>> = (0..48)
            .map(|p| {
                (0..60 + p)
                    .map(|i| ((i * 17 + p * 5) % 300) as u32 + 1)
                    .collect()
            })
            .collect();
        let want: Vec<Vec<f32>> = prompts.iter().map(|t| reference(&lm, t)).collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(8)
            .build()
            .unwrap();
        let got: Vec<Vec<f32>> =
            pool.install(|| prompts.par_iter().map(|t| reference(&lm, t)).collect());
        assert!(
            got == want,
            "{name}: a nested forward pass changed a result"
        );
    }
}

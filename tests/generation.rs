//! Generation behaviour: seeds, stop strings across token boundaries, stop ids, EOS, length, streaming.

mod common;

use std::sync::Arc;

use rstar::engine::{generate, FinishReason, GenerateParams, LoadedModel, SamplingParams};

fn lm() -> Arc<LoadedModel> {
    Arc::new(LoadedModel::load(&common::fixtures().join("models/qwen2-f32-v5")).unwrap())
}

fn sampled(seed: u64) -> GenerateParams {
    GenerateParams {
        max_new_tokens: 24,
        sampling: SamplingParams {
            temperature: 0.9,
            top_k: 50,
            top_p: 0.95,
            seed,
        },
        ignore_eos: true,
        ..Default::default()
    }
}

#[test]
fn same_seed_same_output_different_seed_differs() {
    let lm = lm();
    let prompt = [10, 20, 30];
    let a = generate(&lm, &prompt, &sampled(7), &mut |_| true).unwrap();
    let b = generate(&lm, &prompt, &sampled(7), &mut |_| true).unwrap();
    let c = generate(&lm, &prompt, &sampled(8), &mut |_| true).unwrap();
    assert_eq!(a.ids, b.ids);
    assert_ne!(a.ids, c.ids);
    assert_eq!(a.finish_reason, FinishReason::Length);
    assert_eq!(a.ids.len(), 24);
}

#[test]
fn stop_string_spanning_tokens_cuts_text() {
    let lm = lm();
    let tok = lm.tokenizer().unwrap();
    let prompt = [10, 20, 30];
    let free = generate(&lm, &prompt, &sampled(3), &mut |_| true).unwrap();
    // Choose a stop string that straddles the boundary between two generated tokens.
    let mut cut = None;
    for i in 1..free.ids.len() {
        let left = tok.decode(&free.ids[..i], false).unwrap();
        let right = tok.decode(&free.ids[..i + 1], false).unwrap();
        if left.len() >= 2
            && right.len() > left.len() + 1
            && right.is_char_boundary(left.len() + 1)
            && right.is_char_boundary(left.len() - 1)
        {
            cut = Some((
                left.len() - 1,
                right[left.len() - 1..left.len() + 1].to_string(),
                i + 1,
            ));
            break;
        }
    }
    let (pos, stop, n_ids) = cut.expect("a two-token boundary");
    let mut params = sampled(3);
    params.stop = vec![stop.clone()];
    let mut streamed = String::new();
    let out = generate(&lm, &prompt, &params, &mut |s| {
        streamed.push_str(s);
        true
    })
    .unwrap();
    assert_eq!(out.finish_reason, FinishReason::Stop);
    assert_eq!(out.stop_string.as_deref(), Some(stop.as_str()));
    let full = tok.decode(&free.ids, false).unwrap();
    let first = full.find(&stop).unwrap();
    assert!(first <= pos);
    assert_eq!(out.text, full[..first]);
    assert_eq!(
        streamed, out.text,
        "streamed text never shows the stop string"
    );
    assert!(out.ids.len() <= n_ids);
    assert_eq!(out.ids[..], free.ids[..out.ids.len()]);
}

#[test]
fn stop_ids_eos_and_cancel() {
    let lm = lm();
    let prompt = [10, 20, 30];
    let free = generate(&lm, &prompt, &sampled(5), &mut |_| true).unwrap();
    let mut p = sampled(5);
    p.stop_token_ids = vec![free.ids[3]];
    let out = generate(&lm, &prompt, &p, &mut |_| true).unwrap();
    let first = free.ids.iter().position(|&t| t == free.ids[3]).unwrap();
    assert_eq!(out.ids, free.ids[..=first]);
    assert_eq!(out.finish_reason, FinishReason::Stop);

    let mut lm2 = Arc::try_unwrap(lm).unwrap();
    lm2.eos_token_ids = vec![free.ids[3]];
    let lm2 = Arc::new(lm2);
    let mut p = sampled(5);
    p.ignore_eos = false;
    let out = generate(&lm2, &prompt, &p, &mut |_| true).unwrap();
    assert_eq!(out.finish_reason, FinishReason::Eos);
    assert_eq!(out.ids, free.ids[..=first]);

    let err = generate(&lm2, &prompt, &sampled(5), &mut |_| false).unwrap_err();
    assert!(matches!(err, rstar::Error::Cancelled));
}

#[test]
fn bad_requests_are_errors() {
    let lm = lm();
    assert!(generate(&lm, &[], &GenerateParams::default(), &mut |_| true).is_err());
    assert!(generate(&lm, &[100_000], &GenerateParams::default(), &mut |_| true).is_err());
    let mut p = GenerateParams::default();
    p.sampling.top_p = 0.0;
    assert!(generate(&lm, &[1], &p, &mut |_| true).is_err());
    let p = GenerateParams {
        stop: vec![String::new()],
        ..Default::default()
    };
    assert!(generate(&lm, &[1], &p, &mut |_| true).is_err());
}

//! Logits and greedy decoding against HF transformers (float32) on every fixture:
//! 4 architectures x {f32, bf16, f16} x {transformers-5, legacy} config layouts.

mod common;

use rstar::model::Model;

/// The tolerance the core-runtime issue sets for `exact` mode.
const TOL: f32 = 2e-3;

#[test]
fn logits_match_transformers_at_every_position() {
    let dirs = common::model_dirs();
    assert_eq!(dirs.len(), 24, "expected 4 archs x 3 dtypes x 2 layouts");
    for dir in dirs {
        let g = common::golden(&dir);
        let model = Model::load(&dir).unwrap();
        // Whole prompt in one pass.
        let mut cache = model.new_cache();
        let logits = model.forward(&g.input_ids, &mut cache, true).unwrap();
        let err = common::max_abs_diff(&logits, &g.logits);
        println!(
            "{}: max |logit - HF| = {err:.2e}",
            dir.file_name().unwrap().to_string_lossy()
        );
        assert!(err < TOL, "{}: {err}", dir.display());
        // Token by token through the KV cache gives the same logits.
        let v = model.config.vocab_size;
        let mut cache = model.new_cache();
        for (i, &id) in g.input_ids.iter().enumerate() {
            let row = model.forward(&[id], &mut cache, false).unwrap();
            let err = common::max_abs_diff(&row, &g.logits[i * v..(i + 1) * v]);
            assert!(err < TOL, "{} incremental pos {i}: {err}", dir.display());
        }
    }
}

#[test]
fn greedy_decoding_matches_generate() {
    use rstar::engine::{generate, GenerateParams, LoadedModel};
    for dir in common::model_dirs() {
        let g = common::golden(&dir);
        let lm = std::sync::Arc::new(LoadedModel::load(&dir).unwrap());
        let params = GenerateParams {
            max_new_tokens: g.greedy_ids.len(),
            ignore_eos: true, // the reference ran with eos_token_id=None
            ..Default::default()
        };
        let out = generate(&lm, &g.greedy_prompt, &params, &mut |_| true).unwrap();
        assert_eq!(out.ids, g.greedy_ids, "{}", dir.display());
        assert_eq!(out.prompt_tokens, g.greedy_prompt.len());
    }
}

/// The logits check on every matmul path this CPU has (scalar, AVX2, AVX-512, BF16, NEON), each
/// forced in turn; whole-prompt pass only, to keep CI short. The path is process-wide, so this
/// binary's other tests may run on any of them meanwhile (they must pass on every path too).
#[test]
fn logits_match_transformers_on_every_kernel_path() {
    use rstar::backend::cpu::{set_kernel, Kernel};
    let before = rstar::backend::cpu::kernel();
    for kern in Kernel::available_all() {
        set_kernel(kern).unwrap();
        for dir in common::model_dirs() {
            let g = common::golden(&dir);
            let model = Model::load(&dir).unwrap();
            let mut cache = model.new_cache();
            let logits = model.forward(&g.input_ids, &mut cache, true).unwrap();
            let err = common::max_abs_diff(&logits, &g.logits);
            assert!(err < TOL, "{} on {}: {err}", dir.display(), kern.name());
        }
        println!("{}: all fixtures within {TOL}", kern.name());
    }
    set_kernel(before).unwrap();
}

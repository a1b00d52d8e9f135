//! Trainer parity with PyTorch: one SGD step (lr 0.5, one example) of SFT and of the PPM pairwise
//! loss on Llama and Qwen2 fixtures, tied and untied, against `scripts/make_train_goldens.py`; the
//! saved checkpoint reloaded by librstar's inference loader gives PyTorch's post-step logits; LoRA
//! gradients against finite differences and PEFT save/load/merge.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rstar::data::training::{PairExample, SftExample};
use rstar::model::ppm_layout::{open_ppm_dir, ValueHead};
use rstar::model::Model;
use rstar::train::optim::{OptimizerKind, Schedule};
use rstar::train::{
    checkpoint, LoraSpec, Objective, Packed, Task, TrainConfig, TrainModel, Trainer,
};

const TOL: f32 = 1e-4;

struct Golden {
    f32s: HashMap<String, Vec<f32>>,
    ids: HashMap<String, Vec<u32>>,
}

fn golden(case: &str) -> Golden {
    let path = common::fixtures().join(format!("train/{case}.safetensors"));
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut g = Golden {
        f32s: HashMap::new(),
        ids: HashMap::new(),
    };
    for (name, view) in st.tensors() {
        match view.dtype() {
            safetensors::Dtype::I64 => {
                let v = view
                    .data()
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
                    .collect();
                g.ids.insert(name, v);
            }
            _ => {
                let v = view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                g.f32s.insert(name, v);
            }
        }
    }
    g
}

fn model_dir(case: &str) -> PathBuf {
    let f = common::fixtures();
    match case {
        "qwen2-untied" => f.join("models/qwen2-f32-v5"),
        "qwen2-tied" => f.join("models/qwen2-bf16-v5"),
        "llama-untied" => f.join("models/llama-f32-v5"),
        "llama-tied" => f.join("train/llama-tied"),
        _ => unreachable!(),
    }
}

const CASES: [&str; 4] = ["qwen2-untied", "qwen2-tied", "llama-untied", "llama-tied"];

fn sgd_config(task: Task) -> TrainConfig {
    TrainConfig {
        task,
        optimizer: OptimizerKind::Sgd,
        lr: 0.5,
        schedule: Schedule::Constant,
        max_grad_norm: None,
        batch_size: 1,
        shuffle: false,
        save_every: None,
        ..TrainConfig::default()
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Compares every saved tensor with `<prefix><name>`; returns how many were compared.
fn compare(model: &TrainModel, g: &Golden, prefix: &str, case: &str) -> usize {
    let mut n = 0;
    for (name, _, v) in model.checkpoint_tensors() {
        let Some(want) = g.f32s.get(&format!("{prefix}{name}")) else {
            assert!(name == "lm_head.weight", "{case}: no golden for {name}");
            continue;
        };
        let d = max_diff(v, want);
        assert!(d < TOL, "{case}: {prefix}{name} differs by {d}");
        n += 1;
    }
    n
}

fn sft_example(g: &Golden) -> SftExample {
    let (p, r) = (&g.ids["sft.prompt_ids"], &g.ids["sft.response_ids"]);
    let mut target = vec![false; p.len()];
    target.extend(vec![true; r.len()]);
    SftExample {
        ids: [&p[..], &r[..]].concat(),
        target,
    }
}

fn sft_step(case: &str, checkpointing: bool) -> (Trainer, Golden) {
    let g = golden(case);
    let cfg = TrainConfig {
        checkpointing,
        ..sgd_config(Task::Sft)
    };
    let mut t = Trainer::new(&model_dir(case), cfg).unwrap();
    t.set_sft_examples(vec![sft_example(&g)]);
    let p = t.step().unwrap().unwrap();
    let want = g.f32s["sft.loss"][0] as f64;
    assert!(
        (p.loss - want).abs() < 1e-5,
        "{case}: loss {} vs {want}",
        p.loss
    );
    (t, g)
}

#[test]
fn sft_sgd_step_matches_pytorch() {
    for case in CASES {
        let (t, g) = sft_step(case, case == "qwen2-untied");
        let n = compare(&t.model, &g, "sft.after.", case);
        assert!(n >= 20, "{case}: only {n} tensors compared");

        // The saved checkpoint, reloaded by the inference loader, gives PyTorch's post-step logits.
        let dir = tempfile::tempdir().unwrap();
        t.save(dir.path()).unwrap();
        let m = Model::load(dir.path()).unwrap();
        let ids = sft_example(&g).ids;
        let logits = m.forward(&ids, &mut m.new_cache(), true).unwrap();
        let d = max_diff(&logits, &g.f32s["sft.logits_after"]);
        assert!(d < 2e-4, "{case}: reloaded logits differ by {d}");
        assert!(dir.path().join("tokenizer.json").is_file());
    }
}

#[test]
fn ppm_sgd_step_matches_pytorch() {
    for case in CASES {
        let g = golden(case);
        let mut m = TrainModel::load(&model_dir(case)).unwrap();
        m.checkpointing = case == "llama-tied";
        let head = (
            g.f32s["ppm.v_head.weight"].clone(),
            g.f32s["ppm.v_head.bias"][0],
        );
        m.add_value_head(Some(head), 0).unwrap();
        let mut t = Trainer::from_model(m, &model_dir(case), sgd_config(Task::Ppm)).unwrap();
        t.set_pairs(vec![PairExample {
            prefix: g.ids["ppm.prefix_ids"].clone(),
            pos: g.ids["ppm.pos_ids"].clone(),
            neg: g.ids["ppm.neg_ids"].clone(),
        }]);
        let p = t.step().unwrap().unwrap();
        let want = g.f32s["ppm.loss"][0] as f64;
        assert!(
            (p.loss - want).abs() < 1e-5,
            "{case}: loss {} vs {want}",
            p.loss
        );
        let n = compare(&t.model, &g, "ppm.after.", case);
        assert!(n >= 20, "{case}: only {n} tensors compared");
        let (w, b) = t.model.value_head().unwrap();
        assert!(max_diff(w, &g.f32s["ppm.after.v_head.summary.weight"]) < TOL);
        assert!((b - g.f32s["ppm.after.v_head.summary.bias"][0]).abs() < TOL);

        let dir = tempfile::tempdir().unwrap();
        t.save(dir.path()).unwrap();
        let back = open_ppm_dir(dir.path()).unwrap();
        let Some(ValueHead::Linear { w: bw, b: bb }) = back.head else {
            panic!("{case}: no linear value head saved");
        };
        assert_eq!((&bw[..], bb), (w, b));
    }
}

fn lora_model(dir: &Path) -> TrainModel {
    let mut m = TrainModel::load(dir).unwrap();
    m.add_lora(LoraSpec::all_projections(2), 3).unwrap();
    // Non-zero B so that gradients reach A.
    for (i, p) in m.params.iter_mut().enumerate() {
        if p.name.ends_with("lora_B.weight") {
            for (j, v) in p.value.iter_mut().enumerate() {
                *v = (((i * 31 + j * 17) % 13) as f32 - 6.0) * 0.02;
            }
        }
    }
    m
}

#[test]
fn lora_gradients_match_finite_differences() {
    let dir = model_dir("qwen2-untied");
    let m = lora_model(&dir);
    let mut p = Packed::default();
    p.push_sequence(&[5, 17, 99, 3, 250, 7]);
    let obj = Objective::Lm {
        targets: vec![(2, 3), (3, 250), (4, 7)],
        weight: 1.0 / 3.0,
    };
    let mut g = m.new_grads();
    m.forward_backward(&p, &obj, &mut g).unwrap();
    let trainable: Vec<usize> = (0..m.params.len())
        .filter(|&i| m.params[i].trainable)
        .collect();
    assert!(trainable
        .iter()
        .all(|&i| m.params[i].name.contains("lora_")));
    assert!(trainable.len() == 2 * 7 * 2, "{}", trainable.len());
    // Directional derivative along a fixed pseudo-random direction over all adapter weights.
    let dir_of = |i: usize, j: usize| ((i * 7919 + j * 104729) % 1000) as f32 / 500.0 - 1.0;
    let loss_at = |s: f32| {
        let mut m2 = m.clone();
        for &i in &trainable {
            for (j, v) in m2.params[i].value.iter_mut().enumerate() {
                *v += s * dir_of(i, j);
            }
        }
        let mut g2 = m2.new_grads();
        m2.forward_backward(&p, &obj, &mut g2).unwrap()
    };
    let eps = 2e-3;
    let fd = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps as f64);
    let an: f64 = trainable
        .iter()
        .flat_map(|&i| {
            g.0[i]
                .iter()
                .enumerate()
                .map(move |(j, &x)| x as f64 * dir_of(i, j) as f64)
        })
        .sum();
    assert!(
        (fd - an).abs() < 1e-2 * fd.abs().max(an.abs()),
        "fd {fd} vs analytic {an}"
    );
}

#[test]
fn peft_round_trip_and_merge() {
    let dir = model_dir("llama-untied");
    let m = lora_model(&dir);
    let out = tempfile::tempdir().unwrap();
    checkpoint::save_peft(&m, out.path(), "base").unwrap();
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["r"], 2);
    let bytes = std::fs::read(out.path().join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let key = "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight";
    assert_eq!(st.tensor(key).unwrap().shape(), &[2, 64]);

    let mut back = TrainModel::load(&dir).unwrap();
    checkpoint::load_peft(&mut back, out.path()).unwrap();
    for (a, b) in m.params.iter().zip(&back.params) {
        assert_eq!((&a.name, &a.value), (&b.name, &b.value));
    }
    let mut p = Packed::default();
    p.push_sequence(&[1, 2, 3, 4]);
    let before = back.hidden(&p).unwrap();
    back.merge_lora();
    assert!(back.lora().is_none() && back.params.iter().all(|p| p.trainable));
    let after = back.hidden(&p).unwrap();
    assert!(max_diff(&before, &after) < 1e-4);
}

/// Gradient checkpointing (each block's forward recomputed in the backward from its saved input)
/// gives the same loss and gradients as keeping every activation, bit for bit: the recomputation
/// runs the same kernels on the same inputs. LoRA on, so frozen and trainable parameters both
/// appear, and two packed sequences, so the block-diagonal attention is recomputed too.
#[test]
fn checkpointed_gradients_equal_stored_ones() {
    for case in ["qwen2-untied", "llama-tied"] {
        let mut m = lora_model(&model_dir(case));
        let mut p = Packed::default();
        p.push_sequence(&[5, 17, 99, 3, 250, 7, 11, 42]);
        p.push_sequence(&[8, 9, 10, 300, 12]);
        let obj = Objective::Lm {
            targets: vec![(2, 3), (3, 250), (4, 7), (6, 42), (10, 300), (11, 12)],
            weight: 1.0 / 6.0,
        };
        let mut run = |checkpointing: bool| {
            m.checkpointing = checkpointing;
            let mut g = m.new_grads();
            let loss = m.forward_backward(&p, &obj, &mut g).unwrap();
            (loss, g.0)
        };
        let (l0, g0) = run(false);
        let (l1, g1) = run(true);
        assert_eq!(l0.to_bits(), l1.to_bits(), "{case}: loss");
        let mut compared = 0;
        for (i, (a, b)) in g0.iter().zip(&g1).enumerate() {
            let same =
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{case}: gradient {} differs", m.params[i].name);
            compared += usize::from(!a.is_empty());
        }
        assert!(compared >= 8, "{case}: only {compared} gradients compared");
        assert!(
            g1.iter().flatten().any(|&x| x != 0.0),
            "{case}: all-zero gradients"
        );
    }
}

/// Training only the top layer (`train_top_layers(1)` on the 2-layer fixtures) gives the same loss
/// and, for every parameter still trained, the same gradient bit for bit as training everything:
/// the frozen bottom only skips its own backward. The bottom layer and the embedding (with it a
/// tied LM head) get no gradients, and LoRA adapters added afterwards go on the top layer only.
#[test]
fn top_layer_gradients_equal_full_ones() {
    for case in ["qwen2-untied", "llama-tied"] {
        let mut full = TrainModel::load(&model_dir(case)).unwrap();
        full.add_value_head(None, 5).unwrap();
        let mut top = full.clone();
        top.train_top_layers(1).unwrap();
        assert_eq!(top.frozen_blocks(), 1);
        assert!(
            top.clone().train_top_layers(3).is_err(),
            "{case}: 3 of 2 layers"
        );
        let mut p = Packed::default();
        p.push_sequence(&[5, 17, 99, 3, 250, 7, 11, 42]);
        p.push_sequence(&[8, 9, 10, 300, 12]);
        let objectives = [
            Objective::Lm {
                targets: vec![(2, 3), (3, 250), (4, 7), (6, 42), (10, 300), (11, 12)],
                weight: 1.0 / 6.0,
            },
            Objective::Pairs {
                pairs: vec![(7, 12), (3, 10)],
                weight: 0.5,
            },
        ];
        for obj in &objectives {
            let mut gf = full.new_grads();
            let lf = full.forward_backward(&p, obj, &mut gf).unwrap();
            let mut gt = top.new_grads();
            let lt = top.forward_backward(&p, obj, &mut gt).unwrap();
            assert_eq!(lf.to_bits(), lt.to_bits(), "{case}: loss");
            let (mut kept, mut dropped) = (0, 0);
            for (i, prm) in top.params.iter().enumerate() {
                let bottom =
                    prm.name.contains("layers.0.") || prm.name == "model.embed_tokens.weight";
                if bottom {
                    assert!(gt.0[i].is_empty(), "{case}: {} has a gradient", prm.name);
                    dropped += 1;
                    continue;
                }
                let (a, b) = (&gf.0[i], &gt.0[i]);
                let same =
                    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{case}: gradient {} differs", prm.name);
                kept += 1;
            }
            assert!(
                kept >= 7 && dropped >= 7,
                "{case}: kept {kept} dropped {dropped}"
            );
            assert!(
                gt.0.iter().flatten().any(|&x| x != 0.0),
                "{case}: zero grads"
            );
        }
        top.add_lora(LoraSpec::all_projections(2), 3).unwrap();
        let names: Vec<String> = top.lora_tensors().into_iter().map(|t| t.0).collect();
        assert!(!names.is_empty() && names.iter().all(|n| n.contains("layers.1.")));
        top.merge_lora();
        let trainable = |n: &str| top.params.iter().any(|p| p.name == n && p.trainable);
        assert!(
            !trainable("model.embed_tokens.weight"),
            "{case}: merge unfroze"
        );
    }
}

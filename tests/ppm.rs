//! Process reward model scoring against the reference in scripts/make_fixtures.py (transformers'
//! Qwen2Model final hidden states + the value head in torch), for rStar-Math's PPM in both layouts and
//! for Qwen2.5-Math-PRM's head; batched tree scoring equals scoring alone and shares prefixes.

mod common;

use std::sync::Arc;

use rstar::engine::ppm::{Ppm, Scorer};
use rstar::engine::EngineConfig;

struct Golden(Vec<(Vec<u32>, Vec<f32>, Vec<f32>)>);

fn golden() -> Golden {
    let bytes = std::fs::read(common::fixtures().join("ppm/golden.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |n: &str| -> Vec<f32> {
        st.tensor(n)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let mut v = Vec::new();
    for i in 0.. {
        let Ok(t) = st.tensor(&format!("ids_{i}")) else {
            break;
        };
        let ids = t
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect();
        v.push((ids, f32s(&format!("rstar_{i}")), f32s(&format!("prm_{i}"))));
    }
    Golden(v)
}

fn check(name: &str, pick: impl Fn(&(Vec<u32>, Vec<f32>, Vec<f32>)) -> &Vec<f32>) {
    let g = golden();
    let ppm = Arc::new(Ppm::load(&common::fixtures().join("ppm").join(name)).unwrap());
    for case in &g.0 {
        let all = ppm.score_all_positions(&case.0).unwrap();
        let err = common::max_abs_diff(&all, pick(case));
        println!("{name}: max |value - reference| = {err:.2e}");
        assert!(err < 2e-3, "{name}: {err}");
    }
    let cfg = EngineConfig {
        block_size: 4,
        kv_budget_bytes: 1 << 22,
        ..EngineConfig::default()
    };
    let mut scorer = Scorer::new(ppm.clone(), cfg).unwrap();
    let seqs: Vec<Vec<u32>> = g.0.iter().map(|c| c.0.clone()).collect();
    let values = scorer.score(&seqs).unwrap();
    for (v, case) in values.iter().zip(&g.0) {
        let want = *pick(case).last().unwrap();
        assert!((v - want).abs() < 2e-3, "{name}: batched {v} vs {want}");
    }
    let st = scorer.stats();
    let total: usize = seqs.iter().map(Vec::len).sum();
    assert!(
        st.tokens_computed < total as u64,
        "{name}: shared prefix computed once: {st:?}"
    );
    // Children of already-scored sequences compute only their new tokens.
    let before = scorer.stats().tokens_computed;
    let kids: Vec<Vec<u32>> = (0..3)
        .map(|k| [seqs[1].clone(), vec![60 + k, 61, 62]].concat())
        .collect();
    let kv = scorer.score(&kids).unwrap();
    let computed = scorer.stats().tokens_computed - before;
    assert!(
        computed <= 3 * 3 + 2 * 4,
        "{name}: computed {computed} tokens for 3 children"
    );
    for (k, v) in kids.iter().zip(kv) {
        let alone = *ppm.score_all_positions(k).unwrap().last().unwrap();
        assert_eq!(v, alone, "{name}: batched vs alone");
    }
}

#[test]
fn rstar_value_head_separate_file() {
    check("rstar-separate", |c| &c.1);
}

#[test]
fn rstar_value_head_combined_with_prefix() {
    check("rstar-combined", |c| &c.1);
}

#[test]
fn qwen2_math_prm_head() {
    check("qwen2-prm", |c| &c.2);
}

#[test]
fn missing_value_head_is_a_clear_error() {
    let e = Ppm::load(&common::fixtures().join("models/qwen2-f32-v5"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("value head"), "{e}");
}

/// The combined fixture is the split one re-keyed (scripts/make_fixtures.py): checked key by key
/// against the split layout, both through the loader scoring and training share.
#[test]
fn combined_layout_is_the_split_one_rekeyed() {
    use rstar::model::ppm_layout::{open_ppm_dir, PpmLayout, COMBINED_PREFIX};
    use rstar::model::WeightStore;
    let ppm = common::fixtures().join("ppm");
    let comb = open_ppm_dir(&ppm.join("rstar-combined")).unwrap();
    let split = open_ppm_dir(&ppm.join("rstar-separate")).unwrap();
    assert_eq!(comb.layout, PpmLayout::Combined);
    assert_eq!(split.layout, PpmLayout::Split);
    let raw = WeightStore::open_dir(&ppm.join("rstar-combined")).unwrap();
    let mut want: Vec<String> = split
        .store
        .names()
        .iter()
        .map(|n| format!("{COMBINED_PREFIX}{n}"))
        .collect();
    want.extend(["v_head.summary.bias".into(), "v_head.summary.weight".into()]);
    want.sort();
    assert_eq!(raw.names(), want);
    for n in split.store.names() {
        let a = split.store.get_any(n).unwrap().to_f32_vec();
        let b = comb.store.get_any(n).unwrap().to_f32_vec();
        assert_eq!(a, b, "{n}");
    }
}

fn pairs_file(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("pairs.jsonl");
    let rows = [
        r#"{"prefix_ids": [3, 4, 5, 6], "pos_ids": [50, 51, 52], "neg_ids": [53, 54]}"#,
        r#"{"prefix_ids": [7, 8, 9], "pos_ids": [60, 61], "neg_ids": [62, 63, 64]}"#,
    ];
    std::fs::write(&p, rows.join("\n")).unwrap();
    p
}

/// `rstar train ppm` with `args`, from `model` into `out`.
fn train_cli(model: &std::path::Path, out: &std::path::Path, lr: &str, args: &[&str]) {
    let data = pairs_file(out.parent().unwrap());
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_rstar"))
        .args([
            "train",
            "ppm",
            "--max-steps",
            "1",
            "--batch-size",
            "2",
            "--threads",
            "1",
        ])
        .args(["--lr", lr, "--optimizer", "sgd", "--weight-decay", "0"])
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "rstar train ppm failed: {err}");
}

/// Raw values of every golden case, last position, scored through `rstar`'s scoring loader.
fn last_values(dir: &std::path::Path) -> Vec<f32> {
    let ppm = Ppm::load(dir).unwrap();
    golden()
        .0
        .iter()
        .map(|c| *ppm.score_all_positions(&c.0).unwrap().last().unwrap())
        .collect()
}

/// Item 5 of issue 34: training starts from a PPM in trl's combined layout (it used to fail with
/// "tensor `model.embed_tokens.weight`: missing from the checkpoint"), writes the layout asked for,
/// and scoring reads the result. With lr 0 the saved PPM must still give transformers' values in
/// both layouts (round trip); with lr > 0 a step from the combined layout equals the same step from
/// the split one, bit for bit.
#[test]
fn train_ppm_from_combined_layout_round_trips() {
    use rstar::model::ppm_layout::{open_ppm_dir, PpmLayout};
    let ppm = common::fixtures().join("ppm");
    let tmp = tempfile::tempdir().unwrap();
    let want: Vec<f32> = golden().0.iter().map(|c| *c.1.last().unwrap()).collect();
    let mut from_split = None;
    for (src, layout) in [
        ("rstar-combined", "combined"),
        ("rstar-combined", "split"),
        ("rstar-separate", "combined"),
        ("rstar-separate", "split"),
    ] {
        let out = tmp.path().join(format!("{src}-{layout}-lr0"));
        train_cli(&ppm.join(src), &out, "0", &["--save-layout", layout]);
        let d = open_ppm_dir(&out).unwrap();
        let expect = if layout == "combined" {
            PpmLayout::Combined
        } else {
            PpmLayout::Split
        };
        assert_eq!(d.layout, expect, "{src} -> {layout}");
        assert_eq!(
            out.join("value_head.safetensors").is_file(),
            layout == "split"
        );
        let got = last_values(&out);
        let err = common::max_abs_diff(&got, &want);
        assert!(
            err < 2e-3,
            "{src} -> {layout}: |value - transformers| = {err}"
        );
        // Round trip: the saved directory is itself a starting point, in its own layout by default.
        let again = tmp.path().join(format!("{src}-{layout}-again"));
        train_cli(&out, &again, "0", &[]);
        assert_eq!(open_ppm_dir(&again).unwrap().layout, expect);
        assert_eq!(last_values(&again), got, "{src} -> {layout} -> again");
    }
    for src in ["rstar-separate", "rstar-combined"] {
        let out = tmp.path().join(format!("{src}-step"));
        train_cli(&ppm.join(src), &out, "0.5", &["--save-layout", "split"]);
        let v = last_values(&out);
        assert!(
            common::max_abs_diff(&v, &want) > 1e-4,
            "{src}: the step changed nothing"
        );
        match &from_split {
            None => from_split = Some(v),
            Some(s) => assert_eq!(&v, s, "one step from {src} vs from the split layout"),
        }
    }
}

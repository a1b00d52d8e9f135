//! `rstar init-model` on a tiny shape writes a model directory that `rstar forward` loads, that
//! `rstar train sft` trains, and whose tokenizer keeps the step tags whole; `rstar solve` without
//! `--policy` names the recipe when the default model is not built.

use std::path::Path;
use std::process::{Command, Output};

fn rstar(args: &[&str], paths: &[&Path]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rstar"));
    c.args(args);
    for p in paths {
        c.arg(p);
    }
    c.output().unwrap()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn init_model_writes_a_directory_forward_loads_and_sft_trains() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("p.jsonl");
    let model = dir.path().join("m");
    ok(&rstar(
        &[
            "gen-problems",
            "--level",
            "2",
            "--count",
            "40",
            "--solutions",
            "--out",
        ],
        &[&data],
    ));
    let o = rstar(
        &[
            "init-model",
            "--vocab-size",
            "400",
            "--hidden-size",
            "32",
            "--layers",
            "2",
            "--heads",
            "4",
            "--kv-heads",
            "2",
            "--intermediate-size",
            "64",
            "--max-position-embeddings",
            "512",
            "--seed",
            "3",
            "--data",
        ],
        &[&data, Path::new("--out"), &model],
    );
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("parameters"), "{err}");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model_type"], "qwen2");
    assert_eq!(cfg["tie_word_embeddings"], true);
    let vocab = cfg["vocab_size"].as_u64().unwrap() as usize;

    let out = ok(&rstar(
        &["forward", "--ids", "0,5,17", "--model"],
        &[&model],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = v["logits"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].as_array().unwrap().len(), vocab);
    // std 0.02 weights: small but not all-zero logits.
    let x = rows[2].as_array().unwrap();
    assert!(x.iter().any(|l| l.as_f64().unwrap().abs() > 1e-4));

    let tok = rstar::tokenizer::Tokenizer::from_dir(&model).unwrap();
    for t in rstar::train::init::STEP_TOKENS {
        assert_eq!(tok.encode(t, false).unwrap().len(), 1, "{t}");
    }

    let trained = dir.path().join("t");
    ok(&rstar(
        &[
            "train",
            "sft",
            "--lr",
            "1e-3",
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--model",
        ],
        &[
            &model,
            Path::new("--data"),
            &data,
            Path::new("--out"),
            &trained,
        ],
    ));
    ok(&rstar(&["forward", "--ids", "1,2", "--model"], &[&trained]));
}

#[test]
fn solve_without_policy_names_the_recipe_when_the_default_model_is_missing() {
    // The committed default model is hidden behind an empty $RSTAR_DEFAULT_MODEL.
    let empty = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_rstar"))
        .args(["solve", "What is 2 + 3?"])
        .env("RSTAR_DEFAULT_MODEL", empty.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("make_default_model.sh") && err.contains(&*empty.path().to_string_lossy()),
        "{err}"
    );
}

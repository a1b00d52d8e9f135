//! Bad inputs end as typed errors naming the file/tensor/field, and as one-line CLI errors with exit
//! code 2; mutated (fuzzed) checkpoints never panic.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use rstar::model::Model;

fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join(name);
    std::fs::create_dir(&dst).unwrap();
    for e in std::fs::read_dir(common::fixtures().join("models").join(name)).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
    (tmp, dst)
}

fn rstar(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rstar"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The CLI fails with exit code 2 and a single `error:` line mentioning `needle`.
fn cli_fails(args: &[&str], needle: &str) {
    let (code, _, err) = rstar(args);
    assert_eq!(code, 2, "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err:?}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, v.to_string()).unwrap();
}

/// Rewrites model.safetensors through `f` (name -> (dtype, shape, bytes)).
fn edit_tensors(
    dir: &Path,
    f: impl FnOnce(&mut Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>),
) {
    let p = dir.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut ts: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    f(&mut ts);
    let views: Vec<(String, safetensors::tensor::TensorView)> = ts
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &p).unwrap();
}

#[test]
fn truncated_safetensors_names_the_file() {
    let (_t, dir) = copy_fixture("llama-bf16-v5");
    let p = dir.join("model.safetensors");
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let e = Model::load(&dir).unwrap_err().to_string();
    assert!(e.contains("model.safetensors"), "{e}");
    cli_fails(
        &["forward", "--model", dir.to_str().unwrap(), "--ids", "1,2"],
        "model.safetensors",
    );
    // A file shorter than its own header length field.
    std::fs::write(&p, [8u8, 0, 0]).unwrap();
    assert!(Model::load(&dir).is_err());
}

#[test]
fn wrong_shape_and_missing_tensor_name_the_tensor() {
    let (_t, dir) = copy_fixture("mistral-f32-v5");
    edit_tensors(&dir, |ts| {
        let t = ts
            .iter_mut()
            .find(|t| t.0 == "model.layers.1.self_attn.k_proj.weight")
            .unwrap();
        t.2[0] -= 1;
        let keep = t.2.iter().product::<usize>() * 4;
        t.3.truncate(keep);
    });
    let e = Model::load(&dir).unwrap_err().to_string();
    assert!(
        e.contains("model.layers.1.self_attn.k_proj.weight") && e.contains("shape"),
        "{e}"
    );
    cli_fails(
        &["forward", "--model", dir.to_str().unwrap(), "--ids", "1"],
        "k_proj",
    );

    let (_t1, dir1) = copy_fixture("mistral-f32-v5");
    edit_tensors(&dir1, |ts| ts.retain(|t| t.0 != "model.norm.weight"));
    let e = Model::load(&dir1).unwrap_err().to_string();
    assert!(
        e.contains("model.norm.weight") && e.contains("missing"),
        "{e}"
    );

    let (_t2, dir2) = copy_fixture("mistral-f32-v5");
    edit_tensors(&dir2, |ts| {
        let t = ts
            .iter_mut()
            .find(|t| t.0 == "model.embed_tokens.weight")
            .unwrap();
        t.1 = safetensors::Dtype::I32;
    });
    let e = Model::load(&dir2).unwrap_err().to_string();
    assert!(
        e.contains("model.embed_tokens.weight") && e.contains("dtype"),
        "{e}"
    );
}

#[test]
fn sharded_index_pointing_at_wrong_shard() {
    let (_t, dir) = copy_fixture("qwen2-f32-v5");
    let p = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&p).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["weight_map"]["lm_head.weight"] = "model-00001-of-00003.safetensors".into();
    std::fs::write(&p, v.to_string()).unwrap();
    let e = Model::load(&dir).unwrap_err().to_string();
    assert!(
        e.contains("lm_head.weight") && e.contains("model-00001-of-00003.safetensors"),
        "{e}"
    );
    v["weight_map"]["lm_head.weight"] = "../../etc/passwd".into();
    std::fs::write(&p, v.to_string()).unwrap();
    assert!(Model::load(&dir)
        .unwrap_err()
        .to_string()
        .contains("plain file name"));
}

#[test]
fn unknown_architecture_and_bad_config() {
    let (_t, dir) = copy_fixture("phi3-f16-legacy");
    edit_config(&dir, |v| v["model_type"] = "gpt_neox".into());
    let d = dir.to_str().unwrap();
    cli_fails(&["forward", "--model", d, "--ids", "1"], "gpt_neox");
    edit_config(&dir, |v| {
        v["model_type"] = "phi3".into();
        v["num_hidden_layers"] = "two".into();
    });
    cli_fails(
        &["forward", "--model", d, "--ids", "1"],
        "num_hidden_layers",
    );
    std::fs::write(dir.join("config.json"), "{not json").unwrap();
    cli_fails(&["forward", "--model", d, "--ids", "1"], "config.json");
}

#[test]
fn bad_cli_input() {
    let m = common::fixtures().join("models/qwen2-f32-v5");
    let m = m.to_str().unwrap();
    cli_fails(&["forward", "--model", m, "--ids", "1,x"], "--ids");
    cli_fails(&["forward", "--model", m], "--ids");
    cli_fails(
        &["forward", "--model", "/no/such/dir", "--ids", "1"],
        "/no/such/dir",
    );
    cli_fails(&["forward", "--model", m, "--ids", "384"], "384");
    cli_fails(&["generate", "--model", m], "--ids");
    cli_fails(
        &["generate", "--model", m, "--ids", "1", "--top-p", "0"],
        "top_p",
    );
    cli_fails(
        &[
            "generate",
            "--model",
            m,
            "--ids",
            "1",
            "--temperature",
            "-1",
        ],
        "temperature",
    );
    cli_fails(
        &["generate", "--model", m, "--ids", "1", "--chat"],
        "--prompt",
    );
    cli_fails(&["frobnicate"], "frobnicate");
    cli_fails(
        &["bench", "model", "--model", m, "--batch", "1,0"],
        "--batch",
    );
    cli_fails(
        &["bench", "model", "--model", m, "--prompt-tokens", "0"],
        "--prompt-tokens",
    );
    cli_fails(
        &["generate", "--model", m, "--ids", "1", "--device", "gpu"],
        "unknown device `gpu`",
    );
    cli_fails(
        &["score", "--model", m, "--ids", "1", "--device", "tpu:0"],
        "unknown device `tpu:0`",
    );
    let (code, out, _) = rstar(&["generate", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("--max-new-tokens"));
    // Text prompts need a tokenizer.
    let (_t, dir) = copy_fixture("llama-f16-v5");
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    cli_fails(
        &[
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--prompt",
            "hi",
        ],
        "tokenizer.json",
    );
    // A bad kernel override is refused as an argument error, by every command that runs a model.
    let foreign = if cfg!(target_arch = "x86_64") {
        "neon"
    } else {
        "avx2"
    };
    for (value, needle) in [
        ("bogus", "RSTAR_KERNEL=bogus: expected scalar"),
        (foreign, "this CPU cannot run it"),
    ] {
        for args in [
            &["forward", "--model", m, "--ids", "1"][..],
            &[
                "generate",
                "--model",
                m,
                "--ids",
                "1",
                "--max-new-tokens",
                "1",
            ],
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_rstar"))
                .args(args)
                .env("RSTAR_KERNEL", value)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{value} {args:?}: {err}");
            assert!(err.contains(needle) && !err.contains("panicked"), "{err}");
        }
    }
}

#[test]
fn cli_forward_matches_golden_and_generate_json_contract() {
    let dir = common::fixtures().join("models/phi3-bf16-v5");
    let g = common::golden(&dir);
    let ids: Vec<String> = g.input_ids.iter().map(|i| i.to_string()).collect();
    let (code, out, err) = rstar(&[
        "forward",
        "--model",
        dir.to_str().unwrap(),
        "--ids",
        &ids.join(","),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows: Vec<Vec<f32>> = serde_json::from_value(v["logits"].clone()).unwrap();
    assert_eq!(rows.len(), g.input_ids.len());
    let flat: Vec<f32> = rows.concat();
    assert!(common::max_abs_diff(&flat, &g.logits) < 2e-3);

    let p: Vec<String> = g.greedy_prompt.iter().map(|i| i.to_string()).collect();
    let n = g.greedy_ids.len().to_string();
    let (code, out, err) = rstar(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--ids",
        &p.join(","),
        "--max-new-tokens",
        &n,
        "--ignore-eos",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let got: Vec<u32> = serde_json::from_value(v["ids"].clone()).unwrap();
    assert_eq!(got, g.greedy_ids);
    assert_eq!(v["finish_reason"], "length");
    assert_eq!(v["prompt_tokens"], g.greedy_prompt.len());
    assert!(v["text"].is_string() && v["tokens_per_second"].is_number());
}

/// Deterministic mutation fuzzing of the safetensors header and config: every outcome is Ok or Err.
#[test]
fn mutated_checkpoints_never_panic() {
    let (_t, dir) = copy_fixture("qwen2-bf16-v5");
    let p = dir.join("model.safetensors");
    let orig = std::fs::read(&p).unwrap();
    let header_len = u64::from_le_bytes(orig[..8].try_into().unwrap()) as usize + 8;
    let mut rng = rstar::rng::Rng::new(1234);
    for _ in 0..300 {
        let mut bytes = orig.clone();
        for _ in 0..1 + rng.next_u64() % 4 {
            let i = (rng.next_u64() as usize) % header_len;
            bytes[i] = rng.next_u64() as u8;
        }
        std::fs::write(&p, &bytes).unwrap();
        let _ = Model::load(&dir).map(|m| {
            let mut c = m.new_cache();
            let _ = m.forward(&[1, 2, 3], &mut c, true);
        });
    }
    let cfg = std::fs::read(dir.join("config.json")).unwrap();
    std::fs::write(&p, &orig).unwrap();
    for _ in 0..300 {
        let mut bytes = cfg.clone();
        let i = (rng.next_u64() as usize) % bytes.len();
        bytes[i] = b"0123456789-.,:\"{}[]e "[(rng.next_u64() % 21) as usize];
        std::fs::write(dir.join("config.json"), &bytes).unwrap();
        let _ = Model::load(&dir);
    }
}

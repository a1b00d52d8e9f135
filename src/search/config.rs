//! The search configuration file: every [`SearchConfig`] knob as a flat TOML (or JSON) table whose
//! keys are the field names (`rollouts`, `width`, `max_depth`, `c_puct`, `temperature`, `top_p`,
//! `stop`, `errors_threshold`, `exec_timeout_s`, `vote_size`, `max_step_tokens`, `mode`, ...).
//! Keys left out keep their defaults; an unknown key or a badly typed value is an
//! [`Error::Config`] naming the file and the key. Command-line flags override the file.
//!
//! Also the presets: named sets of keys for a model family ([`PRESETS`]: `qwen2.5`), chosen by
//! the `preset` key (applied before the other keys of the same table) or, for a policy that is
//! a Qwen2 model with a ChatML chat template, automatically ([`auto_preset`]).

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::search::api::SearchConfig;

/// The key that names a preset.
pub const PRESET_KEY: &str = "preset";

/// Qwen2.5 instruct models (Qwen2.5-Coder-Instruct, Qwen2.5-Math-Instruct) in the tool format:
/// steps of reasoning plus one ```` ```python ```` block, stopped at the output fence; sampled
/// modes at Qwen's temperature with a wider nucleus; a failing block may be fixed once (its
/// error is shown); steps long enough for a block and its reasoning. Greedy by default: on two
/// CPU cores one greedy solution of the 0.5B takes tens of seconds, a search 8x that
/// (`--mode maj|mcts|...` asks for one).
const QWEN25: &str = r#"
search = "greedy"
step_format = "tool"
stop = ["```output"]
temperature = 0.7
top_p = 0.95
max_step_tokens = 384
max_depth = 8
errors_threshold = 2
c_puct = 2.0
exec_timeout_s = 10.0
"#;

/// The named presets (`preset = "NAME"`, `--preset NAME`): TOML tables of keys. `none` sets
/// nothing (and stops the automatic choice).
pub const PRESETS: &[(&str, &str)] = &[("qwen2.5", QWEN25), ("none", "")];

/// The keys of preset `name`.
pub fn preset_table(name: &str, origin: &Path) -> Result<Map<String, Value>> {
    let Some((_, text)) = PRESETS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
        return Err(Error::config(
            origin,
            PRESET_KEY,
            format!("unknown preset `{name}` (known: {})", names.join(", ")),
        ));
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| Error::Internal(format!("preset {name}: {e}")))?;
    match serde_json::to_value(&table) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Error::Internal(format!("preset {name} is not a table"))),
    }
}

/// The context (tokens) a model needs for [`auto_preset`] to give it the `qwen2.5` preset: its
/// worked example, the question and `max_depth` steps of up to 384 tokens must fit.
pub const PRESET_MIN_CONTEXT: u64 = 4096;

/// The preset a policy gets when no configuration names one: `qwen2.5` for a Qwen2-architecture
/// model (GGUF `general.architecture`, or `model_type` of an HF directory's `config.json`) whose
/// chat template is ChatML (`<|im_start|>`) and whose context holds the preset's prompts
/// ([`PRESET_MIN_CONTEXT`]; a small test model of that shape keeps the defaults), i.e. a Qwen2.5
/// instruct model; else none. A file that cannot be read gives none (loading the policy reports it).
pub fn auto_preset(policy: &Path) -> Option<&'static str> {
    let (arch, template, context) = if crate::model::gguf::is_gguf(policy) {
        let f = crate::model::gguf::GgufFile::open_metadata(policy).ok()?;
        let get = |k: &str| f.meta(k).and_then(|v| v.as_str()).map(str::to_owned);
        let arch = get("general.architecture")?;
        let context = f
            .meta(&format!("{arch}.context_length"))
            .and_then(|v| v.as_u64());
        (arch, get("tokenizer.chat_template")?, context?)
    } else {
        let read = |f: &str| -> Option<Value> {
            serde_json::from_str(&std::fs::read_to_string(policy.join(f)).ok()?).ok()
        };
        let config = read("config.json")?;
        let arch = config["model_type"].as_str()?.to_owned();
        let context = config["max_position_embeddings"].as_u64()?;
        let template = read("tokenizer_config.json")?["chat_template"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| std::fs::read_to_string(policy.join("chat_template.jinja")).ok())?;
        (arch, template, context)
    };
    let fits = context >= PRESET_MIN_CONTEXT;
    (arch == "qwen2" && template.contains("<|im_start|>") && fits).then_some("qwen2.5")
}

/// The keys a configuration may hold, in declaration order (and [`PRESET_KEY`]).
pub fn known_keys() -> Vec<String> {
    match serde_json::to_value(SearchConfig::default()) {
        Ok(Value::Object(m)) => m
            .keys()
            .cloned()
            .chain(std::iter::once(PRESET_KEY.to_owned()))
            .collect(),
        _ => Vec::new(),
    }
}

/// A configuration and the keys its source set.
pub type Parsed = (SearchConfig, Vec<String>);

/// `base` with the keys of `table` set (command-line flags over a file, say); a `preset` key sets
/// its preset's keys first. `origin` names the table in errors. Also returns the keys the table
/// set.
pub fn apply(base: &SearchConfig, mut table: Map<String, Value>, origin: &Path) -> Result<Parsed> {
    let preset = match table.remove(PRESET_KEY) {
        Some(Value::String(name)) => Some(name),
        Some(other) => {
            return Err(Error::config(
                origin,
                PRESET_KEY,
                format!("expected a preset name, got {other}"),
            ))
        }
        None => None,
    };
    let preset_base;
    let base = match &preset {
        Some(name) => {
            preset_base = apply(base, preset_table(name, origin)?, origin)?.0;
            &preset_base
        }
        None => base,
    };
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
    let mut keys: Vec<String> = table.keys().cloned().collect();
    keys.extend(preset.map(|_| PRESET_KEY.to_owned()));
    let mut merged = match serde_json::to_value(base) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    merged.extend(table);
    let cfg: SearchConfig = serde_json::from_value(Value::Object(merged))
        .map_err(|e| Error::config(origin, "<table>", e.to_string()))?;
    cfg.validate()
        .map_err(|e| Error::config(origin, "<table>", e.to_string()))?;
    Ok((cfg, keys))
}

/// The key -> value table of TOML text; `origin` names it in errors.
fn toml_table(text: &str, origin: &Path) -> Result<Map<String, Value>> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| Error::format(origin, e.to_string()))?;
    let json = serde_json::to_value(&table).map_err(|e| Error::format(origin, e.to_string()))?;
    match json {
        Value::Object(m) => Ok(m),
        _ => Err(Error::format(origin, "expected a table of keys")),
    }
}

/// The key -> value table of a JSON object; `origin` names it in errors.
fn json_table(text: &str, origin: &Path) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Error::format(origin, "expected a JSON object of keys")),
        Err(e) => Err(Error::format(origin, e.to_string())),
    }
}

/// Parses TOML text; `origin` names it in errors.
pub fn from_toml(text: &str, origin: &Path) -> Result<Parsed> {
    apply(&SearchConfig::default(), toml_table(text, origin)?, origin)
}

/// Parses a JSON object; `origin` names it in errors.
pub fn from_json(text: &str, origin: &Path) -> Result<Parsed> {
    apply(&SearchConfig::default(), json_table(text, origin)?, origin)
}

/// JSON when the text starts with `{`, TOML otherwise; empty text gives the defaults.
pub fn parse(text: &str, origin: &Path) -> Result<SearchConfig> {
    parse_keys(text, origin).map(|p| p.0)
}

/// As [`parse`], also returning the keys the text set.
pub fn parse_keys(text: &str, origin: &Path) -> Result<Parsed> {
    parse_keys_on(&SearchConfig::default(), text, origin)
}

/// As [`parse_keys`], over `base` instead of the defaults.
pub fn parse_keys_on(base: &SearchConfig, text: &str, origin: &Path) -> Result<Parsed> {
    let table = if text.trim_start().starts_with('{') {
        json_table(text, origin)?
    } else {
        toml_table(text, origin)?
    };
    apply(base, table, origin)
}

/// Reads a configuration file (TOML, or JSON by content); also returns the keys it set.
pub fn load(path: &Path) -> Result<Parsed> {
    load_on(&SearchConfig::default(), path)
}

/// As [`load`], over `base` instead of the defaults.
pub fn load_on(base: &SearchConfig, path: &Path) -> Result<Parsed> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_keys_on(base, &text, path)
}

/// What each key sets, for [`help`]; every key of [`SearchConfig`] has a line.
const KEY_HELP: &[(&str, &str)] = &[
    (
        "mode",
        "annotation: terminal-guided | ppm-augmented | inference (mcts only)",
    ),
    (
        "search",
        "test-time search: mcts | beam | best-of-n | maj | dvts | greedy",
    ),
    ("rollouts", "MCTS rollouts per run"),
    ("width", "candidates per expansion (samples per beam node)"),
    ("beam_width", "beam search: nodes kept per step"),
    ("best_of", "best-of-N / maj / DVTS: trajectories per run"),
    ("runs", "independent runs per problem at test time"),
    (
        "vote_size",
        "votes use the top-k trajectories by value, 0 = all",
    ),
    ("max_depth", "steps per trajectory"),
    ("c_puct", "UCT exploration constant"),
    (
        "errors_threshold",
        "consecutive failing steps that end a branch",
    ),
    ("failure_rule", "execution | error-substring | either"),
    (
        "answer_children",
        "only-first-answer | one-answer-plus-code",
    ),
    ("positive_reward", "terminal reward of a correct answer"),
    (
        "negative_reward",
        "terminal reward of a wrong answer or a failed branch",
    ),
    ("value_scale", "PPM value = tanh(raw / value_scale)"),
    ("max_step_tokens", "tokens per generated step"),
    ("temperature", "sampling temperature"),
    ("top_p", "sampling nucleus"),
    ("top_k", "sampling top-k, 0 = off"),
    ("seed", "sampling seed"),
    ("stop", "stop strings"),
    (
        "prompt_template",
        "policy prompt (tool: the user message), {question} replaced",
    ),
    ("exec_timeout_s", "seconds per executed program"),
    (
        "device",
        "where the policy and the PPM run: cpu | cuda | cuda:N",
    ),
    (
        "quant_load",
        "quantized GGUF weights: in-place | expand (f32 at load)",
    ),
    (
        "step_format",
        "native (rStar tags, alias rstar) | tool (chat model + ```python blocks)",
    ),
    (
        "few_shot",
        "tool format: a worked example before the question",
    ),
    (
        "aggregate",
        "trajectory score from step values: last | min | product | mean",
    ),
    (
        "budget_tokens",
        "generated tokens per problem and run, then stop (0 = no cap)",
    ),
    (
        PRESET_KEY,
        "keys of a model family, set first: qwen2.5 | none (automatic for Qwen2.5 instruct)",
    ),
];

/// The keys of a configuration with what they set and their defaults (`--config`'s help), one
/// line each, in declaration order; the defaults come from [`SearchConfig::default`].
pub fn help() -> String {
    let mut defaults = match serde_json::to_value(SearchConfig::default()) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    defaults.insert(PRESET_KEY.into(), Value::String("auto".into()));
    let mut out = String::from(
        "A TOML file of search knobs; command-line flags override it; an unknown key is an error.\n\
         Keys (defaults in brackets):",
    );
    for (key, default) in &defaults {
        let what = KEY_HELP
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, w)| *w);
        let default = match default {
            Value::String(s) => s.replace('\n', "\\n"),
            Value::Array(a) => a
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", "),
            v => v.to_string(),
        };
        out.push_str(&format!("\n  {key:<17} {what}  [{default}]"));
    }
    out
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

    #[test]
    fn help_names_every_key_with_its_default() {
        let h = help();
        for k in known_keys() {
            assert!(
                KEY_HELP.iter().any(|(n, _)| *n == k),
                "key `{k}` has no help line"
            );
            assert!(h.contains(&format!("\n  {k:<17} ")), "{h}");
        }
        assert!(
            h.contains("rollouts          MCTS rollouts per run  [16]"),
            "{h}"
        );
        assert!(
            h.contains("[cpu]") && h.contains("[<end_of_step>, <end_of_code>"),
            "{h}"
        );
    }

    #[test]
    fn a_preset_sets_its_keys_before_the_tables_own() {
        let (c, keys) = parse_keys(
            "preset = \"qwen2.5\"\ntemperature = 0.2\n",
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(c.step_format, crate::steps::StepFormat::Tool);
        assert_eq!((c.temperature, c.top_p), (0.2, 0.95));
        assert_eq!((c.max_step_tokens, c.max_depth, c.c_puct), (384, 8, 2.0));
        assert_eq!(c.stop, vec!["```output".to_string()]);
        assert_eq!(c.search, crate::search::api::Strategy::Greedy);
        assert!(keys.contains(&PRESET_KEY.to_string()), "{keys:?}");
        assert_eq!(
            parse("preset = \"none\"", Path::new("n.toml")).unwrap(),
            SearchConfig::default()
        );
        for bad in ["preset = \"qwen9\"", "preset = 3"] {
            let e = parse(bad, Path::new("b.toml")).unwrap_err();
            assert!(
                matches!(&e, Error::Config { field, .. } if field == PRESET_KEY),
                "{e}"
            );
        }
    }

    #[test]
    fn overrides_apply_over_a_base_and_name_their_key() {
        let (base, _) = parse_keys("rollouts = 4\nwidth = 3\n", Path::new("s.toml")).unwrap();
        let table: Map<String, Value> =
            serde_json::from_str(r#"{"width": 5, "device": "cuda:2"}"#).unwrap();
        let (c, keys) = apply(&base, table, Path::new("<flags>")).unwrap();
        assert_eq!((c.rollouts, c.width), (4, 5));
        assert_eq!(c.device, crate::backend::Device::Cuda(2));
        assert_eq!(keys, vec!["width".to_string(), "device".to_string()]);
        let table: Map<String, Value> = serde_json::from_str(r#"{"width": -1}"#).unwrap();
        let e = apply(&base, table, Path::new("<flags>")).unwrap_err();
        assert!(
            matches!(&e, Error::Config { field, .. } if field == "width"),
            "{e}"
        );
    }
}

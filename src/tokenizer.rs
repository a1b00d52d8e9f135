//! Tokenizers and chat templates.
//!
//! Text <-> ids goes through the `tokenizers` crate reading `tokenizer.json` (both merge encodings:
//! `"a b"` strings and `["a", "b"]` pairs). Chat templates come from `chat_template.jinja`
//! (transformers 5) or the `chat_template` field of `tokenizer_config.json` (older layout, a string or a
//! list of named templates) and are rendered with minijinja configured as transformers configures
//! Jinja2 (`trim_blocks`, `lstrip_blocks`, loop controls, Python string methods, `raise_exception`,
//! a `tojson` that does not HTML-escape), so the prompt text equals `apply_chat_template`'s.

pub mod gguf;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};

/// One chat message.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A tokenizer plus the special tokens and chat template that come with it.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// `inner.get_vocab_size(true)`, computed once: `tokenizers` answers it by cloning the whole
    /// vocabulary into a fresh map (tens of milliseconds for a 150k vocabulary), and `decode`
    /// checks every id against it.
    vocab_size: usize,
    chat_template: Option<String>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    pad_token: Option<String>,
    unk_token: Option<String>,
    source: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size())
            .field("has_chat_template", &self.chat_template.is_some())
            .finish()
    }
}

/// `bos_token` etc. may be a plain string or an AddedToken object with `content`.
fn token_field(cfg: &Value, key: &str) -> Option<String> {
    match cfg.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// A `tokenizers` tokenizer from parsed `tokenizer.json` contents. The crate panics (an `expect`)
/// on some malformed sections instead of returning an error: the panic is caught and becomes an
/// error, so a bad file never takes the process (or a C caller) down. JSON syntax is checked by
/// the caller first, which keeps the fuzzers (whose panic hook aborts) off that path.
fn deserialize_tokenizer(value: Value) -> std::result::Result<tokenizers::Tokenizer, String> {
    match std::panic::catch_unwind(move || serde_json::from_value::<tokenizers::Tokenizer>(value)) {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("a malformed section made the tokenizers crate panic".into()),
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json`, `tokenizer_config.json` and `chat_template.jinja` from a model directory.
    pub fn from_dir(dir: &Path) -> Result<Tokenizer> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(Error::io(
                &path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer.json not found"),
            ));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg = if cfg_path.is_file() {
            Some(std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?)
        } else {
            None
        };
        let jinja = dir.join("chat_template.jinja");
        let jinja = if jinja.is_file() {
            Some(std::fs::read_to_string(&jinja).map_err(|e| Error::io(&jinja, e))?)
        } else {
            None
        };
        Self::from_texts(&text, cfg.as_deref(), jinja, dir)
    }

    /// A tokenizer from the texts of a model directory `dir`'s `tokenizer.json`,
    /// `tokenizer_config.json` and `chat_template.jinja` (the last two optional); `dir` names the
    /// files in errors.
    pub fn from_texts(
        tokenizer_json: &str,
        config_json: Option<&str>,
        jinja: Option<String>,
        dir: &Path,
    ) -> Result<Tokenizer> {
        let path = dir.join("tokenizer.json");
        let value: Value = serde_json::from_str(tokenizer_json)
            .map_err(|e| Error::format(&path, format!("invalid JSON: {e}")))?;
        let inner = deserialize_tokenizer(value)
            .map_err(|e| Error::format(&path, format!("cannot load tokenizer: {e}")))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: Value = match config_json {
            Some(text) => serde_json::from_str(text)
                .map_err(|e| Error::format(&cfg_path, format!("invalid JSON: {e}")))?,
            None => Value::Null,
        };
        Self::from_parts(inner, &cfg, jinja, &cfg_path, path)
    }

    /// The tokenizer of a GGUF file, built from its `tokenizer.*` metadata (see [`gguf`]); None when
    /// the file carries no tokenizer.
    pub fn from_gguf(file: &crate::model::gguf::GgufFile) -> Result<Option<Tokenizer>> {
        let Some((json, cfg)) = gguf::tokenizer_files(file)? else {
            return Ok(None);
        };
        let inner = deserialize_tokenizer(json).map_err(|e| {
            Error::format(
                &file.path,
                format!("tokenizer built from GGUF metadata: {e}"),
            )
        })?;
        Self::from_parts(inner, &cfg, None, &file.path, file.path.clone()).map(Some)
    }

    /// A tokenizer from a loaded `tokenizers` model plus `tokenizer_config.json` contents; a
    /// `chat_template.jinja` text, when given, wins over the config's template. `cfg_path` names the
    /// config in errors, `source` the tokenizer.
    fn from_parts(
        inner: tokenizers::Tokenizer,
        cfg: &Value,
        jinja: Option<String>,
        cfg_path: &Path,
        source: PathBuf,
    ) -> Result<Tokenizer> {
        let chat_template = if jinja.is_some() {
            jinja
        } else {
            match cfg.get("chat_template") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Array(list)) => {
                    let named = |n: &str| {
                        list.iter()
                            .find(|t| t.get("name").and_then(Value::as_str) == Some(n))
                    };
                    named("default")
                        .or_else(|| list.first())
                        .and_then(|t| t.get("template"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                }
                Some(_) => {
                    return Err(Error::config(
                        cfg_path,
                        "chat_template",
                        "expected a string or a list of {name, template}",
                    ))
                }
            }
        };
        Ok(Tokenizer {
            vocab_size: inner.get_vocab_size(true),
            inner,
            chat_template,
            bos_token: token_field(cfg, "bos_token"),
            eos_token: token_field(cfg, "eos_token"),
            pad_token: token_field(cfg, "pad_token"),
            unk_token: token_field(cfg, "unk_token"),
            source,
        })
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Text -> ids. `add_special_tokens` applies the tokenizer's post-processor (e.g. a BOS), as HF's
    /// `tokenizer(text)` does by default.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.inner
            .encode(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::Tokenizer(format!("encode: {e}")))
    }

    /// The BOS id that [`encode`](Self::encode) with special tokens puts first (as llama.cpp's
    /// `add_bos`), or None when the tokenizer adds none.
    pub fn added_bos(&self) -> Option<u32> {
        let bos = self
            .bos_token
            .as_deref()
            .and_then(|b| self.token_to_id(b))?;
        let with = self.encode("", true).ok()?;
        (with.first() == Some(&bos)).then_some(bos)
    }

    /// Text -> ids with each token's byte range in `text` (as HF's `return_offsets_mapping`).
    pub fn encode_with_offsets(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<Vec<(u32, (usize, usize))>> {
        self.inner
            .encode(text, add_special_tokens)
            .map(|e| {
                let ids = e.get_ids().iter().copied();
                ids.zip(e.get_offsets().iter().copied()).collect()
            })
            .map_err(|e| Error::Tokenizer(format!("encode: {e}")))
    }

    /// Ids -> text.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= self.vocab_size) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is out of range for vocabulary size {}",
                self.vocab_size
            )));
        }
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| Error::Tokenizer(format!("decode: {e}")))
    }

    /// The id of a token string, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The EOS token string from tokenizer_config.json.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// The chat template, if the model has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Renders the chat template exactly as transformers' `apply_chat_template(..., tokenize=False)`.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self.chat_template.as_deref().ok_or_else(|| {
            Error::Tokenizer(format!(
                "{}: this model has no chat template (tokenizer_config.json `chat_template` or chat_template.jinja)",
                self.source.parent().unwrap_or(Path::new(".")).display()
            ))
        })?;
        render_chat_template(
            template,
            messages,
            add_generation_prompt,
            &[
                ("bos_token", &self.bos_token),
                ("eos_token", &self.eos_token),
                ("pad_token", &self.pad_token),
                ("unk_token", &self.unk_token),
            ],
        )
    }

    /// An incremental decoder for streaming generated ids as text.
    pub fn stream(&self) -> StreamDecoder<'_> {
        StreamDecoder {
            tok: self,
            ids: Vec::new(),
            prefix: 0,
            read: 0,
        }
    }
}

/// Renders a HF chat template with transformers' Jinja settings.
pub fn render_chat_template(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    special: &[(&str, &Option<String>)],
) -> Result<String> {
    use minijinja::{Environment, ErrorKind, Value as JValue};
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<JValue, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.add_function("strftime_now", |fmt: String| -> String {
        // Templates use this for "today's date" headers; render a fixed, honest UTC date.
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        format_utc_date(secs, &fmt)
    });
    // transformers' tojson: json.dumps(x, ensure_ascii=False), no HTML escaping.
    env.add_filter(
        "tojson",
        |v: JValue, indent: Option<usize>| -> std::result::Result<String, minijinja::Error> {
            let j: Value = serde_json::to_value(&v)
                .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
            let out = match indent {
                Some(n) => {
                    let ind = " ".repeat(n);
                    let fmt = serde_json::ser::PrettyFormatter::with_indent(ind.as_bytes());
                    let mut buf = Vec::new();
                    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
                    serde::Serialize::serialize(&j, &mut ser).map_err(|e| {
                        minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string())
                    })?;
                    String::from_utf8(buf).unwrap_or_default()
                }
                None => python_json(&j),
            };
            Ok(out)
        },
    );
    env.add_template("chat", template)
        .map_err(|e| Error::Tokenizer(format!("chat template does not parse: {e}")))?;
    let tmpl = env
        .get_template("chat")
        .map_err(|e| Error::Tokenizer(format!("chat template: {e}")))?;
    let mut ctx = serde_json::Map::new();
    ctx.insert(
        "messages".into(),
        serde_json::to_value(messages).unwrap_or(Value::Null),
    );
    ctx.insert(
        "add_generation_prompt".into(),
        Value::Bool(add_generation_prompt),
    );
    for (k, v) in special {
        if let Some(s) = v {
            ctx.insert((*k).into(), Value::String(s.clone()));
        }
    }
    tmpl.render(JValue::from_serialize(&ctx))
        .map_err(|e| Error::Tokenizer(format!("chat template rendering failed: {e}")))
}

/// JSON as Python's `json.dumps(x, ensure_ascii=False)` writes it: `", "` and `": "` separators.
fn python_json(v: &Value) -> String {
    match v {
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(python_json).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), python_json(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// Minimal strftime for `%d %m %Y %b %B` (what chat templates use), from Unix seconds, UTC.
fn format_utc_date(secs: u64, fmt: &str) -> String {
    // Civil-from-days (H. Hinnant).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    const NAMES: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let name = NAMES[(m - 1) as usize];
    fmt.replace("%d", &format!("{d:02}"))
        .replace("%m", &format!("{m:02}"))
        .replace("%Y", &y.to_string())
        .replace("%B", name)
        .replace("%b", &name[..3])
}

/// Turns a growing list of ids into text deltas, holding back bytes that do not yet form whole
/// characters (the approach of HF's TextStreamer / TGI).
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl StreamDecoder<'_> {
    /// Adds one id; returns the new text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let prev = self.tok.decode(&self.ids[self.prefix..self.read], false)?;
        let now = self.tok.decode(&self.ids[self.prefix..], false)?;
        if now.len() > prev.len() && !now.ends_with('\u{FFFD}') && now.starts_with(&prev) {
            let delta = now[prev.len()..].to_owned();
            self.prefix = self.read;
            self.read = self.ids.len();
            Ok(Some(delta))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_formatting() {
        // 2024-07-26 00:00:00 UTC
        assert_eq!(format_utc_date(1_721_952_000, "%d %b %Y"), "26 Jul 2024");
        assert_eq!(format_utc_date(0, "%Y-%m-%d"), "1970-01-01");
    }

    #[test]
    fn python_style_json() {
        // Insertion order is kept, as Python dicts keep it.
        let v: Value = serde_json::from_str(r#"{"name": "f", "args": [1, "é"]}"#).unwrap();
        assert_eq!(python_json(&v), r#"{"name": "f", "args": [1, "é"]}"#);
    }
}

//! Training-data loaders: SFT examples and preference pairs, read from JSONL or a JSON array and
//! tokenized (`crate::train::pack` packs them into micro-batches).
//!
//! SFT records (one of):
//! * `{"prompt": str, "response": str}`: `tokenizer(prompt)` + `response` tokens + EOS; loss on the
//!   response and EOS;
//! * `{"query": str, "response": str}` (rStar's released SFT data and `sample_sft_data.py` output):
//!   the prompt is rStar's policy template [`SFT_PROMPT`] around the query;
//! * `{"prompt_ids": [int], "response_ids": [int]}`: ids as given (no EOS added);
//! * `{"messages": [{"role", "content"}, ...]}` (ChatML long-CoT data): rendered with the model's chat
//!   template; loss on every assistant turn (its content and end-of-turn text).
//!
//! Pair records: `{"prompt", "pos", "neg"}` (rStar's `rm_data_examples.json`; extra fields such as
//! `pos_count` are ignored) or `{"prefix_ids", "pos_ids", "neg_ids"}`. Text pairs are tokenized as
//! `prompt + pos` and `prompt + neg` (as rStar's `train/rm.py` does); their longest common token
//! prefix becomes the shared prefix, which the packed batch computes once.
//!
//! Errors name the file and the JSONL line (or array index) and field.

use std::path::Path;

use serde_json::Value;

use crate::data::prompts::{self, SFT_PROMPT};
use crate::error::{Error, Result};
use crate::tokenizer::{ChatMessage, Tokenizer};

/// One tokenized SFT example.
#[derive(Debug, Clone, PartialEq)]
pub struct SftExample {
    pub ids: Vec<u32>,
    /// `target[j]`: token `j` is predicted (from row `j - 1`) and counted in the loss.
    pub target: Vec<bool>,
}

impl SftExample {
    /// Number of loss tokens.
    pub fn n_targets(&self) -> usize {
        self.target.iter().skip(1).filter(|&&b| b).count()
    }
}

/// One tokenized preference pair.
#[derive(Debug, Clone, PartialEq)]
pub struct PairExample {
    pub prefix: Vec<u32>,
    /// Non-empty continuation of `prefix` preferred ...
    pub pos: Vec<u32>,
    /// ... over this one.
    pub neg: Vec<u32>,
}

/// What tokenizing text records needs.
#[derive(Debug, Clone, Copy)]
pub struct TokenContext<'a> {
    pub tokenizer: Option<&'a Tokenizer>,
    /// Appended after text responses.
    pub eos: Option<u32>,
    pub vocab_size: usize,
    /// Longer examples are cut (SFT) or skipped (pairs).
    pub seq_len: usize,
}

/// A loaded dataset and how many records were skipped (too long, or nothing to learn).
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    pub examples: Vec<T>,
    pub skipped: usize,
}

/// Where a record came from, for error messages.
struct Loc<'a> {
    path: &'a Path,
    what: String,
}

impl Loc<'_> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::format(self.path, format!("{}: {msg}", self.what))
    }
}

/// Reads records from a JSON array file or a JSONL file (blank lines ignored).
pub fn read_records(path: &Path) -> Result<Vec<(String, Value)>> {
    parse_records(&read(path)?, path)
}

/// As [`read_records`], on the text of the file `path` (named in errors).
pub fn parse_records(text: &str, path: &Path) -> Result<Vec<(String, Value)>> {
    if text.trim_start().starts_with('[') {
        let v: Vec<Value> = serde_json::from_str(text)
            .map_err(|e| Error::format(path, format!("invalid JSON array: {e}")))?;
        return Ok(v
            .into_iter()
            .enumerate()
            .map(|(i, r)| (format!("record {i}"), r))
            .collect());
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| Error::format(path, format!("line {}: invalid JSON: {e}", i + 1)))?;
        out.push((format!("line {}", i + 1), v));
    }
    Ok(out)
}

fn str_field<'a>(loc: &Loc, r: &'a Value, f: &str) -> Result<&'a str> {
    r.get(f)
        .and_then(Value::as_str)
        .ok_or_else(|| loc.err(format!("field `{f}`: expected a string")))
}

fn ids_field(loc: &Loc, r: &Value, f: &str, vocab: usize) -> Result<Vec<u32>> {
    let arr = r
        .get(f)
        .and_then(Value::as_array)
        .ok_or_else(|| loc.err(format!("field `{f}`: expected an array of token ids")))?;
    arr.iter()
        .map(|v| match v.as_u64() {
            Some(id) if (id as usize) < vocab => Ok(id as u32),
            _ => Err(loc.err(format!(
                "field `{f}`: {v} is not a token id below the vocabulary size {vocab}"
            ))),
        })
        .collect()
}

fn tok<'a>(loc: &Loc, cx: &TokenContext<'a>) -> Result<&'a Tokenizer> {
    cx.tokenizer.ok_or_else(|| {
        loc.err("text records need the model's tokenizer.json (or use the *_ids fields)")
    })
}

fn encode(loc: &Loc, t: &Tokenizer, text: &str, special: bool, vocab: usize) -> Result<Vec<u32>> {
    let ids = t.encode(text, special).map_err(|e| loc.err(e))?;
    match ids.iter().find(|&&i| i as usize >= vocab) {
        Some(bad) => Err(loc.err(format!(
            "token id {bad} is outside the model's vocabulary ({vocab})"
        ))),
        None => Ok(ids),
    }
}

/// Text segments `(text, trained)` of a chat, from renders of growing prefixes of the conversation.
fn chat_segments(loc: &Loc, t: &Tokenizer, msgs: &[ChatMessage]) -> Result<Vec<(String, bool)>> {
    let render =
        |m: &[ChatMessage], gen: bool| t.apply_chat_template(m, gen).map_err(|e| loc.err(e));
    let mut segs = Vec::new();
    let mut done = String::new();
    for (k, m) in msgs.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let before = render(&msgs[..k], true)?;
        let after = render(&msgs[..=k], false)?;
        let (Some(ctx), Some(reply)) = (
            before.strip_prefix(done.as_str()),
            after.strip_prefix(before.as_str()),
        ) else {
            return Err(loc.err(format!(
                "messages[{k}]: the chat template does not render this conversation as a growing prefix"
            )));
        };
        segs.push((ctx.to_owned(), false));
        segs.push((reply.to_owned(), true));
        done = after;
    }
    let full = render(msgs, false)?;
    match full.strip_prefix(done.as_str()) {
        Some(rest) if !rest.is_empty() => segs.push((rest.to_owned(), false)),
        Some(_) => {}
        None => return Err(loc.err("the chat template does not render the conversation stably")),
    }
    Ok(segs)
}

/// A chat tokenized as one text (as `apply_chat_template(tokenize=True)` does: tokenizing the turns
/// apart would split merges such as `"\n\n\n"` across a turn boundary), with the loss on every
/// token that overlaps an assistant turn's trained text (transformers' `assistant_masks` rule).
fn chat_example(
    loc: &Loc,
    t: &Tokenizer,
    msgs: &[ChatMessage],
    vocab: usize,
) -> Result<SftExample> {
    let mut text = String::new();
    let mut trained = Vec::new();
    for (seg, train) in chat_segments(loc, t, msgs)? {
        if train {
            trained.push((text.len(), text.len() + seg.len()));
        }
        text.push_str(&seg);
    }
    let toks = t
        .encode_with_offsets(&text, false)
        .map_err(|e| loc.err(e))?;
    let mut ex = SftExample {
        ids: Vec::with_capacity(toks.len()),
        target: Vec::with_capacity(toks.len()),
    };
    for (id, (a, b)) in toks {
        if id as usize >= vocab {
            return Err(loc.err(format!(
                "token id {id} is outside the model's vocabulary ({vocab})"
            )));
        }
        ex.ids.push(id);
        ex.target.push(trained.iter().any(|&(s, e)| a < e && b > s));
    }
    Ok(ex)
}

fn sft_record(loc: &Loc, r: &Value, cx: &TokenContext) -> Result<SftExample> {
    let (prompt, response): (Vec<u32>, Vec<u32>) = if r.get("prompt_ids").is_some() {
        (
            ids_field(loc, r, "prompt_ids", cx.vocab_size)?,
            ids_field(loc, r, "response_ids", cx.vocab_size)?,
        )
    } else if let Some(m) = r.get("messages") {
        let msgs: Vec<ChatMessage> = serde_json::from_value(m.clone()).map_err(|e| {
            loc.err(format!(
                "field `messages`: expected [{{role, content}}]: {e}"
            ))
        })?;
        return chat_example(loc, tok(loc, cx)?, &msgs, cx.vocab_size);
    } else {
        let t = tok(loc, cx)?;
        let prompt = match r.get("query") {
            Some(_) => prompts::fill(SFT_PROMPT, str_field(loc, r, "query")?),
            None => str_field(loc, r, "prompt")?.to_owned(),
        };
        let mut resp = encode(loc, t, str_field(loc, r, "response")?, false, cx.vocab_size)?;
        resp.extend(cx.eos);
        (encode(loc, t, &prompt, true, cx.vocab_size)?, resp)
    };
    let mut target = vec![false; prompt.len()];
    target.extend(std::iter::repeat_n(true, response.len()));
    let mut ids = prompt;
    ids.extend(response);
    Ok(SftExample { ids, target })
}

/// Loads SFT examples (see the module doc for the formats), truncated to `seq_len` tokens; examples
/// left with no loss token are skipped.
pub fn load_sft(path: &Path, cx: &TokenContext) -> Result<Loaded<SftExample>> {
    parse_sft(&read(path)?, path, cx)
}

/// As [`load_sft`], on the text of the file `path` (named in errors).
pub fn parse_sft(text: &str, path: &Path, cx: &TokenContext) -> Result<Loaded<SftExample>> {
    parse_with(text, path, |loc, r| {
        let mut ex = sft_record(loc, r, cx)?;
        ex.ids.truncate(cx.seq_len);
        ex.target.truncate(cx.seq_len);
        Ok((ex.n_targets() > 0).then_some(ex))
    })
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Reads every record of `text` (the file `path`) through `parse` (which returns None for a
/// record to skip).
fn parse_with<T>(
    text: &str,
    path: &Path,
    mut parse: impl FnMut(&Loc, &Value) -> Result<Option<T>>,
) -> Result<Loaded<T>> {
    let mut out = Loaded {
        examples: Vec::new(),
        skipped: 0,
    };
    for (what, r) in parse_records(text, path)? {
        let loc = Loc { path, what };
        if !r.is_object() {
            return Err(loc.err("expected a JSON object"));
        }
        match parse(&loc, &r)? {
            Some(ex) => out.examples.push(ex),
            None => out.skipped += 1,
        }
    }
    Ok(out)
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn pair_record(loc: &Loc, r: &Value, cx: &TokenContext) -> Result<PairExample> {
    let (full_pos, full_neg) = if r.get("prefix_ids").is_some() {
        let prefix = ids_field(loc, r, "prefix_ids", cx.vocab_size)?;
        let (p, n) = (
            ids_field(loc, r, "pos_ids", cx.vocab_size)?,
            ids_field(loc, r, "neg_ids", cx.vocab_size)?,
        );
        if p.is_empty() || n.is_empty() {
            return Err(loc.err("`pos_ids` and `neg_ids` must not be empty"));
        }
        ([&prefix[..], &p].concat(), [&prefix[..], &n].concat())
    } else {
        let t = tok(loc, cx)?;
        let prompt = str_field(loc, r, "prompt")?;
        let (p, n) = (str_field(loc, r, "pos")?, str_field(loc, r, "neg")?);
        (
            encode(loc, t, &format!("{prompt}{p}"), true, cx.vocab_size)?,
            encode(loc, t, &format!("{prompt}{n}"), true, cx.vocab_size)?,
        )
    };
    let shortest = full_pos.len().min(full_neg.len());
    if shortest == 0 {
        return Err(loc.err("empty preference pair"));
    }
    // Share every token both sides agree on, leaving each branch at least its last token (the
    // scored one).
    let k = common_prefix(&full_pos, &full_neg).min(shortest - 1);
    Ok(PairExample {
        prefix: full_pos[..k].to_vec(),
        pos: full_pos[k..].to_vec(),
        neg: full_neg[k..].to_vec(),
    })
}

/// Loads preference pairs; pairs whose prefix + longer side exceeds `seq_len` are skipped.
pub fn load_pairs(path: &Path, cx: &TokenContext) -> Result<Loaded<PairExample>> {
    parse_pairs(&read(path)?, path, cx)
}

/// As [`load_pairs`], on the text of the file `path` (named in errors).
pub fn parse_pairs(text: &str, path: &Path, cx: &TokenContext) -> Result<Loaded<PairExample>> {
    parse_with(text, path, |loc, r| {
        let p = pair_record(loc, r, cx)?;
        Ok((p.prefix.len() + p.pos.len().max(p.neg.len()) <= cx.seq_len).then_some(p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(vocab: usize) -> TokenContext<'static> {
        TokenContext {
            tokenizer: None,
            eos: None,
            vocab_size: vocab,
            seq_len: 64,
        }
    }

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn id_records_and_errors_name_the_line() {
        let f = write("{\"prompt_ids\": [1, 2], \"response_ids\": [3, 4]}\n\n{\"prompt_ids\": [1], \"response_ids\": [99]}\n");
        let e = load_sft(f.path(), &cx(10)).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("response_ids"), "{e}");
        let ok = load_sft(f.path(), &cx(100)).unwrap();
        assert_eq!(ok.examples[0].ids, vec![1, 2, 3, 4]);
        assert_eq!(ok.examples[0].target, vec![false, false, true, true]);
        let f = write("[{\"prefix_ids\": [1, 2], \"pos_ids\": [3], \"neg_ids\": []}]");
        let e = load_pairs(f.path(), &cx(10)).unwrap_err().to_string();
        assert!(e.contains("record 0"), "{e}");
        let f = write("{\"prompt\": \"x\"}\n");
        let e = load_sft(f.path(), &cx(10)).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("tokenizer"), "{e}");
    }
}

//! From-scratch model creation (`rstar init-model`): a small byte-level BPE tokenizer trained on
//! the text of a problem/solution JSONL file, and a Qwen2-architecture decoder with tied
//! embeddings and seeded random weights, written as a Hugging Face directory that librstar's
//! loaders, trainers and search, and HF transformers, all load.
//!
//! Tokenizer: GPT-2-style byte-level pre-tokenization (every byte is in the base alphabet, so any
//! text encodes), BPE merges learned from the corpus up to `vocab_size`. The first ids are the
//! added tokens: the EOS/pad token [`EOS`] (special), then rStar's step tags ([`STEP_TOKENS`]) and
//! the prompt's role markers ([`ROLE_TOKENS`]) as ordinary added tokens: always one token each,
//! and kept by `decode(.., skip_special_tokens = true)` as well, because the search decodes them as
//! text (stop strings, step classification). The tags are cut out of the corpus before the merges
//! are learned, so no merge is spent on them. Each record contributes its question inside both
//! policy prompts ([`crate::data::prompts`])
//! and its response, so the prompts' words get their own merges.
//!
//! Weights: normal(0, `init_std`) for every matrix (the embedding included), ones for the RMSNorm
//! weights, zeros for the q/k/v biases; the same seed gives the same bytes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    TokenizerBuilder,
};

use crate::data::prompts::{self, POLICY_PROMPT, SFT_PROMPT};
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::steps::tags;
use crate::train::checkpoint::write_safetensors;
use crate::train::model::normal;

/// End of sequence (also the pad token).
pub const EOS: &str = "<|endoftext|>";
/// rStar's step tags: one token each.
pub const STEP_TOKENS: &[&str] = &[
    tags::CODE,
    tags::END_OF_STEP,
    tags::END_OF_CODE,
    tags::OUTPUT,
    tags::END_OF_OUTPUT,
    tags::ANSWER,
    tags::END_OF_ANSWER,
];
/// The role markers of the policy prompts.
pub const ROLE_TOKENS: &[&str] = &["<|user|>", "<|assistant|>"];

/// The shape and initialisation of a new model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InitConfig {
    /// Total vocabulary: added tokens + 256 bytes + merges (the merges stop early on a small corpus).
    pub vocab_size: usize,
    /// Merges need at least this many occurrences.
    pub min_frequency: u64,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    /// Standard deviation of the matrices.
    pub init_std: f32,
    pub seed: u64,
}

impl Default for InitConfig {
    fn default() -> Self {
        InitConfig {
            vocab_size: 1024,
            min_frequency: 2,
            hidden_size: 256,
            num_layers: 4,
            num_heads: 4,
            num_kv_heads: 2,
            intermediate_size: 704,
            max_position_embeddings: 2048,
            rope_theta: 10000.0,
            rms_norm_eps: 1e-6,
            init_std: 0.02,
            seed: 0,
        }
    }
}

impl InitConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        let added = 1 + STEP_TOKENS.len() + ROLE_TOKENS.len();
        if self.vocab_size < added + 256 {
            return bad(format!(
                "vocab_size must be at least {} ({added} added tokens + 256 bytes), got {}",
                added + 256,
                self.vocab_size
            ));
        }
        if [
            self.hidden_size,
            self.num_layers,
            self.num_heads,
            self.num_kv_heads,
            self.intermediate_size,
            self.max_position_embeddings,
        ]
        .contains(&0)
        {
            return bad("hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size and max_position_embeddings must be positive".into());
        }
        if !self.hidden_size.is_multiple_of(self.num_heads)
            || !(self.hidden_size / self.num_heads).is_multiple_of(2)
        {
            return bad(format!(
                "hidden_size {} must be num_heads {} times an even head dimension",
                self.hidden_size, self.num_heads
            ));
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return bad(format!(
                "num_heads {} must be a multiple of num_kv_heads {}",
                self.num_heads, self.num_kv_heads
            ));
        }
        if !(self.init_std.is_finite() && self.init_std > 0.0) {
            return bad(format!("init_std must be positive, got {}", self.init_std));
        }
        Ok(())
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// Parameters of the decoder for a vocabulary of `vocab` tokens (tied embeddings: the LM head
    /// is the embedding).
    pub fn param_count(&self, vocab: usize) -> usize {
        let (h, i) = (self.hidden_size, self.intermediate_size);
        let q = self.num_heads * self.head_dim();
        let kv = self.num_kv_heads * self.head_dim();
        let attn = (h * q + q) + 2 * (h * kv + kv) + q * h;
        let mlp = 3 * h * i;
        let norms = 2 * h;
        vocab * h + self.num_layers * (attn + mlp + norms) + h
    }
}

/// What [`init_model`] made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InitSummary {
    pub dir: PathBuf,
    /// Records and characters of the tokenizer's corpus.
    pub records: usize,
    pub corpus_chars: usize,
    /// The trained vocabulary (at most the requested size).
    pub vocab_size: usize,
    pub eos_token_id: u32,
    pub params: usize,
    /// Mean tokens per response of the corpus, a measure of the tokenizer's compression.
    pub mean_response_tokens: f64,
}

/// The texts of a JSONL (or JSON array) file of problems: per record the question (`question`,
/// `query` or `problem`) inside both policy prompts, and the `response` (or `solution`) if any.
/// Returns (texts, records, responses).
pub fn corpus(path: &Path) -> Result<(Vec<String>, usize, Vec<String>)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let records: Vec<(String, Value)> = if text.trim_start().starts_with('[') {
        let v: Vec<Value> = serde_json::from_str(&text)
            .map_err(|e| Error::format(path, format!("invalid JSON array: {e}")))?;
        v.into_iter()
            .enumerate()
            .map(|(i, r)| (format!("element {i}"), r))
            .collect()
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .map(|r| (format!("line {}", i + 1), r))
                    .map_err(|e| Error::format(path, format!("line {}: invalid JSON: {e}", i + 1)))
            })
            .collect::<Result<_>>()?
    };
    let mut texts = Vec::new();
    let mut responses = Vec::new();
    for (loc, r) in &records {
        let field = |keys: &[&str]| keys.iter().find_map(|k| r.get(*k).and_then(Value::as_str));
        let q = field(&["question", "query", "problem"]).ok_or_else(|| {
            Error::format(
                path,
                format!("{loc}: no string field `question`, `query` or `problem`"),
            )
        })?;
        texts.push(prompts::fill(POLICY_PROMPT, q));
        texts.push(prompts::fill(SFT_PROMPT, q));
        if let Some(resp) = field(&["response", "solution"]) {
            texts.push(resp.to_owned());
            responses.push(resp.to_owned());
        }
    }
    if records.is_empty() {
        return Err(Error::format(path, "no records"));
    }
    Ok((texts, records.len(), responses))
}

/// The added tokens in id order (ids 0, 1, ...).
fn added_tokens() -> Vec<AddedToken> {
    let mut v = vec![AddedToken::from(EOS, true)];
    v.extend(
        STEP_TOKENS
            .iter()
            .chain(ROLE_TOKENS)
            .map(|t| AddedToken::from(*t, false)),
    );
    v
}

/// Trains the tokenizer on `texts`; returns `tokenizer.json` as a `tokenizers::Tokenizer`.
pub fn train_tokenizer(
    texts: &[String],
    vocab_size: usize,
    min_frequency: u64,
) -> Result<tokenizers::Tokenizer> {
    let err = |e: tokenizers::Error| Error::Tokenizer(format!("training the BPE tokenizer: {e}"));
    let byte_level = ByteLevel::new(false, false, true);
    // Every digit is its own token (as in Qwen2 and Llama 3): a number then has one spelling
    // wherever it appears (question, code, output, `\boxed{}`), so a small model copies it digit
    // by digit instead of learning a separate merge for each context.
    let pre = Sequence::new(vec![
        PreTokenizerWrapper::Digits(Digits::new(true)),
        PreTokenizerWrapper::ByteLevel(byte_level),
    ]);
    let mut tok = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default())
    .with_normalizer(None)
    .with_pre_tokenizer(Some(PreTokenizerWrapper::Sequence(pre)))
    .with_post_processor(None)
    .with_decoder(Some(DecoderWrapper::ByteLevel(byte_level)))
    .build()
    .map_err(err)?;
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(min_frequency)
        .show_progress(false)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(added_tokens())
        .build();
    // The tags become added tokens: cut them out so that no merge is learned for them.
    let cut = |s: &String| {
        let mut s = s.clone();
        for t in STEP_TOKENS.iter().chain(ROLE_TOKENS).chain([&EOS]) {
            s = s.replace(t, "\n");
        }
        s
    };
    tok.train(&mut trainer, texts.iter().map(cut))
        .map_err(err)?;
    let json = tok.to_string(false).map_err(err)?;
    json.parse::<tokenizers::Tokenizer>().map_err(err)
}

/// `tokenizer_config.json` for a tokenizer whose EOS is [`EOS`].
fn tokenizer_config(max_len: usize) -> Value {
    let decl: serde_json::Map<String, Value> = added_tokens()
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (
                i.to_string(),
                json!({"content": t.content, "lstrip": false, "normalized": false,
                       "rstrip": false, "single_word": false, "special": t.special}),
            )
        })
        .collect();
    json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": decl,
        "bos_token": null,
        "eos_token": EOS,
        "pad_token": EOS,
        "unk_token": null,
        "model_max_length": max_len,
        "clean_up_tokenization_spaces": false,
    })
}

/// `config.json` of the Qwen2 decoder.
fn model_config(c: &InitConfig, vocab: usize, eos: u32) -> Value {
    json!({
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": vocab,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_layers,
        "num_attention_heads": c.num_heads,
        "num_key_value_heads": c.num_kv_heads,
        "max_position_embeddings": c.max_position_embeddings,
        "max_window_layers": c.num_layers,
        "rope_theta": c.rope_theta,
        "rms_norm_eps": c.rms_norm_eps,
        "hidden_act": "silu",
        "tie_word_embeddings": true,
        "use_sliding_window": false,
        "sliding_window": null,
        "attention_dropout": 0.0,
        "initializer_range": c.init_std,
        "bos_token_id": null,
        "eos_token_id": eos,
        "pad_token_id": eos,
        "use_cache": true,
        "torch_dtype": "float32",
    })
}

/// The decoder's tensors under their checkpoint names, seeded.
pub fn init_weights(c: &InitConfig, vocab: usize) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut rng = Rng::new(c.seed);
    let std = c.init_std;
    let mut mat = |rows: usize, cols: usize| -> Vec<f32> {
        (0..rows * cols).map(|_| std * normal(&mut rng)).collect()
    };
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let q = c.num_heads * c.head_dim();
    let kv = c.num_kv_heads * c.head_dim();
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![vocab, h],
        mat(vocab, h),
    )];
    for l in 0..c.num_layers {
        let p = format!("model.layers.{l}");
        for (n, rows) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
            out.push((
                format!("{p}.self_attn.{n}.weight"),
                vec![rows, h],
                mat(rows, h),
            ));
            out.push((
                format!("{p}.self_attn.{n}.bias"),
                vec![rows],
                vec![0.0; rows],
            ));
        }
        out.push((
            format!("{p}.self_attn.o_proj.weight"),
            vec![h, q],
            mat(h, q),
        ));
        for n in ["gate_proj", "up_proj"] {
            out.push((format!("{p}.mlp.{n}.weight"), vec![i, h], mat(i, h)));
        }
        out.push((format!("{p}.mlp.down_proj.weight"), vec![h, i], mat(h, i)));
        for n in ["input_layernorm", "post_attention_layernorm"] {
            out.push((format!("{p}.{n}.weight"), vec![h], vec![1.0; h]));
        }
    }
    out.push(("model.norm.weight".into(), vec![h], vec![1.0; h]));
    out
}

/// Trains the tokenizer on `data` and writes a new model into `out` (created; existing model
/// files are overwritten).
pub fn init_model(data: &Path, out: &Path, c: &InitConfig) -> Result<InitSummary> {
    c.validate()?;
    let (texts, records, responses) = corpus(data)?;
    let tok = train_tokenizer(&texts, c.vocab_size, c.min_frequency)?;
    let vocab = tok.get_vocab_size(true);
    let eos = tok
        .token_to_id(EOS)
        .ok_or_else(|| Error::Internal(format!("{EOS} is not in the trained vocabulary")))?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let write_json = |name: &str, v: &Value| -> Result<()> {
        let p = out.join(name);
        let text = serde_json::to_string_pretty(v).map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))
    };
    let tok_path = out.join("tokenizer.json");
    tok.save(&tok_path, false)
        .map_err(|e| Error::format(&tok_path, format!("cannot write the tokenizer: {e}")))?;
    write_json(
        "tokenizer_config.json",
        &tokenizer_config(c.max_position_embeddings),
    )?;
    write_json("config.json", &model_config(c, vocab, eos))?;
    write_json(
        "generation_config.json",
        &json!({"eos_token_id": eos, "pad_token_id": eos, "do_sample": false}),
    )?;
    let weights = init_weights(c, vocab);
    let params = weights.iter().map(|(_, _, v)| v.len()).sum();
    let views: Vec<(String, Vec<usize>, &[f32])> = weights
        .iter()
        .map(|(n, s, v)| (n.clone(), s.clone(), &v[..]))
        .collect();
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(&out.join("model.safetensors"), &views, Some(meta))?;
    let n_resp_tokens: usize = responses
        .iter()
        .map(|r| {
            tok.encode(r.as_str(), false)
                .map(|e| e.len())
                .unwrap_or_default()
        })
        .sum();
    Ok(InitSummary {
        dir: out.to_path_buf(),
        records,
        corpus_chars: texts.iter().map(|t| t.len()).sum(),
        vocab_size: vocab,
        eos_token_id: eos,
        params,
        mean_response_tokens: n_resp_tokens as f64 / responses.len().max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generate::{generate, write_jsonl};

    fn problems_file(dir: &Path, n: usize) -> PathBuf {
        let mut ps = generate(1, n, 1).unwrap();
        ps.extend(generate(4, n, 2).unwrap());
        let p = dir.join("p.jsonl");
        write_jsonl(&p, &ps, true).unwrap();
        p
    }

    #[test]
    fn tokenizer_keeps_tags_whole_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let data = problems_file(dir.path(), 60);
        let (texts, _, responses) = corpus(&data).unwrap();
        let tok = train_tokenizer(&texts, 600, 2).unwrap();
        assert!(tok.get_vocab_size(true) <= 600);
        for (i, t) in [EOS]
            .iter()
            .chain(STEP_TOKENS)
            .chain(ROLE_TOKENS)
            .enumerate()
        {
            assert_eq!(tok.token_to_id(t), Some(i as u32), "{t}");
            let e = tok.encode(format!("x{t}y"), false).unwrap();
            assert!(
                e.get_ids().contains(&(i as u32)),
                "{t}: {:?}",
                e.get_tokens()
            );
        }
        // A generated solution (and a prompt, and text the corpus never had) round-trip exactly.
        let prompt = prompts::fill(POLICY_PROMPT, "Ünïcødé ≥ 3? 12½ €");
        for s in [&responses[0], &responses[responses.len() - 1], &prompt] {
            let ids = tok.encode(s.as_str(), false).unwrap().get_ids().to_vec();
            assert_eq!(&tok.decode(&ids, false).unwrap(), s);
        }
        // Step tags survive skip_special_tokens (the EOS does not).
        let ids = tok
            .encode(format!("a{}{EOS}", tags::END_OF_STEP), false)
            .unwrap();
        assert_eq!(
            tok.decode(ids.get_ids(), true).unwrap(),
            format!("a{}", tags::END_OF_STEP)
        );
        // Digits are single tokens, spelled the same in every context.
        for s in ["x = 5530\n", "\\boxed{5530}", "<output>5530"] {
            let e = tok.encode(s, false).unwrap();
            let toks = e.get_tokens();
            let i = toks
                .iter()
                .position(|t| t == "5")
                .unwrap_or_else(|| panic!("{toks:?}"));
            assert_eq!(&toks[i..i + 4], ["5", "5", "3", "0"], "{s}: {toks:?}");
        }
        // Merges were learned: a solution is much shorter in tokens than in bytes.
        let n = tok.encode(responses[0].as_str(), false).unwrap().len();
        assert!(n * 2 < responses[0].len(), "{n} tokens");
    }

    fn tiny() -> InitConfig {
        InitConfig {
            vocab_size: 400,
            hidden_size: 32,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            intermediate_size: 48,
            max_position_embeddings: 512,
            seed: 5,
            ..InitConfig::default()
        }
    }

    #[test]
    fn param_count_matches_a_hand_count() {
        // Defaults, vocab 1024: embed 1024*256; per layer q 256*256+256, k and v 256*128+128 each,
        // o 256*256, mlp 3*256*704, norms 2*256; final norm 256.
        let c = InitConfig::default();
        let layer = (65536 + 256) + 2 * (32768 + 128) + 65536 + 3 * 256 * 704 + 512;
        assert_eq!(c.param_count(1024), 1024 * 256 + 4 * layer + 256);
        assert_eq!(c.param_count(1024), 3_215_616);
        let w = init_weights(&tiny(), 300);
        let n: usize = w.iter().map(|(_, _, v)| v.len()).sum();
        assert_eq!(n, tiny().param_count(300));
    }

    #[test]
    fn init_writes_a_loadable_deterministic_model() {
        let dir = tempfile::tempdir().unwrap();
        let data = problems_file(dir.path(), 30);
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let s = init_model(&data, &a, &tiny()).unwrap();
        init_model(&data, &b, &tiny()).unwrap();
        for f in ["model.safetensors", "tokenizer.json", "config.json"] {
            assert_eq!(
                std::fs::read(a.join(f)).unwrap(),
                std::fs::read(b.join(f)).unwrap(),
                "{f}"
            );
        }
        let m = crate::train::TrainModel::load(&a).unwrap();
        assert_eq!(m.config.vocab_size, s.vocab_size);
        assert!(m.config.tie_word_embeddings);
        assert_eq!(m.config.eos_token_ids, vec![0]);
        let n: usize = m.params.iter().map(|p| p.value.len()).sum();
        assert_eq!(n, tiny().param_count(s.vocab_size));
        assert_eq!(n, s.params);
        // Statistics of the init: matrices ~ N(0, 0.02), norms 1, biases 0.
        let e = &m.params[0].value;
        let var = e.iter().map(|x| x * x).sum::<f32>() / e.len() as f32;
        assert!((var.sqrt() - 0.02).abs() < 0.002, "{}", var.sqrt());
        let tok = crate::tokenizer::Tokenizer::from_dir(&a).unwrap();
        assert_eq!(tok.eos_token(), Some(EOS));
        // Another seed, other weights.
        let c = InitConfig { seed: 6, ..tiny() };
        init_model(&data, &b, &c).unwrap();
        assert_ne!(
            std::fs::read(a.join("model.safetensors")).unwrap(),
            std::fs::read(b.join("model.safetensors")).unwrap()
        );
    }

    #[test]
    fn bad_shapes_and_files_are_named() {
        let c = InitConfig {
            num_heads: 3,
            ..InitConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("num_heads"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.jsonl");
        std::fs::write(&p, "{\"question\": \"q\"}\n{\"x\": 1}\n").unwrap();
        let e = corpus(&p).unwrap_err().to_string();
        assert!(e.contains("bad.jsonl") && e.contains("line 2"), "{e}");
    }
}

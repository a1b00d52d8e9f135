//! `rstar init-model`: a new small model from scratch (a byte-level BPE tokenizer trained on a
//! problem file, a Qwen2 decoder with seeded random weights), ready for `rstar train sft`.

use std::path::PathBuf;

use clap::Args;
use rstar::train::init::{init_model, InitConfig};

#[derive(Args, Debug)]
pub struct InitModelArgs {
    /// Tokenizer corpus: JSONL or a JSON array of {question|query|problem, response|solution}
    /// (e.g. `rstar gen-problems --solutions`).
    #[arg(long)]
    pub data: PathBuf,
    /// Output model directory (config.json, model.safetensors, tokenizer.json, tokenizer_config.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Vocabulary size: 10 added tokens (EOS, step tags, role markers) + 256 bytes + BPE merges.
    #[arg(long, default_value_t = InitConfig::default().vocab_size)]
    pub vocab_size: usize,
    /// Minimum count of a merged pair.
    #[arg(long, default_value_t = InitConfig::default().min_frequency)]
    pub min_frequency: u64,
    #[arg(long, default_value_t = InitConfig::default().hidden_size)]
    pub hidden_size: usize,
    #[arg(long, default_value_t = InitConfig::default().num_layers)]
    pub layers: usize,
    #[arg(long, default_value_t = InitConfig::default().num_heads)]
    pub heads: usize,
    #[arg(long, default_value_t = InitConfig::default().num_kv_heads)]
    pub kv_heads: usize,
    #[arg(long, default_value_t = InitConfig::default().intermediate_size)]
    pub intermediate_size: usize,
    /// Longest sequence (prompt + whole solution) the model is meant for.
    #[arg(long, default_value_t = InitConfig::default().max_position_embeddings)]
    pub max_position_embeddings: usize,
    #[arg(long, default_value_t = InitConfig::default().rope_theta)]
    pub rope_theta: f64,
    /// Standard deviation of the random matrices.
    #[arg(long, default_value_t = InitConfig::default().init_std)]
    pub init_std: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: InitModelArgs) -> rstar::Result<()> {
    let c = InitConfig {
        vocab_size: a.vocab_size,
        min_frequency: a.min_frequency,
        hidden_size: a.hidden_size,
        num_layers: a.layers,
        num_heads: a.heads,
        num_kv_heads: a.kv_heads,
        intermediate_size: a.intermediate_size,
        max_position_embeddings: a.max_position_embeddings,
        rope_theta: a.rope_theta,
        init_std: a.init_std,
        seed: a.seed,
        ..InitConfig::default()
    };
    let s = init_model(&a.data, &a.out, &c)?;
    eprintln!(
        "{}: {} records, vocabulary {} (eos id {}), {} parameters ({:.2} M), {:.1} tokens per response",
        s.dir.display(),
        s.records,
        s.vocab_size,
        s.eos_token_id,
        s.params,
        s.params as f64 / 1e6,
        s.mean_response_tokens
    );
    Ok(())
}

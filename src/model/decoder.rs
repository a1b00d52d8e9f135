//! The one decoder shared by Qwen2, Llama, Mistral and Phi-3.
//!
//! The architectures differ only in how checkpoint tensors map onto the same blocks (fused or split
//! q/k/v and gate/up projections, biases, tied head), which [`Model::load`] resolves once. The forward
//! pass is pre-norm: `x += attn(rms(x)); x += mlp(rms(x))`, then a final RMSNorm and the LM head.

use std::path::Path;

use crate::backend::cpu;
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::model::layout::{LayerLayout, LinearLayout, EMBED, FINAL_NORM, LM_HEAD};
use crate::model::weights::{Weight, WeightStore};

/// A linear layer whose output is the concatenation of one or more stored matrices
/// (e.g. q|k|v from three tensors, or one fused `qkv_proj`), plus an optional bias.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Each `[n_i, in_dim]`; output columns are laid out in order.
    parts: Vec<Weight>,
    /// `[out_dim]` if present.
    bias: Option<Vec<f32>>,
    pub in_dim: usize,
    pub out_dim: usize,
}

impl Linear {
    /// `out[t, out_dim] = x[t, in_dim] @ W.T + b`.
    pub fn forward(&self, x: &[f32], t: usize, out: &mut [f32]) {
        let mut col = 0;
        for w in &self.parts {
            cpu::matmul(x, t, w, out, self.out_dim, col);
            col += w.shape[0];
        }
        if let Some(b) = &self.bias {
            for row in out.chunks_exact_mut(self.out_dim).take(t) {
                cpu::add_inplace(row, b);
            }
        }
    }

    /// Stored matrices, in output order.
    pub fn parts(&self) -> &[Weight] {
        &self.parts
    }
}

#[derive(Debug, Clone)]
struct Layer {
    /// `[hidden]`
    attn_norm: Vec<f32>,
    /// `[hidden]`
    mlp_norm: Vec<f32>,
    /// hidden -> q_dim + 2 * kv_dim
    qkv: Linear,
    /// q_dim -> hidden
    o: Linear,
    /// hidden -> 2 * intermediate (gate | up)
    gate_up: Linear,
    /// intermediate -> hidden
    down: Linear,
}

/// Per-sequence key/value cache: for each layer `[len, kv_dim]` rows, grown as tokens arrive.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
}

impl KvCache {
    /// Tokens cached so far (= position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops everything after the first `len` tokens.
    pub fn truncate(&mut self, len: usize, kv_dim: usize) {
        if len < self.len {
            for l in self.k.iter_mut().chain(self.v.iter_mut()) {
                l.truncate(len * kv_dim);
            }
            self.len = len;
        }
    }
}

/// A loaded causal language model.
#[derive(Debug)]
pub struct Model {
    pub config: ModelConfig,
    /// `[vocab, hidden]`
    embed: Weight,
    layers: Vec<Layer>,
    /// `[hidden]`
    final_norm: Vec<f32>,
    /// `[vocab, hidden]` (the embedding matrix itself when tied)
    lm_head: Weight,
    /// `[rotary_dim / 2]`
    inv_freq: Vec<f32>,
}

struct Loader<'a> {
    store: &'a WeightStore,
    cfg: &'a ModelConfig,
}

impl Loader<'_> {
    fn vec(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        Ok(self.store.get(name, &[len])?.to_f32_vec())
    }

    fn mat(&self, name: &str, rows: usize, cols: usize) -> Result<Weight> {
        self.store.get(name, &[rows, cols])
    }

    /// A linear layer from its checkpoint layout.
    fn linear(&self, l: &LinearLayout) -> Result<Linear> {
        let weights = l
            .parts
            .iter()
            .map(|(n, rows)| self.mat(&format!("{n}.weight"), *rows, l.in_dim))
            .collect::<Result<Vec<_>>>()?;
        let out_dim = l.out_dim();
        let bias = if l.bias {
            let mut b = Vec::with_capacity(out_dim);
            for (n, rows) in &l.parts {
                b.extend(self.vec(&format!("{n}.bias"), *rows)?);
            }
            Some(b)
        } else {
            None
        };
        Ok(Linear {
            parts: weights,
            bias,
            in_dim: l.in_dim,
            out_dim,
        })
    }

    fn layer(&self, i: usize) -> Result<Layer> {
        let l = LayerLayout::new(self.cfg, i);
        let h = self.cfg.hidden_size;
        Ok(Layer {
            attn_norm: self.vec(&l.attn_norm, h)?,
            mlp_norm: self.vec(&l.mlp_norm, h)?,
            qkv: self.linear(&l.qkv)?,
            o: self.linear(&l.o)?,
            gate_up: self.linear(&l.gate_up)?,
            down: self.linear(&l.down)?,
        })
    }
}

impl Model {
    /// Loads a Hugging Face model directory (config.json + safetensors).
    pub fn load(dir: &Path) -> Result<Model> {
        if !dir.is_dir() {
            return Err(Error::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "model directory not found"),
            ));
        }
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let store = WeightStore::open_dir(dir)?;
        Self::from_store(config, &store)
    }

    /// Builds the model from a parsed config and opened weights.
    pub fn from_store(config: ModelConfig, store: &WeightStore) -> Result<Model> {
        let ld = Loader {
            store,
            cfg: &config,
        };
        let (v, h) = (config.vocab_size, config.hidden_size);
        let embed = ld.mat(EMBED, v, h)?;
        let layers = (0..config.num_layers)
            .map(|i| ld.layer(i))
            .collect::<Result<Vec<_>>>()?;
        let final_norm = ld.vec(FINAL_NORM, h)?;
        let lm_head = if config.tie_word_embeddings {
            embed.clone()
        } else {
            ld.mat(LM_HEAD, v, h)?
        };
        let inv_freq = config.rope_inv_freq();
        Ok(Model {
            config,
            embed,
            layers,
            final_norm,
            lm_head,
            inv_freq,
        })
    }

    /// An empty cache for one sequence.
    pub fn new_cache(&self) -> KvCache {
        KvCache {
            k: vec![Vec::new(); self.config.num_layers],
            v: vec![Vec::new(); self.config.num_layers],
            len: 0,
        }
    }

    /// Runs `tokens` (continuing the sequence in `cache`) and returns the final-norm hidden states
    /// `[tokens.len(), hidden]`.
    pub fn forward_hidden(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        let c = &self.config;
        let t = tokens.len();
        let (h, qd, kvd, inter) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size);
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= c.vocab_size) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is out of range for vocabulary size {}",
                c.vocab_size
            )));
        }
        if cache.k.len() != c.num_layers {
            return Err(Error::InvalidArgument(
                "KV cache was made for another model".into(),
            ));
        }
        let start = cache.len;
        let eps = c.rms_norm_eps as f32;

        // Activations, row-major [t, width].
        let mut x = vec![0f32; t * h];
        for (row, &id) in x.chunks_exact_mut(h).zip(tokens) {
            self.embed.row_to_f32(id as usize, row);
        }
        let mut normed = vec![0f32; t * h];
        let mut qkv = vec![0f32; t * (qd + 2 * kvd)];
        let mut attn = vec![0f32; t * qd];
        let mut proj = vec![0f32; t * h];
        let mut gate_up = vec![0f32; t * 2 * inter];
        let mut act = vec![0f32; t * inter];
        let mut q = vec![0f32; t * qd];

        for (li, layer) in self.layers.iter().enumerate() {
            cpu::rms_norm(&x, &layer.attn_norm, eps, &mut normed);
            layer.qkv.forward(&normed, t, &mut qkv);
            let (kc, vc) = (&mut cache.k[li], &mut cache.v[li]);
            for (ti, row) in qkv.chunks_exact_mut(qd + 2 * kvd).enumerate() {
                let pos = start + ti;
                let (qr, rest) = row.split_at_mut(qd);
                let (kr, vr) = rest.split_at_mut(kvd);
                cpu::rope(qr, c.num_heads, c.head_dim, &self.inv_freq, pos);
                cpu::rope(kr, c.num_kv_heads, c.head_dim, &self.inv_freq, pos);
                q[ti * qd..(ti + 1) * qd].copy_from_slice(qr);
                kc.extend_from_slice(kr);
                vc.extend_from_slice(vr);
            }
            let shape = cpu::AttnShape {
                n_heads: c.num_heads,
                n_kv_heads: c.num_kv_heads,
                head_dim: c.head_dim,
                start,
                window: c.sliding_window,
            };
            cpu::attention(&q, kc, vc, shape, &mut attn);
            layer.o.forward(&attn, t, &mut proj);
            cpu::add_inplace(&mut x, &proj);

            cpu::rms_norm(&x, &layer.mlp_norm, eps, &mut normed);
            layer.gate_up.forward(&normed, t, &mut gate_up);
            for (ti, row) in gate_up.chunks_exact_mut(2 * inter).enumerate() {
                let (g, u) = row.split_at_mut(inter);
                cpu::silu_mul(g, u);
                act[ti * inter..(ti + 1) * inter].copy_from_slice(g);
            }
            layer.down.forward(&act, t, &mut proj);
            cpu::add_inplace(&mut x, &proj);
        }
        cache.len = start + t;
        cpu::rms_norm(&x, &self.final_norm, eps, &mut normed);
        Ok(normed)
    }

    /// LM head over hidden rows `[n, hidden]` -> logits `[n, vocab]`.
    pub fn logits(&self, hidden: &[f32]) -> Vec<f32> {
        let h = self.config.hidden_size;
        let n = hidden.len() / h;
        let v = self.config.vocab_size;
        let mut out = vec![0f32; n * v];
        cpu::matmul(hidden, n, &self.lm_head, &mut out, v, 0);
        out
    }

    /// Runs `tokens` and returns logits for every position `[t, vocab]` (`all = true`) or only the
    /// last one `[vocab]`.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, all: bool) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("no input tokens".into()));
        }
        let hidden = self.forward_hidden(tokens, cache)?;
        let h = self.config.hidden_size;
        Ok(if all {
            self.logits(&hidden)
        } else {
            self.logits(&hidden[hidden.len() - h..])
        })
    }
}

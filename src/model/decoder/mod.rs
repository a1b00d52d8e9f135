//! The one decoder shared by Qwen2, Llama, Mistral and Phi-3.
//!
//! The architectures differ only in how checkpoint tensors map onto the same blocks (fused or split
//! q/k/v and gate/up projections, biases, tied head), which [`Model::load`] resolves once. The forward
//! pass is pre-norm: `x += attn(rms(x)); x += mlp(rms(x))`, then a final RMSNorm and the LM head.
//!
//! This file owns the model (its blocks as loaded through [`crate::model::layout`]) and the
//! device-independent API; the forward pass itself runs in `cpu.rs` (SIMD kernels) or [`cuda`]
//! (the same blocks uploaded to a device), chosen by [`Model::to_device`].

mod cpu;
pub mod cuda;

use std::path::Path;
use std::sync::Arc;

use crate::backend::cpu::memory::Mapping;
use crate::backend::cpu::KvDtype;
use crate::backend::cpu::{add_inplace, matmul, matmul_parts, AttnSeq};
use crate::backend::cuda::Gpu;
use crate::backend::Device;
use crate::backend::Weight;
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::model::kv::{KvCache, KvStore};
use crate::model::layout::{LayerLayout, LinearLayout, EMBED, FINAL_NORM, LM_HEAD};
use crate::model::weights::WeightStore;
use cuda::CudaModel;

/// A linear layer whose output is the concatenation of one or more stored matrices
/// (e.g. q|k|v from three tensors, or one fused `qkv_proj`), plus an optional bias.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Each `[n_i, in_dim]`; output columns are laid out in order.
    pub(crate) parts: Vec<Weight>,
    /// `[out_dim]` if present.
    pub(crate) bias: Option<Vec<f32>>,
    pub in_dim: usize,
    pub out_dim: usize,
}

impl Linear {
    /// `out[t, out_dim] = x[t, in_dim] @ W.T + b`.
    pub fn forward(&self, x: &[f32], t: usize, out: &mut [f32]) {
        matmul_parts(x, t, &self.parts, out, self.out_dim, 0);
        if let Some(b) = &self.bias {
            for row in out.chunks_exact_mut(self.out_dim).take(t) {
                add_inplace(row, b);
            }
        }
    }

    /// Stored matrices, in output order.
    pub fn parts(&self) -> &[Weight] {
        &self.parts
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Layer {
    /// `[hidden]`
    pub(crate) attn_norm: Vec<f32>,
    /// `[hidden]`
    pub(crate) mlp_norm: Vec<f32>,
    /// hidden -> q_dim + 2 * kv_dim
    pub(crate) qkv: Linear,
    /// q_dim -> hidden
    pub(crate) o: Linear,
    /// hidden -> 2 * intermediate (gate | up)
    pub(crate) gate_up: Linear,
    /// intermediate -> hidden
    pub(crate) down: Linear,
}

/// One sequence's part of a batched forward pass: its block table in the [`KvStore`] and the
/// positions `start .. start + len` of its tokens (laid out consecutively in the token list). The
/// same record as the attention kernel's, so a batch passes to it as is.
pub type SeqChunk<'a> = AttnSeq<'a>;

/// Opens a Hugging Face model directory: its parsed `config.json` and its weights.
pub fn open_model_dir(dir: &Path) -> Result<(ModelConfig, WeightStore)> {
    if !dir.is_dir() {
        return Err(Error::io(
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "model directory not found"),
        ));
    }
    let config = ModelConfig::from_file(&dir.join("config.json"))?;
    let store = WeightStore::open_dir(dir)?;
    Ok((config, store))
}

/// A loaded causal language model.
#[derive(Debug)]
pub struct Model {
    pub config: ModelConfig,
    /// `[vocab, hidden]`
    pub(crate) embed: Weight,
    pub(crate) layers: Vec<Layer>,
    /// `[hidden]`
    pub(crate) final_norm: Vec<f32>,
    /// `[vocab, hidden]` (the embedding matrix itself when tied); None for reward models.
    pub(crate) lm_head: Option<Weight>,
    /// `[rotary_dim / 2]`
    pub(crate) inv_freq: Vec<f32>,
    /// The copy of the weights on a CUDA device that runs the forward pass, if any.
    cuda: Option<Arc<CudaModel>>,
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
        let (config, store) = open_model_dir(dir)?;
        Self::from_store(config, &store)
    }

    /// Builds the model from a parsed config and opened weights.
    pub fn from_store(config: ModelConfig, store: &WeightStore) -> Result<Model> {
        Self::from_store_with_head(config, store, true)
    }

    /// As [`from_store`](Self::from_store); `lm_head = false` loads only the decoder body (reward
    /// models carry a value head instead of an LM head).
    pub fn from_store_with_head(
        config: ModelConfig,
        store: &WeightStore,
        lm_head: bool,
    ) -> Result<Model> {
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
        let lm_head = match (lm_head, config.tie_word_embeddings) {
            (false, _) => None,
            (true, true) => Some(embed.clone()),
            (true, false) => Some(ld.mat(LM_HEAD, v, h)?),
        };
        let inv_freq = config.rope_inv_freq();
        Ok(Model {
            config,
            embed,
            layers,
            final_norm,
            lm_head,
            inv_freq,
            cuda: None,
        })
    }

    /// Moves the forward pass to `device` (uploading the weights for CUDA). Caches and KV stores
    /// made before the move stay on the old device and are refused by the new one.
    pub fn to_device(&mut self, device: Device) -> Result<()> {
        self.cuda = match device {
            Device::Cpu => None,
            Device::Cuda(n) => Some(Arc::new(CudaModel::new(self, Gpu::open(n)?)?)),
        };
        Ok(())
    }

    /// Where the forward pass runs.
    pub fn device(&self) -> Device {
        match &self.cuda {
            Some(c) => Device::Cuda(c.gpu().ctx.ordinal()),
            None => Device::Cpu,
        }
    }

    /// The CUDA copy of the model, when it runs on a device.
    pub fn cuda(&self) -> Option<&Arc<CudaModel>> {
        self.cuda.as_ref()
    }

    /// An empty cache for one sequence.
    /// Bytes of the weight matrices one decode step reads (every layer's projections and the
    /// LM head, in their stored dtype): the denominator of a read-bandwidth fraction.
    pub fn weight_bytes(&self) -> usize {
        let lin = |l: &Linear| l.parts.iter().map(|w| w.raw().len()).sum::<usize>();
        let layers: usize = self
            .layers
            .iter()
            .map(|l| lin(&l.qkv) + lin(&l.o) + lin(&l.gate_up) + lin(&l.down))
            .sum();
        layers + self.lm_head.as_ref().map_or(0, |w| w.raw().len())
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.num_layers, self.config.kv_dim(), KvDtype::F32)
    }

    /// The fraction of the weights' bytes that the kernel maps with huge pages (see
    /// [`crate::backend::cpu::memory`]), over the distinct files and buffers they live in; `None`
    /// where the kernel does not say.
    pub fn huge_page_fraction(&self) -> Option<f64> {
        let (mut huge, mut all) = (0.0, 0.0);
        for m in self.backings() {
            huge += m.huge_fraction()? * m.len() as f64;
            all += m.len() as f64;
        }
        Some(if all > 0.0 { huge / all } else { 0.0 })
    }

    /// The distinct files and buffers the CPU weights live in.
    pub fn backings(&self) -> Vec<Arc<Mapping>> {
        let mut out: Vec<Arc<Mapping>> = Vec::new();
        let layers = self
            .layers
            .iter()
            .flat_map(|l| [&l.qkv, &l.o, &l.gate_up, &l.down]);
        let weights = layers.flat_map(|l| l.parts.iter());
        for w in weights.chain([&self.embed]).chain(self.lm_head.as_ref()) {
            if !out.iter().any(|m| Arc::ptr_eq(m, w.backing())) {
                out.push(w.backing().clone());
            }
        }
        out
    }

    /// An empty block store of `dtype` values sized for this model, on the model's device (CUDA
    /// keeps K/V in f32 only: another dtype there is an error).
    pub fn new_kv_store(
        &self,
        block_size: usize,
        num_blocks: usize,
        dtype: KvDtype,
    ) -> Result<KvStore> {
        let (l, d) = (self.config.num_layers, self.config.kv_dim());
        match &self.cuda {
            Some(_) if dtype != KvDtype::F32 => Err(Error::InvalidArgument(format!(
                "KV dtype {}: the CUDA decoder stores K/V in f32 only",
                dtype.name()
            ))),
            Some(c) => KvStore::new_cuda(c.gpu(), l, d, block_size, num_blocks),
            None => Ok(KvStore::new(l, d, block_size, num_blocks, dtype)),
        }
    }

    /// Bytes of K/V memory per block of `block_size` positions stored as `dtype`.
    pub fn kv_bytes_per_block(&self, block_size: usize, dtype: KvDtype) -> usize {
        KvStore::block_bytes(
            self.config.num_layers,
            self.config.kv_dim(),
            block_size,
            dtype,
        )
    }

    /// Runs `tokens` (continuing the sequence in `cache`) and returns the final-norm hidden states
    /// `[tokens.len(), hidden]`.
    pub fn forward_hidden(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>> {
        if cache.store.num_layers() != self.config.num_layers
            || cache.store.kv_dim != self.config.kv_dim()
        {
            return Err(Error::InvalidArgument(
                "KV cache was made for another model".into(),
            ));
        }
        if self.cuda.is_some() && cache.len == 0 && cache.store.host_mut().is_ok() {
            // A fresh cache moves to the model's device on first use.
            cache.store = self.new_kv_store(KvCache::BLOCK, 0, KvDtype::F32)?;
            cache.table.clear();
        }
        cache.reserve(tokens.len())?;
        let KvCache { store, table, len } = cache;
        let chunk = SeqChunk {
            table,
            start: *len,
            len: tokens.len(),
        };
        let hidden = self.forward_batch(tokens, &[chunk], store)?;
        *len += tokens.len();
        Ok(hidden)
    }

    /// One forward pass over the tokens of several sequences at once (prefill chunks and single
    /// decode tokens mixed). Writes each token's K/V into `kv` at its position's row and returns the
    /// final-norm hidden states `[tokens.len(), hidden]`. Every weight is read once for the whole
    /// batch; each row's arithmetic is independent of the others, so results do not depend on batching.
    pub fn forward_batch(
        &self,
        tokens: &[u32],
        chunks: &[SeqChunk],
        kv: &mut KvStore,
    ) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        self.forward_batch_into(tokens, chunks, kv, &mut out)?;
        Ok(out)
    }

    /// [`Model::forward_batch`] into `out` (resized to `[tokens.len(), hidden]`). On the CPU the
    /// activations live in a per-thread workspace that only grows, so once `out` and the workspace
    /// have reached a batch's size, a forward pass of that size allocates nothing.
    pub fn forward_batch_into(
        &self,
        tokens: &[u32],
        chunks: &[SeqChunk],
        kv: &mut KvStore,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        self.check_batch(tokens, chunks, kv)?;
        if let Some(cuda) = &self.cuda {
            let block_size = kv.block_size;
            *out = cuda.forward_batch(tokens, chunks, block_size, kv.cuda_mut()?)?;
            return Ok(());
        }
        self.forward_cpu(tokens, chunks, kv, out)
    }

    /// Checks a batch against the model and the KV store (token ids, chunk cover, context length,
    /// block tables): the same rules for every device.
    pub(crate) fn check_batch(
        &self,
        tokens: &[u32],
        chunks: &[SeqChunk],
        kv: &KvStore,
    ) -> Result<()> {
        let c = &self.config;
        let t = tokens.len();
        let kvd = c.kv_dim();
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= c.vocab_size) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is out of range for vocabulary size {}",
                c.vocab_size
            )));
        }
        if chunks.iter().map(|ch| ch.len).sum::<usize>() != t {
            return Err(Error::InvalidArgument(
                "batch chunks do not cover the tokens".into(),
            ));
        }
        if kv.num_layers() != c.num_layers || kv.kv_dim != kvd {
            return Err(Error::InvalidArgument(
                "KV store was made for another model".into(),
            ));
        }
        for ch in chunks {
            let end = ch.start + ch.len;
            if end > c.max_position_embeddings {
                return Err(Error::InvalidArgument(format!(
                    "position {end} exceeds the model's context of {}",
                    c.max_position_embeddings
                )));
            }
            let blocks = end.div_ceil(kv.block_size);
            if ch.table.len() < blocks
                || ch.table[..blocks]
                    .iter()
                    .any(|&b| b as usize >= kv.num_blocks())
            {
                return Err(Error::Internal(
                    "block table does not cover the batch positions".into(),
                ));
            }
        }
        Ok(())
    }

    /// LM head over hidden rows `[n, hidden]` -> logits `[n, vocab]`.
    pub fn logits(&self, hidden: &[f32]) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        self.logits_into(hidden, &mut out)?;
        Ok(out)
    }

    /// The LM head, or an error for a model loaded without one (a reward model).
    fn head(&self) -> Result<&Weight> {
        self.lm_head.as_ref().ok_or_else(|| {
            Error::InvalidArgument(
                "this model was loaded without an LM head (a reward model)".into(),
            )
        })
    }

    /// [`Model::logits`] into `out` (resized to `[rows, vocab]`; no allocation once it has
    /// reached that size, on the CPU).
    pub fn logits_into(&self, hidden: &[f32], out: &mut Vec<f32>) -> Result<()> {
        let h = self.config.hidden_size;
        let n = hidden.len() / h;
        let v = self.config.vocab_size;
        let head = self.head()?;
        if let Some(cuda) = &self.cuda {
            *out = cuda.logits(hidden)?;
            return Ok(());
        }
        out.resize(n * v, 0.0);
        matmul(hidden, n, head, &mut out[..n * v], v, 0);
        Ok(())
    }

    /// On a CUDA device: the next token after each final-norm hidden row (`params[i]` for row `i`),
    /// with the LM head and the sampler on the device, so only ids cross to the host. `None` on
    /// the CPU, where callers take [`Model::logits_into`] and sample on the host.
    pub fn sample_on_device(
        &self,
        hidden: &[f32],
        params: &[crate::backend::cuda::ops::SampleParams],
    ) -> Result<Option<Vec<u32>>> {
        self.head()?;
        match &self.cuda {
            Some(cuda) => cuda.sample_hidden(hidden, params).map(Some),
            None => Ok(None),
        }
    }

    /// Runs `tokens` and returns logits for every position `[t, vocab]` (`all = true`) or only the
    /// last one `[vocab]`.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, all: bool) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("no input tokens".into()));
        }
        let hidden = self.forward_hidden(tokens, cache)?;
        let h = self.config.hidden_size;
        if all {
            self.logits(&hidden)
        } else {
            self.logits(&hidden[hidden.len() - h..])
        }
    }
}

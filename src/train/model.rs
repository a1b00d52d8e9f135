//! The trainable decoder: f32 master parameters, forward with saved activations, backward.
//!
//! [`TrainModel`] holds every parameter as an f32 [`Param`] (converted once from the checkpoint's
//! f32/f16/bf16), built from the same checkpoint mapping as the inference decoder
//! ([`crate::model::layout`]). Split projections are concatenated into one matrix per linear
//! (q|k|v, gate|up) and split again when saved. Gradients live in a parallel [`Grads`]; frozen
//! parameters (the base weights under LoRA) get none and their weight gradients are never computed.
//!
//! A step runs on a [`Packed`] batch: rows from several sequences laid end to end, each row with its
//! position and the key rows it may attend to ([`RowCtx`]), so packed SFT examples and preference
//! pairs that share a prefix are one forward and one backward. The [`Objective`] is either
//! next-token cross-entropy on chosen rows (SFT) or the pairwise loss on value-head scores (PPM).
//! With `checkpointing`, each block keeps only its input and recomputes its activations in the
//! backward.

use std::path::Path;

use crate::error::{Error, Result};
use crate::model::layout::{LayerLayout, LinearLayout, EMBED, FINAL_NORM, LM_HEAD};
use crate::model::ppm_layout::{open_ppm_dir, PpmLayout, ValueHead};
use crate::model::{ModelConfig, WeightStore};
use crate::rng::Rng;
use crate::train::ops::{self, AttnDims, Mat, RowCtx};

/// One parameter tensor in f32.
#[derive(Debug, Clone)]
pub struct Param {
    /// Unique name (the checkpoint name, or the part names joined with `+` for a fused linear).
    pub name: String,
    pub shape: Vec<usize>,
    pub value: Vec<f32>,
    pub trainable: bool,
}

/// Gradients, parallel to [`TrainModel::params`]; empty for frozen parameters.
#[derive(Debug, Clone)]
pub struct Grads(pub Vec<Vec<f32>>);

impl Grads {
    /// Zeroes every gradient.
    pub fn zero(&mut self) {
        self.0.iter_mut().for_each(|g| g.fill(0.0));
    }

    fn get(&mut self, i: usize) -> Option<&mut [f32]> {
        let g = &mut self.0[i];
        (!g.is_empty()).then_some(&mut g[..])
    }

    /// Global L2 norm.
    pub fn norm(&self) -> f64 {
        self.0
            .iter()
            .flatten()
            .map(|&g| g as f64 * g as f64)
            .sum::<f64>()
            .sqrt()
    }
}

/// LoRA adapters: rank, `lora_alpha`, and the projection module names they wrap (`q_proj`, ...).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoraSpec {
    pub rank: usize,
    pub alpha: f32,
    pub targets: Vec<String>,
}

impl LoraSpec {
    /// Every attention and MLP projection (split and fused names), alpha = 2 * rank.
    pub fn all_projections(rank: usize) -> LoraSpec {
        LoraSpec {
            rank,
            alpha: 2.0 * rank as f32,
            targets: [
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
                "qkv_proj",
                "gate_up_proj",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    /// `alpha / rank`, the factor on `B @ A`.
    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }
}

#[derive(Debug, Clone)]
struct Lin {
    /// `[out, in]`
    w: usize,
    /// `[out]`
    b: Option<usize>,
    layout: LinearLayout,
    /// Per part, LoRA `(A [r, in], B [rows, r])`.
    lora: Vec<Option<(usize, usize)>>,
}

#[derive(Debug, Clone)]
struct Block {
    attn_norm: usize,
    mlp_norm: usize,
    qkv: Lin,
    o: Lin,
    gate_up: Lin,
    down: Lin,
}

/// A packed batch: `tokens[t]`, each row's RoPE position and attention context.
#[derive(Debug, Clone, Default)]
pub struct Packed {
    pub tokens: Vec<u32>,
    pub pos: Vec<usize>,
    pub ctx: Vec<RowCtx>,
}

impl Packed {
    /// Appends one sequence (`tokens`) that attends to itself only.
    pub fn push_sequence(&mut self, tokens: &[u32]) -> usize {
        self.push_branch(tokens, (0, 0), 0)
    }

    /// Appends rows that see `prefix` (a row range already in the batch) and then themselves, at
    /// positions starting from `pos0`. Returns the first new row.
    pub fn push_branch(&mut self, tokens: &[u32], prefix: (usize, usize), pos0: usize) -> usize {
        let start = self.tokens.len();
        self.tokens.extend_from_slice(tokens);
        for i in 0..tokens.len() {
            self.pos.push(pos0 + i);
            self.ctx.push(RowCtx { prefix, own: start });
        }
        start
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

/// What a forward/backward optimizes.
#[derive(Debug, Clone)]
pub enum Objective {
    /// `weight * sum over (row, target) of -log softmax(logits[row])[target]`.
    Lm {
        targets: Vec<(usize, u32)>,
        weight: f32,
    },
    /// `weight * sum over (pos row, neg row) of -log sigmoid(r[pos] - r[neg])`, `r` the value head
    /// on the final-norm hidden state of that row.
    Pairs {
        pairs: Vec<(usize, usize)>,
        weight: f32,
    },
}

/// Saved activations of one block, rows `[t, width]`.
struct Acts {
    x: Vec<f32>,
    inv1: Vec<f32>,
    n1: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    lse: Vec<f32>,
    x_mid: Vec<f32>,
    inv2: Vec<f32>,
    n2: Vec<f32>,
    gu: Vec<f32>,
    act: Vec<f32>,
}

/// The trainable model.
#[derive(Debug, Clone)]
pub struct TrainModel {
    pub config: ModelConfig,
    pub params: Vec<Param>,
    blocks: Vec<Block>,
    embed: usize,
    final_norm: usize,
    /// Index of the LM head matrix (`embed` when tied).
    lm_head: usize,
    /// `(weight [1, hidden], bias [1])`.
    value_head: Option<(usize, usize)>,
    lora: Option<LoraSpec>,
    inv_freq: Vec<f32>,
    /// Recompute each block's activations in the backward instead of keeping them.
    pub checkpointing: bool,
    /// Bottom blocks that run forward only (no saved activations, no backward): see
    /// [`TrainModel::train_top_layers`].
    frozen_blocks: usize,
}

/// A tensor to save: checkpoint name, shape, f32 values.
pub type NamedTensor<'a> = (String, Vec<usize>, &'a [f32]);

pub use crate::model::ppm_layout::{V_HEAD_BIAS, V_HEAD_WEIGHT};

impl TrainModel {
    /// Loads a Hugging Face model directory into f32 parameters, all trainable.
    pub fn load(dir: &Path) -> Result<TrainModel> {
        let (config, store) = crate::model::decoder::open_model_dir(dir)?;
        Self::from_store(config, &store)
    }

    /// Loads a PPM directory in any layout scoring reads ([`crate::model::ppm_layout`], the same
    /// loader): the decoder, plus its rStar value head or, without one, a fresh head (`seed`).
    /// Returns the layout it was found in.
    pub fn load_ppm(dir: &Path, seed: u64) -> Result<(TrainModel, PpmLayout)> {
        let d = open_ppm_dir(dir)?;
        let head = match d.head {
            None => None,
            Some(ValueHead::Linear { w, b }) => Some((w, b)),
            Some(ValueHead::PrmMlp { .. }) => {
                return Err(Error::Unsupported(format!(
                    "{}: training a Qwen2.5-Math-PRM head (score.0/score.2) is not supported; \
                     only rStar's linear v_head",
                    dir.display()
                )))
            }
        };
        let mut m = Self::from_store(d.config, &d.store)?;
        m.add_value_head(head, seed)?;
        Ok((m, d.layout))
    }

    /// Builds the parameters from a parsed config and opened weights.
    pub fn from_store(config: ModelConfig, store: &WeightStore) -> Result<TrainModel> {
        let mut params = Vec::new();
        let mut add = |name: String, shape: Vec<usize>, value: Vec<f32>| {
            params.push(Param {
                name,
                shape,
                value,
                trainable: true,
            });
            params.len() - 1
        };
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            Ok(store.get(name, shape)?.to_f32_vec())
        };
        let (v, h) = (config.vocab_size, config.hidden_size);
        let embed = add(EMBED.into(), vec![v, h], get(EMBED, &[v, h])?);
        let mut blocks = Vec::new();
        for i in 0..config.num_layers {
            let l = LayerLayout::new(&config, i);
            let mut lin = |lay: &LinearLayout| -> Result<Lin> {
                let mut w = Vec::with_capacity(lay.out_dim() * lay.in_dim);
                let mut b = Vec::new();
                for (n, rows) in &lay.parts {
                    w.extend(get(&format!("{n}.weight"), &[*rows, lay.in_dim])?);
                    if lay.bias {
                        b.extend(get(&format!("{n}.bias"), &[*rows])?);
                    }
                }
                let joined = lay
                    .parts
                    .iter()
                    .map(|p| p.0.as_str())
                    .collect::<Vec<_>>()
                    .join("+");
                let wi = add(
                    format!("{joined}.weight"),
                    vec![lay.out_dim(), lay.in_dim],
                    w,
                );
                let bi = lay
                    .bias
                    .then(|| add(format!("{joined}.bias"), vec![lay.out_dim()], b));
                Ok(Lin {
                    w: wi,
                    b: bi,
                    layout: lay.clone(),
                    lora: vec![None; lay.parts.len()],
                })
            };
            let (qkv, o, gate_up, down) =
                (lin(&l.qkv)?, lin(&l.o)?, lin(&l.gate_up)?, lin(&l.down)?);
            let attn_norm = add(l.attn_norm.clone(), vec![h], get(&l.attn_norm, &[h])?);
            let mlp_norm = add(l.mlp_norm.clone(), vec![h], get(&l.mlp_norm, &[h])?);
            blocks.push(Block {
                attn_norm,
                mlp_norm,
                qkv,
                o,
                gate_up,
                down,
            });
        }
        let final_norm = add(FINAL_NORM.into(), vec![h], get(FINAL_NORM, &[h])?);
        let lm_head = if config.tie_word_embeddings {
            embed
        } else {
            add(LM_HEAD.into(), vec![v, h], get(LM_HEAD, &[v, h])?)
        };
        let inv_freq = config.rope_inv_freq();
        Ok(TrainModel {
            config,
            params,
            blocks,
            embed,
            final_norm,
            lm_head,
            value_head: None,
            lora: None,
            inv_freq,
            checkpointing: false,
            frozen_blocks: 0,
        })
    }

    fn add_param(&mut self, name: String, shape: Vec<usize>, value: Vec<f32>) -> usize {
        self.params.push(Param {
            name,
            shape,
            value,
            trainable: true,
        });
        self.params.len() - 1
    }

    /// Adds a value head `(weight [hidden], bias)`; without values it is initialised as rStar's
    /// `train/rm.py` does: weight ~ Normal(5e-7, 1e-6), bias 1e-6.
    pub fn add_value_head(&mut self, init: Option<(Vec<f32>, f32)>, seed: u64) -> Result<()> {
        let h = self.config.hidden_size;
        let (w, b) = match init {
            Some((w, b)) if w.len() == h => (w, b),
            Some((w, _)) => {
                return Err(Error::InvalidArgument(format!(
                    "value head has {} weights, the model's hidden size is {h}",
                    w.len()
                )))
            }
            None => {
                let mut rng = Rng::new(seed);
                (
                    (0..h).map(|_| 5e-7 + 1e-6 * normal(&mut rng)).collect(),
                    1e-6,
                )
            }
        };
        let wi = self.add_param(V_HEAD_WEIGHT.into(), vec![1, h], w);
        let bi = self.add_param(V_HEAD_BIAS.into(), vec![1], vec![b]);
        self.value_head = Some((wi, bi));
        Ok(())
    }

    /// The value head's tensors under their checkpoint names (`v_head.summary.*`); empty without one.
    pub fn value_head_tensors(&self) -> Vec<NamedTensor<'_>> {
        self.value_head.map_or_else(Vec::new, |(w, b)| {
            [w, b]
                .iter()
                .map(|&i| {
                    let p = &self.params[i];
                    (p.name.clone(), p.shape.clone(), &p.value[..])
                })
                .collect()
        })
    }

    /// The value head `(weight, bias)` if present.
    pub fn value_head(&self) -> Option<(&[f32], f32)> {
        self.value_head
            .map(|(w, b)| (&self.params[w].value[..], self.params[b].value[0]))
    }

    /// Wraps the targeted projections with LoRA adapters (A ~ U(-1/sqrt(in), 1/sqrt(in)) as PEFT's
    /// default Kaiming init, B = 0) and freezes every base decoder parameter. A value head, if any,
    /// stays trainable.
    pub fn add_lora(&mut self, spec: LoraSpec, seed: u64) -> Result<()> {
        if spec.rank == 0 {
            return Err(Error::InvalidArgument("LoRA rank must be positive".into()));
        }
        if self.lora.is_some() {
            return Err(Error::InvalidArgument("LoRA adapters already added".into()));
        }
        let vh = self.value_head;
        for (i, p) in self.params.iter_mut().enumerate() {
            p.trainable = vh.is_some_and(|(w, b)| i == w || i == b);
        }
        let mut rng = Rng::new(seed);
        let r = spec.rank;
        let mut blocks = std::mem::take(&mut self.blocks);
        for b in &mut blocks[self.frozen_blocks..] {
            for lin in [&mut b.qkv, &mut b.o, &mut b.gate_up, &mut b.down] {
                for (pi, (name, rows)) in lin.layout.parts.iter().enumerate() {
                    let short = name.rsplit('.').next().unwrap_or(name);
                    if !spec.targets.iter().any(|t| t == short) {
                        continue;
                    }
                    let bound = 1.0 / (lin.layout.in_dim as f64).sqrt();
                    let a: Vec<f32> = (0..r * lin.layout.in_dim)
                        .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                        .collect();
                    let ai = self.add_param(
                        format!("{name}.lora_A.weight"),
                        vec![r, lin.layout.in_dim],
                        a,
                    );
                    let bi = self.add_param(
                        format!("{name}.lora_B.weight"),
                        vec![*rows, r],
                        vec![0.0; rows * r],
                    );
                    lin.lora[pi] = Some((ai, bi));
                }
            }
        }
        self.blocks = blocks;
        self.lora = Some(spec);
        Ok(())
    }

    /// Trains only the top `layers` blocks (and what lies above them: the final norm, an untied LM
    /// head, the value head, their adapters): the blocks below and the embedding (with it a tied
    /// LM head, the same matrix) are frozen, run forward only in a step (no saved activations, no
    /// backward) and get no gradients. LoRA adapters added afterwards go on the top blocks only.
    pub fn train_top_layers(&mut self, layers: usize) -> Result<()> {
        let n = self.blocks.len();
        if layers == 0 || layers > n {
            return Err(Error::InvalidArgument(format!(
                "train_top_layers must be between 1 and the model's {n} layers, got {layers}"
            )));
        }
        self.frozen_blocks = n - layers;
        let mut frozen = vec![self.embed];
        for b in &self.blocks[..self.frozen_blocks] {
            frozen.extend([b.attn_norm, b.mlp_norm]);
            for lin in [&b.qkv, &b.o, &b.gate_up, &b.down] {
                frozen.extend([lin.w].into_iter().chain(lin.b));
                frozen.extend(lin.lora.iter().flatten().flat_map(|&(a, b)| [a, b]));
            }
        }
        for i in frozen {
            self.params[i].trainable = false;
        }
        Ok(())
    }

    /// The number of bottom blocks that run forward only (0 unless [`Self::train_top_layers`]).
    pub fn frozen_blocks(&self) -> usize {
        self.frozen_blocks
    }

    /// The LoRA configuration, if adapters were added.
    pub fn lora(&self) -> Option<&LoraSpec> {
        self.lora.as_ref()
    }

    /// Adapter tensors as `(module name, A [r, in], B [rows, r])`.
    pub fn lora_tensors(&self) -> Vec<(String, &Param, &Param)> {
        let mut out = Vec::new();
        for b in &self.blocks {
            for lin in [&b.qkv, &b.o, &b.gate_up, &b.down] {
                for ((name, _), l) in lin.layout.parts.iter().zip(&lin.lora) {
                    if let Some((a, bb)) = l {
                        out.push((name.clone(), &self.params[*a], &self.params[*bb]));
                    }
                }
            }
        }
        out
    }

    /// Folds every adapter into its base weight (`W += alpha/r * B @ A`) and removes the adapters;
    /// every decoder parameter becomes trainable again (those of [`Self::train_top_layers`]).
    pub fn merge_lora(&mut self) {
        let Some(spec) = self.lora.take() else { return };
        let s = spec.scale();
        let mut drop = Vec::new();
        let mut blocks = std::mem::take(&mut self.blocks);
        for b in &mut blocks {
            for lin in [&mut b.qkv, &mut b.o, &mut b.gate_up, &mut b.down] {
                let in_dim = lin.layout.in_dim;
                let mut row0 = 0;
                for ((_, rows), l) in lin.layout.parts.iter().zip(lin.lora.iter_mut()) {
                    if let Some((a, bb)) = l.take() {
                        let delta = {
                            let (pa, pb) = (&self.params[a].value, &self.params[bb].value);
                            let mut d = vec![0f32; rows * in_dim];
                            ops::gemm(
                                *rows,
                                spec.rank,
                                in_dim,
                                Mat::rows(pb, spec.rank),
                                Mat::rows(pa, in_dim),
                                0.0,
                                &mut d,
                                in_dim,
                            );
                            d
                        };
                        let w =
                            &mut self.params[lin.w].value[row0 * in_dim..(row0 + rows) * in_dim];
                        w.iter_mut().zip(&delta).for_each(|(x, d)| *x += s * d);
                        drop.extend([a, bb]);
                    }
                    row0 += rows;
                }
            }
        }
        self.blocks = blocks;
        // Adapters come after every base decoder parameter, so only a value head added after them
        // moves.
        drop.sort_unstable();
        let shift = |i: usize| i - drop.iter().filter(|&&d| d < i).count();
        if let Some((w, b)) = self.value_head {
            self.value_head = Some((shift(w), shift(b)));
        }
        for &i in drop.iter().rev() {
            self.params.remove(i);
        }
        for p in &mut self.params {
            p.trainable = true;
        }
        if self.frozen_blocks > 0 {
            // The count came from a valid `train_top_layers`, so this succeeds.
            let _ = self.train_top_layers(self.blocks.len() - self.frozen_blocks);
        }
    }

    /// Zeroed gradients for the trainable parameters.
    pub fn new_grads(&self) -> Grads {
        Grads(
            self.params
                .iter()
                .map(|p| {
                    if p.trainable {
                        vec![0.0; p.value.len()]
                    } else {
                        Vec::new()
                    }
                })
                .collect(),
        )
    }

    /// Decoder tensors under their checkpoint names (split back into parts, LoRA not merged),
    /// in a stable order; the LM head only when untied. Excludes the value head and adapters.
    pub fn checkpoint_tensors(&self) -> Vec<NamedTensor<'_>> {
        let whole = |i: usize| -> NamedTensor<'_> {
            let p = &self.params[i];
            (p.name.clone(), p.shape.clone(), &p.value[..])
        };
        let mut out = vec![whole(self.embed)];
        for b in &self.blocks {
            out.push(whole(b.attn_norm));
            out.push(whole(b.mlp_norm));
            for lin in [&b.qkv, &b.o, &b.gate_up, &b.down] {
                let in_dim = lin.layout.in_dim;
                let w = &self.params[lin.w].value;
                let mut row0 = 0;
                for (name, rows) in &lin.layout.parts {
                    let block = &w[row0 * in_dim..(row0 + rows) * in_dim];
                    out.push((format!("{name}.weight"), vec![*rows, in_dim], block));
                    if let Some(bi) = lin.b {
                        let bias = &self.params[bi].value[row0..row0 + rows];
                        out.push((format!("{name}.bias"), vec![*rows], bias));
                    }
                    row0 += rows;
                }
            }
        }
        out.push(whole(self.final_norm));
        if self.lm_head != self.embed {
            out.push(whole(self.lm_head));
        }
        out
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        match tokens
            .iter()
            .find(|&&t| t as usize >= self.config.vocab_size)
        {
            Some(bad) => Err(Error::InvalidArgument(format!(
                "token id {bad} is out of range for vocabulary size {}",
                self.config.vocab_size
            ))),
            None => Ok(()),
        }
    }

    fn dims(&self) -> AttnDims {
        AttnDims {
            n_heads: self.config.num_heads,
            n_kv_heads: self.config.num_kv_heads,
            head_dim: self.config.head_dim,
            window: self.config.sliding_window,
        }
    }

    fn val(&self, i: usize) -> &[f32] {
        &self.params[i].value
    }

    /// `y[t, out] = x @ W.T + b (+ LoRA)`.
    fn lin_fwd(&self, l: &Lin, x: &[f32], t: usize, y: &mut [f32]) {
        let (in_dim, out) = (l.layout.in_dim, l.layout.out_dim());
        ops::gemm(
            t,
            in_dim,
            out,
            Mat::rows(x, in_dim),
            Mat::t(self.val(l.w), in_dim),
            0.0,
            y,
            out,
        );
        if let Some(b) = l.b {
            let b = self.val(b);
            y.chunks_exact_mut(out)
                .for_each(|r| r.iter_mut().zip(b).for_each(|(a, c)| *a += c));
        }
        if let Some(spec) = &self.lora {
            let mut row0 = 0;
            for ((_, rows), ab) in l.layout.parts.iter().zip(&l.lora) {
                if let Some((a, b)) = ab {
                    let u = self.lora_u(*a, x, t, in_dim, spec);
                    ops::gemm(
                        t,
                        spec.rank,
                        *rows,
                        Mat::rows(&u, spec.rank),
                        Mat::t(self.val(*b), spec.rank),
                        1.0,
                        &mut y[row0..],
                        out,
                    );
                }
                row0 += rows;
            }
        }
    }

    /// `scale * x @ A.T` `[t, r]`.
    fn lora_u(&self, a: usize, x: &[f32], t: usize, in_dim: usize, spec: &LoraSpec) -> Vec<f32> {
        let r = spec.rank;
        let mut u = vec![0f32; t * r];
        ops::gemm(
            t,
            in_dim,
            r,
            Mat::rows(x, in_dim),
            Mat::t(self.val(a), in_dim),
            0.0,
            &mut u,
            r,
        );
        let s = spec.scale();
        u.iter_mut().for_each(|v| *v *= s);
        u
    }

    /// Backward of [`Self::lin_fwd`]: returns `dx` `[t, in]`, accumulates parameter gradients.
    fn lin_bwd(&self, l: &Lin, x: &[f32], t: usize, dy: &[f32], g: &mut Grads) -> Vec<f32> {
        let (in_dim, out) = (l.layout.in_dim, l.layout.out_dim());
        let mut dx = vec![0f32; t * in_dim];
        ops::gemm(
            t,
            out,
            in_dim,
            Mat::rows(dy, out),
            Mat::rows(self.val(l.w), in_dim),
            0.0,
            &mut dx,
            in_dim,
        );
        if let Some(dw) = g.get(l.w) {
            ops::gemm(
                out,
                t,
                in_dim,
                Mat::t(dy, out),
                Mat::rows(x, in_dim),
                1.0,
                dw,
                in_dim,
            );
        }
        if let Some(db) = l.b.and_then(|b| g.get(b)) {
            for r in dy.chunks_exact(out) {
                db.iter_mut().zip(r).for_each(|(a, c)| *a += c);
            }
        }
        if let Some(spec) = &self.lora {
            let (r, s) = (spec.rank, spec.scale());
            let mut row0 = 0;
            for ((_, rows), ab) in l.layout.parts.iter().zip(&l.lora) {
                if let Some((a, b)) = *ab {
                    let u = self.lora_u(a, x, t, in_dim, spec);
                    let dyp = Mat::strided(&dy[row0..], out, 1);
                    if let Some(db) = g.get(b) {
                        ops::gemm(
                            *rows,
                            t,
                            r,
                            Mat::strided(&dy[row0..], 1, out),
                            Mat::rows(&u, r),
                            1.0,
                            db,
                            r,
                        );
                    }
                    let mut du = vec![0f32; t * r];
                    ops::gemm(t, *rows, r, dyp, Mat::rows(self.val(b), r), 0.0, &mut du, r);
                    du.iter_mut().for_each(|v| *v *= s);
                    if let Some(da) = g.get(a) {
                        ops::gemm(
                            r,
                            t,
                            in_dim,
                            Mat::t(&du, r),
                            Mat::rows(x, in_dim),
                            1.0,
                            da,
                            in_dim,
                        );
                    }
                    ops::gemm(
                        t,
                        r,
                        in_dim,
                        Mat::rows(&du, r),
                        Mat::rows(self.val(a), in_dim),
                        1.0,
                        &mut dx,
                        in_dim,
                    );
                }
                row0 += rows;
            }
        }
        dx
    }

    fn block_fwd(&self, b: &Block, x: Vec<f32>, p: &Packed) -> Acts {
        let c = &self.config;
        let t = p.len();
        let (h, qd, kvd, inter) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size);
        let eps = c.rms_norm_eps as f32;
        let mut inv1 = vec![0f32; t];
        let mut n1 = vec![0f32; t * h];
        ops::rms_norm_fwd(&x, self.val(b.attn_norm), eps, &mut n1, &mut inv1);
        let w = qd + 2 * kvd;
        let mut qkv = vec![0f32; t * w];
        self.lin_fwd(&b.qkv, &n1, t, &mut qkv);
        let (mut q, mut k, mut v) = (vec![0f32; t * qd], vec![0f32; t * kvd], vec![0f32; t * kvd]);
        for (i, row) in qkv.chunks_exact(w).enumerate() {
            q[i * qd..(i + 1) * qd].copy_from_slice(&row[..qd]);
            k[i * kvd..(i + 1) * kvd].copy_from_slice(&row[qd..qd + kvd]);
            v[i * kvd..(i + 1) * kvd].copy_from_slice(&row[qd + kvd..]);
        }
        ops::rope_rows(
            &mut q,
            c.num_heads,
            c.head_dim,
            &self.inv_freq,
            &p.pos,
            false,
        );
        ops::rope_rows(
            &mut k,
            c.num_kv_heads,
            c.head_dim,
            &self.inv_freq,
            &p.pos,
            false,
        );
        let mut att = vec![0f32; t * qd];
        let mut lse = vec![0f32; t * c.num_heads];
        ops::attention_fwd(&q, &k, &v, &p.ctx, &p.pos, self.dims(), &mut att, &mut lse);
        let mut x_mid = vec![0f32; t * h];
        self.lin_fwd(&b.o, &att, t, &mut x_mid);
        x_mid.iter_mut().zip(&x).for_each(|(a, r)| *a += r);
        let mut inv2 = vec![0f32; t];
        let mut n2 = vec![0f32; t * h];
        ops::rms_norm_fwd(&x_mid, self.val(b.mlp_norm), eps, &mut n2, &mut inv2);
        let mut gu = vec![0f32; t * 2 * inter];
        self.lin_fwd(&b.gate_up, &n2, t, &mut gu);
        let mut act = vec![0f32; t * inter];
        ops::silu_mul_fwd(&gu, inter, &mut act);
        Acts {
            x,
            inv1,
            n1,
            q,
            k,
            v,
            att,
            lse,
            x_mid,
            inv2,
            n2,
            gu,
            act,
        }
    }

    /// The block output `x_mid + down(act)`.
    fn block_out(&self, b: &Block, a: &Acts, t: usize) -> Vec<f32> {
        let mut out = vec![0f32; t * self.config.hidden_size];
        self.lin_fwd(&b.down, &a.act, t, &mut out);
        out.iter_mut().zip(&a.x_mid).for_each(|(o, r)| *o += r);
        out
    }

    /// Block backward: from `dout` (gradient of the block output) to the gradient of its input.
    fn block_bwd(
        &self,
        b: &Block,
        a: &Acts,
        p: &Packed,
        dout: Vec<f32>,
        g: &mut Grads,
    ) -> Vec<f32> {
        let c = &self.config;
        let t = p.len();
        let (qd, kvd, inter) = (c.q_dim(), c.kv_dim(), c.intermediate_size);
        let dact = self.lin_bwd(&b.down, &a.act, t, &dout, g);
        let mut dgu = vec![0f32; t * 2 * inter];
        ops::silu_mul_bwd(&a.gu, &dact, inter, &mut dgu);
        let dn2 = self.lin_bwd(&b.gate_up, &a.n2, t, &dgu, g);
        let mut dmid = dout;
        let gn = b.mlp_norm;
        ops::rms_norm_bwd(&a.x_mid, self.val(gn), &a.inv2, &dn2, &mut dmid, g.get(gn));
        let datt = self.lin_bwd(&b.o, &a.att, t, &dmid, g);
        let (mut dq, mut dk, mut dv) =
            (vec![0f32; t * qd], vec![0f32; t * kvd], vec![0f32; t * kvd]);
        ops::attention_bwd(
            &a.q,
            &a.k,
            &a.v,
            &a.att,
            &a.lse,
            &datt,
            &p.ctx,
            &p.pos,
            self.dims(),
            &mut dq,
            &mut dk,
            &mut dv,
        );
        ops::rope_rows(
            &mut dq,
            c.num_heads,
            c.head_dim,
            &self.inv_freq,
            &p.pos,
            true,
        );
        ops::rope_rows(
            &mut dk,
            c.num_kv_heads,
            c.head_dim,
            &self.inv_freq,
            &p.pos,
            true,
        );
        let w = qd + 2 * kvd;
        let mut dqkv = vec![0f32; t * w];
        for (i, row) in dqkv.chunks_exact_mut(w).enumerate() {
            row[..qd].copy_from_slice(&dq[i * qd..(i + 1) * qd]);
            row[qd..qd + kvd].copy_from_slice(&dk[i * kvd..(i + 1) * kvd]);
            row[qd + kvd..].copy_from_slice(&dv[i * kvd..(i + 1) * kvd]);
        }
        let dn1 = self.lin_bwd(&b.qkv, &a.n1, t, &dqkv, g);
        let mut dx = dmid;
        let gn = b.attn_norm;
        ops::rms_norm_bwd(&a.x, self.val(gn), &a.inv1, &dn1, &mut dx, g.get(gn));
        dx
    }

    fn embed_rows(&self, tokens: &[u32]) -> Vec<f32> {
        let h = self.config.hidden_size;
        let e = self.val(self.embed);
        tokens
            .iter()
            .flat_map(|&id| &e[id as usize * h..][..h])
            .copied()
            .collect()
    }

    /// Final-norm hidden states `[t, hidden]` of a packed batch (no gradients).
    pub fn hidden(&self, p: &Packed) -> Result<Vec<f32>> {
        self.check_tokens(&p.tokens)?;
        let mut x = self.embed_rows(&p.tokens);
        for b in &self.blocks {
            let a = self.block_fwd(b, x, p);
            x = self.block_out(b, &a, p.len());
        }
        let h = self.config.hidden_size;
        let mut out = vec![0f32; x.len()];
        let mut inv = vec![0f32; p.len()];
        ops::rms_norm_fwd(
            &x,
            self.val(self.final_norm),
            self.config.rms_norm_eps as f32,
            &mut out,
            &mut inv,
        );
        debug_assert_eq!(out.len(), p.len() * h);
        Ok(out)
    }

    /// LM logits `[n, vocab]` for hidden rows `[n, hidden]`.
    pub fn logits(&self, hidden: &[f32]) -> Vec<f32> {
        let (h, v) = (self.config.hidden_size, self.config.vocab_size);
        let n = hidden.len() / h;
        let mut out = vec![0f32; n * v];
        ops::gemm(
            n,
            h,
            v,
            Mat::rows(hidden, h),
            Mat::t(self.val(self.lm_head), h),
            0.0,
            &mut out,
            v,
        );
        out
    }

    /// Raw value-head score (no tanh) of one hidden row.
    pub fn score(&self, hidden_row: &[f32]) -> Result<f32> {
        let (w, b) = self
            .value_head()
            .ok_or_else(|| Error::InvalidArgument("this model has no value head".into()))?;
        Ok(crate::backend::cpu::dot_f32(hidden_row, w) + b)
    }

    /// One forward and backward of `obj` on `p`: accumulates gradients into `g` and returns the
    /// (weighted) loss.
    // About 110 lines, kept whole on purpose: the forward pass, the loss and the backward pass
    // over the same layers read side by side, so the saved activations and their gradients can
    // be checked against each other in one place (the per-layer work is already in functions).
    pub fn forward_backward(&self, p: &Packed, obj: &Objective, g: &mut Grads) -> Result<f64> {
        self.check_tokens(&p.tokens)?;
        let c = &self.config;
        let (t, h, v) = (p.len(), c.hidden_size, c.vocab_size);
        let eps = c.rms_norm_eps as f32;
        // Forward, keeping each block's activations (or only its input when checkpointing).
        let mut saved: Vec<Result<Acts, Vec<f32>>> = Vec::with_capacity(self.blocks.len());
        let mut x = self.embed_rows(&p.tokens);
        for (i, b) in self.blocks.iter().enumerate() {
            let a = self.block_fwd(b, x, p);
            x = self.block_out(b, &a, t);
            if i >= self.frozen_blocks {
                saved.push(if self.checkpointing { Err(a.x) } else { Ok(a) });
            }
        }
        let mut hn = vec![0f32; t * h];
        let mut inv = vec![0f32; t];
        ops::rms_norm_fwd(&x, self.val(self.final_norm), eps, &mut hn, &mut inv);

        // Loss and the gradient of the final hidden states.
        let mut dh = vec![0f32; t * h];
        let loss = match obj {
            Objective::Lm { targets, weight } => {
                let mut loss = 0f64;
                for chunk in targets.chunks(256) {
                    let n = chunk.len();
                    let sel: Vec<f32> = chunk
                        .iter()
                        .flat_map(|&(r, _)| &hn[r * h..][..h])
                        .copied()
                        .collect();
                    let ys: Vec<u32> = chunk.iter().map(|c| c.1).collect();
                    if let Some(&bad) = ys.iter().find(|&&y| y as usize >= v) {
                        return Err(Error::InvalidArgument(format!(
                            "target id {bad} is out of range for vocabulary size {v}"
                        )));
                    }
                    let mut lg = self.logits(&sel);
                    loss += ops::cross_entropy(&mut lg, v, &ys, *weight);
                    let mut dsel = vec![0f32; n * h];
                    ops::gemm(
                        n,
                        v,
                        h,
                        Mat::rows(&lg, v),
                        Mat::rows(self.val(self.lm_head), h),
                        0.0,
                        &mut dsel,
                        h,
                    );
                    if let Some(dw) = g.get(self.lm_head) {
                        ops::gemm(v, n, h, Mat::t(&lg, v), Mat::rows(&sel, h), 1.0, dw, h);
                    }
                    for (&(r, _), d) in chunk.iter().zip(dsel.chunks_exact(h)) {
                        dh[r * h..][..h]
                            .iter_mut()
                            .zip(d)
                            .for_each(|(a, b)| *a += b);
                    }
                }
                loss
            }
            Objective::Pairs { pairs, weight } => {
                let (wi, bi) = self.value_head.ok_or_else(|| {
                    Error::InvalidArgument("PPM training needs a value head".into())
                })?;
                let mut loss = 0f64;
                let mut dr = vec![0f32; t];
                for &(pr, nr) in pairs {
                    let d = self.score(&hn[pr * h..][..h])? - self.score(&hn[nr * h..][..h])?;
                    let (l, gd) = ops::neg_log_sigmoid(d);
                    loss += *weight as f64 * l;
                    dr[pr] += weight * gd;
                    dr[nr] -= weight * gd;
                }
                let w = self.val(wi).to_vec();
                for (r, &d) in dr.iter().enumerate().filter(|(_, d)| **d != 0.0) {
                    let row = &hn[r * h..][..h];
                    dh[r * h..][..h]
                        .iter_mut()
                        .zip(&w)
                        .for_each(|(a, b)| *a += d * b);
                    if let Some(gw) = g.get(wi) {
                        gw.iter_mut().zip(row).for_each(|(a, b)| *a += d * b);
                    }
                    if let Some(gb) = g.get(bi) {
                        gb[0] += d;
                    }
                }
                loss
            }
        };

        // Backward through the final norm, the blocks and the embedding.
        let mut dx = vec![0f32; t * h];
        let fnorm = self.final_norm;
        ops::rms_norm_bwd(&x, self.val(fnorm), &inv, &dh, &mut dx, g.get(fnorm));
        let trained = &self.blocks[self.frozen_blocks..];
        for (b, s) in trained.iter().zip(saved).rev() {
            let a = match s {
                Ok(a) => a,
                Err(x_in) => self.block_fwd(b, x_in, p),
            };
            dx = self.block_bwd(b, &a, p, dx, g);
        }
        if let Some(de) = g.get(self.embed).filter(|_| self.frozen_blocks == 0) {
            for (&id, d) in p.tokens.iter().zip(dx.chunks_exact(h)) {
                de[id as usize * h..][..h]
                    .iter_mut()
                    .zip(d)
                    .for_each(|(a, b)| *a += b);
            }
        }
        Ok(loss)
    }

    /// Number of multiply-adds of one forward over `p` (matmuls and attention scores/values), for
    /// throughput accounting; a backward costs about twice this.
    pub fn forward_fmas(&self, p: &Packed, lm_rows: usize) -> f64 {
        let c = &self.config;
        let (h, qd, kvd, inter) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size);
        let per_row = h * (qd + 2 * kvd) + qd * h + h * 2 * inter + inter * h;
        let keys: usize = (0..p.len())
            .map(|i| {
                let x = p.ctx[i];
                x.prefix.1 - x.prefix.0 + i + 1 - x.own
            })
            .sum();
        let lin = (p.len() * per_row) as f64;
        let att = (keys * 2 * qd) as f64;
        c.num_layers as f64 * (lin + att) + (lm_rows * h * c.vocab_size) as f64
    }
}

/// A standard normal sample (Box-Muller).
pub(crate) fn normal(rng: &mut Rng) -> f32 {
    let u1 = rng.next_f64().max(1e-300);
    let u2 = rng.next_f64();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

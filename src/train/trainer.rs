//! The training loop shared by `rstar train`, the C API and the evolve driver.
//!
//! A [`Trainer`] is made from a model directory and a [`TrainConfig`]; it loads the decoder into f32
//! master parameters (plus a value head for [`Task::Ppm`], from the directory in any layout scoring
//! reads if it has one, else rStar's initialisation), optionally wraps it with LoRA, takes a dataset ([`Trainer::load_data`]),
//! and then runs optimizer steps ([`Trainer::step`], [`Trainer::run`]). Each optimizer step takes
//! `batch_size * grad_accum` examples in a seeded per-epoch shuffle, packs them into micro-batches
//! of at most `seq_len` tokens, and normalises the loss over the whole step:
//! * SFT: mean cross-entropy over all response tokens of the step (prompt tokens masked);
//! * PPM: mean over pairs of `-log sigmoid(r_pos - r_neg)` (rStar's value-head dropout is not
//!   applied, so a step is deterministic).
//!
//! [`Trainer::save`] writes a Hugging Face directory (and a PEFT adapter under `adapter/` when LoRA
//! is on); [`Trainer::save_state`] / [`Trainer::resume`] make long runs resumable.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::data::training::{self as data, PairExample, SftExample, TokenContext};
use crate::error::{Error, Result};
use crate::model::ppm_layout::PpmLayout;
use crate::rng::Rng;
use crate::tokenizer::Tokenizer;
use crate::train::checkpoint;
use crate::train::model::{Grads, LoraSpec, Objective, TrainModel};
use crate::train::optim::{self, OptimConfig, Optimizer, OptimizerKind, Schedule};
use crate::train::pack;

/// What is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Policy supervised fine-tuning.
    Sft,
    /// Process preference model (value head + decoder) on preference pairs.
    Ppm,
}

/// Training hyper-parameters. Every field has a default; as JSON (C API) unknown fields are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub task: Task,
    pub optimizer: OptimizerKind,
    /// Peak learning rate (rStar: 7e-6).
    pub lr: f32,
    /// AdamW decoupled weight decay (rStar SFT: 0.1); not applied to 1-D tensors.
    pub weight_decay: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub adam_eps: f32,
    pub schedule: Schedule,
    pub warmup_steps: usize,
    pub epochs: usize,
    /// Examples (SFT) or pairs (PPM) per micro-step; `batch_size * grad_accum` per optimizer step.
    pub batch_size: usize,
    pub grad_accum: usize,
    /// Stop after this many optimizer steps (before the epochs run out).
    pub max_steps: Option<usize>,
    /// Longest packed micro-batch in tokens; longer SFT examples are cut, longer pairs skipped.
    pub seq_len: usize,
    /// LoRA rank on every attention and MLP projection; `None` trains all weights.
    pub lora_rank: Option<usize>,
    /// LoRA alpha (default 2 * rank).
    pub lora_alpha: Option<f32>,
    pub seed: u64,
    /// Clip gradients to this global L2 norm.
    pub max_grad_norm: Option<f32>,
    /// Recompute each block's activations in the backward (less memory, ~1.3x compute).
    pub checkpointing: bool,
    /// Train only the top this many decoder layers (plus the final norm, value head and an
    /// untied LM head); the layers below and the embedding run forward only. `None`: all.
    pub train_top_layers: Option<usize>,
    /// Shuffle examples each epoch (seeded).
    pub shuffle: bool,
    /// Write resumable state every this many steps (when a state directory is set).
    pub save_every: Option<usize>,
    /// How a PPM is saved: `split` (`value_head.safetensors` beside the decoder) or `combined`
    /// (trl's one file, decoder keys prefixed `pretrained_model.`); `None`: as it was loaded.
    pub ppm_layout: Option<PpmLayout>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            task: Task::Sft,
            optimizer: OptimizerKind::Adamw,
            lr: 7e-6,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            adam_eps: 1e-8,
            schedule: Schedule::Linear,
            warmup_steps: 0,
            epochs: 2,
            batch_size: 8,
            grad_accum: 1,
            max_steps: None,
            seq_len: 2048,
            lora_rank: None,
            lora_alpha: None,
            seed: 42,
            max_grad_norm: Some(1.0),
            checkpointing: false,
            train_top_layers: None,
            shuffle: true,
            save_every: Some(100),
            ppm_layout: None,
        }
    }
}

impl TrainConfig {
    /// Parses a JSON object of config fields (missing ones take their defaults); an error names
    /// the offending field.
    pub fn from_json(v: &serde_json::Value) -> Result<TrainConfig> {
        let err = |e: serde_json::Error| Error::InvalidArgument(format!("train config: {e}"));
        let cfg = serde_json::from_value::<TrainConfig>(v.clone());
        match (cfg, v.as_object()) {
            (Ok(c), _) => c.validate().map(|_| c),
            (Err(e), Some(map)) => {
                for (k, x) in map {
                    let one = serde_json::json!({ k.clone(): x.clone() });
                    if let Err(e) = serde_json::from_value::<TrainConfig>(one) {
                        return Err(Error::InvalidArgument(format!(
                            "train config field `{k}`: {e}"
                        )));
                    }
                }
                Err(err(e))
            }
            (Err(e), None) => Err(err(e)),
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidArgument(m.into()));
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad("lr must be a finite non-negative number");
        }
        if self.batch_size == 0 || self.grad_accum == 0 || self.epochs == 0 {
            return bad("batch_size, grad_accum and epochs must be positive");
        }
        if self.seq_len < 2 {
            return bad("seq_len must be at least 2");
        }
        if self.lora_rank == Some(0) {
            return bad("lora_rank must be positive");
        }
        if self.train_top_layers == Some(0) {
            return bad("train_top_layers must be positive");
        }
        Ok(())
    }
}

/// Progress after an optimizer step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Progress {
    /// Optimizer steps done.
    pub step: usize,
    pub total_steps: usize,
    /// Epoch in progress (0-based).
    pub epoch: usize,
    /// Loss of the last step.
    pub loss: f64,
    pub grad_norm: f64,
    /// Learning rate used by the last step.
    pub lr: f64,
    /// Tokens processed (forward + backward) since this trainer was made or resumed.
    pub tokens: u64,
    pub tokens_per_sec: f64,
    pub elapsed_secs: f64,
    pub eta_secs: f64,
}

enum Dataset {
    None,
    Sft(Vec<SftExample>),
    Pairs(Vec<PairExample>),
}

impl Dataset {
    fn len(&self) -> usize {
        match self {
            Dataset::None => 0,
            Dataset::Sft(v) => v.len(),
            Dataset::Pairs(v) => v.len(),
        }
    }
}

/// A training run.
pub struct Trainer {
    pub config: TrainConfig,
    pub model: TrainModel,
    optim: Optimizer,
    grads: Grads,
    data: Dataset,
    source: PathBuf,
    tokenizer: Option<Tokenizer>,
    /// Optimizer steps done, epoch in progress, examples of this epoch consumed.
    step: usize,
    epoch: usize,
    cursor: usize,
    order: Vec<usize>,
    tokens: u64,
    fmas: f64,
    started: Instant,
    last: Option<Progress>,
    cancel: Arc<AtomicBool>,
    state_dir: Option<PathBuf>,
    /// The PPM layout the model was loaded from (what [`Trainer::save`] writes by default).
    source_layout: PpmLayout,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("source", &self.source)
            .field("step", &self.step)
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl Trainer {
    /// Loads `model_dir` for `config.task`. For PPM, a value head is read from the directory
    /// (`value_head.safetensors` or the combined layout) or freshly initialised.
    pub fn new(model_dir: &Path, config: TrainConfig) -> Result<Trainer> {
        config.validate()?;
        let (mut model, layout) = match config.task {
            Task::Ppm => TrainModel::load_ppm(model_dir, config.seed)?,
            Task::Sft => (TrainModel::load(model_dir)?, PpmLayout::Split),
        };
        model.checkpointing = config.checkpointing;
        if let Some(l) = config.train_top_layers {
            model.train_top_layers(l)?;
        }
        if let Some(rank) = config.lora_rank {
            let mut spec = LoraSpec::all_projections(rank);
            if let Some(a) = config.lora_alpha {
                spec.alpha = a;
            }
            model.add_lora(spec, config.seed)?;
        }
        let mut t = Self::from_model(model, model_dir, config)?;
        t.source_layout = layout;
        Ok(t)
    }

    /// A trainer over an already built model (e.g. with a given value head); `source` is the
    /// directory whose config and tokenizer files saved checkpoints copy.
    pub fn from_model(model: TrainModel, source: &Path, config: TrainConfig) -> Result<Trainer> {
        config.validate()?;
        let tokenizer = if source.join("tokenizer.json").is_file() {
            Some(Tokenizer::from_dir(source)?)
        } else {
            None
        };
        let oc = OptimConfig {
            kind: config.optimizer,
            weight_decay: config.weight_decay,
            beta1: config.beta1,
            beta2: config.beta2,
            eps: config.adam_eps,
        };
        Ok(Trainer {
            optim: Optimizer::new(oc, &model.params),
            grads: model.new_grads(),
            model,
            config,
            data: Dataset::None,
            source: source.to_path_buf(),
            tokenizer,
            step: 0,
            epoch: 0,
            cursor: 0,
            order: Vec::new(),
            tokens: 0,
            fmas: 0.0,
            started: Instant::now(),
            last: None,
            cancel: Arc::new(AtomicBool::new(false)),
            state_dir: None,
            source_layout: PpmLayout::Split,
        })
    }

    /// Reads and tokenizes a dataset for this trainer's task; returns (examples, skipped).
    pub fn load_data(&mut self, path: &Path) -> Result<(usize, usize)> {
        let mut eos = self.model.config.eos_token_ids.first().copied();
        if let Some(t) = &self.tokenizer {
            eos = t.eos_token().and_then(|s| t.token_to_id(s)).or(eos);
        }
        let cx = TokenContext {
            tokenizer: self.tokenizer.as_ref(),
            eos,
            vocab_size: self.model.config.vocab_size,
            seq_len: self.config.seq_len,
        };
        let (n, skipped) = match self.config.task {
            Task::Sft => {
                let d = data::load_sft(path, &cx)?;
                let r = (d.examples.len(), d.skipped);
                self.data = Dataset::Sft(d.examples);
                r
            }
            Task::Ppm => {
                let d = data::load_pairs(path, &cx)?;
                let r = (d.examples.len(), d.skipped);
                self.data = Dataset::Pairs(d.examples);
                r
            }
        };
        if n == 0 {
            return Err(Error::format(path, "no usable training examples"));
        }
        self.order.clear();
        Ok((n, skipped))
    }

    /// Uses already tokenized SFT examples.
    pub fn set_sft_examples(&mut self, ex: Vec<SftExample>) {
        self.data = Dataset::Sft(ex);
        self.order.clear();
    }

    /// Uses already tokenized preference pairs.
    pub fn set_pairs(&mut self, ex: Vec<PairExample>) {
        self.data = Dataset::Pairs(ex);
        self.order.clear();
    }

    /// A flag that, once set (from any thread), stops [`Trainer::run`] after the current step.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Where [`Trainer::run`] writes resumable state every `save_every` steps and at the end.
    pub fn set_state_dir(&mut self, dir: Option<PathBuf>) {
        self.state_dir = dir;
    }

    fn per_step(&self) -> usize {
        self.config.batch_size * self.config.grad_accum
    }

    /// Optimizer steps the whole run takes.
    pub fn total_steps(&self) -> usize {
        let n = self.data.len();
        let all = self.config.epochs * n.div_ceil(self.per_step());
        self.config.max_steps.map_or(all, |m| m.min(all))
    }

    /// Optimizer steps done.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// True when the epochs or `max_steps` are used up.
    pub fn finished(&self) -> bool {
        self.step >= self.total_steps()
    }

    fn epoch_order(&self, epoch: usize) -> Vec<usize> {
        let n = self.data.len();
        let mut order: Vec<usize> = (0..n).collect();
        if self.config.shuffle {
            let mut rng =
                Rng::new(self.config.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            for i in (1..n).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
        }
        order
    }

    /// Runs one optimizer step; `None` when the run is finished.
    pub fn step(&mut self) -> Result<Option<Progress>> {
        if matches!(self.data, Dataset::None) {
            return Err(Error::InvalidArgument("no training data loaded".into()));
        }
        if self.finished() {
            return Ok(None);
        }
        let n = self.data.len();
        if self.cursor >= n {
            self.epoch += 1;
            self.cursor = 0;
            self.order.clear();
        }
        if self.order.len() != n {
            self.order = self.epoch_order(self.epoch);
        }
        let end = (self.cursor + self.per_step()).min(n);
        let batch: Vec<usize> = self.order[self.cursor..end].to_vec();
        self.grads.zero();
        let mut loss = 0f64;
        let mut tokens = 0usize;
        let mut fmas = 0f64;
        match &self.data {
            Dataset::Sft(all) => {
                let ex: Vec<&SftExample> = batch.iter().map(|&i| &all[i]).collect();
                let total: usize = ex.iter().map(|e| e.n_targets()).sum();
                let weight = 1.0 / total.max(1) as f32;
                for (p, targets) in pack::pack_sft(&ex, self.config.seq_len) {
                    tokens += p.len();
                    fmas += 3.0 * self.model.forward_fmas(&p, targets.len());
                    let obj = Objective::Lm { targets, weight };
                    loss += self.model.forward_backward(&p, &obj, &mut self.grads)?;
                }
            }
            Dataset::Pairs(all) => {
                let ex: Vec<&PairExample> = batch.iter().map(|&i| &all[i]).collect();
                let weight = 1.0 / ex.len().max(1) as f32;
                for (p, pairs) in pack::pack_pairs(&ex, self.config.seq_len) {
                    tokens += p.len();
                    fmas += 3.0 * self.model.forward_fmas(&p, 0);
                    let obj = Objective::Pairs { pairs, weight };
                    loss += self.model.forward_backward(&p, &obj, &mut self.grads)?;
                }
            }
            Dataset::None => unreachable!("checked above"),
        }
        if !loss.is_finite() {
            return Err(Error::InvalidArgument(format!(
                "loss became {loss} at step {}; lower the learning rate",
                self.step + 1
            )));
        }
        let norm = self.grads.norm();
        let scale = optim::clip_scale(norm, self.config.max_grad_norm);
        let factor = optim::lr_factor(
            self.config.schedule,
            self.step,
            self.config.warmup_steps,
            self.total_steps(),
        );
        let lr = self.config.lr as f64 * factor;
        self.optim
            .step(&mut self.model.params, &self.grads, lr as f32, scale);
        self.step += 1;
        self.cursor = end;
        self.tokens += tokens as u64;
        self.fmas += fmas;
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = self.tokens as f64 / elapsed.max(1e-9);
        let left = self.total_steps().saturating_sub(self.step);
        let p = Progress {
            step: self.step,
            total_steps: self.total_steps(),
            epoch: self.epoch,
            loss,
            grad_norm: norm,
            lr,
            tokens: self.tokens,
            tokens_per_sec: rate,
            elapsed_secs: elapsed,
            eta_secs: elapsed / self.step.max(1) as f64 * left as f64,
        };
        self.last = Some(p);
        Ok(Some(p))
    }

    /// Multiply-adds done by the steps so far (forward + backward, counted as 3x forward).
    pub fn fmas_done(&self) -> f64 {
        self.fmas
    }

    /// Runs up to `max_steps` more optimizer steps (all remaining if `None`), calling `progress`
    /// after each; stops early (with [`Error::Cancelled`]) when it returns false or the cancel flag
    /// is set. Writes resumable state every `save_every` steps and at the end if a state directory
    /// is set.
    pub fn run(
        &mut self,
        max_steps: Option<usize>,
        progress: &mut dyn FnMut(&Progress) -> bool,
    ) -> Result<Option<Progress>> {
        let mut done = 0;
        while max_steps.is_none_or(|m| done < m) {
            if self.cancel.load(Ordering::Relaxed) {
                self.checkpoint_now()?;
                return Err(Error::Cancelled);
            }
            let Some(p) = self.step()? else { break };
            done += 1;
            if self
                .config
                .save_every
                .is_some_and(|k| k > 0 && self.step.is_multiple_of(k))
            {
                self.checkpoint_now()?;
            }
            if !progress(&p) {
                self.checkpoint_now()?;
                return Err(Error::Cancelled);
            }
        }
        self.checkpoint_now()?;
        Ok(self.last)
    }

    /// Runs the rest of the current epoch (or the next one if it just ended).
    pub fn run_epoch(
        &mut self,
        progress: &mut dyn FnMut(&Progress) -> bool,
    ) -> Result<Option<Progress>> {
        let n = self.data.len();
        let left = if self.cursor >= n { n } else { n - self.cursor };
        self.run(Some(left.div_ceil(self.per_step())), progress)
    }

    fn checkpoint_now(&self) -> Result<()> {
        match &self.state_dir {
            Some(d) => self.save_state(d),
            None => Ok(()),
        }
    }

    /// Saves the trained model as a Hugging Face directory (LoRA merged), a PPM's value head in the
    /// layout of `ppm_layout` (default: the one it was loaded in), and with LoRA the PEFT adapter
    /// under `dir/adapter`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let layout = self.config.ppm_layout.unwrap_or(self.source_layout);
        checkpoint::save_model_dir(&self.model, &self.source, dir, layout)?;
        if self.model.lora().is_some() {
            let base = self.source.to_string_lossy();
            checkpoint::save_peft(&self.model, &dir.join("adapter"), &base)?;
        }
        Ok(())
    }

    /// Writes parameters, optimizer state and counters to `dir` for [`Trainer::resume`].
    pub fn save_state(&self, dir: &Path) -> Result<()> {
        let meta = json!({
            "step": self.step,
            "epoch": self.epoch,
            "cursor": self.cursor,
            "optimizer_t": self.optim.t,
            "n_examples": self.data.len(),
            "config": self.config,
        });
        checkpoint::save_state(dir, &self.model, &self.optim.m, &self.optim.v, &meta)
    }

    /// Continues from state written by [`Trainer::save_state`]; the dataset (same size) must be
    /// loaded first. Returns false (and changes nothing) if `dir` holds no state.
    pub fn resume(&mut self, dir: &Path) -> Result<bool> {
        // The state file carries its counters (one atomic write): it alone says state exists.
        let (st, js) = checkpoint::state_paths(dir);
        if !st.is_file() {
            return Ok(false);
        }
        let meta =
            checkpoint::load_state(dir, &mut self.model, &mut self.optim.m, &mut self.optim.v)?;
        let num = |f: &str| {
            meta.get(f)
                .and_then(|v| v.as_u64())
                .ok_or_else(|| Error::config(&js, f, "missing or not a number"))
        };
        let n = num("n_examples")? as usize;
        if n != self.data.len() {
            return Err(Error::config(
                &js,
                "n_examples",
                format!(
                    "state was saved for {n} examples, the dataset now has {}",
                    self.data.len()
                ),
            ));
        }
        self.step = num("step")? as usize;
        self.epoch = num("epoch")? as usize;
        self.cursor = num("cursor")? as usize;
        self.optim.t = num("optimizer_t")?;
        self.order.clear();
        self.tokens = 0;
        self.fmas = 0.0;
        self.started = Instant::now();
        Ok(true)
    }
}

/// What [`prepare`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Prepared {
    pub examples: usize,
    pub skipped: usize,
    /// Whether training continues from saved state.
    pub resumed: bool,
}

/// Where [`prepare`] keeps the resumable state of a run that saves to `out`.
pub fn state_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// The setup of `rstar train` (and of each training stage of the evolve driver): a trainer for
/// `model_dir` on `data`, its resumable state in [`state_dir`]`(out)`, continued from there when
/// `resume` is set and state exists. Train it with [`Trainer::run`], then [`Trainer::save`] to
/// `out`.
pub fn prepare(
    model_dir: &Path,
    data: &Path,
    out: &Path,
    config: TrainConfig,
    resume: bool,
) -> Result<(Trainer, Prepared)> {
    let mut trainer = Trainer::new(model_dir, config)?;
    let (examples, skipped) = trainer.load_data(data)?;
    let state = state_dir(out);
    let resumed = resume && trainer.resume(&state)?;
    trainer.set_state_dir(Some(state));
    Ok((
        trainer,
        Prepared {
            examples,
            skipped,
            resumed,
        },
    ))
}

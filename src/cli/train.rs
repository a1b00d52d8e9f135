//! `rstar train sft|ppm`: fine-tune a policy (SFT) or train a process preference model (PPM).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use rstar::model::ppm_layout::PpmLayout;
use rstar::train::optim::{OptimizerKind, Schedule};
use rstar::train::trainer::{prepare, state_dir};
use rstar::train::{Progress, Task, TrainConfig};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TaskArg {
    /// Policy SFT: mean cross-entropy over response tokens.
    Sft,
    /// Process preference model: value head + decoder on preference pairs.
    Ppm,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OptimizerArg {
    Adamw,
    Sgd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScheduleArg {
    Constant,
    Linear,
    Cosine,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LayoutArg {
    Split,
    Combined,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// What to train.
    #[arg(value_enum)]
    pub task: TaskArg,
    /// Model directory to start from (config.json, *.safetensors, tokenizer.json). For ppm, the SFT
    /// policy; its value_head.safetensors is used if present.
    #[arg(long)]
    pub model: PathBuf,
    /// Training data, JSONL or a JSON array (sft: prompt/response, query/response, prompt_ids/
    /// response_ids or messages; ppm: prompt/pos/neg or prefix_ids/pos_ids/neg_ids).
    #[arg(long)]
    pub data: PathBuf,
    /// Output directory: the trained model (HF layout); resumable state goes to OUT/checkpoint.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerArg>,
    /// Peak learning rate (default 7e-6).
    #[arg(long)]
    pub lr: Option<f32>,
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Examples (sft) or pairs (ppm) per micro-step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-steps per optimizer step.
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Stop after this many optimizer steps.
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Maximum tokens per packed micro-batch (default 2048).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Train LoRA adapters of this rank on every attention and MLP projection instead of all weights.
    #[arg(long)]
    pub lora_rank: Option<usize>,
    #[arg(long)]
    pub lora_alpha: Option<f32>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleArg>,
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Clip gradients to this global norm (0: off; default 1).
    #[arg(long)]
    pub max_grad_norm: Option<f32>,
    /// Recompute activations per layer in the backward (less memory).
    #[arg(long)]
    pub checkpointing: bool,
    /// Train only the top L decoder layers (plus the final norm and value head); the layers
    /// below and the embedding run forward only (no stored activations, no backward).
    #[arg(long, value_name = "L")]
    pub train_top_layers: Option<usize>,
    /// Write resumable state every N steps (default 100).
    #[arg(long)]
    pub save_every: Option<usize>,
    /// How a PPM is saved: split (value_head.safetensors beside the decoder) or combined (trl's
    /// one file, decoder keys prefixed `pretrained_model.`). Default: the layout of --model.
    #[arg(long, value_enum)]
    pub save_layout: Option<LayoutArg>,
    /// Continue from OUT/checkpoint if it exists.
    #[arg(long)]
    pub resume: bool,
    /// Compute threads (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

fn config(a: &TrainArgs) -> TrainConfig {
    let d = TrainConfig::default();
    TrainConfig {
        task: match a.task {
            TaskArg::Sft => Task::Sft,
            TaskArg::Ppm => Task::Ppm,
        },
        optimizer: match a.optimizer {
            Some(OptimizerArg::Sgd) => OptimizerKind::Sgd,
            Some(OptimizerArg::Adamw) => OptimizerKind::Adamw,
            None => d.optimizer,
        },
        lr: a.lr.unwrap_or(d.lr),
        epochs: a.epochs.unwrap_or(d.epochs),
        batch_size: a.batch_size.unwrap_or(d.batch_size),
        grad_accum: a.grad_accum.unwrap_or(d.grad_accum),
        max_steps: a.max_steps.or(d.max_steps),
        seq_len: a.seq_len.unwrap_or(d.seq_len),
        lora_rank: a.lora_rank,
        lora_alpha: a.lora_alpha,
        seed: a.seed.unwrap_or(d.seed),
        schedule: match a.schedule {
            Some(ScheduleArg::Constant) => Schedule::Constant,
            Some(ScheduleArg::Linear) => Schedule::Linear,
            Some(ScheduleArg::Cosine) => Schedule::Cosine,
            None => d.schedule,
        },
        warmup_steps: a.warmup_steps.unwrap_or(d.warmup_steps),
        weight_decay: a.weight_decay.unwrap_or(d.weight_decay),
        max_grad_norm: match a.max_grad_norm {
            Some(x) if x <= 0.0 => None,
            Some(x) => Some(x),
            None => d.max_grad_norm,
        },
        checkpointing: a.checkpointing,
        train_top_layers: a.train_top_layers,
        save_every: a.save_every.or(d.save_every),
        ppm_layout: a.save_layout.map(|l| match l {
            LayoutArg::Split => PpmLayout::Split,
            LayoutArg::Combined => PpmLayout::Combined,
        }),
        ..d
    }
}

pub fn line(p: &Progress) -> String {
    format!(
        "step {}/{} epoch {} loss {:.4} lr {:.3e} grad_norm {:.3} {:.0} tok/s eta {:.0}s",
        p.step,
        p.total_steps,
        p.epoch + 1,
        p.loss,
        p.lr,
        p.grad_norm,
        p.tokens_per_sec,
        p.eta_secs
    )
}

/// Training progress on stderr: a bar on a terminal, log lines otherwise (the first 10 steps,
/// then every 10 s, and the last).
pub struct TrainProgress {
    bar: Option<indicatif::ProgressBar>,
    last_log: Instant,
}

impl TrainProgress {
    pub fn new(total_steps: usize, done: usize) -> TrainProgress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new(total_steps as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_position(done as u64);
            b
        });
        TrainProgress {
            bar,
            last_log: Instant::now(),
        }
    }

    pub fn update(&mut self, p: &Progress) {
        match &self.bar {
            Some(b) => {
                b.set_position(p.step as u64);
                b.set_message(format!("loss {:.4} {:.0} tok/s", p.loss, p.tokens_per_sec));
            }
            None if p.step == p.total_steps
                || p.step <= 10
                || self.last_log.elapsed() > Duration::from_secs(10) =>
            {
                self.last_log = Instant::now();
                eprintln!("{}", line(p));
            }
            None => {}
        }
    }

    pub fn finish(self) {
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
    }
}

/// Trains, printing progress on stderr (a bar on a terminal, log lines otherwise), and saves the
/// model to `--out`.
pub fn run(args: TrainArgs) -> rstar::Result<()> {
    // Training computes in f32 on its own kernels; the `Compute` gives it the thread count.
    rstar::backend::cpu::Compute::new(
        rstar::backend::cpu::Precision::Exact,
        args.threads,
        "--threads",
    )?
    .run(move || train_cmd(args))
}

fn train_cmd(args: TrainArgs) -> rstar::Result<()> {
    let (mut trainer, prep) = prepare(
        &args.model,
        &args.data,
        &args.out,
        config(&args),
        args.resume,
    )?;
    eprintln!(
        "{}: {} examples ({} skipped), {} optimizer steps",
        args.data.display(),
        prep.examples,
        prep.skipped,
        trainer.total_steps()
    );
    let state = state_dir(&args.out);
    if prep.resumed {
        eprintln!(
            "resumed from {} at step {}",
            state.display(),
            trainer.steps_done()
        );
    } else if args.resume {
        eprintln!("no state in {}; starting fresh", state.display());
    }
    let mut shown = TrainProgress::new(trainer.total_steps(), trainer.steps_done());
    let last = trainer.run(None, &mut |p| {
        shown.update(p);
        true
    })?;
    shown.finish();
    trainer.save(&args.out)?;
    match last {
        Some(p) => eprintln!("{}\nsaved {}", line(&p), args.out.display()),
        None => eprintln!("nothing left to train; saved {}", args.out.display()),
    }
    Ok(())
}

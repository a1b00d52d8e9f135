//! `rstar train sft|ppm`: fine-tune a policy (SFT) or train a process preference model (PPM).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use rstar::train::optim::{OptimizerKind, Schedule};
use rstar::train::{Progress, Task, TrainConfig, Trainer};

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
    /// Write resumable state every N steps (default 100).
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Continue from OUT/checkpoint if it exists.
    #[arg(long)]
    pub resume: bool,
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
        save_every: a.save_every.or(d.save_every),
        ..d
    }
}

fn line(p: &Progress) -> String {
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

/// Trains, printing progress on stderr (a bar on a terminal, log lines otherwise), and saves the
/// model to `--out`.
pub fn run(args: TrainArgs) -> rstar::Result<()> {
    let mut trainer = Trainer::new(&args.model, config(&args))?;
    let (n, skipped) = trainer.load_data(&args.data)?;
    eprintln!(
        "{}: {n} examples ({skipped} skipped), {} optimizer steps",
        args.data.display(),
        trainer.total_steps()
    );
    let state = args.out.join("checkpoint");
    if args.resume {
        if trainer.resume(&state)? {
            eprintln!(
                "resumed from {} at step {}",
                state.display(),
                trainer.steps_done()
            );
        } else {
            eprintln!("no state in {}; starting fresh", state.display());
        }
    }
    trainer.set_state_dir(Some(state));
    let tty = std::io::stderr().is_terminal();
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new(trainer.total_steps() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_position(trainer.steps_done() as u64);
        b
    });
    let mut last_log = Instant::now();
    let last = trainer.run(None, &mut |p| {
        match &bar {
            Some(b) => {
                b.set_position(p.step as u64);
                b.set_message(format!("loss {:.4} {:.0} tok/s", p.loss, p.tokens_per_sec));
            }
            None if p.step == p.total_steps
                || p.step <= 10
                || last_log.elapsed() > Duration::from_secs(10) =>
            {
                last_log = Instant::now();
                eprintln!("{}", line(p));
            }
            None => {}
        }
        true
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    trainer.save(&args.out)?;
    match last {
        Some(p) => eprintln!("{}\nsaved {}", line(&p), args.out.display()),
        None => eprintln!("nothing left to train; saved {}", args.out.display()),
    }
    Ok(())
}

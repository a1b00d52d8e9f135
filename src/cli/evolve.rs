//! `rstar evolve`: self-evolution rounds (MCTS synthesis, extraction, SFT, PPM, evaluation),
//! resumable stage by stage; prints the per-round table and writes WORKDIR/rounds.json and its
//! plot WORKDIR/rounds.png.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use rstar::train::evolve::{evolve, format_table, Event, EvolveConfig, EvolveOptions};

use super::train::TrainProgress;

#[derive(Args, Debug)]
pub struct EvolveArgs {
    /// Base policy model directory: searched in round 1 and fine-tuned from in every round.
    #[arg(long)]
    pub policy: PathBuf,
    /// Training problems: a JSON list, {"example": [...]} or JSONL of {question, answer}.
    #[arg(long)]
    pub data: PathBuf,
    /// Held-out problems for evaluation (default: the last `holdout` fraction of --data).
    #[arg(long)]
    pub eval: Option<PathBuf>,
    /// SFT examples mixed into every round's policy SFT set (e.g. the bootstrap set the base
    /// policy was trained on); config "sft_replay" caps how many are drawn per round.
    #[arg(long)]
    pub replay: Option<PathBuf>,
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Work directory (round-N/ stages, rounds.json); a rerun skips finished stages.
    #[arg(long)]
    pub workdir: PathBuf,
    /// JSON config: {"mcts": {...}, "round1_rollouts", "batch", "ppm_from_round", "extract": {...},
    /// "sft": {...}, "ppm": {...}, "holdout", "eval_limit", "eval_ppm_rollouts", "sft_replay"}.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Precision and threads of the search stages (MCTS synthesis and evaluation); training uses
    /// the same threads, in f32.
    #[command(flatten)]
    pub compute: super::ComputeArgs,
}

/// Stage lines, and a bar (terminal) or log lines for the long parts.
struct Shown {
    bar: Option<indicatif::ProgressBar>,
    train: Option<TrainProgress>,
}

impl Shown {
    fn on(&mut self, e: Event<'_>) {
        match e {
            Event::Stage {
                round,
                stage,
                skipped,
            } => {
                self.clear();
                let what = if skipped {
                    "done already, skipped"
                } else {
                    "..."
                };
                eprintln!("round {round}: {} {what}", stage.name());
            }
            Event::Problems { done, total } => {
                if std::io::stderr().is_terminal() {
                    let b = self.bar.get_or_insert_with(|| {
                        let b = indicatif::ProgressBar::new(total as u64);
                        b.set_style(
                            indicatif::ProgressStyle::with_template(
                                "{bar:30} {pos}/{len} problems {elapsed}",
                            )
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                        );
                        b
                    });
                    b.set_position(done as u64);
                } else {
                    eprintln!("  [{done}/{total}] problems");
                }
            }
            Event::TrainStart { total_steps, done } => {
                self.train = Some(TrainProgress::new(total_steps, done));
            }
            Event::Train(p) => {
                if let Some(t) = &mut self.train {
                    t.update(p);
                }
            }
            Event::TrainEnd => self.clear(),
            Event::Round(row) => {
                self.clear();
                eprint!("{}", format_table(std::slice::from_ref(row)));
            }
        }
    }

    fn clear(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if let Some(t) = self.train.take() {
            t.finish();
        }
    }
}

pub fn run(a: EvolveArgs) -> rstar::Result<()> {
    a.compute.build()?.run(move || evolve_cmd(a))
}

fn evolve_cmd(a: EvolveArgs) -> rstar::Result<()> {
    let config = match &a.config {
        Some(p) => EvolveConfig::from_file(p)?,
        None => EvolveConfig::default(),
    };
    let opts = EvolveOptions {
        policy: a.policy,
        data: a.data,
        eval_data: a.eval,
        replay_data: a.replay,
        rounds: a.rounds,
        workdir: a.workdir,
        config,
    };
    let mut shown = Shown {
        bar: None,
        train: None,
    };
    let rows = evolve(&opts, &mut |e| {
        shown.on(e);
        true
    })?;
    shown.clear();
    print!("{}", format_table(&rows));
    eprintln!(
        "wrote {} and {}",
        opts.workdir.join("rounds.json").display(),
        opts.workdir.join("rounds.png").display()
    );
    Ok(())
}

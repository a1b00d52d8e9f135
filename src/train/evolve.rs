//! The self-evolution driver (spec 4, 5.2-5.5, 6.2; `rstar evolve`): rounds of MCTS synthesis,
//! extraction, policy SFT from the base model, PPM training from the new policy, and evaluation.
//!
//! Round `r` (1-based):
//! 1. **mcts**: the latest trained policy (the base model in round 1) searches every training
//!    problem. Rounds before `ppm_from_round` are terminal-guided; later ones are PPM-augmented
//!    with the latest trained PPM (terminal-guided while there is none). Round 1 uses
//!    `round1_rollouts` (the paper's 8), later rounds `mcts.rollouts` (16).
//! 2. **extract**: the SFT set and the preference pairs of the round's trees
//!    ([`crate::data::extract`]).
//! 3. **sft**: the policy is trained **from the base model** on this round's SFT set (spec 5.2),
//!    plus, with a replay file, a draw of its examples (`sft_replay`; e.g. the bootstrap set, so
//!    that a base already fine-tuned on it does not forget what the round's trajectories miss).
//! 4. **ppm**: the PPM is trained from the new policy (the latest one if this round trained
//!    none) on this round's pairs.
//! 5. **eval**: greedy pass@1 of the latest policy on the held-out problems (MCTS in inference
//!    mode with one rollout, width 1, temperature 0: the whole generation path of `rstar solve`,
//!    step by step with execution, i.e. the reference's greedy config), PPM-guided accuracy
//!    (inference MCTS with the latest PPM, `eval_ppm_rollouts` rollouts; skipped when 0 or no
//!    PPM), and the solve coverage of the training problems from the round's trees.
//!
//! Round 0 only evaluates the base policy (greedy), the start of the table.
//!
//! Layout of the work directory: `round-0/eval.done`, `round-N/trees.jsonl`, `round-N/sft.json`, `round-N/pairs.json`,
//! `round-N/policy/` and `round-N/ppm/` (Hugging Face directories), and a marker
//! `round-N/<stage>.done` (the stage's result as JSON) per finished stage. A rerun skips stages
//! that have a marker; an interrupted stage resumes where it can (the MCTS file skips problems
//! already written, training continues from `policy/checkpoint` or `ppm/checkpoint`). After
//! every round, `rounds.json` holds the per-round table ([`RoundRow`]) and `rounds.png` its plot.
//!
//! Problems: `data` holds the training problems; held-out problems come from `eval_data`, or
//! else are the last `holdout` fraction of `data` (at least one when `data` has two or more).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::data::durable::write_atomic;
use crate::data::extract::{
    extract_file, trajectories, ExtractConfig, ExtractKind, ExtractSummary,
};
use crate::data::problems::load_problems;
use crate::data::prompts::POLICY_PROMPT;
use crate::data::training::read_records;
use crate::data::trees::read_trees;
use crate::error::{Error, Result};
use crate::grade;
use crate::plot::{line_chart, Chart, Series};
use crate::rng::Rng;
use crate::search::dataset::run_dataset;
use crate::search::llm::load_models;
use crate::search::{search, Mode, Models, Problem, SearchConfig, SearchStats, ValueModel};
use crate::train::trainer::{prepare, state_dir, Progress, Task, TrainConfig};

/// Every knob of the driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvolveConfig {
    /// The search of the synthesis stage; `mode` is set per round.
    pub mcts: SearchConfig,
    /// Rollouts of round 1 (paper: 8); `None` uses `mcts.rollouts`.
    pub round1_rollouts: Option<usize>,
    /// Problems searched together.
    pub batch: usize,
    /// First round whose synthesis is PPM-augmented (paper: 3; the issue: 2).
    pub ppm_from_round: usize,
    pub extract: ExtractConfig,
    /// Policy SFT (`task` is forced to sft).
    pub sft: TrainConfig,
    /// PPM training (`task` is forced to ppm).
    pub ppm: TrainConfig,
    /// Held-out fraction of `data` when no evaluation file is given.
    pub holdout: f64,
    /// Evaluate on at most this many held-out problems.
    pub eval_limit: Option<usize>,
    /// Rollouts of the PPM-guided evaluation (0: off).
    pub eval_ppm_rollouts: usize,
    /// With a replay file ([`EvolveOptions::replay_data`]): at most this many of its SFT
    /// examples, drawn per round, join the round's SFT set (`None`: all of them).
    pub sft_replay: Option<usize>,
}

impl Default for EvolveConfig {
    fn default() -> Self {
        EvolveConfig {
            mcts: SearchConfig::default(),
            round1_rollouts: Some(8),
            batch: 8,
            ppm_from_round: 2,
            // The PPM is trained on the prompt it is scored with during search.
            extract: ExtractConfig {
                prompt_template: POLICY_PROMPT.into(),
                ..ExtractConfig::default()
            },
            sft: TrainConfig::default(),
            ppm: TrainConfig {
                task: Task::Ppm,
                epochs: 1,
                ..TrainConfig::default()
            },
            holdout: 0.2,
            eval_limit: None,
            eval_ppm_rollouts: 4,
            sft_replay: None,
        }
    }
}

impl EvolveConfig {
    /// Reads a JSON config file (missing fields take their defaults); errors name the file.
    pub fn from_file(path: &Path) -> Result<EvolveConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::format(path, format!("evolve config: {e}")))
    }

    pub fn validate(&self) -> Result<()> {
        self.mcts.validate()?;
        self.extract.validate()?;
        if self.batch == 0 || self.ppm_from_round == 0 {
            return Err(Error::InvalidArgument(
                "batch and ppm_from_round must be at least 1".into(),
            ));
        }
        if !(0.0..1.0).contains(&self.holdout) {
            return Err(Error::InvalidArgument("holdout must be in [0, 1)".into()));
        }
        Ok(())
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct EvolveOptions {
    /// The base policy: searched in round 1, and the start of every round's SFT.
    pub policy: PathBuf,
    /// Training problems (`{question, answer}` as JSON list, `{"example": [...]}` or JSONL).
    pub data: PathBuf,
    /// Held-out problems (else a split of `data`).
    pub eval_data: Option<PathBuf>,
    /// SFT examples mixed into every round's SFT set (e.g. the bootstrap set the base policy
    /// was trained on), so that fine-tuning the base on one round's trajectories does not
    /// forget what they do not cover. Any SFT format of `rstar train sft`.
    pub replay_data: Option<PathBuf>,
    pub rounds: usize,
    pub workdir: PathBuf,
    pub config: EvolveConfig,
}

/// A stage of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Mcts,
    Extract,
    Sft,
    Ppm,
    Eval,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Mcts => "mcts",
            Stage::Extract => "extract",
            Stage::Sft => "sft",
            Stage::Ppm => "ppm",
            Stage::Eval => "eval",
        }
    }
}

/// Progress reports of [`evolve`].
#[derive(Debug)]
pub enum Event<'a> {
    /// A stage starts, or is skipped because its marker exists.
    Stage {
        round: usize,
        stage: Stage,
        skipped: bool,
    },
    /// Synthesis or evaluation: problems done of total.
    Problems {
        done: usize,
        total: usize,
    },
    /// A training stage starts: total and already done optimizer steps.
    TrainStart {
        total_steps: usize,
        done: usize,
    },
    Train(&'a Progress),
    TrainEnd,
    /// A finished round's row.
    Round(&'a RoundRow),
}

/// Result of the synthesis stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MctsDone {
    pub mode: Mode,
    pub rollouts: usize,
    pub policy: PathBuf,
    pub ppm: Option<PathBuf>,
    pub problems: usize,
    /// Problems with at least one correct answer in their tree.
    pub solved: usize,
    pub seconds: f64,
}

/// Result of the extraction stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractDone {
    pub sft: ExtractSummary,
    pub pairs: ExtractSummary,
    pub seconds: f64,
}

/// Result of a training stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainDone {
    /// False when there was no data (the round keeps the previous model).
    pub trained: bool,
    pub from: Option<PathBuf>,
    pub examples: usize,
    pub steps: usize,
    pub final_loss: Option<f64>,
    pub seconds: f64,
}

/// Result of the evaluation stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalDone {
    pub policy: PathBuf,
    pub ppm: Option<PathBuf>,
    pub heldout: usize,
    pub greedy_correct: usize,
    pub ppm_correct: Option<usize>,
    pub seconds: f64,
}

/// One row of the per-round table (`rounds.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRow {
    /// 0: the base policy, evaluated only.
    pub round: usize,
    /// The synthesis mode (`None` in round 0).
    pub mode: Option<Mode>,
    pub problems: usize,
    pub solved: usize,
    /// solved / problems.
    pub coverage: f64,
    pub sft_examples: usize,
    pub pairs: usize,
    pub policy_trained: bool,
    pub ppm_trained: bool,
    pub heldout: usize,
    pub greedy_correct: usize,
    pub greedy_pass1: f64,
    pub ppm_correct: Option<usize>,
    pub ppm_accuracy: Option<f64>,
    /// Wall seconds per stage (of the run that did it).
    pub seconds: BTreeMap<String, f64>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn round_dir(workdir: &Path, r: usize) -> PathBuf {
    workdir.join(format!("round-{r}"))
}

fn marker(dir: &Path, stage: Stage) -> PathBuf {
    dir.join(format!("{}.done", stage.name()))
}

fn read_marker<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::format(path, format!("stage marker: {e}")))
}

/// Reports `e`; [`Error::Cancelled`] when the receiver asks to stop.
fn emit(on: &mut dyn FnMut(Event<'_>) -> bool, e: Event<'_>) -> Result<()> {
    if on(e) {
        Ok(())
    } else {
        Err(Error::Cancelled)
    }
}

/// Runs a stage unless its marker exists; returns the stage result either way.
fn stage<T: Serialize + DeserializeOwned>(
    dir: &Path,
    round: usize,
    which: Stage,
    on: &mut dyn FnMut(Event<'_>) -> bool,
    run: impl FnOnce(&mut dyn FnMut(Event<'_>) -> bool) -> Result<T>,
) -> Result<T> {
    let m = marker(dir, which);
    if let Some(done) = read_marker(&m)? {
        emit(
            on,
            Event::Stage {
                round,
                stage: which,
                skipped: true,
            },
        )?;
        return Ok(done);
    }
    emit(
        on,
        Event::Stage {
            round,
            stage: which,
            skipped: false,
        },
    )?;
    let v = run(on)?;
    let json = serde_json::to_vec_pretty(&v)
        .map_err(|e| Error::Internal(format!("serialising a stage marker: {e}")))?;
    write_atomic(&m, &json)?;
    Ok(v)
}

/// The model a finished training stage of round `r` left, if it trained one.
fn trained_model(workdir: &Path, r: usize, which: Stage) -> Result<Option<PathBuf>> {
    let dir = round_dir(workdir, r);
    let done: Option<TrainDone> = read_marker(&marker(&dir, which))?;
    let name = match which {
        Stage::Sft => "policy",
        _ => "ppm",
    };
    Ok(done.filter(|d| d.trained).map(|_| dir.join(name)))
}

/// The latest model trained by `which` in rounds `1..=upto`.
fn latest(workdir: &Path, upto: usize, which: Stage) -> Result<Option<PathBuf>> {
    for r in (1..=upto).rev() {
        if let Some(p) = trained_model(workdir, r, which)? {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

/// Splits the problems into (training, held-out).
fn split_problems(opts: &EvolveOptions) -> Result<(Vec<Problem>, Vec<Problem>)> {
    let mut train = load_problems(&opts.data)?;
    let mut held = match &opts.eval_data {
        Some(p) => load_problems(p)?,
        None => {
            let n = train.len();
            let k = ((n as f64 * opts.config.holdout).round() as usize).min(n.saturating_sub(1));
            let k = if n >= 2 && opts.config.holdout > 0.0 {
                k.max(1)
            } else {
                k
            };
            train.split_off(n - k)
        }
    };
    if let Some(l) = opts.config.eval_limit {
        held.truncate(l);
    }
    if train.is_empty() {
        return Err(Error::format(&opts.data, "no training problems"));
    }
    Ok((train, held))
}

/// Runs inference MCTS over `problems` in batches and counts the correct best answers.
fn count_correct(
    problems: &[Problem],
    cfg: &SearchConfig,
    policy: &Path,
    ppm: Option<&Path>,
    batch: usize,
    on: &mut dyn FnMut(Event<'_>) -> bool,
) -> Result<usize> {
    let (mut pol, mut val, exec) = load_models(policy, ppm, cfg)?;
    let mut stats = SearchStats::default();
    let mut correct = 0;
    let mut done = 0;
    for chunk in problems.chunks(batch.max(1)) {
        // No ground truth in inference mode: the answers are graded here.
        let blind: Vec<Problem> = chunk
            .iter()
            .map(|p| Problem {
                answer: None,
                ..p.clone()
            })
            .collect();
        let trees = search(
            &blind,
            cfg,
            &mut Models {
                policy: &mut pol,
                value: val.as_mut().map(|v| v as &mut dyn ValueModel),
                runner: &exec,
            },
            &mut stats,
            &mut |_, _| true,
        )?;
        for (p, t) in chunk.iter().zip(&trees) {
            let ans = t
                .best_answer()
                .and_then(|i| t.nodes[i].final_answer.clone());
            let gt = p.answer.as_deref().unwrap_or_default();
            correct += usize::from(ans.is_some_and(|a| grade::equal(&a, gt)));
        }
        done += chunk.len();
        emit(
            on,
            Event::Problems {
                done,
                total: problems.len(),
            },
        )?;
    }
    Ok(correct)
}

/// Writes `dir/sft-train.jsonl`: the round's SFT records, then up to `count` records of `replay`
/// (a seeded draw per round, in file order; all when `count` is `None`). Returns its path.
fn with_replay(
    sft: &Path,
    replay: &Path,
    count: Option<usize>,
    round: usize,
    dir: &Path,
) -> Result<PathBuf> {
    let mut pool = read_records(replay)?;
    let n = count.unwrap_or(pool.len()).min(pool.len());
    // Partial Fisher-Yates: the first n of a seeded shuffle, then back in file order.
    let mut rng = Rng::new(0x5eed_0000 + round as u64);
    let mut idx: Vec<usize> = (0..pool.len()).collect();
    for i in 0..n {
        let j = i + (rng.next_u64() % (idx.len() - i) as u64) as usize;
        idx.swap(i, j);
    }
    let mut keep = idx[..n].to_vec();
    keep.sort_unstable();
    let mut text = String::new();
    let records = read_records(sft)?
        .into_iter()
        .chain(keep.into_iter().map(|i| std::mem::take(&mut pool[i])));
    for (_, v) in records {
        text.push_str(&v.to_string());
        text.push('\n');
    }
    let out = dir.join("sft-train.jsonl");
    write_atomic(&out, text.as_bytes())?;
    Ok(out)
}

/// Trains `task` from `from` on `data` into `out` (resuming from its state), then drops the state.
fn train_stage(
    from: &Path,
    data: &Path,
    out: &Path,
    mut cfg: TrainConfig,
    task: Task,
    on: &mut dyn FnMut(Event<'_>) -> bool,
) -> Result<TrainDone> {
    let t0 = Instant::now();
    cfg.task = task;
    let (mut trainer, prep) = prepare(from, data, out, cfg, true)?;
    emit(
        on,
        Event::TrainStart {
            total_steps: trainer.total_steps(),
            done: trainer.steps_done(),
        },
    )?;
    // A false from `on` stops the trainer after saving its state (resumed by the next run).
    let last = trainer.run(None, &mut |p| on(Event::Train(p)))?;
    emit(on, Event::TrainEnd)?;
    trainer.save(out)?;
    let state = state_dir(out);
    if state.exists() {
        std::fs::remove_dir_all(&state).map_err(|e| Error::io(&state, e))?;
    }
    Ok(TrainDone {
        trained: true,
        from: Some(from.to_path_buf()),
        examples: prep.examples,
        steps: trainer.steps_done(),
        final_loss: last.map(|p| p.loss),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

fn not_trained() -> TrainDone {
    TrainDone {
        trained: false,
        from: None,
        examples: 0,
        steps: 0,
        final_loss: None,
        seconds: 0.0,
    }
}

/// Round `r`'s evaluation: greedy pass@1 of the latest policy (the base in round 0) on the
/// held-out problems, and the PPM-guided accuracy when a PPM exists.
fn evaluate_round(
    opts: &EvolveOptions,
    r: usize,
    held: &[Problem],
    on: &mut dyn FnMut(Event<'_>) -> bool,
) -> Result<EvalDone> {
    let (c, w) = (&opts.config, &opts.workdir);
    let t0 = Instant::now();
    let policy = latest(w, r, Stage::Sft)?.unwrap_or_else(|| opts.policy.clone());
    let ppm = latest(w, r, Stage::Ppm)?;
    let greedy = SearchConfig {
        mode: Mode::Inference,
        rollouts: 1,
        width: 1,
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        // The reference's greedy config tolerates 3 consecutive errors.
        errors_threshold: 3,
        ..c.mcts.clone()
    };
    let greedy_correct = count_correct(held, &greedy, &policy, None, c.batch, on)?;
    let ppm_correct = match &ppm {
        Some(p) if c.eval_ppm_rollouts > 0 => {
            let guided = SearchConfig {
                mode: Mode::Inference,
                rollouts: c.eval_ppm_rollouts,
                ..c.mcts.clone()
            };
            Some(count_correct(held, &guided, &policy, Some(p), c.batch, on)?)
        }
        _ => None,
    };
    Ok(EvalDone {
        policy,
        ppm,
        heldout: held.len(),
        greedy_correct,
        ppm_correct,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Round 0: the base policy's held-out accuracy, the start of the table.
fn base_round(
    opts: &EvolveOptions,
    held: &[Problem],
    on: &mut dyn FnMut(Event<'_>) -> bool,
) -> Result<RoundRow> {
    let dir = round_dir(&opts.workdir, 0);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let eval = stage(&dir, 0, Stage::Eval, on, |on| {
        evaluate_round(opts, 0, held, on)
    })?;
    Ok(RoundRow {
        round: 0,
        mode: None,
        problems: 0,
        solved: 0,
        coverage: 0.0,
        sft_examples: 0,
        pairs: 0,
        policy_trained: false,
        ppm_trained: false,
        heldout: eval.heldout,
        greedy_correct: eval.greedy_correct,
        greedy_pass1: ratio(eval.greedy_correct, eval.heldout),
        ppm_correct: eval.ppm_correct,
        ppm_accuracy: eval.ppm_correct.map(|k| ratio(k, eval.heldout)),
        seconds: [("eval".to_string(), eval.seconds)].into_iter().collect(),
    })
}

/// `rounds.json` and its plot `rounds.png`.
fn write_rounds(workdir: &Path, rows: &[RoundRow]) -> Result<()> {
    let json = serde_json::to_vec_pretty(rows)
        .map_err(|e| Error::Internal(format!("serialising rounds: {e}")))?;
    write_atomic(&workdir.join("rounds.json"), &json)?;
    write_atomic(&workdir.join("rounds.png"), &plot_rounds(rows)?)
}

/// The per-round table as a PNG line chart: held-out greedy pass@1, PPM-guided accuracy and the
/// coverage of the training problems, per round.
pub fn plot_rounds(rows: &[RoundRow]) -> Result<Vec<u8>> {
    let series = |label: &str, color: [u8; 3], f: &dyn Fn(&RoundRow) -> Option<f64>| Series {
        label: label.into(),
        color,
        points: rows
            .iter()
            .filter_map(|r| Some((r.round as f64, f(r)?)))
            .collect(),
    };
    let chart = Chart {
        title: "self-evolution, per round".into(),
        x_label: "round".into(),
        y_label: "accuracy / coverage".into(),
        y_fraction: true,
        integer_x: true,
    };
    let plot = line_chart(
        &chart,
        &[
            series("greedy pass@1 (held-out)", [31, 100, 190], &|r| {
                Some(r.greedy_pass1).filter(|_| r.heldout > 0)
            }),
            series("PPM-guided MCTS (held-out)", [220, 110, 20], &|r| {
                r.ppm_accuracy
            }),
            series("coverage of the training problems", [40, 150, 60], &|r| {
                Some(r.coverage).filter(|_| r.problems > 0)
            }),
        ],
    )?;
    Ok(plot.png)
}

/// The synthesis stage of round `r`: MCTS over the training problems with the previous round's
/// policy (and PPM from `ppm_from_round` on), trees appended to `trees`.
fn mcts_stage(
    opts: &EvolveOptions,
    r: usize,
    train: &[Problem],
    trees: &Path,
    on: &mut dyn FnMut(Event<'_>) -> bool,
) -> Result<MctsDone> {
    let c = &opts.config;
    let w = &opts.workdir;
    let t0 = Instant::now();
    let policy = latest(w, r - 1, Stage::Sft)?.unwrap_or_else(|| opts.policy.clone());
    let ppm = if r >= c.ppm_from_round {
        latest(w, r - 1, Stage::Ppm)?
    } else {
        None
    };
    let mut cfg = c.mcts.clone();
    cfg.mode = match ppm {
        Some(_) => Mode::PpmAugmented,
        None => Mode::TerminalGuided,
    };
    if r == 1 {
        cfg.rollouts = c.round1_rollouts.unwrap_or(cfg.rollouts);
    }
    let (mut pol, mut val, exec) = load_models(&policy, ppm.as_deref(), &cfg)?;
    run_dataset(
        train,
        trees,
        &cfg,
        c.batch,
        &mut Models {
            policy: &mut pol,
            value: val.as_mut().map(|v| v as &mut dyn ValueModel),
            runner: &exec,
        },
        &mut |done, total, _| on(Event::Problems { done, total }),
    )?;
    // Coverage over the whole file (earlier, interrupted runs included).
    let solved = read_trees(trees)?
        .iter()
        .filter(|t| trajectories(t, &c.extract).iter().any(|tr| tr.correct))
        .count();
    Ok(MctsDone {
        mode: cfg.mode,
        rollouts: cfg.rollouts,
        policy,
        ppm,
        problems: train.len(),
        solved,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// One round; returns its row.
fn round(
    opts: &EvolveOptions,
    r: usize,
    train: &[Problem],
    held: &[Problem],
    on: &mut dyn FnMut(Event<'_>) -> bool,
) -> Result<RoundRow> {
    let c = &opts.config;
    let w = &opts.workdir;
    let dir = round_dir(w, r);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let trees = dir.join("trees.jsonl");
    let (sft_file, pairs_file) = (dir.join("sft.json"), dir.join("pairs.json"));

    let mcts = stage(&dir, r, Stage::Mcts, on, |on| {
        mcts_stage(opts, r, train, &trees, on)
    })?;

    let ext = stage(&dir, r, Stage::Extract, on, |_| {
        let t0 = Instant::now();
        Ok(ExtractDone {
            sft: extract_file(&trees, &sft_file, ExtractKind::Sft, &c.extract)?,
            pairs: extract_file(&trees, &pairs_file, ExtractKind::Pairs, &c.extract)?,
            seconds: t0.elapsed().as_secs_f64(),
        })
    })?;

    let sft = stage(&dir, r, Stage::Sft, on, |on| {
        if ext.sft.records == 0 {
            return Ok(not_trained());
        }
        let out = dir.join("policy");
        let data = match &opts.replay_data {
            Some(replay) => with_replay(&sft_file, replay, c.sft_replay, r, &dir)?,
            None => sft_file.clone(),
        };
        train_stage(&opts.policy, &data, &out, c.sft.clone(), Task::Sft, on)
    })?;

    let ppm = stage(&dir, r, Stage::Ppm, on, |on| {
        if ext.pairs.records == 0 {
            return Ok(not_trained());
        }
        let from = latest(w, r, Stage::Sft)?.unwrap_or_else(|| opts.policy.clone());
        let out = dir.join("ppm");
        train_stage(&from, &pairs_file, &out, c.ppm.clone(), Task::Ppm, on)
    })?;

    let eval = stage(&dir, r, Stage::Eval, on, |on| {
        evaluate_round(opts, r, held, on)
    })?;

    let seconds = [
        ("mcts", mcts.seconds),
        ("extract", ext.seconds),
        ("sft", sft.seconds),
        ("ppm", ppm.seconds),
        ("eval", eval.seconds),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Ok(RoundRow {
        round: r,
        mode: Some(mcts.mode),
        problems: mcts.problems,
        solved: mcts.solved,
        coverage: ratio(mcts.solved, mcts.problems),
        sft_examples: ext.sft.records,
        pairs: ext.pairs.records,
        policy_trained: sft.trained,
        ppm_trained: ppm.trained,
        heldout: eval.heldout,
        greedy_correct: eval.greedy_correct,
        greedy_pass1: ratio(eval.greedy_correct, eval.heldout),
        ppm_correct: eval.ppm_correct,
        ppm_accuracy: eval.ppm_correct.map(|k| ratio(k, eval.heldout)),
        seconds,
    })
}

/// Runs (or resumes) round 0 (the base policy's evaluation, when there are held-out problems)
/// and `opts.rounds` rounds; writes `workdir/rounds.json` and `rounds.png` after each and returns
/// the rows. `on` receives every [`Event`]; returning false cancels with [`Error::Cancelled`] at
/// the next event (between problem batches or rollouts, training steps, stages), keeping what a
/// rerun resumes from (finished stages, written trees, trainer state). `rstar evolve` and the C
/// ABI's `rstar_evolve_run` are both this call.
pub fn evolve(
    opts: &EvolveOptions,
    on: &mut dyn FnMut(Event<'_>) -> bool,
) -> Result<Vec<RoundRow>> {
    opts.config.validate()?;
    if opts.rounds == 0 {
        return Err(Error::InvalidArgument("rounds must be at least 1".into()));
    }
    if let Some(replay) = &opts.replay_data {
        // Read it now: a bad replay file must not surface only after a round's search.
        read_records(replay)?;
    }
    std::fs::create_dir_all(&opts.workdir).map_err(|e| Error::io(&opts.workdir, e))?;
    let (train, held) = split_problems(opts)?;
    let mut rows = Vec::with_capacity(opts.rounds + 1);
    if !held.is_empty() {
        let row = base_round(opts, &held, on)?;
        emit(on, Event::Round(&row))?;
        rows.push(row);
    }
    for r in 1..=opts.rounds {
        let row = round(opts, r, &train, &held, on)?;
        emit(on, Event::Round(&row))?;
        rows.push(row);
        write_rounds(&opts.workdir, &rows)?;
    }
    Ok(rows)
}

/// The per-round table as aligned text.
pub fn format_table(rows: &[RoundRow]) -> String {
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    let mut out = String::from(
        "round  mode             coverage          sft  pairs  greedy pass@1      ppm-guided\n",
    );
    for r in rows {
        let guided = match (r.ppm_correct, r.ppm_accuracy) {
            (Some(k), Some(a)) => format!("{} ({k}/{})", pct(a), r.heldout),
            _ => "-".into(),
        };
        let mode = match r.mode {
            Some(m) => serde_json::to_value(m)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            None => "base".into(),
        };
        out.push_str(&format!(
            "{:<6} {:<16} {:<17} {:<4} {:<6} {:<18} {}\n",
            r.round,
            mode,
            if r.problems == 0 {
                "-".into()
            } else {
                format!("{} ({}/{})", pct(r.coverage), r.solved, r.problems)
            },
            r.sft_examples,
            r.pairs,
            format!(
                "{} ({}/{})",
                pct(r.greedy_pass1),
                r.greedy_correct,
                r.heldout
            ),
            guided
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdout_split_takes_the_last_fraction() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("p.jsonl");
        let lines: String = (0..10)
            .map(|i| format!("{{\"question\": \"q{i}\", \"answer\": \"{i}\"}}\n"))
            .collect();
        std::fs::write(&data, lines).unwrap();
        let mut opts = EvolveOptions {
            policy: dir.path().into(),
            data,
            eval_data: None,
            replay_data: None,
            rounds: 1,
            workdir: dir.path().into(),
            config: EvolveConfig::default(),
        };
        let (t, h) = split_problems(&opts).unwrap();
        assert_eq!((t.len(), h.len()), (8, 2));
        assert_eq!(h[0].question, "q8");
        opts.config.holdout = 0.01;
        let (t, h) = split_problems(&opts).unwrap();
        assert_eq!((t.len(), h.len()), (9, 1));
        opts.config.eval_limit = Some(0);
        assert_eq!(split_problems(&opts).unwrap().1.len(), 0);
    }

    #[test]
    fn replay_appends_a_seeded_draw_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let sft = dir.path().join("sft.json");
        std::fs::write(&sft, r#"[{"query": "a", "response": "r"}]"#).unwrap();
        let replay = dir.path().join("boot.jsonl");
        let lines: String = (0..10)
            .map(|i| format!("{{\"query\": \"q{i}\", \"response\": \"{i}\"}}\n"))
            .collect();
        std::fs::write(&replay, lines).unwrap();
        let queries = |round, count| {
            let out = with_replay(&sft, &replay, count, round, dir.path()).unwrap();
            read_records(&out)
                .unwrap()
                .into_iter()
                .map(|(_, v)| v["query"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        let a = queries(1, Some(4));
        assert_eq!(a.len(), 5);
        assert_eq!(a[0], "a");
        let idx: Vec<usize> = a[1..].iter().map(|q| q[1..].parse().unwrap()).collect();
        assert!(idx.windows(2).all(|w| w[0] < w[1]), "{idx:?}");
        assert_eq!(queries(1, Some(4)), a, "same round, same draw");
        assert_ne!(queries(2, Some(4)), a, "another round, another draw");
        assert_eq!(queries(1, None).len(), 11);
        assert_eq!(queries(1, Some(50)).len(), 11);
    }

    #[test]
    fn a_bad_replay_file_fails_before_any_stage() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("boot.jsonl");
        std::fs::write(&bad, "{\"query\": \"q\", \"response\": \"r\"}\nnot json\n").unwrap();
        for (replay, want) in [
            (dir.path().join("missing.jsonl"), "missing.jsonl"),
            (bad, "line 2"),
        ] {
            let opts = EvolveOptions {
                policy: dir.path().join("no-policy"),
                data: dir.path().join("no-data.jsonl"),
                eval_data: None,
                replay_data: Some(replay),
                rounds: 1,
                workdir: dir.path().join("work"),
                config: EvolveConfig::default(),
            };
            let e = evolve(&opts, &mut |_| true).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
            assert!(!dir.path().join("work").exists(), "nothing was started");
        }
    }

    #[test]
    fn config_rejects_unknown_fields_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        std::fs::write(&p, r#"{"mcts": {"rollouts": 2}, "roundz": 3}"#).unwrap();
        let e = EvolveConfig::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("c.json") && e.contains("roundz"), "{e}");
        std::fs::write(&p, r#"{"mcts": {"rollouts": 2}, "sft": {"epochs": 1}}"#).unwrap();
        let c = EvolveConfig::from_file(&p).unwrap();
        assert_eq!((c.mcts.rollouts, c.mcts.width, c.sft.epochs), (2, 8, 1));
    }
}

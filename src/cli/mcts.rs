//! `rstar mcts` (data synthesis over a problem file, resumable JSONL of trees) and `rstar solve`
//! (one question at test time).

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use rstar::exec::Executor;
use rstar::search::llm::{EnginePolicy, PpmValue};
use rstar::search::{dataset, search, MctsConfig, Mode, Problem, SearchStats, ValueModel};

/// Search knobs shared by `mcts` and `solve`.
#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Policy model directory or .gguf.
    #[arg(long)]
    pub policy: PathBuf,
    /// Process preference model directory (enables PPM-augmented annotation / PPM values).
    #[arg(long)]
    pub ppm: Option<PathBuf>,
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
}

impl SearchArgs {
    fn config(&self, mode: Mode) -> MctsConfig {
        let mut c = MctsConfig {
            mode,
            ..MctsConfig::default()
        };
        if let Some(v) = self.rollouts {
            c.rollouts = v;
        }
        if let Some(v) = self.width {
            c.width = v;
        }
        if let Some(v) = self.max_depth {
            c.max_depth = v;
        }
        if let Some(v) = self.max_step_tokens {
            c.max_step_tokens = v;
        }
        if let Some(v) = self.seed {
            c.seed = v;
        }
        if let Some(v) = self.errors_threshold {
            c.errors_threshold = v;
        }
        c
    }

    fn models(
        &self,
        cfg: &MctsConfig,
    ) -> rstar::Result<(EnginePolicy, Option<PpmValue>, Executor)> {
        rstar::search::llm::load_models(&self.policy, self.ppm.as_deref(), cfg)
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
    let mode = if args.search.ppm.is_some() {
        Mode::PpmAugmented
    } else {
        Mode::TerminalGuided
    };
    let cfg = args.search.config(mode);
    let problems = dataset::load_problems(&args.data)?;
    let (mut policy, mut value, exec) = args.search.models(&cfg)?;
    let t0 = std::time::Instant::now();
    let sum = dataset::run_dataset(
        &problems,
        &args.out,
        &cfg,
        args.batch,
        &mut policy,
        value.as_mut().map(|v| v as &mut dyn ValueModel),
        &exec,
        &mut |done, total, s| {
            let secs = t0.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "[{done}/{total}] solved {}/{} | {:.2} rollouts/s | skipped {}",
                s.solved,
                done - s.skipped,
                s.stats.rollouts as f64 / secs,
                s.skipped
            );
        },
    )?;
    let gen = policy.generated_tokens as f64 / t0.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "done: {} problems ({} skipped), {} solved, {:.1} generated tokens/s",
        sum.problems, sum.skipped, sum.solved, gen
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct SolveArgs {
    #[command(flatten)]
    pub search: SearchArgs,
    /// The question.
    pub question: String,
    /// Print the whole tree and stats as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run_solve(args: SolveArgs) -> rstar::Result<()> {
    let cfg = args.search.config(Mode::Inference);
    let (mut policy, mut value, exec) = args.search.models(&cfg)?;
    let p = Problem {
        id: 0,
        question: args.question.clone(),
        answer: None,
    };
    let mut stats = SearchStats::default();
    let trees = search(
        std::slice::from_ref(&p),
        &cfg,
        &mut policy,
        value.as_mut().map(|v| v as &mut dyn ValueModel),
        &exec,
        &mut stats,
        &mut |_, _| true,
    )?;
    let tree = &trees[0];
    let best = tree.best_answer();
    let answer = best.and_then(|i| tree.nodes[i].final_answer.clone());
    let io_err = |e| rstar::Error::io("<stdout>", e);
    let mut out = std::io::stdout().lock();
    if args.json {
        let v = serde_json::json!({
            "answer": answer,
            "trajectory": best.map(|i| tree.solution(i)),
            "rstar": tree.to_rstar_json(),
            "stats": stats,
        });
        writeln!(out, "{v}").map_err(io_err)?;
    } else {
        match best {
            Some(i) => {
                writeln!(out, "{}", tree.solution(i)).map_err(io_err)?;
                writeln!(out, "answer: {}", answer.unwrap_or_default()).map_err(io_err)?;
            }
            None => writeln!(out, "no answer found").map_err(io_err)?,
        }
    }
    Ok(())
}

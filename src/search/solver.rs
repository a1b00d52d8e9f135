//! A solver that owns its models: the policy on an engine, the optional PPM and the executor,
//! with one [`SearchConfig`]. `rstar solve`, `rstar eval`, `rstar mcts` and the C ABI's
//! `rstar_solver_*` are thin shells over it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::exec::Executor;
use crate::search::api::{Models, Policy, Problem, SearchConfig, SearchStats, ValueModel};
use crate::search::dataset::{self, RunSummary};
use crate::search::eval::{self, EvalSummary, Progress};
use crate::search::llm::{EnginePolicy, PpmValue};

/// Policy + optional PPM + executor + configuration.
pub struct Solver {
    cfg: SearchConfig,
    policy: EnginePolicy,
    value: Option<PpmValue>,
    exec: Executor,
    cancel: Arc<AtomicBool>,
}

impl Solver {
    /// Loads the policy (HF directory or .gguf) and the PPM, starts the executor.
    pub fn new(policy: &Path, ppm: Option<&Path>, cfg: SearchConfig) -> Result<Solver> {
        let cfg = cfg.resolved();
        let (policy, value, exec) = crate::search::llm::load_models(policy, ppm, &cfg)?;
        Ok(Solver {
            cfg,
            policy,
            value,
            exec,
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
    pub fn engine_stats(&self) -> Value {
        let p = self.policy.stats();
        json!({
            "policy": p,
            "ppm": self.value.as_ref().map(|v| v.stats()),
            "tokens_generated": self.policy.tokens_generated(),
            "tree_tokens": self.policy.tree_tokens,
            "computed_per_tree_token": if self.policy.tree_tokens == 0 {
                0.0
            } else {
                p.tokens_computed as f64 / self.policy.tree_tokens as f64
            },
        })
    }

    fn take_cancel(&self) -> Result<()> {
        if self.cancel.swap(false, Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        Ok(())
    }

    /// Solves one question with `cfg.search` over `cfg.runs` runs. The JSON holds `answer`
    /// (PPM-best), `pass1`, `majority`, `weighted`, `trajectories` (each `{run, tag, answer,
    /// value, solution}`), `stats` and `engine`.
    /// The executor (its interpreter and what that can import: [`Executor::info`]).
    pub fn executor(&self) -> &Executor {
        &self.exec
    }

    /// The policy, the PPM (when loaded) and the executor, as a search takes them.
    fn models(&mut self) -> Models<'_, '_> {
        Models {
            policy: &mut self.policy,
            value: self.value.as_mut().map(|v| v as &mut dyn ValueModel),
            runner: &self.exec,
        }
    }

    pub fn solve(&mut self, question: &str) -> Result<Value> {
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
        Ok(json!({
            "question": question,
            "answer": r.votes.ppm_best,
            "pass1": r.pass1,
            "majority": r.votes.majority,
            "weighted": r.votes.weighted,
            "k": r.votes.k,
            "trajectories": r.trajectories,
            "stats": stats,
            "engine": self.engine_stats(),
        }))
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

//! Test-time evaluation (spec 3.4, 7.4): `cfg.runs` independent runs of `cfg.search` per
//! problem, their trajectories (each MCTS run's highest-value answer; every answer a beam,
//! best-of-N or greedy run reaches), and the answers pass@1 (run 0's highest-value answer),
//! maj@k, PPM-weighted@k and PPM-best, graded against the ground truth when it is known.

use std::io::Write;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::grade;
use crate::search::api::{Models, Problem, SearchConfig, SearchStats, Strategy};
use crate::search::run_search;
use crate::search::tree::Tree;
use crate::search::vote::{self, Candidate, Votes};

/// One trajectory's end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trajectory {
    pub run: usize,
    /// Node tag of the answer step.
    pub tag: String,
    pub answer: String,
    pub value: f64,
    pub correct: Option<bool>,
    pub solution: String,
}

/// Whether each test-time answer matches the ground truth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Graded {
    pub pass1: bool,
    pub majority: bool,
    pub weighted: bool,
    pub ppm_best: bool,
    /// Any trajectory correct (pass@k).
    pub any: bool,
}

/// The result of one problem.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProblemResult {
    pub index: u64,
    pub question: String,
    pub answer: Option<String>,
    /// Run 0's highest-value answer.
    pub pass1: Option<String>,
    pub votes: Votes,
    pub graded: Option<Graded>,
    pub trajectories: Vec<Trajectory>,
}

/// The trajectories of one run's tree.
pub fn trajectories(
    tree: &Tree,
    run: usize,
    strategy: Strategy,
    gt: Option<&str>,
) -> Vec<Trajectory> {
    let ids: Vec<usize> = match strategy {
        Strategy::Mcts => tree.best_answer().into_iter().collect(),
        _ => tree.answers().map(|(i, _)| i).collect(),
    };
    ids.into_iter()
        .map(|i| {
            let n = &tree.nodes[i];
            let answer = n.final_answer.clone().unwrap_or_default();
            Trajectory {
                run,
                tag: n.tag.clone(),
                correct: gt.map(|g| grade::equal(&answer, g)),
                answer,
                value: n.value.unwrap_or(0.0),
                solution: tree.solution(i),
            }
        })
        .collect()
}

/// Gathers a problem's trajectories (all runs) into its result.
pub fn result(p: &Problem, trajs: Vec<Trajectory>, vote_size: usize) -> ProblemResult {
    let cands: Vec<Candidate> = trajs
        .iter()
        .map(|t| Candidate {
            answer: t.answer.clone(),
            value: t.value,
        })
        .collect();
    let run0: Vec<Candidate> = trajs
        .iter()
        .zip(&cands)
        .filter(|(t, _)| t.run == 0)
        .map(|(_, c)| c.clone())
        .collect();
    let pass1 = vote::ppm_best(&run0).map(|c| c.answer.clone());
    let votes = vote::vote(&cands, vote_size);
    let graded = p.answer.as_deref().map(|gt| {
        let ok = |a: &Option<String>| a.as_deref().is_some_and(|a| grade::equal(a, gt));
        Graded {
            pass1: ok(&pass1),
            majority: ok(&votes.majority),
            weighted: ok(&votes.weighted),
            ppm_best: ok(&votes.ppm_best),
            any: trajs.iter().any(|t| t.correct == Some(true)),
        }
    });
    ProblemResult {
        index: p.id,
        question: p.question.clone(),
        answer: p.answer.clone(),
        pass1,
        votes,
        graded,
        trajectories: trajs,
    }
}

/// Runs `cfg.runs` runs of `cfg.search` over `problems` (all problems in lock-step within a
/// run) and returns one result per problem, in input order. `on_step(done, total)` counts
/// search steps (MCTS rollouts or beam depths) over all runs; false cancels.
pub fn solve_problems(
    problems: &[Problem],
    cfg: &SearchConfig,
    models: &mut Models<'_, '_>,
    stats: &mut SearchStats,
    on_step: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<ProblemResult>> {
    let per_run = match cfg.search {
        Strategy::Mcts => cfg.rollouts,
        _ => cfg.max_depth,
    };
    let total = per_run * cfg.runs;
    let mut trajs: Vec<Vec<Trajectory>> = vec![Vec::new(); problems.len()];
    for run in 0..cfg.runs {
        let rc = cfg.for_run(run);
        let trees = run_search(problems, &rc, models, stats, &mut |d, _| {
            on_step(run * per_run + d, total)
        })?;
        for ((t, p), out) in trees.iter().zip(problems).zip(trajs.iter_mut()) {
            out.extend(trajectories(t, run, cfg.search, p.answer.as_deref()));
        }
    }
    Ok(problems
        .iter()
        .zip(trajs)
        .map(|(p, t)| result(p, t, cfg.vote_size))
        .collect())
}

/// Accuracy over graded problems.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Accuracy {
    pub problems: usize,
    pub pass1: usize,
    pub majority: usize,
    pub weighted: usize,
    pub ppm_best: usize,
    pub any: usize,
}

impl Accuracy {
    pub fn add(&mut self, g: &Graded) {
        self.problems += 1;
        self.pass1 += g.pass1 as usize;
        self.majority += g.majority as usize;
        self.weighted += g.weighted as usize;
        self.ppm_best += g.ppm_best as usize;
        self.any += g.any as usize;
    }

    /// `n / problems` (0 without problems).
    pub fn rate(&self, n: usize) -> f64 {
        if self.problems == 0 {
            0.0
        } else {
            n as f64 / self.problems as f64
        }
    }
}

/// What an evaluation did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EvalSummary {
    pub accuracy: Accuracy,
    /// The vote size in effect (`vote_size`, 0 = all trajectories).
    pub vote_size: usize,
    pub runs: usize,
    pub search: Option<Strategy>,
    pub stats: SearchStats,
    /// Tokens the policy generated.
    pub tokens: u64,
}

/// Progress of a dataset run, after each problem batch and each search step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    /// Problems with a correct answer so far (PPM-best for eval, any answer for mcts).
    pub solved: usize,
    pub rollouts: u64,
    pub tokens: u64,
    pub elapsed_s: f64,
}

/// Evaluates `problems`, `batch` at a time in lock-step, writing one JSON line per problem to
/// `out` (when given) as soon as its batch is done. `progress` returning false cancels.
pub fn evaluate(
    problems: &[Problem],
    cfg: &SearchConfig,
    batch: usize,
    models: &mut Models<'_, '_>,
    mut out: Option<(&mut dyn Write, &std::path::Path)>,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<EvalSummary> {
    let t0 = std::time::Instant::now();
    let tokens0 = models.policy.tokens_generated();
    let mut sum = EvalSummary {
        vote_size: cfg.vote_size,
        runs: cfg.runs,
        search: Some(cfg.search),
        ..EvalSummary::default()
    };
    let mut prog = Progress {
        total: problems.len(),
        ..Progress::default()
    };
    for chunk in problems.chunks(batch.max(1)) {
        let mut stats = sum.stats;
        let results = {
            // Between search steps: elapsed time moves and the caller may cancel.
            let mut tick = |_, _| {
                prog.elapsed_s = t0.elapsed().as_secs_f64();
                progress(&prog)
            };
            solve_problems(chunk, cfg, models, &mut stats, &mut tick)?
        };
        sum.stats = stats;
        for r in &results {
            if let Some(g) = &r.graded {
                sum.accuracy.add(g);
            }
            if let Some((w, path)) = out.as_mut() {
                let mut line = serde_json::to_string(r)
                    .map_err(|e| Error::Internal(format!("serialising a result: {e}")))?;
                line.push('\n');
                w.write_all(line.as_bytes())
                    .and_then(|_| w.flush())
                    .map_err(|e| Error::io(*path, e))?;
            }
        }
        prog.done += chunk.len();
        prog.solved = sum.accuracy.ppm_best;
        prog.rollouts = sum.stats.rollouts;
        prog.tokens = models.policy.tokens_generated() - tokens0;
        prog.elapsed_s = t0.elapsed().as_secs_f64();
        if !progress(&prog) {
            return Err(Error::Cancelled);
        }
    }
    sum.tokens = models.policy.tokens_generated() - tokens0;
    Ok(sum)
}

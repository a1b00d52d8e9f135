//! Test-time evaluation (spec 3.4, 7.4): `cfg.runs` independent runs of `cfg.search` per
//! problem, their trajectories (each MCTS run's highest-value answer; every answer a beam,
//! best-of-N or greedy run reaches), and the answers pass@1 (run 0's highest-value answer),
//! maj@k, PPM-weighted@k and PPM-best, graded against the ground truth when it is known.

use std::io::Write;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::grade;
use crate::search::api::{
    Aggregate, Models, Problem, SearchConfig, SearchStats, Strategy, TokenCount,
};
use crate::search::run_search;
use crate::search::tree::{End, Tree};
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

/// Why a problem has no answer: how most of its paths ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoAnswer {
    /// The model wrote nothing the step format parses.
    NoStepParsed,
    /// The paths ended on failing programs.
    ProgramsFailed,
    /// The search's budget (steps per path, rollouts, beam depth) ran out first.
    BudgetExhausted,
    /// The paths reached the model's context limit.
    ContextLimit,
}

impl NoAnswer {
    pub fn describe(self) -> &'static str {
        match self {
            NoAnswer::NoStepParsed => "the model wrote no step the step format parses",
            NoAnswer::ProgramsFailed => "the programs failed",
            NoAnswer::BudgetExhausted => "the search budget ran out before an answer",
            NoAnswer::ContextLimit => "the solutions reached the model's context limit",
        }
    }
}

/// How the paths of a problem's trees ended: their leaves over all runs, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Ends {
    pub answers: usize,
    pub failed_programs: usize,
    pub unparsed: usize,
    pub context_limit: usize,
    /// Too deep, or still open when the search stopped.
    pub budget: usize,
    /// Generated steps (every node but the root; context-limited ones left out) and those that
    /// comply with the step format: an answer, or code that parsed and ran without failing.
    pub steps: usize,
    pub compliant: usize,
}

impl Ends {
    /// Adds the leaves of `tree` (the root too while it has no children) and its steps.
    pub fn add(&mut self, tree: &Tree) {
        for n in tree.nodes.iter().skip(1) {
            if n.end == Some(End::Length) {
                continue;
            }
            self.steps += 1;
            let ok = match n.end {
                Some(End::Answer) => true,
                Some(End::Unparsed) => false,
                _ => n.failure.is_none(),
            };
            self.compliant += ok as usize;
        }
        for n in tree.nodes.iter().filter(|n| n.children.is_empty()) {
            match n.end {
                Some(End::Answer) => self.answers += 1,
                Some(End::Errors) => self.failed_programs += 1,
                Some(End::Unparsed) => self.unparsed += 1,
                Some(End::Length) => self.context_limit += 1,
                Some(End::Depth) | Some(End::Exhausted) | None => self.budget += 1,
            }
        }
    }

    /// Why there is no answer (`None` when some path answered): the most common end (first of
    /// no step, failed programs, context limit, budget on ties).
    pub fn no_answer(&self) -> Option<NoAnswer> {
        if self.answers > 0 {
            return None;
        }
        let counts = [
            (self.unparsed, NoAnswer::NoStepParsed),
            (self.failed_programs, NoAnswer::ProgramsFailed),
            (self.context_limit, NoAnswer::ContextLimit),
            (self.budget, NoAnswer::BudgetExhausted),
        ];
        let mut best = counts[3];
        for c in counts {
            if c.0 > best.0 {
                best = c;
            }
        }
        Some(best.1)
    }

    /// `"5 paths: 3 failed programs, 1 without a step, ..."` (zero counts left out).
    pub fn summary(&self) -> String {
        let parts: Vec<String> = [
            (self.answers, "answered"),
            (self.failed_programs, "failed programs"),
            (self.unparsed, "without a step"),
            (self.context_limit, "at the context limit"),
            (self.budget, "out of budget"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        let total =
            self.answers + self.failed_programs + self.unparsed + self.context_limit + self.budget;
        format!("{total} paths: {}", parts.join(", "))
    }
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
    /// How its paths ended, and why there is no answer when there is none.
    pub ends: Ends,
    pub no_answer: Option<NoAnswer>,
    /// The error of the last program that ended a path ([`last_error`]), so that "the programs
    /// failed" says which error.
    pub last_error: Option<String>,
    /// Tokens the policy spent on it, over all runs.
    pub tokens: TokenCount,
    /// Its share of the wall time (a batch's time split evenly over its problems).
    pub seconds: f64,
}

/// The trajectories of one run's tree; each valued by `aggregate` over its steps' values
/// (MCTS: the answer's own value).
pub fn trajectories(
    tree: &Tree,
    run: usize,
    strategy: Strategy,
    aggregate: Aggregate,
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
            let value = match strategy {
                Strategy::Mcts => n.value.unwrap_or(0.0),
                _ => {
                    let steps: Vec<f64> = tree
                        .path(i)
                        .iter()
                        .map(|&s| tree.nodes[s].value.unwrap_or(0.0))
                        .collect();
                    aggregate.score(&steps)
                }
            };
            Trajectory {
                run,
                tag: n.tag.clone(),
                correct: gt.map(|g| grade::equal(&answer, g)),
                answer,
                value,
                solution: tree.solution(i),
            }
        })
        .collect()
}

/// Gathers a problem's trajectories (all runs) and how its paths ended into its result
/// (tokens and time left at zero for the caller).
pub fn result(p: &Problem, trajs: Vec<Trajectory>, ends: Ends, vote_size: usize) -> ProblemResult {
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
        ends,
        no_answer: ends.no_answer(),
        last_error: None,
        tokens: TokenCount::default(),
        seconds: 0.0,
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
    let t0 = std::time::Instant::now();
    let tokens0: Vec<TokenCount> = problems
        .iter()
        .map(|p| models.policy.problem_tokens(p.id))
        .collect();
    let mut trajs: Vec<Vec<Trajectory>> = vec![Vec::new(); problems.len()];
    let mut ends = vec![Ends::default(); problems.len()];
    let mut errors: Vec<Option<String>> = vec![None; problems.len()];
    for run in 0..cfg.runs {
        let rc = cfg.for_run(run);
        let trees = run_search(problems, &rc, models, stats, &mut |d, _| {
            on_step(run * per_run + d, total)
        })?;
        for (i, (t, p)) in trees.iter().zip(problems).enumerate() {
            trajs[i].extend(trajectories(
                t,
                run,
                cfg.search,
                cfg.aggregate,
                p.answer.as_deref(),
            ));
            ends[i].add(t);
            errors[i] = last_error(t).or(errors[i].take());
        }
    }
    let seconds = t0.elapsed().as_secs_f64() / problems.len().max(1) as f64;
    Ok(problems
        .iter()
        .zip(trajs)
        .zip(ends)
        .zip(tokens0)
        .zip(errors)
        .map(|((((p, t), e), k0), last_error)| ProblemResult {
            tokens: models.policy.problem_tokens(p.id).since(k0),
            seconds,
            last_error,
            ..result(p, t, e, cfg.vote_size)
        })
        .collect())
}

/// The failure of the last-created node whose path ended on failing programs (`End::Errors`).
pub fn last_error(tree: &Tree) -> Option<String> {
    tree.nodes
        .iter()
        .rev()
        .find(|n| n.end == Some(End::Errors))
        .and_then(|n| n.failure.clone())
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
                let line = crate::data::durable::json_line(r)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(ends: &[Option<End>]) -> Tree {
        let mut t = Tree::new("q");
        for e in ends {
            let c = t.add_child(0, "s");
            t.nodes[c].end = *e;
        }
        t
    }

    #[test]
    fn no_answer_names_how_most_paths_ended() {
        let mut e = Ends::default();
        e.add(&tree(&[
            Some(End::Errors),
            Some(End::Errors),
            Some(End::Unparsed),
        ]));
        assert_eq!(e.no_answer(), Some(NoAnswer::ProgramsFailed));
        assert_eq!(e.summary(), "3 paths: 2 failed programs, 1 without a step");
        e.add(&tree(&[
            Some(End::Length),
            Some(End::Length),
            Some(End::Length),
        ]));
        assert_eq!(e.no_answer(), Some(NoAnswer::ContextLimit));
        // Open leaves and too-deep paths are the budget; an unexpanded root is one open path.
        let mut b = Ends::default();
        b.add(&tree(&[None, Some(End::Depth)]));
        b.add(&Tree::new("q"));
        assert_eq!(
            (b.budget, b.no_answer()),
            (3, Some(NoAnswer::BudgetExhausted))
        );
        let mut a = Ends::default();
        let mut t = tree(&[
            Some(End::Answer),
            Some(End::Errors),
            Some(End::Length),
            None,
        ]);
        t.nodes[2].failure = Some("NameError".into());
        a.add(&t);
        assert_eq!(a.no_answer(), None);
        // Compliance: the answer and the clean open step of 3 steps (the context-limited one
        // is not counted).
        assert_eq!((a.steps, a.compliant), (3, 2));
    }
}

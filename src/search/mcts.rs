//! MCTS over many problems in lock-step (spec 3.3-3.6, 4), independent of the LLM: a [`Policy`]
//! proposes step texts, a [`ValueModel`] scores partial solutions, a [`StepRunner`] runs programs
//! (the traits of [`crate::search::api`]).
//!
//! One rollout per problem: descend from the root by UCT, one level per loop iteration; a problem
//! whose current node is a leaf joins the batch of expansions ([`crate::search::expand`]): one
//! [`Policy::propose`] call for all problems, children created (duplicates merged, answer-child
//! rule, code executed in one batch, error and depth limits), valued and backed up; the problem
//! continues from its best new child, for at most `max_depth` iterations.

use crate::error::{Error, Result};
use crate::search::api::{Mode, Models, Problem, SearchConfig, SearchStats};
#[allow(unused_imports)] // named by the doc links above
use crate::search::api::{Policy, StepRunner, ValueModel};
use crate::search::expand::{expand, over_budget, Expansion};
use crate::search::tree::{NodeId, Tree};

/// Searches all problems together; returns their trees in input order. `on_rollout(done, total)`
/// is called after each rollout; returning false cancels with [`Error::Cancelled`].
pub fn search(
    problems: &[Problem],
    cfg: &SearchConfig,
    models: &mut Models<'_, '_>,
    stats: &mut SearchStats,
    on_rollout: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<Tree>> {
    cfg.validate()?;
    if cfg.mode != Mode::Inference {
        if let Some(p) = problems.iter().find(|p| p.answer.is_none()) {
            return Err(Error::InvalidArgument(format!(
                "problem {}: annotation modes need a ground-truth answer",
                p.id
            )));
        }
    }
    if cfg.mode == Mode::PpmAugmented && models.value.is_none() {
        return Err(Error::InvalidArgument(
            "ppm-augmented mode needs a value model (PPM)".into(),
        ));
    }
    let t_start = std::time::Instant::now();
    let mut trees: Vec<Tree> = problems.iter().map(|p| Tree::new(&p.question)).collect();
    let start: Vec<_> = problems
        .iter()
        .map(|p| models.policy.problem_tokens(p.id))
        .collect();
    for rollout in 0..cfg.rollouts {
        // A problem whose token budget is spent does no more rollouts.
        let spent: Vec<bool> = problems
            .iter()
            .zip(&start)
            .map(|(p, s)| over_budget(models.policy, p.id, *s, cfg.budget_tokens))
            .collect();
        // Start at the root: its best child, or the root itself while it has none.
        let mut cur: Vec<Option<NodeId>> = trees
            .iter_mut()
            .zip(&spent)
            .map(|(t, &spent)| {
                if spent || t.root().is_terminal() {
                    None
                } else if t.root().children.is_empty() {
                    Some(0)
                } else {
                    t.select_child(0, cfg.c_puct)
                }
            })
            .collect();
        for _ in 0..cfg.max_depth {
            let mut leaves = Vec::new();
            for (i, c) in cur.iter_mut().enumerate() {
                let Some(n) = *c else { continue };
                if trees[i].nodes[n].children.is_empty() {
                    leaves.push((i, n));
                } else {
                    *c = trees[i].select_child(n, cfg.c_puct);
                }
            }
            if leaves.is_empty() {
                if cur.iter().all(Option::is_none) {
                    break;
                }
                continue;
            }
            let mut x = Expansion {
                problems,
                trees: &mut trees,
                cfg,
                value_open: cfg.mode != Mode::TerminalGuided,
            };
            expand(&mut x, &leaves, models, stats)?;
            for &(i, n) in &leaves {
                cur[i] = trees[i].select_child(n, cfg.c_puct);
            }
        }
        stats.rollouts += problems.len() as u64;
        if !on_rollout(rollout + 1, cfg.rollouts) {
            return Err(Error::Cancelled);
        }
    }
    for p in problems {
        models.policy.release(p.id);
    }
    stats.finish(t_start);
    Ok(trees)
}

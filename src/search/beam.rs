//! Step-level beam search, best-of-N and greedy decoding (spec 3.7, 3.4, 1.4): the test-time
//! searches next to MCTS. They grow the same [`Tree`] with the same expansion as MCTS (children
//! deduplicated, code run, error and depth limits, PPM values), over many problems in lock-step,
//! and differ only in which new children stay in the frontier:
//!
//! - **beam**: every child of every beam node is valued by the PPM; valid answers leave the
//!   beam and each shrinks its width by one; the `beam_width - answers` highest-valued open
//!   children (first on ties) are the next beam.
//! - **best-of-N**: the root is expanded with `best_of` samples, then each open trajectory with
//!   one sample per step; only answers are valued. Identical samples are merged, as in MCTS, so
//!   fewer than N trajectories may come out.
//! - **maj** (self-consistency): best-of-N whose answer is the majority vote.
//! - **DVTS**: `best_of / width` independent subtrees: the root is expanded with one sample per
//!   subtree, then each subtree expands its one node with `width` samples and keeps its
//!   highest-valued open child (an answer ends the subtree).
//! - **greedy**: best-of-1 at temperature 0 with the greedy stop strings ([`SearchConfig::resolved`]).
//!
//! With `aggregate` other than `last`, every step is valued so that trajectories can be scored
//! from their step values ([`crate::search::eval::trajectories`]). A problem whose generated
//! tokens in this run reach `budget_tokens` stops expanding.

use crate::error::{Error, Result};
use crate::search::api::{
    Aggregate, Models, Problem, SearchConfig, SearchStats, Strategy, TokenCount,
};
use crate::search::expand::{expand, over_budget, Expansion};
use crate::search::tree::{NodeId, Tree};

/// Frontier rule of one strategy.
struct Plan {
    /// Frontier size (answers found shrink it).
    keep: usize,
    /// Samples per node at the root and below it.
    root_width: usize,
    node_width: usize,
    /// Rank open children by value (beam) or keep them in creation order.
    rank: bool,
    /// The frontier rule applies to each parent's children alone, keeping one (DVTS).
    per_parent: bool,
}

fn plan(cfg: &SearchConfig) -> Result<Plan> {
    let sampled = |n: usize| Plan {
        keep: n,
        root_width: n,
        node_width: 1,
        rank: false,
        per_parent: false,
    };
    Ok(match cfg.search {
        Strategy::Beam => Plan {
            keep: cfg.beam_width,
            root_width: cfg.width,
            node_width: cfg.width,
            rank: true,
            per_parent: false,
        },
        Strategy::BestOfN | Strategy::Majority => sampled(cfg.best_of),
        Strategy::Greedy => sampled(1),
        Strategy::Dvts => {
            let subtrees = (cfg.best_of / cfg.width).max(1);
            Plan {
                keep: subtrees,
                root_width: subtrees,
                node_width: cfg.width,
                rank: true,
                per_parent: true,
            }
        }
        Strategy::Mcts => {
            return Err(Error::InvalidArgument(
                "step_search runs beam, best-of-n, maj, dvts or greedy; use mcts::search for mcts"
                    .into(),
            ))
        }
    })
}

/// The next frontier of one problem from its new children (in creation order): answers shrink
/// `keep`, invalid terminals drop out, open children are ranked by value when `rank`.
fn next_frontier(tree: &Tree, children: &[NodeId], keep: &mut usize, rank: bool) -> Vec<NodeId> {
    let mut open: Vec<NodeId> = Vec::new();
    for &c in children {
        let n = &tree.nodes[c];
        if n.is_valid_answer() {
            *keep = keep.saturating_sub(1);
        } else if !n.is_terminal() {
            open.push(c);
        }
    }
    if rank {
        // Stable: equal values keep creation order.
        open.sort_by(|&a, &b| {
            let v = |i: NodeId| tree.nodes[i].value.unwrap_or(f64::NEG_INFINITY);
            v(b).total_cmp(&v(a))
        });
    }
    open.truncate(*keep);
    open
}

/// Runs beam search, best-of-N or greedy (by `cfg.search`) on all problems together; returns
/// their trees in input order. Values are the PPM's (0 without one): `cfg.mode` is inference, as
/// [`crate::search::run_search`] sets it.
/// `on_step(depth, max_depth)` after each expansion step; false cancels with [`Error::Cancelled`].
pub(crate) fn step_search(
    problems: &[Problem],
    cfg: &SearchConfig,
    models: &mut Models<'_, '_>,
    stats: &mut SearchStats,
    on_step: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<Tree>> {
    cfg.validate()?;
    let plan = plan(cfg)?;
    let t0 = std::time::Instant::now();
    let mut trees: Vec<Tree> = problems.iter().map(|p| Tree::new(&p.question)).collect();
    let mut frontier: Vec<Vec<NodeId>> = vec![vec![0]; problems.len()];
    let mut keep = vec![plan.keep; problems.len()];
    let start: Vec<TokenCount> = problems
        .iter()
        .map(|p| models.policy.problem_tokens(p.id))
        .collect();
    let value_open = plan.rank || cfg.aggregate != Aggregate::Last;
    for depth in 0..cfg.max_depth {
        for (i, p) in problems.iter().enumerate() {
            if over_budget(models.policy, p.id, start[i], cfg.budget_tokens) {
                frontier[i].clear();
            }
        }
        let leaves: Vec<(usize, NodeId)> = frontier
            .iter()
            .enumerate()
            .flat_map(|(i, f)| f.iter().map(move |&n| (i, n)))
            .collect();
        if leaves.is_empty() {
            break;
        }
        let step_cfg = SearchConfig {
            width: if depth == 0 {
                plan.root_width
            } else {
                plan.node_width
            },
            ..cfg.clone()
        };
        let mut x = Expansion {
            problems,
            trees: &mut trees,
            cfg: &step_cfg,
            value_open,
        };
        expand(&mut x, &leaves, models, stats)?;
        for (i, f) in frontier.iter_mut().enumerate() {
            let kids = |n: &NodeId| trees[i].nodes[*n].children.clone();
            // The root's children are the DVTS subtrees; below them each keeps its own best.
            *f = if plan.per_parent && depth > 0 {
                // Each subtree keeps its best open child; an answer (or no child) ends it.
                f.iter()
                    .flat_map(|n| next_frontier(&trees[i], &kids(n), &mut 1, plan.rank))
                    .collect()
            } else {
                let children: Vec<NodeId> = f.iter().flat_map(kids).collect();
                next_frontier(&trees[i], &children, &mut keep[i], plan.rank)
            };
        }
        if !on_step(depth + 1, cfg.max_depth) {
            return Err(Error::Cancelled);
        }
    }
    stats.rollouts += problems.len() as u64;
    for p in problems {
        models.policy.release(p.id);
    }
    stats.finish(t0);
    Ok(trees)
}

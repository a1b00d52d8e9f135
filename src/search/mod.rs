//! Search over code-augmented steps (spec 3-5, 7): the shared API ([`api`]: problems, the search
//! configuration, the model traits), one expansion step ([`expand`]), MCTS with Q-value annotation
//! ([`mcts`]), step-level beam search, best-of-N and greedy ([`beam`]), the search's operations
//! on a tree ([`tree`]), answer voting ([`vote`]), test-time evaluation ([`eval`]), the search
//! configuration file ([`config`]), the engine-backed policy and PPM ([`llm`]), a model-owning
//! solver for the CLI and the C ABI ([`solver`]), the resumable dataset runner ([`dataset`]) and
//! the compute-matched sweep ([`sweep`]).
//! The test-time dispatcher is [`run_search`].
//!
//! The search logic talks to the models only through the [`api::Policy`], [`api::ValueModel`] and
//! [`api::StepRunner`] traits, so it is tested with scripted ones.

pub mod api;
pub mod beam;
pub mod config;
pub mod dataset;
pub mod default_model;
pub mod eval;
pub mod expand;
pub mod llm;
pub mod mcts;
pub mod solver;
pub mod sweep;
pub mod tree;
pub mod vote;

pub use api::{
    Aggregate, AnswerChildren, Mode, Models, Policy, Problem, ScoreRequest, SearchConfig,
    SearchStats, StepRequest, StepRunner, Strategy, TokenCount, ValueModel,
};
pub use expand::keep_candidates;
pub use mcts::search;
pub use tree::{End, Node, NodeId, Tree};

use crate::error::Result;

/// Runs the test-time search `cfg.search` (MCTS, beam, best-of-N or greedy) on all problems
/// together; returns their trees in input order. This is the one place that puts a search in
/// inference mode: test time has no ground truth, terminal answers are valued by the PPM.
/// `on_step(done, total)` after each rollout or step; false cancels with
/// [`crate::Error::Cancelled`].
pub fn run_search(
    problems: &[Problem],
    cfg: &SearchConfig,
    models: &mut Models<'_, '_>,
    stats: &mut SearchStats,
    on_step: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<Tree>> {
    let cfg = SearchConfig {
        mode: Mode::Inference,
        ..cfg.clone()
    };
    match cfg.search {
        Strategy::Mcts => mcts::search(problems, &cfg, models, stats, on_step),
        _ => beam::step_search(problems, &cfg, models, stats, on_step),
    }
}

//! Search over code-augmented steps (spec sections 3-5, 7): MCTS with Q-value annotation
//! ([`mcts`]), step-level beam search, best-of-N and greedy ([`beam`]), the tree and its reference
//! JSON layout ([`tree`]), answer voting ([`vote`]), test-time evaluation ([`eval`]), the search
//! configuration file ([`config`]), the engine-backed policy and PPM ([`llm`]), a model-owning
//! solver for the CLI and the C ABI ([`solver`]) and the resumable dataset runner ([`dataset`]).
//!
//! The search logic talks to the models only through the [`mcts::Policy`],
//! [`mcts::ValueModel`] and [`mcts::StepRunner`] traits, so it is tested with scripted ones.

pub mod beam;
pub mod config;
pub mod dataset;
pub mod eval;
pub mod llm;
pub mod mcts;
pub mod solver;
pub mod tree;
pub mod vote;

pub use beam::{run_search, step_search};
pub use mcts::{
    keep_candidates, search, AnswerChildren, MctsConfig, Mode, Models, Policy, Problem,
    ScoreRequest, SearchStats, StepRequest, StepRunner, Strategy, ValueModel,
};
pub use tree::{End, Node, NodeId, Tree};

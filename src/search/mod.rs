//! Search over code-augmented steps (spec sections 3-5): MCTS with Q-value annotation
//! ([`mcts`]), the tree and its reference JSON layout ([`tree`]), answer voting ([`vote`]),
//! the engine-backed policy and PPM ([`llm`]) and the resumable dataset runner ([`dataset`]).
//!
//! The search logic talks to the models only through the [`mcts::Policy`],
//! [`mcts::ValueModel`] and [`mcts::StepRunner`] traits, so it is tested with scripted ones.

pub mod dataset;
pub mod extract;
pub mod llm;
pub mod mcts;
pub mod tree;

pub use mcts::{
    keep_candidates, search, AnswerChildren, MctsConfig, Mode, Policy, Problem, ScoreRequest,
    SearchStats, StepRequest, StepRunner, ValueModel,
};
pub use tree::{End, Node, NodeId, Tree};

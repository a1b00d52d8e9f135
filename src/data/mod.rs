//! Data formats and training data, below search and training: the search tree as data and its
//! JSON layout ([`tree`]), the trees JSONL that synthesis writes ([`trees`]), problem files
//! ([`problems`]), the generated problems of graded difficulty ([`generate`]), SFT and preference
//! pair extraction out of trees ([`extract`]), the SFT / pair loaders ([`training`]) and the
//! policy prompts with their one placeholder convention ([`prompts`]), and the crash-safe file
//! writes every resumable output goes through ([`durable`]).
//!
//! Nothing here runs a model or a search: this room uses only the tokenizer, the grader, the
//! step format and the error types (and the engine's seeded RNG for the generator).

pub mod durable;
pub mod extract;
pub mod generate;
pub mod problems;
pub mod prompts;
pub mod training;
pub mod tree;
pub mod trees;

pub use problems::{load_problems, Problem, Subset};
pub use tree::{End, Node, NodeId, Tree};

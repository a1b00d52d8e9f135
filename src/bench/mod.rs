//! Benchmark harnesses (`rstar bench ...`, `cargo bench`), kept out of the library rooms they
//! measure and driving them through their public API: model prefill and decode throughput
//! ([`model`]) next to the machine limits measured in the same run ([`machine`]), the CUDA decoder
//! on a random-weight model ([`cuda`]), growing a search tree with the engine ([`tree`]) and the
//! Python executor's pool ([`exec`]), with the shapes of the real models that random-weight
//! benchmark models copy ([`shapes`]). This room may use every room below the shells.

pub mod cuda;
pub mod exec;
pub mod machine;
pub mod model;
pub mod shapes;
pub mod tree;

//! Compute backends. The decoder calls the op set in [`cpu`]; a CUDA backend joins it in a later issue.

pub mod cpu;

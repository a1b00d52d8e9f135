//! Compute backends: [`cpu`] (SIMD kernels with scalar references) and [`cuda`] (hand-written
//! kernels compiled by NVRTC, launched through cudarc). The decoder and everything above it pick one
//! with [`Device`].

pub mod cpu;
pub mod cuda;

pub use cuda::Device;

//! Compute backends: [`cpu`] (SIMD kernels with scalar references) and [`cuda`] (hand-written
//! kernels compiled by NVRTC, launched through cudarc), and the host tensor types both read
//! ([`tensor`]: [`Weight`], [`WeightData`], [`DType`]). The decoder and everything above it pick a
//! backend with [`Device`]. Nothing here knows about models, engines or search.

pub mod cpu;
pub mod cuda;
pub mod device;
pub mod tensor;

pub use device::Device;
pub use tensor::{DType, Weight, WeightData};

//! The paged K/V store's memory on a CUDA device: one K and one V buffer per layer, grown and
//! copied in place as the store's blocks are allocated and forked.

use std::sync::Arc;

use cudarc::driver::CudaSlice;

use super::ops::{self, Ptr};
use super::Gpu;
use crate::error::{Error, Result};

/// K/V memory of all layers on the device.
#[derive(Debug)]
pub struct DevKv {
    gpu: Arc<Gpu>,
    k: Vec<CudaSlice<f32>>,
    v: Vec<CudaSlice<f32>>,
    len: usize,
}

impl DevKv {
    /// `layers` layers of `len` floats each for K and for V.
    pub fn new(gpu: Arc<Gpu>, layers: usize, len: usize) -> Result<DevKv> {
        let alloc = |_| ops::zeros::<f32>(&gpu, len);
        let k = (0..layers).map(alloc).collect::<Result<Vec<_>>>()?;
        let v = (0..layers).map(alloc).collect::<Result<Vec<_>>>()?;
        Ok(DevKv { gpu, k, v, len })
    }

    /// Grows every layer to `len` floats, keeping the contents.
    pub fn grow(&mut self, len: usize) -> Result<()> {
        if len <= self.len {
            return Ok(());
        }
        let gpu = self.gpu.clone();
        for l in self.k.iter_mut().chain(self.v.iter_mut()) {
            let mut bigger = ops::zeros::<f32>(&gpu, len)?;
            gpu.stream
                .memcpy_dtod(&l.slice(..self.len), &mut bigger.slice_mut(..self.len))
                .map_err(|e| Error::Device(format!("K/V copy: {e:?}")))?;
            *l = bigger;
        }
        self.len = len;
        Ok(())
    }

    /// Copies `n` floats from offset `src` to offset `dst` in every layer.
    pub fn copy_rows(&mut self, src: usize, dst: usize, n: usize) -> Result<()> {
        if src + n > self.len || dst + n > self.len {
            return Err(Error::Internal("K/V block copy out of range".into()));
        }
        let gpu = self.gpu.clone();
        for l in self.k.iter_mut().chain(self.v.iter_mut()) {
            let tmp = gpu
                .stream
                .clone_dtod(&l.slice(src..src + n))
                .map_err(|e| Error::Device(format!("K/V copy: {e:?}")))?;
            gpu.stream
                .memcpy_dtod(&tmp, &mut l.slice_mut(dst..dst + n))
                .map_err(|e| Error::Device(format!("K/V copy: {e:?}")))?;
        }
        Ok(())
    }

    /// Device addresses of layer `layer`'s K and V.
    pub fn ptrs(&self, layer: usize) -> (Ptr, Ptr) {
        (
            ops::ptr(&self.gpu, &self.k[layer], 0),
            ops::ptr(&self.gpu, &self.v[layer], 0),
        )
    }
}

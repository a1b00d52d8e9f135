//! Host tensors the kernels compute with: [`Weight`] (a shape, an element type and bytes that are
//! either borrowed from a memory mapping or owned in an aligned buffer), its typed view
//! [`WeightData`] and the element types [`DType`]. Loaders (safetensors, GGUF) build them; the CPU
//! and CUDA backends read them.

use std::sync::Arc;

use half::{bf16, f16};

use crate::backend::cpu::memory::Mapping;

/// Element types the runtime computes with directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// Name as safetensors writes it.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
        }
    }
}

#[derive(Debug, Clone)]
enum Bytes {
    /// `len` bytes at `start` inside a shared mapping.
    Mapped {
        map: Arc<Mapping>,
        start: usize,
        len: usize,
    },
    /// An owned copy (8-byte aligned, on huge pages when large: see [`Mapping::zeroed`]).
    Owned(Arc<Mapping>),
}

/// A borrowed view of a weight's elements in their stored type.
#[derive(Debug, Clone, Copy)]
pub enum WeightData<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    BF16(&'a [bf16]),
}

/// One tensor of a checkpoint. Cheap to clone (shares the mapping).
#[derive(Debug, Clone)]
pub struct Weight {
    bytes: Bytes,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl Weight {
    /// The mapping or buffer the elements live in (shared by the tensors of one file).
    pub(crate) fn backing(&self) -> &Arc<Mapping> {
        match &self.bytes {
            Bytes::Mapped { map, .. } => map,
            Bytes::Owned(m) => m,
        }
    }

    /// An owned f32 tensor (used for tests and derived tensors).
    pub fn from_f32(values: &[f32], shape: Vec<usize>) -> Weight {
        Weight::from_bytes(bytemuck::cast_slice(values), DType::F32, shape)
    }

    /// An owned tensor from little-endian element bytes of `dtype` (copied into an aligned buffer).
    /// The caller guarantees `bytes.len() == numel * dtype.size()`.
    pub fn from_bytes(bytes: &[u8], dtype: DType, shape: Vec<usize>) -> Weight {
        debug_assert_eq!(bytes.len(), shape.iter().product::<usize>() * dtype.size());
        Weight {
            bytes: owned_copy(bytes),
            dtype,
            shape,
        }
    }

    /// A tensor read in place from `map[start..start + len]` (checked by the caller to lie inside the
    /// mapping and to match `shape`), or copied once when those bytes are not aligned for `dtype`.
    pub(crate) fn from_map(
        map: &Arc<Mapping>,
        start: usize,
        len: usize,
        dtype: DType,
        shape: Vec<usize>,
    ) -> Weight {
        let bytes = if (map.as_ptr() as usize + start).is_multiple_of(dtype.size()) {
            Bytes::Mapped {
                map: map.clone(),
                start,
                len,
            }
        } else {
            owned_copy(&map[start..start + len])
        };
        Weight {
            bytes,
            dtype,
            shape,
        }
    }

    /// An owned bf16 tensor (tests and benchmarks).
    pub fn from_bf16(values: &[bf16], shape: Vec<usize>) -> Weight {
        Weight {
            bytes: owned_copy(bytemuck::cast_slice(values)),
            dtype: DType::BF16,
            shape,
        }
    }

    /// An owned f16 tensor (tests and benchmarks).
    pub fn from_f16(values: &[f16], shape: Vec<usize>) -> Weight {
        Weight {
            bytes: owned_copy(bytemuck::cast_slice(values)),
            dtype: DType::F16,
            shape,
        }
    }

    /// The stored bytes (little-endian elements of `dtype`).
    pub fn raw(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mapped { map, start, len } => &map[*start..*start + *len],
            Bytes::Owned(m) => m,
        }
    }

    /// The elements in their stored type. Alignment was checked when the weight was created.
    pub fn data(&self) -> WeightData<'_> {
        let raw = self.raw();
        // Alignment and length are guaranteed by construction (see `WeightStore::make_weight`),
        // so these casts cannot fail.
        match self.dtype {
            DType::F32 => WeightData::F32(bytemuck::cast_slice(raw)),
            DType::F16 => WeightData::F16(bytemuck::cast_slice(raw)),
            DType::BF16 => WeightData::BF16(bytemuck::cast_slice(raw)),
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Element `i` converted to f32.
    pub fn get_f32(&self, i: usize) -> f32 {
        match self.data() {
            WeightData::F32(v) => v[i],
            WeightData::F16(v) => v[i].to_f32(),
            WeightData::BF16(v) => v[i].to_f32(),
        }
    }

    /// Copies row `r` of a 2-D weight into `out` as f32.
    pub fn row_to_f32(&self, r: usize, out: &mut [f32]) {
        let cols = out.len();
        let range = r * cols..(r + 1) * cols;
        match self.data() {
            WeightData::F32(v) => out.copy_from_slice(&v[range]),
            WeightData::F16(v) => out
                .iter_mut()
                .zip(&v[range])
                .for_each(|(o, x)| *o = x.to_f32()),
            WeightData::BF16(v) => out
                .iter_mut()
                .zip(&v[range])
                .for_each(|(o, x)| *o = x.to_f32()),
        }
    }

    /// The whole tensor as f32 (allocates; for small tensors such as norms and biases).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        (0..self.numel()).map(|i| self.get_f32(i)).collect()
    }
}

fn owned_copy(bytes: &[u8]) -> Bytes {
    let mut m = Mapping::zeroed(bytes.len());
    if let Some(w) = m.bytes_mut() {
        w.copy_from_slice(bytes);
    }
    Bytes::Owned(Arc::new(m))
}

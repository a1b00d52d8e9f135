//! Host tensors the kernels compute with: [`Weight`] (a shape, an element type and bytes that are
//! either borrowed from a memory mapping or owned in an aligned buffer), its typed view
//! [`WeightData`] and the element types [`DType`]: the float types, and ggml's block formats
//! ([`QuantFormat`]), which stay quantized in place and are multiplied by
//! [`crate::backend::cpu::quant`]. Loaders (safetensors, GGUF) build them; the CPU and CUDA
//! backends read them.

use std::sync::Arc;

use half::{bf16, f16};

use crate::backend::cpu::memory::Mapping;
use crate::backend::cpu::quant::{self, QuantFormat, QuantMatrix};

/// Element types the runtime computes with directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
    /// ggml blocks of a format, each row of a matrix a whole number of blocks.
    Quant(QuantFormat),
}

impl DType {
    /// Bytes per element; for a block format, bytes per block (see [`DType::byte_len`]).
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Quant(f) => f.block_bytes(),
        }
    }

    /// Bytes of `numel` elements (whole blocks for a block format; None when they are not).
    pub fn byte_len(self, numel: usize) -> Option<usize> {
        match self {
            DType::Quant(f) => numel
                .is_multiple_of(f.block_values())
                .then(|| numel / f.block_values() * f.block_bytes()),
            d => numel.checked_mul(d.size()),
        }
    }

    /// The alignment the elements are read with (block decoders read bytes: 1).
    pub fn align(self) -> usize {
        match self {
            DType::Quant(_) => 1,
            d => d.size(),
        }
    }

    /// Name as safetensors (float types) or ggml (block formats) writes it.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::Quant(f) => f.name(),
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
    /// Rows of ggml blocks: the last dimension is the columns, the others the rows.
    Quant(QuantMatrix<'a>),
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
    /// The caller guarantees `bytes.len() == dtype.byte_len(numel)` and, for a block format, that
    /// the last dimension is whole blocks.
    pub fn from_bytes(bytes: &[u8], dtype: DType, shape: Vec<usize>) -> Weight {
        debug_assert_eq!(
            Some(bytes.len()),
            dtype.byte_len(shape.iter().product::<usize>())
        );
        Weight {
            bytes: owned_copy(bytes),
            dtype,
            shape,
        }
    }

    /// A tensor read in place from `map[start..start + len]` (checked by the caller to lie inside the
    /// mapping and to match `shape`, whole blocks per row for a block format), or copied once when
    /// those bytes are not aligned for `dtype`.
    pub(crate) fn from_map(
        map: &Arc<Mapping>,
        start: usize,
        len: usize,
        dtype: DType,
        shape: Vec<usize>,
    ) -> Weight {
        let bytes = if (map.as_ptr() as usize + start).is_multiple_of(dtype.align()) {
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
            DType::Quant(format) => {
                let cols = self.shape.last().copied().unwrap_or(1);
                WeightData::Quant(QuantMatrix {
                    format,
                    data: raw,
                    rows: self.numel() / cols.max(1),
                    cols,
                })
            }
        }
    }

    /// Whether the elements are ggml blocks.
    pub fn is_quantized(&self) -> bool {
        matches!(self.dtype, DType::Quant(_))
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Element `i` converted to f32 (a block format decodes the block that holds it).
    pub fn get_f32(&self, i: usize) -> f32 {
        match self.data() {
            WeightData::F32(v) => v[i],
            WeightData::F16(v) => v[i].to_f32(),
            WeightData::BF16(v) => v[i].to_f32(),
            WeightData::Quant(q) => {
                let (qk, bb) = (q.format.block_values(), q.format.block_bytes());
                let mut block = [0f32; 256];
                decode(q.format, &q.data[i / qk * bb..][..bb], &mut block[..qk]);
                block[i % qk]
            }
        }
    }

    /// Copies row `r` of a 2-D weight into `out` as f32 (a block format decodes that row only).
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
            WeightData::Quant(q) => {
                assert_eq!(cols, q.cols, "row of {} values from a {q:?}", cols);
                let rb = q.row_bytes();
                decode(q.format, &q.data[r * rb..(r + 1) * rb], out);
            }
        }
    }

    /// The whole tensor as f32 (allocates; a block format is decoded row by row in parallel).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match self.data() {
            WeightData::Quant(q) => {
                let mut out = vec![0f32; self.numel()];
                // 64 rows per task: enough work to pay for handing it out.
                let (cols, rb) = (q.cols.max(1), q.row_bytes());
                crate::backend::cpu::par_chunks_mut(&mut out, 64 * cols, |c, rows| {
                    let bytes = &q.data[c * 64 * rb..][..rows.len() / cols * rb];
                    decode(q.format, bytes, rows)
                });
                out
            }
            _ => (0..self.numel()).map(|i| self.get_f32(i)).collect(),
        }
    }

    /// This tensor with f32 elements: itself when it already has them, else an owned copy of its
    /// values converted (block formats decoded exactly as ggml decodes them).
    pub fn to_f32_weight(&self) -> Weight {
        match self.dtype {
            DType::F32 => self.clone(),
            _ => Weight::from_f32(&self.to_f32_vec(), self.shape.clone()),
        }
    }
}

/// Decodes whole blocks of `format` whose lengths were checked when the weight was made.
fn decode(format: QuantFormat, src: &[u8], out: &mut [f32]) {
    if let Err(e) = quant::dequantize(format, src, out) {
        unreachable!("weight of {} checked at construction: {e}", format.name())
    }
}

fn owned_copy(bytes: &[u8]) -> Bytes {
    let mut m = Mapping::zeroed(bytes.len());
    if let Some(w) = m.bytes_mut() {
        w.copy_from_slice(bytes);
    }
    Bytes::Owned(Arc::new(m))
}

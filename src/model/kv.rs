//! Key/value storage for attention, in fixed-size blocks.
//!
//! [`KvStore`] is raw memory: for every layer, `num_blocks * block_size` rows of `kv_dim` values for
//! K and for V, stored as f32 or (host only) rounded to f16/bf16 ([`KvDtype`]). Which blocks belong to which sequence (block tables, reference counts, prefix sharing)
//! is the engine's business (`engine::kv`); the decoder only needs, per sequence, the block table
//! that maps position `p` to row `table[p / block_size] * block_size + p % block_size`.
//! [`KvCache`] is the simple single-sequence owner used by [`Model::forward`](crate::model::Model::forward).

use crate::backend::cpu::{kv_half, KvDtype, KvRows};

/// Block-structured K/V memory for all layers, on the host or on a CUDA device.
#[derive(Debug)]
pub struct KvStore {
    pub block_size: usize,
    pub kv_dim: usize,
    num_blocks: usize,
    layers: usize,
    dtype: KvDtype,
    mem: KvMem,
}

#[derive(Debug)]
enum KvMem {
    Host(HostKv),
    Cuda(crate::backend::cuda::DevKv),
}

/// Host K/V memory: per layer `[num_blocks * block_size, kv_dim]` rows of K and of V.
#[derive(Debug, Clone)]
pub struct HostKv {
    kv_dim: usize,
    k: Vec<Rows>,
    v: Vec<Rows>,
}

/// One layer's K or V values.
#[derive(Debug, Clone)]
enum Rows {
    F32(Vec<f32>),
    /// Bit patterns of a half-precision dtype.
    Half(KvDtype, Vec<u16>),
}

impl Rows {
    /// `n` zeroed values (one allocation: zeroed memory is mapped lazily).
    fn new(dtype: KvDtype, n: usize) -> Rows {
        match dtype {
            KvDtype::F32 => Rows::F32(vec![0.0; n]),
            d => Rows::Half(d, vec![0; n]),
        }
    }

    fn resize(&mut self, n: usize) {
        match self {
            Rows::F32(x) => x.resize(n, 0.0),
            Rows::Half(_, x) => x.resize(n, 0),
        }
    }

    fn copy_within(&mut self, src: std::ops::Range<usize>, dst: usize) {
        match self {
            Rows::F32(x) => x.copy_within(src, dst),
            Rows::Half(_, x) => x.copy_within(src, dst),
        }
    }

    /// Stores `src` at element `at`, rounded to nearest even for a half dtype.
    fn write(&mut self, at: usize, src: &[f32]) {
        match self {
            Rows::F32(x) => x[at..at + src.len()].copy_from_slice(src),
            Rows::Half(d, x) => kv_half::narrow(*d, src, &mut x[at..at + src.len()]),
        }
    }

    fn view(&self) -> KvRows<'_> {
        match self {
            Rows::F32(x) => KvRows::F32(x),
            Rows::Half(KvDtype::F16, x) => KvRows::F16(x),
            Rows::Half(_, x) => KvRows::Bf16(x),
        }
    }
}

impl HostKv {
    /// Writes the K and V rows of layer `layer` at `row`.
    pub fn write(&mut self, layer: usize, row: usize, k: &[f32], v: &[f32]) {
        let d = self.kv_dim;
        self.k[layer].write(row * d, &k[..d]);
        self.v[layer].write(row * d, &v[..d]);
    }

    /// K and V memory of one layer.
    pub fn layer(&self, layer: usize) -> (KvRows<'_>, KvRows<'_>) {
        (self.k[layer].view(), self.v[layer].view())
    }
}

impl KvStore {
    /// Host memory for `num_blocks` blocks of `dtype` values.
    pub fn new(
        layers: usize,
        kv_dim: usize,
        block_size: usize,
        num_blocks: usize,
        dtype: KvDtype,
    ) -> KvStore {
        let n = num_blocks * block_size * kv_dim;
        KvStore {
            block_size,
            kv_dim,
            num_blocks,
            layers,
            dtype,
            // One allocation per layer (not clones of one): zeroed memory is mapped lazily, so an
            // unused budget costs no RSS.
            mem: KvMem::Host(HostKv {
                kv_dim,
                k: (0..layers).map(|_| Rows::new(dtype, n)).collect(),
                v: (0..layers).map(|_| Rows::new(dtype, n)).collect(),
            }),
        }
    }

    /// Device memory for `num_blocks` blocks.
    pub fn new_cuda(
        gpu: &std::sync::Arc<crate::backend::cuda::Gpu>,
        layers: usize,
        kv_dim: usize,
        block_size: usize,
        num_blocks: usize,
    ) -> crate::Result<KvStore> {
        let dev = crate::backend::cuda::DevKv::new(
            gpu.clone(),
            layers,
            num_blocks * block_size * kv_dim,
        )?;
        Ok(KvStore {
            block_size,
            kv_dim,
            num_blocks,
            layers,
            dtype: KvDtype::F32,
            mem: KvMem::Cuda(dev),
        })
    }

    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    pub fn num_layers(&self) -> usize {
        self.layers
    }

    /// Element type of the values.
    pub fn dtype(&self) -> KvDtype {
        self.dtype
    }

    /// Bytes of K/V memory per block (all layers).
    pub fn bytes_per_block(&self) -> usize {
        Self::block_bytes(self.layers, self.kv_dim, self.block_size, self.dtype)
    }

    /// Bytes of one block of `block_size` rows over `layers` layers of width `kv_dim`.
    pub fn block_bytes(layers: usize, kv_dim: usize, block_size: usize, dtype: KvDtype) -> usize {
        2 * layers * block_size * kv_dim * dtype.bytes()
    }

    /// Adds blocks (their contents are undefined until written).
    pub fn grow_to(&mut self, num_blocks: usize) -> crate::Result<()> {
        if num_blocks > self.num_blocks {
            let n = num_blocks * self.block_size * self.kv_dim;
            match &mut self.mem {
                KvMem::Host(h) => {
                    for l in h.k.iter_mut().chain(h.v.iter_mut()) {
                        l.resize(n);
                    }
                }
                KvMem::Cuda(d) => d.grow(n)?,
            }
            self.num_blocks = num_blocks;
        }
        Ok(())
    }

    /// Row index of position `pos` for a sequence with block table `table`.
    #[inline]
    pub fn row(&self, table: &[u32], pos: usize) -> usize {
        table[pos / self.block_size] as usize * self.block_size + pos % self.block_size
    }

    /// The host memory, or an error when the store lives on a device.
    pub fn host_mut(&mut self) -> crate::Result<&mut HostKv> {
        match &mut self.mem {
            KvMem::Host(h) => Ok(h),
            KvMem::Cuda(_) => Err(crate::Error::InvalidArgument(
                "this KV store lives on a CUDA device; the CPU decoder cannot use it".into(),
            )),
        }
    }

    /// The device memory, or an error when the store lives on the host.
    pub fn cuda_mut(&mut self) -> crate::Result<&mut crate::backend::cuda::DevKv> {
        match &mut self.mem {
            KvMem::Cuda(d) => Ok(d),
            KvMem::Host(_) => Err(crate::Error::InvalidArgument(
                "this KV store lives on the host; the CUDA decoder cannot use it".into(),
            )),
        }
    }

    /// Copies the first `slots` rows of block `src` into block `dst`, in every layer (copy-on-write).
    pub fn copy_block(&mut self, src: u32, dst: u32, slots: usize) -> crate::Result<()> {
        let (bs, d) = (self.block_size, self.kv_dim);
        let (s, t) = (src as usize * bs * d, dst as usize * bs * d);
        match &mut self.mem {
            KvMem::Host(h) => {
                for l in h.k.iter_mut().chain(h.v.iter_mut()) {
                    l.copy_within(s..s + slots * d, t);
                }
                Ok(())
            }
            KvMem::Cuda(dev) => dev.copy_rows(s, t, slots * d),
        }
    }
}

/// One sequence's K/V cache with its own growable store (block `i` holds positions `16i..16i+15`).
#[derive(Debug)]
pub struct KvCache {
    pub(crate) store: KvStore,
    pub(crate) table: Vec<u32>,
    pub(crate) len: usize,
}

impl KvCache {
    pub(crate) const BLOCK: usize = 16;

    pub(crate) fn new(layers: usize, kv_dim: usize, dtype: KvDtype) -> KvCache {
        KvCache {
            store: KvStore::new(layers, kv_dim, Self::BLOCK, 0, dtype),
            table: Vec::new(),
            len: 0,
        }
    }

    /// Tokens cached so far (= position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets everything after the first `len` tokens.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Makes room for `extra` more tokens.
    pub(crate) fn reserve(&mut self, extra: usize) -> crate::Result<()> {
        let need = (self.len + extra).div_ceil(Self::BLOCK);
        while self.table.len() < need {
            self.table.push(self.table.len() as u32);
        }
        self.store.grow_to(need)
    }
}

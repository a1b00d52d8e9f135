//! Key/value storage for attention, in fixed-size blocks.
//!
//! [`KvStore`] is raw memory: for every layer, `num_blocks * block_size` rows of `kv_dim` floats for K
//! and for V. Which blocks belong to which sequence (block tables, reference counts, prefix sharing)
//! is the engine's business (`engine::kv`); the decoder only needs, per sequence, the block table
//! that maps position `p` to row `table[p / block_size] * block_size + p % block_size`.
//! [`KvCache`] is the simple single-sequence owner used by [`Model::forward`](crate::model::Model::forward).

/// Block-structured K/V memory for all layers, on the host or on a CUDA device.
#[derive(Debug)]
pub struct KvStore {
    pub block_size: usize,
    pub kv_dim: usize,
    num_blocks: usize,
    layers: usize,
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
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl HostKv {
    /// Writes the K and V rows of layer `layer` at `row`.
    pub fn write(&mut self, layer: usize, row: usize, k: &[f32], v: &[f32]) {
        let d = self.kv_dim;
        self.k[layer][row * d..(row + 1) * d].copy_from_slice(k);
        self.v[layer][row * d..(row + 1) * d].copy_from_slice(v);
    }

    /// K and V memory of one layer.
    pub fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        (&self.k[layer], &self.v[layer])
    }
}

impl KvStore {
    /// Host memory for `num_blocks` blocks.
    pub fn new(layers: usize, kv_dim: usize, block_size: usize, num_blocks: usize) -> KvStore {
        let n = num_blocks * block_size * kv_dim;
        KvStore {
            block_size,
            kv_dim,
            num_blocks,
            layers,
            // One allocation per layer (not clones of one): zeroed memory is mapped lazily, so an
            // unused budget costs no RSS.
            mem: KvMem::Host(HostKv {
                kv_dim,
                k: (0..layers).map(|_| vec![0.0; n]).collect(),
                v: (0..layers).map(|_| vec![0.0; n]).collect(),
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
            mem: KvMem::Cuda(dev),
        })
    }

    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    pub fn num_layers(&self) -> usize {
        self.layers
    }

    /// Bytes of K/V memory per block (all layers).
    pub fn bytes_per_block(&self) -> usize {
        Self::block_bytes(self.layers, self.kv_dim, self.block_size)
    }

    /// Bytes of one block of `block_size` rows over `layers` layers of width `kv_dim`.
    pub fn block_bytes(layers: usize, kv_dim: usize, block_size: usize) -> usize {
        2 * layers * block_size * kv_dim * std::mem::size_of::<f32>()
    }

    /// Adds blocks (their contents are undefined until written).
    pub fn grow_to(&mut self, num_blocks: usize) -> crate::Result<()> {
        if num_blocks > self.num_blocks {
            let n = num_blocks * self.block_size * self.kv_dim;
            match &mut self.mem {
                KvMem::Host(h) => {
                    for l in h.k.iter_mut().chain(h.v.iter_mut()) {
                        l.resize(n, 0.0);
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

    pub(crate) fn new(layers: usize, kv_dim: usize) -> KvCache {
        KvCache {
            store: KvStore::new(layers, kv_dim, Self::BLOCK, 0),
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

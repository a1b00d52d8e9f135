//! Key/value storage for attention, in fixed-size blocks.
//!
//! [`KvStore`] is raw memory: for every layer, `num_blocks * block_size` rows of `kv_dim` floats for K
//! and for V. Which blocks belong to which sequence (block tables, reference counts, prefix sharing)
//! is the engine's business (`engine::kv`); the decoder only needs, per sequence, the block table
//! that maps position `p` to row `table[p / block_size] * block_size + p % block_size`.
//! [`KvCache`] is the simple single-sequence owner used by [`Model::forward`](crate::model::Model::forward).

/// Block-structured K/V memory for all layers.
#[derive(Debug, Clone)]
pub struct KvStore {
    pub block_size: usize,
    pub kv_dim: usize,
    num_blocks: usize,
    /// Per layer: `[num_blocks * block_size, kv_dim]`.
    k: Vec<Vec<f32>>,
    /// Per layer: `[num_blocks * block_size, kv_dim]`.
    v: Vec<Vec<f32>>,
}

impl KvStore {
    pub fn new(layers: usize, kv_dim: usize, block_size: usize, num_blocks: usize) -> KvStore {
        let n = num_blocks * block_size * kv_dim;
        KvStore {
            block_size,
            kv_dim,
            num_blocks,
            // One allocation per layer (not clones of one): zeroed memory is mapped lazily, so an
            // unused budget costs no RSS.
            k: (0..layers).map(|_| vec![0.0; n]).collect(),
            v: (0..layers).map(|_| vec![0.0; n]).collect(),
        }
    }

    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    pub fn num_layers(&self) -> usize {
        self.k.len()
    }

    /// Bytes of K/V memory per block (all layers).
    pub fn bytes_per_block(&self) -> usize {
        2 * self.k.len() * self.block_size * self.kv_dim * std::mem::size_of::<f32>()
    }

    /// Adds blocks (their contents are undefined until written).
    pub fn grow_to(&mut self, num_blocks: usize) {
        if num_blocks > self.num_blocks {
            let n = num_blocks * self.block_size * self.kv_dim;
            for l in self.k.iter_mut().chain(self.v.iter_mut()) {
                l.resize(n, 0.0);
            }
            self.num_blocks = num_blocks;
        }
    }

    /// Row index of position `pos` for a sequence with block table `table`.
    #[inline]
    pub fn row(&self, table: &[u32], pos: usize) -> usize {
        table[pos / self.block_size] as usize * self.block_size + pos % self.block_size
    }

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

    /// Copies the first `slots` rows of block `src` into block `dst`, in every layer (copy-on-write).
    pub fn copy_block(&mut self, src: u32, dst: u32, slots: usize) {
        let (bs, d) = (self.block_size, self.kv_dim);
        let (s, t) = (src as usize * bs * d, dst as usize * bs * d);
        for l in self.k.iter_mut().chain(self.v.iter_mut()) {
            l.copy_within(s..s + slots * d, t);
        }
    }
}

/// One sequence's K/V cache with its own growable store (block `i` holds positions `16i..16i+15`).
#[derive(Debug, Clone)]
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
    pub(crate) fn reserve(&mut self, extra: usize) {
        let need = (self.len + extra).div_ceil(Self::BLOCK);
        while self.table.len() < need {
            self.table.push(self.table.len() as u32);
        }
        self.store.grow_to(need);
    }
}

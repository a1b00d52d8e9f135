//! KV block bookkeeping: reference counts, free list, the prefix index and LRU eviction.
//!
//! Blocks are fixed-size pages of the [`KvStore`](crate::model::KvStore). A sequence owns a block
//! table; forking a sequence copies the table and increments reference counts (no KV copy). A *full*
//! block whose tokens are known is registered in a radix index keyed by (parent block, its tokens),
//! so the key of a block implies its whole prefix; a new sequence whose prompt starts with cached
//! blocks reuses them. Blocks nobody references but the index knows stay cached and are evicted
//! least-recently-used first when the pool runs out; evicting a block also evicts its cached
//! descendants (their keys name it as parent).

use std::collections::{BTreeMap, HashMap};

use crate::error::{Error, Result};

/// Sentinel parent of a sequence's first block.
const ROOT: u32 = u32::MAX;

/// Counters exposed through engine statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BlockStats {
    pub blocks_total: usize,
    pub blocks_in_use: usize,
    pub blocks_cached: usize,
    pub blocks_free: usize,
    pub blocks_evicted: u64,
    pub copy_on_write: u64,
}

#[derive(Debug)]
pub struct BlockManager {
    block_size: usize,
    refs: Vec<u32>,
    free: Vec<u32>,
    /// (parent, tokens) -> block.
    index: HashMap<(u32, Box<[u32]>), u32>,
    /// The index key of each registered block.
    key: Vec<Option<(u32, Box<[u32]>)>>,
    /// Registered children of each block.
    children: Vec<Vec<u32>>,
    /// LRU of unreferenced registered blocks: tick -> block, and each block's tick (0 = not listed).
    lru: BTreeMap<u64, u32>,
    lru_tick: Vec<u64>,
    tick: u64,
    evicted: u64,
    cow: u64,
}

impl BlockManager {
    pub fn new(num_blocks: usize, block_size: usize) -> BlockManager {
        BlockManager {
            block_size,
            refs: vec![0; num_blocks],
            free: (0..num_blocks as u32).rev().collect(),
            index: HashMap::new(),
            key: vec![None; num_blocks],
            children: vec![Vec::new(); num_blocks],
            lru: BTreeMap::new(),
            lru_tick: vec![0; num_blocks],
            tick: 0,
            evicted: 0,
            cow: 0,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn refs(&self, b: u32) -> u32 {
        self.refs[b as usize]
    }

    /// Whether writing into `b` would change what another sequence or the prefix index sees
    /// (so a writer must copy it first).
    pub fn must_copy_before_write(&self, b: u32) -> bool {
        self.refs[b as usize] > 1 || self.key[b as usize].is_some()
    }

    /// A fresh block with one reference, evicting cached blocks if needed.
    pub fn alloc(&mut self) -> Result<u32> {
        if self.free.is_empty() {
            if let Some((_, b)) = self.lru.pop_first() {
                self.lru_tick[b as usize] = 0;
                self.evict(b);
            }
        }
        let b = self.free.pop().ok_or_else(|| {
            Error::OutOfMemory(format!(
                "all {} KV blocks are in use by live sequences; raise the KV budget or run fewer sequences",
                self.refs.len()
            ))
        })?;
        self.refs[b as usize] = 1;
        Ok(b)
    }

    /// Removes `b` (unreferenced) and its cached descendants from the index and frees them.
    fn evict(&mut self, b: u32) {
        let mut stack = vec![b];
        while let Some(x) = stack.pop() {
            if let Some((parent, toks)) = self.key[x as usize].take() {
                self.index.remove(&(parent, toks));
                if parent != ROOT {
                    self.children[parent as usize].retain(|&c| c != x);
                }
            }
            for c in std::mem::take(&mut self.children[x as usize]) {
                // Children of an unreferenced block are unreferenced too (a table holds every
                // ancestor), so they leave the LRU and are freed with it.
                if self.lru_tick[c as usize] != 0 {
                    self.lru.remove(&self.lru_tick[c as usize]);
                    self.lru_tick[c as usize] = 0;
                }
                if self.refs[c as usize] == 0 {
                    stack.push(c);
                } else if let Some(k) = self.key[c as usize].take() {
                    self.index.remove(&k);
                }
            }
            if self.refs[x as usize] == 0 {
                self.evicted += 1;
                self.free.push(x);
            }
        }
    }

    pub fn incref(&mut self, b: u32) {
        let i = b as usize;
        if self.refs[i] == 0 && self.lru_tick[i] != 0 {
            self.lru.remove(&self.lru_tick[i]);
            self.lru_tick[i] = 0;
        }
        self.refs[i] += 1;
    }

    pub fn decref(&mut self, b: u32) {
        let i = b as usize;
        debug_assert!(self.refs[i] > 0);
        self.refs[i] -= 1;
        if self.refs[i] == 0 {
            if self.key[i].is_some() {
                self.tick += 1;
                self.lru.insert(self.tick, b);
                self.lru_tick[i] = self.tick;
            } else {
                self.free.push(b);
            }
        }
    }

    /// The cached block holding `tokens` right after `parent` (None for the first block), if any.
    pub fn lookup(&self, parent: Option<u32>, tokens: &[u32]) -> Option<u32> {
        let key = (parent.unwrap_or(ROOT), Box::<[u32]>::from(tokens));
        self.index.get(&key).copied()
    }

    /// Registers a full block so later sequences can reuse it. No-op if that content is already
    /// cached (in another block) or the block is already registered.
    pub fn register(&mut self, parent: Option<u32>, tokens: &[u32], b: u32) {
        debug_assert_eq!(tokens.len(), self.block_size);
        if self.key[b as usize].is_some() {
            return;
        }
        let p = parent.unwrap_or(ROOT);
        let key = (p, Box::<[u32]>::from(tokens));
        if self.index.contains_key(&key) {
            return;
        }
        self.index.insert(key.clone(), b);
        self.key[b as usize] = Some(key);
        if p != ROOT {
            self.children[p as usize].push(b);
        }
    }

    /// Counts a copy-on-write (the caller copies the data).
    pub fn note_cow(&mut self) {
        self.cow += 1;
    }

    pub fn stats(&self) -> BlockStats {
        let total = self.refs.len();
        let in_use = self.refs.iter().filter(|&&r| r > 0).count();
        BlockStats {
            blocks_total: total,
            blocks_in_use: in_use,
            blocks_cached: self.lru.len(),
            blocks_free: self.free.len(),
            blocks_evicted: self.evicted,
            copy_on_write: self.cow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_cache_and_evict() {
        let mut m = BlockManager::new(3, 2);
        let a = m.alloc().unwrap();
        let b = m.alloc().unwrap();
        m.register(None, &[1, 2], a);
        m.register(Some(a), &[3, 4], b);
        assert_eq!(m.lookup(None, &[1, 2]), Some(a));
        assert_eq!(m.lookup(Some(a), &[3, 4]), Some(b));
        m.decref(b);
        m.decref(a);
        assert_eq!(m.stats().blocks_cached, 2);
        // Reuse brings a cached block back.
        m.incref(a);
        assert_eq!(m.stats().blocks_cached, 1);
        m.decref(a);
        // Pool of 3: one free, then eviction of the LRU block (b, released first) is needed.
        let c = m.alloc().unwrap();
        let d = m.alloc().unwrap();
        assert_ne!(c, d);
        assert_eq!(m.lookup(Some(a), &[3, 4]), None);
        // Evicting `a` takes nothing else: its child is gone already.
        let e = m.alloc().unwrap();
        assert_eq!(m.lookup(None, &[1, 2]), None);
        assert!(m.alloc().is_err());
        for x in [c, d, e] {
            m.decref(x);
        }
        assert_eq!(m.stats().blocks_free, 3);
    }

    #[test]
    fn evicting_a_parent_evicts_cached_children() {
        let mut m = BlockManager::new(2, 1);
        let a = m.alloc().unwrap();
        let b = m.alloc().unwrap();
        m.register(None, &[7], a);
        m.register(Some(a), &[8], b);
        m.decref(a); // parent released first -> LRU head
        m.decref(b);
        let _ = m.alloc().unwrap(); // evicts a, and with it b
        assert_eq!(m.stats().blocks_free, 1);
        assert_eq!(m.lookup(Some(a), &[8]), None);
    }
}

//! Process reward models: a decoder body plus a value head, scored through a tree [`Engine`] so
//! sequences that share a prefix share its KV (and a prefix scored earlier is reused from the cache).
//!
//! The layouts read (rStar-Math's PPM split or combined as trl writes it, Qwen2.5-Math-PRM) are
//! those of [`crate::model::ppm_layout`], the loader training shares. rStar's raw value is
//! `w . h + b` on the final-norm hidden state `h` of the last token; MCTS applies `tanh(raw / 5)`.

use std::path::Path;
use std::sync::Arc;

use crate::engine::LoadedModel;
use crate::engine::{Engine, EngineConfig, SeqId};
use crate::error::{Error, Result};
pub use crate::model::ppm_layout::ValueHead;
use crate::model::ppm_layout::{open_ppm_dir, PpmDir};
use crate::model::Model;
use crate::tokenizer::Tokenizer;

/// A loaded process reward model.
#[derive(Debug)]
pub struct Ppm {
    /// The decoder body (no LM head) and tokenizer.
    pub lm: Arc<LoadedModel>,
    pub head: ValueHead,
}

impl Ppm {
    /// Loads a PPM directory in any layout of [`crate::model::ppm_layout`].
    pub fn load(dir: &Path) -> Result<Ppm> {
        let PpmDir {
            config,
            store,
            head,
            ..
        } = open_ppm_dir(dir)?;
        let head = head.ok_or_else(|| {
            Error::format(
                dir,
                "no value head: expected value_head.safetensors, v_head.summary.* or score.0/score.2 tensors",
            )
        })?;
        let model = Model::from_store_with_head(config, &store, false)?;
        let tokenizer = if dir.join("tokenizer.json").is_file() {
            Some(Tokenizer::from_dir(dir)?)
        } else {
            None
        };
        Ok(Ppm {
            lm: Arc::new(LoadedModel {
                model,
                tokenizer,
                eos_token_ids: Vec::new(),
            }),
            head,
        })
    }

    /// [`load`](Self::load), then moves the decoder to `device` (the value head stays on the host:
    /// it reads one hidden row per score).
    pub fn load_on(dir: &Path, device: crate::backend::Device) -> Result<Ppm> {
        let mut ppm = Self::load(dir)?;
        Arc::get_mut(&mut ppm.lm)
            .ok_or_else(|| Error::Internal("PPM model shared while loading".into()))?
            .model
            .to_device(device)?;
        Ok(ppm)
    }

    /// Scores at every position of one sequence (computed alone, for inspection).
    pub fn score_all_positions(&self, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("empty sequence".into()));
        }
        let mut cache = self.lm.model.new_cache();
        let hidden = self.lm.model.forward_hidden(tokens, &mut cache)?;
        Ok(hidden
            .chunks(self.lm.model.config.hidden_size)
            .map(|h| self.head.apply(h))
            .collect())
    }
}

/// Scores many sequences with prefix sharing; keeps a KV cache across calls so later sequences
/// that extend earlier ones (MCTS children) only compute their new tokens.
#[derive(Debug)]
pub struct Scorer {
    ppm: Arc<Ppm>,
    engine: Engine,
    /// The sequences scored by the previous call, kept alive so their children can fork them.
    anchors: Vec<(Vec<u32>, SeqId)>,
}

impl Scorer {
    pub fn new(ppm: Arc<Ppm>, cfg: EngineConfig) -> Result<Scorer> {
        let engine = Engine::new(ppm.lm.clone(), cfg)?;
        Ok(Scorer {
            ppm,
            engine,
            anchors: Vec::new(),
        })
    }

    /// Raw value at the last token of each sequence. Work is shared as in a tree: a sequence that
    /// extends one scored in the previous call (an MCTS child of a scored node) forks it and computes
    /// only its new tokens; sequences of this call that share a prefix have that prefix computed once
    /// (one batched pass), then all are finished in one more batched pass.
    pub fn score(&mut self, seqs: &[Vec<u32>]) -> Result<Vec<f32>> {
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by(|&a, &b| seqs[a].cmp(&seqs[b]));
        let lcp = |a: &[u32], b: &[u32]| a.iter().zip(b).take_while(|(x, y)| x == y).count();
        // Shared prefixes of sorted neighbours that no anchor already covers.
        let mut prefixes: Vec<Vec<u32>> = Vec::new();
        let mut g = 0;
        while g < order.len() {
            let mut l = seqs[order[g]].len();
            let mut end = g + 1;
            while end < order.len() {
                let c = lcp(&seqs[order[end - 1]], &seqs[order[end]]).min(l);
                if c == 0 {
                    break;
                }
                l = c;
                end += 1;
            }
            let p = &seqs[order[g]][..l.min(seqs[order[g]].len() - 1)];
            if end - g > 1 && !p.is_empty() && self.best_base(p, &[]).1 < p.len() {
                prefixes.push(p.to_vec());
            }
            g = end;
        }
        let mut pre = Vec::new();
        let mut ids = Vec::new();
        let res = (|| {
            for p in &prefixes {
                pre.push((p.clone(), self.branch(p, &[])?));
            }
            let pre_ids: Vec<SeqId> = pre.iter().map(|p| p.1).collect();
            self.engine.compute(&pre_ids)?;
            for s in seqs {
                ids.push(self.branch(s, &pre)?);
            }
            let hidden = self.engine.last_hidden(&ids)?;
            Ok(hidden.iter().map(|h| self.ppm.head.apply(h)).collect())
        })();
        // This call's sequences become the anchors of the next; everything else is released (full
        // blocks stay in the prefix cache until evicted).
        for (_, id) in pre.into_iter().chain(std::mem::take(&mut self.anchors)) {
            let _ = self.engine.remove(id);
        }
        if res.is_ok() {
            self.anchors = seqs.iter().cloned().zip(ids).collect();
        } else {
            for id in ids {
                let _ = self.engine.remove(id);
            }
        }
        res
    }

    /// The anchor or prefix sequence sharing the longest prefix with `tokens`, and that length.
    fn best_base(&self, tokens: &[u32], extra: &[(Vec<u32>, SeqId)]) -> (Option<SeqId>, usize) {
        let mut best = (None, 0);
        for (t, id) in self.anchors.iter().chain(extra) {
            let l = t.iter().zip(tokens).take_while(|(x, y)| x == y).count();
            if l > best.1 {
                best = (Some(*id), l);
            }
        }
        best
    }

    /// A new sequence holding `tokens`, forked from the best base (then cut and extended) or added
    /// fresh (reusing cached full blocks).
    fn branch(&mut self, tokens: &[u32], extra: &[(Vec<u32>, SeqId)]) -> Result<SeqId> {
        match self.best_base(tokens, extra) {
            (Some(base), l) if l > self.engine.cached_prefix_len(&tokens[..tokens.len() - 1]) => {
                let id = self.engine.fork(base)?;
                self.engine.truncate(id, l)?;
                self.engine
                    .append(id, &tokens[l.min(self.engine.tokens(id)?.len())..])?;
                Ok(id)
            }
            _ => self.engine.add(tokens),
        }
    }

    /// Engine statistics (tokens computed vs requested, cache hits).
    pub fn stats(&self) -> crate::engine::EngineStats {
        self.engine.stats()
    }
}

//! The batched, tree-structured [`Engine`]: many sequences over one paged KV pool.
//!
//! * Sequences are token lists with a block table. [`Engine::fork`] copies the table (no KV copy);
//!   the first write into a shared, partially filled block copies just that block.
//! * [`Engine::add`] reuses cached full blocks of a known prefix (radix index in [`BlockManager`]),
//!   so no token of a prefix that is still cached is computed twice.
//! * [`Engine::compute`] advances every pending sequence in shared forward passes (prefill chunks and
//!   decode tokens mixed, up to `max_batch_tokens` a pass).
//! * [`Engine::run`] generates for many requests with continuous batching; [`Engine::expand`] samples
//!   n continuations of one sequence, the expansion primitive of MCTS.
//!
//! On the CPU, results never depend on batching or caching: each token's arithmetic is the same
//! whether it is computed alone, in a batch, or reused from the cache. On CUDA they agree across
//! batch shapes to rounding (GEMV vs GEMM, attention splits), not bit for bit.
//!
//! Sampling: on the CPU each sequence draws from its [`Sampler`] (its own seeded stream). On a CUDA
//! model the engine hands the last hidden rows to [`Model::sample_on_device`]: the LM head and the
//! device sampler run there and only ids come back. The device draw is keyed on (seed, index of
//! the token in the generation), not on the batch; the two devices' samplers draw different
//! tokens for the same seed.
//!
//! [`Model::sample_on_device`]: crate::model::Model::sample_on_device

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use crate::backend::cpu::KvDtype;
use crate::engine::blocks::{BlockManager, BlockStats};
use crate::engine::loaded::LoadedModel;
use crate::engine::request::{
    Candidate, FinishReason, GenerateOutput, GenerateParams, Request, SeqId,
};
use crate::engine::sampling::Sampler;
use crate::engine::stop::TextTracker;
use crate::error::{Error, Result};
use crate::model::{KvStore, SeqChunk};

/// Engine sizing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineConfig {
    /// Tokens per KV block.
    pub block_size: usize,
    /// Memory for K/V, in bytes; sets the number of blocks.
    pub kv_budget_bytes: usize,
    /// Element type of the K/V cache (f16/bf16 fit twice the blocks in the budget; CPU only).
    /// Defaults to the one of the `Compute::run` in progress (`--kv-dtype`), else f32.
    pub kv_dtype: KvDtype,
    /// Most tokens in one forward pass.
    pub max_batch_tokens: usize,
    /// Most sequences generating at once in [`Engine::run`]; the rest wait. On a CPU each active
    /// sequence holds a row of logits per step (600 KB at a 152k vocabulary), and decoding 256
    /// rows together measured 7% faster than 64 in `rstar bench tree` (the weights are widened
    /// once per step for more rows). On CUDA the LM head and the sampler run on the device and
    /// only token ids come back.
    pub max_active: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            block_size: 16,
            kv_budget_bytes: 1 << 30,
            max_batch_tokens: 512,
            max_active: 256,
            kv_dtype: crate::backend::cpu::kv_dtype(),
        }
    }
}

/// Counters for what was asked and what was done.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct EngineStats {
    /// Tokens given to sequences (added, appended or generated); forks add none.
    pub tokens_requested: u64,
    /// Tokens that went through the decoder.
    pub tokens_computed: u64,
    /// Prompt tokens whose KV came from the prefix cache.
    pub cache_hit_tokens: u64,
    pub forward_passes: u64,
    pub forward_seconds: f64,
    pub sample_seconds: f64,
    #[serde(flatten)]
    pub blocks: BlockStats,
}

#[derive(Debug, Clone)]
struct Seq {
    tokens: Vec<u32>,
    table: Vec<u32>,
    /// Tokens whose K/V are in the cache.
    computed: usize,
    /// Final-norm hidden state at position `computed - 1` (valid when computed == tokens.len()).
    last_hidden: Option<Arc<Vec<f32>>>,
}

/// Many sequences sharing one model and one KV pool.
pub struct Engine {
    lm: Arc<LoadedModel>,
    cfg: EngineConfig,
    kv: KvStore,
    blocks: BlockManager,
    seqs: HashMap<SeqId, Seq>,
    next_id: u64,
    stats: EngineStats,
    /// Buffers of a step, reused so that decoding allocates nothing of the model's size per token.
    bufs: StepBuffers,
}

#[derive(Default)]
struct StepBuffers {
    tokens: Vec<u32>,
    hidden: Vec<f32>,
    /// Last hidden rows of the sequences whose logits are asked for.
    rows: Vec<f32>,
    logits: Vec<f32>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("cfg", &self.cfg)
            .field("sequences", &self.seqs.len())
            .field("stats", &self.stats)
            .finish()
    }
}

/// A request being decoded in [`Engine::run`]: its sampler, stop-string tracker, output so far
/// and timings.
struct Active<'t> {
    /// Index of the request.
    idx: usize,
    sampler: Sampler,
    text: TextTracker<'t>,
    ids: Vec<u32>,
    prompt_tokens: usize,
    budget: usize,
    t_first: Option<Instant>,
    prefill_seconds: f64,
    t_start: Instant,
}

impl Active<'_> {
    /// The request's output, ended for `reason`.
    fn finish(self, reason: FinishReason) -> GenerateOutput {
        let decode = self
            .t_first
            .map(|t| t.elapsed().as_secs_f64())
            .unwrap_or(0.0);
        let tps = if self.ids.len() > 1 && decode > 0.0 {
            (self.ids.len() - 1) as f64 / decode
        } else {
            0.0
        };
        GenerateOutput {
            ids: self.ids,
            text: self.text.text,
            finish_reason: reason,
            stop_string: self.text.stop_string,
            prompt_tokens: self.prompt_tokens,
            tokens_per_second: tps,
            prefill_seconds: self.prefill_seconds,
        }
    }
}

fn unknown(id: SeqId) -> Error {
    Error::InvalidArgument(format!("unknown sequence {}", id.0))
}

fn seq_in(seqs: &HashMap<SeqId, Seq>, id: SeqId) -> Result<&Seq> {
    seqs.get(&id).ok_or_else(|| unknown(id))
}

/// The hidden state of a computed sequence (a field of the engine, so that callers may hold other
/// fields mutably meanwhile).
fn hidden_of(seqs: &HashMap<SeqId, Seq>, id: SeqId) -> Result<&Arc<Vec<f32>>> {
    seq_in(seqs, id)?
        .last_hidden
        .as_ref()
        .ok_or_else(|| Error::Internal("missing hidden state".into()))
}

impl Engine {
    pub fn new(lm: Arc<LoadedModel>, cfg: EngineConfig) -> Result<Engine> {
        if cfg.block_size == 0 || cfg.max_batch_tokens == 0 || cfg.max_active == 0 {
            return Err(Error::InvalidArgument(
                "engine block_size, max_batch_tokens and max_active must be positive".into(),
            ));
        }
        let per_block = lm.model.kv_bytes_per_block(cfg.block_size, cfg.kv_dtype);
        let num_blocks = cfg.kv_budget_bytes / per_block;
        if num_blocks == 0 {
            return Err(Error::OutOfMemory(format!(
                "KV budget of {} bytes holds no block ({per_block} bytes each)",
                cfg.kv_budget_bytes,
            )));
        }
        let kv = lm
            .model
            .new_kv_store(cfg.block_size, num_blocks, cfg.kv_dtype)?;
        Ok(Engine {
            lm,
            cfg,
            kv,
            blocks: BlockManager::new(num_blocks, cfg.block_size),
            seqs: HashMap::new(),
            next_id: 0,
            stats: EngineStats::default(),
            bufs: StepBuffers::default(),
        })
    }

    /// The model this engine runs.
    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.lm
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            blocks: self.blocks.stats(),
            ..self.stats
        }
    }

    fn seq(&self, id: SeqId) -> Result<&Seq> {
        seq_in(&self.seqs, id)
    }

    fn seq_mut(&mut self, id: SeqId) -> Result<&mut Seq> {
        self.seqs.get_mut(&id).ok_or_else(|| unknown(id))
    }

    fn insert(&mut self, s: Seq) -> SeqId {
        let id = SeqId(self.next_id);
        self.next_id += 1;
        self.seqs.insert(id, s);
        id
    }

    /// The tokens of a sequence.
    pub fn tokens(&self, id: SeqId) -> Result<&[u32]> {
        Ok(&self.seq(id)?.tokens)
    }

    /// Number of live sequences.
    pub fn num_sequences(&self) -> usize {
        self.seqs.len()
    }

    /// A new sequence holding `tokens`, reusing cached KV blocks of its longest cached prefix
    /// (all but the last token may come from the cache; the last is always computed so its
    /// logits exist).
    pub fn add(&mut self, tokens: &[u32]) -> Result<SeqId> {
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("empty sequence".into()));
        }
        self.check_tokens(tokens)?;
        let bs = self.cfg.block_size;
        let mut table = Vec::new();
        let mut parent = None;
        for chunk in tokens[..tokens.len() - 1].chunks_exact(bs) {
            match self.blocks.lookup(parent, chunk) {
                Some(b) => {
                    self.blocks.incref(b);
                    table.push(b);
                    parent = Some(b);
                }
                None => break,
            }
        }
        let computed = table.len() * bs;
        self.stats.tokens_requested += tokens.len() as u64;
        self.stats.cache_hit_tokens += computed as u64;
        Ok(self.insert(Seq {
            tokens: tokens.to_vec(),
            table,
            computed,
            last_hidden: None,
        }))
    }

    /// How many leading tokens of `tokens` (whole blocks) are in the prefix cache.
    pub fn cached_prefix_len(&self, tokens: &[u32]) -> usize {
        let mut parent = None;
        let mut n = 0;
        for chunk in tokens.chunks_exact(self.cfg.block_size) {
            match self.blocks.lookup(parent, chunk) {
                Some(b) => {
                    parent = Some(b);
                    n += chunk.len();
                }
                None => break,
            }
        }
        n
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        let v = self.lm.model.config.vocab_size;
        match tokens.iter().find(|&&t| t as usize >= v) {
            Some(t) => Err(Error::InvalidArgument(format!(
                "token id {t} is out of range for vocabulary size {v}"
            ))),
            None => Ok(()),
        }
    }

    /// A new sequence sharing all of `id`'s tokens and KV (no copy). Tokens of `id` still pending
    /// are computed first, so parent and children never compute them twice.
    pub fn fork(&mut self, id: SeqId) -> Result<SeqId> {
        let s = self.seq(id)?;
        if s.computed < s.tokens.len() {
            self.compute(&[id])?;
        }
        let s = self.seq(id)?.clone();
        for &b in &s.table {
            self.blocks.incref(b);
        }
        Ok(self.insert(s))
    }

    /// Appends tokens (computed at the next [`compute`](Self::compute) or generation).
    pub fn append(&mut self, id: SeqId, tokens: &[u32]) -> Result<()> {
        self.check_tokens(tokens)?;
        let s = self.seq_mut(id)?;
        s.tokens.extend_from_slice(tokens);
        if !tokens.is_empty() {
            s.last_hidden = None;
        }
        self.stats.tokens_requested += tokens.len() as u64;
        Ok(())
    }

    /// Cuts a sequence back to its first `len` tokens (e.g. to branch from a common prefix of a
    /// forked sequence). Blocks past the cut are released; a shared or cached block that will be
    /// written again is copied first.
    pub fn truncate(&mut self, id: SeqId, len: usize) -> Result<()> {
        if len == 0 {
            return Err(Error::InvalidArgument(
                "cannot truncate to zero tokens".into(),
            ));
        }
        let bs = self.cfg.block_size;
        let s = self.seq_mut(id)?;
        if len >= s.tokens.len() {
            return Ok(());
        }
        s.tokens.truncate(len);
        s.last_hidden = None;
        // The last token is recomputed so its hidden state exists again.
        s.computed = s.computed.min(len - 1);
        let keep = s.computed.div_ceil(bs);
        let dropped: Vec<u32> = s.table.drain(keep.min(s.table.len())..).collect();
        for b in dropped {
            self.blocks.decref(b);
        }
        Ok(())
    }

    /// Drops a sequence; blocks nobody else uses become free (or stay cached if indexed).
    pub fn remove(&mut self, id: SeqId) -> Result<()> {
        let s = self.seqs.remove(&id).ok_or_else(|| unknown(id))?;
        for b in s.table {
            self.blocks.decref(b);
        }
        Ok(())
    }

    /// Makes the blocks for positions `[computed, computed + n)` of `id` writable.
    fn prepare_blocks(&mut self, id: SeqId, n: usize) -> Result<()> {
        let bs = self.cfg.block_size;
        let (computed, mut table) = {
            let s = self.seq_mut(id)?;
            (s.computed, std::mem::take(&mut s.table))
        };
        let res = (|| {
            let last = (computed + n - 1) / bs;
            for bi in computed / bs..=last {
                if bi < table.len() {
                    let old = table[bi];
                    if self.blocks.must_copy_before_write(old) {
                        let new = self.blocks.alloc()?;
                        self.kv.copy_block(old, new, computed - bi * bs)?;
                        self.blocks.decref(old);
                        self.blocks.note_cow();
                        table[bi] = new;
                    }
                } else {
                    table.push(self.blocks.alloc()?);
                }
            }
            Ok(())
        })();
        self.seq_mut(id)?.table = table;
        res
    }

    /// Computes every pending token of `ids` (in as few shared forward passes as the batch limit
    /// allows) so each has its last hidden state.
    pub fn compute(&mut self, ids: &[SeqId]) -> Result<()> {
        let max_ctx = self.lm.model.config.max_position_embeddings;
        for &id in ids {
            let s = self.seq(id)?;
            if s.tokens.len() > max_ctx {
                return Err(Error::InvalidArgument(format!(
                    "sequence of {} tokens exceeds the model's context of {max_ctx}",
                    s.tokens.len()
                )));
            }
        }
        loop {
            let mut budget = self.cfg.max_batch_tokens;
            let mut work: Vec<(SeqId, usize, usize)> = Vec::new(); // (id, start, n)
            for &id in ids {
                if budget == 0 {
                    break;
                }
                if work.iter().any(|w| w.0 == id) {
                    continue;
                }
                let s = self.seq(id)?;
                let pending = s.tokens.len() - s.computed;
                let n = if pending == 0 && s.last_hidden.is_none() {
                    // Nothing pending but no hidden state (e.g. after add of a fully cached prompt
                    // cannot happen; kept for safety): recompute the last token.
                    return Err(Error::Internal(format!(
                        "sequence {} has no hidden state",
                        id.0
                    )));
                } else {
                    pending.min(budget)
                };
                if n == 0 {
                    continue;
                }
                let start = s.computed;
                self.prepare_blocks(id, n)?;
                budget -= n;
                work.push((id, start, n));
            }
            if work.is_empty() {
                return Ok(());
            }
            let StepBuffers { tokens, hidden, .. } = &mut self.bufs;
            tokens.clear();
            for &(id, start, n) in &work {
                tokens.extend_from_slice(&self.seqs[&id].tokens[start..start + n]);
            }
            let t0 = Instant::now();
            {
                let chunks: Vec<SeqChunk> = work
                    .iter()
                    .map(|&(id, start, len)| SeqChunk {
                        table: &self.seqs[&id].table,
                        start,
                        len,
                    })
                    .collect();
                self.lm
                    .model
                    .forward_batch_into(tokens, &chunks, &mut self.kv, hidden)?;
            }
            self.stats.forward_seconds += t0.elapsed().as_secs_f64();
            self.stats.forward_passes += 1;
            self.stats.tokens_computed += tokens.len() as u64;
            let h = self.lm.model.config.hidden_size;
            let bs = self.cfg.block_size;
            let mut row = 0;
            for &(id, start, n) in &work {
                let s = self.seqs.get_mut(&id).expect("sequence in work list");
                s.computed = start + n;
                row += n;
                if s.computed == s.tokens.len() {
                    s.last_hidden = Some(Arc::new(hidden[(row - 1) * h..row * h].to_vec()));
                }
                // Newly completed full blocks become reusable.
                for bi in start / bs..s.computed / bs {
                    let parent = if bi == 0 { None } else { Some(s.table[bi - 1]) };
                    self.blocks
                        .register(parent, &s.tokens[bi * bs..(bi + 1) * bs], s.table[bi]);
                }
            }
        }
    }

    /// Final-norm hidden state at the last token of each sequence (computing what is pending).
    pub fn last_hidden(&mut self, ids: &[SeqId]) -> Result<Vec<Arc<Vec<f32>>>> {
        self.compute(ids)?;
        ids.iter()
            .map(|&id| hidden_of(&self.seqs, id).cloned())
            .collect()
    }

    /// Next-token logits `[vocab]` of each sequence (computing what is pending), in one LM-head pass.
    pub fn logits(&mut self, ids: &[SeqId]) -> Result<Vec<Vec<f32>>> {
        self.logits_rows(ids)?;
        let v = self.lm.model.config.vocab_size;
        Ok(self.bufs.logits.chunks(v).map(<[f32]>::to_vec).collect())
    }

    /// [`Engine::logits`] as one row-major `[ids.len(), vocab]` buffer, in `self.bufs.logits`.
    fn logits_rows(&mut self, ids: &[SeqId]) -> Result<()> {
        self.compute(ids)?;
        let StepBuffers { rows, logits, .. } = &mut self.bufs;
        rows.clear();
        for &id in ids {
            rows.extend_from_slice(hidden_of(&self.seqs, id)?);
        }
        self.lm.model.logits_into(rows, logits)
    }

    /// The next token of each sequence in `ids` that has `Some` sampling settings, drawn on the
    /// model's CUDA device from its last hidden state (LM head and sampler there; only ids come
    /// back).
    fn sample_on_device(
        &mut self,
        ids: &[SeqId],
        params: &[Option<crate::backend::cuda::ops::SampleParams>],
    ) -> Result<Vec<Option<u32>>> {
        self.compute(ids)?;
        let t0 = Instant::now();
        let StepBuffers { rows, .. } = &mut self.bufs;
        rows.clear();
        let mut drawn = Vec::new();
        for (&id, p) in ids.iter().zip(params) {
            if let Some(p) = p {
                rows.extend_from_slice(hidden_of(&self.seqs, id)?);
                drawn.push(*p);
            }
        }
        let got = self
            .lm
            .model
            .sample_on_device(rows, &drawn)?
            .ok_or_else(|| Error::Internal("device sampling on a CPU model".into()))?;
        let mut got = got.into_iter();
        let picks = params.iter().map(|p| p.and_then(|_| got.next())).collect();
        self.stats.sample_seconds += t0.elapsed().as_secs_f64();
        Ok(picks)
    }

    /// Generates for every request, `max_active` at a time (continuous batching: a finished
    /// sequence leaves and a waiting one joins at once). Each request's sequence is extended in place
    /// with the generated ids. `on_text(request_index, text)` streams final text; returning false
    /// cancels everything with [`Error::Cancelled`]. Outputs come in request order.
    pub fn run(
        &mut self,
        requests: &[Request],
        on_text: &mut dyn FnMut(usize, &str) -> bool,
    ) -> Result<Vec<GenerateOutput>> {
        let lm = self.lm.clone();
        let tok = lm.tokenizer.as_ref();
        self.check_requests(requests, tok.is_some())?;
        let mut queue: VecDeque<usize> = (0..requests.len()).collect();
        let mut active: Vec<Active> = Vec::new();
        let mut outputs: Vec<Option<GenerateOutput>> = vec![None; requests.len()];
        loop {
            self.admit(requests, tok, &mut queue, &mut active)?;
            if active.is_empty() {
                break;
            }
            let picks = self.draw(requests, &mut active)?;
            let finished = self.advance(requests, &mut active, &picks, on_text)?;
            for &(k, f) in finished.iter().rev() {
                let a = active.swap_remove(k);
                let idx = a.idx;
                outputs[idx] = Some(a.finish(f));
            }
        }
        outputs
            .into_iter()
            .map(|o| o.ok_or_else(|| Error::Internal("request without output".into())))
            .collect()
    }

    /// Validation of [`Engine::run`]'s requests before any work: sampling settings, stop strings
    /// (non-empty, and a tokenizer to match them), known and distinct sequences.
    fn check_requests(&self, requests: &[Request], has_tokenizer: bool) -> Result<()> {
        for r in requests {
            r.params.sampling.validate()?;
            if r.params.stop.iter().any(String::is_empty) {
                return Err(Error::InvalidArgument("empty stop string".into()));
            }
            if !r.params.stop.is_empty() && !has_tokenizer {
                return Err(Error::InvalidArgument(
                    "stop strings need a tokenizer (tokenizer.json) in the model directory".into(),
                ));
            }
            self.seq(r.seq)?;
        }
        if requests
            .iter()
            .enumerate()
            .any(|(i, r)| requests[..i].iter().any(|q| q.seq == r.seq))
        {
            return Err(Error::InvalidArgument(
                "two requests for the same sequence".into(),
            ));
        }
        Ok(())
    }

    /// Admission: waiting requests join `active` up to `max_active`; a prompt that already fills
    /// the model's context is refused.
    fn admit<'t>(
        &self,
        requests: &'t [Request],
        tok: Option<&'t crate::tokenizer::Tokenizer>,
        queue: &mut VecDeque<usize>,
        active: &mut Vec<Active<'t>>,
    ) -> Result<()> {
        let max_ctx = self.lm.model.config.max_position_embeddings;
        while active.len() < self.cfg.max_active {
            let Some(i) = queue.pop_front() else { break };
            let r = &requests[i];
            let len = self.seq(r.seq)?.tokens.len();
            if len >= max_ctx {
                return Err(Error::InvalidArgument(format!(
                    "prompt has {len} tokens; the model's context is {max_ctx}"
                )));
            }
            active.push(Active {
                idx: i,
                sampler: Sampler::new(r.params.sampling),
                text: TextTracker::new(tok, &r.params.stop),
                ids: Vec::new(),
                prompt_tokens: len,
                budget: r.params.max_new_tokens.min(max_ctx - len),
                t_first: None,
                prefill_seconds: 0.0,
                t_start: Instant::now(),
            });
        }
        Ok(())
    }

    /// The next token of every active request that still has budget (`None` for the others):
    /// drawn on the model's CUDA device, or from the CPU logits by each request's sampler.
    fn draw(&mut self, requests: &[Request], active: &mut [Active]) -> Result<Vec<Option<u32>>> {
        let ids: Vec<SeqId> = active.iter().map(|a| requests[a.idx].seq).collect();
        // `Some(counter)` for each sequence that draws a token this step.
        let draws: Vec<Option<u64>> = active
            .iter()
            .map(|a| (a.ids.len() < a.budget).then_some(a.ids.len() as u64))
            .collect();
        if draws.iter().all(Option::is_none) {
            return Ok(vec![None; active.len()]);
        }
        if self.lm.model.cuda().is_some() {
            let params: Vec<_> = active
                .iter()
                .zip(&draws)
                .map(|(a, d)| d.map(|c| requests[a.idx].params.sampling.on_device(c)))
                .collect();
            return self.sample_on_device(&ids, &params);
        }
        self.logits_rows(&ids)?;
        let logits = &self.bufs.logits;
        let t0 = Instant::now();
        // Sequences sample independently (each has its own RNG stream): in parallel.
        let vocab = self.lm.model.config.vocab_size;
        let mut slots: Vec<_> = active.iter_mut().zip(&draws).map(|s| (s, None)).collect();
        crate::backend::cpu::par_chunks_mut(&mut slots, 1, |k, s| {
            let ((a, d), pick) = &mut s[0];
            *pick = d.map(|_| a.sampler.sample(&logits[k * vocab..(k + 1) * vocab]));
        });
        let picks = slots.into_iter().map(|(_, p)| p).collect();
        self.stats.sample_seconds += t0.elapsed().as_secs_f64();
        Ok(picks)
    }

    /// Appends each pick to its request's sequence, streams the text that became final and
    /// returns the requests that finished, with why (in `active` order).
    fn advance(
        &mut self,
        requests: &[Request],
        active: &mut [Active],
        picks: &[Option<u32>],
        on_text: &mut dyn FnMut(usize, &str) -> bool,
    ) -> Result<Vec<(usize, FinishReason)>> {
        let t0 = Instant::now();
        let mut finished = Vec::new();
        for (k, a) in active.iter_mut().enumerate() {
            let finish = match picks[k] {
                Some(id) => self.accept(&requests[a.idx], a, id)?,
                None => Some(FinishReason::Length),
            };
            if let Some(ready) = a.text.take_ready(finish.is_some()) {
                if !on_text(a.idx, ready) {
                    return Err(Error::Cancelled);
                }
            }
            if let Some(f) = finish {
                finished.push((k, f));
            }
        }
        self.stats.sample_seconds += t0.elapsed().as_secs_f64();
        Ok(finished)
    }

    /// Stop detection for one drawn id: appends it to the request's output and sequence and says
    /// whether generation ends there (stop id, EOS, stop string, budget).
    fn accept(&mut self, r: &Request, a: &mut Active, id: u32) -> Result<Option<FinishReason>> {
        if a.t_first.is_none() {
            a.prefill_seconds = a.t_start.elapsed().as_secs_f64();
            a.t_first = Some(Instant::now());
        }
        a.ids.push(id);
        // A stop or EOS id ends generation and is kept in `ids`, not in the text.
        let finish = if r.params.stop_token_ids.contains(&id) {
            Some(FinishReason::Stop)
        } else if !r.params.ignore_eos && self.lm.eos_token_ids.contains(&id) {
            Some(FinishReason::Eos)
        } else if a.text.push(id)? {
            Some(FinishReason::Stop)
        } else if a.ids.len() == a.budget {
            Some(FinishReason::Length)
        } else {
            None
        };
        // The sequence keeps every generated id (MCTS continues from it).
        let s = self.seqs.get_mut(&r.seq).expect("validated sequence");
        s.tokens.push(id);
        s.last_hidden = None;
        self.stats.tokens_requested += 1;
        Ok(finish)
    }

    /// Samples `n` continuations of `parent`, each in its own forked sequence (child `i` samples
    /// with seed `params.sampling.seed + i`), all decoded together. The children stay alive:
    /// remove them when done.
    pub fn expand(
        &mut self,
        parent: SeqId,
        n: usize,
        params: &GenerateParams,
    ) -> Result<Vec<Candidate>> {
        self.compute(&[parent])?;
        let mut requests = Vec::with_capacity(n);
        for i in 0..n {
            let seq = self.fork(parent)?;
            let mut p = params.clone();
            p.sampling.seed = params.sampling.seed.wrapping_add(i as u64);
            requests.push(Request { seq, params: p });
        }
        let outs = self.run(&requests, &mut |_, _| true)?;
        Ok(requests
            .into_iter()
            .zip(outs)
            .map(|(r, output)| Candidate { seq: r.seq, output })
            .collect())
    }
}

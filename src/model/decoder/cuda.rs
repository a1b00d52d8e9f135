//! The decoder's forward pass on a CUDA device: the same pre-norm block as the CPU decoder
//! (`decoder/cpu.rs`), built from the same [`Model`] layers (loaded by the one layer layout), with weights kept in their stored dtype on the device, f32 activations and
//! residual stream, f32 K/V in the paged store, and matmuls on the GEMV kernels (up to 8 rows) or a
//! tensor-core GEMM over bf16-rounded activations (more rows, bf16 weights).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::CudaSlice;

use super::{Linear, Model, SeqChunk};
use crate::backend::cuda::ops::{self, DevMatrix, GemmTuner, Heads, Ptr};
use crate::backend::cuda::{DevKv, Gpu};
use crate::backend::DType;
use crate::error::{Error, Result};
use crate::model::ModelConfig;

/// A linear layer on the device.
#[derive(Debug)]
struct DevLinear {
    parts: Vec<DevMatrix>,
    bias: Option<CudaSlice<f32>>,
    out_dim: usize,
}

#[derive(Debug)]
struct DevLayer {
    attn_norm: CudaSlice<f32>,
    mlp_norm: CudaSlice<f32>,
    qkv: DevLinear,
    o: DevLinear,
    gate_up: DevLinear,
    down: DevLinear,
}

/// Activation buffers, grown to the largest batch seen and reused.
#[derive(Debug)]
struct Scratch {
    cap: usize,
    x: CudaSlice<f32>,
    normed: CudaSlice<f32>,
    qkv: CudaSlice<f32>,
    q: CudaSlice<f32>,
    attn: CudaSlice<f32>,
    proj: CudaSlice<f32>,
    gu: CudaSlice<f32>,
    act: CudaSlice<f32>,
    /// Split-attention partials (grow-only).
    part: CudaSlice<f32>,
    /// Index arrays of the batch (grow-only).
    idx: CudaSlice<u32>,
}

/// Where the index arrays of a batch sit in the scratch `idx` buffer, at fixed multiples of the
/// scratch capacity (so that a captured graph stays valid): ids | pos | rows (cap each) |
/// tiles (4 cap) | table offsets (cap) | block tables.
#[derive(Debug, Clone, Copy)]
struct IdxOffsets {
    ids: usize,
    pos: usize,
    rows: usize,
    tiles: usize,
    table_off: usize,
    tables: usize,
}

impl IdxOffsets {
    fn new(cap: usize) -> IdxOffsets {
        IdxOffsets {
            ids: 0,
            pos: cap,
            rows: 2 * cap,
            tiles: 3 * cap,
            table_off: 7 * cap,
            tables: 8 * cap,
        }
    }
}

/// The batch's host-side index arrays laid out as [`IdxOffsets`] says: token ids, positions, K/V
/// rows, attention tiles, each chunk's offset into the block tables, and the tables.
fn index_arrays(
    tokens: &[u32],
    chunks: &[SeqChunk],
    block_size: usize,
    tiles: &[ops::Tile],
    off: IdxOffsets,
) -> Vec<u32> {
    let t = tokens.len();
    let mut pos = Vec::with_capacity(t);
    let mut rows = Vec::with_capacity(t);
    let mut tables = Vec::new();
    let mut table_off = Vec::with_capacity(chunks.len());
    for ch in chunks {
        table_off.push(tables.len() as u32);
        let blocks = (ch.start + ch.len).div_ceil(block_size);
        tables.extend_from_slice(&ch.table[..blocks]);
        for p in ch.start..ch.start + ch.len {
            pos.push(p as u32);
            rows.push((ch.table[p / block_size] as usize * block_size + p % block_size) as u32);
        }
    }
    let mut idx = vec![0u32; off.tables + tables.len()];
    idx[off.ids..off.ids + t].copy_from_slice(tokens);
    idx[off.pos..off.pos + t].copy_from_slice(&pos);
    idx[off.rows..off.rows + t].copy_from_slice(&rows);
    let tw: &[u32] = bytemuck::cast_slice(tiles);
    idx[off.tiles..off.tiles + tw.len()].copy_from_slice(tw);
    idx[off.table_off..off.table_off + table_off.len()].copy_from_slice(&table_off);
    idx[off.tables..].copy_from_slice(&tables);
    idx
}

/// Device addresses of one forward pass: the index arrays and the activation buffers.
#[derive(Debug, Clone, Copy)]
struct PassPtrs {
    ids: Ptr,
    pos: Ptr,
    rows: Ptr,
    tiles: Ptr,
    table_off: Ptr,
    tables: Ptr,
    part: Ptr,
    x: Ptr,
    normed: Ptr,
    qkv: Ptr,
    q: Ptr,
    attn: Ptr,
    proj: Ptr,
    gu: Ptr,
    act: Ptr,
}

impl PassPtrs {
    fn new(g: &Gpu, s: &Scratch, off: IdxOffsets) -> PassPtrs {
        let at = |o: usize| ops::ptr(g, &s.idx, o);
        let sp = |b: &CudaSlice<f32>| ops::ptr(g, b, 0);
        PassPtrs {
            ids: at(off.ids),
            pos: at(off.pos),
            rows: at(off.rows),
            tiles: at(off.tiles),
            table_off: at(off.table_off),
            tables: at(off.tables),
            part: sp(&s.part),
            x: sp(&s.x),
            normed: sp(&s.normed),
            qkv: sp(&s.qkv),
            q: sp(&s.q),
            attn: sp(&s.attn),
            proj: sp(&s.proj),
            gu: sp(&s.gu),
            act: sp(&s.act),
        }
    }
}

/// One forward pass's shape and addresses.
#[derive(Debug, Clone, Copy)]
struct Pass {
    t: usize,
    block_size: usize,
    n_tiles: usize,
    splits: usize,
    heads: Heads,
    p: PassPtrs,
}

/// The device sampler's buffers (grow-only, reused every step): the rows sampled from, their
/// logits, the sampler's scratch, the per-row settings (as 32-bit words) and the ids.
#[derive(Debug)]
struct SampleBufs {
    rows: usize,
    x: CudaSlice<f32>,
    logits: CudaSlice<f32>,
    scratch: CudaSlice<f32>,
    params: CudaSlice<u32>,
    ids: CudaSlice<u32>,
}

/// Where the rows to sample from are: rows (by index) of a device buffer `[_, hidden]`, or
/// `[n, hidden]` on the host.
enum Rows<'a> {
    Device(&'a CudaSlice<f32>, &'a [usize]),
    Host(&'a [f32]),
}

/// What a captured forward pass depends on besides buffer addresses (tracked by the generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct GraphKey {
    t: usize,
    tiles: usize,
    splits: usize,
    /// Address of the K/V store (it moves when the store grows).
    kv: u64,
    exact: bool,
}

/// A CUDA graph that may move between threads.
struct SendGraph(cudarc::driver::CudaGraph);

// SAFETY: a graph exec is launched only while the model's graph mutex is held, on the model's own
// stream; CUDA allows launching a graph exec from any host thread.
unsafe impl Send for SendGraph {}

impl std::fmt::Debug for SendGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CudaGraph")
    }
}

#[derive(Debug)]
enum GraphState {
    /// Run eagerly once at this generation.
    Seen(u64),
    /// Captured at this generation.
    Ready(SendGraph, u64),
    /// Capture failed; always eager.
    Failed,
}

/// Largest number of rows the GEMV kernels take in one launch; more rows go to the GEMM.
const GEMV_MAX_ROWS: usize = 8;

/// The model's weights on a CUDA device and the forward pass over them.
#[derive(Debug)]
pub struct CudaModel {
    gpu: Arc<Gpu>,
    cfg: ModelConfig,
    embed: DevMatrix,
    layers: Vec<DevLayer>,
    final_norm: CudaSlice<f32>,
    /// None: tied to `embed`, or no head (`has_head` false).
    lm_head: Option<DevMatrix>,
    has_head: bool,
    inv_freq: CudaSlice<f32>,
    half: usize,
    tuner: GemmTuner,
    scratch: Mutex<Option<Scratch>>,
    sample_bufs: Mutex<Option<SampleBufs>>,
    /// GEMM inputs as bf16 rows, and the stacked-halves product of the exact mode (grow-only).
    gemm_bufs: Mutex<(CudaSlice<u16>, CudaSlice<f32>)>,
    /// Bumped whenever a buffer the forward pass uses is reallocated.
    generation: AtomicU64,
    graphs: Mutex<HashMap<GraphKey, GraphState>>,
    graphs_on: AtomicBool,
}

/// Where a matmul writes: `out[i, col0 + j]` with rows `ld` apart.
#[derive(Debug, Clone, Copy)]
struct Dst {
    out: Ptr,
    ld: usize,
    col0: usize,
}

impl Dst {
    /// Whole rows of width `n` from column 0.
    fn rows(out: Ptr, n: usize) -> Dst {
        Dst {
            out,
            ld: n,
            col0: 0,
        }
    }
}

/// The weights of a [`CudaModel`] on the device, before the buffers are added.
struct DevWeights {
    embed: DevMatrix,
    layers: Vec<DevLayer>,
    final_norm: CudaSlice<f32>,
    lm_head: Option<DevMatrix>,
    has_head: bool,
}

fn upload_linear(gpu: &Gpu, l: &Linear) -> Result<DevLinear> {
    Ok(DevLinear {
        parts: l
            .parts
            .iter()
            .map(|w| ops::upload_matrix(gpu, w))
            .collect::<Result<_>>()?,
        bias: l.bias.as_ref().map(|b| ops::upload(gpu, b)).transpose()?,
        out_dim: l.out_dim,
    })
}

impl CudaModel {
    /// Uploads `model`'s weights to `gpu`.
    pub fn new(model: &Model, gpu: Arc<Gpu>) -> Result<CudaModel> {
        let g = &gpu;
        let c = &model.config;
        ops::attn_supported(Heads {
            nh: c.num_heads,
            nkv: c.num_kv_heads,
            hd: c.head_dim,
        })?;
        let layers = model
            .layers
            .iter()
            .map(|l| {
                Ok(DevLayer {
                    attn_norm: ops::upload(g, &l.attn_norm)?,
                    mlp_norm: ops::upload(g, &l.mlp_norm)?,
                    qkv: upload_linear(g, &l.qkv)?,
                    o: upload_linear(g, &l.o)?,
                    gate_up: upload_linear(g, &l.gate_up)?,
                    down: upload_linear(g, &l.down)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let tied = model.config.tie_word_embeddings;
        let lm_head = match (&model.lm_head, tied) {
            (Some(w), false) => Some(ops::upload_matrix(g, w)?),
            _ => None,
        };
        let weights = DevWeights {
            embed: ops::upload_matrix(g, &model.embed)?,
            layers,
            final_norm: ops::upload(g, &model.final_norm)?,
            lm_head,
            has_head: model.lm_head.is_some(),
        };
        CudaModel::assemble(model.config.clone(), weights, &model.inv_freq, gpu)
    }

    /// The model around uploaded weights: the RoPE table and empty grow-only buffers.
    fn assemble(
        cfg: ModelConfig,
        w: DevWeights,
        inv_freq: &[f32],
        gpu: Arc<Gpu>,
    ) -> Result<CudaModel> {
        let g = &gpu;
        Ok(CudaModel {
            embed: w.embed,
            layers: w.layers,
            final_norm: w.final_norm,
            lm_head: w.lm_head,
            has_head: w.has_head,
            inv_freq: ops::upload(g, inv_freq)?,
            half: inv_freq.len(),
            cfg,
            tuner: GemmTuner::default(),
            scratch: Mutex::new(None),
            sample_bufs: Mutex::new(None),
            gemm_bufs: Mutex::new((ops::zeros(g, 1)?, ops::zeros(g, 1)?)),
            generation: AtomicU64::new(0),
            graphs: Mutex::new(HashMap::new()),
            graphs_on: AtomicBool::new(std::env::var("RSTAR_CUDA_GRAPHS").as_deref() != Ok("0")),
            gpu,
        })
    }

    /// A model of `cfg`'s shape with bf16 weights drawn on the device (uniform, scaled by
    /// 1/sqrt(fan-in)): benchmarks of large shapes without a checkpoint or a host copy.
    pub fn random(cfg: ModelConfig, gpu: Arc<Gpu>, seed: u64) -> Result<CudaModel> {
        let g = &gpu;
        let mut seed = seed;
        let mut mat = |n: usize, k: usize| -> Result<DevMatrix> {
            let buf = ops::zeros::<u8>(g, n * k * 2)?;
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            ops::fill_random_bf16(
                g,
                ops::ptr(g, &buf, 0),
                n * k,
                seed,
                1.0 / (k as f32).sqrt(),
            )?;
            Ok(DevMatrix {
                buf,
                dtype: DType::BF16,
                n,
                k,
            })
        };
        let (h, qd, kvd, inter) = (
            cfg.hidden_size,
            cfg.q_dim(),
            cfg.kv_dim(),
            cfg.intermediate_size,
        );
        let ones = vec![1f32; h];
        let mut layers = Vec::new();
        for _ in 0..cfg.num_layers {
            layers.push(DevLayer {
                attn_norm: ops::upload(g, &ones)?,
                mlp_norm: ops::upload(g, &ones)?,
                qkv: DevLinear {
                    parts: vec![mat(qd + 2 * kvd, h)?],
                    bias: None,
                    out_dim: qd + 2 * kvd,
                },
                o: DevLinear {
                    parts: vec![mat(h, qd)?],
                    bias: None,
                    out_dim: h,
                },
                gate_up: DevLinear {
                    parts: vec![mat(2 * inter, h)?],
                    bias: None,
                    out_dim: 2 * inter,
                },
                down: DevLinear {
                    parts: vec![mat(h, inter)?],
                    bias: None,
                    out_dim: h,
                },
            });
        }
        let embed = mat(cfg.vocab_size, h)?;
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(mat(cfg.vocab_size, h)?)
        };
        let inv_freq = cfg.rope_inv_freq();
        let weights = DevWeights {
            embed,
            layers,
            final_norm: ops::upload(g, &ones)?,
            lm_head,
            has_head: true,
        };
        CudaModel::assemble(cfg, weights, &inv_freq, gpu)
    }

    /// Turns CUDA-graph replay of repeated batch shapes on or off (default on unless
    /// `RSTAR_CUDA_GRAPHS=0`).
    pub fn set_graphs(&self, on: bool) {
        self.graphs_on.store(on, Ordering::Relaxed);
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Bytes of all weight matrices on the device (what one decode step streams).
    pub fn weight_bytes(&self) -> usize {
        let lin = |l: &DevLinear| {
            l.parts
                .iter()
                .map(|m| m.n * m.k * m.dtype.size())
                .sum::<usize>()
        };
        let layers: usize = self
            .layers
            .iter()
            .map(|l| lin(&l.qkv) + lin(&l.o) + lin(&l.gate_up) + lin(&l.down))
            .sum();
        let head = self.head().map_or(0, |m| m.n * m.k * m.dtype.size());
        layers + head
    }

    /// The GEMM implementation measured fastest per shape so far.
    pub fn gemm_choices(&self) -> Vec<((usize, usize, usize), ops::GemmImpl)> {
        self.tuner.choices()
    }

    fn head(&self) -> Result<&DevMatrix> {
        if !self.has_head {
            return Err(Error::InvalidArgument(
                "this model was loaded without an LM head (a reward model)".into(),
            ));
        }
        Ok(self.lm_head.as_ref().unwrap_or(&self.embed))
    }

    fn scratch(&self, t: usize) -> Result<std::sync::MutexGuard<'_, Option<Scratch>>> {
        let mut guard = self.scratch.lock().expect("scratch lock");
        if guard.as_ref().is_none_or(|s| s.cap < t) {
            self.generation.fetch_add(1, Ordering::Relaxed);
            let cap = t.next_power_of_two();
            let c = &self.cfg;
            let (h, qd, kvd, inter) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size);
            let g = &self.gpu;
            *guard = Some(Scratch {
                cap,
                x: ops::zeros(g, cap * h)?,
                normed: ops::zeros(g, cap * h)?,
                qkv: ops::zeros(g, cap * (qd + 2 * kvd))?,
                q: ops::zeros(g, cap * qd)?,
                attn: ops::zeros(g, cap * qd)?,
                proj: ops::zeros(g, cap * h)?,
                gu: ops::zeros(g, cap * 2 * inter)?,
                act: ops::zeros(g, cap * inter)?,
                part: ops::zeros(g, 1)?,
                idx: ops::zeros(g, 1)?,
            });
        }
        Ok(guard)
    }

    /// `out[t, out_dim] = x[t, in] @ W.T + b` on the device.
    fn linear(&self, l: &DevLinear, x: Ptr, t: usize, out: Ptr) -> Result<()> {
        let g = &*self.gpu;
        let mut col = 0;
        let mut converted = false;
        for w in &l.parts {
            let dst = Dst {
                out,
                ld: l.out_dim,
                col0: col,
            };
            self.matmul(w, x, t, dst, &mut converted)?;
            col += w.n;
        }
        if let Some(b) = &l.bias {
            ops::add_bias(g, out, ops::ptr(g, b, 0), l.out_dim, l.out_dim, t)?;
        }
        Ok(())
    }

    /// `out[i, col0 + j] = x[i] . w[j]` for `t` rows: the GEMV kernels (f32 activations) up to
    /// [`GEMV_MAX_ROWS`] rows or for non-bf16 weights, else the tuned tensor-core GEMM on bf16 copies
    /// of `x`. In [`Precision::Exact`] the rows are split into bf16 high and low halves, stacked as
    /// `2t` rows of one GEMM and summed (about f32 accuracy for bf16 weights); in `Fast` one bf16
    /// copy is used. `converted` says the bf16 rows of this `x` are already in the buffer (the parts
    /// of one linear layer share them).
    fn matmul(
        &self,
        w: &DevMatrix,
        x: Ptr,
        t: usize,
        dst: Dst,
        converted: &mut bool,
    ) -> Result<()> {
        let Dst { out, ld, col0 } = dst;
        let g = &*self.gpu;
        if t <= GEMV_MAX_ROWS || w.dtype != DType::BF16 || !w.k.is_multiple_of(8) {
            return ops::gemv(g, x, w, out, t, ld, col0);
        }
        let exact = crate::backend::cpu::precision() == crate::backend::cpu::Precision::Exact;
        let rows = if exact { 2 * t } else { t };
        let mut bufs = self.gemm_bufs.lock().expect("gemm buffers");
        if bufs.0.len() < rows * w.k {
            bufs.0 = ops::zeros(g, (rows * w.k).next_power_of_two())?;
            self.generation.fetch_add(1, Ordering::Relaxed);
            *converted = false;
        }
        if exact && bufs.1.len() < rows * w.n {
            bufs.1 = ops::zeros(g, (rows * w.n).next_power_of_two())?;
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
        let xb = ops::ptr(g, &bufs.0, 0);
        let wp = ops::ptr(g, &w.buf, 0);
        if !*converted {
            if exact {
                ops::to_bf16_split(g, x, xb, t * w.k)?;
            } else {
                ops::to_bf16(g, x, xb, t * w.k)?;
            }
            *converted = true;
        }
        if exact {
            let gs = ops::ptr(g, &bufs.1, 0);
            let gemm = ops::Gemm {
                a: xb,
                b: wp,
                c: gs,
                m: rows,
                n: w.n,
                k: w.k,
                ldc: w.n,
                col0: 0,
            };
            self.tuner.gemm(g, gemm)?;
            ops::add_halves(g, gs, out, t, w.n, ld, col0)
        } else {
            self.tuner
                .gemm(
                    g,
                    ops::Gemm {
                        a: xb,
                        b: wp,
                        c: out,
                        m: t,
                        n: w.n,
                        k: w.k,
                        ldc: ld,
                        col0,
                    },
                )
                .map(|_| ())
        }
    }

    /// Runs the batch and leaves the final-norm hidden states `[t, hidden]` in the scratch
    /// `normed` buffer; returns the guard holding it. The caller has checked the batch
    /// (`Model::check_batch`).
    fn forward_device(
        &self,
        tokens: &[u32],
        chunks: &[SeqChunk],
        kv: &mut DevKv,
        block_size: usize,
    ) -> Result<std::sync::MutexGuard<'_, Option<Scratch>>> {
        let g = &*self.gpu;
        let t = tokens.len();
        let heads = self.heads();
        let spans: Vec<(usize, usize)> = chunks.iter().map(|ch| (ch.start, ch.len)).collect();
        let (tiles, max_chunks) = ops::attn_tiles(&spans, heads);
        let splits = ops::attn_splits(g, tiles.len(), heads.nkv, max_chunks);
        let part_len = if splits > 1 {
            splits * t * (self.cfg.q_dim() + 2 * heads.nh)
        } else {
            1
        };
        let mut guard = self.scratch(t)?;
        let s = guard.as_mut().expect("scratch");
        let off = IdxOffsets::new(s.cap);
        let idx = index_arrays(tokens, chunks, block_size, &tiles, off);
        if s.idx.len() < idx.len() {
            s.idx = ops::zeros(g, idx.len().next_power_of_two())?;
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
        if s.part.len() < part_len {
            s.part = ops::zeros(g, part_len.next_power_of_two())?;
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
        g.stream
            .memcpy_htod(&idx, &mut s.idx.slice_mut(..idx.len()))
            .map_err(|e| Error::Device(format!("upload: {e:?}")))?;
        let pass = Pass {
            t,
            block_size,
            n_tiles: tiles.len(),
            splits,
            heads,
            p: PassPtrs::new(g, s, off),
        };
        let kv = &*kv;
        let run = || self.launch_pass(kv, &pass);
        let key = GraphKey {
            t,
            tiles: tiles.len(),
            splits,
            kv: kv.ptrs(0).0,
            exact: crate::backend::cpu::precision() == crate::backend::cpu::Precision::Exact,
        };
        self.run_graphed(key, &run)?;
        // The index arrays must outlive the queued kernels.
        g.sync()?;
        Ok(guard)
    }

    fn heads(&self) -> Heads {
        Heads {
            nh: self.cfg.num_heads,
            nkv: self.cfg.num_kv_heads,
            hd: self.cfg.head_dim,
        }
    }

    /// The launches of one forward pass: embedding, the layers, the final norm into `normed`.
    fn launch_pass(&self, kv: &DevKv, pass: &Pass) -> Result<()> {
        let g = &*self.gpu;
        let (c, p, t) = (&self.cfg, &pass.p, pass.t);
        let (h, eps) = (c.hidden_size, c.rms_norm_eps as f32);
        let sp = |b: &CudaSlice<f32>| ops::ptr(g, b, 0);
        let embed = ops::ptr(g, &self.embed.buf, 0);
        ops::embed(g, self.embed.dtype, embed, p.ids, p.x, t, h)?;
        // Each residual add is fused with the RMSNorm after it (the next layer's, or the final one).
        if let Some(first) = self.layers.first() {
            ops::rms_norm(g, p.x, sp(&first.attn_norm), eps, p.normed, t, h)?;
        }
        for (li, layer) in self.layers.iter().enumerate() {
            self.launch_layer(kv, pass, li, layer)?;
        }
        if self.layers.is_empty() {
            ops::rms_norm(g, p.x, sp(&self.final_norm), eps, p.normed, t, h)?;
        }
        Ok(())
    }

    /// Layer `li`'s launches: QKV, RoPE and the K/V store, attention, output projection and MLP,
    /// each residual add fused with the next RMSNorm.
    fn launch_layer(&self, kv: &DevKv, pass: &Pass, li: usize, layer: &DevLayer) -> Result<()> {
        let g = &*self.gpu;
        let (c, p, t) = (&self.cfg, &pass.p, pass.t);
        let (h, inter, eps) = (c.hidden_size, c.intermediate_size, c.rms_norm_eps as f32);
        let sp = |b: &CudaSlice<f32>| ops::ptr(g, b, 0);
        let (kst, vst) = kv.ptrs(li);
        self.linear(&layer.qkv, p.normed, t, p.qkv)?;
        let rope = ops::RopeStore {
            qkv: p.qkv,
            pos: p.pos,
            kv_row: p.rows,
            inv_freq: sp(&self.inv_freq),
            half: self.half,
            heads: pass.heads,
            q_out: p.q,
            k_store: kst,
            v_store: vst,
            t,
        };
        ops::rope_store_kv(g, rope)?;
        let attn = ops::PagedAttn {
            q: p.q,
            k_store: kst,
            v_store: vst,
            tiles: p.tiles,
            n_tiles: pass.n_tiles,
            tables: p.tables,
            table_off: p.table_off,
            heads: pass.heads,
            block_size: pass.block_size,
            window: c.sliding_window,
            splits: pass.splits,
            t,
            out: p.attn,
            part: p.part,
        };
        ops::attention(g, attn)?;
        self.linear(&layer.o, p.attn, t, p.proj)?;
        ops::add_rms_norm(g, p.x, p.proj, sp(&layer.mlp_norm), eps, p.normed, t, h)?;
        self.linear(&layer.gate_up, p.normed, t, p.gu)?;
        ops::silu_mul(g, p.gu, p.act, t, inter)?;
        self.linear(&layer.down, p.act, t, p.proj)?;
        let next_norm = self
            .layers
            .get(li + 1)
            .map_or(&self.final_norm, |l| &l.attn_norm);
        ops::add_rms_norm(g, p.x, p.proj, sp(next_norm), eps, p.normed, t, h)
    }

    /// Runs `run` (the launches of one forward pass) eagerly the first time a shape is seen,
    /// captures it into a CUDA graph the second time and replays the graph from then on: one
    /// launch instead of hundreds per decode step. A graph is dropped when any buffer it points at
    /// was reallocated since (the generation counter). `RSTAR_CUDA_GRAPHS=0` turns graphs off.
    fn run_graphed(&self, key: GraphKey, run: &dyn Fn() -> Result<()>) -> Result<()> {
        use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
        if !self.graphs_on.load(Ordering::Relaxed) {
            return run();
        }
        let stream = &self.gpu.stream;
        let mut graphs = self.graphs.lock().expect("graph lock");
        let gen = self.generation.load(Ordering::Relaxed);
        match graphs.get(&key) {
            Some(GraphState::Ready(graph, g0)) if *g0 == gen => {
                return graph
                    .0
                    .launch()
                    .map_err(|e| Error::Device(format!("graph launch: {e:?}")));
            }
            Some(GraphState::Failed) => return run(),
            Some(GraphState::Seen(g0)) if *g0 == gen => {
                if stream
                    .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
                    .is_err()
                {
                    graphs.insert(key, GraphState::Failed);
                    return run();
                }
                let ran = run();
                let captured = stream.end_capture(CUgraphInstantiate_flags(0));
                match (ran, captured) {
                    (Ok(()), Ok(Some(graph))) => {
                        graph
                            .launch()
                            .map_err(|e| Error::Device(format!("graph launch: {e:?}")))?;
                        graphs.insert(key, GraphState::Ready(SendGraph(graph), gen));
                        return Ok(());
                    }
                    _ => {
                        // Not capturable (a library call refused): run this shape eagerly.
                        graphs.insert(key, GraphState::Failed);
                        return run();
                    }
                }
            }
            _ => {}
        }
        run()?;
        if graphs.len() > 256 {
            graphs.clear();
        }
        graphs.insert(
            key,
            GraphState::Seen(self.generation.load(Ordering::Relaxed)),
        );
        Ok(())
    }

    /// [`Model::forward_batch`](crate::model::Model::forward_batch) on the device: final-norm
    /// hidden states `[t, hidden]` on the host.
    pub fn forward_batch(
        &self,
        tokens: &[u32],
        chunks: &[SeqChunk],
        block_size: usize,
        kv: &mut DevKv,
    ) -> Result<Vec<f32>> {
        let t = tokens.len();
        let h = self.cfg.hidden_size;
        let guard = self.forward_device(tokens, chunks, kv, block_size)?;
        let s = guard.as_ref().expect("scratch");
        let mut out = vec![0f32; t * h];
        self.gpu
            .stream
            .memcpy_dtoh(&s.normed.slice(..t * h), &mut out)
            .map_err(|e| Error::Device(format!("download: {e:?}")))?;
        Ok(out)
    }

    /// Runs the batch and picks the next token of every chunk on the device (LM head on each
    /// chunk's last row, then [`ops::sample`] with `params[i]` for chunk `i`); only the ids come
    /// back to the host.
    pub fn forward_sample(
        &self,
        tokens: &[u32],
        chunks: &[SeqChunk],
        block_size: usize,
        kv: &mut DevKv,
        params: &[ops::SampleParams],
    ) -> Result<Vec<u32>> {
        if params.len() != chunks.len() {
            return Err(Error::InvalidArgument(
                "one sampling setting per sequence".into(),
            ));
        }
        let guard = self.forward_device(tokens, chunks, kv, block_size)?;
        let s = guard.as_ref().expect("scratch");
        let mut ends = Vec::with_capacity(chunks.len());
        let mut end = 0;
        for ch in chunks {
            end += ch.len;
            ends.push(end - 1);
        }
        let ids = self.sample_rows(Rows::Device(&s.normed, &ends), params)?;
        drop(guard);
        Ok(ids)
    }

    /// Picks the next token after each of `n` final-norm hidden rows given on the host (row `i`
    /// with `params[i]`): the LM head and [`ops::sample`] run on the device, and only the ids come
    /// back. The tree engine's step on a CUDA model.
    pub fn sample_hidden(&self, hidden: &[f32], params: &[ops::SampleParams]) -> Result<Vec<u32>> {
        let h = self.cfg.hidden_size;
        if hidden.len() != params.len() * h {
            return Err(Error::InvalidArgument(
                "one sampling setting per hidden row".into(),
            ));
        }
        if params.is_empty() {
            return Ok(Vec::new());
        }
        self.sample_rows(Rows::Host(hidden), params)
    }

    /// LM head over the rows, then one sampled id per row (`params[i]` for row `i`), in the
    /// sampler's grow-only buffers: no device allocation per step once the largest batch was seen.
    fn sample_rows(&self, rows: Rows<'_>, params: &[ops::SampleParams]) -> Result<Vec<u32>> {
        let head = self.head()?;
        let g = &*self.gpu;
        let h = self.cfg.hidden_size;
        let n = params.len();
        let words = std::mem::size_of::<ops::SampleParams>() / 4;
        let dev = |e| Error::Device(format!("sampler copy: {e:?}"));
        let mut guard = self.sample_bufs.lock().expect("sampler buffers");
        if guard.as_ref().is_none_or(|b| b.rows < n) {
            let cap = n.next_power_of_two();
            *guard = Some(SampleBufs {
                rows: cap,
                x: ops::zeros(g, cap * h)?,
                logits: ops::zeros(g, cap * head.n)?,
                scratch: ops::zeros(g, cap * head.n)?,
                params: ops::zeros(g, cap * words)?,
                ids: ops::zeros(g, cap)?,
            });
        }
        let b = guard.as_mut().expect("sampler buffers");
        match rows {
            Rows::Device(src, idx) => {
                for (i, &r) in idx.iter().enumerate() {
                    g.stream
                        .memcpy_dtod(
                            &src.slice(r * h..(r + 1) * h),
                            &mut b.x.slice_mut(i * h..(i + 1) * h),
                        )
                        .map_err(dev)?;
                }
            }
            Rows::Host(x) => g
                .stream
                .memcpy_htod(x, &mut b.x.slice_mut(..n * h))
                .map_err(dev)?,
        }
        g.stream
            .memcpy_htod(
                bytemuck::cast_slice::<_, u32>(params),
                &mut b.params.slice_mut(..n * words),
            )
            .map_err(dev)?;
        let logits = ops::ptr(g, &b.logits, 0);
        self.matmul(
            head,
            ops::ptr(g, &b.x, 0),
            n,
            Dst::rows(logits, head.n),
            &mut false,
        )?;
        ops::sample(
            g,
            logits,
            ops::ptr(g, &b.params, 0),
            head.n,
            ops::ptr(g, &b.scratch, 0),
            ops::ptr(g, &b.ids, 0),
            n,
        )?;
        let mut out = vec![0u32; n];
        g.stream
            .memcpy_dtoh(&b.ids.slice(..n), &mut out)
            .map_err(dev)?;
        Ok(out)
    }

    /// LM head over `n` device rows at `x` -> device logits `[n, vocab]`.
    fn head_logits(&self, x: Ptr, n: usize) -> Result<CudaSlice<f32>> {
        let head = self.head()?;
        let g = &*self.gpu;
        let out = ops::zeros::<f32>(g, n * head.n)?;
        self.matmul(
            head,
            x,
            n,
            Dst::rows(ops::ptr(g, &out, 0), head.n),
            &mut false,
        )?;
        Ok(out)
    }

    /// LM head over host hidden rows -> host logits `[n, vocab]`.
    pub fn logits(&self, hidden: &[f32]) -> Result<Vec<f32>> {
        let head = self.head()?;
        let h = self.cfg.hidden_size;
        let n = hidden.len() / h;
        let g = &*self.gpu;
        let x = ops::upload(g, hidden)?;
        let out = self.head_logits(ops::ptr(g, &x, 0), n)?;
        let mut v = ops::download(g, &out)?;
        v.truncate(n * head.n);
        Ok(v)
    }
}

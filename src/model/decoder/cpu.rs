//! The decoder's forward pass on the CPU: the pre-norm blocks of [`Model`] over the SIMD kernels of
//! [`crate::backend::cpu`], with activations in a per-thread workspace that only grows.

use super::{Model, SeqChunk};
use crate::backend::cpu;
use crate::error::Result;
use crate::model::kv::KvStore;

/// The CPU forward pass's buffers (see [`Model::forward_batch_into`]), per thread.
#[derive(Default)]
struct Workspace {
    /// KV row of every token.
    rows: Vec<usize>,
    /// RoPE `(sin, cos)` of every token's position, `inv_freq.len()` each.
    angles: Vec<(f32, f32)>,
    x: Vec<f32>,
    qkv: Vec<f32>,
    attn: Vec<f32>,
    proj: Vec<f32>,
    gate_up: Vec<f32>,
    act: Vec<f32>,
    q: Vec<f32>,
    normed: Vec<f32>,
}

thread_local! {
    static WORKSPACE: std::cell::RefCell<Workspace> = std::cell::RefCell::new(Workspace::default());
}

/// `len` elements of `buf` from a 64-byte boundary, `buf` grown (never shrunk) to hold them.
fn grown(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    cpu::aligned(buf, len, 1)
}

impl Model {
    /// [`Model::forward_batch_into`] on the CPU (the batch already checked).
    pub(super) fn forward_cpu(
        &self,
        tokens: &[u32],
        chunks: &[SeqChunk],
        kv: &mut KvStore,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        cpu::with_scratch(&WORKSPACE, |ws| {
            self.forward_cpu_in(tokens, chunks, kv, ws, out)
        })
    }

    fn forward_cpu_in(
        &self,
        tokens: &[u32],
        chunks: &[SeqChunk],
        kv: &mut KvStore,
        ws: &mut Workspace,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let c = &self.config;
        let t = tokens.len();
        let (h, qd, kvd, inter) = (c.hidden_size, c.q_dim(), c.kv_dim(), c.intermediate_size);
        // Position and KV row of every token.
        ws.rows.clear();
        ws.angles.clear();
        let half = self.inv_freq.len();
        for ch in chunks {
            for p in ch.start..ch.start + ch.len {
                ws.rows.push(kv.row(ch.table, p));
                let at = ws.angles.len();
                ws.angles.resize(at + half, (0.0, 0.0));
                cpu::rope_angles(&self.inv_freq, p, &mut ws.angles[at..]);
            }
        }
        let eps = c.rms_norm_eps as f32;
        let block_size = kv.block_size;
        let host = kv.host_mut()?;
        let Workspace {
            rows,
            angles,
            x,
            qkv,
            attn,
            proj,
            gate_up,
            act,
            q,
            normed,
        } = ws;
        // Activations, row-major [t, width]; every element is written before it is read.
        let x = grown(x, t * h);
        for (row, &id) in x.chunks_exact_mut(h).zip(tokens) {
            self.embed.row_to_f32(id as usize, row);
        }
        let normed = grown(normed, t * h);
        let qkv = grown(qkv, t * (qd + 2 * kvd));
        let attn = grown(attn, t * qd);
        let proj = grown(proj, t * h);
        let gate_up = grown(gate_up, t * 2 * inter);
        let act = grown(act, t * inter);
        let q = grown(q, t * qd);
        let shape = cpu::AttnShape {
            n_heads: c.num_heads,
            n_kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
            block_size,
            window: c.sliding_window,
        };

        for (li, layer) in self.layers.iter().enumerate() {
            cpu::rms_norm(x, &layer.attn_norm, eps, normed);
            layer.qkv.forward(normed, t, qkv);
            for (ti, row) in qkv.chunks_exact_mut(qd + 2 * kvd).enumerate() {
                let (qr, rest) = row.split_at_mut(qd);
                let (kr, vr) = rest.split_at_mut(kvd);
                let sc = &angles[ti * half..(ti + 1) * half];
                cpu::rope_rotate(qr, c.num_heads, c.head_dim, sc);
                cpu::rope_rotate(kr, c.num_kv_heads, c.head_dim, sc);
                q[ti * qd..(ti + 1) * qd].copy_from_slice(qr);
                host.write(li, rows[ti], kr, vr);
            }
            let (kl, vl) = host.layer(li);
            cpu::attention_kv(q, kl, vl, chunks, shape, attn);
            layer.o.forward(attn, t, proj);
            cpu::for_rows(x, h, proj, h, cpu::add_inplace);

            cpu::rms_norm(x, &layer.mlp_norm, eps, normed);
            layer.gate_up.forward(normed, t, gate_up);
            cpu::for_rows(act, inter, gate_up, 2 * inter, |a, row| {
                let (g, u) = row.split_at(inter);
                a.copy_from_slice(g);
                cpu::silu_mul(a, u);
            });
            layer.down.forward(act, t, proj);
            cpu::for_rows(x, h, proj, h, cpu::add_inplace);
        }
        // The final norm writes straight into `out` (its length set without touching its capacity
        // once it has held a batch of this size).
        out.resize(t * h, 0.0);
        cpu::rms_norm(x, &self.final_norm, eps, out);
        Ok(())
    }
}

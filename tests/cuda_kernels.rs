//! CUDA backend. Without a GPU: every kernel file compiles with NVRTC to real sm_80 and sm_90
//! machine code with no register spills (CI installs NVRTC from PyPI; `RSTAR_REQUIRE_NVRTC=1` turns
//! a missing NVRTC into a failure). With a GPU (`scripts/gpu-check.sh`, `RSTAR_REQUIRE_GPU=1`):
//! each kernel against its CPU reference on random inputs, end-to-end logits of every fixture model
//! against the CPU backend, and the tree engine on the device against the CPU.

mod common;

use std::sync::Arc;

use cudarc::driver::CudaSlice;
use half::{bf16, f16};
use rstar::backend::cpu;
use rstar::backend::cuda::{self, ops, Gpu};
use rstar::backend::{Device, Weight};
use rstar::model::Model;

fn nvrtc_or_skip() -> bool {
    match cuda::ensure_nvrtc().and_then(|_| cuda::include_dirs()) {
        Ok(_) => true,
        Err(e) if std::env::var("RSTAR_REQUIRE_NVRTC").as_deref() == Ok("1") => {
            panic!("RSTAR_REQUIRE_NVRTC=1 but {e}")
        }
        Err(e) => {
            eprintln!("skipping: {e}");
            false
        }
    }
}

#[test]
fn every_kernel_compiles_for_sm80_and_sm90_without_spills() {
    if !nvrtc_or_skip() {
        return;
    }
    for (name, _) in cuda::SOURCES {
        for arch in ["sm_80", "sm_90"] {
            let c = cuda::compile(name, arch).unwrap_or_else(|e| panic!("{e}"));
            assert!(c.cubin.len() > 1000, "{name} {arch}: empty cubin");
            assert_eq!(&c.cubin[..4], b"\x7fELF", "{name} {arch}: not an ELF cubin");
            let spills = c.spills();
            assert!(
                spills.is_empty(),
                "{name} {arch} spills registers: {spills:?}"
            );
            if !c.log.contains("Used") {
                eprintln!("{name} {arch}: no ptxas report in NVRTC's log:\n{}", c.log);
            }
        }
    }
}

#[test]
fn cuda_device_errors_cleanly_without_a_gpu() {
    if std::env::var("RSTAR_REQUIRE_GPU").as_deref() == Ok("1") {
        return;
    }
    // On a machine without a driver this must be an error value, not a panic or an abort.
    let dir = common::fixtures().join("models/qwen2-f32-v5");
    let mut m = Model::load(&dir).unwrap();
    match m.to_device(Device::Cuda(0)) {
        Ok(()) => eprintln!("a CUDA device is present; nothing to check"),
        Err(e) => {
            assert_eq!(e.status(), rstar::Status::Device, "{e}");
            assert_eq!(m.device(), Device::Cpu);
        }
    }
    assert_eq!("cuda:1".parse::<Device>().unwrap(), Device::Cuda(1));
    assert!("gpu".parse::<Device>().is_err());
}

/// The GPU, or None (skip) when there is none and the run does not require one.
fn gpu() -> Option<Arc<Gpu>> {
    match Gpu::open(0) {
        Ok(g) => Some(g),
        Err(e) if std::env::var("RSTAR_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("RSTAR_REQUIRE_GPU=1 but {e}")
        }
        Err(e) => {
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn p<T>(g: &Gpu, s: &CudaSlice<T>) -> ops::Ptr {
    ops::ptr(g, s, 0)
}

fn down(g: &Gpu, s: &CudaSlice<f32>, n: usize) -> Vec<f32> {
    let mut v = ops::download(g, s).unwrap();
    v.truncate(n);
    v
}

#[test]
fn elementwise_kernels_match_cpu() {
    let Some(g) = gpu() else { return };
    let mut r = Rng(7);
    let (t, d) = (5, 300);
    let x = r.vec(t * d);
    let w = r.vec(d);
    let mut want = vec![0f32; t * d];
    cpu::rms_norm(&x, &w, 1e-6, &mut want);
    let (dx, dw, dout) = (
        ops::upload(&g, &x).unwrap(),
        ops::upload(&g, &w).unwrap(),
        ops::zeros::<f32>(&g, t * d).unwrap(),
    );
    ops::rms_norm(&g, p(&g, &dx), p(&g, &dw), 1e-6, p(&g, &dout), t, d).unwrap();
    let e = max_diff(&down(&g, &dout, t * d), &want);
    assert!(e < 1e-5, "rms_norm {e}");

    // silu_mul over [t, 2 * inter] rows.
    let inter = 77;
    let gu = r.vec(t * 2 * inter);
    let mut want = Vec::new();
    for row in gu.chunks(2 * inter) {
        let (mut a, b) = (row[..inter].to_vec(), &row[inter..]);
        cpu::silu_mul(&mut a, b);
        want.extend(a);
    }
    let dgu = ops::upload(&g, &gu).unwrap();
    let dact = ops::zeros::<f32>(&g, t * inter).unwrap();
    ops::silu_mul(&g, p(&g, &dgu), p(&g, &dact), t, inter).unwrap();
    let e = max_diff(&down(&g, &dact, t * inter), &want);
    assert!(e < 1e-5, "silu_mul {e}");

    // add, add_bias
    let y = r.vec(t * d);
    ops::add(&g, p(&g, &dx), p(&g, &ops::upload(&g, &y).unwrap()), t * d).unwrap();
    let mut want = x.clone();
    cpu::add_inplace(&mut want, &y);
    assert!(max_diff(&down(&g, &dx, t * d), &want) < 1e-6);
    ops::add_bias(&g, p(&g, &dx), p(&g, &dw), d, d, t).unwrap();
    for row in want.chunks_mut(d) {
        cpu::add_inplace(row, &w);
    }
    assert!(max_diff(&down(&g, &dx, t * d), &want) < 1e-6);

    // embedding gather in each dtype
    let (v, h) = (50, 40);
    let table = r.vec(v * h);
    let ids = [3u32, 0, 49, 17];
    for w in [
        Weight::from_f32(&table, vec![v, h]),
        Weight::from_bf16(
            &table.iter().map(|&x| bf16::from_f32(x)).collect::<Vec<_>>(),
            vec![v, h],
        ),
        Weight::from_f16(
            &table.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>(),
            vec![v, h],
        ),
    ] {
        let m = ops::upload_matrix(&g, &w).unwrap();
        let out = ops::zeros::<f32>(&g, ids.len() * h).unwrap();
        ops::embed(
            &g,
            w.dtype,
            p(&g, &m.buf),
            p(&g, &ops::upload(&g, &ids).unwrap()),
            p(&g, &out),
            ids.len(),
            h,
        )
        .unwrap();
        let mut want = vec![0f32; ids.len() * h];
        for (row, &id) in want.chunks_mut(h).zip(&ids) {
            w.row_to_f32(id as usize, row);
        }
        assert_eq!(down(&g, &out, ids.len() * h), want, "embed {:?}", w.dtype);
    }
}

#[test]
fn rope_and_kv_write_match_cpu() {
    let Some(g) = gpu() else { return };
    let mut r = Rng(11);
    let (nh, nkv, hd, t) = (6, 2, 32, 7);
    let inv_freq: Vec<f32> = (0..12)
        .map(|i| 1.0 / 10000f32.powf(i as f32 / 12.0))
        .collect(); // partial rotary: 24 of 32 dims
    let (qd, kvd) = (nh * hd, nkv * hd);
    let qkv = r.vec(t * (qd + 2 * kvd));
    let pos: Vec<u32> = (0..t as u32).map(|i| 100 + 37 * i).collect();
    let rows: Vec<u32> = (0..t as u32).map(|i| (i * 5 + 3) % 40).collect();
    let dq = ops::zeros::<f32>(&g, t * qd).unwrap();
    let (dk, dv) = (
        ops::zeros::<f32>(&g, 40 * kvd).unwrap(),
        ops::zeros::<f32>(&g, 40 * kvd).unwrap(),
    );
    let heads = ops::Heads { nh, nkv, hd };
    let rope = ops::RopeStore {
        qkv: p(&g, &ops::upload(&g, &qkv).unwrap()),
        pos: p(&g, &ops::upload(&g, &pos).unwrap()),
        kv_row: p(&g, &ops::upload(&g, &rows).unwrap()),
        inv_freq: p(&g, &ops::upload(&g, &inv_freq).unwrap()),
        half: inv_freq.len(),
        heads,
        q_out: p(&g, &dq),
        k_store: p(&g, &dk),
        v_store: p(&g, &dv),
        t,
    };
    ops::rope_store_kv(&g, rope).unwrap();
    let (gq, gk, gv) = (
        down(&g, &dq, t * qd),
        down(&g, &dk, 40 * kvd),
        down(&g, &dv, 40 * kvd),
    );
    for i in 0..t {
        let mut row = qkv[i * (qd + 2 * kvd)..(i + 1) * (qd + 2 * kvd)].to_vec();
        let (qr, rest) = row.split_at_mut(qd);
        let (kr, vr) = rest.split_at_mut(kvd);
        cpu::rope(qr, nh, hd, &inv_freq, pos[i] as usize);
        cpu::rope(kr, nkv, hd, &inv_freq, pos[i] as usize);
        let ro = rows[i] as usize * kvd;
        assert!(max_diff(&gq[i * qd..(i + 1) * qd], qr) < 2e-5, "q row {i}");
        assert!(max_diff(&gk[ro..ro + kvd], kr) < 2e-5, "k row {i}");
        assert_eq!(&gv[ro..ro + kvd], &vr[..], "v row {i}");
    }
}

#[test]
fn gemv_and_gemm_match_cpu_matmul() {
    let Some(g) = gpu() else { return };
    let mut r = Rng(3);
    // GEMV: every dtype, row counts 1..=11, a k that is not a multiple of the vector width.
    for &(n, k) in &[(33usize, 1000usize), (17, 96), (5, 13)] {
        let wf = r.vec(n * k);
        for w in [
            Weight::from_f32(&wf, vec![n, k]),
            Weight::from_bf16(
                &wf.iter().map(|&x| bf16::from_f32(x)).collect::<Vec<_>>(),
                vec![n, k],
            ),
            Weight::from_f16(
                &wf.iter().map(|&x| f16::from_f32(x)).collect::<Vec<_>>(),
                vec![n, k],
            ),
        ] {
            let dm = ops::upload_matrix(&g, &w).unwrap();
            for m in [1usize, 2, 3, 5, 8, 11] {
                let x = r.vec(m * k);
                let ld = n + 3;
                let mut want = vec![0f32; m * ld];
                cpu::matmul(&x, m, &w, &mut want, ld, 2);
                let out = ops::upload(&g, &vec![0f32; m * ld]).unwrap();
                ops::gemv(
                    &g,
                    p(&g, &ops::upload(&g, &x).unwrap()),
                    &dm,
                    p(&g, &out),
                    m,
                    ld,
                    2,
                )
                .unwrap();
                let got = down(&g, &out, m * ld);
                let e = max_diff(&got, &want);
                assert!(e < 1e-3, "gemv {:?} n={n} k={k} m={m}: {e}", w.dtype);
            }
        }
    }
    // GEMM (hand-written and cuBLAS) against the CPU on bf16-rounded activations; edges included.
    for &(m, n, k) in &[
        (130usize, 200usize, 72usize),
        (9, 128, 256),
        (256, 384, 512),
    ] {
        let wf: Vec<bf16> = r.vec(n * k).iter().map(|&x| bf16::from_f32(x)).collect();
        let w = Weight::from_bf16(&wf, vec![n, k]);
        let xr: Vec<bf16> = r.vec(m * k).iter().map(|&x| bf16::from_f32(x)).collect();
        let xf: Vec<f32> = xr.iter().map(|x| x.to_f32()).collect();
        let ld = n + 5;
        let mut want = vec![0f32; m * ld];
        cpu::matmul(&xf, m, &w, &mut want, ld, 0);
        let dm = ops::upload_matrix(&g, &w).unwrap();
        let dx = ops::upload(&g, ops::bf16_bits(&xr)).unwrap();
        for imp in ["wmma", "cublas"] {
            let out = ops::upload(&g, &vec![0f32; m * ld]).unwrap();
            let f = if imp == "wmma" {
                ops::gemm_wmma
            } else {
                ops::gemm_cublas
            };
            let gemm = ops::Gemm {
                a: p(&g, &dx),
                b: p(&g, &dm.buf),
                c: p(&g, &out),
                m,
                n,
                k,
                ldc: ld,
                col0: 0,
            };
            f(&g, gemm).unwrap();
            let e = max_diff(&down(&g, &out, m * ld), &want);
            assert!(e < 2e-3, "{imp} m={m} n={n} k={k}: {e}");
        }
    }
}

#[test]
fn paged_attention_matches_cpu() {
    let Some(g) = gpu() else { return };
    let mut r = Rng(5);
    for &(nh, nkv, hd, window) in &[
        (4usize, 2usize, 16usize, None),
        (7, 1, 64, Some(40usize)),
        (28, 4, 128, None),
    ] {
        let heads = ops::Heads { nh, nkv, hd };
        let (qd, kvd, bs) = (nh * hd, nkv * hd, 16);
        // Three sequences: a prefill chunk continuing a cached prefix, a long decode, a fresh prompt.
        let spans = [(20usize, 9usize), (300, 1), (0, 37)];
        let nblocks = 64;
        let mut tables: Vec<Vec<u32>> = Vec::new();
        let mut next = 0u32;
        for &(s, l) in &spans {
            let nb = (s + l).div_ceil(bs);
            // Scattered, non-contiguous blocks.
            tables.push(
                (0..nb)
                    .map(|_| {
                        next += 1;
                        (next * 7) % nblocks as u32
                    })
                    .collect(),
            );
        }
        let k = r.vec(nblocks * bs * kvd);
        let v = r.vec(nblocks * bs * kvd);
        let t: usize = spans.iter().map(|s| s.1).sum();
        let q = r.vec(t * qd);
        let seqs: Vec<cpu::AttnSeq> = spans
            .iter()
            .zip(&tables)
            .map(|(&(s, l), tb)| cpu::AttnSeq {
                table: tb,
                start: s,
                len: l,
            })
            .collect();
        let shape = cpu::AttnShape {
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
            block_size: bs,
            window,
        };
        let mut want = vec![0f32; t * qd];
        cpu::attention(&q, &k, &v, &seqs, shape, &mut want);
        let (tiles, max_chunks) = ops::attn_tiles(&spans, heads);
        let mut flat = Vec::new();
        let mut off = Vec::new();
        for tb in &tables {
            off.push(flat.len() as u32);
            flat.extend_from_slice(tb);
        }
        for splits in [
            1usize,
            3,
            ops::attn_splits(&g, tiles.len(), nkv, max_chunks),
        ] {
            let part = ops::zeros::<f32>(&g, splits * t * (qd + 2 * nh)).unwrap();
            let out = ops::zeros::<f32>(&g, t * qd).unwrap();
            let (dk, dv) = (ops::upload(&g, &k).unwrap(), ops::upload(&g, &v).unwrap());
            let attn = ops::PagedAttn {
                q: p(&g, &ops::upload(&g, &q).unwrap()),
                k_store: p(&g, &dk),
                v_store: p(&g, &dv),
                tiles: p(
                    &g,
                    &ops::upload(&g, bytemuck::cast_slice::<_, u32>(&tiles)).unwrap(),
                ),
                n_tiles: tiles.len(),
                tables: p(&g, &ops::upload(&g, &flat).unwrap()),
                table_off: p(&g, &ops::upload(&g, &off).unwrap()),
                heads,
                block_size: bs,
                window,
                splits,
                t,
                out: p(&g, &out),
                part: p(&g, &part),
            };
            ops::attention(&g, attn).unwrap();
            let e = max_diff(&down(&g, &out, t * qd), &want);
            assert!(
                e < 1e-4,
                "attention nh={nh} nkv={nkv} hd={hd} window={window:?} splits={splits}: {e}"
            );
        }
    }
}

#[test]
fn device_sampling_matches_cpu_reference() {
    let Some(g) = gpu() else { return };
    let mut r = Rng(9);
    let (rows, n) = (48usize, 5000usize);
    let logits: Vec<f32> = r.vec(rows * n).iter().map(|x| x * 6.0).collect();
    let mut params = Vec::new();
    for i in 0..rows {
        params.push(ops::SampleParams {
            temperature: [0.0, 0.7, 1.0, 1.3][i % 4],
            top_k: [0, 1, 20, 400][(i / 4) % 4],
            top_p: [1.0, 0.9, 0.5][(i / 16) % 3],
            pad: 0,
            seed: 1234 + i as u64,
            counter: 7,
        });
    }
    let dl = ops::upload(&g, &logits).unwrap();
    let dp = ops::upload(&g, bytemuck::cast_slice::<_, u32>(&params)).unwrap();
    let scratch = ops::zeros::<f32>(&g, rows * n).unwrap();
    let ids = ops::zeros::<u32>(&g, rows).unwrap();
    ops::sample(
        &g,
        p(&g, &dl),
        p(&g, &dp),
        n,
        p(&g, &scratch),
        p(&g, &ids),
        rows,
    )
    .unwrap();
    let got = ops::download(&g, &ids).unwrap();
    for i in 0..rows {
        let want = rstar::engine::sampling::device_sample_reference(
            &logits[i * n..(i + 1) * n],
            &params[i],
        );
        assert_eq!(got[i], want, "row {i} {:?}", params[i]);
    }
}

#[test]
fn fixture_logits_match_cpu_backend() {
    let Some(_g) = gpu() else { return };
    let ids: Vec<u32> = (0..40u32).map(|i| (i * 37 + 11) % 97).collect();
    for dir in common::model_dirs() {
        let cpu_model = Model::load(&dir).unwrap();
        let mut gpu_model = Model::load(&dir).unwrap();
        gpu_model.to_device(Device::Cuda(0)).unwrap();
        let ids: Vec<u32> = ids
            .iter()
            .map(|&i| i % cpu_model.config.vocab_size as u32)
            .collect();
        // Prefill in one pass (GEMM path), then token by token (GEMV path).
        let want = cpu_model
            .forward(&ids, &mut cpu_model.new_cache(), true)
            .unwrap();
        let got = gpu_model
            .forward(&ids, &mut gpu_model.new_cache(), true)
            .unwrap();
        let e = max_diff(&got, &want);
        let mut cache = gpu_model.new_cache();
        let v = cpu_model.config.vocab_size;
        let mut e_inc = 0f32;
        for (i, &id) in ids.iter().enumerate() {
            let row = gpu_model.forward(&[id], &mut cache, false).unwrap();
            e_inc = e_inc.max(max_diff(&row, &want[i * v..(i + 1) * v]));
        }
        println!(
            "{}: max |cuda - cpu| prefill {e:.2e}, incremental {e_inc:.2e}",
            dir.display()
        );
        assert!(e < 2e-2 && e_inc < 2e-2, "{}: {e} / {e_inc}", dir.display());
        // Greedy continuations agree wherever the CPU's top-2 margin exceeds the tolerance.
        let (mut cc, mut gc) = (cpu_model.new_cache(), gpu_model.new_cache());
        let (mut cl, mut gl) = (
            cpu_model.forward(&ids[..8], &mut cc, false).unwrap(),
            gpu_model.forward(&ids[..8], &mut gc, false).unwrap(),
        );
        for step in 0..16 {
            let mut sorted = cl.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let (a, b) = (
                rstar::engine::sampling::argmax(&cl),
                rstar::engine::sampling::argmax(&gl),
            );
            if sorted[0] - sorted[1] < 4e-2 {
                println!(
                    "  greedy: stopped comparing at step {step} (margin {:.1e})",
                    sorted[0] - sorted[1]
                );
                break;
            }
            assert_eq!(a, b, "{}: greedy token {step}", dir.display());
            cl = cpu_model.forward(&[a], &mut cc, false).unwrap();
            gl = gpu_model.forward(&[a], &mut gc, false).unwrap();
        }
    }
}

#[test]
fn engine_tree_on_device_matches_cpu() {
    use rstar::engine::{Engine, EngineConfig, LoadedModel};
    let Some(_g) = gpu() else { return };
    let dir = common::fixtures().join("models/qwen2-bf16-v5");
    let cpu_lm = Arc::new(LoadedModel::load(&dir).unwrap());
    let mut gl = LoadedModel::load(&dir).unwrap();
    gl.model.to_device(Device::Cuda(0)).unwrap();
    let gpu_lm = Arc::new(gl);
    let prefix: Vec<u32> = (1..=50).collect();
    let run = |lm: Arc<LoadedModel>| -> Vec<Vec<f32>> {
        let mut e = Engine::new(lm, EngineConfig::default()).unwrap();
        let root = e.add(&prefix).unwrap();
        let kids: Vec<_> = (0..4)
            .map(|i| {
                let c = e.fork(root).unwrap();
                e.append(c, &[60 + i, 70 + i]).unwrap();
                c
            })
            .collect();
        let grand = e.fork(kids[1]).unwrap();
        e.append(grand, &[5, 6, 7]).unwrap();
        let mut ids = kids.clone();
        ids.push(grand);
        e.logits(&ids).unwrap()
    };
    let (want, got) = (run(cpu_lm), run(gpu_lm));
    for (w, g) in want.iter().zip(&got) {
        let e = max_diff(g, w);
        assert!(e < 2e-2, "tree engine on device: {e}");
    }
}

#[test]
fn engine_samples_on_device_as_the_reference_sampler() {
    use rstar::engine::sampling::{device_sample_reference, SamplingParams};
    use rstar::engine::GenerateParams;
    use rstar::engine::{Engine, EngineConfig, LoadedModel};
    let Some(_g) = gpu() else { return };
    let dir = common::fixtures().join("models/qwen2-bf16-v5");
    let mut gl = LoadedModel::load(&dir).unwrap();
    gl.model.to_device(Device::Cuda(0)).unwrap();
    let lm = Arc::new(gl);
    let prefix: Vec<u32> = (0..30u32).map(|i| (i * 13 + 5) % 90).collect();
    for sampling in [
        SamplingParams::default(),
        SamplingParams {
            temperature: 0.8,
            top_k: 20,
            top_p: 0.9,
            seed: 77,
        },
    ] {
        let params = GenerateParams {
            max_new_tokens: 8,
            sampling,
            ignore_eos: true,
            ..Default::default()
        };
        // Four children decoded together, tokens drawn on the device.
        let mut e = Engine::new(lm.clone(), EngineConfig::default()).unwrap();
        let root = e.add(&prefix).unwrap();
        let kids = e.expand(root, 4, &params).unwrap();
        // Each child replayed alone: host logits of the device model, the device sampler's CPU
        // reference with the child's seed and the token's index as counter.
        for (i, kid) in kids.iter().enumerate() {
            let mut r = Engine::new(lm.clone(), EngineConfig::default()).unwrap();
            let s = r.add(&prefix).unwrap();
            let mut p = sampling;
            p.seed = sampling.seed + i as u64;
            for (j, &got) in kid.output.ids.iter().enumerate() {
                let logits = r.logits(&[s]).unwrap();
                let want = device_sample_reference(&logits[0], &p.on_device(j as u64));
                assert_eq!(got, want, "child {i} token {j} ({sampling:?})");
                r.append(s, &[want]).unwrap();
            }
            assert_eq!(kid.output.ids.len(), 8);
        }
    }
}

#[test]
fn ppm_scores_on_device_match_cpu() {
    use rstar::engine::ppm::{Ppm, Scorer};
    use rstar::engine::EngineConfig;
    let Some(_g) = gpu() else { return };
    let seqs: Vec<Vec<u32>> = vec![
        (1..40).collect(),
        (1..40).chain([70, 71, 72]).collect(),
        (5..25).rev().collect(),
    ];
    for name in ["rstar-separate", "rstar-combined", "qwen2-prm"] {
        let dir = common::fixtures().join("ppm").join(name);
        let score = |ppm: Ppm| {
            let mut s = Scorer::new(Arc::new(ppm), EngineConfig::default()).unwrap();
            s.score(&seqs).unwrap()
        };
        let want = score(Ppm::load(&dir).unwrap());
        let got = score(Ppm::load_on(&dir, Device::Cuda(0)).unwrap());
        let e = max_diff(&got, &want);
        println!("{name}: max |cuda - cpu| PPM value {e:.2e}");
        assert!(e < 2e-2, "{name}: {got:?} vs {want:?}");
    }
}

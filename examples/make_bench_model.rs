//! Writes a random-weight bf16 checkpoint with the exact shapes of a real model, for benchmarks
//! without downloads: `cargo run --release --example make_bench_model -- qwen2.5-0.5b bench_models/q05`
//! (shapes: `qwen2.5-0.5b`, `qwen2.5-math-1.5b`). Writes `config.json` and `model.safetensors`
//! (header and bytes by hand). Weights are uniform with std 0.02, norms 1, biases 0; never commit them.

use std::io::Write;

use rstar::bench::shapes::Qwen2Shape;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let names: Vec<&str> = Qwen2Shape::names().collect();
    let (name, dir) = match args.as_slice() {
        [_, n, d] => (n.as_str(), std::path::PathBuf::from(d)),
        _ => {
            eprintln!("usage: make_bench_model {} DIR", names.join("|"));
            std::process::exit(2);
        }
    };
    let Some(s) = Qwen2Shape::named(name) else {
        eprintln!("unknown shape {name} (known: {})", names.join(", "));
        std::process::exit(2);
    };
    std::fs::create_dir_all(&dir).unwrap();
    let hd = s.hidden / s.heads;
    let config = s.config_json();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();

    // (name, shape, init): 0 random, 1 ones, 2 zeros.
    let mut tensors: Vec<(String, Vec<usize>, u8)> = vec![(
        "model.embed_tokens.weight".into(),
        vec![s.vocab, s.hidden],
        0,
    )];
    for l in 0..s.layers {
        let p = format!("model.layers.{l}");
        let (q, kv) = (s.heads * hd, s.kv_heads * hd);
        for (n, sh, init) in [
            ("input_layernorm.weight", vec![s.hidden], 1),
            ("post_attention_layernorm.weight", vec![s.hidden], 1),
            ("self_attn.q_proj.weight", vec![q, s.hidden], 0),
            ("self_attn.q_proj.bias", vec![q], 2),
            ("self_attn.k_proj.weight", vec![kv, s.hidden], 0),
            ("self_attn.k_proj.bias", vec![kv], 2),
            ("self_attn.v_proj.weight", vec![kv, s.hidden], 0),
            ("self_attn.v_proj.bias", vec![kv], 2),
            ("self_attn.o_proj.weight", vec![s.hidden, q], 0),
            ("mlp.gate_proj.weight", vec![s.inter, s.hidden], 0),
            ("mlp.up_proj.weight", vec![s.inter, s.hidden], 0),
            ("mlp.down_proj.weight", vec![s.hidden, s.inter], 0),
        ] {
            tensors.push((format!("{p}.{n}"), sh, init));
        }
    }
    tensors.push(("model.norm.weight".into(), vec![s.hidden], 1));

    let mut header = serde_json::Map::new();
    let mut off = 0usize;
    for (n, sh, _) in &tensors {
        let bytes = sh.iter().product::<usize>() * 2;
        header.insert(
            n.clone(),
            serde_json::json!({"dtype": "BF16", "shape": sh, "data_offsets": [off, off + bytes]}),
        );
        off += bytes;
    }
    let mut h = serde_json::to_string(&header).unwrap().into_bytes();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let f = std::fs::File::create(dir.join("model.safetensors")).unwrap();
    let mut f = std::io::BufWriter::with_capacity(1 << 22, f);
    f.write_all(&(h.len() as u64).to_le_bytes()).unwrap();
    f.write_all(&h).unwrap();
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    // Uniform in [-a, a] with std 0.02.
    let a = 0.02f32 * 3f32.sqrt();
    for (_, sh, init) in &tensors {
        let n = sh.iter().product::<usize>();
        let mut buf = Vec::with_capacity(n * 2);
        for _ in 0..n {
            let v = match init {
                0 => {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    ((rng >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a
                }
                1 => 1.0,
                _ => 0.0,
            };
            buf.extend_from_slice(&half::bf16::from_f32(v).to_bits().to_le_bytes());
        }
        f.write_all(&buf).unwrap();
    }
    f.flush().unwrap();
    eprintln!(
        "wrote {} ({} tensors, {:.2} GB)",
        dir.display(),
        tensors.len(),
        off as f64 / 1e9
    );
}

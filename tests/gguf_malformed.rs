//! Malformed GGUF input: bad magic, truncation at every byte, unknown types, absurd counts and
//! dimensions, out-of-file offsets, and a deterministic mutation run (byte flips and overwritten
//! integers over a small valid file) through the header parser and the whole model loader. Every case
//! must end in a typed error or a valid load: no panic, no out-of-bounds read, no huge allocation.

mod common;

use std::path::Path;

use rstar::engine::LoadedModel;
use rstar::model::gguf::parse;

/// A tiny but complete llama GGUF (1 layer, vocab 8, hidden 4) with a gpt2 tokenizer.
fn tiny_gguf() -> Vec<u8> {
    let mut b = Vec::new();
    let s = |b: &mut Vec<u8>, x: &str| {
        b.extend((x.len() as u64).to_le_bytes());
        b.extend(x.as_bytes());
    };
    let kv_u32 = |b: &mut Vec<u8>, k: &str, v: u32| {
        s(b, k);
        b.extend(4u32.to_le_bytes());
        b.extend(v.to_le_bytes());
    };
    let kv_str = |b: &mut Vec<u8>, k: &str, v: &str| {
        s(b, k);
        b.extend(8u32.to_le_bytes());
        s(b, v);
    };
    let tokens = ["a", "b", "c", "d", "ab", "cd", "<s>", "</s>"];
    let tensors: Vec<(String, Vec<u64>, u32)> = {
        let mut t = vec![("token_embd.weight".to_string(), vec![32, 8], 8u32)]; // Q8_0
        for (n, d) in [
            ("attn_norm", vec![32]),
            ("ffn_norm", vec![32]),
            ("attn_q", vec![32, 32]),
            ("attn_k", vec![32, 32]),
            ("attn_v", vec![32, 32]),
            ("attn_output", vec![32, 32]),
            ("ffn_gate", vec![32, 32]),
            ("ffn_up", vec![32, 32]),
            ("ffn_down", vec![32, 32]),
        ] {
            t.push((
                format!("blk.0.{n}.weight"),
                d.clone(),
                if d.len() == 1 { 0 } else { 2 },
            ));
        }
        t.push(("output_norm.weight".into(), vec![32], 0));
        t
    };
    b.extend(b"GGUF");
    b.extend(3u32.to_le_bytes());
    b.extend((tensors.len() as u64).to_le_bytes());
    b.extend(11u64.to_le_bytes());
    kv_str(&mut b, "general.architecture", "llama");
    kv_u32(&mut b, "llama.embedding_length", 32);
    kv_u32(&mut b, "llama.block_count", 1);
    kv_u32(&mut b, "llama.feed_forward_length", 32);
    kv_u32(&mut b, "llama.attention.head_count", 2);
    kv_u32(&mut b, "llama.attention.head_count_kv", 2);
    kv_str(&mut b, "tokenizer.ggml.model", "gpt2");
    s(&mut b, "tokenizer.ggml.tokens");
    b.extend(9u32.to_le_bytes());
    b.extend(8u32.to_le_bytes());
    b.extend((tokens.len() as u64).to_le_bytes());
    for t in tokens {
        s(&mut b, t);
    }
    s(&mut b, "tokenizer.ggml.merges");
    b.extend(9u32.to_le_bytes());
    b.extend(8u32.to_le_bytes());
    b.extend(2u64.to_le_bytes());
    s(&mut b, "a b");
    s(&mut b, "c d");
    kv_u32(&mut b, "tokenizer.ggml.bos_token_id", 6);
    kv_u32(&mut b, "tokenizer.ggml.eos_token_id", 7);
    let mut offset = 0u64;
    let mut sizes = Vec::new();
    for (name, dims, ty) in &tensors {
        s(&mut b, name);
        b.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            b.extend(d.to_le_bytes());
        }
        b.extend(ty.to_le_bytes());
        b.extend(offset.to_le_bytes());
        let n: u64 = dims.iter().product();
        let size = match ty {
            0 => n * 4,
            8 => n / 32 * 34,
            _ => n / 32 * 18,
        };
        sizes.push(size);
        offset += size.div_ceil(32) * 32;
    }
    while b.len() % 32 != 0 {
        b.push(0);
    }
    for size in sizes {
        let start = b.len();
        // f16 1/64 (0x2400) scales, small quants: finite values everywhere.
        b.extend((0..size).map(|i| if i % 2 == 0 { 0x00 } else { 0x24 }));
        while (b.len() - start) % 32 != 0 {
            b.push(0);
        }
    }
    b
}

fn load(bytes: &[u8], dir: &Path) -> rstar::Result<LoadedModel> {
    let p = dir.join("m.gguf");
    std::fs::write(&p, bytes).unwrap();
    LoadedModel::load(&p)
}

#[test]
fn the_tiny_file_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let lm = load(&tiny_gguf(), dir.path()).unwrap();
    assert_eq!(lm.model.config.vocab_size, 8);
    let mut cache = lm.model.new_cache();
    let logits = lm.model.forward(&[0, 4, 5], &mut cache, false).unwrap();
    assert!(logits.iter().all(|x| x.is_finite()));
    assert_eq!(lm.encode_prompt("abcd", false, None).unwrap(), vec![4, 5]);
}

#[test]
fn clear_errors() {
    let p = Path::new("bad.gguf");
    let good = tiny_gguf();
    let mut bad = good.clone();
    bad[0] = b'X';
    assert!(parse(&bad, p)
        .unwrap_err()
        .to_string()
        .contains("not a GGUF file"));
    // Truncated tensor data: the last tensor's range leaves the file.
    let e = parse(&good[..good.len() - 40], p).unwrap_err().to_string();
    assert!(
        e.contains("output_norm.weight") && e.contains("outside the file"),
        "{e}"
    );
    // Unknown quant type: the first tensor's type field (after name, n_dims, 2 dims).
    let pos = find(&good, b"token_embd.weight") + 17 + 4 + 16;
    let mut bad = good.clone();
    bad[pos..pos + 4].copy_from_slice(&99u32.to_le_bytes());
    let e = parse(&bad, p).unwrap_err().to_string();
    assert!(
        e.contains("token_embd.weight") && e.contains("ggml type 99"),
        "{e}"
    );
    // Absurd dimension.
    let mut bad = good.clone();
    bad[pos - 8..pos].copy_from_slice(&(1u64 << 62).to_le_bytes());
    let e = parse(&bad, p).unwrap_err().to_string();
    assert!(
        e.contains("token_embd.weight") && e.contains("larger than the file"),
        "{e}"
    );
    // Absurd array count (the token list).
    let pos = find(&good, b"tokenizer.ggml.tokens") + 21 + 8;
    let mut bad = good.clone();
    bad[pos..pos + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = parse(&bad, p).unwrap_err().to_string();
    assert!(
        e.contains("tokenizer.ggml.tokens") && e.contains("impossible"),
        "{e}"
    );
    // Zero key/value heads: a config error naming the field, not a division by zero.
    let pos = find(&good, b"llama.attention.head_count_kv") + 29 + 4;
    let mut bad = good.clone();
    bad[pos..pos + 4].copy_from_slice(&0u32.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let e = load(&bad, dir.path()).unwrap_err().to_string();
    assert!(e.contains("num_key_value_heads"), "{e}");
    // Every truncation is an error, never a panic.
    for cut in 0..good.len() - 1 {
        assert!(parse(&good[..cut], p).is_err(), "cut at {cut} parsed");
    }
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

#[test]
fn mutations_never_panic() {
    let good = tiny_gguf();
    let dir = tempfile::tempdir().unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let header_end = parse(&good, Path::new("x")).unwrap().data_start;
    for round in 0..1500 {
        let mut m = good.clone();
        for _ in 0..1 + next() % 3 {
            let at = (next() as usize) % header_end;
            match next() % 3 {
                0 => m[at] ^= 1 << (next() % 8),
                1 => m[at] = 0xFF,
                _ => {
                    let v = [0u64, 1, 0xFFFF_FFFF, u64::MAX, 1 << 40][(next() % 5) as usize];
                    let end = (at + 8).min(m.len());
                    m[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
                }
            }
        }
        let parsed = parse(&m, Path::new("x"));
        // Loading the whole model (config, dequantization, tokenizer) on a sample of the mutants that
        // still parse.
        if parsed.is_ok() && round % 5 == 0 {
            let _ = load(&m, dir.path());
        }
    }
}

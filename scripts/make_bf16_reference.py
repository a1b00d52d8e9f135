#!/usr/bin/env python3
"""The reference of the `fast` precision mode: each bf16 fixture run by transformers in bfloat16.

Run from the repository root after scripts/make_fixtures.py, in the same venv
(`pip install torch transformers safetensors`):

    python scripts/make_bf16_reference.py

For every tests/fixtures/models/*-bf16-* directory it loads a fresh
`from_pretrained(dir, dtype=torch.bfloat16)` (weights as stored, activations in bf16, as a user
runs a bf16 checkpoint), feeds golden.safetensors' input_ids and writes golden_bf16.safetensors:
logits [T, V] f32 (the bf16 outputs widened). The Rust test `fast_precision_matches_transformers_bf16`
(tests/hf_parity.rs) checks `--precision fast` against them: within 5e-2, and the same argmax
wherever these logits' top-2 margin exceeds 0.1.
"""

import glob
import os

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "models")


def main():
    torch.manual_seed(0)
    for d in sorted(glob.glob(os.path.join(ROOT, "*-bf16-*"))):
        ids = load_file(os.path.join(d, "golden.safetensors"))["input_ids"]
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.bfloat16)
        model.eval()
        with torch.no_grad():
            logits = model(ids.unsqueeze(0)).logits[0].float().contiguous()
        save_file({"logits": logits}, os.path.join(d, "golden_bf16.safetensors"))
        top2 = logits.topk(2, dim=-1).values
        margin = (top2[:, 0] - top2[:, 1]).min().item()
        print(f"{os.path.basename(d)}: logits {tuple(logits.shape)}, smallest top-2 margin {margin:.3f}")


if __name__ == "__main__":
    main()

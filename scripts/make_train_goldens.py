#!/usr/bin/env python3
"""PyTorch goldens for librstar's trainer: one SGD step (lr 0.5, batch of one example) of SFT and of
the PPM pairwise loss on the fixture models, Llama and Qwen2, tied and untied.

Run from the repository root in a venv with torch + transformers + safetensors:

    python scripts/make_train_goldens.py                     # writes tests/fixtures/train/
    python scripts/make_train_goldens.py --verify BIN        # also trains with `BIN train sft` and
                                                             # loads its checkpoint in transformers

Outputs (committed, so the Rust tests need no torch):
* tests/fixtures/train/llama-tied/   a Llama fixture with tied embeddings (the llama-f32-v5 weights,
                                     lm_head dropped), since the model fixtures have no tied Llama;
* tests/fixtures/train/<case>.safetensors for case in qwen2-untied, qwen2-tied (the bf16 fixture,
  trained in f32), llama-untied, llama-tied:
    sft.prompt_ids [P] i64, sft.response_ids [R] i64, sft.loss [1]: mean cross-entropy over the
        response tokens;
    sft.after.<name>: every parameter after `p -= 0.5 * grad` (HF names; tied models have no lm_head);
    sft.logits_after [P+R, V]: logits of the updated model on prompt + response;
    ppm.prefix_ids, ppm.pos_ids, ppm.neg_ids [*] i64, ppm.v_head.weight [1, H], ppm.v_head.bias [1]:
        the pair and the initial value head; ppm.loss [1] = -log sigmoid(r_pos - r_neg) with r the
        value head on the final-norm hidden state of the last token;
    ppm.after.<name>: decoder parameters (no lm_head) and `v_head.summary.*` after the SGD step.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
MODELS = os.path.join(ROOT, "models")
OUT = os.path.join(ROOT, "train")
CASES = {
    "qwen2-untied": os.path.join(MODELS, "qwen2-f32-v5"),
    "qwen2-tied": os.path.join(MODELS, "qwen2-bf16-v5"),
    "llama-untied": os.path.join(MODELS, "llama-f32-v5"),
    "llama-tied": os.path.join(OUT, "llama-tied"),
}
LR = 0.5


def load(path):
    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    m.train()
    return m


def make_llama_tied():
    src = os.path.join(MODELS, "llama-f32-v5")
    cfg = AutoConfig.from_pretrained(src)
    cfg.tie_word_embeddings = True
    m = AutoModelForCausalLM.from_pretrained(src, config=cfg, dtype=torch.float32)
    # transformers keeps a checkpoint's separate lm_head even when the config says tied: tie explicitly.
    m.lm_head.weight = m.model.embed_tokens.weight
    dst = CASES["llama-tied"]
    shutil.rmtree(dst, ignore_errors=True)
    m.save_pretrained(dst)
    for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]:
        if os.path.exists(os.path.join(src, f)):
            shutil.copy(os.path.join(src, f), dst)


def ids(gen, n, vocab):
    return torch.randint(3, vocab, (n,), generator=gen)


def sgd_step(params, loss):
    loss.backward()
    with torch.no_grad():
        for p in params:
            if p.grad is not None:
                p -= LR * p.grad


def sft_case(path, gen, out):
    m = load(path)
    vocab = m.config.vocab_size
    prompt, response = ids(gen, 5, vocab), ids(gen, 7, vocab)
    x = torch.cat([prompt, response])[None]
    logits = m(x).logits[0]
    p = len(prompt)
    loss = F.cross_entropy(logits[p - 1 : -1], x[0, p:])
    sgd_step(list(m.parameters()), loss)
    out["sft.prompt_ids"] = prompt
    out["sft.response_ids"] = response
    out["sft.loss"] = loss.detach().reshape(1)
    for n, t in m.named_parameters():
        out[f"sft.after.{n}"] = t.detach().clone()
    with torch.no_grad():
        out["sft.logits_after"] = m(x).logits[0].clone()


def ppm_case(path, gen, out):
    m = load(path)
    vocab, h = m.config.vocab_size, m.config.hidden_size
    prefix, pos, neg = ids(gen, 6, vocab), ids(gen, 5, vocab), ids(gen, 4, vocab)
    head = torch.nn.Linear(h, 1)
    with torch.no_grad():
        head.weight.copy_(torch.randn(1, h, generator=gen) * 0.1)
        head.bias.fill_(0.05)
    out["ppm.prefix_ids"], out["ppm.pos_ids"], out["ppm.neg_ids"] = prefix, pos, neg
    out["ppm.v_head.weight"] = head.weight.detach().clone()
    out["ppm.v_head.bias"] = head.bias.detach().clone()

    def score(branch):
        hidden = m.model(torch.cat([prefix, branch])[None]).last_hidden_state
        return head(hidden[0, -1])[0]

    loss = -F.logsigmoid(score(pos) - score(neg))
    params = list(m.model.parameters()) + list(head.parameters())
    sgd_step(params, loss)
    out["ppm.loss"] = loss.detach().reshape(1)
    for n, t in m.model.named_parameters():
        out[f"ppm.after.model.{n}"] = t.detach().clone()
    out["ppm.after.v_head.summary.weight"] = head.weight.detach().clone()
    out["ppm.after.v_head.summary.bias"] = head.bias.detach().clone()


def verify(binary):
    """Trains the qwen2-untied SFT golden step with the rstar CLI and checks that transformers loads
    the checkpoint with the logits of PyTorch's own step."""
    from safetensors.torch import load_file

    worst = 0.0
    for case in ["qwen2-untied", "llama-tied"]:
        g = load_file(os.path.join(OUT, f"{case}.safetensors"))
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(tmp, "data.jsonl")
            with open(data, "w") as f:
                rec = {"prompt_ids": g["sft.prompt_ids"].tolist(), "response_ids": g["sft.response_ids"].tolist()}
                f.write(json.dumps(rec) + "\n")
            out = os.path.join(tmp, "out")
            cmd = [binary, "train", "sft", "--model", CASES[case], "--data", data, "--out", out,
                   "--optimizer", "sgd", "--lr", str(LR), "--batch-size", "1", "--max-steps", "1",
                   "--max-grad-norm", "0", "--schedule", "constant"]
            subprocess.run(cmd, check=True)
            m = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
            x = torch.cat([g["sft.prompt_ids"], g["sft.response_ids"]])[None]
            with torch.no_grad():
                diff = (m(x).logits[0] - g["sft.logits_after"]).abs().max().item()
            print(f"{case}: transformers logits of the librstar checkpoint vs PyTorch's step: max |diff| = {diff:.2e}")
            worst = max(worst, diff)
    if worst > 1e-4:
        sys.exit(f"mismatch {worst}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--verify", metavar="RSTAR_BINARY")
    args = ap.parse_args()
    if args.verify:
        verify(args.verify)
        return
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    make_llama_tied()
    for i, (case, path) in enumerate(CASES.items()):
        gen = torch.Generator().manual_seed(100 + i)
        out = {}
        sft_case(path, gen, out)
        ppm_case(path, gen, out)
        out = {k: v.contiguous() for k, v in out.items()}
        save_file(out, os.path.join(OUT, f"{case}.safetensors"))
        print(case, "sft loss", out["sft.loss"].item(), "ppm loss", out["ppm.loss"].item())


if __name__ == "__main__":
    main()

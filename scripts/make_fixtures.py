#!/usr/bin/env python3
"""Generate the tiny reference checkpoints and golden outputs that librstar's tests use.

Run from the repository root in a venv with `pip install torch transformers safetensors`:

    python scripts/make_fixtures.py

It writes tests/fixtures/ (committed), so the Rust tests need no torch:

* tokenizer/            a small byte-level BPE tokenizer.json (trained here) with the Qwen2.5 ChatML
                        chat template, written by transformers' save_pretrained; plus
                        tokenizer_golden.json: ids from HF for sample texts and apply_chat_template renders.
* models/<arch>-<dtype>-<layout>/
                        a random checkpoint for arch in qwen2, llama, mistral, phi3; dtype in f32, bf16, f16;
                        layout `v5` (config.json as transformers 5 writes it: `rope_parameters`, `dtype`) or
                        `legacy` (top-level `rope_theta`/`rope_scaling`, `torch_dtype`, as older checkpoints
                        on the hub have it). Some are sharded (model.safetensors.index.json).
                        golden.safetensors holds: input_ids [T] i64, logits [T, V] f32 from a fresh
                        `from_pretrained(dir, dtype=float32)` of the saved files, greedy_prompt [P] i64 and
                        greedy_ids [N] i64 from `generate(do_sample=False)` (KV cache on).

The weights are random but not tiny (std 0.2, norms around 1, random biases) so that a wrong op moves the
logits by far more than the 2e-3 tolerance.
"""

import json
import os
import shutil

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers, Regex, normalizers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")

# Qwen2.5-Instruct's chat template, as published in its tokenizer_config.json.
QWEN25_CHAT_TEMPLATE = (
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"
)

# Qwen2's pre-tokenizer split pattern (from its tokenizer.json).
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CORPUS = [
    "Let's think step by step and solve the problem with code.",
    "<code>\n# Step 1: Calculate the total number of apples\ntotal = 3 * 4 + 2\n<end_of_step>\n",
    "# Now print the final answer\nprint(total)\n<end_of_code>\n<output>14<end_of_output>\n",
    "<answer>From the result, we can see that the answer is \\boxed{14}.\n<end_of_answer>",
    "The quadratic x^2 - 5x + 6 = 0 has roots x = 2 and x = 3, so the sum of the roots is 5.",
    "import sympy as sp\nx = sp.symbols('x')\nsolution = sp.solve(x**2 - 4, x)\nprint(solution)",
    "What is the value of $\\frac{1}{2} + \\frac{1}{3}$? The answer is $\\frac{5}{6}$.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "Héllo wörld — naïve café, 数学 题目, emoji 🙂 and tabs\tand  double  spaces.",
] * 20

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 384

TOKENIZER_SAMPLES = [
    "Let's think step by step.",
    "  leading spaces and trailing  ",
    "x = sp.symbols('x')\nprint(x**2 + 1)\n\n\n",
    "Héllo wörld — naïve café, 数学 题目 🙂",
    "12345 + 678 = 13023",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "",
]

CHATS = [
    ([{"role": "user", "content": "What is 1+1?"}], True),
    ([{"role": "system", "content": "You are a math expert."}, {"role": "user", "content": "Solve x^2=4."}], True),
    (
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Compute 3*7."},
        ],
        False,
    ),
]


def make_tokenizer(out_dir):
    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.add_special_tokens(SPECIALS)
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=512,
    )
    fast.chat_template = QWEN25_CHAT_TEMPLATE
    os.makedirs(out_dir, exist_ok=True)
    fast.save_pretrained(out_dir)
    # Reload exactly as a user would and record what HF produces.
    ref = AutoTokenizer.from_pretrained(out_dir)
    golden = {
        "encode": [{"text": t, "ids": ref(t, add_special_tokens=True)["input_ids"]} for t in TOKENIZER_SAMPLES],
        "chat": [
            {
                "messages": m,
                "add_generation_prompt": g,
                "text": ref.apply_chat_template(m, tokenize=False, add_generation_prompt=g),
            }
            for m, g in CHATS
        ],
    }
    ids = ref("Let's think step by step.")["input_ids"]
    golden["decode"] = {"ids": ids, "text": ref.decode(ids)}
    with open(os.path.join(ROOT, "tokenizer_golden.json"), "w") as f:
        json.dump(golden, f, indent=1, ensure_ascii=False)
    return ref


def arch_config(arch, tied):
    common = dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        tie_word_embeddings=tied,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=0,
    )
    if arch == "qwen2":
        return Qwen2Config(rope_theta=1_000_000.0, **common)
    if arch == "llama":
        return LlamaConfig(
            rope_theta=500_000.0,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
            **common,
        )
    if arch == "mistral":
        return MistralConfig(rope_theta=10_000.0, head_dim=32, sliding_window=4096, **common)
    if arch == "phi3":
        return Phi3Config(rope_theta=10_000.0, original_max_position_embeddings=512, **common)
    raise ValueError(arch)


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if "norm" in name:
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.2 * noise)
            else:
                p.copy_(0.2 * noise)


def to_legacy(config_path, arch):
    """Rewrite a transformers-5 config.json into the layout older checkpoints use."""
    with open(config_path) as f:
        cfg = json.load(f)
    rope = cfg.pop("rope_parameters", None) or {}
    cfg["rope_theta"] = rope.pop("rope_theta", 10000.0)
    if rope.get("rope_type", "default") != "default":
        rope.setdefault("type", rope["rope_type"])
        cfg["rope_scaling"] = rope
    else:
        cfg["rope_scaling"] = None
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    if arch in ("llama", "qwen2", "phi3"):
        cfg.pop("head_dim", None)
    cfg["transformers_version"] = "4.45.0"
    with open(config_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)


def tokenizer_to_legacy(out):
    """Older hub layout: merges as "a b" strings, chat template inside tokenizer_config.json."""
    path = os.path.join(out, "tokenizer.json")
    with open(path) as f:
        tj = json.load(f)
    tj["model"]["merges"] = [" ".join(m) for m in tj["model"]["merges"]]
    with open(path, "w") as f:
        json.dump(tj, f, ensure_ascii=False)
    template_path = os.path.join(out, "chat_template.jinja")
    with open(template_path) as f:
        template = f.read()
    os.remove(template_path)
    path = os.path.join(out, "tokenizer_config.json")
    with open(path) as f:
        tc = json.load(f)
    tc["chat_template"] = template
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    tc.pop("backend", None)
    with open(path, "w") as f:
        json.dump(tc, f, indent=2)


def check_tokenizer(out):
    """HF must read the copied tokenizer files (either layout) exactly as the golden says."""
    with open(os.path.join(ROOT, "tokenizer_golden.json")) as f:
        golden = json.load(f)
    tok = AutoTokenizer.from_pretrained(out)
    for case in golden["encode"]:
        assert tok(case["text"])["input_ids"] == case["ids"], (out, case)
    for case in golden["chat"]:
        text = tok.apply_chat_template(case["messages"], tokenize=False, add_generation_prompt=case["add_generation_prompt"])
        assert text == case["text"], (out, case)


DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def make_model(arch, dname, layout, tok_dir, input_ids, seed):
    name = f"{arch}-{dname}-{layout}"
    out = os.path.join(ROOT, "models", name)
    shutil.rmtree(out, ignore_errors=True)
    tied = arch == "qwen2" and dname != "f32"
    cfg = arch_config(arch, tied)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    randomize(model, seed)
    model = model.to(DTYPES[dname])
    shard = "150KB" if dname == "f32" and arch in ("qwen2", "llama") else "100MB"
    model.save_pretrained(out, max_shard_size=shard)
    for fn in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(os.path.join(tok_dir, fn), os.path.join(out, fn))
    if layout == "legacy":
        to_legacy(os.path.join(out, "config.json"), arch)
        tokenizer_to_legacy(out)
    check_tokenizer(out)
    gen_cfg = os.path.join(out, "generation_config.json")
    if os.path.exists(gen_cfg):
        os.remove(gen_cfg)

    # Golden: a fresh float32 load of exactly the saved files.
    ref = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    ref.eval()
    ids = torch.tensor([input_ids])
    with torch.no_grad():
        logits = ref(ids).logits[0].float().contiguous()
        prompt = ids[:, :5]
        gen = ref.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )[0, 5:]
    save_file(
        {
            "input_ids": ids[0].to(torch.int64).contiguous(),
            "logits": logits,
            "greedy_prompt": prompt[0].to(torch.int64).clone(),
            "greedy_ids": gen.to(torch.int64).contiguous(),
        },
        os.path.join(out, "golden.safetensors"),
    )
    return name, logits


def main():
    torch.set_num_threads(2)
    os.makedirs(os.path.join(ROOT, "models"), exist_ok=True)
    tok_dir = os.path.join(ROOT, "tokenizer")
    tok = make_tokenizer(tok_dir)
    input_ids = tok("Let's think step by step: x = 3 * 4 + 2; print(x) -> 14.")["input_ids"][:12]
    assert len(input_ids) == 12, len(input_ids)
    seed = 1
    for arch in ("qwen2", "llama", "mistral", "phi3"):
        for dname in ("f32", "bf16", "f16"):
            per_layout = {}
            for layout in ("v5", "legacy"):
                name, logits = make_model(arch, dname, layout, tok_dir, input_ids, seed)
                per_layout[layout] = logits
                print(name, "max|logit|", float(logits.abs().max()))
            # Both layouts must mean the same model to HF itself.
            diff = float((per_layout["v5"] - per_layout["legacy"]).abs().max())
            assert diff == 0.0, f"{arch}-{dname}: HF reads the two layouts differently ({diff})"
            seed += 1
    make_ppms()



# ---------------------------------------------------------------------------------------------------
# Process reward models (PPM): rStar-Math's value head in both layouts, and Qwen2.5-Math-PRM's head.

PPM_SEQS = [
    list(range(3, 23)),  # a shared 20-token prefix ...
    list(range(3, 23)) + [40, 41, 42],  # ... and two continuations of it
    list(range(3, 23)) + [50, 51, 52, 53, 54, 55, 56],
    [7, 8, 9],
]


def make_ppms():
    from safetensors.torch import load_file
    from transformers import Qwen2Model

    base = os.path.join(ROOT, "models", "qwen2-f32-v5")
    hidden = 64
    g = torch.Generator().manual_seed(77)
    out_root = os.path.join(ROOT, "ppm")
    shutil.rmtree(out_root, ignore_errors=True)
    os.makedirs(out_root)

    # Reference hidden states: a fresh float32 load of the decoder, final-norm output at every position.
    body = Qwen2Model.from_pretrained(base, dtype=torch.float32).eval()

    def final_hidden(ids):
        with torch.no_grad():
            return body(torch.tensor([ids])).last_hidden_state[0]

    # rStar-Math layout: v_head.summary = Linear(hidden, 1) on the last token's final hidden state.
    w = 0.3 * torch.randn(1, hidden, generator=g)
    b = 0.3 * torch.randn(1, generator=g)
    sep = os.path.join(out_root, "rstar-separate")
    shutil.copytree(base, sep)
    os.remove(os.path.join(sep, "golden.safetensors"))
    save_file({"v_head.summary.weight": w.contiguous(), "v_head.summary.bias": b.contiguous()},
              os.path.join(sep, "value_head.safetensors"))

    comb = os.path.join(out_root, "rstar-combined")
    shutil.copytree(sep, comb)
    os.remove(os.path.join(comb, "value_head.safetensors"))
    tensors = {}
    for fn in sorted(os.listdir(comb)):
        if fn.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(comb, fn)))
            os.remove(os.path.join(comb, fn))
    index = os.path.join(comb, "model.safetensors.index.json")
    if os.path.exists(index):
        os.remove(index)
    combined = {f"pretrained_model.{k}": v.contiguous() for k, v in tensors.items()}
    combined["v_head.summary.weight"] = w.contiguous()
    combined["v_head.summary.bias"] = b.contiguous()
    save_file(combined, os.path.join(comb, "model.safetensors"))

    # Qwen2.5-Math-PRM layout: score = Sequential(Linear(h, h), ReLU, Linear(h, 2)); value = P(class 1).
    prm = os.path.join(out_root, "qwen2-prm")
    shutil.copytree(sep, prm)
    os.remove(os.path.join(prm, "value_head.safetensors"))
    w1 = 0.3 * torch.randn(hidden, hidden, generator=g)
    b1 = 0.3 * torch.randn(hidden, generator=g)
    w2 = 0.3 * torch.randn(2, hidden, generator=g)
    b2 = 0.3 * torch.randn(2, generator=g)
    tensors = {}
    for fn in sorted(os.listdir(prm)):
        if fn.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(prm, fn)))
            os.remove(os.path.join(prm, fn))
    if os.path.exists(os.path.join(prm, "model.safetensors.index.json")):
        os.remove(os.path.join(prm, "model.safetensors.index.json"))
    tensors = {k: v for k, v in tensors.items() if not k.startswith("lm_head")}
    tensors.update({"score.0.weight": w1, "score.0.bias": b1, "score.2.weight": w2, "score.2.bias": b2})
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(prm, "model.safetensors"))
    with open(os.path.join(prm, "config.json")) as f:
        cfg = json.load(f)
    cfg["architectures"] = ["Qwen2ForProcessRewardModel"]
    with open(os.path.join(prm, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)

    golden = {}
    for i, ids in enumerate(PPM_SEQS):
        h = final_hidden(ids)
        golden[f"ids_{i}"] = torch.tensor(ids, dtype=torch.int64)
        golden[f"rstar_{i}"] = (h @ w.T + b)[:, 0].contiguous()  # raw value at every position
        probs = torch.softmax(torch.relu(h @ w1.T + b1) @ w2.T + b2, dim=-1)
        golden[f"prm_{i}"] = probs[:, 1].contiguous()
    save_file(golden, os.path.join(out_root, "golden.safetensors"))


if __name__ == "__main__":
    if os.environ.get("RSTAR_FIXTURES_PPM_ONLY"):
        make_ppms()
    else:
        main()

#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets to fuzz/corpus/<target>/ (committed; a few KB each).
Rerun after changing a format: python3 fuzz/make_seeds.py (from the repository root)."""
import json
import os
import struct

ROOT = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(ROOT, "..", "tests", "fixtures")


def put(target, name, data):
    d = os.path.join(ROOT, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def fixture(*p):
    with open(os.path.join(FIX, *p), "rb") as f:
        return f.read()


# ---- GGUF: a small header with metadata of every kind, tensors, and a tokenizer ----
def gguf(meta, tensors):
    s = lambda x: struct.pack("<Q", len(x.encode())) + x.encode()
    def val(v):
        kind, x = v
        if kind == "u32":
            return struct.pack("<I", 4) + struct.pack("<I", x)
        if kind == "i32":
            return struct.pack("<I", 5) + struct.pack("<i", x)
        if kind == "f32":
            return struct.pack("<I", 6) + struct.pack("<f", x)
        if kind == "bool":
            return struct.pack("<I", 7) + bytes([x])
        if kind == "str":
            return struct.pack("<I", 8) + s(x)
        if kind == "strs":
            return struct.pack("<IIQ", 9, 8, len(x)) + b"".join(s(t) for t in x)
        if kind == "i32s":
            return struct.pack("<IIQ", 9, 5, len(x)) + b"".join(struct.pack("<i", t) for t in x)
        if kind == "f32s":
            return struct.pack("<IIQ", 9, 6, len(x)) + b"".join(struct.pack("<f", t) for t in x)
        raise ValueError(kind)
    b = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(meta))
    for k, v in meta:
        b += s(k) + val(v)
    off, sizes = 0, []
    for name, dims, ty, size in tensors:
        b += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        b += struct.pack("<IQ", ty, off)
        sizes.append(size)
        off += (size + 31) // 32 * 32
    b += b"\0" * (-len(b) % 32)
    for size in sizes:
        b += bytes((i * 7) % 64 for i in range(size)) + b"\0" * (-size % 32)
    return b


gpt2_tokens = ["a", "b", "c", "d", "ab", "cd", "Ġ", "<s>", "</s>", "<|im_start|>"]
gpt2 = gguf(
    [
        ("general.architecture", ("str", "llama")),
        ("llama.embedding_length", ("u32", 32)),
        ("llama.block_count", ("u32", 1)),
        ("llama.attention.head_count", ("u32", 2)),
        ("llama.rope.freq_base", ("f32", 10000.0)),
        ("tokenizer.ggml.model", ("str", "gpt2")),
        ("tokenizer.ggml.pre", ("str", "qwen2")),
        ("tokenizer.ggml.tokens", ("strs", gpt2_tokens)),
        ("tokenizer.ggml.token_type", ("i32s", [1] * 7 + [3, 3, 4])),
        ("tokenizer.ggml.merges", ("strs", ["a b", "c d"])),
        ("tokenizer.ggml.bos_token_id", ("u32", 7)),
        ("tokenizer.ggml.eos_token_id", ("u32", 8)),
        ("tokenizer.ggml.add_bos_token", ("bool", 1)),
        ("tokenizer.chat_template", ("str", "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}")),
    ],
    [("token_embd.weight", [32, 10], 0, 32 * 10 * 4), ("blk.0.attn_q.weight", [32, 32], 8, 32 * 34)],
)
llama_tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % i for i in range(4)] + ["▁", "a", "b", "▁a", "ab", "▁ab"]
llama = gguf(
    [
        ("general.architecture", ("str", "llama")),
        ("tokenizer.ggml.model", ("str", "llama")),
        ("tokenizer.ggml.tokens", ("strs", llama_tokens)),
        ("tokenizer.ggml.scores", ("f32s", [0.0] * 7 + [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0])),
        ("tokenizer.ggml.token_type", ("i32s", [2, 3, 3] + [6] * 4 + [1] * 6)),
        ("tokenizer.ggml.bos_token_id", ("u32", 1)),
        ("tokenizer.ggml.eos_token_id", ("u32", 2)),
        ("tokenizer.ggml.add_space_prefix", ("bool", 1)),
    ],
    [],
)
for t in ("gguf_header", "gguf_tokenizer"):
    put(t, "gpt2.gguf", gpt2)
    put(t, "llama.gguf", llama)
    put(t, "empty.gguf", gguf([], []))

# ---- safetensors ----
def safetensors(tensors):
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


put("safetensors", "mixed.safetensors", safetensors([
    ("w.f32", "F32", [2, 3], struct.pack("<6f", *range(6))),
    ("w.f16", "F16", [4], struct.pack("<4e", 1.0, -2.0, 0.5, 65504.0)),
    ("w.bf16", "BF16", [2], b"\x80\x3f\x00\xc0"),
    ("w.i8", "I8", [3], b"\x01\x02\x03"),
    ("scalar", "F32", [], struct.pack("<f", 3.0)),
    ("empty", "F32", [0, 4], b""),
]))
put("safetensors", "one.safetensors", safetensors([("x", "F32", [1], struct.pack("<f", 1.0))]))

put("safetensors_index", "index.json", json.dumps({
    "metadata": {"total_size": 1234},
    "weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors",
                   "lm_head.weight": "model-00002-of-00002.safetensors"},
}, indent=1))
put("safetensors_index", "bad.json", '{"weight_map": {"a": "../etc/passwd", "b": 3}}')

# ---- config.json: one per architecture ----
for arch in ("llama", "qwen2", "phi3", "mistral"):
    put("model_config", f"{arch}.json", fixture("models", f"{arch}-f32-v5", "config.json"))

# ---- tokenizer.json (+ NUL + tokenizer_config.json) ----
small_bpe = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": 6, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True}],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True},
    "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
              "vocab": {"H": 0, "e": 1, "l": 2, "o": 3, "He": 4, "ll": 5}, "merges": ["H e", "l l"]},
}
cfg = {"bos_token": None, "eos_token": "<|endoftext|>", "chat_template":
       "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"}
put("tokenizer_json", "small_bpe", json.dumps(small_bpe) + "\0" + json.dumps(cfg))
put("tokenizer_json", "legacy_llama", fixture("models", "llama-f32-legacy", "tokenizer.json")
    + b"\0" + fixture("models", "llama-f32-legacy", "tokenizer_config.json"))

# ---- chat templates (template NUL user message) ----
put("chat_template", "fixture.jinja", fixture("tokenizer", "chat_template.jinja").decode() + "\0What is 2+2?")
put("chat_template", "chatml.jinja",
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}\0Hi")
put("chat_template", "features.jinja",
    "{{ bos_token }}{% set ns = namespace(n=0) %}{% for m in messages | selectattr('role', 'equalto', 'user') %}"
    "{% set ns.n = ns.n + 1 %}{{ m.content | trim | upper }}{% if loop.last %}{{ ns.n }}{% endif %}{% endfor %}"
    "{{ strftime_now('%Y') }}{% if messages[0].role != 'system' %}{{ raise_exception('no system') }}{% endif %}"
    "{{ messages | length }}{{ eos_token }}\0x")

# ---- problems ----
put("problems", "list.json", json.dumps([{"question": "What is 6 times 7?", "answer": "42"},
                                         {"question": "2+3?", "answer": 5}]))
put("problems", "gsm8k.jsonl", json.dumps({"question": "Janet has 3 eggs...", "answer": "3 - 1 = 2\n#### 1,234"}) + "\n\n"
    + json.dumps({"problem": "Find $x$.", "solution": "So $x = \\boxed{\\frac{1}{2}}$."}) + "\n"
    + json.dumps({"problem": "MATH500", "answer": "\\sqrt{2}"}) + "\n")
put("problems", "example.json", json.dumps({"example": [{"question": "q", "answer": "1"}]}))

# ---- MCTS trees (one record of `rstar mcts` output; then a torn line) ----
def node(text, depth, q, visits, **kw):
    n = {"text": text, "action": "", "action_input": "", "final_answer": "", "value": -100,
         "q_value": q, "visit_count": visits, "value_sum": q * visits, "depth": depth,
         "terminal": False, "end": None, "failure": None, "correct": None, "consecutive_errors": 0}
    n.update(kw)
    return n


tree = {
    "0": node("", 0, 0.0, 2, extra_info="question: What is 6 times 7?"),
    "0.0": node("<code>\nprint(6*7)\n<end_of_step>\n<output>42\n</output>", 1, 1.0, 1,
                action="python_interpreter", action_input="<code>\nprint(6*7)\n<end_of_step>", observation="42"),
    "0.0.0": node("<answer>The answer is \\boxed{42}<end_of_answer>", 2, 1.0, 1, final_answer="42",
                  terminal=True, end="answer", correct=True),
    "0.1": node("<answer>\\boxed{41}<end_of_answer>", 1, -1.0, 1, final_answer="41", terminal=True,
                end="answer", correct=False),
}
line = json.dumps({"index": 0, "question": "What is 6 times 7?", "answer": "42", "rstar": tree,
                   "prediction": "42", "correct": True, "solved": True})
put("trees", "one.jsonl", line + "\n")
put("trees", "torn.jsonl", line + "\n" + line.replace('"index": 0', '"index": 1')[:100])
ref = {k: {f: v[f] for f in ("text", "action", "action_input", "final_answer", "value", "q_value", "visit_count")}
       for k, v in tree.items()}
put("trees", "reference.jsonl", json.dumps({"question": "q", "answer": 42, "rstar": ref}) + "\n")

# ---- SFT / pair records ----
put("training_data", "sft.jsonl", "\n".join(json.dumps(r) for r in [
    {"query": "What is 2+2?", "response": "<answer>\\boxed{4}<end_of_answer>"},
    {"prompt": "Q: 1+1\n", "response": "2"},
    {"prompt_ids": [1, 2, 3], "response_ids": [4, 5]},
    {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                  {"role": "assistant", "content": "a"}]},
]) + "\n")
put("training_data", "pairs.json", json.dumps([
    {"prompt": "<|user|>: 2+2?\n", "pos": "4", "neg": "5"},
    {"prefix_ids": [1, 2], "pos_ids": [3], "neg_ids": [4, 5]},
]))

# ---- search configuration ----
put("search_config", "config.toml", 'mode = "terminal-guided"\nsearch = "mcts"\nrollouts = 4\nwidth = 2\n'
    'max_depth = 3\nc_puct = 2.0\ntemperature = 0.7\ntop_p = 0.95\nseed = 7\nstop = ["<end_of_step>"]\n'
    'max_step_tokens = 64\nerrors_threshold = 2\nfailure_rule = "either"\nexec_timeout_s = 1.5\n')
put("search_config", "config.json", json.dumps({"search": "beam", "beam_width": 2, "best_of": 4, "runs": 2,
                                                "vote_size": 0, "device": "cpu"}))

# ---- grader: prediction NUL ground truth ----
for i, (p, a) in enumerate([
    ("The answer is \\boxed{\\frac{1}{2}}", "0.5"),
    ("\\boxed{x^2+2x+1}", "(x+1)^2"),
    ("So it costs $1,200.00.", "1200"),
    ("\\boxed{(1, 2)}", "(1,2)"),
    ("\\boxed{\\sqrt{8}}", "2\\sqrt{2}"),
    ("\\boxed{50\\%}", "0.5"),
    ("x \\in [0, \\infty)", "[0,\\infty)"),
    ("\\boxed{\\begin{pmatrix}1\\\\2\\end{pmatrix}}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
]):
    put("grade", f"case{i}", p + "\0" + a)

# ---- steps: ancestors NUL ... NUL step ----
put("steps", "code", "<code>\n# Step 1\nx = 6 * 7\n<end_of_step>\0<code>\nprint(x)\n<end_of_code>\n<output>42\n</output>")
put("steps", "answer", "<answer>The answer is \\boxed{42}<end_of_answer>")
put("steps", "fenced", "Let me compute.\n```python\nimport sympy\nprint(sympy.sqrt(8))\n```\n<end_of_step>")
put("steps", "traceback", "Traceback (most recent call last):\n  File \"<string>\", line 1\nZeroDivisionError: division by zero\n" * 3)

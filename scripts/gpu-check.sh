#!/usr/bin/env bash
# The CUDA backend's check on a GPU machine, in one command (made to finish within 8 minutes on one
# H100): the CUDA test suite (every kernel against its CPU reference, fixture logits against the CPU
# backend, the tree engine on the device), a CLI smoke run, the tree benchmark on a random
# Qwen2.5-0.5B-shaped checkpoint (engine vs naive re-prefill, and batch-16 vs batch-1 decode), then
# `rstar bench cuda` on a random Qwen2.5-Math-7B-shaped model with one summary.
#
#   scripts/gpu-pack.sh           # on the build machine: release binaries into gpu-bin/
#   scripts/gpu-check.sh [DIR]    # on the GPU machine, from the repository root (DIR: gpu-bin,
#                                 # or DIR.tar.xz unpacked there)
#
# GPU_CHECK_SECTIONS picks sections (default: "tests cli tree bench7b"; "cpu" adds the CPU
# backend's tests and 2-thread benchmark on this machine's processor, for its AVX-512 paths).
#
# The GPU machine needs no Rust toolchain and no network. It needs the NVIDIA driver, NVRTC and
# cuBLAS (CUDA 13; a CUDA toolkit or NVIDIA's PyPI wheels) and the CUDA headers; they are searched
# for below and printed. Results also go to $OUT (or ./gpu-check-out) as logs and JSON.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-gpu-bin}
[ -d "$BIN" ] || [ ! -f "$BIN.tar.xz" ] || tar -xJf "$BIN.tar.xz"
OUTDIR=${OUT:-gpu-check-out}
mkdir -p "$OUTDIR"

echo "== nvidia-smi"
nvidia-smi || echo "nvidia-smi failed"

# First match of a library file name under the usual CUDA and Python locations.
find_file() {
    local name=$1
    for d in $(ldconfig -p 2>/dev/null | awk -v n="$name" '$1 == n {print $NF}') ; do echo "$d"; return; done
    find /usr/local/cuda*/ /usr/lib /usr/local/lib /opt /root/.local -name "$name" 2>/dev/null \
        | grep -v -e '/proc/' | head -1
}
LIBCUDA=$(find_file libcuda.so.1)
NVRTC=$(find_file libnvrtc.so.13)
CUBLAS=$(find_file libcublas.so.13)
echo "== libraries"
echo "libcuda:  ${LIBCUDA:-NOT FOUND}"
echo "libnvrtc: ${NVRTC:-NOT FOUND}"
echo "libcublas: ${CUBLAS:-NOT FOUND}"
for lib in "$NVRTC" "$CUBLAS"; do
    [ -n "$lib" ] && export LD_LIBRARY_PATH="$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
INC=""
for d in /usr/local/cuda/include /usr/local/cuda/targets/x86_64-linux/include \
         ${NVRTC:+$(dirname "$NVRTC")/../include}; do
    [ -f "$d/cuda_bf16.h" ] && INC="$INC${INC:+:}$d"
done
for d in $(find /usr/local/cuda*/ /opt -path '*/include/crt/mma.h' 2>/dev/null | head -3); do
    INC="$INC:${d%/crt/mma.h}"
done
export RSTAR_CUDA_INCLUDE="$INC"
echo "headers:  $RSTAR_CUDA_INCLUDE"
export RSTAR_CACHE_DIR="${RSTAR_CACHE_DIR:-/tmp/rstar-kernel-cache}"

# The test executable finds its fixtures under the directory it was built in.
root=$(cat "$BIN/build-root" 2>/dev/null)
if [ -n "$root" ] && [ ! -e "$root" ]; then
    mkdir -p "$(dirname "$root")" && ln -s "$PWD" "$root"
fi

export RSTAR_REQUIRE_GPU=1 RSTAR_REQUIRE_NVRTC=1 RUST_BACKTRACE=1
SECTIONS=" ${GPU_CHECK_SECTIONS:-tests cli tree bench7b} "
want() { [[ "$SECTIONS" == *" $1 "* ]]; }
status=0
if want tests; then
echo "== CUDA tests"
"$BIN/cuda_kernels" --test-threads=1 --nocapture 2>&1 | tee "$OUTDIR/tests.log" || status=1
fi

if want cli; then
echo "== CLI on the device"
"$BIN/rstar" generate --device cuda --model tests/fixtures/models/qwen2-bf16-v5 --ids 1,2,3 \
    --max-new-tokens 8 --json 2>&1 | tee "$OUTDIR/generate.json" || status=1
"$BIN/rstar" generate --device cuda --model tests/fixtures/models/qwen2-bf16-v5 --ids 1,2,3 \
    --max-new-tokens 8 --n 4 --temperature 0.8 --seed 5 --json 2>&1 | tee -a "$OUTDIR/generate.json" || status=1
for dev in cpu cuda; do
    "$BIN/rstar" score --device $dev --model tests/fixtures/ppm/rstar-separate --ids 1,2,3,4,5 || status=1
done
# The search on the device: the default model (policy + PPM) solving one question. Its Python
# sandbox may be refused by the machine's kernel; that is reported, not counted as a CUDA failure.
( time "$BIN/rstar" solve --device cuda --quiet "What is 12 * 7 + 5?" ) 2>&1 | tail -12 \
    || echo "(solve failed: see above)"
fi

if want tree; then
echo "== tree engine: random Qwen2.5-0.5B shape, bf16 (issue shape: prefix 512, width 8, depth 3, step 32)"
Q05=${GPU_CHECK_MODEL_DIR:-/tmp/rstar-q05}
[ -f "$Q05/model.safetensors" ] || "$BIN/make_bench_model" qwen2.5-0.5b "$Q05" || status=1
"$BIN/rstar" bench tree --device cuda --model "$Q05" --prefix-tokens 512 --width 8 --depth 3 \
    --step-tokens 32 --json > "$OUTDIR/tree.json" || status=1
cat "$OUTDIR/tree.json"
"$BIN/rstar" bench cuda --shape qwen2.5-0.5b --batch 1,16 --prefill-tokens 512 --decode-tokens 64 \
    --json > "$OUTDIR/decode-q05.json" || status=1
python3 - "$OUTDIR/tree.json" "$OUTDIR/decode-q05.json" <<'PY' || true
import json, sys
t = json.load(open(sys.argv[1]))
print("== tree summary: %d nodes, computed/unique %d/%d = %.3f, tree %.2f s, naive %.2f s = %.2fx"
      % (t["nodes"], t["tokens_computed"], t["unique_tokens"], t["tokens_computed"] / t["unique_tokens"],
         t["seconds"], t["naive_seconds"], t["naive_seconds"] / t["seconds"]))
d = {x["batch"]: x["tok_s"] for x in json.load(open(sys.argv[2]))["decode"] if x["cuda_graphs"]}
print("== 0.5B decode: batch 1 %.1f tok/s, batch 16 %.1f tok/s = %.2fx" % (d[1], d[16], d[16] / d[1]))
PY
fi

if want cpu; then
echo "== CPU backend on this machine's processor"
grep -m1 'model name' /proc/cpuinfo; nproc
flags=$(grep -m1 '^flags' /proc/cpuinfo)
for f in avx2 fma avx512f avx512bw avx512vl avx512_bf16 amx_bf16; do
    [[ " $flags " == *" $f "* ]] && echo "  $f: yes" || echo "  $f: no"
done
# Every SIMD path this CPU has against the scalar reference, the logits of every path against
# transformers (and fast precision against transformers in bf16), no allocation per token, and
# the tree engine's bit-exactness, on whatever path is best here.
"$BIN/lib_tests" backend::cpu --test-threads=1 2>&1 | tail -4 | tee "$OUTDIR/cpu-tests.log" || status=1
for t in hf_parity alloc_free engine_tree; do
    "$BIN/$t" --test-threads=1 --nocapture 2>&1 | grep -E "^(test |[a-z0-9]+: |[a-z0-9-]+ on )|passed|failed|panicked" \
        | tee -a "$OUTDIR/cpu-tests.log" || status=1
done
if [[ " $flags " == *" avx512f "* ]]; then
    RAYON_NUM_THREADS=2 RSTAR_BENCH_REPEATS=3 "$BIN/kernels" gemm 2>&1 | grep -E "gemm|kernel " || status=1
    Q05=${GPU_CHECK_MODEL_DIR:-/tmp/rstar-q05}
    [ -f "$Q05/model.safetensors" ] || "$BIN/make_bench_model" qwen2.5-0.5b "$Q05" || status=1
    # 2 threads (the issue's machine) and every core of this one.
    for threads in 2 $(nproc); do
    for prec in exact fast; do
        echo "-- $threads threads, $prec"
        "$BIN/rstar" bench --model "$Q05" --threads $threads --precision $prec --prompt-tokens 512 \
            --decode-tokens 16 --batch 1,16,32 --repeats 3 --json > "$OUTDIR/cpu-bench-$threads-$prec.json" || status=1
        python3 - "$OUTDIR/cpu-bench-$threads-$prec.json" <<'PY' || true
import json, sys
b = json.load(open(sys.argv[1]))
print(json.dumps(b["limits"]), "weight_bytes", b["weight_bytes"], "kernel", b.get("kernel"))
for p in b["prefill"]:
    print("prefill %d: %s" % (p["tokens"], {k: round(v, 3) if isinstance(v, float) else v for k, v in p.items()}))
for d in b["decode"]:
    print("decode batch %d: %s" % (d["batch"], {k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}))
PY
    done
    done
fi
fi

if want bench7b; then
echo "== benchmark: random Qwen2.5-Math-7B shape, bf16"
"$BIN/rstar" bench cuda --shape qwen2.5-math-7b --json > "$OUTDIR/bench.json" || status=1
# A second prefill length: attention grows with its square, the matmuls linearly.
"$BIN/rstar" bench cuda --shape qwen2.5-math-7b --prefill-tokens 1024 --batch 1 --decode-tokens 4 \
    --json 2>/dev/null | python3 -c 'import json,sys; p=json.load(sys.stdin)["prefill"]; print("prefill %d tokens: %.0f tok/s, %.1f%% of tensor-core peak" % (p["tokens"], p["tok_s"], 100*p["fraction_of_tc_peak"]))' || true
python3 - "$OUTDIR/bench.json" <<'PY' || cat "$OUTDIR/bench.json"
import json, sys
b = json.load(open(sys.argv[1]))
print("== summary (%s, %s)" % (b["device"], b["arch"]))
print("limits: copy %.0f GB/s, bf16 tensor cores %.0f TFLOP/s" % (b["limits"]["copy_gb_s"], b["limits"]["bf16_tflop_s"]))
for d in b["decode"]:
    print("decode batch %d%s: %.1f tok/s (%.2f ms/step), %.1f%% of the HBM roofline per sequence" % (d["batch"], "" if d["cuda_graphs"] else " (no CUDA graphs)", d["tok_s"], d["ms_per_step"], 100 * d["fraction_of_hbm_roofline"]))
print("gemv alone: " + ", ".join("[%d x %d] %.0f GB/s" % (g["n"], g["k"], g["gb_s"]) for g in b["gemv_gb_s"]))
p = b["prefill"]
print("prefill %d tokens: %.0f tok/s, %.0f TFLOP/s = %.1f%% of tensor-core peak" % (p["tokens"], p["tok_s"], p["tflop_s"], 100 * p["fraction_of_tc_peak"]))
print("gemm choice per shape:", ", ".join("%d/%d/%d:%s" % (g["m_bucket"], g["n"], g["k"], g["impl"]) for g in b["gemm_choice"]))
PY
fi
echo "== gpu-check status: $status"
exit $status

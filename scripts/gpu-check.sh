#!/usr/bin/env bash
# The CUDA backend's check on a GPU machine, in one command (made to finish within 8 minutes on one
# H100): the CUDA test suite (every kernel against its CPU reference, fixture logits against the CPU
# backend, the tree engine on the device), a CLI smoke run, then `rstar bench cuda` on a random
# Qwen2.5-Math-7B-shaped model with one summary.
#
#   scripts/gpu-pack.sh           # on the build machine: release binaries into gpu-bin/
#   scripts/gpu-check.sh [DIR]    # on the GPU machine, from the repository root (DIR: gpu-bin)
#
# The GPU machine needs no Rust toolchain and no network. It needs the NVIDIA driver, NVRTC and
# cuBLAS (CUDA 13; a CUDA toolkit or NVIDIA's PyPI wheels) and the CUDA headers; they are searched
# for below and printed. Results also go to $OUT (or ./gpu-check-out) as logs and JSON.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-gpu-bin}
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
export RSTAR_CACHE_DIR="$OUTDIR/cache"

# The test executable finds its fixtures under the directory it was built in.
root=$(cat "$BIN/build-root" 2>/dev/null)
if [ -n "$root" ] && [ ! -e "$root" ]; then
    mkdir -p "$(dirname "$root")" && ln -s "$PWD" "$root"
fi

export RSTAR_REQUIRE_GPU=1 RSTAR_REQUIRE_NVRTC=1 RUST_BACKTRACE=1
status=0
echo "== CUDA tests"
"$BIN/cuda_kernels" --test-threads=1 --nocapture 2>&1 | tee "$OUTDIR/tests.log" || status=1

echo "== CLI on the device"
"$BIN/rstar" generate --device cuda --model tests/fixtures/models/qwen2-bf16-v5 --ids 1,2,3 \
    --max-new-tokens 8 --json 2>&1 | tee "$OUTDIR/generate.json" || status=1

echo "== benchmark: random Qwen2.5-Math-7B shape, bf16"
"$BIN/rstar" bench cuda --shape qwen2.5-math-7b --json > "$OUTDIR/bench.json" || status=1
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
echo "== gpu-check status: $status"
exit $status

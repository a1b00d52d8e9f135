#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh runs on a GPU machine that has no Rust toolchain: the release
# `rstar` binary, the CUDA test executable and the random-checkpoint writer (for the tree
# benchmark), stripped, into gpu-bin/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin rstar --example make_bench_model
cargo test --release --no-run --test cuda_kernels 2>&1 | tee /tmp/rstar-gpu-pack.log
exe=$(grep -o 'target/release/deps/cuda_kernels-[0-9a-f]*' /tmp/rstar-gpu-pack.log | tail -1)
rm -rf gpu-bin && mkdir -p gpu-bin
cp target/release/rstar gpu-bin/rstar
cp target/release/examples/make_bench_model gpu-bin/make_bench_model
cp "$exe" gpu-bin/cuda_kernels
strip gpu-bin/rstar gpu-bin/cuda_kernels gpu-bin/make_bench_model
# The test executable reads its fixtures under the directory it was built in.
pwd > gpu-bin/build-root
ls -l gpu-bin

#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh runs on a GPU machine that has no Rust toolchain: the release
# `rstar` binary, the CUDA test executable and the random-checkpoint writer (for the tree
# benchmark), stripped, into gpu-bin/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin rstar --example make_bench_model
# The CUDA tests, and the CPU backend's kernel and parity tests (its `cpu` section runs them on
# the GPU machine's processor, which may have AVX-512 and AVX512_BF16 where this one has not).
cargo test --release --no-run --lib --test cuda_kernels --test hf_parity --test alloc_free \
    --test engine_tree 2>&1 | tee /tmp/rstar-gpu-pack.log
exe() { grep -o "target/release/deps/$1-[0-9a-f]*" /tmp/rstar-gpu-pack.log | tail -1; }
rm -rf gpu-bin && mkdir -p gpu-bin
cp target/release/rstar gpu-bin/rstar
cp target/release/examples/make_bench_model gpu-bin/make_bench_model
cp "$(exe cuda_kernels)" gpu-bin/cuda_kernels
cp "$(exe rstar)" gpu-bin/lib_tests
for t in hf_parity alloc_free engine_tree; do cp "$(exe $t)" gpu-bin/$t; done
cargo bench --bench kernels --no-run 2>&1 | tee -a /tmp/rstar-gpu-pack.log
cp "$(exe kernels)" gpu-bin/kernels
strip gpu-bin/*
# The test executables read their fixtures under the directory it was built in.
pwd > gpu-bin/build-root
ls -l gpu-bin
# The same, compressed (a fifth of the size), for a transfer that limits the working tree's size;
# scripts/gpu-check.sh unpacks it when gpu-bin/ is absent.
tar -cJf gpu-bin.tar.xz gpu-bin
ls -l gpu-bin.tar.xz

#!/usr/bin/env python3
"""Independent reference for librstar's quantizers: tests/fixtures/gguf/quantize_ref.safetensors.

Quantizes fixed pseudo-random rows with llama.cpp's own code: a tiny C program calls
`ggml_quantize_chunk` (no importance matrix, so the `quantize_row_*_ref` functions that
`llama-quantize` runs) from `libggml-base.a` of the llama.cpp build that scripts/bench-vs-llamacpp.sh
makes (llama.cpp vendored in the PyPI sdist llama-cpp-python==0.3.36). Tensors: `input` (f32,
rows x cols) and `<TYPE>` (uint8, the quantized rows). Standard library only.

    python3 scripts/make_quantize_reference.py [--llamacpp ~/.cache/rstar/llamacpp-0.3.36]
"""
import argparse, json, math, os, random, struct, subprocess, tempfile

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "gguf", "quantize_ref.safetensors")
# ggml type ids of the formats librstar quantizes.
TYPES = {"Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14}
COLS = 512

C_PROG = r"""
#include <stdio.h>
#include <stdlib.h>
#include "ggml.h"
int main(int argc, char **argv) {
    int type = atoi(argv[1]); long rows = atol(argv[2]), cols = atol(argv[3]);
    float *x = malloc(sizeof(float) * rows * cols);
    if (fread(x, sizeof(float), rows * cols, stdin) != (size_t)(rows * cols)) return 2;
    size_t n = ggml_row_size(type, cols) * rows;
    void *y = calloc(1, n);
    size_t got = ggml_quantize_chunk(type, x, y, 0, rows, cols, NULL);
    if (got != n) return 3;
    fwrite(y, 1, n, stdout);
    return 0;
}
"""


def rows():
    """Rows that reach every branch: weight-like, wide, one-signed, zero, constant, outliers, tiny."""
    r = random.Random(28)
    out = [
        [r.gauss(0, 0.02) for _ in range(COLS)],
        [r.gauss(0, 1.0) for _ in range(COLS)],
        [r.gauss(0, 0.05) * (1 + 20 * (i % 97 == 0)) for i in range(COLS)],
        [abs(r.gauss(0, 1.0)) for _ in range(COLS)],
        [-abs(r.gauss(0, 1.0)) + 0.3 for _ in range(COLS)],
        [0.0] * COLS,
        [0.75] * COLS,
        [r.uniform(-1e-20, 1e-20) for _ in range(COLS)],
        [r.gauss(0, 1e3) for _ in range(COLS)],
        [r.choice([0.0, 0.0, 0.0, r.gauss(0, 1)]) for _ in range(COLS)],
        [math.sin(i * 0.37) * (i % 32) / 32 for i in range(COLS)],
        [r.uniform(-1, 1) ** 3 for _ in range(COLS)],
    ]
    return [[struct.unpack("<f", struct.pack("<f", v))[0] for v in row] for row in out]


def save_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamacpp", default=os.path.expanduser("~/.cache/rstar/llamacpp-0.3.36"))
    a = ap.parse_args()
    inc = os.path.join(a.llamacpp, "src/vendor/llama.cpp/ggml/include")
    lib = os.path.join(a.llamacpp, "build/ggml/src/libggml-base.a")
    data = rows()
    raw = b"".join(struct.pack(f"<{COLS}f", *row) for row in data)
    tensors = {"input": ("F32", [len(data), COLS], raw)}
    with tempfile.TemporaryDirectory() as d:
        src, exe = os.path.join(d, "q.c"), os.path.join(d, "q")
        open(src, "w").write(C_PROG)
        subprocess.run(["cc", "-O1", src, "-I", inc, lib, "-lm", "-lstdc++", "-fopenmp", "-lpthread", "-o", exe], check=True)
        for name, ty in TYPES.items():
            y = subprocess.run([exe, str(ty), str(len(data)), str(COLS)], input=raw, capture_output=True, check=True).stdout
            tensors[name] = ("U8", [len(y)], y)
            print(f"{name}: {len(y)} bytes")
    save_safetensors(OUT, tensors)
    print("wrote", os.path.normpath(OUT))


if __name__ == "__main__":
    main()

// Row-wise and element-wise ops of the decoder: embedding gather, RMSNorm, rotary embedding with
// the paged K/V write, SiLU-mul, residual add, bias add, f32 -> bf16 conversion.
// CPU references: backend::cpu::{rms_norm, rope, silu_mul, add_inplace}, Weight::row_to_f32.

template <typename W>
__device__ void embed_rows(const W* __restrict__ table, const u32* __restrict__ ids,
                           float* __restrict__ out, int h) {
    const W* src = table + (size_t)ids[blockIdx.x] * h;
    float* dst = out + (size_t)blockIdx.x * h;
    for (int i = threadIdx.x; i < h; i += blockDim.x) dst[i] = to_f32(src[i]);
}

// grid: one block per token.
extern "C" __global__ void embed_f32(const float* t, const u32* ids, float* out, int h) { embed_rows(t, ids, out, h); }
extern "C" __global__ void embed_f16(const __half* t, const u32* ids, float* out, int h) { embed_rows(t, ids, out, h); }
extern "C" __global__ void embed_bf16(const __nv_bfloat16* t, const u32* ids, float* out, int h) { embed_rows(t, ids, out, h); }

// For token r at position pos[r]: rotates the first 2*half dims of every q and k head ("rotate
// half" convention), writes q to q_out[r] and k, v to row kv_row[r] of the layer's K and V stores.
// qkv rows are [q (nh*hd) | k (nkv*hd) | v (nkv*hd)]. grid: one block per token.
extern "C" __global__ void rope_store_kv(const float* __restrict__ qkv, const u32* __restrict__ pos,
                                         const u32* __restrict__ kv_row,
                                         const float* __restrict__ inv_freq, int half,
                                         int nh, int nkv, int hd, float* __restrict__ q_out,
                                         float* __restrict__ k_store, float* __restrict__ v_store) {
    int r = blockIdx.x;
    int qd = nh * hd, kvd = nkv * hd;
    const float* row = qkv + (size_t)r * (qd + 2 * kvd);
    float* qo = q_out + (size_t)r * qd;
    float* ko = k_store + (size_t)kv_row[r] * kvd;
    float* vo = v_store + (size_t)kv_row[r] * kvd;
    float p = (float)pos[r];
    int heads = nh + nkv;
    for (int idx = threadIdx.x; idx < heads * hd; idx += blockDim.x) {
        int h = idx / hd, i = idx % hd;
        const float* src = h < nh ? row + h * hd : row + qd + (h - nh) * hd;
        float* dst = h < nh ? qo + h * hd : ko + (h - nh) * hd;
        float val;
        if (i < half) {
            float s, c;
            sincosf(p * inv_freq[i], &s, &c);
            val = src[i] * c - src[i + half] * s;
        } else if (i < 2 * half) {
            float s, c;
            sincosf(p * inv_freq[i - half], &s, &c);
            val = src[i] * c + src[i - half] * s;
        } else {
            val = src[i];
        }
        dst[i] = val;
    }
    const float* vsrc = row + qd + kvd;
    for (int i = threadIdx.x; i < kvd; i += blockDim.x) vo[i] = vsrc[i];
}

// act[r, i] = silu(gu[r, i]) * gu[r, inter + i]; n = rows * inter.
extern "C" __global__ void silu_mul(const float* __restrict__ gu, float* __restrict__ act, int inter,
                                    long long n) {
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n;
         e += (long long)gridDim.x * blockDim.x) {
        long long r = e / inter;
        int i = (int)(e % inter);
        float g = gu[r * 2 * inter + i], u = gu[r * 2 * inter + inter + i];
        act[e] = g / (1.0f + expf(-g)) * u;
    }
}

// x += y over n elements.
extern "C" __global__ void add_inplace(float* __restrict__ x, const float* __restrict__ y, long long n) {
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n;
         e += (long long)gridDim.x * blockDim.x)
        x[e] += y[e];
}

// out[r, j] += b[j] for r < rows, j < n, with row stride ld.
extern "C" __global__ void add_bias(float* __restrict__ out, const float* __restrict__ b, int n, int ld,
                                    long long total) {
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        long long r = e / n;
        int j = (int)(e % n);
        out[r * ld + j] += b[j];
    }
}

// dst = bf16(src), round to nearest even, over n elements.
extern "C" __global__ void to_bf16(const float* __restrict__ src, __nv_bfloat16* __restrict__ dst, long long n) {
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n;
         e += (long long)gridDim.x * blockDim.x)
        dst[e] = __float2bfloat16_rn(src[e]);
}

// Fills n bf16 values with a deterministic pseudo-random pattern scaled by `scale` (bench weights
// generated on the device: no host upload of a 15 GB model).
extern "C" __global__ void fill_random_bf16(__nv_bfloat16* __restrict__ dst, long long n, u64 seed, float scale) {
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n;
         e += (long long)gridDim.x * blockDim.x) {
        u64 z = seed + (u64)e * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        float u = (float)(z >> 40) * (1.0f / 16777216.0f);
        dst[e] = __float2bfloat16_rn((2.0f * u - 1.0f) * scale);
    }
}

// Splits f32 rows into two bf16 halves for the exact-precision GEMM: hi = bf16(x) into dst[0, n),
// lo = bf16(x - hi) into dst[n, 2n). A product with hi and lo stacked as 2m rows, summed by
// `add_halves`, carries about 16 mantissa bits of each activation instead of 8.
extern "C" __global__ void to_bf16_split(const float* __restrict__ src, __nv_bfloat16* __restrict__ dst, long long n) {
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < n;
         e += (long long)gridDim.x * blockDim.x) {
        float x = src[e];
        __nv_bfloat16 hi = __float2bfloat16_rn(x);
        dst[e] = hi;
        dst[n + e] = __float2bfloat16_rn(x - __bfloat162float(hi));
    }
}

// out[r, col0 + j] = s[r, j] + s[m + r, j] for r < m, j < n (s has row stride n).
extern "C" __global__ void add_halves(const float* __restrict__ s, float* __restrict__ out, int m, int n,
                                      int ld, int col0) {
    long long total = (long long)m * n;
    for (long long e = blockIdx.x * (long long)blockDim.x + threadIdx.x; e < total;
         e += (long long)gridDim.x * blockDim.x) {
        long long r = e / n;
        int j = (int)(e % n);
        out[r * ld + col0 + j] = s[e] + s[total + e];
    }
}

// x[r] += y[r] (y may be null: plain RMSNorm); out[r] = w * x[r] / sqrt(mean(x[r]^2) + eps): the
// residual add fused with the next RMSNorm. grid: one block per row.
extern "C" __global__ void add_rms_norm(float* __restrict__ x, const float* __restrict__ y,
                                        const float* __restrict__ w, float eps,
                                        float* __restrict__ out, int d) {
    float* xr = x + (size_t)blockIdx.x * d;
    const float* yr = y + (size_t)blockIdx.x * d;
    float* orow = out + (size_t)blockIdx.x * d;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float v = xr[i];
        if (y) {
            v += yr[i];
            xr[i] = v;
        }
        ss += v * v;
    }
    ss = block_sum(ss);
    float inv = 1.0f / sqrtf(ss / (float)d + eps);
    for (int i = threadIdx.x; i < d; i += blockDim.x) orow[i] = w[i] * (xr[i] * inv);
}

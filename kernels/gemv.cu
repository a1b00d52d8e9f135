// Matrix-vector products for decode and small batches: out[i, col0 + j] = sum_k x[i, k] * w[j, k]
// for i < M rows (M a compile-time 1..8), j < n, with w [n, k] in its stored dtype and x, out f32.
// One warp per weight row, 16-byte loads, f32 accumulation. The weight stream dominates: each
// weight byte is read once for all M rows. CPU reference: backend::cpu::matmul (scalar path).

template <typename W> struct Vec16;
template <> struct Vec16<__nv_bfloat16> { static const int N = 8; };
template <> struct Vec16<__half> { static const int N = 8; };
template <> struct Vec16<float> { static const int N = 4; };

template <typename W>
__device__ __forceinline__ void load_vec(const W* p, float* out);
template <>
__device__ __forceinline__ void load_vec<__nv_bfloat16>(const __nv_bfloat16* p, float* out) {
    uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 f = __bfloat1622float2(h[i]);
        out[2 * i] = f.x;
        out[2 * i + 1] = f.y;
    }
}
template <>
__device__ __forceinline__ void load_vec<__half>(const __half* p, float* out) {
    uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
    const __half2* h = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 f = __half22float2(h[i]);
        out[2 * i] = f.x;
        out[2 * i + 1] = f.y;
    }
}
template <>
__device__ __forceinline__ void load_vec<float>(const float* p, float* out) {
    float4 f = __ldg(reinterpret_cast<const float4*>(p));
    out[0] = f.x; out[1] = f.y; out[2] = f.z; out[3] = f.w;
}

// grid.x = ceil(n / warps_per_block); `vec` != 0 when k is a multiple of the vector width (rows
// then start 16-byte aligned); otherwise the scalar loop covers the whole row.
template <typename W, int M>
__device__ void gemv_rows(const float* __restrict__ x, const W* __restrict__ w, float* __restrict__ out,
                          int n, int k, int ld, int col0, int vec) {
    const int V = Vec16<W>::N;
    int lane = threadIdx.x & 31;
    int j = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (j >= n) return;
    const W* wr = w + (size_t)j * k;
    float acc[M];
#pragma unroll
    for (int i = 0; i < M; i++) acc[i] = 0.0f;
    // Vector v covers elements [v * V, v * V + V); lane l takes vectors l, l + 32, ...: four
    // 16-byte weight loads in flight per lane in the main loop, then single ones.
    int nvec = vec ? k / V : 0;
    int v = lane;
    for (; v + 96 < nvec; v += 128) {
        float wq[4][V];
#pragma unroll
        for (int u = 0; u < 4; u++) load_vec<W>(wr + (v + 32 * u) * V, wq[u]);
#pragma unroll
        for (int i = 0; i < M; i++) {
            const float* xr = x + (size_t)i * k;
            float s = 0.0f;
#pragma unroll
            for (int u = 0; u < 4; u++) {
#pragma unroll
                for (int e = 0; e < V; e += 4) {
                    float4 xa = *reinterpret_cast<const float4*>(xr + (v + 32 * u) * V + e);
                    s += wq[u][e] * xa.x + wq[u][e + 1] * xa.y + wq[u][e + 2] * xa.z + wq[u][e + 3] * xa.w;
                }
            }
            acc[i] += s;
        }
    }
    for (; v < nvec; v += 32) {
        float wa[V];
        load_vec<W>(wr + v * V, wa);
#pragma unroll
        for (int i = 0; i < M; i++) {
            const float* xr = x + (size_t)i * k + v * V;
            float s = 0.0f;
#pragma unroll
            for (int e = 0; e < V; e += 4) {
                float4 xa = *reinterpret_cast<const float4*>(xr + e);
                s += wa[e] * xa.x + wa[e + 1] * xa.y + wa[e + 2] * xa.z + wa[e + 3] * xa.w;
            }
            acc[i] += s;
        }
    }
    int kv = nvec * V;
    for (int kk = kv + lane; kk < k; kk += 32) {
        float wv = to_f32(wr[kk]);
#pragma unroll
        for (int i = 0; i < M; i++) acc[i] += wv * x[(size_t)i * k + kk];
    }
#pragma unroll
    for (int i = 0; i < M; i++) {
        float s = warp_sum(acc[i]);
        if (lane == 0) out[(size_t)i * ld + col0 + j] = s;
    }
}

#define GEMV(NAME, W, M)                                                                          \
    extern "C" __global__ void __launch_bounds__(256) NAME(const float* x, const W* w, float* out, \
                                                          int n, int k, int ld, int col0, int vec) { \
        gemv_rows<W, M>(x, w, out, n, k, ld, col0, vec);                                           \
    }
#define GEMV_ALL(M)                       \
    GEMV(gemv_bf16_m##M, __nv_bfloat16, M) \
    GEMV(gemv_f16_m##M, __half, M)         \
    GEMV(gemv_f32_m##M, float, M)
GEMV_ALL(1)
GEMV_ALL(2)
GEMV_ALL(4)
GEMV_ALL(8)

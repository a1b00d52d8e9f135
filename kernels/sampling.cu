// Token selection on the device, so only ids cross to the host. One block (1024 threads) per row of
// logits. temperature <= 0 is greedy (argmax, lowest id on ties). Otherwise z = logits / T, and the
// kept set is {i : z_i >= tau}, tau the larger of the top-k threshold (the k-th largest z; ties at
// it are kept) and the top-p threshold (the largest value whose kept softmax mass, renormalised
// over the top-k set, is >= top_p). Both thresholds are found by bisection on the order-preserving
// integer image of z, with block reductions in a fixed order (reproducible). The draw
// u = rng(seed, counter) in [0, 1) picks the first id, in id order, whose running kept mass
// exceeds u * total. CPU reference: engine::sampling::device_sample_reference.

struct SampleParams {
    float temperature;
    u32 top_k;    // 0 = all
    float top_p;  // 1 = all
    u32 pad;
    u64 seed;
    u64 counter;
};

__device__ __forceinline__ u32 order_key(float f) {
    u32 b = __float_as_uint(f);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ u64 splitmix(u64 z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

__device__ u32 block_count_ge(const float* z, int n, u32 tau) {
    float c = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) c += order_key(z[i]) >= tau ? 1.0f : 0.0f;
    return (u32)block_sum(c);
}

__device__ float block_mass_ge(const float* z, int n, u32 tau, float zmax) {
    float m = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        if (order_key(z[i]) >= tau) m += expf(z[i] - zmax);
    return block_sum(m);
}

// z = logits / T is written to `scratch` (same shape as logits).
extern "C" __global__ void __launch_bounds__(1024)
sample_rows(const float* __restrict__ logits, const SampleParams* __restrict__ params, int n,
            float* __restrict__ scratch, u32* __restrict__ out_ids) {
    const float* lr = logits + (size_t)blockIdx.x * n;
    float* z = scratch + (size_t)blockIdx.x * n;
    SampleParams sp = params[blockIdx.x];
    __shared__ float best_v[32];
    __shared__ int best_i[32];
    __shared__ float cums[1024];
    __shared__ int chosen;

    if (sp.temperature <= 0.0f) {
        float bv = -INFINITY;
        int bi = 0x7fffffff;
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            float v = lr[i];
            if (v > bv || (v == bv && i < bi)) { bv = v; bi = i; }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (ov > bv || (ov == bv && oi < bi)) { bv = ov; bi = oi; }
        }
        int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
        if (lane == 0) { best_v[warp] = bv; best_i[warp] = bi; }
        __syncthreads();
        if (threadIdx.x == 0) {
            float v = best_v[0];
            int id = best_i[0];
            for (int w = 1; w < (int)(blockDim.x >> 5); w++)
                if (best_v[w] > v || (best_v[w] == v && best_i[w] < id)) { v = best_v[w]; id = best_i[w]; }
            out_ids[blockIdx.x] = (u32)id;
        }
        return;
    }

    float inv_t = 1.0f / sp.temperature;
    float zmax = -INFINITY;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = lr[i] * inv_t;
        z[i] = v;
        zmax = fmaxf(zmax, v);
    }
    zmax = block_max(zmax);  // also orders the z writes before the reads below
    // Top-k threshold: the largest tau with count(key >= tau) >= k.
    u32 tau = 0;
    if (sp.top_k > 0 && sp.top_k < (u32)n) {
        u32 lo = 0, hi = 0xffffffffu;
        while (lo < hi) {
            u32 mid = (u32)(((u64)lo + (u64)hi + 1) >> 1);
            if (block_count_ge(z, n, mid) >= sp.top_k) lo = mid; else hi = mid - 1;
        }
        tau = lo;
    }
    if (sp.top_p < 1.0f) {
        float target = sp.top_p * block_mass_ge(z, n, tau, zmax);
        u32 lo = tau, hi = 0xffffffffu;
        while (lo < hi) {
            u32 mid = (u32)(((u64)lo + (u64)hi + 1) >> 1);
            if (block_mass_ge(z, n, mid, zmax) >= target) lo = mid; else hi = mid - 1;
        }
        tau = lo;
    }
    // Kept mass per contiguous chunk, then a scan over the chunks in id order.
    int per = (n + blockDim.x - 1) / blockDim.x;
    int b0 = threadIdx.x * per, b1 = min(n, b0 + per);
    float mine = 0.0f;
    for (int i = b0; i < b1; i++)
        if (order_key(z[i]) >= tau) mine += expf(z[i] - zmax);
    cums[threadIdx.x] = mine;
    if (threadIdx.x == 0) chosen = 0x7fffffff;
    __syncthreads();
    if (threadIdx.x == 0) {
        float run = 0.0f;
        for (int t = 0; t < (int)blockDim.x; t++) { float c = cums[t]; cums[t] = run; run += c; }
        u64 r = splitmix(sp.seed ^ splitmix(sp.counter));
        float u = (float)(r >> 40) * (1.0f / 16777216.0f);
        best_v[0] = u * run;
    }
    __syncthreads();
    float target = best_v[0];
    float run = cums[threadIdx.x];
    if (run <= target && run + mine > target) {
        for (int i = b0; i < b1; i++) {
            if (order_key(z[i]) < tau) continue;
            run += expf(z[i] - zmax);
            if (run > target) { atomicMin(&chosen, i); break; }
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int id = chosen;
        if (id == 0x7fffffff) {  // rounding left the draw past the end: take the last kept id
            for (int i = n - 1; i >= 0; i--) if (order_key(z[i]) >= tau) { id = i; break; }
        }
        out_ids[blockIdx.x] = (u32)id;
    }
}

// Causal grouped-query attention over the paged K/V store, for prefill chunks and decode tokens
// in one launch. The host cuts the batch into tiles: a tile is up to `rows_max / group` consecutive
// query tokens of one sequence, and a block handles one (tile, kv head, split): its rows are the
// tile's tokens times the `group` query heads that share the kv head, so each K/V row is read once
// for all of them. K/V positions stream through shared memory in chunks of KB rows with an online
// softmax (flash-attention style). With splits > 1 (long contexts, few tiles: decode), each split
// covers a slice of the positions and writes (max, sum, unnormalised output) partials that
// `attn_combine` merges. CPU reference: backend::cpu::attention.

#define KB 32

struct Tile {
    u32 seq;    // index into seq_start / table_off
    u32 tok0;   // first query token of the tile (row in q / out)
    u32 pos0;   // position of that token
    u32 ntok;   // tokens in the tile
};

// Rows a block takes (tokens x query heads of one kv group); the host keeps group <= ROWS.
#define ROWS 32
// Largest head dim: each thread keeps 2 rows x ceil(hd / 8) output columns in registers.
#define MAX_HD 256

// Dynamic shared memory layout (floats): q[ROWS][hd+1] | k[KB][hd+1] | v[KB][hd] | p[ROWS][KB] |
// m[ROWS] | l[ROWS] | alpha[ROWS]. 128 threads; thread (tr, tc) = (tid / 8, tid % 8) owns rows
// 2tr, 2tr+1: scores against keys tc + 8u (u < 4), outputs in columns tc + 8u (u < hd / 8), so each
// shared-memory load feeds several multiply-adds.
extern "C" __global__ void __launch_bounds__(128)
attn_paged(const float* __restrict__ q, const float* __restrict__ kst, const float* __restrict__ vst,
           const Tile* __restrict__ tiles, const u32* __restrict__ tables, const u32* __restrict__ table_off,
           int nh, int nkv, int hd, int block_size, int window, float scale, int rows_max,
           int splits, int ntok_total, float* __restrict__ out, float* __restrict__ part) {
    extern __shared__ float sm[];
    const Tile tile = tiles[blockIdx.x];
    const int kvh = blockIdx.y, split = blockIdx.z;
    const int group = nh / nkv, qd = nh * hd, kvd = nkv * hd;
    const int rows = tile.ntok * group;
    const int hs = hd + 1;
    float* qs = sm;
    float* ks = qs + ROWS * hs;
    float* vs = ks + KB * hs;
    float* ps = vs + KB * hd;
    float* mrow = ps + ROWS * KB;
    float* lrow = mrow + ROWS;
    float* alpha = lrow + ROWS;
    const u32* table = tables + table_off[tile.seq];
    const int tr = threadIdx.x >> 3, tc = threadIdx.x & 7;
    const int r0 = 2 * tr;

    // Row r = token (r / group), query head kvh * group + r % group; rows past `rows` are zero.
    // Loads are issued in batches of 8 per thread before any is stored.
    for (int e0 = 0; e0 < ROWS * hd; e0 += 8 * 128) {
        float qv[8];
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int e = e0 + threadIdx.x + i * 128;
            int r = e / hd, d = e % hd;
            qv[i] = 0.0f;
            if (e < ROWS * hd && r < rows) {
                int t = r / group, h = kvh * group + r % group;
                qv[i] = __ldg(q + (size_t)(tile.tok0 + t) * qd + h * hd + d);
            }
        }
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int e = e0 + threadIdx.x + i * 128;
            if (e < ROWS * hd) qs[(e / hd) * hs + e % hd] = qv[i];
        }
    }
    for (int r = threadIdx.x; r < ROWS; r += blockDim.x) {
        mrow[r] = -INFINITY;
        lrow[r] = 0.0f;
    }
    float acc[2][MAX_HD / 8];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int u = 0; u < MAX_HD / 8; u++) acc[i][u] = 0.0f;
    // Positions this tile attends to: [lo, last]; this split takes an equal share of KB chunks.
    int last = tile.pos0 + tile.ntok - 1;
    int lo = (window > 0 && (int)tile.pos0 + 1 > window) ? (int)tile.pos0 + 1 - window : 0;
    int chunks = (last - lo) / KB + 1;
    int per = (chunks + splits - 1) / splits;
    int c0 = split * per, c1 = min(chunks, c0 + per);
    __syncthreads();

    for (int c = c0; c < c1; c++) {
        int p0 = lo + c * KB;
        // Stage K and V rows p0 .. p0 + KB: 16-byte loads, up to 8 per matrix in flight per thread
        // (head dims that are not a multiple of 4 take the scalar path).
        if ((hd & 3) == 0) {
            const int h4 = hd >> 2, n4 = KB * h4;
            float4 kr[8], vr[8];
#pragma unroll
            for (int i = 0; i < 8; i++) {
                int e = threadIdx.x + i * 128;
                kr[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                vr[i] = kr[i];
                if (e < n4) {
                    int j = e / h4, d4 = e % h4, p = p0 + j;
                    if (p <= last) {
                        size_t row = (size_t)table[p / block_size] * block_size + p % block_size;
                        const float* kb = kst + row * kvd + kvh * hd;
                        const float* vb = vst + row * kvd + kvh * hd;
                        kr[i] = __ldg(reinterpret_cast<const float4*>(kb) + d4);
                        vr[i] = __ldg(reinterpret_cast<const float4*>(vb) + d4);
                    }
                }
            }
#pragma unroll
            for (int i = 0; i < 8; i++) {
                int e = threadIdx.x + i * 128;
                if (e < n4) {
                    int j = e / h4, d = (e % h4) * 4;
                    float* kd = ks + j * hs + d;
                    kd[0] = kr[i].x; kd[1] = kr[i].y; kd[2] = kr[i].z; kd[3] = kr[i].w;
                    *reinterpret_cast<float4*>(vs + j * hd + d) = vr[i];
                }
            }
            for (int e = threadIdx.x + 8 * 128; e < n4; e += blockDim.x) {  // hd > 128
                int j = e / h4, d = (e % h4) * 4, p = p0 + j;
                float4 kk = make_float4(0.0f, 0.0f, 0.0f, 0.0f), vv = kk;
                if (p <= last) {
                    size_t row = (size_t)table[p / block_size] * block_size + p % block_size;
                    kk = __ldg(reinterpret_cast<const float4*>(kst + row * kvd + kvh * hd) + d / 4);
                    vv = __ldg(reinterpret_cast<const float4*>(vst + row * kvd + kvh * hd) + d / 4);
                }
                float* kd = ks + j * hs + d;
                kd[0] = kk.x; kd[1] = kk.y; kd[2] = kk.z; kd[3] = kk.w;
                *reinterpret_cast<float4*>(vs + j * hd + d) = vv;
            }
        } else {
            for (int e = threadIdx.x; e < KB * hd; e += blockDim.x) {
                int j = e / hd, d = e % hd;
                int p = p0 + j;
                float kvv = 0.0f, vvv = 0.0f;
                if (p <= last) {
                    size_t row = (size_t)table[p / block_size] * block_size + p % block_size;
                    kvv = kst[row * kvd + kvh * hd + d];
                    vvv = vst[row * kvd + kvh * hd + d];
                }
                ks[j * hs + d] = kvv;
                vs[j * hd + d] = vvv;
            }
        }
        __syncthreads();
        // Scores: 2 rows x 4 keys per thread, with the causal and window masks.
        {
            float sc[2][4];
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int u = 0; u < 4; u++) sc[i][u] = 0.0f;
            const float* q0 = qs + r0 * hs;
            for (int d = 0; d < hd; d++) {
                float a0 = q0[d], a1 = q0[hs + d];
#pragma unroll
                for (int u = 0; u < 4; u++) {
                    float kv = ks[(tc + 8 * u) * hs + d];
                    sc[0][u] += a0 * kv;
                    sc[1][u] += a1 * kv;
                }
            }
#pragma unroll
            for (int i = 0; i < 2; i++) {
                int r = r0 + i;
                int pos = tile.pos0 + r / group;
#pragma unroll
                for (int u = 0; u < 4; u++) {
                    int j = tc + 8 * u, p = p0 + j;
                    bool visible = r < rows && p <= pos && (window <= 0 || p + window > pos);
                    ps[r * KB + j] = visible ? sc[i][u] * scale : -INFINITY;
                }
            }
        }
        __syncthreads();
        // Online softmax: one warp per row.
        int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
        for (int r = warp; r < ROWS; r += blockDim.x >> 5) {
            float sv = ps[r * KB + lane];
            float mx = warp_max(sv);
            float mold = mrow[r];
            float mnew = fmaxf(mold, mx);
            float pv = mnew == -INFINITY ? 0.0f : expf(sv - mnew);
            float sum = warp_sum(pv);
            ps[r * KB + lane] = pv;
            if (lane == 0) {
                float a = mold == -INFINITY ? 0.0f : expf(mold - mnew);
                alpha[r] = a;
                lrow[r] = lrow[r] * a + sum;
                mrow[r] = mnew;
            }
        }
        __syncthreads();
        // acc = acc * alpha + P V for the thread's 2 rows and columns tc + 8u.
        {
            float al0 = alpha[r0], al1 = alpha[r0 + 1];
#pragma unroll
            for (int u = 0; u < MAX_HD / 8; u++) {
                acc[0][u] *= al0;
                acc[1][u] *= al1;
            }
            const float* p0r = ps + r0 * KB;
            for (int j = 0; j < KB; j++) {
                float pa = p0r[j], pb = p0r[KB + j];
                const float* vr = vs + j * hd + tc;
#pragma unroll
                for (int u = 0; u < MAX_HD / 8; u++) {
                    if (8 * u < hd - tc) {
                        float vv = vr[8 * u];
                        acc[0][u] += pa * vv;
                        acc[1][u] += pb * vv;
                    }
                }
            }
        }
        __syncthreads();
    }
    // Output (or partials).
#pragma unroll
    for (int i = 0; i < 2; i++) {
        int r = r0 + i;
        if (r >= rows) continue;
        int t = r / group, h = kvh * group + r % group;
        float l = lrow[r];
#pragma unroll
        for (int u = 0; u < MAX_HD / 8; u++) {
            int d = tc + 8 * u;
            if (d >= hd) continue;
            size_t orow = (size_t)(tile.tok0 + t) * qd + h * hd + d;
            if (splits == 1) {
                out[orow] = l > 0.0f ? acc[i][u] / l : 0.0f;
            } else {
                // part: [splits][ntok_total * qd] unnormalised outputs, then [splits][ntok_total * nh]
                // (max, sum) pairs.
                part[(size_t)split * ntok_total * qd + orow] = acc[i][u];
                if (d == 0) {
                    float* ml = part + (size_t)splits * ntok_total * qd;
                    size_t mi = ((size_t)split * ntok_total * nh + (size_t)(tile.tok0 + t) * nh + h) * 2;
                    ml[mi] = mrow[r];
                    ml[mi + 1] = l;
                }
            }
        }
    }
}

// Merges the split partials: grid = tokens, threads over nh * hd outputs.
extern "C" __global__ void attn_combine(const float* __restrict__ part, int splits, int ntok_total,
                                        int nh, int hd, float* __restrict__ out) {
    int t = blockIdx.x, qd = nh * hd;
    const float* ml = part + (size_t)splits * ntok_total * qd;
    for (int e = threadIdx.x; e < qd; e += blockDim.x) {
        int h = e / hd;
        float mx = -INFINITY;
        for (int s = 0; s < splits; s++)
            mx = fmaxf(mx, ml[((size_t)s * ntok_total * nh + (size_t)t * nh + h) * 2]);
        float l = 0.0f, o = 0.0f;
        if (mx != -INFINITY) {
            for (int s = 0; s < splits; s++) {
                size_t i = ((size_t)s * ntok_total * nh + (size_t)t * nh + h) * 2;
                float ms = ml[i];
                if (ms == -INFINITY) continue;
                float w = expf(ms - mx);
                l += ml[i + 1] * w;
                o += part[(size_t)s * ntok_total * qd + (size_t)t * qd + e] * w;
            }
        }
        out[(size_t)t * qd + e] = l > 0.0f ? o / l : 0.0f;
    }
}

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

// Dynamic shared memory layout (floats): q[rows_max][hd] | k[KB][hd+1] | v[KB][hd] |
// s[rows_max][KB] | acc[rows_max][hd] | m[rows_max] | l[rows_max] | alpha[rows_max].
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
    float* qs = sm;
    float* ks = qs + rows_max * hd;
    float* vs = ks + KB * (hd + 1);
    float* ss = vs + KB * hd;
    float* acc = ss + rows_max * KB;
    float* mrow = acc + rows_max * hd;
    float* lrow = mrow + rows_max;
    float* alpha = lrow + rows_max;
    const u32* table = tables + table_off[tile.seq];

    // Row r = token (r / group), query head kvh * group + r % group.
    for (int e = threadIdx.x; e < rows * hd; e += blockDim.x) {
        int r = e / hd, d = e % hd;
        int t = r / group, h = kvh * group + r % group;
        qs[e] = q[(size_t)(tile.tok0 + t) * qd + h * hd + d];
        acc[e] = 0.0f;
    }
    for (int r = threadIdx.x; r < rows; r += blockDim.x) {
        mrow[r] = -INFINITY;
        lrow[r] = 0.0f;
    }
    // Positions this tile attends to: [lo, hi]; this split takes an equal share of KB chunks.
    int last = tile.pos0 + tile.ntok - 1;
    int lo = (window > 0 && (int)tile.pos0 + 1 > window) ? (int)tile.pos0 + 1 - window : 0;
    int chunks = (last - lo) / KB + 1;
    int per = (chunks + splits - 1) / splits;
    int c0 = split * per, c1 = min(chunks, c0 + per);
    __syncthreads();

    for (int c = c0; c < c1; c++) {
        int p0 = lo + c * KB;
        for (int e = threadIdx.x; e < KB * hd; e += blockDim.x) {
            int j = e / hd, d = e % hd;
            int p = p0 + j;
            float kvv = 0.0f, vvv = 0.0f;
            if (p <= last) {
                size_t row = (size_t)table[p / block_size] * block_size + p % block_size;
                kvv = kst[row * kvd + kvh * hd + d];
                vvv = vst[row * kvd + kvh * hd + d];
            }
            ks[j * (hd + 1) + d] = kvv;
            vs[j * hd + d] = vvv;
        }
        __syncthreads();
        // Scores with the causal and window masks.
        for (int e = threadIdx.x; e < rows * KB; e += blockDim.x) {
            int r = e / KB, j = e % KB;
            int pos = tile.pos0 + r / group, p = p0 + j;
            float s = -INFINITY;
            bool visible = p <= pos && (window <= 0 || p + window > pos);
            if (visible) {
                const float* qr = qs + r * hd;
                const float* kr = ks + j * (hd + 1);
                float dot = 0.0f;
                for (int d = 0; d < hd; d++) dot += qr[d] * kr[d];
                s = dot * scale;
            }
            ss[e] = s;
        }
        __syncthreads();
        // Online softmax: one warp per row.
        int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
        for (int r = warp; r < rows; r += blockDim.x >> 5) {
            float s = ss[r * KB + lane];
            float mx = warp_max(s);
            float mold = mrow[r];
            float mnew = fmaxf(mold, mx);
            float p = mnew == -INFINITY ? 0.0f : expf(s - mnew);
            float sum = warp_sum(p);
            ss[r * KB + lane] = p;
            if (lane == 0) {
                float a = mold == -INFINITY ? 0.0f : expf(mold - mnew);
                alpha[r] = a;
                lrow[r] = lrow[r] * a + sum;
                mrow[r] = mnew;
            }
        }
        __syncthreads();
        for (int e = threadIdx.x; e < rows * hd; e += blockDim.x) {
            int r = e / hd, d = e % hd;
            const float* pr = ss + r * KB;
            float o = acc[e] * alpha[r];
#pragma unroll 8
            for (int j = 0; j < KB; j++) o += pr[j] * vs[j * hd + d];
            acc[e] = o;
        }
        __syncthreads();
    }
    // Output (or partials).
    for (int e = threadIdx.x; e < rows * hd; e += blockDim.x) {
        int r = e / hd, d = e % hd;
        int t = r / group, h = kvh * group + r % group;
        size_t orow = (size_t)(tile.tok0 + t) * qd + h * hd + d;
        if (splits == 1) {
            out[orow] = lrow[r] > 0.0f ? acc[e] / lrow[r] : 0.0f;
        } else {
            // part: [splits][ntok_total * qd] unnormalised outputs, then [splits][ntok_total * nh]
            // (max, sum) pairs.
            part[(size_t)split * ntok_total * qd + orow] = acc[e];
            if (d == 0) {
                float* ml = part + (size_t)splits * ntok_total * qd;
                size_t i = ((size_t)split * ntok_total * nh + (size_t)(tile.tok0 + t) * nh + h) * 2;
                ml[i] = mrow[r];
                ml[i + 1] = lrow[r];
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

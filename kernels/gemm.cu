// Tensor-core GEMM for prefill and batched decode: C[i, col0 + j] = sum_k A[i, k] * B[j, k] for
// i < m, j < n, with A [m, k] bf16 activations, B [n, k] bf16 weights (the HF linear layout), C f32
// with row stride ldc. 128x128x32 block tiles, 8 warps each owning 64x32, WMMA 16x16x16 bf16 with
// f32 accumulation, cp.async double buffering. Needs k % 8 == 0 (16-byte rows of 8 elements).
// CPU reference: backend::cpu::matmul on the bf16-rounded activations.
#include <mma.h>
using namespace nvcuda;

#define BM 128
#define BN 128
#define BK 32
#define PAD 8
#define LDS (BK + PAD)

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool pred) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    int bytes = pred ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::); }

// Loads one BM x BK tile of A and one BN x BK tile of B (zero-filled outside the matrices).
__device__ __forceinline__ void load_tiles(__nv_bfloat16* as, __nv_bfloat16* bs,
                                           const __nv_bfloat16* __restrict__ a,
                                           const __nv_bfloat16* __restrict__ b, int m, int n, int k,
                                           int row0, int colb0, int k0) {
    // 128 rows x 4 chunks of 8 elements = 512 chunks per matrix; 256 threads take 2 each.
    for (int c = threadIdx.x; c < BM * (BK / 8); c += blockDim.x) {
        int r = c >> 2, kc = (c & 3) * 8;
        int gr = row0 + r, gk = k0 + kc;
        bool ok = gr < m && gk < k;
        cp_async16(as + r * LDS + kc, ok ? a + (size_t)gr * k + gk : a, ok);
        int gn = colb0 + r;
        bool okb = gn < n && gk < k;
        cp_async16(bs + r * LDS + kc, okb ? b + (size_t)gn * k + gk : b, okb);
    }
}

extern "C" __global__ void __launch_bounds__(256)
gemm_bf16(const __nv_bfloat16* __restrict__ a, const __nv_bfloat16* __restrict__ b,
          float* __restrict__ c, int m, int n, int k, int ldc, int col0) {
    __shared__ __align__(128) __nv_bfloat16 smem[2 * 2 * BM * LDS];
    __shared__ __align__(32) float stage[8][16 * 16];
    // Stage s holds A at smem + s * 2 * BM * LDS and B right after it (BN == BM).
#define AS(s) (smem + (s) * 2 * BM * LDS)
#define BS(s) (smem + (s) * 2 * BM * LDS + BM * LDS)
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int wm = (warp >> 2) * 64;  // 2 warps down
    int wn = (warp & 3) * 32;   // 4 warps across
    int row0 = blockIdx.y * BM, colb0 = blockIdx.x * BN;

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[4][2];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) wmma::fill_fragment(acc[i][j], 0.0f);

    int tiles = (k + BK - 1) / BK;
    load_tiles(AS(0), BS(0), a, b, m, n, k, row0, colb0, 0);
    cp_async_commit();
    for (int t = 0; t < tiles; t++) {
        int cur = t & 1;
        cp_async_wait_all();
        __syncthreads();
        if (t + 1 < tiles) {
            load_tiles(AS(cur ^ 1), BS(cur ^ 1), a, b, m, n, k, row0, colb0, (t + 1) * BK);
        }
        cp_async_commit();
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[4];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb[2];
#pragma unroll
            for (int i = 0; i < 4; i++) wmma::load_matrix_sync(fa[i], AS(cur) + (wm + i * 16) * LDS + kk, LDS);
#pragma unroll
            for (int j = 0; j < 2; j++) wmma::load_matrix_sync(fb[j], BS(cur) + (wn + j * 16) * LDS + kk, LDS);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 2; j++) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
        __syncthreads();
    }
    // Write back through a per-warp 16x16 staging tile (handles the matrix edges and any ldc).
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 2; j++) {
            wmma::store_matrix_sync(stage[warp], acc[i][j], 16, wmma::mem_row_major);
            __syncwarp();
            for (int e = lane; e < 256; e += 32) {
                int r = row0 + wm + i * 16 + (e >> 4), cc = colb0 + wn + j * 16 + (e & 15);
                if (r < m && cc < n) c[(size_t)r * ldc + col0 + cc] = stage[warp][e];
            }
            __syncwarp();
        }
}

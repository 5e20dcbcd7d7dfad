#include <mma.h>
#include <cuda_fp16.h>
#include <cuda_pipeline.h>
using namespace nvcuda;
// A well-formed main loop: 4 warps, 32x64 warp tiles, K chunk 32, double-buffered cp.async copies, no index maths
// beyond pointer increments. It must pass every limit (the checks are not impossible to meet).
constexpr int kLd = 40;
__global__ void __launch_bounds__(128) cleanLoop(__half const* a, __half const* b, float* c, int chunks)
{
    __shared__ __align__(128) __half sA[2][128 * kLd];
    __shared__ __align__(128) __half sB[2][64 * kLd];
    int const warp = threadIdx.x >> 5, t = threadIdx.x;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][4];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
    // each thread copies 4 A and 2 B 16-byte vectors per chunk
    __half const* ga = a + t * 32;
    __half const* gb = b + t * 16;
    auto issue = [&](int buf) {
#pragma unroll
        for (int v = 0; v < 4; ++v) __pipeline_memcpy_async(&sA[buf][t * kLd + v * 8], ga + v * 8, 16);
#pragma unroll
        for (int v = 0; v < 2; ++v) __pipeline_memcpy_async(&sB[buf][(t >> 1) * kLd + (t & 1) * 16 + v * 8], gb + v * 8, 16);
        __pipeline_commit();
        ga += 128 * 32;
        gb += 64 * 32;
    };
    issue(0);
    for (int k = 0; k < chunks; ++k) {
        int const cur = k & 1;
        if (k + 1 < chunks) issue(cur ^ 1);
        __pipeline_wait_prior(k + 1 < chunks ? 1 : 0);
        __syncthreads();
#pragma unroll
        for (int ks = 0; ks < 2; ++ks) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fb[4];
#pragma unroll
            for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], &sA[cur][(warp * 32 + i * 16) * kLd + ks * 16], kLd);
#pragma unroll
            for (int j = 0; j < 4; ++j) wmma::load_matrix_sync(fb[j], &sB[cur][(j * 16) * kLd + ks * 16], kLd);
#pragma unroll
            for (int i = 0; i < 2; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j)
            wmma::store_matrix_sync(c + (warp * 32 + i * 16) * 64 + j * 16, acc[i][j], 64, wmma::mem_row_major);
}

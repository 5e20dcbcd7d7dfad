#include <mma.h>
#include <cuda_fp16.h>
using namespace nvcuda;
// A tensor-core loop whose per-iteration index maths divides by a run-time value (the pattern the check catches).
__global__ void divLoop(__half const* a, __half const* b, float* c, int n, int k, int chans)
{
    __shared__ __align__(32) __half sA[16 * 16], sB[16 * 16];
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    for (int k0 = 0; k0 < k; k0 += 16) {
        int const i = threadIdx.x * 8 + k0;
#ifdef CONST_DIV
        int const tap = i / 9, ch = i % 9;
#else
        int const tap = i / chans, ch = i % chans;
#endif
        for (int v = 0; v < 8; ++v) {
            sA[threadIdx.x * 8 + v] = a[tap * n + ch + v];
            sB[threadIdx.x * 8 + v] = b[i + v];
        }
        __syncthreads();
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> fb;
        wmma::load_matrix_sync(fa, sA, 16);
        wmma::load_matrix_sync(fb, sB, 16);
        wmma::mma_sync(acc, fa, fb, acc);
        __syncthreads();
    }
    wmma::store_matrix_sync(c, acc, 16, wmma::mem_row_major);
}

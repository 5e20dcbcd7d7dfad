// Self-test of the CPU SIMT execution layer: each CUDA feature the kernels rely on computes the right thing, and
// each class of bug it promises to catch (deadlock, divergent barrier, missing __syncthreads, misaligned WMMA,
// uninitialised shared memory) is reported. Tiny kernels written here, in CUDA spelling.
#include "simt/simt_portable.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

namespace
{
int gFailures = 0;
void check(bool ok, char const* what)
{
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
    gFailures += !ok;
}

__global__ void indexKernel(int* out)
{
    int const bx = blockIdx.x + gridDim.x * blockIdx.y;
    int const t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    int const perBlock = blockDim.x * blockDim.y * blockDim.z;
    out[bx * perBlock + t] = bx * 1000 + t;
}

__global__ void reverseKernel(int const* in, int* out, int n)
{
    __shared__ int s[256];
    int const t = threadIdx.x;
    s[t] = in[blockIdx.x * n + t];
    __syncthreads();
    out[blockIdx.x * n + t] = s[n - 1 - t];
}

// The same without the barrier: a race that the warp-order scheduling must expose.
__global__ void reverseRacyKernel(int const* in, int* out, int n)
{
    __shared__ int s[256];
    int const t = threadIdx.x;
    s[t] = in[blockIdx.x * n + t] + 1000 * blockIdx.x; // different per block: stale data is wrong data
    out[blockIdx.x * n + t] = s[n - 1 - t];
}

__global__ void dynSmemKernel(float* out, int n)
{
    SIMT_DYNAMIC_SHARED(float, s);
    int const t = threadIdx.x;
    if (t < n / 2)
        s[t] = float(t);
    __syncthreads();
    out[t] = s[t]; // upper half never written: must read the poison (NaN), not zeros
}

__global__ void warpKernel(int* sums, unsigned* ballots, int* down)
{
    int const t = threadIdx.x;
    int v = t;
    unsigned const m = __activemask();
    int const lanes = __popc(m); // 32, or 16 in the partial warp (whose partners must stay inside the mask)
    for (int o = lanes / 2; o > 0; o >>= 1)
        v += __shfl_xor_sync(m, v, o);
    sums[t] = v;
    ballots[t] = __ballot_sync(m, t % 3 == 0);
    down[t] = __shfl_down_sync(m, t * 10, 1, lanes); // width = lanes keeps sources inside the mask
}

__global__ void earlyExitDeadlockKernel(int* out)
{
    if (threadIdx.x >= 16)
        return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

__global__ void warpDeadlockKernel(int* out)
{
    if (threadIdx.x != 5)
        __syncwarp();
    out[threadIdx.x] = 1;
}

__global__ void divergentBarrierKernel(int* out)
{
    if (threadIdx.x < 64)
        __syncthreads();
    else
        __syncthreads();
    out[threadIdx.x] = 1;
}

__global__ void wmmaKernel(__half const* a, __half const* b, float* c, int misalign)
{
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __half, nvcuda::wmma::row_major> fa;
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, __half, nvcuda::wmma::col_major> fb;
    nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> fc;
    nvcuda::wmma::fill_fragment(fc, 1.0f);
    nvcuda::wmma::load_matrix_sync(fa, a + misalign, 16);
    nvcuda::wmma::load_matrix_sync(fb, b, 16);
    nvcuda::wmma::mma_sync(fc, fa, fb, fc);
    for (int i = 0; i < fc.num_elements; ++i)
        fc.x[i] *= 2.0f; // element-wise work on fragments is layout-independent
    nvcuda::wmma::store_matrix_sync(c, fc, 16, nvcuda::wmma::mem_row_major);
}

// INT8 WMMA (the INT8 sparse-block kernels' fragments): row-major A, B in either layout, int32 accumulator loaded
// from memory (so load of accumulators is covered too), element-wise work, store.
template <typename LB>
__global__ void wmmaInt8Kernel(signed char const* a, signed char const* b, int* c, int ldm)
{
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, signed char, nvcuda::wmma::row_major> fa;
    nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, signed char, LB> fb;
    nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, int> fc;
    nvcuda::wmma::load_matrix_sync(fc, c, 16, nvcuda::wmma::mem_row_major);
    nvcuda::wmma::load_matrix_sync(fa, a, unsigned(ldm));
    nvcuda::wmma::load_matrix_sync(fb, b, 16);
    nvcuda::wmma::mma_sync(fc, fa, fb, fc);
    for (int i = 0; i < fc.num_elements; ++i)
        fc.x[i] -= 3;
    nvcuda::wmma::store_matrix_sync(c, fc, 16, nvcuda::wmma::mem_row_major);
}

void testIndices()
{
    std::vector<int> out(2 * 3 * 4 * 5 * 2, -1);
    int* d = nullptr;
    cudaMalloc(&d, out.size() * sizeof(int));
    SIMT_LAUNCH(indexKernel, dim3(2, 3), dim3(4, 5, 2), 0, nullptr)(d);
    cudaMemcpy(out.data(), d, out.size() * sizeof(int), cudaMemcpyDeviceToHost);
    bool ok = cudaGetLastError() == cudaSuccess;
    for (int b = 0; b < 6; ++b)
        for (int t = 0; t < 40; ++t)
            ok &= out[b * 40 + t] == b * 1000 + t;
    check(ok, "threadIdx/blockIdx/blockDim/gridDim cover a 2D grid of 3D blocks");
    cudaFree(d);
}

bool runReverse(bool racy, simt::WarpOrder order)
{
    simt::setWarpOrder(order, 5);
    int const n = 256, blocks = 3;
    std::vector<int> in(n * blocks), out(n * blocks);
    for (int i = 0; i < n * blocks; ++i)
        in[i] = i;
    int *dIn, *dOut;
    cudaMalloc(&dIn, in.size() * 4);
    cudaMalloc(&dOut, out.size() * 4);
    cudaMemcpy(dIn, in.data(), in.size() * 4, cudaMemcpyHostToDevice);
    if (racy)
        SIMT_LAUNCH(reverseRacyKernel, dim3(blocks), dim3(n), 0, nullptr)(dIn, dOut, n);
    else
        SIMT_LAUNCH(reverseKernel, dim3(blocks), dim3(n), 0, nullptr)(dIn, dOut, n);
    cudaMemcpy(out.data(), dOut, out.size() * 4, cudaMemcpyDeviceToHost);
    bool ok = cudaGetLastError() == cudaSuccess;
    for (int b = 0; b < blocks; ++b)
        for (int t = 0; t < n; ++t)
            ok &= out[b * n + t] == in[b * n + n - 1 - t] + (racy ? 1000 * b : 0);
    cudaFree(dIn);
    cudaFree(dOut);
    return ok;
}

void testBarriersAndRaces()
{
    for (auto o : {simt::WarpOrder::kAscending, simt::WarpOrder::kDescending, simt::WarpOrder::kRandom})
    {
        simt::setWarpOrder(o);
        char msg[128];
        std::snprintf(msg, sizeof msg, "__syncthreads + static __shared__ (block reverse), %s warp order",
            simt::warpOrderName());
        check(runReverse(false, o), msg);
        std::snprintf(msg, sizeof msg, "missing __syncthreads is exposed as wrong data, %s warp order",
            simt::warpOrderName());
        check(!runReverse(true, o), msg);
    }
    simt::setWarpOrder(simt::WarpOrder::kAscending);
}

void testDynamicSmemPoison()
{
    int const n = 64;
    float* d;
    cudaMalloc(&d, n * 4);
    SIMT_LAUNCH(dynSmemKernel, dim3(2), dim3(n), n * sizeof(float), nullptr)(d, n);
    std::vector<float> out(n);
    cudaMemcpy(out.data(), d, n * 4, cudaMemcpyDeviceToHost);
    bool ok = cudaGetLastError() == cudaSuccess;
    for (int t = 0; t < n; ++t)
        ok &= t < n / 2 ? out[t] == float(t) : std::isnan(out[t]);
    check(ok, "dynamic shared memory works and unwritten bytes read as NaN poison");
    cudaFree(d);
}

void testWarpIntrinsics()
{
    int const n = 48; // one full and one partial warp
    int *sums, *down;
    unsigned* ballots;
    cudaMalloc(&sums, n * 4);
    cudaMalloc(&down, n * 4);
    cudaMalloc(&ballots, n * 4);
    SIMT_LAUNCH(warpKernel, dim3(1), dim3(n), 0, nullptr)(sums, ballots, down);
    std::vector<int> s(n), dn(n);
    std::vector<unsigned> b(n);
    cudaMemcpy(s.data(), sums, n * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(dn.data(), down, n * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(b.data(), ballots, n * 4, cudaMemcpyDeviceToHost);
    bool ok = cudaGetLastError() == cudaSuccess;
    for (int t = 0; t < n; ++t)
    {
        int const w = t / 32, lanes = w == 0 ? 32 : 16;
        int sum = 0;
        unsigned bal = 0;
        for (int l = 0; l < lanes; ++l)
        {
            sum += w * 32 + l;
            if ((w * 32 + l) % 3 == 0)
                bal |= 1u << l;
        }
        int const lane = t % 32;
        int const expectDown = lane + 1 < lanes ? (t + 1) * 10 : t * 10;
        ok &= s[t] == sum;
        ok &= b[t] == bal;
        ok &= dn[t] == expectDown;
    }
    check(ok, "__shfl_xor_sync / __shfl_down_sync / __ballot_sync / __activemask");
    cudaFree(sums);
    cudaFree(down);
    cudaFree(ballots);
}

void testWmma()
{
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-2.f, 2.f);
    std::vector<__half> a(16 * 16 + 8), b(16 * 16);
    std::vector<float> af(16 * 16), bf(16 * 16);
    for (int i = 0; i < 256; ++i)
    {
        a[i] = __float2half_rn(u(rng));
        b[i] = __float2half_rn(u(rng));
        af[i] = __half2float(a[i]);
        bf[i] = __half2float(b[i]);
    }
    __half *da, *db;
    float* dc;
    cudaMalloc(&da, a.size() * 2);
    cudaMalloc(&db, b.size() * 2);
    cudaMalloc(&dc, 256 * 4);
    cudaMemcpy(da, a.data(), a.size() * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(db, b.data(), b.size() * 2, cudaMemcpyHostToDevice);
    SIMT_LAUNCH(wmmaKernel, dim3(1), dim3(32), 0, nullptr)(da, db, dc, 0);
    std::vector<float> c(256);
    cudaMemcpy(c.data(), dc, 256 * 4, cudaMemcpyDeviceToHost);
    bool ok = cudaGetLastError() == cudaSuccess;
    double maxErr = 0;
    for (int r = 0; r < 16; ++r)
        for (int col = 0; col < 16; ++col)
        {
            double acc = 1.0;
            for (int k = 0; k < 16; ++k)
                acc += double(af[r * 16 + k]) * bf[col * 16 + k]; // B is col-major
            maxErr = std::max(maxErr, std::fabs(2.0 * acc - c[r * 16 + col]));
        }
    check(ok && maxErr < 1e-4, "wmma m16n16k16 half->float (row-major A, col-major B) matches a naive product");
    SIMT_LAUNCH(wmmaKernel, dim3(1), dim3(32), 0, nullptr)(da, db, dc, 1); // a+1: 2-byte aligned only
    check(cudaGetLastError() == cudaErrorLaunchFailure, "misaligned wmma::load_matrix_sync pointer is reported");
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
}

//! Exact: every product and sum is an integer; extremes (-128 * -128, 127 * -128) included.
bool runWmmaInt8(bool colMajorB)
{
    std::mt19937 rng(colMajorB ? 9 : 4);
    std::uniform_int_distribution<int> u(-128, 127);
    std::vector<signed char> a(256), b(256);
    std::vector<int> c(256), ref(256);
    for (int i = 0; i < 256; ++i)
    {
        a[i] = static_cast<signed char>(u(rng));
        b[i] = static_cast<signed char>(u(rng));
        c[i] = u(rng) * 1000;
    }
    a[0] = a[1] = -128; // row 0: extreme products
    b[0] = -128;
    b[colMajorB ? 1 : 16] = 127;
    for (int r = 0; r < 16; ++r)
        for (int col = 0; col < 16; ++col)
        {
            int acc = c[r * 16 + col];
            for (int k = 0; k < 16; ++k)
                acc += int(a[r * 16 + k]) * int(colMajorB ? b[col * 16 + k] : b[k * 16 + col]);
            ref[r * 16 + col] = acc - 3;
        }
    signed char *da, *db;
    int* dc;
    cudaMalloc(&da, 256);
    cudaMalloc(&db, 256);
    cudaMalloc(&dc, 256 * 4);
    cudaMemcpy(da, a.data(), 256, cudaMemcpyHostToDevice);
    cudaMemcpy(db, b.data(), 256, cudaMemcpyHostToDevice);
    cudaMemcpy(dc, c.data(), 256 * 4, cudaMemcpyHostToDevice);
    if (colMajorB)
        SIMT_LAUNCH(wmmaInt8Kernel<nvcuda::wmma::col_major>, dim3(1), dim3(32), 0, nullptr)(da, db, dc, 16);
    else
        SIMT_LAUNCH(wmmaInt8Kernel<nvcuda::wmma::row_major>, dim3(1), dim3(32), 0, nullptr)(da, db, dc, 16);
    std::vector<int> got(256);
    cudaMemcpy(got.data(), dc, 256 * 4, cudaMemcpyDeviceToHost);
    bool const ok = cudaGetLastError() == cudaSuccess && got == ref;
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
    return ok;
}

void testWmmaInt8()
{
    check(runWmmaInt8(false), "wmma m16n16k16 s8->s32 (row-major A and B, accumulator loaded) is exact");
    check(runWmmaInt8(true), "wmma m16n16k16 s8->s32 (col-major B) is exact");
    signed char* d;
    int* dc;
    cudaMalloc(&d, 512);
    cudaMalloc(&dc, 256 * 4);
    cudaMemset(dc, 0, 256 * 4);
    auto k = &wmmaInt8Kernel<nvcuda::wmma::row_major>;
    SIMT_LAUNCH(k, dim3(1), dim3(32), 0, nullptr)(d, d, dc, 8); // ldm 8 bytes: not a multiple of 16 bytes
    check(cudaGetLastError() == cudaErrorLaunchFailure, "int8 wmma::load_matrix_sync with ldm = 8 bytes is reported");
    SIMT_LAUNCH(k, dim3(1), dim3(32), 0, nullptr)(d + 16, d, dc, 16); // 16-byte aligned only (WMMA needs 32)
    check(cudaGetLastError() == cudaErrorLaunchFailure, "int8 wmma::load_matrix_sync at a 16-byte offset is reported");
    cudaFree(d);
    cudaFree(dc);
}

void testDeadlocks()
{
    int* d;
    cudaMalloc(&d, 128 * 4);
    SIMT_LAUNCH(earlyExitDeadlockKernel, dim3(1), dim3(64), 0, nullptr)(d);
    check(cudaGetLastError() == cudaErrorLaunchFailure, "__syncthreads after some threads exited is reported");
    SIMT_LAUNCH(warpDeadlockKernel, dim3(1), dim3(32), 0, nullptr)(d);
    check(cudaGetLastError() == cudaErrorLaunchFailure, "__syncwarp missing a lane is reported as a deadlock, not a hang");
    SIMT_LAUNCH(divergentBarrierKernel, dim3(1), dim3(128), 0, nullptr)(d);
    check(cudaGetLastError() == cudaErrorLaunchFailure, "__syncthreads at two different source lines is reported");
    SIMT_LAUNCH(indexKernel, dim3(1), dim3(2048), 0, nullptr)(d);
    check(cudaGetLastError() == cudaErrorInvalidConfiguration, "a block of 2048 threads is an invalid configuration");
    // The layer recovers: a good launch after the failures.
    testIndices();
    cudaFree(d);
}

// cp.async: thread t copies in[t*4..t*4+3] (16 bytes) to shared memory in two batches; `waitMode` 0 waits for all,
// 1 waits for all but the newest batch (so the second batch has not landed), 2 never waits.
__global__ void asyncCopyKernel(float const* in, float* out, int waitMode)
{
    SIMT_DYNAMIC_SHARED(float, s);
    int const t = threadIdx.x;
    __pipeline_memcpy_async(s + 4 * t, in + 4 * t, 16);
    __pipeline_commit();
    __pipeline_memcpy_async(s + 128 + 4 * t, in + 128 + 4 * t, 16, t % 2 ? 16 : 0); // odd threads: zero fill
    __pipeline_commit();
    if (waitMode == 0)
        __pipeline_wait_prior(0);
    else if (waitMode == 1)
        __pipeline_wait_prior(1);
    __syncthreads();
    for (int i = 0; i < 8; ++i)
        out[8 * t + i] = s[(8 * t + i + 4) % 256]; // neighbours' data: needs the wait and the barrier
}

void testAsyncCopy()
{
    std::vector<float> in(256), out(256);
    for (int i = 0; i < 256; ++i)
        in[i] = float(i + 1);
    bool okAll = true, staleSecond = true, staleAll = true;
    for (int mode = 0; mode < 3; ++mode)
    {
        auto k = &asyncCopyKernel;
        SIMT_LAUNCH(k, dim3(1), dim3(32), 256 * sizeof(float), nullptr)(in.data(), out.data(), mode);
        okAll &= cudaGetLastError() == cudaSuccess;
        for (int t = 0; t < 32; ++t)
            for (int i = 0; i < 8; ++i)
            {
                int const j = (8 * t + i + 4) % 256;
                bool const zeroFilled = j >= 128 && (j - 128) / 4 % 2 == 1;
                float const want = zeroFilled ? 0.f : in[j];
                float const got = out[8 * t + i];
                if (mode == 0)
                    okAll &= got == want;
                else if (mode == 1)
                    staleSecond &= j < 128 ? got == want : std::isnan(got); // second batch still in flight
                else
                    staleAll &= std::isnan(got);
            }
    }
    check(okAll, "cp.async (__pipeline_memcpy_async/commit/wait_prior): copies and zero fill land at the wait");
    check(staleSecond && staleAll, "cp.async: copies not retired by __pipeline_wait_prior never reach shared memory");
}

void testHalf()
{
    bool ok = true;
    for (uint32_t h = 0; h < 0x10000; ++h)
    {
        __half x{uint16_t(h)};
        float const f = __half2float(x);
        if (std::isnan(f))
            continue;
        ok &= __float2half_rn(f).bits == h;
    }
#if defined(__FLT16_MAX__)
    std::mt19937 rng(9);
    std::uniform_real_distribution<float> u(-70000.f, 70000.f);
    std::uniform_real_distribution<float> small(-1e-4f, 1e-4f);
    for (int i = 0; i < 200000; ++i)
    {
        float const f = i % 2 ? u(rng) : small(rng);
        _Float16 const r = static_cast<_Float16>(f);
        uint16_t bits;
        std::memcpy(&bits, &r, 2);
        ok &= __float2half_rn(f).bits == bits;
    }
#endif
    check(ok, "__half conversions: exact round trip of all halves, round-to-nearest-even like the compiler's _Float16");
}
} // namespace

int main()
{
    testIndices();
    testBarriersAndRaces();
    testDynamicSmemPoison();
    testWarpIntrinsics();
    testWmma();
    testWmmaInt8();
    testDeadlocks();
    testHalf();
    testAsyncCopy();
    std::printf(gFailures ? "FAILED: %d check(s)\n" : "PASSED\n", gFailures);
    return gFailures ? 1 : 0;
}

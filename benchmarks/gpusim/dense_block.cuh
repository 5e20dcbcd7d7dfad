/*
 * Dense baseline for the GPGPU-Sim benchmark: one SMSR block computed densely (4 x conv3x3 64->64 + ReLU,
 * then collect 1x1 256->64 + bias) as plain-WMMA implicit GEMMs, channels-last FP16, FP32 accumulate.
 * It stands in for cuDNN (which cannot be simulated): the same tools the simulator build of the sparse
 * kernels may use (nvcuda::wmma, synchronous copies), used as well as we can:
 *  - block tile = TP pixels (linear n*H*W + y*W + x index, so channels-last rows are 128-B contiguous) x 64
 *    output channels; K = (tap, 64 input channels) per stage, staged in shared memory with 16-B vector loads;
 *  - the next stage's global loads are issued into registers before the current stage's MMAs (software
 *    prefetch: the plain-WMMA stand-in for cp.async double buffering);
 *  - padded shared-memory rows (72 halves) so WMMA row loads spread over the banks;
 *  - epilogue through shared memory: bias + ReLU + FP16 and 16-B stores, written straight into the concat
 *    buffer's channel slice (the collect then reads one 256-channel tensor).
 * Written with the SIMT-portable spellings (plugins/common/simt) so the CPU tests run this very code.
 */
#pragma once

#include "simt/simt_portable.h"

#if !defined(SMSR_SIMT_EMULATION)
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>
#endif

#if defined(__CUDACC__)
#define GPUSIM_UNROLL _Pragma("unroll")
#else
#define GPUSIM_UNROLL
#endif

namespace gpusim
{

constexpr int kDenseThreads = 128; // 4 warps
constexpr int kDenseCo = 64;       // output channels per block (= all of them for the SMSR block)
constexpr int kDenseKc = 64;       // input channels per stage
constexpr int kDenseLd = 72;       // padded shared row, halves (multiple of 8 as WMMA requires)
constexpr int kDenseLdC = 68;      // padded accumulator staging row, floats (multiple of 4)

struct DenseConvParams
{
    __half const* in; //!< N x H x W x inStride
    int inStride;     //!< channels per pixel of `in`
    int cin;          //!< input channels used (a multiple of 64)
    __half const* w;  //!< [tap][ci][co], 64 output channels
    __half const* bias; //!< 64 values or nullptr
    __half* out;      //!< N x H x W x outStride, channels [outOffset, outOffset + 64) written
    int outStride;
    int outOffset;
    int relu;
    int n, h, w_;
};

template <int TP>
struct DenseSmem
{
    static constexpr int kA = TP * kDenseLd * 2;
    static constexpr int kB = kDenseKc * kDenseLd * 2;
    static constexpr int kC = TP * kDenseLdC * 4;
    static constexpr int kBytes = (kA + kB) > kC ? (kA + kB) : kC;
};

//! TAPS = 9 (3x3, pad 1) or 1 (1x1); TP = 64 or 32 pixels per block (32 fills more SMs on small images).
template <int TAPS, int TP>
__global__ void __launch_bounds__(kDenseThreads) denseConvKernel(DenseConvParams p)
{
    using namespace nvcuda;
    constexpr int kWarpsM = TP / 16;         // warps along pixels
    constexpr int kWarpsN = 4 / kWarpsM;     // warps along output channels
    constexpr int kFn = kDenseCo / 16 / kWarpsN; // accumulator fragments per warp
    constexpr int kAVec = TP * kDenseKc / 8 / kDenseThreads;      // uint4 per thread per stage
    constexpr int kBVec = kDenseKc * kDenseCo / 8 / kDenseThreads;
    SIMT_DYNAMIC_SHARED(unsigned char, smem); // DenseSmem<TP>::kBytes (< 48 KB: no opt-in needed)
    __half* const As = reinterpret_cast<__half*>(smem);
    __half* const Bs = reinterpret_cast<__half*>(smem + DenseSmem<TP>::kA);
    float* const Cs = reinterpret_cast<float*>(smem);

    int const tid = threadIdx.x;
    int const warp = tid / 32;
    int const wm = warp % kWarpsM;
    int const wn = warp / kWarpsM;
    int const hw = p.h * p.w_;
    int const pixels = p.n * hw;
    int const pix0 = blockIdx.x * TP;
    int const chunks = p.cin / kDenseKc;
    int const stages = TAPS * chunks;

    uint4 ra[kAVec], rb[kBVec];
    auto fetch = [&](int s) {
        int const tap = s / chunks;
        int const c0 = (s % chunks) * kDenseKc;
        int const dy = TAPS == 9 ? tap / 3 - 1 : 0;
        int const dx = TAPS == 9 ? tap % 3 - 1 : 0;
GPUSIM_UNROLL
        for (int i = 0; i < kAVec; ++i)
        {
            int const e = tid + i * kDenseThreads;
            int const row = e / (kDenseKc / 8);
            int const vec = e % (kDenseKc / 8);
            int const pix = pix0 + row;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (pix < pixels)
            {
                int const img = pix / hw;
                int const y = (pix % hw) / p.w_ + dy;
                int const x = pix % p.w_ + dx;
                if (y >= 0 && y < p.h && x >= 0 && x < p.w_)
                    v = *reinterpret_cast<uint4 const*>(
                        p.in + (size_t(img * p.h + y) * p.w_ + x) * p.inStride + c0 + vec * 8);
            }
            ra[i] = v;
        }
GPUSIM_UNROLL
        for (int i = 0; i < kBVec; ++i)
        {
            int const e = tid + i * kDenseThreads;
            int const row = e / (kDenseCo / 8);
            int const vec = e % (kDenseCo / 8);
            rb[i] = *reinterpret_cast<uint4 const*>(p.w + (size_t(tap) * p.cin + c0 + row) * kDenseCo + vec * 8);
        }
    };

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[kFn];
GPUSIM_UNROLL
    for (int j = 0; j < kFn; ++j)
        wmma::fill_fragment(acc[j], 0.f);

    fetch(0);
    for (int s = 0; s < stages; ++s)
    {
        __syncthreads(); // previous stage's MMAs are done with the shared tiles
GPUSIM_UNROLL
        for (int i = 0; i < kAVec; ++i)
        {
            int const e = tid + i * kDenseThreads;
            *reinterpret_cast<uint4*>(As + (e / (kDenseKc / 8)) * kDenseLd + (e % (kDenseKc / 8)) * 8) = ra[i];
        }
GPUSIM_UNROLL
        for (int i = 0; i < kBVec; ++i)
        {
            int const e = tid + i * kDenseThreads;
            *reinterpret_cast<uint4*>(Bs + (e / (kDenseCo / 8)) * kDenseLd + (e % (kDenseCo / 8)) * 8) = rb[i];
        }
        __syncthreads();
        if (s + 1 < stages)
            fetch(s + 1); // in flight while the MMAs below run
GPUSIM_UNROLL
        for (int kk = 0; kk < kDenseKc / 16; ++kk)
        {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
            wmma::load_matrix_sync(a, As + wm * 16 * kDenseLd + kk * 16, kDenseLd);
GPUSIM_UNROLL
            for (int j = 0; j < kFn; ++j)
            {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
                wmma::load_matrix_sync(b, Bs + kk * 16 * kDenseLd + (wn * kFn + j) * 16, kDenseLd);
                wmma::mma_sync(acc[j], a, b, acc[j]);
            }
        }
    }

    __syncthreads(); // Cs aliases As/Bs
GPUSIM_UNROLL
    for (int j = 0; j < kFn; ++j)
        wmma::store_matrix_sync(Cs + wm * 16 * kDenseLdC + (wn * kFn + j) * 16, acc[j], kDenseLdC, wmma::mem_row_major);
    __syncthreads();
GPUSIM_UNROLL
    for (int i = 0; i < TP * kDenseCo / 8 / kDenseThreads; ++i)
    {
        int const e = tid + i * kDenseThreads;
        int const row = e / (kDenseCo / 8);
        int const vec = e % (kDenseCo / 8);
        int const pix = pix0 + row;
        if (pix >= pixels)
            continue;
        __align__(16) __half o[8];
GPUSIM_UNROLL
        for (int k = 0; k < 8; ++k)
        {
            float v = Cs[row * kDenseLdC + vec * 8 + k];
            if (p.bias)
                v += __half2float(p.bias[vec * 8 + k]);
            if (p.relu)
                v = fmaxf(v, 0.f);
            o[k] = __float2half_rn(v);
        }
        *reinterpret_cast<uint4*>(p.out + size_t(pix) * p.outStride + p.outOffset + vec * 8)
            = *reinterpret_cast<uint4 const*>(o);
    }
}

//! Pixel tile: 64 when that still gives every SM about two blocks, else 32 (small images under-fill the GPU).
inline int denseTilePixels(int pixels, int numSms) { return (pixels + 63) / 64 >= 2 * numSms ? 64 : 32; }

template <int TAPS>
inline cudaError_t launchDenseConv(DenseConvParams const& p, int tile, cudaStream_t stream)
{
    int const pixels = p.n * p.h * p.w_;
    if (p.cin % kDenseKc != 0 || p.inStride % 8 != 0 || p.outStride % 8 != 0 || p.outOffset % 8 != 0)
        return cudaErrorInvalidValue;
    if (tile == 64)
    {
        auto k = &denseConvKernel<TAPS, 64>;
        SIMT_LAUNCH(k, dim3((pixels + 63) / 64), dim3(kDenseThreads), DenseSmem<64>::kBytes, stream)(p);
    }
    else
    {
        auto k = &denseConvKernel<TAPS, 32>;
        SIMT_LAUNCH(k, dim3((pixels + 31) / 32), dim3(kDenseThreads), DenseSmem<32>::kBytes, stream)(p);
    }
    return cudaGetLastError();
}

//! The dense block: f_l = ReLU(conv3x3(f_{l-1})) into a 256-channel concat buffer, y = collect(concat) + bias.
//! x: N x H x W x 64; w[l]: [9][64][64]; wc: [256][64]; concat: N x H x W x 256 scratch; y: N x H x W x 64.
inline cudaError_t enqueueDenseBlock(int n, int h, int w, __half const* x, __half const* const wl[4],
    __half const* wc, __half const* bc, __half* concat, __half* y, int tile, cudaStream_t stream)
{
    for (int l = 0; l < 4; ++l)
    {
        DenseConvParams p{};
        p.in = l == 0 ? x : concat + (l - 1) * 64;
        p.inStride = l == 0 ? 64 : 256;
        p.cin = 64;
        p.w = wl[l];
        p.out = concat;
        p.outStride = 256;
        p.outOffset = l * 64;
        p.relu = 1;
        p.n = n;
        p.h = h;
        p.w_ = w;
        cudaError_t const e = launchDenseConv<9>(p, tile, stream);
        if (e != cudaSuccess)
            return e;
    }
    DenseConvParams p{};
    p.in = concat;
    p.inStride = 256;
    p.cin = 256;
    p.w = wc;
    p.bias = bc;
    p.out = y;
    p.outStride = 64;
    p.relu = 0;
    p.n = n;
    p.h = h;
    p.w_ = w;
    return launchDenseConv<1>(p, tile, stream);
}

} // namespace gpusim

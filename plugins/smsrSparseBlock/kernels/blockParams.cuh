/*
 * SMSRSparseBlock device code, shared part: tile constants, kernel parameter structs, type helpers and the copy
 * primitives (cp.async or register-staged). Compiled by nvcc and, unchanged, by the host compiler under the CPU SIMT
 * layer (SMSR_SIMT_EMULATION). No inline PTX: everything here is emulatable.
 *
 * Workspace feature layout (every layer output f_l, and the packed block input): N*H*W pixels x P channels,
 * channels-last, P = padG(D) + padG(S) with G = Group<T> channels per group (8 for FP16/FP32, 16 for INT8: one
 * 16-byte vector of FP16 or INT8): dense channels at [0, D), zeros up to padG(D), sparse channels at
 * [padG(D), padG(D) + S), zeros up to P. Pads are written as zeros wherever they can be read; sparse channels exist
 * only at active pixels (never written, never read elsewhere).
 *
 * Element types: T = feature/weight type (float, __half, or signed char = INT8 codes), TO = type of the mask, the
 * collect bias and y (= T for the float modes; float or __half for INT8).
 */
#pragma once

#include "sparseBlockShape.h"
#include "simt/simt_portable.h"

#if !defined(SMSR_SIMT_EMULATION)
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>
#if !defined(SMSR_PLAIN_WMMA)
#include <cuda_pipeline.h>
#endif
#endif

#include <stdint.h>

// cp.async double buffering on sm_80+ (and in the emulation, which models it); register-staged synchronous copies
// on sm_75 and in the SMSR_PLAIN_WMMA build (GPGPU-Sim: plain nvcuda::wmma only). Used only inside device code.
#if !defined(SMSR_PLAIN_WMMA) && (defined(SMSR_SIMT_EMULATION) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800))
#define SMSR_ASYNC_COPY 1
#endif

// Full unrolling keeps fragment/register arrays in registers (a runtime index would move them to local memory).
#if defined(__CUDACC__)
#define SMSR_UNROLL _Pragma("unroll")
#else
#define SMSR_UNROLL
#endif

namespace smsr
{
namespace kern
{

constexpr int kThreads = 128; //!< layer kernels: 4 warps, each a 64 x 32 tile (32 HMMA per warp and K chunk)
constexpr int kPrepThreads = 256; //!< prepare kernel: pixels of one image row per block
constexpr int kRows = 128;    //!< listed pixels per tile (GEMM M)
constexpr int kRowsLog2 = 7;
constexpr int kNc = 64;       //!< natural output channels per pass (GEMM N)
constexpr int kPad = 8;       //!< FP channel groups are padded to multiples of 8 (one 16-byte FP16 vector)

constexpr int pad8(int c) { return (c + kPad - 1) / kPad * kPad; }

//! Channels per padded group of feature type T: one 16-byte vector of FP16 or INT8 (FP32: two vectors of 4).
template <typename T>
struct Group
{
    static constexpr int value = sizeof(T) == 1 ? 16 : kPad;
};
template <typename T>
constexpr int padGroup(int c)
{
    return (c + Group<T>::value - 1) / Group<T>::value * Group<T>::value;
}

//! INT8 mode: most output channels of one layer (and of the collect) whose requantization multipliers travel by
//! value in the kernel parameters (2 x 256 floats = 2 KB of the 4 KB parameter space); larger shapes are refused.
constexpr int kMaxInt8Channels = 256;

//! Per-launch epilogue scales: none for the float modes; INT8: r_l[co] of the launch's layer and s_c[co].
template <typename T>
struct EpilogueScales
{
};
template <>
struct EpilogueScales<signed char>
{
    float requant[kMaxInt8Channels]; //!< r_l[co], natural output channel order (sparseBlockRequantMultipliers)
    float collect[kMaxInt8Channels]; //!< s_c[co] (last layer: fused collect)
};

//! Neighbour-map entry of one listed pixel: global pixel index p = n*H*W + y*W + x, bits, image n, y*W + x.
//! bits: bit t (t = 3*ky + kx) = tap t in bounds; bit 9 + t = tap t in bounds and its pixel active (M = 1).
constexpr int kActiveBit = 9;
constexpr int kCentreTap = 4;

//! One padded channels-last feature tensor (see the file comment).
template <typename T>
struct FeatureRef
{
    T const* base;
    int stride;   //!< P = padDense + pad8(sparse)
    int dense;    //!< D
    int sparse;   //!< S
    int padDense; //!< pad8(D): first sparse channel
};

//! Parameters of one layer kernel (conv3x3 layer l; the last one also runs the fused 1x1 collect).
template <typename T, typename TO = T>
struct LayerParams
{
    int const* counts;       //!< [0] active, [1] inactive pixels
    int4 const* activeList;  //!< neighbour-map entries
    int4 const* inactiveList;
    FeatureRef<T> in;        //!< layer input
    int tapDelta[9];         //!< pixel-index offset of tap t: dy*W + dx (host-computed)
    T const* w;              //!< [tap][ci][co], natural channel order, cin x wLd per tap
    int cin, cout;
    int wLd;                 //!< weight row length: cout, or pad8(cout) for a zero-padded copy in the workspace
    int dOut, sOut;          //!< output split
    T* out;                  //!< f_l (padded layout, stride outStride)
    int outStride, outPadDense;
    // Fused collect (last layer only): y = wc^T concat(f_0..f_3) + bc at the tile's own pixels.
    FeatureRef<T> f[kSparseBlockLayers];
    int collectRow[kSparseBlockLayers]; //!< first wc row of f_l
    T const* wc;             //!< [ci][co], sum_l(Cout_l) x wcLd
    int wcLd;                //!< C, or pad8(C) for a zero-padded copy
    TO const* bc;
    int channels;            //!< C
    int hw;                  //!< H*W
    int yNhwc;               //!< 1: y is N x H x W x C; 0: N x C x H x W
    TO* y;
    EpilogueScales<T> q;     //!< INT8 only (empty otherwise)
};

__device__ __forceinline__ float toFloat(float v) { return v; }
__device__ __forceinline__ float toFloat(__half v) { return __half2float(v); }
template <typename T>
__device__ __forceinline__ T fromFloat(float v);
template <>
__device__ __forceinline__ float fromFloat<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half fromFloat<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ signed char fromFloat<signed char>(float v) { return static_cast<signed char>(v); } // pads: 0

// ------------------------------------------------------------------------------------------- 16-byte copies
//! Global -> shared copy of 16 bytes, zero-filled when !pred (src is then not read; it must still be a valid
//! address on the GPU's cp.async path, callers pass the tensor base). Async: lands at copyWait().
__device__ __forceinline__ void copy16Async(void* dstShared, void const* src, bool pred)
{
#if defined(SMSR_ASYNC_COPY)
    __pipeline_memcpy_async(dstShared, src, 16, pred ? 0 : 16);
#else
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (pred)
        v = *reinterpret_cast<uint4 const*>(src);
    *reinterpret_cast<uint4*>(dstShared) = v;
#endif
}

__device__ __forceinline__ void copyCommit()
{
#if defined(SMSR_ASYNC_COPY)
    __pipeline_commit();
#endif
}

//! Every committed copy of this thread has landed (a __syncthreads then publishes them to the block).
__device__ __forceinline__ void copyWait()
{
#if defined(SMSR_ASYNC_COPY) && !defined(SMSR_INJECT_BUG_MISSING_WAIT)
    __pipeline_wait_prior(0);
#endif
}

//! Zero-padded weight copy: rows x cols -> rows x padG(cols), for output channel counts that are not a multiple
//! of the group (16-byte B rows). Not used by the official model (64 channels everywhere).
template <typename T>
struct PadJob
{
    T const* src;
    T* dst;
    int rows, cols;
};
//! Grid (rows): one row per block, no division. One launch per padded matrix.
template <typename T>
__global__ void __launch_bounds__(256) padWeightsKernel(PadJob<T> const j)
{
    int const r = blockIdx.x;
    int const ld = padGroup<T>(j.cols);
    for (int c = threadIdx.x; c < ld; c += blockDim.x)
        j.dst[ptrdiff_t(r) * ld + c] = c < j.cols ? j.src[ptrdiff_t(r) * j.cols + c] : fromFloat<T>(0.0f);
}

//! INT8 weights, K-contiguous (the integer tensor cores take B col-major) in the padded channel order of the
//! layer input: dst[t][co][pc] = w[srcRow0 + t * cin + ci(pc)][co] for co < cout, pc < stride; zero for pad
//! channels and for output rows up to coutPad (a multiple of kNc: no column predicate in the B copies).
struct PackJobInt8
{
    signed char const* src; //!< natural [row][co] matrix (w_l: rows = 9 x cin; wc: rows = sum Cout_l)
    signed char* dst;
    int taps, cin, dense, padDense, stride; //!< input channels: natural count, dense, padG(dense), padded total
    int cout, coutPad, srcLd, srcRow0;
};
constexpr int kPackJobsInt8 = 2 * kSparseBlockLayers; //!< the 4 layers and the collect's 4 feature blocks
struct PackParamsInt8
{
    PackJobInt8 job[kPackJobsInt8];
};
constexpr int padNc(int c) { return (c + kNc - 1) / kNc * kNc; }
//! Grid (max coutPad, 9, jobs): one output row per block. ~200 KB per block call for the official model.
__global__ void __launch_bounds__(128) packWeightsInt8Kernel(PackParamsInt8 const P)
{
    PackJobInt8 const j = P.job[blockIdx.z];
    int const co = blockIdx.x, t = blockIdx.y;
    if (co >= j.coutPad || t >= j.taps)
        return;
    signed char* const dst = j.dst + (ptrdiff_t(t) * j.coutPad + co) * j.stride;
    for (int pc = threadIdx.x; pc < j.stride; pc += blockDim.x)
    {
        int const ci = pc < j.padDense ? (pc < j.dense ? pc : -1)
                                       : (pc - j.padDense + j.dense < j.cin ? pc - j.padDense + j.dense : -1);
        dst[pc] = co < j.cout && ci >= 0 ? j.src[(ptrdiff_t(j.srcRow0) + ptrdiff_t(t) * j.cin + ci) * j.srcLd + co]
                                         : static_cast<signed char>(0);
    }
}

__device__ __forceinline__ uint4 load16(void const* src, bool pred)
{
    uint4 v = make_uint4(0u, 0u, 0u, 0u);
    if (pred)
        v = *reinterpret_cast<uint4 const*>(src);
    return v;
}

} // namespace kern
} // namespace smsr

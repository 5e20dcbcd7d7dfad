/*
 * SMSRSparseBlock device code. Compiled by nvcc for the GPU and, unchanged, by the host compiler under the
 * CPU SIMT execution layer (SMSR_SIMT_EMULATION) for the tests. No inline PTX: everything here is emulatable.
 *
 * Design (plugins/smsrSparseBlock/README.md has the numbers and the reasons):
 *  - classifyPixelsKernel compacts the mask into two pixel lists in the workspace: active (M = 1) and inactive
 *    (M = 0), one warp per 32 consecutive pixels (ballot + one atomic per warp; runs of pixels stay contiguous).
 *    SMSR masks are fragmented (22 % of pixels touch 73 % of 8x16 tiles on Set5), so the granularity is the pixel.
 *  - Every conv layer and the collect are one implicit GEMM over gathered rows: 128 listed pixels x output channels
 *    (chunks of 64), K = flattened (tap, input channel) in chunks of 32, gathered into shared memory; B comes from
 *    weights transposed once per call to [tap][ci][co] (contiguous rows). Blocks first take the
 *    active list (all outputs from all inputs; sparse input channels are read only where M(q) = 1), then the
 *    inactive list (dense outputs from dense inputs only; nothing at all when the layer has no dense outputs).
 *    Skipped pixels cost nothing, and sparse channels are never written outside the mask (never read there either).
 *  - ReLU is fused into the epilogue; the collect adds the bias and writes NCHW. FP16: WMMA m16n16k16 tensor cores,
 *    FP32 accumulate; FP32: SIMT FMA. Intermediate features are channels-last (NHWC) in the workspace, I/O type.
 */
#pragma once

#include "sparseBlockShape.h"
#include "simt/simt_portable.h"

#if !defined(SMSR_SIMT_EMULATION)
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>
#endif

namespace smsr
{
namespace kern
{

// Full unrolling keeps WMMA fragment arrays in registers (a runtime index would move them to local memory).
#if defined(__CUDACC__)
#define SMSR_UNROLL _Pragma("unroll")
#else
#define SMSR_UNROLL
#endif

constexpr int kRows = 128;    // gathered pixels per block = 8 WMMA row blocks (one per warp)
constexpr int kThreads = 256; // 8 warps
constexpr int kKc = 32;       // K chunk over the flattened (tap, input channel) axis
constexpr int kNc = 64;       // output channels per pass
constexpr int kMaxParts = kSparseBlockLayers;

//! One K range of a row GEMM: input channels [0, chanCount) of one feature tensor.
template <typename T>
struct GemmPart
{
    T const* src;   //!< feature tensor
    int nchw;       //!< 1: src is N x chanStride x H x W (block input x); 0: N x H x W x chanStride (workspace)
    int chanStride; //!< channels of src
    int chanCount;  //!< channels used (a prefix: dense channels come first)
    int sparseFrom; //!< channels >= sparseFrom are zero outside the mask: read only where M(source pixel) = 1
    T const* w;     //!< transposed weights, index ((tap * wCin) + wCinBase + c) * wLd + co (co contiguous)
    int wCin;
    int wCinBase;
    int wLd;
    int taps;       //!< 9 (3x3, pad 1) or 1 (1x1)
};

template <typename T>
struct GemmParams
{
    GemmPart<T> active[kMaxParts]; //!< K ranges for active pixels (M = 1)
    GemmPart<T> inactive[kMaxParts]; //!< K ranges for inactive pixels (dense inputs only)
    int numActiveParts, numInactiveParts;
    int h, w;
    T const* mask;            //!< N x H x W
    int const* counts;        //!< [0] active pixels, [1] inactive pixels
    int const* activePixels;  //!< global pixel indices n*H*W + y*W + x
    int const* inactivePixels;
    int coutActive;           //!< output channels at active pixels (all)
    int coutInactive;         //!< output channels at inactive pixels (dense outputs; all for the collect)
    int coutStride;           //!< channels of the output tensor
    int collect;              //!< 0: conv layer (ReLU, NHWC out); 1: collect (bias, NCHW out)
    T* out;
    T const* bias;
};

__device__ __forceinline__ float toFloat(float v) { return v; }
__device__ __forceinline__ float toFloat(__half v) { return __half2float(v); }
template <typename T>
__device__ __forceinline__ T fromFloat(float v);
template <>
__device__ __forceinline__ float fromFloat<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half fromFloat<__half>(float v) { return __float2half_rn(v); }

// ------------------------------------------------------------------------------------------- pixel lists
//! One warp per 32 consecutive pixels: ballot of the mask, one atomic per list, ordered slots inside the warp.
template <typename T>
__global__ void __launch_bounds__(kThreads) classifyPixelsKernel(
    T const* __restrict__ mask, int total, int* counts, int* active, int* inactive)
{
    int const lane = threadIdx.x & 31;
    int const base = (blockIdx.x * (kThreads / 32) + (threadIdx.x >> 5)) * 32;
    if (base >= total)
        return; // whole warp
    int const p = base + lane;
    bool const valid = p < total;
    bool const on = valid && toFloat(mask[p]) != 0.0f;
    unsigned const onBits = __ballot_sync(0xffffffffu, on);
    unsigned const validBits = __ballot_sync(0xffffffffu, valid);
    unsigned const offBits = validBits & ~onBits;
    int slotOn = 0, slotOff = 0;
    if (lane == 0)
    {
        slotOn = onBits ? atomicAdd(&counts[0], __popc(onBits)) : 0;
        slotOff = offBits ? atomicAdd(&counts[1], __popc(offBits)) : 0;
    }
    slotOn = __shfl_sync(0xffffffffu, slotOn, 0);
    slotOff = __shfl_sync(0xffffffffu, slotOff, 0);
    unsigned const below = (1u << lane) - 1u;
    if (on)
        active[slotOn + __popc(onBits & below)] = p;
    else if (valid)
        inactive[slotOff + __popc(offBits & below)] = p;
}

// ------------------------------------------------------------------------------------------- weight layout
//! One weight tensor to copy to the workspace, [tap][ci][co] in and out (contiguous GEMM B rows).
template <typename T>
struct WeightJob
{
    T const* src;
    T* dst;
    int cout, cin, taps;
};
template <typename T>
struct WeightJobs
{
    WeightJob<T> job[kSparseBlockLayers + 1];
};

//! blockIdx.y = tensor; grid-stride over its elements (~150k elements per block op).
template <typename T>
__global__ void __launch_bounds__(kThreads) transposeWeightsKernel(WeightJobs<T> const jobs)
{
    WeightJob<T> const j = jobs.job[blockIdx.y];
    int const total = j.cout * j.cin * j.taps;
    for (int i = blockIdx.x * kThreads + threadIdx.x; i < total; i += gridDim.x * kThreads)
    {
        j.dst[i] = j.src[i]; // the op's weights (plugin_version 2) are already [tap][ci][co]
    }
}

// ------------------------------------------------------------------------------------------- shared-memory tiles
template <typename T>
struct SmemLayout;

// FP16: A 128x32 (ld 40), B 32x64 (ld 72) halves; C 128x64 floats (ld 68) reuses the same bytes after the K loop.
template <>
struct SmemLayout<__half>
{
    static constexpr int kLdA = 40, kLdB = 72, kLdC = 68;
    static constexpr int kBytesAB = kRows * kLdA * 2 + kKc * kLdB * 2;
    static constexpr int kBytesC = kRows * kLdC * 4;
    static constexpr int kBytes = kBytesAB > kBytesC ? kBytesAB : kBytesC;
    static constexpr int kOffsetB = kRows * kLdA * 2;
};
// FP32: A 128x32 (ld 33: conflict-free column reads), B 32x64, C 128x64 (ld 65).
template <>
struct SmemLayout<float>
{
    static constexpr int kLdA = 33, kLdB = 64, kLdC = 65;
    static constexpr int kBytesAB = kRows * kLdA * 4 + kKc * kLdB * 4;
    static constexpr int kBytesC = kRows * kLdC * 4;
    static constexpr int kBytes = kBytesAB > kBytesC ? kBytesAB : kBytesC;
    static constexpr int kOffsetB = kRows * kLdA * 4;
};

// ------------------------------------------------------------------------------------------- MMA back ends
//! FP16 tensor cores: warp w owns rows [16w, 16w+16) and up to 4 16-column blocks.
struct MmaHalf
{
    nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> acc[kNc / 16];

    __device__ void init()
    {
        SMSR_UNROLL
        for (int j = 0; j < kNc / 16; ++j)
            nvcuda::wmma::fill_fragment(acc[j], 0.0f);
    }
    __device__ void step(__half const* sA, __half const* sB, int nBlocks)
    {
        using L = SmemLayout<__half>;
        int const warp = threadIdx.x >> 5;
        SMSR_UNROLL
        for (int ks = 0; ks < kKc / 16; ++ks)
        {
            nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, __half, nvcuda::wmma::row_major> a;
            nvcuda::wmma::load_matrix_sync(a, sA + warp * 16 * L::kLdA + ks * 16, L::kLdA);
            SMSR_UNROLL
            for (int j = 0; j < kNc / 16; ++j)
            {
                if (j < nBlocks) // warp-uniform
                {
                    nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, __half, nvcuda::wmma::row_major> b;
                    nvcuda::wmma::load_matrix_sync(b, sB + ks * 16 * L::kLdB + j * 16, L::kLdB);
                    nvcuda::wmma::mma_sync(acc[j], a, b, acc[j]);
                }
            }
        }
    }
    __device__ void store(float* sC, int nBlocks)
    {
        using L = SmemLayout<__half>;
        int const warp = threadIdx.x >> 5;
        SMSR_UNROLL
        for (int j = 0; j < kNc / 16; ++j)
            if (j < nBlocks)
                nvcuda::wmma::store_matrix_sync(
                    sC + warp * 16 * L::kLdC + j * 16, acc[j], L::kLdC, nvcuda::wmma::mem_row_major);
    }
};

//! FP32 SIMT: thread t owns row t % 128 and 32 output channels starting at 32 * (t / 128).
struct MmaFloat
{
    float acc[32];

    __device__ void init()
    {
        for (int j = 0; j < 32; ++j)
            acc[j] = 0.0f;
    }
    __device__ void step(float const* sA, float const* sB, int /*nBlocks*/)
    {
        using L = SmemLayout<float>;
        int const p = threadIdx.x % kRows;
        int const c0 = 32 * (threadIdx.x / kRows);
        SMSR_UNROLL
        for (int k = 0; k < kKc; ++k)
        {
            float const a = sA[p * L::kLdA + k];
            float const* b = sB + k * L::kLdB + c0;
            SMSR_UNROLL
            for (int j = 0; j < 32; ++j)
                acc[j] = fmaf(a, b[j], acc[j]);
        }
    }
    __device__ void store(float* sC, int /*nBlocks*/)
    {
        using L = SmemLayout<float>;
        int const p = threadIdx.x % kRows;
        int const c0 = 32 * (threadIdx.x / kRows);
        for (int j = 0; j < 32; ++j)
            sC[p * L::kLdC + c0 + j] = acc[j];
    }
};

template <typename T>
struct MmaFor;
template <>
struct MmaFor<__half>
{
    using type = MmaHalf;
};
template <>
struct MmaFor<float>
{
    using type = MmaFloat;
};

// ------------------------------------------------------------------------------------------- row GEMM
//! Blocks [0, ceil(A/128)) take 128 active pixels each, the next ones 128 inactive pixels each; the rest exit.
template <typename T>
__global__ void __launch_bounds__(kThreads) rowGemmKernel(GemmParams<T> const P)
{
    using L = SmemLayout<T>;
    constexpr int V = 16 / int(sizeof(T)); // elements per 16-byte vector load
    SIMT_DYNAMIC_SHARED(unsigned char, smem);
    T* const sA = reinterpret_cast<T*>(smem);
    T* const sB = reinterpret_cast<T*>(smem + L::kOffsetB);
    float* const sC = reinterpret_cast<float*>(smem);
    __shared__ int sPix[kRows]; // global pixel index of each row, -1 past the end of the list
    __shared__ int sInfo[3];    // active flag, list offset, row count

    int const tid = threadIdx.x;
    if (tid == 0)
    {
        int const nActive = P.counts[0], nInactive = P.counts[1];
        int const activeBlocks = (nActive + kRows - 1) / kRows;
        int const b = blockIdx.x;
        bool const act = b < activeBlocks;
        int const first = (act ? b : b - activeBlocks) * kRows;
        int const n = act ? nActive : nInactive;
        sInfo[0] = act;
        sInfo[1] = first;
        sInfo[2] = first < n ? (n - first < kRows ? n - first : kRows) : 0;
    }
    __syncthreads();
    bool const active = sInfo[0] != 0;
    int const rows = sInfo[2];
    int const nOut = active ? P.coutActive : P.coutInactive;
    if (rows == 0 || nOut == 0)
        return; // uniform over the block: skipped pixels cost one early exit per 128
    int const* const list = (active ? P.activePixels : P.inactivePixels) + sInfo[1];
    for (int i = tid; i < kRows; i += kThreads)
        sPix[i] = i < rows ? list[i] : -1;
    GemmPart<T> const* const parts = active ? P.active : P.inactive;
    int const numParts = active ? P.numActiveParts : P.numInactiveParts;
    int const plane = P.h * P.w;

    typename MmaFor<T>::type mma;
    for (int co0 = 0; co0 < nOut; co0 += kNc)
    {
        int const nCo = nOut - co0 < kNc ? nOut - co0 : kNc;
        int const nBlocks = (nCo + 15) / 16;
        mma.init();
        for (int pi = 0; pi < numParts; ++pi)
        {
            GemmPart<T> const part = parts[pi];
            int const kTotal = part.taps * part.chanCount; // flattened K: (tap, channel), padded once per part
            // Vector (16-byte) gathers where every vector stays inside one tap, one side of the dense/sparse split
            // and is aligned: NHWC features with channel counts and offsets multiple of V, and 64-wide B rows.
#if defined(SMSR_INJECT_BUG_MISALIGNED_VECTOR)
            bool const vecA = !part.nchw; // test-only: vector loads even where channel offsets are not multiples of V
#else
            bool const vecA = !part.nchw && part.chanStride % V == 0 && part.chanCount % V == 0
                && part.sparseFrom % V == 0 && reinterpret_cast<uintptr_t>(part.src) % 16 == 0;
#endif
            bool const vecB = part.wLd % V == 0 && nCo % V == 0 && reinterpret_cast<uintptr_t>(part.w) % 16 == 0;
            for (int k0 = 0; k0 < kTotal; k0 += kKc)
            {
                __syncthreads(); // previous chunk (or the previous pass's epilogue) is done with the buffers
                // Gather A: 128 rows x 32 (tap, channel) columns of the shifted input.
                if (vecA)
                {
                    // 16-byte loads of V channels: never straddle a tap or the dense/sparse boundary (all % V == 0).
                    for (int i = tid; i < kRows * (kKc / V); i += kThreads)
                    {
                        int const r = i / (kKc / V), k = (i % (kKc / V)) * V;
                        int const pix = sPix[r];
                        int const kk = k0 + k;
                        uint4 raw = make_uint4(0u, 0u, 0u, 0u);
                        if (pix >= 0 && kk < kTotal)
                        {
                            int const tap = kk / part.chanCount, c = kk - tap * part.chanCount;
                            int const img = pix / plane, rem = pix - img * plane;
                            int const y = rem / P.w + (part.taps == 9 ? tap / 3 - 1 : 0);
                            int const x = rem % P.w + (part.taps == 9 ? tap % 3 - 1 : 0);
                            int const q = img * plane + y * P.w + x;
                            if (y >= 0 && y < P.h && x >= 0 && x < P.w
                                && (c < part.sparseFrom || toFloat(P.mask[q]) != 0.0f))
                                raw = *reinterpret_cast<uint4 const*>(part.src + size_t(q) * part.chanStride + c);
                        }
                        T vals[V];
                        memcpy(vals, &raw, sizeof(raw));
                        for (int v = 0; v < V; ++v)
                            sA[r * L::kLdA + k + v] = vals[v];
                    }
                }
                else
                for (int i = tid; i < kRows * kKc; i += kThreads)
                {
                    int r, k;
                    if (part.nchw)
                    {
                        r = i % kRows; // consecutive threads: consecutive listed pixels (coalesced in NCHW)
                        k = i / kRows;
                    }
                    else
                    {
                        r = i / kKc; // consecutive threads: consecutive channels (coalesced in NHWC)
                        k = i % kKc;
                    }
                    int const pix = sPix[r];
                    int const kk = k0 + k;
                    float v = 0.0f;
                    if (pix >= 0 && kk < kTotal)
                    {
                        int const tap = kk / part.chanCount, c = kk - tap * part.chanCount;
                        int const img = pix / plane, rem = pix - img * plane;
                        int const y = rem / P.w + (part.taps == 9 ? tap / 3 - 1 : 0);
                        int const x = rem % P.w + (part.taps == 9 ? tap % 3 - 1 : 0);
#if defined(SMSR_INJECT_BUG_HALO)
                        bool const inside = y >= 0 && y < P.h && x >= 0 && x <= P.w; // test-only: off-by-one halo
#else
                        bool const inside = y >= 0 && y < P.h && x >= 0 && x < P.w;
#endif
                        int const q = img * plane + y * P.w + x;
                        // Sparse features are zero outside the mask (and were never written there).
#if defined(SMSR_INJECT_BUG_UNMASKED_SPARSE)
                        if (inside) // test-only: reads sparse channels the previous layer never wrote
#else
                        if (inside && (c < part.sparseFrom || toFloat(P.mask[q]) != 0.0f))
#endif
                        {
                            size_t const idx = part.nchw
                                ? (size_t(img) * part.chanStride + c) * plane + size_t(q - img * plane)
                                : size_t(q) * part.chanStride + c;
                            v = toFloat(part.src[idx]);
                        }
                    }
                    sA[r * L::kLdA + k] = fromFloat<T>(v);
                }
                // Gather B: 32 K rows x 64 output channels, contiguous in the transposed weights.
                if (vecB)
                {
                    for (int i = tid; i < kKc * (kNc / V); i += kThreads)
                    {
                        int const k = i / (kNc / V), j = (i % (kNc / V)) * V;
                        int const kk = k0 + k;
                        uint4 raw = make_uint4(0u, 0u, 0u, 0u);
                        if (kk < kTotal && j < nCo)
                        {
                            int const tap = kk / part.chanCount, c = kk - tap * part.chanCount;
                            raw = *reinterpret_cast<uint4 const*>(
                                part.w + (size_t(tap) * part.wCin + part.wCinBase + c) * part.wLd + co0 + j);
                        }
                        T vals[V];
                        memcpy(vals, &raw, sizeof(raw));
                        for (int v = 0; v < V; ++v)
                            sB[k * L::kLdB + j + v] = vals[v];
                    }
                }
                else
                for (int i = tid; i < kKc * kNc; i += kThreads)
                {
                    int const k = i / kNc, j = i % kNc;
                    int const kk = k0 + k;
                    float v = 0.0f;
                    if (kk < kTotal && j < nCo)
                    {
                        int const tap = kk / part.chanCount, c = kk - tap * part.chanCount;
                        v = toFloat(part.w[(size_t(tap) * part.wCin + part.wCinBase + c) * part.wLd + co0 + j]);
                    }
                    sB[k * L::kLdB + j] = fromFloat<T>(v);
                }
#if !defined(SMSR_INJECT_BUG_MISSING_SYNC)
                __syncthreads(); // A and B complete before any warp multiplies (test-only bug removes it)
#endif
                mma.step(sA, sB, nBlocks);
            }
        }
        __syncthreads(); // all warps done reading A/B: C overwrites them
        mma.store(sC, nBlocks);
        __syncthreads();
        // Epilogue: ReLU (conv) or bias (collect); coalesced stores.
        for (int i = tid; i < kRows * nCo; i += kThreads)
        {
            int r, j;
            if (P.collect)
            {
                r = i % kRows; // NCHW output: consecutive pixels
                j = i / kRows;
            }
            else
            {
                r = i / nCo; // NHWC output: consecutive channels
                j = i % nCo;
            }
            int const pix = sPix[r];
            if (pix < 0)
                continue;
            int const co = co0 + j;
            float v = sC[r * L::kLdC + j];
            if (P.collect)
            {
                int const img = pix / plane;
                v += toFloat(P.bias[co]);
                P.out[(size_t(img) * P.coutStride + co) * plane + size_t(pix - img * plane)] = fromFloat<T>(v);
            }
            else
                P.out[size_t(pix) * P.coutStride + co] = fromFloat<T>(v > 0.0f ? v : 0.0f);
        }
    }
}

} // namespace kern
} // namespace smsr

/*
 * Warp-level MMA of one K chunk held in shared memory.
 * FP16 / INT8: WMMA m16n16k16 (half -> float, or signed char -> int32 on sm_72+); 4 warps as 2 (rows) x 2 (columns),
 *       each warp a 64 x 32 tile:
 *       4 A + 2 B fragment loads per 8 MMAs (16 HMMA.16816) per k-step. Warps whose rows are past the tile's end or whose columns
 *       are past the pass's output channels skip their work (warp-uniform tests).
 * FP32: SIMT FMA; thread t owns row t and the 64 output channels.
 */
#pragma once

#include "tileLoader.cuh"

namespace smsr
{
namespace kern
{

//! T = __half (Acc float) or signed char (Acc int); fragment addresses from the stage layout Tile<T>.
template <typename T>
struct MmaWmma
{
    using L = TileLayout<T>;
    using Acc = typename L::Acc;
    static constexpr int kM = 4; //!< 16-row fragments per warp
    nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, Acc> acc[kM][2];

    __device__ __forceinline__ int rowBase() const { return (threadIdx.x >> 6) * 64; }     // warp >> 1
    __device__ __forceinline__ int colBase() const { return ((threadIdx.x >> 5) & 1) * 32; } // warp & 1

    __device__ __forceinline__ void init()
    {
        SMSR_UNROLL
        for (int i = 0; i < kM; ++i)
            SMSR_UNROLL
            for (int j = 0; j < 2; ++j)
                nvcuda::wmma::fill_fragment(acc[i][j], Acc(0));
    }

    //! One 16-channel k-step at column offset k of the stage.
    __device__ __forceinline__ void kStep(T const* sA, T const* sB, int k, int r0, int c0, bool col1)
    {
        nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, T, nvcuda::wmma::row_major> a[kM];
        nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, T, typename L::C::LayoutB> b[2];
        SMSR_UNROLL
        for (int i = 0; i < kM; ++i)
            nvcuda::wmma::load_matrix_sync(a[i], sA + L::C::aAt(r0 + 16 * i, k), L::C::kLdmA);
        nvcuda::wmma::load_matrix_sync(b[0], sB + L::C::bAt(k, c0), L::C::kLdmB);
        if (col1)
            nvcuda::wmma::load_matrix_sync(b[1], sB + L::C::bAt(k, c0 + 16), L::C::kLdmB);
        SMSR_UNROLL
        for (int i = 0; i < kM; ++i)
        {
            nvcuda::wmma::mma_sync(acc[i][0], a[i], b[0], acc[i][0]);
            if (col1)
                nvcuda::wmma::mma_sync(acc[i][1], a[i], b[1], acc[i][1]);
        }
    }

    //! A chunk of 16 (two = false) or 32 padded channels; rows/cols = valid extent of the tile (warp-uniform skips).
    //! kFull: cols == 64 (every warp has both column fragments: no predicates in the MMA sequence).
    template <bool kFull>
    __device__ __forceinline__ void step(T const* sA, T const* sB, bool two, int rows, int cols)
    {
        int const r0 = rowBase(), c0 = colBase();
        if ((sizeof(T) != 1 && r0 >= rows) || (!kFull && c0 >= cols))
            return;
        bool const col1 = kFull || c0 + 16 < cols;
        kStep(sA, sB, 0, r0, c0, col1);
        if (two)
            kStep(sA, sB, 16, r0, c0, col1);
    }

    __device__ __forceinline__ void store(Acc* sC, int rows, int cols)
    {
        int const r0 = rowBase(), c0 = colBase();
        if (r0 >= rows || c0 >= cols)
            return;
        SMSR_UNROLL
        for (int i = 0; i < kM; ++i)
            SMSR_UNROLL
            for (int j = 0; j < 2; ++j)
                if (j == 0 || c0 + 16 < cols)
                    nvcuda::wmma::store_matrix_sync(sC + (r0 + 16 * i) * L::kLdC + c0 + 16 * j, acc[i][j], L::kLdC,
                        nvcuda::wmma::mem_row_major);
    }
};

using MmaHalf = MmaWmma<__half>;
using MmaInt8 = MmaWmma<signed char>;

struct MmaFloat
{
    using L = TileLayout<float>;
    float acc[kNc];

    __device__ __forceinline__ void init()
    {
        SMSR_UNROLL
        for (int j = 0; j < kNc; ++j)
            acc[j] = 0.0f;
    }
    template <bool kFull>
    __device__ __forceinline__ void step(float const* sA, float const* sB, bool /*two*/, int rows, int cols)
    {
        static_assert(kThreads == kRows, "one row per thread");
        int const r = threadIdx.x;
        if (r >= rows)
            return;
        (void) cols; // columns past `cols` are zero-filled in B
        SMSR_UNROLL
        for (int k = 0; k < L::kChunk; ++k) // zero-filled past the chunk's channels
        {
            float const a = sA[r * L::kLdA + k];
            float const* b = sB + k * L::kLdB;
            SMSR_UNROLL
            for (int j = 0; j < kNc; ++j)
                acc[j] = fmaf(a, b[j], acc[j]);
        }
    }
    __device__ __forceinline__ void store(float* sC, int rows, int cols)
    {
        int const r = threadIdx.x;
        if (r >= rows)
            return;
        SMSR_UNROLL
        for (int j = 0; j < kNc; ++j)
            if (j < cols)
                sC[r * L::kLdC + j] = acc[j];
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
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 720
//! Integer WMMA needs sm_72+: older device passes (a CUDA 11/12 build listing sm_70) get INT8 kernels that trap.
struct MmaInt8Unsupported
{
    __device__ __forceinline__ void init() { __trap(); }
    template <bool kFull>
    __device__ __forceinline__ void step(signed char const*, signed char const*, bool, int, int)
    {
    }
    __device__ __forceinline__ void store(int*, int, int) {}
};
template <>
struct MmaFor<signed char>
{
    using type = MmaInt8Unsupported;
};
#else
template <>
struct MmaFor<signed char>
{
    using type = MmaInt8;
};
#endif

} // namespace kern
} // namespace smsr

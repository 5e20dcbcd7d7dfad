/*
 * Implicit-GEMM operand loaders: K chunks, shared-memory stages and the A/B iterators.
 *
 * GEMM per tile: M = 128 listed pixels, N = 64 natural output channels per pass, K = segments x padded channels.
 * A segment is one tap of the 3x3 conv (feature f_in shifted by tapDelta[t]) or one feature f_l of the collect.
 * A K chunk is kChunk padded channels of one segment (32 for FP16 and INT8 = 2 WMMA k-steps, 16 for FP32). Every A
 * vector is 16 bytes: 8 FP16 or 16 INT8 padded channels (one group) at address base + (p + delta) * stride + pc
 * (FP32: two per group): the only per-row data are p and
 * the neighbour bits, kept in registers; the only per-chunk work is adds and compares (no division or modulo).
 * A vector is loaded when the row exists and the tap is in bounds (dense channels) or its pixel active (sparse
 * channels); otherwise it is zero-filled. B rows map a padded channel to its natural weight row (zero fill for pads).
 */
#pragma once

#include "blockParams.cuh"

namespace smsr
{
namespace kern
{

//! Shared-memory stages: [stage][A | B] in T; the accumulator C tile (Acc: float, INT8: int32) reuses them.
//! aAt(row, k) / bAt(k, col): element offset of A[row][k] / B[k][col] inside a stage (k, col multiples of 8 or 16);
//! fragments are loaded at aAt(row, k) / bAt(k, col) with leading dimension kLdmA / kLdmB.
//! Float types: row-major A (kRows x kLdA) and B (kChunk x kLdB), padded rows.
template <typename T>
struct Tile;
template <>
struct Tile<__half>
{
    using Acc = float;
    using LayoutB = nvcuda::wmma::row_major;
    static constexpr int kChunk = 32;               // K per chunk (2 WMMA k-steps)
    static constexpr int kLdA = 40, kLdB = 72;      // +8 halves: conflict-free fragment loads, 32-byte aligned rows
    static constexpr int kLdC = 68;
    static constexpr int kLdmA = kLdA, kLdmB = kLdB;
    static constexpr int kElemsA = kRows * kLdA, kElemsB = kChunk * kLdB;
    static constexpr int aAt(int row, int k) { return row * kLdA + k; }
    static constexpr int bAt(int k, int col) { return k * kLdB + col; }
};
template <>
struct Tile<float>
{
    using Acc = float;
    using LayoutB = nvcuda::wmma::row_major;
    static constexpr int kChunk = 16;               // keeps 2 stages + C within 48 KB
    static constexpr int kLdA = 20, kLdB = 68;
    static constexpr int kLdC = 68;
    static constexpr int kLdmA = kLdA, kLdmB = kLdB;
    static constexpr int kElemsA = kRows * kLdA, kElemsB = kChunk * kLdB;
    static constexpr int aAt(int row, int k) { return row * kLdA + k; }
    static constexpr int bAt(int k, int col) { return k * kLdB + col; }
};
//! INT8: the integer tensor cores take both operands K-contiguous (IMMA "TN"; a row-major s8 B fragment compiles to
//! byte loads), so B is col-major here, copied from the K-contiguous weight copy packWeightsInt8Kernel makes. A
//! WMMA s8 fragment pointer must be 32-byte aligned, so a 16-channel k-step can not start 16 bytes into a row: A and
//! B are stored k-step-major, A = 2 matrices (one per 16-channel k-step) of kRows x 16 bytes, B = 2 matrices of
//! kNc columns x 16 bytes. Every fragment is then 256 contiguous bytes (16 rows x 16 bytes: 8-row phases of 128
//! bytes, conflict-free LDSM) and every 16-byte copy fills one row (A) or column (B).
template <>
struct Tile<signed char>
{
    using Acc = int;
    using LayoutB = nvcuda::wmma::col_major;
    static constexpr int kChunk = 32;               // K per chunk (2 WMMA k-steps)
    static constexpr int kLdA = 16, kLdB = 16;      // bytes per row (A) / column (B) of one k-step matrix
    static constexpr int kLdC = 68;
    static constexpr int kLdmA = 16, kLdmB = 16;
    static constexpr int kElemsA = kRows * kChunk, kElemsB = kChunk * kNc;
    static constexpr int aAt(int row, int k) { return (k >> 4) * (kRows * 16) + row * 16 + (k & 15); }
    static constexpr int bAt(int k, int col) { return (k >> 4) * (kNc * 16) + col * 16 + (k & 15); }
};

template <typename T>
struct TileLayout
{
    using C = Tile<T>;
    using Acc = typename C::Acc;
    static constexpr int kChunk = C::kChunk, kLdA = C::kLdA, kLdB = C::kLdB, kLdC = C::kLdC;
    static constexpr int kG = Group<T>::value;                   // channels per padded group
    static constexpr int kV = 16 / int(sizeof(T));               // elements per 16-byte copy
    static constexpr int kVecs = kChunk / kG;                    // channel groups per A row and chunk
    static constexpr int kCopiesPerVec = kG / kV;                // 16-byte copies per group
    static constexpr int kRowThreads = kThreads / kVecs;         // rows covered by one pass of the block
    static constexpr int kRowsPerThread = kRows / kRowThreads;
    static constexpr int kBCopiesPerRow = kNc / kV;              // 16-byte copies per B row
    static constexpr int kBCopies = kChunk * kBCopiesPerRow / kThreads; // B copies per thread and chunk
    static constexpr int kBRowThreads = kThreads / kBCopiesPerRow;
    static_assert(kBCopies * kThreads == kChunk * kBCopiesPerRow, "whole B copies per thread");
    static constexpr int kBytesA = C::kElemsA * int(sizeof(T));
    static constexpr int kBytesB = C::kElemsB * int(sizeof(T));
    static constexpr int kBytesStage = kBytesA + kBytesB;
    static constexpr int kBytesC = kRows * kLdC * 4;
    static constexpr int kBytes = 2 * kBytesStage > kBytesC ? 2 * kBytesStage : kBytesC;
    //! INT8: the epilogue scales (requant + collect multipliers) after the stages / C tile.
    static constexpr int kBytesScales = sizeof(T) == 1 ? 2 * kMaxInt8Channels * 4 : 0;
    static constexpr int kBytesDynamic = kBytes + kBytesScales; //!< dynamic shared memory of a layer kernel
    static_assert(sizeof(Acc) == 4, "C tile of 32-bit accumulators");
    static_assert(kBytesA % 32 == 0 && kBytesStage % 32 == 0, "WMMA needs 256-bit aligned tiles");
    static_assert(kBytesDynamic <= 48 * 1024, "no opt-in shared memory needed on any SM");
};

//! One K segment: a feature tensor read at a pixel offset, and the weight rows that multiply it.
template <typename T>
struct Segment
{
    FeatureRef<T> f;
    int delta;    //!< pixel offset (tap delta; 0 for the collect)
    int tap;      //!< bit index in the neighbour map (kCentreTap for the collect)
    int range;    //!< padded channels used: f.stride (all) or f.padDense (dense inputs only)
    T const* w;   //!< weight matrix, row-major [row][ldw], 16-byte aligned rows
    int wRow0;    //!< weight row of natural channel 0
    int ldw;      //!< weight row length: output channels rounded up to a multiple of 8 (zeros past them)
};

//! A/B loader of one thread: fixed rows and vector slots. Per tile: p and the neighbour bits of its rows; per
//! segment (begin): row pointers, the rows' tap predicates and the B column pointer; per chunk (issue): only the
//! channel offset is added, so the main loop does no 64-bit address arithmetic beyond one add per copy.
template <typename T>
struct TileLoader
{
    using L = TileLayout<T>;
    int p[L::kRowsPerThread];
    int bits[L::kRowsPerThread]; //!< 0 for rows past the end of the list: every vector zero-filled
    // Segment state.
    T const* aRow[L::kRowsPerThread]; //!< f.base + (p + delta) * stride (not dereferenced unless predicated on)
    unsigned segOk;                   //!< bit 2i: row i's tap in bounds, bit 2i+1: its pixel active
    T const* bCol0;                   //!< w + wRow0 * ldw + co0 + this thread's B column
    int range, padDense, denseEnd, sparseEnd, sparseShift, ldw, bColLeft;
#if !defined(SMSR_ASYNC_COPY)
    uint4 stA[L::kRowsPerThread][L::kCopiesPerVec]; //!< register staging (synchronous path)
    uint4 stB[L::kBCopies];
#endif

    __device__ __forceinline__ static int slot() { return threadIdx.x & (L::kVecs - 1); }
    __device__ __forceinline__ static int row(int i) { return (threadIdx.x / L::kVecs) + i * L::kRowThreads; }
    __device__ __forceinline__ static int bRow(int j) { return threadIdx.x / L::kBCopiesPerRow + j * L::kBRowThreads; }
    __device__ __forceinline__ static int bCol() { return (threadIdx.x & (L::kBCopiesPerRow - 1)) * L::kV; }

    __device__ __forceinline__ void setRows(int4 const* sRows, int rows)
    {
        SMSR_UNROLL
        for (int i = 0; i < L::kRowsPerThread; ++i)
        {
            int const r = row(i);
            int4 const e = sRows[r];
            p[i] = r < rows ? e.x : 0;
            bits[i] = r < rows ? e.y : 0;
        }
    }

    //! INT8 B copies: thread = (output column tid / 2, 16-channel group tid % 2) of the chunk, one copy each.
    static constexpr bool kKMajorB = sizeof(T) == 1;
    __device__ __forceinline__ static int bColK() { return threadIdx.x >> 1; }
    __device__ __forceinline__ static int bSlotK() { return (threadIdx.x & 1) * 16; }

    __device__ __forceinline__ void begin(Segment<T> const& s, int co0)
    {
        segOk = 0;
        SMSR_UNROLL
        for (int i = 0; i < L::kRowsPerThread; ++i)
        {
            aRow[i] = s.f.base + ptrdiff_t(p[i] + s.delta) * s.f.stride;
            unsigned const in = unsigned(bits[i] >> s.tap) & 1u;
#if defined(SMSR_INJECT_BUG_UNMASKED_SPARSE)
            unsigned const act = in; // test-only: sparse channels read at inactive neighbours (never written there)
#else
            unsigned const act = unsigned(bits[i] >> (s.tap + kActiveBit)) & 1u;
#endif
            segOk |= (in | act << 1) << (2 * i);
        }
        if constexpr (kKMajorB) // K-contiguous rows, one per output channel (zero rows up to a multiple of kNc)
            bCol0 = s.w + (ptrdiff_t(s.wRow0 + co0 + bColK()) * s.ldw + bSlotK());
        else
            bCol0 = s.w + (ptrdiff_t(s.wRow0) * s.ldw + co0 + bCol());
        bColLeft = s.ldw - (co0 + bCol()); // columns from this thread's first one (zeros past the output channels)
        range = s.range;
        padDense = s.f.padDense;
        denseEnd = s.f.dense;
        sparseEnd = s.f.padDense + s.f.sparse;
        sparseShift = s.f.padDense - s.f.dense;
        ldw = s.ldw;
    }

    //! Issues chunk c0 of the current segment into stage memory sA/sB: cp.async (landing at copyWait) or loads
    //! into registers (stored by land()).
    __device__ __forceinline__ void issue(int c0, T* sA, T* sB)
    {
        int const pc = c0 + slot() * L::kG;
        bool const inRange = pc < range;
        int const sparseSel = pc >= padDense ? 1 : 0;
        SMSR_UNROLL
        for (int i = 0; i < L::kRowsPerThread; ++i)
        {
            bool const pred = inRange && ((segOk >> (2 * i + sparseSel)) & 1u);
            T const* src = aRow[i] + pc;
            SMSR_UNROLL
            for (int c = 0; c < L::kCopiesPerVec; ++c)
            {
#if defined(SMSR_ASYNC_COPY)
                copy16Async(sA + L::C::aAt(row(i), slot() * L::kG + c * L::kV), src + c * L::kV, pred);
#else
                stA[i][c] = load16(src + c * L::kV, pred);
#endif
            }
        }
        if constexpr (kKMajorB)
        {
            // INT8: the packed weights are already in the padded channel order (zeros at the pads).
            static_assert(L::kChunk * kNc / 16 == kThreads, "one B copy per thread");
#if defined(SMSR_ASYNC_COPY)
            copy16Async(sB + L::C::bAt(bSlotK(), bColK()), bCol0 + c0, c0 + bSlotK() < range);
#else
            stB[0] = load16(bCol0 + c0, c0 + bSlotK() < range);
#endif
        }
        else
        {
            // B row k = padded channel c0 + k -> natural row (dense: same index; sparse: minus the dense padding).
            // Weight rows are 16-byte aligned with zeros past the output channels (padded copy when Cout % 8 != 0).
            SMSR_UNROLL
            for (int j = 0; j < L::kBCopies; ++j)
            {
                int const pk = c0 + bRow(j);
                bool const sparseRow = pk >= padDense;
                int const nat = sparseRow ? pk - sparseShift : pk;
                bool const pred = pk < range && pk < (sparseRow ? sparseEnd : denseEnd) && bColLeft > 0;
                T const* src = bCol0 + ptrdiff_t(nat) * ldw;
#if defined(SMSR_ASYNC_COPY)
                copy16Async(sB + L::C::bAt(bRow(j), bCol()), src, pred);
#else
                stB[j] = load16(src, pred);
#endif
            }
        }
        copyCommit();
    }

    //! Synchronous path: registers -> stage (after the MMA of the previous chunk, so the loads overlapped it).
    __device__ __forceinline__ void land(T* sA, T* sB)
    {
#if !defined(SMSR_ASYNC_COPY)
        SMSR_UNROLL
        for (int i = 0; i < L::kRowsPerThread; ++i)
            SMSR_UNROLL
            for (int c = 0; c < L::kCopiesPerVec; ++c)
                *reinterpret_cast<uint4*>(sA + L::C::aAt(row(i), slot() * L::kG + c * L::kV)) = stA[i][c];
        if constexpr (kKMajorB)
            *reinterpret_cast<uint4*>(sB + L::C::bAt(bSlotK(), bColK())) = stB[0];
        else
            SMSR_UNROLL
            for (int j = 0; j < L::kBCopies; ++j)
                *reinterpret_cast<uint4*>(sB + L::C::bAt(bRow(j), bCol())) = stB[j];
#else
        (void) sA;
        (void) sB;
#endif
    }
};

} // namespace kern
} // namespace smsr

/*
 * Epilogues: float C tile in shared memory (128 rows x 64 natural output channels of one pass) -> global memory.
 *  - conv layers: ReLU, FP16/FP32, 16-byte stores of 8 padded output channels into f_l, pad channels written as zero.
 *    Active tiles write every padded channel, inactive tiles the dense ones only. With more than 64 output channels
 *    (several passes) an element is written by the pass that owns its natural channel; pads by the pass owning the
 *    group's last channel.
 *  - collect: + bias, y in NCHW (consecutive threads = consecutive pixels) or NHWC (16-byte stores).
 */
#pragma once

#include "tileLoader.cuh"

namespace smsr
{
namespace kern
{

template <typename T>
__device__ __forceinline__ void store8(T* dst, float const (&v)[kPad])
{
    T h[kPad];
    SMSR_UNROLL
    for (int i = 0; i < kPad; ++i)
        h[i] = fromFloat<T>(v[i]);
    SMSR_UNROLL
    for (int c = 0; c < kPad * int(sizeof(T)) / 16; ++c)
    {
        uint4 raw;
        memcpy(&raw, h + c * (16 / int(sizeof(T))), sizeof(raw));
        reinterpret_cast<uint4*>(dst)[c] = raw;
    }
}

template <typename T>
__device__ __forceinline__ void storeConvTile(LayerParams<T> const& P, float const* sC, int4 const* sRows, int rows,
    bool active, int co0, int cols)
{
    using L = TileLayout<T>;
    int const nVec = (active ? P.outStride : P.outPadDense) / kPad;
    int const pass = co0 / kNc; // kNc is a power of two: a shift
    for (int r = threadIdx.x >> 3; r < rows; r += kThreads / 8)
    {
        T* const dstRow = P.out + ptrdiff_t(sRows[r].x) * P.outStride;
        float const* cRow = sC + r * L::kLdC;
        for (int v = threadIdx.x & 7; v < nVec; v += 8)
        {
            int const pc = v * kPad;
            bool const dense = pc < P.outPadDense;
            int const nb = dense ? pc : P.dOut + (pc - P.outPadDense); // natural channel of the group's first
            int cnt = dense ? P.dOut - pc : P.sOut - (pc - P.outPadDense);
            cnt = cnt < 0 ? 0 : cnt > kPad ? kPad : cnt;
            int const padOwner = ((dense ? P.dOut : P.cout) - 1) / kNc;
            bool whole = padOwner == pass || cnt == kPad;
            float vals[kPad];
            bool own[kPad];
            SMSR_UNROLL
            for (int i = 0; i < kPad; ++i)
            {
                int const c = nb + i;
                own[i] = i < cnt ? c >= co0 && c < co0 + cols : padOwner == pass;
                float const z = i < cnt && own[i] ? cRow[c - co0] : 0.0f;
                vals[i] = z > 0.0f ? z : 0.0f;
                whole = whole && own[i];
            }
#if defined(SMSR_INJECT_BUG_UNZEROED_PAD)
            whole = false; // test-only: pad channels never written (the workspace keeps its NaN poison there)
            SMSR_UNROLL
            for (int i = 0; i < kPad; ++i)
                own[i] = own[i] && i < cnt;
#endif
            if (whole)
                store8(dstRow + pc, vals);
            else
                SMSR_UNROLL
                for (int i = 0; i < kPad; ++i)
                    if (own[i])
                        dstRow[pc + i] = fromFloat<T>(vals[i]);
        }
    }
}

template <typename T>
__device__ __forceinline__ void storeCollectTile(
    LayerParams<T> const& P, float const* sC, int4 const* sRows, int rows, int co0, int cols)
{
    using L = TileLayout<T>;
    if (P.yNhwc)
    {
        // C % 8 == 0 (checked on the host): whole groups of 8 channels.
        for (int r = threadIdx.x >> 3; r < rows; r += kThreads / 8)
        {
            T* const dstRow = P.y + ptrdiff_t(sRows[r].x) * P.channels + co0;
            for (int v = (threadIdx.x & 7) * kPad; v < cols; v += 8 * kPad)
            {
                float vals[kPad];
                SMSR_UNROLL
                for (int i = 0; i < kPad; ++i)
                    vals[i] = sC[r * L::kLdC + v + i] + toFloat(P.bc[co0 + v + i]);
                store8(dstRow + v, vals);
            }
        }
        return;
    }
    int const r = threadIdx.x & (kRows - 1);
    if (r >= rows)
        return;
    int4 const e = sRows[r];
    T* const dst = P.y + (ptrdiff_t(e.z) * P.channels + co0) * P.hw + e.w; // (n*C + co)*HW + y*W + x
    for (int j = threadIdx.x >> kRowsLog2; j < cols; j += kThreads / kRows)
        dst[ptrdiff_t(j) * P.hw] = fromFloat<T>(sC[r * L::kLdC + j] + toFloat(P.bc[co0 + j]));
}

} // namespace kern
} // namespace smsr

/*
 * Epilogues: accumulator C tile in shared memory (128 rows x 64 natural output channels of one pass; float, or int32
 * for INT8) -> global memory.
 *  - conv layers: ReLU, FP16/FP32 (INT8: requantization float32(acc) * r_l[co], round to nearest even, clamp 0..127 =
 *    ReLU), 16-byte stores of one padded group of output channels into f_l, pad channels written as zero.
 *    Active tiles write every padded channel, inactive tiles the dense ones only. With more than 64 output channels
 *    (several passes) an element is written by the pass that owns its natural channel; pads by the pass owning the
 *    group's last channel.
 *  - collect: + bias (INT8: float32(acc) * s_c[co] + bias, separate IEEE mul and add, never an FMA), y in NCHW
 *    (consecutive threads = consecutive pixels) or NHWC (16-byte stores).
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

//! Conv epilogue of one element: accumulator of natural output channel c -> feature value.
template <typename T>
struct ConvAct
{
    __device__ __forceinline__ T operator()(float z, int) const { return fromFloat<T>(z > 0.0f ? z : 0.0f); }
};
template <>
struct ConvAct<signed char>
{
    float const* r; //!< r_l[co] (shared memory)
    __device__ __forceinline__ signed char operator()(int acc, int c) const
    {
        float const v = __fmul_rn(__int2float_rn(acc), r[c]);
        // Clamping before rounding = rounding before clamping (0 and 127 are integers); keeps __float2int_rn in range.
        return static_cast<signed char>(__float2int_rn(fminf(fmaxf(v, 0.0f), 127.0f)));
    }
};

//! Collect epilogue of one element: accumulator + bias as float (the INT8 form scales first).
template <typename T>
struct CollectAct
{
    __device__ __forceinline__ float operator()(float acc, int, float bias) const { return acc + bias; }
};
template <>
struct CollectAct<signed char>
{
    float const* s; //!< s_c[co] (shared memory)
    __device__ __forceinline__ float operator()(int acc, int c, float bias) const
    {
        return __fadd_rn(__fmul_rn(__int2float_rn(acc), s[c]), bias);
    }
};

//! One padded group (16 bytes, FP32: 32) of feature elements.
template <typename T>
__device__ __forceinline__ void storeGroup(T* dst, T const (&h)[Group<T>::value])
{
    SMSR_UNROLL
    for (int c = 0; c < Group<T>::value * int(sizeof(T)) / 16; ++c)
    {
        uint4 raw;
        memcpy(&raw, h + c * (16 / int(sizeof(T))), sizeof(raw));
        reinterpret_cast<uint4*>(dst)[c] = raw;
    }
}

template <typename T, typename TO>
__device__ __forceinline__ void storeConvTile(LayerParams<T, TO> const& P, typename Tile<T>::Acc const* sC,
    int4 const* sRows, int rows, bool active, int co0, int cols, ConvAct<T> const act)
{
    using L = TileLayout<T>;
    constexpr int G = L::kG;
    int const nVec = (active ? P.outStride : P.outPadDense) / G;
    int const pass = co0 / kNc; // kNc is a power of two: a shift
    for (int r = threadIdx.x >> 3; r < rows; r += kThreads / 8)
    {
        T* const dstRow = P.out + ptrdiff_t(sRows[r].x) * P.outStride;
        typename Tile<T>::Acc const* cRow = sC + r * L::kLdC;
        for (int v = threadIdx.x & 7; v < nVec; v += 8)
        {
            int const pc = v * G;
            bool const dense = pc < P.outPadDense;
            int const nb = dense ? pc : P.dOut + (pc - P.outPadDense); // natural channel of the group's first
            int cnt = dense ? P.dOut - pc : P.sOut - (pc - P.outPadDense);
            cnt = cnt < 0 ? 0 : cnt > G ? G : cnt;
            int const padOwner = ((dense ? P.dOut : P.cout) - 1) / kNc;
            bool whole = padOwner == pass || cnt == G;
            T vals[G];
            bool own[G];
            SMSR_UNROLL
            for (int i = 0; i < G; ++i)
            {
                int const c = nb + i;
                own[i] = i < cnt ? c >= co0 && c < co0 + cols : padOwner == pass;
                vals[i] = i < cnt && own[i] ? act(cRow[c - co0], c) : fromFloat<T>(0.0f);
                whole = whole && own[i];
            }
#if defined(SMSR_INJECT_BUG_UNZEROED_PAD)
            whole = false; // test-only: pad channels never written (the workspace keeps its NaN poison there)
            SMSR_UNROLL
            for (int i = 0; i < G; ++i)
                own[i] = own[i] && i < cnt;
#endif
            if (whole)
                storeGroup(dstRow + pc, vals);
            else
                SMSR_UNROLL
                for (int i = 0; i < G; ++i)
                    if (own[i])
                        dstRow[pc + i] = vals[i];
        }
    }
}

template <typename T, typename TO>
__device__ __forceinline__ void storeCollectTile(LayerParams<T, TO> const& P, typename Tile<T>::Acc const* sC,
    int4 const* sRows, int rows, int co0, int cols, CollectAct<T> const act)
{
    using L = TileLayout<T>;
    if (P.yNhwc)
    {
        // C % 8 == 0 (checked on the host): whole groups of 8 channels.
        for (int r = threadIdx.x >> 3; r < rows; r += kThreads / 8)
        {
            TO* const dstRow = P.y + ptrdiff_t(sRows[r].x) * P.channels + co0;
            for (int v = (threadIdx.x & 7) * kPad; v < cols; v += 8 * kPad)
            {
                float vals[kPad];
                SMSR_UNROLL
                for (int i = 0; i < kPad; ++i)
                    vals[i] = act(sC[r * L::kLdC + v + i], co0 + v + i, toFloat(P.bc[co0 + v + i]));
                store8(dstRow + v, vals);
            }
        }
        return;
    }
    int const r = threadIdx.x & (kRows - 1);
    if (r >= rows)
        return;
    int4 const e = sRows[r];
    TO* const dst = P.y + (ptrdiff_t(e.z) * P.channels + co0) * P.hw + e.w; // (n*C + co)*HW + y*W + x
    for (int j = threadIdx.x >> kRowsLog2; j < cols; j += kThreads / kRows)
        dst[ptrdiff_t(j) * P.hw] = fromFloat<TO>(act(sC[r * L::kLdC + j], co0 + j, toFloat(P.bc[co0 + j])));
}

} // namespace kern
} // namespace smsr

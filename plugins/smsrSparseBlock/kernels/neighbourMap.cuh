/*
 * Prepare kernel: the block's one neighbour map (active / inactive pixel lists whose entries carry the 9 in-bounds
 * and 9 active-neighbour bits) and, for planar input, x packed to the padded channels-last workspace layout.
 * The mask is read here only (once per pixel and tap, from L1/L2), never by the GEMM kernels.
 * Grid (H, ceil(W / 256), N), 256 threads along x: y, x and n come from the grid, so there is no division.
 */
#pragma once

#include "blockParams.cuh"

namespace smsr
{
namespace kern
{

template <typename T, typename TM = T>
struct PrepareParams
{
    TM const* mask; //!< N x 1 x H x W
    int h, w;
    int* counts;    //!< [0] active, [1] inactive (zeroed before the launch)
    int4* activeList;
    int4* inactiveList;
    T const* x;     //!< N x C x H x W, or nullptr: x is already channels-last (read in place)
    int channels;
    T* packed;      //!< N*H*W x padG(C)
};

template <typename T, typename TM>
__global__ void __launch_bounds__(kPrepThreads) prepareKernel(PrepareParams<T, TM> const P)
{
    int const yy = blockIdx.x, n = blockIdx.z;
    int const xx = blockIdx.y * kPrepThreads + threadIdx.x;
    int const lane = threadIdx.x & 31;
    if ((xx & ~31) >= P.w)
        return; // whole warp past the row end
    bool const valid = xx < P.w;
    int const yx = yy * P.w + xx;
    int const p = n * (P.h * P.w) + yx;
    int bits = 0;
    bool on = false;
    if (valid)
    {
        SMSR_UNROLL
        for (int t = 0; t < 9; ++t)
        {
            int const dy = t / 3 - 1, dx = t % 3 - 1; // constants after unrolling
            int const sy = yy + dy, sx = xx + dx;
#if defined(SMSR_INJECT_BUG_HALO)
            bool const inside = sy >= 0 && sy < P.h && sx >= 0 && sx <= P.w; // test-only: off-by-one halo
#else
            bool const inside = sy >= 0 && sy < P.h && sx >= 0 && sx < P.w;
#endif
            if (inside)
            {
                bits |= 1 << t;
                if (toFloat(P.mask[p + dy * P.w + dx]) != 0.0f)
                    bits |= 1 << (kActiveBit + t);
            }
        }
        on = (bits >> (kActiveBit + kCentreTap) & 1) != 0;
    }
    // Ballot + one atomic per list per warp; slots stay in x order inside the warp (runs of pixels contiguous).
    unsigned const onBits = __ballot_sync(0xffffffffu, on);
    unsigned const validBits = __ballot_sync(0xffffffffu, valid);
    unsigned const offBits = validBits & ~onBits;
    int slotOn = 0, slotOff = 0;
    if (lane == 0)
    {
        slotOn = onBits ? atomicAdd(&P.counts[0], __popc(onBits)) : 0;
        slotOff = offBits ? atomicAdd(&P.counts[1], __popc(offBits)) : 0;
    }
    slotOn = __shfl_sync(0xffffffffu, slotOn, 0);
    slotOff = __shfl_sync(0xffffffffu, slotOff, 0);
    unsigned const below = (1u << lane) - 1u;
    int4 const entry = make_int4(p, bits, n, yx);
    if (on)
        P.activeList[slotOn + __popc(onBits & below)] = entry;
    else if (valid)
        P.inactiveList[slotOff + __popc(offBits & below)] = entry;

    if (P.x == nullptr || !valid)
        return;
    // Pack x: coalesced planar reads (consecutive threads = consecutive x), one 16-byte store per group of 8
    // channels (FP32: two; INT8: one per 16 channels), pad channels written as zeros.
    constexpr int V = 16 / int(sizeof(T));
    size_t const plane = size_t(P.h) * P.w;
    T const* src = P.x + size_t(n) * P.channels * plane + size_t(yx);
    int const stride = padGroup<T>(P.channels);
    T* dst = P.packed + size_t(p) * stride;
    for (int c0 = 0; c0 < stride; c0 += V)
    {
        T v[V];
        SMSR_UNROLL
        for (int i = 0; i < V; ++i)
            v[i] = c0 + i < P.channels ? src[size_t(c0 + i) * plane] : fromFloat<T>(0.0f);
        uint4 raw;
        memcpy(&raw, v, sizeof(raw));
        *reinterpret_cast<uint4*>(dst + c0) = raw;
    }
}

} // namespace kern
} // namespace smsr

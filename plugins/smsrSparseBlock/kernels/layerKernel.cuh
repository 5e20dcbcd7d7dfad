/*
 * One conv layer of the block (and, for the last layer, the fused 1x1 collect) as an implicit GEMM over list tiles.
 * Blocks [0, ceil(A/128)) take 128 active pixels each (all outputs, from all inputs: sparse input channels only at
 * active neighbours); the next ones 128 inactive pixels each (dense outputs from dense inputs only; nothing when the
 * layer has no dense outputs and is not the last). The rest exit at once.
 * Main loop: double-buffered shared-memory stages; the copies of chunk i+1 are issued before the MMA of chunk i
 * (cp.async on sm_80+, register-staged loads otherwise), one __syncthreads per chunk.
 */
#pragma once

#include "epilogue.cuh"
#include "warpMma.cuh"

namespace smsr
{
namespace kern
{

//! K segments of a conv layer: the 9 taps of its input.
template <typename T, typename TO>
struct ConvSegments
{
    LayerParams<T, TO> const& P;
    int range_;
    static constexpr int kCount = 9;
    __device__ __forceinline__ int range(int) const { return range_; }
    __device__ __forceinline__ Segment<T> get(int t) const
    {
        if constexpr (sizeof(T) == 1) // packed INT8 weights: [tap][padNc(cout)][input stride]
            return Segment<T>{P.in, P.tapDelta[t], t, range_, P.w, t * padNc(P.cout), P.wLd};
        else
            return Segment<T>{P.in, P.tapDelta[t], t, range_, P.w, t * P.cin, P.wLd};
    }
};

//! K segments of the collect: f_0..f_3 at the pixel itself (all channels at active pixels, dense ones elsewhere).
template <typename T, typename TO>
struct CollectSegments
{
    LayerParams<T, TO> const& P;
    bool active;
    static constexpr int kCount = kSparseBlockLayers;
    __device__ __forceinline__ int range(int l) const { return active ? P.f[l].stride : P.f[l].padDense; }
    __device__ __forceinline__ Segment<T> get(int l) const
    {
        FeatureRef<T> const f = P.f[l];
        if constexpr (sizeof(T) == 1) // packed INT8 collect weights: block l at element collectRow[l], [co][f.stride]
            return Segment<T>{f, 0, kCentreTap, active ? f.stride : f.padDense, P.wc + P.collectRow[l], 0, f.stride};
        else
            return Segment<T>{f, 0, kCentreTap, active ? f.stride : f.padDense, P.wc, P.collectRow[l], P.wcLd};
    }
};

template <typename T>
__device__ __forceinline__ T* stageA(unsigned char* smem, int buf)
{
    return reinterpret_cast<T*>(smem + buf * TileLayout<T>::kBytesStage);
}
template <typename T>
__device__ __forceinline__ T* stageB(unsigned char* smem, int buf)
{
    return reinterpret_cast<T*>(smem + buf * TileLayout<T>::kBytesStage + TileLayout<T>::kBytesA);
}

//! Main loop of one pass: the loader runs one chunk ahead of the MMA (issue cursor s, c0). Unrolled by the two
//! stages, so every shared-memory address is loop-invariant (hoisted out of the loop by the compiler).
template <typename T, bool kFull, typename Segs>
struct GemmLoop
{
    using L = TileLayout<T>;
    Segs const& segs;
    TileLoader<T>& ld;
    typename MmaFor<T>::type& mma;
    unsigned char* smem;
    int co0, cols, rows;
    int s, c0;
    bool kCur; //!< the chunk being multiplied has 32 (FP16/INT8: two k-steps) rather than 16 channels

    //! Multiplies the chunk in stage kBuf while the next one is issued into the other stage; false after the last.
    template <int kBuf>
    __device__ __forceinline__ bool step()
    {
        // Advance the issue cursor: the rest of this segment, else the next segment with channels.
        c0 += L::kChunk;
        if (c0 >= ld.range)
        {
            c0 = 0;
            while (++s < Segs::kCount && segs.range(s) == 0)
            {
            }
            if (s < Segs::kCount)
                ld.begin(segs.get(s), co0);
        }
        bool const more = s < Segs::kCount;
        bool const kNext = ld.range - c0 > 16;
        copyWait(); // this thread's copies of the chunk about to be multiplied have landed ...
#if !defined(SMSR_INJECT_BUG_MISSING_SYNC)
        __syncthreads(); // ... and everyone's; and every warp is done with the stage the next issue overwrites
#endif
        if (more)
            ld.issue(c0, stageA<T>(smem, kBuf ^ 1), stageB<T>(smem, kBuf ^ 1));
        mma.template step<kFull>(stageA<T>(smem, kBuf), stageB<T>(smem, kBuf), kCur, rows, cols);
        if (more)
            ld.land(stageA<T>(smem, kBuf ^ 1), stageB<T>(smem, kBuf ^ 1));
        kCur = kNext;
        return more;
    }
};

//! C tile (rows x cols of this pass) = sum over the segments' K chunks; left in shared memory (float; INT8: int32).
//! kFull: cols == 64 (no column predicates in the main loop).
template <typename T, bool kFull, typename Segs>
__device__ __forceinline__ void runGemm(Segs const& segs, TileLoader<T>& ld, unsigned char* smem, int co0, int cols,
    int rows)
{
    using L = TileLayout<T>;
    typename MmaFor<T>::type mma;
    mma.init();
    int s = 0;
    while (s < Segs::kCount && segs.range(s) == 0)
        ++s;
    bool const any = s < Segs::kCount;
    __syncthreads(); // the previous pass's epilogue is done with the shared memory the stages reuse
    if (any)
    {
        ld.begin(segs.get(s), co0);
        ld.issue(0, stageA<T>(smem, 0), stageB<T>(smem, 0));
        ld.land(stageA<T>(smem, 0), stageB<T>(smem, 0));
        GemmLoop<T, kFull, Segs> loop{segs, ld, mma, smem, co0, cols, rows, s, 0, ld.range > 16};
        while (loop.template step<0>() && loop.template step<1>())
        {
        }
    }
    __syncthreads(); // every warp is done reading the stages: C overwrites them
    using Acc = typename L::Acc;
    Acc* const sC = reinterpret_cast<Acc*>(smem);
    if (any)
        mma.store(sC, rows, cols);
    else // no K at all (no dense inputs for an inactive tile): z = 0
        for (int i = threadIdx.x; i < kRows * L::kLdC; i += kThreads)
            sC[i] = Acc(0);
    __syncthreads();
}

//! Passes with all 64 output channels (active tiles, the collect) get a main loop without column predicates.
//! INT8: every pass runs that loop (the packed weights are zero past Cout, so the extra columns compute zeros): the
//! warp-uniform column and row skips cost more issue slots (WARPSYNC, branches) than the IMMAs they save.
template <typename T, typename Segs>
__device__ __forceinline__ void gemmPass(
    Segs const& segs, TileLoader<T>& ld, unsigned char* smem, int co0, int cols, int rows)
{
    if (cols == kNc || sizeof(T) == 1)
        runGemm<T, true>(segs, ld, smem, co0, cols, rows);
    else
        runGemm<T, false>(segs, ld, smem, co0, cols, rows);
}

//! FP16 / INT8: at least 3 blocks (12 warps) per SM, which fits the ~168 registers without spills; FP32 (SIMT FMA,
//! the correctness path) keeps the compiler's choice.
template <typename T>
struct MinBlocks
{
    static constexpr int value = sizeof(T) == 4 ? 1 : 3;
};

//! Epilogue functors; INT8: the launch's multipliers, staged in dynamic shared memory after the stages / C tile
//! (per-thread channel indices into the constant-bank parameters would serialise).
template <typename T, typename TO>
struct Epilogues
{
    ConvAct<T> conv;
    CollectAct<T> collect;
    __device__ __forceinline__ static Epilogues load(LayerParams<T, TO> const&, unsigned char*) { return {}; }
};
template <typename TO>
struct Epilogues<signed char, TO>
{
    ConvAct<signed char> conv;
    CollectAct<signed char> collect;
    //! Before the kernel's first barrier (which publishes the stores).
    __device__ __forceinline__ static Epilogues load(LayerParams<signed char, TO> const& P, unsigned char* smem)
    {
        float* const s = reinterpret_cast<float*>(smem + TileLayout<signed char>::kBytes);
        for (int i = threadIdx.x; i < kMaxInt8Channels; i += kThreads)
        {
            s[i] = i < P.cout ? P.q.requant[i] : 0.0f;
            s[kMaxInt8Channels + i] = i < P.channels ? P.q.collect[i] : 0.0f;
        }
        return Epilogues{ConvAct<signed char>{s}, CollectAct<signed char>{s + kMaxInt8Channels}};
    }
};

template <typename T, typename TO, bool kCollect>
__global__ void __launch_bounds__(kThreads, MinBlocks<T>::value) layerKernel(LayerParams<T, TO> const P)
{
    SIMT_DYNAMIC_SHARED(unsigned char, smem);
    __shared__ int4 sRows[kRows]; // neighbour-map entries of the tile's pixels
    __shared__ int sInfo[3];      // active flag, list offset, row count

    Epilogues<T, TO> const epi = Epilogues<T, TO>::load(P, smem);
    if (threadIdx.x == 0)
    {
        int const nActive = P.counts[0], nInactive = P.counts[1];
        int const activeTiles = (nActive + kRows - 1) >> kRowsLog2;
        int const b = blockIdx.x;
        bool const act = b < activeTiles;
        int const first = (act ? b : b - activeTiles) << kRowsLog2;
        int const n = act ? nActive : nInactive;
        sInfo[0] = act;
        sInfo[1] = first;
        sInfo[2] = first < n ? (n - first < kRows ? n - first : kRows) : 0;
    }
    __syncthreads();
    bool const active = sInfo[0] != 0;
    int const rows = sInfo[2];
    bool const convWork = active || P.dOut > 0;
    if (rows == 0 || (!convWork && !kCollect))
        return; // uniform over the block
    int4 const* const list = (active ? P.activeList : P.inactiveList) + sInfo[1];
    for (int i = threadIdx.x; i < kRows; i += kThreads)
        sRows[i] = i < rows ? list[i] : make_int4(0, 0, 0, 0);
    __syncthreads();
    TileLoader<T> ld;
    ld.setRows(sRows, rows);
    auto const* const sC = reinterpret_cast<typename Tile<T>::Acc const*>(smem);

    if (convWork)
    {
        int const nOut = active ? P.cout : P.dOut;
        ConvSegments<T, TO> const segs{P, active ? P.in.stride : P.in.padDense};
        for (int co0 = 0; co0 < nOut; co0 += kNc)
        {
            int const cols = nOut - co0 < kNc ? nOut - co0 : kNc;
            gemmPass(segs, ld, smem, co0, cols, rows);
            storeConvTile(P, sC, sRows, rows, active, co0, cols, epi.conv);
        }
    }
    if (kCollect)
    {
        // f_3 of this tile's pixels is in global memory: the barrier at the start of runGemm makes it visible to
        // the block's copies (other tiles' pixels are never read by the collect).
        CollectSegments<T, TO> const segs{P, active};
        for (int co0 = 0; co0 < P.channels; co0 += kNc)
        {
            int const cols = P.channels - co0 < kNc ? P.channels - co0 : kNc;
            gemmPass(segs, ld, smem, co0, cols, rows);
            storeCollectTile(P, sC, sRows, rows, co0, cols, epi.collect);
        }
    }
}

} // namespace kern
} // namespace smsr

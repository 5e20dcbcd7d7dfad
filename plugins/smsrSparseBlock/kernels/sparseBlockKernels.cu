/*
 * SMSRSparseBlock launch API: workspace layout and the launch sequence (6 stream operations, all asynchronous):
 *   memset(list counters) -> prepareKernel (neighbour map [+ pack planar x]) -> layerKernel 0, 1, 2 -> layerKernel 3
 *   with the fused collect; plus padWeightsKernel first when an output channel count is not a multiple of 8 (never
 *   for the official model: its weights are read in place).
 * INT8 mode (enqueueSparseBlockInt8): the same sequence and kernels instantiated for signed char features/weights
 * (int32 accumulators, requantizing epilogues; multipliers computed here and passed by value).
 * Nothing is allocated or formatted; the launch is CUDA-graph capturable. Compiled by nvcc (smsr_kernels) and,
 * through emu/sparseBlockKernelsEmu.cpp, by the host compiler under the SIMT layer (smsr_kernels_emu).
 */
#include "sparseBlockKernels.h"
#include "layerKernel.cuh"
#include "neighbourMap.cuh"

#include <algorithm>

namespace smsr
{
namespace
{

static_assert(kern::kMaxInt8Channels == kMaxSparseBlockInt8Channels, "one INT8 channel limit");

constexpr size_t kAlign = 256;
size_t alignUp(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

size_t totalPixels(SparseBlockShape const& s) { return size_t(s.batch) * s.height * s.width; }

//! Padded channel layout of a tensor with D dense and S sparse channels, groups of g (see blockParams.cuh).
struct Padded
{
    int dense, sparse, padDense, stride;
};
int padTo(int c, int g) { return (c + g - 1) / g * g; }
Padded padded(int dense, int sparse, int g)
{
#if defined(SMSR_INJECT_BUG_MISALIGNED_VECTOR)
    (void) g;
    return Padded{dense, sparse, dense, dense + sparse}; // test-only: no padding (16-byte copies misaligned)
#else
    return Padded{dense, sparse, padTo(dense, g), padTo(dense, g) + padTo(sparse, g)};
#endif
}

//! Element bytes and channel group of the feature type: FP32 4/8, FP16 2/8, INT8 1/16.
struct Elem
{
    size_t bytes;
    int group;
};
constexpr Elem kElemInt8{1, 16};
Elem elemOf(DataType type) { return type == DataType::kHALF ? Elem{2, kern::kPad} : Elem{4, kern::kPad}; }

struct WorkspaceLayout
{
    size_t counts{0};   //!< 2 x int32: active / inactive pixel counts
    size_t active{0};   //!< int4 neighbour-map entry per pixel
    size_t inactive{0};
    size_t packed{0};   //!< planar x packed channels-last (kNCHW input only)
    size_t features[kSparseBlockLayers]{}; //!< f_l, N*H*W x P_l, I/O type
    size_t weights[kSparseBlockLayers + 1]{}; //!< zero-padded copies of w_l / wc (only when Cout % 8 != 0)
    bool padded[kSparseBlockLayers + 1]{};
    size_t total{0};
};

//! Rows and columns (output channels) of w_0..w_3 and wc.
void weightMatrix(SparseBlockShape const& s, int l, int& rows, int& cols)
{
    if (l < kSparseBlockLayers)
    {
        rows = 9 * layerInChannels(s, l);
        cols = layerOutChannels(s, l);
    }
    else
    {
        rows = collectInChannels(s);
        cols = s.channels;
    }
}

WorkspaceLayout layoutFor(SparseBlockShape const& s, Elem const e)
{
    size_t const elem = e.bytes;
    size_t const pixels = totalPixels(s);
    WorkspaceLayout L;
    size_t off = 0;
    L.counts = off;
    off += alignUp(2 * sizeof(int));
    L.active = off;
    off += alignUp(pixels * 16);
    L.inactive = off;
    off += alignUp(pixels * 16);
    L.packed = off;
    if (s.format == TensorFormat::kNCHW)
        off += alignUp(pixels * size_t(padded(s.channels, 0, e.group).stride) * elem);
    for (int l = 0; l < kSparseBlockLayers; ++l)
    {
        L.features[l] = off;
        off += alignUp(pixels * size_t(padded(s.dense[l], s.sparse[l], e.group).stride) * elem);
    }
    if (e.bytes == 1)
    {
        // INT8: K-contiguous packed weights (packWeightsInt8Kernel), always: the layers', then the collect's blocks.
        int inStride = padded(s.channels, 0, e.group).stride;
        for (int l = 0; l < kSparseBlockLayers; ++l)
        {
            L.weights[l] = off;
            off += alignUp(size_t(9) * kern::padNc(layerOutChannels(s, l)) * inStride);
            inStride = padded(s.dense[l], s.sparse[l], e.group).stride;
        }
        L.weights[kSparseBlockLayers] = off;
        for (int l = 0; l < kSparseBlockLayers; ++l)
            off += size_t(kern::padNc(s.channels)) * padded(s.dense[l], s.sparse[l], e.group).stride;
        L.total = alignUp(off);
        return L;
    }
    for (int l = 0; l <= kSparseBlockLayers; ++l)
    {
        int rows = 0, cols = 0;
        weightMatrix(s, l, rows, cols);
        L.padded[l] = cols % e.group != 0;
        L.weights[l] = off;
        if (L.padded[l])
            off += alignUp(size_t(rows) * padTo(cols, e.group) * elem);
    }
    L.total = off;
    return L;
}

//! Shapes the kernels cannot run (beyond validateSparseBlockShape): nullptr if fine.
bool supported(SparseBlockShape const& s, DataType type)
{
    if (validateSparseBlockShape(s) != nullptr || totalPixels(s) > kMaxSparseBlockPixels)
        return false;
    if (type != DataType::kFLOAT && type != DataType::kHALF)
        return false;
    if (s.batch > 65535) // prepare grid z
        return false;
    // Channels-last I/O is read in place with 16-byte vectors: FP16 and whole groups of 8 channels.
    if (s.format == TensorFormat::kNHWC && (type != DataType::kHALF || s.channels % 8 != 0))
        return false;
    return true;
}

//! INT8: planar I/O only, and at most kMaxInt8Channels output channels per layer and collect (the multipliers
//! travel in the kernel parameters).
bool supportedInt8(SparseBlockShape const& s, DataType outType)
{
    if (!supported(s, outType) || s.format != TensorFormat::kNCHW || s.channels > kern::kMaxInt8Channels)
        return false;
    for (int l = 0; l < kSparseBlockLayers; ++l)
        if (layerOutChannels(s, l) > kern::kMaxInt8Channels)
            return false;
    return true;
}

template <typename T>
kern::FeatureRef<T> featureRef(T const* base, Padded const& p)
{
    return kern::FeatureRef<T>{base, p.stride, p.dense, p.sparse, p.padDense};
}

//! T: feature/weight type (float, __half, signed char); TO: mask/bias/y type. q: INT8 scales (T = signed char).
template <typename T, typename TO>
cudaError_t enqueueTyped(SparseBlockShape const& s, SparseBlockTensors const& t, SparseBlockInt8Scales const* q,
    unsigned char* ws, cudaStream_t stream)
{
    constexpr bool kInt8 = sizeof(T) == 1;
    Elem const elem = kInt8 ? kElemInt8 : elemOf(sizeof(T) == 2 ? DataType::kHALF : DataType::kFLOAT);
    WorkspaceLayout const L = layoutFor(s, elem);
    int* const counts = reinterpret_cast<int*>(ws + L.counts);
    int4* const active = reinterpret_cast<int4*>(ws + L.active);
    int4* const inactive = reinterpret_cast<int4*>(ws + L.inactive);
    bool const nhwc = s.format == TensorFormat::kNHWC;
    int const pixels = int(totalPixels(s));

    cudaError_t err = cudaMemsetAsync(counts, 0, 2 * sizeof(int), stream);
    if (err != cudaSuccess)
        return err;

    // B rows must be 16-byte vectors: zero-padded copies of the weight matrices whose output channel count is not a
    // multiple of 8 (odd test shapes; the official model's are read in place).
    T const* wSrc[kSparseBlockLayers + 1];
    T const* wUse[kSparseBlockLayers + 1];
    int wLd[kSparseBlockLayers + 1];
    int collectOff[kSparseBlockLayers]{}; // INT8: element offset of the collect block of f_l in the packed copy
    if constexpr (kInt8)
    {
        kern::PackParamsInt8 pk{};
        int row = 0, maxPad = 0;
        size_t cOff = 0;
        Padded in = padded(s.channels, 0, elem.group);
        for (int l = 0; l < kSparseBlockLayers; ++l)
        {
            int const cout = layerOutChannels(s, l);
            Padded const o = padded(s.dense[l], s.sparse[l], elem.group);
            wUse[l] = reinterpret_cast<T const*>(ws + L.weights[l]);
            wLd[l] = in.stride;
            pk.job[l] = kern::PackJobInt8{static_cast<T const*>(t.weights[l]), const_cast<T*>(wUse[l]), 9,
                layerInChannels(s, l), in.dense, in.padDense, in.stride, cout, kern::padNc(cout), cout, 0};
            collectOff[l] = int(cOff);
            pk.job[kSparseBlockLayers + l] = kern::PackJobInt8{static_cast<T const*>(t.collectWeight),
                reinterpret_cast<T*>(ws + L.weights[kSparseBlockLayers]) + cOff, 1, cout, o.dense, o.padDense,
                o.stride, s.channels, kern::padNc(s.channels), s.channels, row};
            cOff += size_t(kern::padNc(s.channels)) * o.stride;
            row += cout;
            maxPad = std::max(maxPad, kern::padNc(cout));
            in = o;
        }
        maxPad = std::max(maxPad, kern::padNc(s.channels));
        wUse[kSparseBlockLayers] = reinterpret_cast<T const*>(ws + L.weights[kSparseBlockLayers]);
        wLd[kSparseBlockLayers] = 0; // per block: the feature's stride
        auto pack = &kern::packWeightsInt8Kernel;
        SIMT_LAUNCH(pack, dim3(unsigned(maxPad), 9, unsigned(kern::kPackJobsInt8)), dim3(128), 0, stream)(pk);
    }
    if constexpr (!kInt8)
        for (int l = 0; l <= kSparseBlockLayers; ++l)
        {
            int rows = 0, cols = 0;
            weightMatrix(s, l, rows, cols);
            wSrc[l] = static_cast<T const*>(l < kSparseBlockLayers ? t.weights[l] : t.collectWeight);
            wUse[l] = L.padded[l] ? reinterpret_cast<T const*>(ws + L.weights[l]) : wSrc[l];
            wLd[l] = L.padded[l] ? padTo(cols, elem.group) : cols;
            if (L.padded[l])
            {
                auto pad = &kern::padWeightsKernel<T>;
                kern::PadJob<T> const job{wSrc[l], const_cast<T*>(wUse[l]), rows, cols};
                SIMT_LAUNCH(pad, dim3(unsigned(rows)), dim3(256), 0, stream)(job);
            }
        }

    kern::PrepareParams<T, TO> pp{};
    pp.mask = static_cast<TO const*>(t.mask);
    pp.h = s.height;
    pp.w = s.width;
    pp.counts = counts;
    pp.activeList = active;
    pp.inactiveList = inactive;
    pp.x = nhwc ? nullptr : static_cast<T const*>(t.x);
    pp.channels = s.channels;
    pp.packed = reinterpret_cast<T*>(ws + L.packed);
    auto prepare = &kern::prepareKernel<T, TO>;
    dim3 const prepGrid(
        unsigned(s.height), unsigned((s.width + kern::kPrepThreads - 1) / kern::kPrepThreads), unsigned(s.batch));
    SIMT_LAUNCH(prepare, prepGrid, dim3(kern::kPrepThreads), 0, stream)(pp);

    kern::LayerParams<T, TO> P{};
    P.counts = counts;
    P.activeList = active;
    P.inactiveList = inactive;
    for (int tap = 0; tap < 9; ++tap)
    {
        int const dy = tap / 3 - 1, dx = tap % 3 - 1;
#if defined(SMSR_INJECT_BUG_TAP_DELTA)
        P.tapDelta[tap] = dy * s.width - dx; // test-only: mirrored columns
#else
        P.tapDelta[tap] = dy * s.width + dx;
#endif
    }
    Padded const inPad = nhwc ? Padded{s.channels, 0, s.channels, s.channels} : padded(s.channels, 0, elem.group);
    T const* const x0 = nhwc ? static_cast<T const*>(t.x) : reinterpret_cast<T const*>(ws + L.packed);
    int collectRow = 0;
    for (int l = 0; l < kSparseBlockLayers; ++l)
    {
        Padded const o = padded(s.dense[l], s.sparse[l], elem.group);
        P.f[l] = featureRef<T>(reinterpret_cast<T const*>(ws + L.features[l]), o);
        P.collectRow[l] = kInt8 ? collectOff[l] : collectRow;
        collectRow += layerOutChannels(s, l);
    }
    P.wc = wUse[kSparseBlockLayers];
    P.wcLd = wLd[kSparseBlockLayers];
    P.bc = static_cast<TO const*>(t.collectBias);
    P.channels = s.channels;
    P.hw = s.height * s.width;
    P.yNhwc = nhwc ? 1 : 0;
    P.y = static_cast<TO*>(t.y);
    if constexpr (kInt8)
        for (int co = 0; co < s.channels; ++co)
            P.q.collect[co] = q->collect[co];

    size_t const smem = kern::TileLayout<T>::kBytesDynamic;
    // ceil(A/128) + ceil(I/128) <= ceil(pixels/128) + 1 blocks cover both lists whatever the mask.
    dim3 const grid(unsigned((pixels + kern::kRows - 1) / kern::kRows + 1));
    for (int l = 0; l < kSparseBlockLayers; ++l)
    {
        P.in = l == 0 ? featureRef<T>(x0, inPad) : P.f[l - 1];
        P.w = wUse[l];
        P.wLd = wLd[l];
        P.cin = layerInChannels(s, l);
        P.cout = layerOutChannels(s, l);
        P.dOut = s.dense[l];
        P.sOut = s.sparse[l];
        P.out = const_cast<T*>(P.f[l].base);
        P.outStride = P.f[l].stride;
        P.outPadDense = P.f[l].padDense;
        if constexpr (kInt8)
            sparseBlockRequantMultipliers(s, *q, l, P.q.requant);
        if (l + 1 < kSparseBlockLayers)
        {
            auto layer = &kern::layerKernel<T, TO, false>;
            SIMT_LAUNCH(layer, grid, dim3(kern::kThreads), smem, stream)(P);
        }
        else
        {
            auto last = &kern::layerKernel<T, TO, true>;
            SIMT_LAUNCH(last, grid, dim3(kern::kThreads), smem, stream)(P);
        }
    }
    // No error was pending at entry (checked there), so this is exactly our launches' status.
    return cudaGetLastError();
}

//! Pointer checks shared by both modes: true when every pointer is set and aligned and the workspace is big enough.
bool tensorsOk(SparseBlockShape const& shape, SparseBlockTensors const& tensors, void* workspace, size_t workspaceSize,
    size_t need)
{
    if (!tensors.x || !tensors.mask || !tensors.collectWeight || !tensors.collectBias || !tensors.y)
        return false;
    for (int l = 0; l < kSparseBlockLayers; ++l)
        if (!tensors.weights[l])
            return false;
    if (shape.format == TensorFormat::kNHWC
        && (reinterpret_cast<uintptr_t>(tensors.x) % 16 != 0 || reinterpret_cast<uintptr_t>(tensors.y) % 16 != 0))
        return false;
    // Weights are read in place with 16-byte vectors (TensorRT and cudaMalloc give 256-byte aligned buffers).
    for (int l = 0; l <= kSparseBlockLayers; ++l)
        if (reinterpret_cast<uintptr_t>(l < kSparseBlockLayers ? tensors.weights[l] : tensors.collectWeight) % 16 != 0)
            return false;
    return workspace && workspaceSize >= need && reinterpret_cast<uintptr_t>(workspace) % 16 == 0;
}

} // namespace

size_t getSparseBlockWorkspaceSize(SparseBlockShape const& shape, DataType type) noexcept
{
    if (!supported(shape, type))
        return 0;
    return layoutFor(shape, elemOf(type)).total;
}

size_t getSparseBlockInt8WorkspaceSize(SparseBlockShape const& shape, DataType outType) noexcept
{
    if (!supportedInt8(shape, outType))
        return 0;
    return layoutFor(shape, kElemInt8).total;
}

cudaError_t enqueueSparseBlock(SparseBlockShape const& shape, DataType type, SparseBlockTensors const& tensors,
    void* workspace, size_t workspaceSize, cudaStream_t stream) noexcept
{
    if (!supported(shape, type)
        || !tensorsOk(shape, tensors, workspace, workspaceSize, getSparseBlockWorkspaceSize(shape, type)))
        return cudaErrorInvalidValue;
    // An error left pending by earlier, unrelated work is returned as is and not cleared (its owner may still want
    // it); our own launch errors are then read with cudaGetLastError after the launches.
    cudaError_t const pending = cudaPeekAtLastError();
    if (pending != cudaSuccess)
        return pending;
    unsigned char* ws = static_cast<unsigned char*>(workspace);
    return type == DataType::kHALF ? enqueueTyped<__half, __half>(shape, tensors, nullptr, ws, stream)
                                   : enqueueTyped<float, float>(shape, tensors, nullptr, ws, stream);
}

cudaError_t enqueueSparseBlockInt8(SparseBlockShape const& shape, DataType outType, SparseBlockTensors const& tensors,
    SparseBlockInt8Scales const& scales, void* workspace, size_t workspaceSize, cudaStream_t stream) noexcept
{
    if (!supportedInt8(shape, outType) || validateSparseBlockInt8Scales(shape, scales) != nullptr
        || !tensorsOk(shape, tensors, workspace, workspaceSize, getSparseBlockInt8WorkspaceSize(shape, outType)))
        return cudaErrorInvalidValue;
    cudaError_t const pending = cudaPeekAtLastError(); // as enqueueSparseBlock
    if (pending != cudaSuccess)
        return pending;
    unsigned char* ws = static_cast<unsigned char*>(workspace);
    return outType == DataType::kHALF
        ? enqueueTyped<signed char, __half>(shape, tensors, &scales, ws, stream)
        : enqueueTyped<signed char, float>(shape, tensors, &scales, ws, stream);
}

} // namespace smsr

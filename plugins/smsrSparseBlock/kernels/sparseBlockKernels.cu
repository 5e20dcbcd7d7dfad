/*
 * SMSRSparseBlock launch API: workspace layout and the launch sequence
 *   memset(list counters) -> classifyPixels -> transposeWeights -> conv layer 0..3 -> collect
 * Everything is asynchronous on the caller's stream; nothing is allocated. Compiled by nvcc (smsr_kernels) and,
 * through emu/sparseBlockKernelsEmu.cpp, by the host compiler under the SIMT layer (smsr_kernels_emu).
 */
#include "sparseBlockKernels.h"
#include "sparseBlockKernels.cuh"

namespace smsr
{
namespace
{

constexpr size_t kAlign = 256;
size_t alignUp(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

struct WorkspaceLayout
{
    size_t counts{0};   //!< 2 x int32: active / inactive pixel counts
    size_t active{0};   //!< int32 per pixel
    size_t inactive{0}; //!< int32 per pixel
    size_t features[kSparseBlockLayers]{}; //!< f_l, N x H x W x (D_l+S_l), I/O type
    size_t weights[kSparseBlockLayers + 1]{}; //!< w0..w3, wc transposed to [tap][ci][co], I/O type
    size_t total{0};
};

size_t totalPixels(SparseBlockShape const& s) { return size_t(s.batch) * s.height * s.width; }

WorkspaceLayout layoutFor(SparseBlockShape const& s, DataType type)
{
    size_t const elem = type == DataType::kHALF ? 2 : 4;
    size_t const pixels = totalPixels(s);
    WorkspaceLayout L;
    size_t off = 0;
    L.counts = off;
    off += alignUp(2 * sizeof(int));
    L.active = off;
    off += alignUp(pixels * sizeof(int));
    L.inactive = off;
    off += alignUp(pixels * sizeof(int));
    for (int l = 0; l < kSparseBlockLayers; ++l)
    {
        L.features[l] = off;
        off += alignUp(pixels * layerOutChannels(s, l) * elem);
    }
    for (int l = 0; l <= kSparseBlockLayers; ++l)
    {
        L.weights[l] = off;
        size_t const n = l < kSparseBlockLayers ? size_t(layerOutChannels(s, l)) * layerInChannels(s, l) * 9
                                                : size_t(s.channels) * collectInChannels(s);
        off += alignUp(n * elem);
    }
    L.total = off;
    return L;
}

template <typename T>
cudaError_t enqueueTyped(SparseBlockShape const& s, SparseBlockTensors const& t, unsigned char* ws, cudaStream_t stream)
{
    WorkspaceLayout const L = layoutFor(s, sizeof(T) == 2 ? DataType::kHALF : DataType::kFLOAT);
    int* const counts = reinterpret_cast<int*>(ws + L.counts);
    int* const active = reinterpret_cast<int*>(ws + L.active);
    int* const inactive = reinterpret_cast<int*>(ws + L.inactive);
    T const* const mask = static_cast<T const*>(t.mask);
    int const pixels = int(totalPixels(s));

    cudaError_t err = cudaMemsetAsync(counts, 0, 2 * sizeof(int), stream);
    if (err != cudaSuccess)
        return err;
    int const pixelsPerBlock = kern::kThreads; // one warp per 32 pixels
    auto classify = &kern::classifyPixelsKernel<T>;
    SIMT_LAUNCH(classify, dim3((pixels + pixelsPerBlock - 1) / pixelsPerBlock), dim3(kern::kThreads), 0, stream)(
        mask, pixels, counts, active, inactive);

    // Weights arrive as [tap][ci][co] (op contract v2): copied to the workspace as before (the copy goes with
    // the kernel rewrite).
    kern::WeightJobs<T> jobs{};
    for (int l = 0; l <= kSparseBlockLayers; ++l)
    {
        bool const collect = l == kSparseBlockLayers;
        jobs.job[l].src = static_cast<T const*>(collect ? t.collectWeight : t.weights[l]);
        jobs.job[l].dst = reinterpret_cast<T*>(ws + L.weights[l]);
        jobs.job[l].cout = collect ? s.channels : layerOutChannels(s, l);
        jobs.job[l].cin = collect ? collectInChannels(s) : layerInChannels(s, l);
        jobs.job[l].taps = collect ? 1 : 9;
    }
    auto transpose = &kern::transposeWeightsKernel<T>;
    SIMT_LAUNCH(transpose, dim3(16, kSparseBlockLayers + 1), dim3(kern::kThreads), 0, stream)(jobs);

    kern::GemmParams<T> P{};
    P.h = s.height;
    P.w = s.width;
    P.mask = mask;
    P.counts = counts;
    P.activePixels = active;
    P.inactivePixels = inactive;
    auto gemm = &kern::rowGemmKernel<T>;
    size_t const smem = kern::SmemLayout<T>::kBytes;
    // ceil(A/128) + ceil(I/128) <= ceil(pixels/128) + 1 blocks cover both lists whatever the mask.
    dim3 const grid((pixels + kern::kRows - 1) / kern::kRows + 1);

    // Conv layers: active pixels use every input channel (sparse ones only where the mask is set at the source
    // pixel); inactive pixels compute the dense outputs from the dense inputs.
    for (int l = 0; l < kSparseBlockLayers; ++l)
    {
        int const cin = layerInChannels(s, l);
        int const dIn = l == 0 ? cin : s.dense[l - 1];
        T const* src = l == 0 ? static_cast<T const*>(t.x) : reinterpret_cast<T const*>(ws + L.features[l - 1]);
        T const* w = reinterpret_cast<T const*>(ws + L.weights[l]);
        int const cout = layerOutChannels(s, l);
        P.numActiveParts = 1;
        P.active[0] = kern::GemmPart<T>{src, l == 0, cin, cin, dIn, w, cin, 0, cout, 9};
        P.numInactiveParts = dIn > 0 ? 1 : 0;
        P.inactive[0] = kern::GemmPart<T>{src, l == 0, cin, dIn, dIn, w, cin, 0, cout, 9};
        P.coutActive = layerOutChannels(s, l);
        P.coutInactive = s.dense[l];
        P.coutStride = layerOutChannels(s, l);
        P.collect = 0;
        P.out = reinterpret_cast<T*>(ws + L.features[l]);
        P.bias = nullptr;
        SIMT_LAUNCH(gemm, grid, dim3(kern::kThreads), smem, stream)(P);
    }

    // Collect: y = wc * concat(f_0..f_3) + bc; inactive pixels see only the dense channels (sparse ones are 0 there).
    int const cc = collectInChannels(s);
    int off = 0;
    P.numActiveParts = P.numInactiveParts = 0;
    T const* wc = reinterpret_cast<T const*>(ws + L.weights[kSparseBlockLayers]);
    for (int l = 0; l < kSparseBlockLayers; ++l)
    {
        int const cl = layerOutChannels(s, l);
        T const* f = reinterpret_cast<T const*>(ws + L.features[l]);
        P.active[P.numActiveParts++] = kern::GemmPart<T>{f, 0, cl, cl, cl, wc, cc, off, s.channels, 1};
        if (s.dense[l] > 0)
            P.inactive[P.numInactiveParts++] = kern::GemmPart<T>{f, 0, cl, s.dense[l], s.dense[l], wc, cc, off, s.channels, 1};
        off += cl;
    }
    P.coutActive = s.channels;
    P.coutInactive = s.channels; // every output pixel gets at least the bias
    P.coutStride = s.channels;
    P.collect = 1;
    P.out = static_cast<T*>(t.y);
    P.bias = static_cast<T const*>(t.collectBias);
    SIMT_LAUNCH(gemm, grid, dim3(kern::kThreads), smem, stream)(P);
    return cudaGetLastError();
}

} // namespace

size_t getSparseBlockWorkspaceSize(SparseBlockShape const& shape, DataType type) noexcept
{
    if (validateSparseBlockShape(shape) != nullptr || totalPixels(shape) > kMaxSparseBlockPixels)
        return 0;
    return layoutFor(shape, type).total;
}

cudaError_t enqueueSparseBlock(SparseBlockShape const& shape, DataType type, SparseBlockTensors const& tensors,
    void* workspace, size_t workspaceSize, cudaStream_t stream) noexcept
{
    // Pixel lists hold int32 indices n*H*W + y*W + x.
    if (validateSparseBlockShape(shape) != nullptr || totalPixels(shape) > kMaxSparseBlockPixels
        || (type != DataType::kFLOAT && type != DataType::kHALF))
        return cudaErrorInvalidValue;
    if (!tensors.x || !tensors.mask || !tensors.collectWeight || !tensors.collectBias || !tensors.y)
        return cudaErrorInvalidValue;
    for (int l = 0; l < kSparseBlockLayers; ++l)
        if (!tensors.weights[l])
            return cudaErrorInvalidValue;
    size_t const need = getSparseBlockWorkspaceSize(shape, type);
    if (!workspace || workspaceSize < need)
        return cudaErrorInvalidValue;
    (void) cudaGetLastError(); // report only this call's launch errors
    unsigned char* ws = static_cast<unsigned char*>(workspace);
    return type == DataType::kHALF ? enqueueTyped<__half>(shape, tensors, ws, stream)
                                   : enqueueTyped<float>(shape, tensors, ws, stream);
}

} // namespace smsr

/*
 * C ABI over the SMSRSparseBlock kernel library, for the PyTorch op in smsr_torch.py (loaded with ctypes).
 *
 * Why a C ABI instead of a torch C++ extension: compiling torch/extension.h costs about a minute of the device
 * lease and must match the device's torch ABI; this file needs only the kernel library's header, builds in seconds
 * with the project's CMake, and the same source also links against the emulated kernels (smsr_kernels_emu), so the
 * Python op and its wiring into the network are tested on the CPU in CI (tests/gpu/test_gpu_tools.py).
 *
 * Shapes come as int arrays: dims = {N, C, H, W}, dense/sparse = 4 ints each. Pointers are device pointers
 * (host pointers for the emulated build); `stream` is a cudaStream_t (PyTorch's current stream), null allowed.
 * Every function returns a cudaError_t value (0 = success); smsr_capi_error_string names it.
 */
#include "sparseBlockKernels.h"

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace
{
// The kern branch adds SparseBlockShape::format (TensorFormat::kNCHW default, kNHWC = channels-last, FP16 only).
// Set it only when the field exists, so this file builds against the kernel library before and after that change.
template <typename S>
auto setFormat(S& s, int32_t nhwc, int) -> decltype(s.format, bool())
{
    using F = std::remove_reference_t<decltype(s.format)>;
    s.format = nhwc ? F::kNHWC : F::kNCHW;
    return true;
}
template <typename S>
bool setFormat(S&, int32_t nhwc, long)
{
    return nhwc == 0; // a library without the field reads NCHW only
}

bool makeShape(int32_t const* dims, int32_t const* dense, int32_t const* sparse, int32_t nhwc,
    smsr::SparseBlockShape& s)
{
    if (!dims || !dense || !sparse)
        return false;
    s.batch = dims[0];
    s.channels = dims[1];
    s.height = dims[2];
    s.width = dims[3];
    for (int l = 0; l < smsr::kSparseBlockLayers; ++l)
    {
        s.dense[l] = dense[l];
        s.sparse[l] = sparse[l];
    }
    return setFormat(s, nhwc, 0);
}

smsr::DataType toType(int32_t fp16) { return fp16 ? smsr::DataType::kHALF : smsr::DataType::kFLOAT; }
} // namespace

extern "C"
{
//! 1 when built over the CPU SIMT layer (pointers are host memory), 0 for the CUDA library.
int32_t smsr_capi_emulated()
{
#if defined(SMSR_SIMT_EMULATION)
    return 1;
#else
    return 0;
#endif
}

//! 1 when the kernel library takes channels-last (NHWC) x and y.
int32_t smsr_capi_supports_nhwc()
{
    smsr::SparseBlockShape s;
    return setFormat(s, 1, 0) ? 1 : 0;
}

//! Message of the shape's first problem, or null when valid (also null-safe on bad arguments: then a fixed text).
char const* smsr_capi_validate(int32_t const* dims, int32_t const* dense, int32_t const* sparse, int32_t nhwc)
{
    smsr::SparseBlockShape s;
    if (!makeShape(dims, dense, sparse, nhwc, s))
        return nhwc ? "this kernel library reads NCHW only (no SparseBlockShape::format)" : "null shape argument";
    return smsr::validateSparseBlockShape(s);
}

//! Workspace bytes for the shape (0 = invalid shape, or a shape that needs none).
size_t smsr_capi_workspace_size(
    int32_t const* dims, int32_t const* dense, int32_t const* sparse, int32_t fp16, int32_t nhwc)
{
    smsr::SparseBlockShape s;
    if (!makeShape(dims, dense, sparse, nhwc, s))
        return 0;
    return smsr::getSparseBlockWorkspaceSize(s, toType(fp16));
}

//! One block on `stream`: y = block(x, mask); weights[4] in the op contract's layout.
int32_t smsr_capi_enqueue(int32_t const* dims, int32_t const* dense, int32_t const* sparse, int32_t fp16, int32_t nhwc,
    void const* x, void const* mask, void const* const* weights, void const* collectWeight, void const* collectBias,
    void* y, void* workspace, size_t workspaceSize, void* stream)
{
    smsr::SparseBlockShape s;
    if (!makeShape(dims, dense, sparse, nhwc, s) || !weights)
        return static_cast<int32_t>(cudaErrorInvalidValue);
    smsr::SparseBlockTensors t;
    t.x = x;
    t.mask = mask;
    for (int l = 0; l < smsr::kSparseBlockLayers; ++l)
        t.weights[l] = weights[l];
    t.collectWeight = collectWeight;
    t.collectBias = collectBias;
    t.y = y;
    return static_cast<int32_t>(smsr::enqueueSparseBlock(
        s, toType(fp16), t, workspace, workspaceSize, static_cast<cudaStream_t>(stream)));
}

//! INT8 mode (issue 14): workspace bytes (0 = unsupported shape: NCHW only, <= 256 channels per layer).
size_t smsr_capi_int8_workspace_size(int32_t const* dims, int32_t const* dense, int32_t const* sparse, int32_t fp16)
{
    smsr::SparseBlockShape s;
    if (!makeShape(dims, dense, sparse, 0, s))
        return 0;
    return smsr::getSparseBlockInt8WorkspaceSize(s, toType(fp16));
}

//! One INT8 block: x / weights / collectWeight int8 codes (device), mask / bc / y fp16 or fp32 (device); scales in
//! host memory: xScale, featureScales[4], weightScales (sum Cout_l, layers concatenated), collectScales (C).
int32_t smsr_capi_enqueue_int8(int32_t const* dims, int32_t const* dense, int32_t const* sparse, int32_t fp16,
    void const* x, void const* mask, void const* const* weights, void const* collectWeight, void const* collectBias,
    void* y, float xScale, float const* featureScales, float const* weightScales, float const* collectScales,
    void* workspace, size_t workspaceSize, void* stream)
{
    smsr::SparseBlockShape s;
    if (!makeShape(dims, dense, sparse, 0, s) || !weights || !featureScales || !weightScales)
        return static_cast<int32_t>(cudaErrorInvalidValue);
    smsr::SparseBlockTensors t;
    t.x = x;
    t.mask = mask;
    for (int l = 0; l < smsr::kSparseBlockLayers; ++l)
        t.weights[l] = weights[l];
    t.collectWeight = collectWeight;
    t.collectBias = collectBias;
    t.y = y;
    smsr::SparseBlockInt8Scales q;
    q.x = xScale;
    int off = 0;
    for (int l = 0; l < smsr::kSparseBlockLayers; ++l)
    {
        q.feature[l] = featureScales[l];
        q.weight[l] = weightScales + off;
        off += smsr::layerOutChannels(s, l);
    }
    q.collect = collectScales;
    return static_cast<int32_t>(smsr::enqueueSparseBlockInt8(
        s, toType(fp16), t, q, workspace, workspaceSize, static_cast<cudaStream_t>(stream)));
}

char const* smsr_capi_error_string(int32_t code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }
} // extern "C"

/*
 * TEMPORARY (branch plug8 only; the lead deletes this file when merging cuda8, which implements these two
 * functions in the kernel library): placeholders for the INT8 launch API of sparseBlockKernels.h so that the
 * TensorRT plugin's INT8 mode links and builds engines before the INT8 kernels exist. Enqueue of an INT8 plugin
 * layer fails with cudaErrorNotSupported until then; nothing else uses these.
 * plugins/smsrSparseBlock/CMakeLists.txt compiles this file into the plugin only while it exists.
 */
#include "sparseBlockKernels.h"

namespace smsr
{

size_t getSparseBlockInt8WorkspaceSize(SparseBlockShape const& /*shape*/, DataType /*outType*/) noexcept
{
    return 0;
}

cudaError_t enqueueSparseBlockInt8(SparseBlockShape const& /*shape*/, DataType /*outType*/,
    SparseBlockTensors const& /*tensors*/, SparseBlockInt8Scales const& /*scales*/, void* /*workspace*/,
    size_t /*workspaceSize*/, cudaStream_t /*stream*/) noexcept
{
#if defined(SMSR_SIMT_EMULATION)
    return static_cast<cudaError_t>(801); // cudaErrorNotSupported (the emulation's enum lacks the name)
#else
    return cudaErrorNotSupported;
#endif
}

} // namespace smsr

/*
 * SMSRSparseBlock kernel library: public launch API (TensorRT- and ONNX Runtime-independent).
 *
 * One call computes one SMSR "sparse mask block" (contract: docs/DESIGN.md §2 of the workplace,
 * summarised in plugins/smsrSparseBlock/README.md):
 *   for l in 0..3:  z   = conv3x3(x_dense_in, W_l[:, dense_in]) + M * conv3x3(x_sparse_in, W_l[:, sparse_in])
 *                   z[sparse_out] *= M ;  f_l = ReLU(z)
 *   y = collect1x1(concat(f_0..f_3)) + bias
 * Layer 0's input is all dense (the block input x). Channels are permuted dense-first on every axis; weights come in
 * the layout the kernels read (w_l [ky][kx][ci][co], wc [ci][co]); x and y are NCHW or NHWC (SparseBlockShape::format).
 * Design and resources: plugins/smsrSparseBlock/README.md.
 */
#pragma once

#include "sparseBlockShape.h"
#include "sparseBlockQuant.h"

#if defined(SMSR_SIMT_EMULATION)
#include "simt/cuda_runtime_emu.h"  // CPU execution layer: cudaStream_t, cudaError_t, ...
#else
#include <cuda_runtime_api.h>
#endif

namespace smsr
{

//! Most pixels N*H*W one call accepts (pixel lists hold int32 indices n*H*W + y*W + x); larger shapes get
//! workspace size 0 and cudaErrorInvalidValue. Callers with dynamic shapes should check it up front.
constexpr size_t kMaxSparseBlockPixels = size_t(1) << 30;

//! Bytes of device workspace enqueueSparseBlock needs (0 allowed). Host-only, no CUDA calls.
size_t getSparseBlockWorkspaceSize(SparseBlockShape const& shape, DataType type) noexcept;

//! Launch the block on `stream`. Returns cudaErrorInvalidValue for an invalid or unsupported shape (kNHWC needs FP16
//! and C % 8 == 0), null or misaligned pointers (weights, and x/y for kNHWC: 16 bytes) or a too-small workspace; an
//! error already pending on the thread (returned as is, not cleared); otherwise the status of its own launches.
cudaError_t enqueueSparseBlock(SparseBlockShape const& shape, DataType type, SparseBlockTensors const& tensors,
    void* workspace, size_t workspaceSize, cudaStream_t stream) noexcept;

// ------------------------------------------------------------------------------------------------------ INT8 mode
// Contract and scales: sparseBlockQuant.h. x and the weights are int8 codes (tensors.x, tensors.weights,
// tensors.collectWeight point to int8_t), mask / collectBias / y are `outType` (kFLOAT or kHALF); formats as the
// float mode (x int8 in kNCHW; kNHWC only where the implementation says so). Scales are host memory, read during
// the call (the requantization multipliers travel by value in kernel parameters: nothing is copied to the device).

//! INT8 limits: x and y NCHW only; at most this many output channels per layer and in the collect (the
//! requantization multipliers travel by value in the kernel parameters); tensor cores for INT8 need sm_72+.
//! Other shapes get workspace size 0 and cudaErrorInvalidValue.
constexpr int32_t kMaxSparseBlockInt8Channels = 256;

//! Bytes of device workspace enqueueSparseBlockInt8 needs. Host-only, no CUDA calls.
size_t getSparseBlockInt8WorkspaceSize(SparseBlockShape const& shape, DataType outType) noexcept;

//! Launch one INT8 block on `stream`; errors as enqueueSparseBlock (cudaErrorInvalidValue also for invalid scales).
cudaError_t enqueueSparseBlockInt8(SparseBlockShape const& shape, DataType outType, SparseBlockTensors const& tensors,
    SparseBlockInt8Scales const& scales, void* workspace, size_t workspaceSize, cudaStream_t stream) noexcept;

} // namespace smsr

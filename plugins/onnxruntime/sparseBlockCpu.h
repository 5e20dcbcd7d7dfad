/*
 * SMSRSparseBlock on the CPU (TensorRT- and ONNX Runtime-independent core of the ONNX Runtime custom op).
 *
 * Contract (DESIGN.md §2): for l in 0..3, channels dense-first, M = mask (layer 0's input is all dense):
 *     z   = conv3x3_pad1(x_in[dense_in], W_l[:, dense_in]) + M * conv3x3_pad1(x_in[sparse_in], W_l[:, sparse_in])
 *     z[sparse_out] *= M ;  f_l = ReLU(z)
 *     y   = conv1x1(concat(f_0..f_3), wc) + bc
 * A pixel is active when its mask value is nonzero (the graph feeds exactly 0/1).
 *
 * Work done (exactly the contract's multiply-adds, no dense fallback needed): with P = active pixels and
 * Q = the others, layer l computes dense outputs from dense inputs at Q (D_l x 9 D_{l-1} per pixel) and all
 * outputs from all inputs at P; sparse outputs are zero at Q. The collect uses all features at P and the dense
 * ones at Q. Features live in zero-padded pixel-major maps, so any pixel list can be computed without bounds
 * tests: with AVX-512, by an indirect-GEMM micro-kernel that reads the 3x3 neighbours' rows in place (no im2col
 * copy, fused ReLU store); otherwise by im2col gathers or shifted views of whole row segments + OpenBLAS sgemm
 * (a per-segment cost model picks). At density 1 either is a plain dense convolution.
 */
#pragma once

#include "sparseBlockShape.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace smsr::cpu
{

//! Computes one block for all N images (float32 I/O; pointers are host memory in the contract's layouts).
//! numThreads <= 1 runs on the calling thread. Throws std::invalid_argument for an invalid shape or a null
//! pointer, std::runtime_error when OpenBLAS cannot be loaded.
void sparseBlockForward(SparseBlockShape const& shape, float const* x, float const* mask,
    float const* const weights[4], float const* collectWeight, float const* collectBias, float* y, int numThreads);

//! Runs fn(data, i) for every i in [0, total), possibly concurrently; returns when all are done.
//! (ONNX Runtime's KernelContext::ParallelFor has exactly this shape.) fn never throws.
class ParallelRunner
{
public:
    virtual ~ParallelRunner() = default;
    virtual void run(size_t total, void (*fn)(void*, size_t), void* data) = 0;
};

//! std::thread-based runner with dynamic scheduling (threads are started per call).
class ThreadRunner final : public ParallelRunner
{
public:
    explicit ThreadRunner(int numThreads) : mThreads(numThreads < 1 ? 1 : numThreads) {}
    void run(size_t total, void (*fn)(void*, size_t), void* data) override;

private:
    int mThreads;
};

//! Element type of x, mask and y (weights are always float32; float16 is converted on the fly).
enum class IoType : int32_t
{
    kFloat32 = 0,
    kFloat16 = 1, //!< IEEE binary16 bit patterns (uint16_t)
};

//! Bytes of the caller-provided workspace for sparseBlockForwardEx (0 for an invalid shape): about
//! 4 (H+2)(W+2)(C + sum of D_l+S_l) bytes (+ 4 H W C for float16 output staging) plus the packed dense-only weights
//! (the op reads its 3 x 3 x Cin x Cout weights in place; only Cout not a multiple of 16 adds a padded copy).
size_t sparseBlockWorkspaceSize(SparseBlockShape const& shape, IoType ioType) noexcept;

//! Same as sparseBlockForward with a chosen I/O type, work runner and workspace (>= sparseBlockWorkspaceSize
//! bytes, any alignment; nullptr: allocated per call). Lets ONNX Runtime use its thread pool and arena.
void sparseBlockForwardEx(SparseBlockShape const& shape, IoType ioType, void const* x, void const* mask,
    float const* const weights[4], float const* collectWeight, float const* collectBias, void* y,
    ParallelRunner& runner, void* workspace = nullptr, size_t workspaceSize = 0);

//! Loads OpenBLAS if needed and describes it (version, kernel core, path). Throws std::runtime_error when it
//! cannot be loaded.
std::string blasDescription();

//! The compute path this process uses: the AVX-512 indirect GEMM micro-kernel where the CPU has AVX-512 (no
//! OpenBLAS needed), else im2col / shifted views + OpenBLAS (loaded here; throws std::runtime_error when it
//! cannot be). SMSR_CPU_PATH=blas|blas-gather|blas-span forces the OpenBLAS path. (SMSR_CPU_PATH=plain forces the
//! INT8 variant's plain loops instead of VNNI: computeDescriptionInt8 in sparseBlockCpuInt8.h; the float op ignores it.)
std::string computeDescription();

} // namespace smsr::cpu

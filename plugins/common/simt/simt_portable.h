/*
 * Portable spellings for the two CUDA constructs the host compiler cannot parse, used by kernel
 * sources that must compile both with nvcc and under the CPU SIMT execution layer:
 *   SIMT_LAUNCH(kernel, grid, block, dynSmemBytes, stream)(args...)   instead of kernel<<<...>>>(args...)
 *   SIMT_DYNAMIC_SHARED(T, name);                                     instead of extern __shared__ T name[]
 * `kernel` must be a single token (take `auto k = &myKernel<A, B>;` first for templates).
 */
#pragma once

#if defined(SMSR_SIMT_EMULATION)
#include "simt/cuda_runtime_emu.h"
#define SIMT_LAUNCH(kernel, grid, block, smem, stream) ::simt::makeLauncher(#kernel, kernel, grid, block, smem, stream)
#define SIMT_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(::simt::dynamicSharedMemory())
#else
#define SIMT_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#define SIMT_DYNAMIC_SHARED(T, name)                                                                                \
    extern __shared__ __align__(128) unsigned char simt_dynamic_smem_[];                                              \
    T* name = reinterpret_cast<T*>(simt_dynamic_smem_)
#endif

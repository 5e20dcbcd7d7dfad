/*
 * Test-only stand-in for <cuda_runtime_api.h> in the emulated plugin build (smsr_trt_plugin_emu).
 *
 * TensorRT's NvInferRuntimeBase.h includes <cuda_runtime_api.h> and uses two of its types, cudaStream_t and
 * cudaEvent_t. The plugin's emulated variant links the kernel library compiled under the CPU SIMT layer, whose
 * runtime API (cudaError_t, cudaStream_t, cudaGetErrorName, ...) comes from simt/cuda_runtime_emu.h. Mixing in
 * the real CUDA header would declare those names twice with different linkage, so this directory, first on the
 * include path of that target only, maps the header onto the emulation and adds the one type it lacks.
 */
#pragma once

#include "simt/cuda_runtime_emu.h"

struct CUevent_st;
typedef CUevent_st* cudaEvent_t; // only passed around by TensorRT's interfaces, never used by the plugin

/*
 * SMSRSparseBlock INT8 variant on the CPU (issue 14): the contract of sparseBlockQuant.h, bit-exact against
 * calibration/int8_block.py (sparse_block_int8). x and the weights are int8 codes, mask and y are float32 or
 * float16, the collect bias float32 (the adapter converts a float16 one exactly).
 *
 * Same sparse structure as the float op (sparseBlockCpu.h): per layer, all outputs from all inputs at the active
 * pixels, dense outputs from dense inputs at the inactive ones, sparse outputs zero there (written only where an
 * active neighbour reads them); the collect reads all channels at active pixels and the dense ones elsewhere.
 * Feature maps are zero-padded pixel-major uint8 code maps; products accumulate in int32 (exact), the layer
 * epilogue requantizes with ReLU fused, the collect epilogue is a float32 multiply then a float32 add.
 * Inner loops: AVX-512 VNNI (vpdpbusd) where the CPU has it, plain C++ elsewhere (cpuKernelsInt8.h).
 */
#pragma once

#include "sparseBlockCpu.h"
#include "sparseBlockQuant.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace smsr::cpu
{

//! Bytes of the caller-provided workspace of sparseBlockForwardInt8 (0 for an invalid shape): about
//! (H+2)(W+2)(C + sum of D_l+S_l) + 12 H W bytes plus the packed weights.
size_t sparseBlockInt8WorkspaceSize(SparseBlockShape const& shape) noexcept;

//! One INT8 block for all N images. x: N x C x H x W int8 codes; mask: N x 1 x H x W of ioType (active where
//! nonzero); weights[l]: 3 x 3 x Cin_l x Cout_l int8 codes; collectWeight: 1 x 1 x sum(Cout_l) x C int8 codes
//! (feature scales folded in); collectBias: C float32; y: N x C x H x W of ioType. Scales as in
//! sparseBlockQuant.h. Throws std::invalid_argument for an invalid shape, null pointer or invalid scale.
void sparseBlockForwardInt8(SparseBlockShape const& shape, IoType ioType, int8_t const* x, void const* mask,
    int8_t const* const weights[4], int8_t const* collectWeight, float const* collectBias,
    SparseBlockInt8Scales const& scales, void* y, ParallelRunner& runner, void* workspace = nullptr,
    size_t workspaceSize = 0);

//! The INT8 inner loops this process uses now: "AVX-512 VNNI" where the CPU has avx512_vnni, else "plain C++".
//! SMSR_CPU_PATH=plain forces the plain loops (read on every call; the float op ignores this value).
std::string computeDescriptionInt8();

} // namespace smsr::cpu

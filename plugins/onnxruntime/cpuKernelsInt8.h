/*
 * Inner loops of the INT8 CPU SMSRSparseBlock op (sparseBlockCpuInt8.h): an indirect GEMM over pixel lists on
 * uint8 activation rows x int8 weight codes with int32 accumulation, and the collect output store.
 * Two variants: a plain portable C++ one (cpuKernelsInt8Base.cpp) and an AVX-512 VNNI one (vpdpbusd,
 * cpuKernelsInt8Vnni.cpp, own translation unit with the VNNI flags); int8Kernels() picks one at run time.
 *
 * Activations are unsigned bytes (vpdpbusd multiplies u8 x s8): layer 0's signed x codes are stored as x + 128
 * (padding 128 = signed 0) and the caller passes -128 * sum(weights) per output channel as the accumulator bias;
 * feature codes (0..127) are stored as they are (padding 0).
 *
 * Packed weights ("k4 layout"): the K rows (taps' input channels, each tap's run rounded up to a multiple of 4
 * with zero rows) in groups of 4: w[(g * ldw + o) * 4 + j] = weight of row 4 g + j, output o; ldw = n rounded up
 * to 16, zero columns beyond n. Rows read past a run's end (up to 3 bytes) meet zero weights, so any byte there
 * is harmless; the maps' channel strides are multiples of 4 so such reads stay inside the pixel's row.
 */
#pragma once

#include <cstddef>
#include <cstdint>

namespace smsr::cpu
{

//! One run of an activation row: `len` bytes at base + p * stride + off (read in groups of 4, see above).
struct ByteRun
{
    uint8_t const* base;
    int stride, off, len;
};

//! Groups of 4 rows of a run of `len` channels (static: no out-of-line copy shared across units).
static inline int k4Groups(int len) { return (len + 3) / 4; }

struct Int8Kernels
{
    //! For each pixel p = list[i]: acc[o] = bias[o] (0 when bias is nullptr) + sum over taps t, rows c of the
    //! run: taps[t].base[p * taps[t].stride + taps[t].off + c] * w[...] (k4 layout, taps' groups concatenated),
    //! o < n. Then, when dst != nullptr (requantizing epilogue, ReLU fused):
    //!     dst[p * ld + o] = clamp(rint_even(float(acc[o]) * mult[o]), 0, 127), then zeroTail zero bytes;
    //! else out[i * n + o] = acc[o] (raw, for the collect). bias and mult hold ldw values.
    void (*igemm)(int32_t const* list, int count, ByteRun const* taps, int nTaps, int8_t const* w, int n, int ldw,
        int32_t const* bias, float const* mult, uint8_t* dst, int ld, int zeroTail, int32_t* out);
    //! Collect epilogue into NCHW: y[c * hw + unpadded(list[i])] = T(float(float(acc[i * channels + c]) *
    //! scale[c]) + bias[c]) (a float32 multiply then a float32 add, never an FMA); T = float16 (IEEE bits,
    //! round to nearest even) when half, else float32.
    void (*storeCollect)(int32_t const* acc, int channels, int32_t const* list, int count, int Wp, int W, size_t hw,
        float const* scale, float const* bias, bool half, void* y);
    char const* name;
};

//! The variant to use now: AVX-512 VNNI where the CPU has it (CPUID), unless SMSR_CPU_PATH=plain (read per call).
Int8Kernels const& int8Kernels();

namespace int8plain
{
Int8Kernels const& get();
}
namespace int8vnni
{
Int8Kernels const& get(); //!< only call when the CPU supports AVX-512F/BW/VL and AVX512_VNNI
}

} // namespace smsr::cpu

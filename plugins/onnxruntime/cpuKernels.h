/*
 * Inner loops of the CPU SMSRSparseBlock op: the AVX-512 indirect-GEMM micro-kernel, and the memory-bound loops
 * (im2col gathers, ReLU stores into the feature maps, row gathers, the transposing store of the collect output).
 * Compiled twice from cpuKernels.inl: for baseline x86-64 and with AVX-512 (own translation unit, so no
 * AVX-512 code can leak into the rest of the library); kernels() picks one at run time.
 *
 * Feature maps are pixel-major over a zero-padded (H+2) x (W+2) grid ("padded index" p = (y+1)(W+2) + x+1),
 * so every 3x3 neighbour of an interior pixel is a valid row and no bounds test is needed.
 * state[p]: 0 = padding, 1 = inactive pixel, 2 = active pixel.
 */
#pragma once

#include <cstddef>
#include <cstdint>

namespace smsr::cpu
{

//! One run of a gathered row: `len` floats at `base + p * stride + off`.
struct RowRun
{
    float const* base;
    int stride, off, len;
};

struct Kernels
{
    //! g[i][tap * run + c] = src[(list[i] + dy * Wp + dx) * stride + off + c], taps (dy, dx) row-major.
    void (*gatherIm2col)(float const* src, int stride, int off, int run, int32_t const* list, int count, int Wp,
        float* g);
    //! For i < count with state[s0 + i] == want: dst[(s0 + i) * ld + j] = max(out[i * nOut + j], 0) for j < nOut,
    //! then zeroTail zeros.
    void (*storeSpan)(float const* out, int nOut, int s0, int count, uint8_t const* state, uint8_t want, float* dst,
        int ld, int zeroTail);
    //! dst[list[i] * ld + j] = max(out[i * nOut + j], 0) for j < nOut, then zeroTail zeros.
    void (*storeList)(float const* out, int nOut, int32_t const* list, int count, float* dst, int ld, int zeroTail);
    //! g[i * ldg + ...] = the runs of row list[i], concatenated.
    void (*gatherRows)(RowRun const* runs, int nRuns, int32_t const* list, int count, float* g, int ldg);
    //! Collect output to NCHW: y[c * hw + unpadded(list[i])] = out[c * count + i] + bias[c].
    void (*storeColumns)(float const* out, int channels, int32_t const* list, int count, int Wp, int W, size_t hw,
        float const* bias, float* y);
    //! y[c * ld + i] += bias[c] for c < channels, i < n.
    void (*addBias)(float* y, int channels, int n, size_t ld, float const* bias);
    //! Indirect GEMM (AVX-512 only; nullptr in the baseline variant, which then uses im2col + OpenBLAS):
    //! for each pixel p = list[i]: acc[o] = sum over taps t < nTaps, c < taps[t].len of
    //!     taps[t].base[p * taps[t].stride + taps[t].off + c] * w[(k_t + c) * ldw + o]   (k_t = sum of earlier lens)
    //! for o < n (ldw = n rounded up to 16, w zero-padded); then, when dst != nullptr,
    //!     dst[p * ld + o] = max(acc[o], 0) for o < n, followed by zeroTail zeros,
    //! else out[i * n + o] = acc[o] (raw, for the collect).
    void (*igemm)(int32_t const* list, int count, RowRun const* taps, int nTaps, float const* w, int n, int ldw,
        float* dst, int ld, int zeroTail, float* out);
    //! Collect output from pixel-major rows: y[c * hw + unpadded(list[i])] = out[i * channels + c] + bias[c].
    void (*storeRows)(float const* out, int channels, int32_t const* list, int count, int Wp, int W, size_t hw,
        float const* bias, float* y);
    //! dst[i * channels + c] = src[c * plane + i] for i < n (NCHW row segment -> pixel-major).
    void (*toPixelMajor)(float const* src, size_t plane, int channels, int n, float* dst);
    char const* name;
};

//! The best variant for this CPU (AVX-512 when available and SMSR_CPU_KERNELS is not "baseline").
Kernels const& kernels();

namespace base
{
Kernels const& get();
}
namespace avx512
{
Kernels const& get(); //!< only call when the CPU supports AVX-512F/BW/DQ/VL
}

} // namespace smsr::cpu

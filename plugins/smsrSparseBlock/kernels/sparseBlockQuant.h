/*
 * SMSRSparseBlock INT8 mode: the scales and the requantization rule shared by the CUDA kernels, the CPU op, the
 * TensorRT plugin and the Python reference (calibration/int8_block.py). Pure C++, header-only.
 *
 * INT8 contract (x is int8; weights are int8 codes; mask, bc and y share one float type T):
 *   a_0 = x codes (int8, value ~ s_x * code); a_l = f_{l-1} codes (0..127, value ~ s_f[l-1] * code)
 *   acc_l[p][co] = sum over in-image taps t and dense input channels  a_l[p+t][ci] * w_l[t][ci][co]
 *                + M[p] * (the same sum over sparse input channels)                     (exact integers)
 *   acc_l[p][co] = 0 for a sparse output channel co at an inactive pixel p
 *   f_l codes    = clamp(rint_even(float32(acc_l) * r_l[co]), 0, 127)                   (ReLU fused)
 *                  r_l[co] = float32(double(s_in) * double(s_w_l[co]) / double(s_f[l])), s_in = s_x or s_f[l-1]
 *   y[p][co]     = T( float32(float32(acc_c) * s_c[co]) + float32(bc[co]) ),  acc_c = sum_l f_l codes . wc codes
 * float32(int) rounds to nearest even; every float op is one IEEE float32 mul or add (no FMA contraction), so
 * every implementation gives the same bits. The collect weights carry the feature scales folded in (the converter
 * quantizes wc[ci][co] * s_f[layer of ci] per output channel with scale s_c[co]), so one int32 sum covers all four
 * layers although each layer has its own activation scale.
 */
#pragma once

#include "sparseBlockShape.h"

#include <cmath>
#include <cstdint>

namespace smsr
{

//! Scales of one INT8 invocation (op attributes / plugin fields), host memory.
struct SparseBlockInt8Scales
{
    float x{0.F};                                  //!< s_x: scale of the int8 block input (the Q node's scale)
    float feature[kSparseBlockLayers]{};           //!< s_f[l]: scale of layer l's ReLU output codes
    float const* weight[kSparseBlockLayers]{};     //!< s_w_l[co]: Cout_l per-output-channel scales of w_l
    float const* collect{nullptr};                 //!< s_c[co]: C per-output-channel scales of the folded wc
};

//! nullptr when every scale is finite and > 0 (and the pointers are set), else a static message naming it.
inline char const* validateSparseBlockInt8Scales(SparseBlockShape const& s, SparseBlockInt8Scales const& q) noexcept
{
    auto bad = [](float v) { return !(std::isfinite(v) && v > 0.F); };
    if (bad(q.x))
        return "SMSRSparseBlock INT8: x_scale must be finite and > 0";
    for (int32_t l = 0; l < kSparseBlockLayers; ++l)
    {
        if (bad(q.feature[l]))
            return "SMSRSparseBlock INT8: every feature_scales value must be finite and > 0";
        if (q.weight[l] == nullptr)
            return "SMSRSparseBlock INT8: weight_scales missing";
        for (int32_t c = 0; c < layerOutChannels(s, l); ++c)
            if (bad(q.weight[l][c]))
                return "SMSRSparseBlock INT8: every weight_scales value must be finite and > 0";
    }
    if (q.collect == nullptr)
        return "SMSRSparseBlock INT8: collect_scales missing";
    for (int32_t c = 0; c < s.channels; ++c)
        if (bad(q.collect[c]))
            return "SMSRSparseBlock INT8: every collect_scales value must be finite and > 0";
    return nullptr;
}

//! r_l[co] for layer l (Cout_l values into out): the float32 multiplier of the requantizing epilogue.
inline void sparseBlockRequantMultipliers(
    SparseBlockShape const& s, SparseBlockInt8Scales const& q, int32_t l, float* out) noexcept
{
    double const sIn = l == 0 ? double(q.x) : double(q.feature[l - 1]);
    for (int32_t c = 0; c < layerOutChannels(s, l); ++c)
        out[c] = float(sIn * double(q.weight[l][c]) / double(q.feature[l]));
}

//! Scalar form of the layer epilogue (host code: plain paths and tests).
inline int8_t requantizeReluCode(int32_t acc, float multiplier) noexcept
{
    float const v = std::nearbyint(float(acc) * multiplier); // default rounding mode: nearest even
    return static_cast<int8_t>(v <= 0.F ? 0.F : (v >= 127.F ? 127.F : v));
}

//! Scalar form of the collect epilogue before the cast to T.
inline float dequantizeCollect(int32_t acc, float collectScale, float bias) noexcept
{
    volatile float const prod = float(acc) * collectScale; // volatile: no FMA contraction with the add
    return prod + bias;
}

} // namespace smsr

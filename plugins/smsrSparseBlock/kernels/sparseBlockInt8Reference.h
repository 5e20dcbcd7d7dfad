/*
 * The INT8 contract (sparseBlockQuant.h) evaluated directly, pixel by pixel, with its scalar epilogues: the one C++
 * reference the CPU op's, the emulated kernels' and the plugin's tests compare with bit for bit (the numpy twin is
 * calibration/int8_block.py). Host code only, NCHW tensors, weights [tap][ci][co] / [ci][co]. Slow on purpose.
 * The steps are separate so a test can calibrate a layer's feature scale from its sums before requantizing.
 */
#pragma once

#include "sparseBlockQuant.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace smsr::reference
{

//! Exact sums acc_l (N x Cout_l x H x W) of layer l from its input codes `in` (N x Cin_l x H x W: x codes for
//! l = 0, the previous layer's feature codes after): in-image taps only, sparse inputs only at active pixels,
//! sparse outputs zero at inactive ones.
inline std::vector<int32_t> int8LayerSums(
    SparseBlockShape const& s, int32_t l, std::vector<int32_t> const& in, int8_t const* w, float const* mask)
{
    int32_t const H = s.height, W = s.width, cin = layerInChannels(s, l), cout = layerOutChannels(s, l);
    int32_t const denseIn = l == 0 ? cin : s.dense[l - 1];
    size_t const HW = size_t(H) * W;
    std::vector<int32_t> acc(size_t(s.batch) * cout * HW, 0);
    for (int32_t n = 0; n < s.batch; ++n)
        for (int32_t co = 0; co < cout; ++co)
            for (int32_t y = 0; y < H; ++y)
                for (int32_t x = 0; x < W; ++x)
                {
                    bool const active = mask[size_t(n) * HW + size_t(y) * W + x] != 0.F;
                    int64_t sum = 0;
                    for (int32_t ci = 0; ci < cin; ++ci)
                    {
                        if (ci >= denseIn && !active)
                            break; // sparse inputs (channels denseIn..) count only at active pixels
                        for (int32_t t = 0; t < 9; ++t)
                        {
                            int32_t const sy = y + t / 3 - 1, sx = x + t % 3 - 1;
                            if (sy < 0 || sy >= H || sx < 0 || sx >= W)
                                continue;
                            sum += int64_t(in[(size_t(n) * cin + ci) * HW + size_t(sy) * W + sx])
                                * w[(size_t(t) * cin + ci) * cout + co];
                        }
                    }
                    if (co >= s.dense[l] && !active)
                        sum = 0;
                    acc[(size_t(n) * cout + co) * HW + size_t(y) * W + x] = int32_t(sum);
                }
    return acc;
}

//! Feature codes f_l (0..127) of layer l from its sums, with the scales' multipliers r_l.
inline std::vector<int32_t> int8LayerCodes(
    SparseBlockShape const& s, int32_t l, std::vector<int32_t> const& acc, SparseBlockInt8Scales const& q)
{
    int32_t const cout = layerOutChannels(s, l);
    size_t const HW = size_t(s.height) * s.width;
    std::vector<float> r(static_cast<size_t>(cout));
    sparseBlockRequantMultipliers(s, q, l, r.data());
    std::vector<int32_t> codes(acc.size());
    for (size_t i = 0; i < acc.size(); ++i)
        codes[i] = requantizeReluCode(acc[i], r[i / HW % size_t(cout)]);
    return codes;
}

//! y (N x C x H x W, float32 before the cast to the I/O type) from the four layers' codes.
inline std::vector<float> int8Collect(SparseBlockShape const& s, std::vector<int32_t> const (&codes)[kSparseBlockLayers],
    int8_t const* wc, float const* bc, float const* collectScales)
{
    int32_t const C = s.channels;
    size_t const HW = size_t(s.height) * s.width;
    std::vector<float> y(size_t(s.batch) * C * HW);
    for (int32_t n = 0; n < s.batch; ++n)
        for (int32_t co = 0; co < C; ++co)
            for (size_t p = 0; p < HW; ++p)
            {
                int64_t sum = 0;
                int32_t row = 0;
                for (int32_t l = 0; l < kSparseBlockLayers; ++l)
                    for (int32_t ci = 0; ci < layerOutChannels(s, l); ++ci, ++row)
                        sum += int64_t(codes[l][(size_t(n) * layerOutChannels(s, l) + ci) * HW + p]) * wc[size_t(row) * C + co];
                y[(size_t(n) * C + co) * HW + p] = dequantizeCollect(int32_t(sum), collectScales[co], bc[co]);
            }
    return y;
}

//! The whole block: y (float32 before the cast to the I/O type); `codes` (optional) receives f_0..f_3.
inline std::vector<float> int8Block(SparseBlockShape const& s, int8_t const* x, float const* mask,
    int8_t const* const w[kSparseBlockLayers], int8_t const* wc, float const* bc, SparseBlockInt8Scales const& q,
    std::vector<int32_t> (*codesOut)[kSparseBlockLayers] = nullptr)
{
    std::vector<int32_t> codes[kSparseBlockLayers];
    std::vector<int32_t> in(x, x + size_t(s.batch) * s.channels * s.height * s.width);
    for (int32_t l = 0; l < kSparseBlockLayers; ++l)
    {
        codes[l] = int8LayerCodes(s, l, int8LayerSums(s, l, in, w[l], mask), q);
        in = codes[l];
    }
    std::vector<float> y = int8Collect(s, codes, wc, bc, q.collect);
    if (codesOut != nullptr)
        for (int32_t l = 0; l < kSparseBlockLayers; ++l)
            (*codesOut)[l] = std::move(codes[l]);
    return y;
}

} // namespace smsr::reference

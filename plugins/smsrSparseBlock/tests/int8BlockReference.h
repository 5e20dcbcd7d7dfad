/*
 * INT8 SMSRSparseBlock test data for the plugin's host test (emulated kernels) and its GPU harness, with the expected
 * y from the shared C++ reference of the contract (kernels/sparseBlockInt8Reference.h). Host code only.
 */
#pragma once

#include "kernels/sparseBlockInt8Reference.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace smsr_test
{

//! One block invocation: N x C x H x W and the channel split.
struct Int8Block
{
    int32_t n, c, h, w;
    int32_t dense[4], sparse[4];
    int32_t cout(int32_t l) const { return dense[l] + sparse[l]; }
    int32_t cin(int32_t l) const { return l == 0 ? c : cout(l - 1); }
    int32_t collectIn() const { return cout(0) + cout(1) + cout(2) + cout(3); }
};

//! INT8 block data and the contract's y (kernels/sparseBlockInt8Reference.h); the feature scales are calibrated on the data itself (99.9th percentile of each layer's positive sums), so the
//! codes spread over 0..127 instead of saturating. Tensors NCHW / [tap][ci][co] / [ci][co].
struct Int8Case
{
    std::vector<int8_t> x, w[4], wc;
    std::vector<float> mask, bc; // bc rounded to the I/O type already
    float xScale{0.02F};
    float feature[4]{};
    std::vector<float> weightScales, collectScales;
    std::vector<float> y;     // reference y (float32, before the cast to the I/O type)
    size_t unsaturated{0};    // feature codes strictly between 0 and 127 (the test data is not degenerate)
    size_t featureCodes{0};
};

inline Int8Case makeInt8Case(Int8Block const& b, float (*roundIo)(float), uint32_t seed)
{
    Int8Case k;
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> code(-127, 127);
    std::uniform_real_distribution<float> unit(0.F, 1.F);
    size_t const HW = size_t(b.h) * b.w;
    k.x.resize(size_t(b.n) * b.c * HW);
    for (auto& v : k.x)
        v = static_cast<int8_t>(code(rng));
    k.mask.resize(size_t(b.n) * HW);
    for (size_t i = 0; i < k.mask.size(); ++i)
        k.mask[i] = unit(rng) < (i < HW ? 0.4F : 0.7F) ? 1.F : 0.F;
    for (int32_t l = 0; l < 4; ++l)
    {
        k.w[l].resize(size_t(9) * b.cin(l) * b.cout(l));
        for (auto& v : k.w[l])
            v = static_cast<int8_t>(code(rng));
        for (int32_t co = 0; co < b.cout(l); ++co)
            k.weightScales.push_back(1e-3F * (0.5F + unit(rng)));
    }
    k.wc.resize(size_t(b.collectIn()) * b.c);
    for (auto& v : k.wc)
        v = static_cast<int8_t>(code(rng));
    k.bc.resize(size_t(b.c));
    for (int32_t co = 0; co < b.c; ++co)
    {
        float const v = (unit(rng) - 0.5F) * 4.F;
        k.bc[co] = roundIo(v);
        k.collectScales.push_back(1e-4F * (0.5F + unit(rng)));
    }

    smsr::SparseBlockShape s{};
    s.batch = b.n;
    s.channels = b.c;
    s.height = b.h;
    s.width = b.w;
    std::memcpy(s.dense, b.dense, sizeof s.dense);
    std::memcpy(s.sparse, b.sparse, sizeof s.sparse);
    smsr::SparseBlockInt8Scales q{};
    q.x = k.xScale;
    q.collect = k.collectScales.data();
    size_t off = 0;
    for (int32_t l = 0; l < 4; ++l)
    {
        q.weight[l] = k.weightScales.data() + off;
        off += size_t(b.cout(l));
    }
    std::vector<int32_t> codes[4]; // per layer: N x Cout x HW
    std::vector<int32_t> in(k.x.begin(), k.x.end());
    for (int32_t l = 0; l < 4; ++l)
    {
        int32_t const cout = b.cout(l);
        std::vector<int32_t> const acc = smsr::reference::int8LayerSums(s, l, in, k.w[l].data(), k.mask.data());
        // Calibrate s_f[l]: the 99.9th percentile of the layer's positive values maps to code 127.
        std::vector<double> pos;
        for (size_t i = 0; i < acc.size(); ++i)
        {
            int32_t const co = int32_t(i / HW % size_t(cout));
            double const v = double(acc[i]) * (l == 0 ? k.xScale : k.feature[l - 1]) * q.weight[l][co];
            if (v > 0)
                pos.push_back(v);
        }
        std::sort(pos.begin(), pos.end());
        k.feature[l] = pos.empty() ? 1.F : float(pos[size_t(0.999 * double(pos.size() - 1))] / 127.0);
        q.feature[l] = k.feature[l];
        codes[l] = smsr::reference::int8LayerCodes(s, l, acc, q);
        for (int32_t c : codes[l])
            k.unsaturated += c > 0 && c < 127 ? 1 : 0;
        k.featureCodes += codes[l].size();
        in = codes[l];
    }
    k.y = smsr::reference::int8Collect(s, codes, k.wc.data(), k.bc.data(), k.collectScales.data());
    return k;
}

} // namespace smsr_test

/*
 * INT8 SMSRSparseBlock test data and the INT8 contract (kernels/sparseBlockQuant.h) evaluated directly with its
 * scalar epilogues, for the plugin's host test (emulated kernels) and its GPU harness. Host code only.
 */
#pragma once

#include "kernels/sparseBlockQuant.h"

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

//! INT8 block data and the contract (kernels/sparseBlockQuant.h) evaluated directly with its scalar epilogues;
//! the feature scales are calibrated on the data itself (99.9th percentile of each layer's positive sums), so the
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
    k.y.assign(size_t(b.n) * b.c * HW, 0.F);
    std::vector<std::vector<int32_t>> acc(4), codes(4); // per layer: N x Cout x HW
    for (int32_t l = 0; l < 4; ++l)
    {
        int32_t const cin = b.cin(l), cout = b.cout(l), denseIn = l == 0 ? cin : b.dense[l - 1];
        acc[l].assign(size_t(b.n) * cout * HW, 0);
        for (int32_t n = 0; n < b.n; ++n)
            for (int32_t co = 0; co < cout; ++co)
                for (int32_t yy = 0; yy < b.h; ++yy)
                    for (int32_t xx = 0; xx < b.w; ++xx)
                    {
                        int64_t sd = 0, ss = 0;
                        for (int32_t ci = 0; ci < cin; ++ci)
                            for (int32_t t = 0; t < 9; ++t)
                            {
                                int32_t const sy = yy + t / 3 - 1, sx = xx + t % 3 - 1;
                                if (sy < 0 || sy >= b.h || sx < 0 || sx >= b.w)
                                    continue;
                                size_t const src = (size_t(n) * cin + ci) * HW + size_t(sy) * b.w + sx;
                                int32_t const a = l == 0 ? k.x[src] : codes[l - 1][src];
                                (ci < denseIn ? sd : ss) += int64_t(a) * k.w[l][(size_t(t) * cin + ci) * cout + co];
                            }
                        bool const m = k.mask[size_t(n) * HW + size_t(yy) * b.w + xx] != 0.F;
                        int64_t z = sd + (m ? ss : 0);
                        if (co >= b.dense[l] && !m)
                            z = 0;
                        acc[l][(size_t(n) * cout + co) * HW + size_t(yy) * b.w + xx] = int32_t(z);
                    }
        // Calibrate s_f[l]: the 99.9th percentile of the layer's positive values maps to code 127.
        std::vector<double> pos;
        for (int32_t n = 0; n < b.n; ++n)
            for (int32_t co = 0; co < cout; ++co)
                for (size_t p = 0; p < HW; ++p)
                {
                    double const v = double(acc[l][(size_t(n) * cout + co) * HW + p]) * (l == 0 ? k.xScale : k.feature[l - 1])
                        * q.weight[l][co];
                    if (v > 0)
                        pos.push_back(v);
                }
        std::sort(pos.begin(), pos.end());
        k.feature[l] = pos.empty() ? 1.F : float(pos[size_t(0.999 * double(pos.size() - 1))] / 127.0);
        q.feature[l] = k.feature[l];
        std::vector<float> r(static_cast<size_t>(cout));
        smsr::sparseBlockRequantMultipliers(s, q, l, r.data());
        codes[l].resize(acc[l].size());
        for (size_t i = 0; i < acc[l].size(); ++i)
        {
            int32_t const co = int32_t(i / HW % size_t(cout));
            codes[l][i] = smsr::requantizeReluCode(acc[l][i], r[size_t(co)]);
            k.unsaturated += codes[l][i] > 0 && codes[l][i] < 127 ? 1 : 0;
        }
        k.featureCodes += codes[l].size();
    }
    for (int32_t n = 0; n < b.n; ++n)
        for (int32_t co = 0; co < b.c; ++co)
            for (size_t p = 0; p < HW; ++p)
            {
                int64_t a = 0;
                int32_t row = 0;
                for (int32_t l = 0; l < 4; ++l)
                    for (int32_t ci = 0; ci < b.cout(l); ++ci, ++row)
                        a += int64_t(codes[l][(size_t(n) * b.cout(l) + ci) * HW + p]) * k.wc[size_t(row) * b.c + co];
                k.y[(size_t(n) * b.c + co) * HW + p] = smsr::dequantizeCollect(int32_t(a), k.collectScales[co], k.bc[co]);
            }
    return k;
}

} // namespace smsr_test

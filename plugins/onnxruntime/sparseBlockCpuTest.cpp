// smsr_cpu_core_test: smsr::cpu::sparseBlockForward against a direct (double) evaluation of the op contract,
// on small random blocks: odd sizes, N = 2, masks empty/partial/full, layers without dense or sparse channels.
#include "sparseBlockCpu.h"

#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <exception>
#include <random>
#include <vector>

namespace
{

using smsr::SparseBlockShape;

// Direct evaluation of the contract (DESIGN.md §2), dense-masked, in double. Weights in the op's layout:
// w_l = 3 x 3 x Cin_l x Cout_l, wc = 1 x 1 x sum(Cout_l) x C.
std::vector<double> reference(SparseBlockShape const& s, std::vector<float> const& x, std::vector<float> const& m,
    std::vector<float> const* w, std::vector<float> const& wc, std::vector<float> const& bc)
{
    int const H = s.height, W = s.width, HW = H * W, C = s.channels;
    std::vector<double> y(size_t(s.batch) * C * HW);
    for (int n = 0; n < s.batch; ++n)
    {
        float const* mn = m.data() + size_t(n) * HW;
        std::vector<double> in(x.begin() + size_t(n) * C * HW, x.begin() + size_t(n + 1) * C * HW);
        int cin = C, din = C;
        std::vector<std::vector<double>> feats;
        for (int l = 0; l < 4; ++l)
        {
            int const cout = s.dense[l] + s.sparse[l];
            std::vector<double> z(size_t(cout) * HW, 0.0);
            for (int o = 0; o < cout; ++o)
                for (int p = 0; p < HW; ++p)
                {
                    int const py = p / W, px = p % W;
                    double dsum = 0, ssum = 0;
                    for (int c = 0; c < cin; ++c)
                        for (int t = 0; t < 9; ++t)
                        {
                            int const yy = py + t / 3 - 1, xx = px + t % 3 - 1;
                            if (yy < 0 || yy >= H || xx < 0 || xx >= W)
                                continue;
                            double const v = in[size_t(c) * HW + yy * W + xx] * w[l][(size_t(t) * cin + c) * cout + o];
                            (c < din ? dsum : ssum) += v;
                        }
                    double zz = dsum + mn[p] * ssum;
                    if (o >= s.dense[l])
                        zz *= mn[p];
                    z[size_t(o) * HW + p] = zz > 0 ? zz : 0;
                }
            feats.push_back(z);
            in = z;
            cin = cout;
            din = s.dense[l];
        }
        for (int c = 0; c < C; ++c)
            for (int p = 0; p < HW; ++p)
            {
                double acc = bc[c];
                int col = 0;
                for (auto const& f : feats)
                    for (size_t k = 0; k < f.size() / HW; ++k, ++col)
                        acc += wc[size_t(col) * C + c] * f[k * HW + p];
                y[(size_t(n) * C + c) * HW + p] = acc;
            }
    }
    return y;
}

bool runCase(SparseBlockShape s, double density, unsigned seed, int threads)
{
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u01(0.f, 1.f), wdist(-0.1f, 0.1f);
    size_t const HW = size_t(s.height) * s.width;
    std::vector<float> x(size_t(s.batch) * s.channels * HW), m(size_t(s.batch) * HW);
    for (auto& v : x)
        v = 255.f * u01(rng);
    for (auto& v : m)
        v = u01(rng) < density ? 1.f : 0.f;
    std::vector<float> w[4];
    for (int l = 0; l < 4; ++l)
    {
        w[l].resize(size_t(smsr::layerOutChannels(s, l)) * smsr::layerInChannels(s, l) * 9);
        for (auto& v : w[l])
            v = wdist(rng);
    }
    std::vector<float> wc(size_t(s.channels) * smsr::collectInChannels(s)), bc(s.channels);
    for (auto& v : wc)
        v = wdist(rng);
    for (auto& v : bc)
        v = wdist(rng);
    std::vector<float> y(x.size(), -1.f);
    float const* wp[4] = {w[0].data(), w[1].data(), w[2].data(), w[3].data()};
    smsr::cpu::sparseBlockForward(s, x.data(), m.data(), wp, wc.data(), bc.data(), y.data(), threads);
    std::vector<double> ref = reference(s, x, m, w, wc, bc);
    double maxErr = 0, maxRef = 0;
    for (size_t i = 0; i < y.size(); ++i)
    {
        maxErr = std::fmax(maxErr, std::fabs(y[i] - ref[i]));
        maxRef = std::fmax(maxRef, std::fabs(ref[i]));
    }
    bool const ok = maxErr <= 1e-4 * std::fmax(1.0, maxRef);
    std::printf("%s N=%d C=%d %dx%d dense=[%d %d %d %d] sparse=[%d %d %d %d] density=%.2f threads=%d: "
                "max|err| %.3g (max|ref| %.3g)\n",
        ok ? "ok  " : "FAIL", s.batch, s.channels, s.height, s.width, s.dense[0], s.dense[1], s.dense[2], s.dense[3],
        s.sparse[0], s.sparse[1], s.sparse[2], s.sparse[3], density, threads, maxErr, maxRef);
    return ok;
}

SparseBlockShape makeShape(int n, int c, int h, int w, std::initializer_list<int> d, std::initializer_list<int> sp)
{
    SparseBlockShape s;
    s.batch = n;
    s.channels = c;
    s.height = h;
    s.width = w;
    int i = 0;
    for (int v : d)
        s.dense[i++] = v;
    i = 0;
    for (int v : sp)
        s.sparse[i++] = v;
    return s;
}

} // namespace

int main()
{
    setenv("SMSR_CPU_POISON", "1", 0); // NaN-filled workspace: a read of anything never written shows up
    try
    {
        std::printf("compute path: %s\n", smsr::cpu::computeDescription().c_str());
        bool ok = true;
        // official-like split scaled down, a split with no dense channels, one with no sparse channels
        SparseBlockShape const a = makeShape(2, 16, 23, 19, {6, 2, 1, 0}, {10, 14, 15, 16});
        SparseBlockShape const b = makeShape(1, 8, 17, 33, {0, 0, 0, 0}, {8, 8, 8, 8});
        SparseBlockShape const c = makeShape(2, 8, 5, 7, {8, 3, 8, 1}, {0, 5, 0, 7});
        SparseBlockShape const big = makeShape(1, 8, 40, 37, {3, 1, 0, 2}, {5, 7, 8, 6}); // several tiles
        SparseBlockShape const wide = makeShape(1, 70, 9, 11, {30, 10, 5, 0}, {40, 60, 75, 70}); // > 64 channels
        unsigned seed = 1;
        for (SparseBlockShape const& s : {a, b, c, big, wide})
            for (double density : {0.0, 0.3, 1.0})
                ok &= runCase(s, density, seed++, 1 + int(seed % 2));
        std::printf(ok ? "all cases passed\n" : "SOME CASES FAILED\n");
        return ok ? 0 : 1;
    }
    catch (std::exception const& e)
    {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}

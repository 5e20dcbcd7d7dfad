// smsr_cpu_int8_test: smsr::cpu::sparseBlockForwardInt8 against the C++ reference of the INT8 contract
// (kernels/sparseBlockInt8Reference.h), bit-exact (float32 and float16 y), on the VNNI loops (where the CPU has them) and the
// plain loops (SMSR_CPU_PATH=plain): odd sizes, N = 2, masks empty/partial/full, layers without dense or sparse
// channels, C not a multiple of 16, > 64 output channels, extreme codes.
//   smsr_cpu_int8_test             the cases
//   smsr_cpu_int8_test --bench H W density [reps [default|plain]]   times an official-like block 0 (1 thread)
#include "halfConvert.h"
#include "sparseBlockCpuInt8.h"
#include "sparseBlockInt8Reference.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <random>
#include <string>
#include <vector>

namespace
{

using smsr::SparseBlockShape;

struct Block
{
    SparseBlockShape s;
    std::vector<int8_t> x, w[4], wc;
    std::vector<float> mask, bc, featureScales, weightScales, collectScales;
    float xScale{0.02F};
    smsr::SparseBlockInt8Scales scales() const
    {
        smsr::SparseBlockInt8Scales q;
        q.x = xScale;
        size_t off = 0;
        for (int l = 0; l < 4; ++l)
        {
            q.feature[l] = featureScales[l];
            q.weight[l] = weightScales.data() + off;
            off += smsr::layerOutChannels(s, l);
        }
        q.collect = collectScales.data();
        return q;
    }
};

//! The contract, directly (the C++ reference shared with the kernel and plugin tests).
std::vector<float> reference(Block const& b)
{
    smsr::SparseBlockInt8Scales const q = b.scales();
    int8_t const* const w[4] = {b.w[0].data(), b.w[1].data(), b.w[2].data(), b.w[3].data()};
    return smsr::reference::int8Block(b.s, b.x.data(), b.mask.data(), w, b.wc.data(), b.bc.data(), q);
}

Block makeBlock(SparseBlockShape const& s, double density, unsigned seed)
{
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> u01(0.F, 1.F);
    std::uniform_int_distribution<int> code(-127, 127), xcode(-128, 127);
    Block b;
    b.s = s;
    size_t const HW = size_t(s.height) * s.width;
    b.x.resize(size_t(s.batch) * s.channels * HW);
    for (auto& v : b.x)
        v = int8_t(xcode(rng));
    b.mask.resize(size_t(s.batch) * HW);
    for (auto& v : b.mask)
        v = u01(rng) < density ? 1.F : 0.F;
    int sumCout = 0;
    for (int l = 0; l < 4; ++l)
    {
        b.w[l].resize(size_t(smsr::layerOutChannels(s, l)) * smsr::layerInChannels(s, l) * 9);
        for (auto& v : b.w[l])
            v = int8_t(code(rng));
        sumCout += smsr::layerOutChannels(s, l);
    }
    b.wc.resize(size_t(sumCout) * s.channels);
    for (auto& v : b.wc)
        v = int8_t(code(rng));
    b.bc.resize(s.channels);
    for (auto& v : b.bc)
        v = u01(rng) - 0.5F;
    // scales: typical accumulators land around the middle of 0..127, the largest saturate
    for (int l = 0; l < 4; ++l)
    {
        double const sIn = l == 0 ? b.xScale : b.featureScales[l - 1];
        double const typical = 127.0 * 64 * std::sqrt(9.0 * smsr::layerInChannels(s, l)) * sIn * 0.004;
        b.featureScales.push_back(float(typical / 40));
    }
    for (int i = 0; i < sumCout; ++i)
        b.weightScales.push_back(0.003F + 0.002F * u01(rng));
    for (int i = 0; i < s.channels; ++i)
        b.collectScales.push_back(0.001F + 0.001F * u01(rng));
    return b;
}

std::vector<float> runOp(Block const& b, bool half, int threads)
{
    smsr::cpu::ThreadRunner runner(threads);
    size_t const n = b.x.size();
    std::vector<float> y(n);
    int8_t const* w[4] = {b.w[0].data(), b.w[1].data(), b.w[2].data(), b.w[3].data()};
    if (!half)
    {
        smsr::cpu::sparseBlockForwardInt8(b.s, smsr::cpu::IoType::kFloat32, b.x.data(), b.mask.data(), w, b.wc.data(),
            b.bc.data(), b.scales(), y.data(), runner);
        return y;
    }
    std::vector<uint16_t> mh(b.mask.size()), yh(n);
    smsr::cpu::floatToHalf(b.mask.data(), mh.data(), mh.size());
    smsr::cpu::sparseBlockForwardInt8(b.s, smsr::cpu::IoType::kFloat16, b.x.data(), mh.data(), w, b.wc.data(),
        b.bc.data(), b.scales(), yh.data(), runner);
    smsr::cpu::halfToFloat(yh.data(), y.data(), n);
    return y;
}

bool sameBits(std::vector<float> const& a, std::vector<float> const& b, size_t* firstDiff)
{
    for (size_t i = 0; i < a.size(); ++i)
        if (std::memcmp(&a[i], &b[i], 4) != 0)
        {
            *firstDiff = i;
            return false;
        }
    return true;
}

bool runCase(SparseBlockShape const& s, double density, unsigned seed, int threads)
{
    Block const b = makeBlock(s, density, seed);
    std::vector<float> const ref = reference(b);
    std::vector<float> refHalf(ref.size());
    {
        std::vector<uint16_t> h(ref.size());
        smsr::cpu::floatToHalf(ref.data(), h.data(), h.size());
        smsr::cpu::halfToFloat(h.data(), refHalf.data(), h.size());
    }
    bool ok = true;
    for (char const* path : {"default", "plain"})
    {
        if (std::strcmp(path, "plain") == 0)
            setenv("SMSR_CPU_PATH", "plain", 1);
        else
            unsetenv("SMSR_CPU_PATH");
        std::string const loops = smsr::cpu::computeDescriptionInt8();
        for (bool half : {false, true})
        {
            std::vector<float> const y = runOp(b, half, threads);
            size_t d = 0;
            bool const same = sameBits(y, half ? refHalf : ref, &d);
            std::printf("%s %-12s %s N=%d C=%d %dx%d dense=[%d %d %d %d] sparse=[%d %d %d %d] density=%.2f threads=%d",
                same ? "ok  " : "FAIL", loops.c_str(), half ? "fp16" : "fp32", s.batch, s.channels, s.height, s.width,
                s.dense[0], s.dense[1], s.dense[2], s.dense[3], s.sparse[0], s.sparse[1], s.sparse[2], s.sparse[3],
                density, threads);
            if (!same)
                std::printf(": first difference at %zu: %.9g vs %.9g", d, y[d], (half ? refHalf : ref)[d]);
            std::printf("\n");
            ok &= same;
        }
    }
    unsetenv("SMSR_CPU_PATH");
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

int bench(int h, int w, double density, int reps, char const* only)
{
    SparseBlockShape const s = makeShape(1, 64, h, w, {24, 9, 3, 0}, {40, 55, 61, 64});
    Block const b = makeBlock(s, density, 7);
    for (char const* path : {"default", "plain"})
    {
        if (only && std::strcmp(only, path) != 0)
            continue;
        if (std::strcmp(path, "plain") == 0)
            setenv("SMSR_CPU_PATH", "plain", 1);
        std::vector<double> t;
        // buffers reused across calls, as ONNX Runtime's arena does (no page faults in the timing)
        std::vector<float> y(b.x.size());
        std::vector<char> ws(smsr::cpu::sparseBlockInt8WorkspaceSize(s));
        int8_t const* wp[4] = {b.w[0].data(), b.w[1].data(), b.w[2].data(), b.w[3].data()};
        smsr::cpu::ThreadRunner runner(1);
        for (int r = 0; r < reps + 1; ++r)
        {
            auto const t0 = std::chrono::steady_clock::now();
            smsr::cpu::sparseBlockForwardInt8(s, smsr::cpu::IoType::kFloat32, b.x.data(), b.mask.data(), wp, b.wc.data(),
                b.bc.data(), b.scales(), y.data(), runner, ws.data(), ws.size());
            t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
        t.erase(t.begin()); // warm-up
        std::sort(t.begin(), t.end());
        std::printf("%-12s %dx%d density %.2f: median %.2f ms (1 thread)\n", smsr::cpu::computeDescriptionInt8().c_str(),
            h, w, density, t[t.size() / 2]);
    }
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    try
    {
        if (argc >= 5 && std::strcmp(argv[1], "--bench") == 0)
            return bench(std::atoi(argv[2]), std::atoi(argv[3]), std::atof(argv[4]), argc > 5 ? std::atoi(argv[5]) : 5,
                argc > 6 ? argv[6] : nullptr);
        setenv("SMSR_CPU_POISON", "1", 0); // 0xff-filled workspace: a read of anything never written shows up
        bool ok = true;
        SparseBlockShape const a = makeShape(2, 20, 13, 11, {8, 3, 1, 0}, {12, 17, 19, 20});
        SparseBlockShape const b = makeShape(1, 8, 9, 17, {0, 0, 0, 0}, {8, 8, 8, 8});
        SparseBlockShape const c = makeShape(2, 8, 5, 7, {8, 3, 8, 1}, {0, 5, 0, 7});
        SparseBlockShape const big = makeShape(1, 12, 30, 29, {3, 1, 0, 2}, {5, 7, 8, 6}); // several tiles
        SparseBlockShape const wide = makeShape(1, 70, 7, 9, {30, 10, 5, 0}, {40, 60, 75, 70}); // > 64 channels
        SparseBlockShape const c32 = makeShape(2, 32, 7, 37, {10, 4, 0, 3}, {22, 30, 20, 29}); // 16-channel blocks
        unsigned seed = 1;
        for (SparseBlockShape const& s : {a, b, c, big, wide, c32})
            for (double density : {0.0, 0.3, 1.0})
                ok &= runCase(s, density, seed++, 1 + int(seed % 2));
        // int32 exactness bound: 7000 input channels of layer 0 are fine, 7400 are refused with a clear error
        ok &= runCase(makeShape(1, 7000, 2, 3, {1, 1, 1, 1}, {0, 1, 0, 1}), 0.5, seed++, 1);
        try
        {
            runOp(makeBlock(makeShape(1, 7400, 1, 1, {1, 1, 1, 1}, {0, 0, 0, 0}), 1.0, seed++), false, 1);
            std::printf("FAIL 7400 input channels were accepted\n");
            ok = false;
        }
        catch (std::invalid_argument const& e)
        {
            bool const named = std::strstr(e.what(), "layer 0 has too many input channels") != nullptr;
            std::printf("%s 7400 input channels refused: %s\n", named ? "ok  " : "FAIL", e.what());
            ok &= named;
        }
        std::printf(ok ? "all cases passed\n" : "SOME CASES FAILED\n");
        return ok ? 0 : 1;
    }
    catch (std::exception const& e)
    {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}

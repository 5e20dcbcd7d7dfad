/*
 * GPGPU-Sim benchmark driver: runs ONE SMSR block on the simulated GPU, either through the project's sparse
 * kernels (enqueueSparseBlock, channels-last FP16, compiled with -DSMSR_PLAIN_WMMA) or through the dense
 * plain-WMMA baseline (dense_block.cuh), on the inputs of an SMBF block fixture (tests/fixtures/
 * dump_block_fixture.py), optionally with a synthetic mask; then checks the output against a float64 host
 * reference in the same run. Cycles are not measured here: the simulator prints them per launch, run.py reads
 * them from its log.
 *
 *   driver --fixture F.bin --mode sparse|dense [--density D --seed S] [--tile 32|64] [--no-check] [--tol T] [--dump F]
 *
 * -DGPUSIM_DENSE_ONLY builds the dense baseline alone (kernel headers without the channels-last API).
 * Prints one "GPUSIM_RESULT key=value ..." line; exit status 0 = ran and (when checked) matched, 1 = mismatch,
 * 2 = bad input or CUDA error.
 */
#include "dense_block.cuh"
#include "sparseBlockKernels.h"

#if !defined(SMSR_SIMT_EMULATION) // the CPU tests build this file under the SIMT layer too
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace
{

struct Fixture
{
    int n{0}, c{0}, h{0}, w{0};
    int dense[4]{}, sparse[4]{};
    std::vector<float> x, mask, wl[4], wc, bc, y; // as stored: NCHW, N x H x W, OIHW, [co][ci], C, NCHW
};

int cout_(Fixture const& f, int l) { return f.dense[l] + f.sparse[l]; }
int cin_(Fixture const& f, int l) { return l == 0 ? f.c : cout_(f, l - 1); }

[[noreturn]] void fail(char const* what)
{
    std::fprintf(stderr, "driver: error: %s\n", what);
    std::exit(2);
}

void check(cudaError_t e, char const* what)
{
    if (e != cudaSuccess)
    {
        std::fprintf(stderr, "driver: CUDA error in %s: %s\n", what, cudaGetErrorString(e));
        std::exit(2);
    }
}

bool readArr(FILE* fp, std::vector<float>& v, size_t count)
{
    v.resize(count);
    return std::fread(v.data(), sizeof(float), count, fp) == count;
}

Fixture readFixture(char const* path)
{
    FILE* fp = std::fopen(path, "rb");
    if (!fp)
        fail("cannot open the fixture file");
    int32_t hdr[13];
    if (std::fread(hdr, sizeof(int32_t), 13, fp) != 13 || hdr[0] != 0x46424D53)
        fail("not an SMBF block fixture (bad magic or short header)");
    Fixture f;
    f.n = hdr[1];
    f.c = hdr[2];
    f.h = hdr[3];
    f.w = hdr[4];
    for (int l = 0; l < 4; ++l)
    {
        f.dense[l] = hdr[5 + l];
        f.sparse[l] = hdr[9 + l];
    }
    if (f.n < 1 || f.c < 1 || f.h < 1 || f.w < 1 || f.n * f.h * f.w > (1 << 24))
        fail("fixture shape out of range");
    size_t const px = size_t(f.n) * f.h * f.w;
    bool ok = readArr(fp, f.x, px * f.c) && readArr(fp, f.mask, px);
    int cc = 0;
    for (int l = 0; l < 4 && ok; ++l)
    {
        ok = readArr(fp, f.wl[l], size_t(cout_(f, l)) * cin_(f, l) * 9);
        cc += cout_(f, l);
    }
    ok = ok && readArr(fp, f.wc, size_t(f.c) * cc) && readArr(fp, f.bc, f.c) && readArr(fp, f.y, px * f.c);
    std::fclose(fp);
    if (!ok)
        fail("fixture file is truncated");
    return f;
}

float roundHalf(float v) { return __half2float(__float2half_rn(v)); }

//! The block in float64 on FP16-rounded inputs (the contract of sparseBlockKernels.h); returns y as NHWC.
//! With an all-ones mask this is the dense block (4 convs + ReLU, collect + bias).
std::vector<double> reference(Fixture const& f, std::vector<float> const& mask)
{
    int const H = f.h, W = f.w, px = f.n * H * W;
    std::vector<double> in(size_t(px) * f.c);
    for (int n = 0; n < f.n; ++n)
        for (int c = 0; c < f.c; ++c)
            for (int i = 0; i < H * W; ++i)
                in[(size_t(n) * H * W + i) * f.c + c] = roundHalf(f.x[(size_t(n) * f.c + c) * H * W + i]);
    std::vector<std::vector<double>> feats;
    for (int l = 0; l < 4; ++l)
    {
        int const ci = cin_(f, l), co = cout_(f, l), dIn = l == 0 ? ci : f.dense[l - 1];
        std::vector<double> wt(size_t(9) * ci * co); // [tap][ci][co]
        for (int o = 0; o < co; ++o)
            for (int i = 0; i < ci; ++i)
                for (int t = 0; t < 9; ++t)
                    wt[(size_t(t) * ci + i) * co + o] = roundHalf(f.wl[l][(size_t(o) * ci + i) * 9 + t]);
        std::vector<double> const& src = l == 0 ? in : feats.back();
        std::vector<double> out(size_t(px) * co, 0.0), zd(co), zs(co);
        for (int p = 0; p < px; ++p)
        {
            int const n = p / (H * W), y = p / W % H, x = p % W;
            std::fill(zd.begin(), zd.end(), 0.0);
            std::fill(zs.begin(), zs.end(), 0.0);
            for (int t = 0; t < 9; ++t)
            {
                int const yy = y + t / 3 - 1, xx = x + t % 3 - 1;
                if (yy < 0 || yy >= H || xx < 0 || xx >= W)
                    continue;
                double const* s = &src[(size_t(n) * H * W + yy * W + xx) * ci];
                for (int i = 0; i < ci; ++i)
                {
                    if (s[i] == 0.0)
                        continue;
                    double const* wr = &wt[(size_t(t) * ci + i) * co];
                    double* z = i < dIn ? zd.data() : zs.data();
                    for (int o = 0; o < co; ++o)
                        z[o] += s[i] * wr[o];
                }
            }
            double const m = mask[p];
            for (int o = 0; o < co; ++o)
            {
                double z = zd[o] + m * zs[o];
                if (o >= f.dense[l])
                    z *= m;
                out[size_t(p) * co + o] = z > 0 ? z : 0;
            }
        }
        feats.push_back(std::move(out));
    }
    int cc = 0;
    for (int l = 0; l < 4; ++l)
        cc += cout_(f, l);
    std::vector<double> y(size_t(px) * f.c);
    for (int p = 0; p < px; ++p)
        for (int o = 0; o < f.c; ++o)
        {
            double acc = roundHalf(f.bc[o]);
            int off = 0;
            for (int l = 0; l < 4; ++l)
            {
                int const co = cout_(f, l);
                for (int i = 0; i < co; ++i)
                    acc += feats[l][size_t(p) * co + i] * roundHalf(f.wc[size_t(o) * cc + off + i]);
                off += co;
            }
            y[size_t(p) * f.c + o] = acc;
        }
    return y;
}

template <typename T>
T* upload(std::vector<T> const& v)
{
    T* d = nullptr;
    check(cudaMalloc(&d, std::max<size_t>(v.size(), 1) * sizeof(T)), "cudaMalloc");
    check(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy H2D");
    return d;
}

std::vector<__half> toHalf(std::vector<float> const& v)
{
    std::vector<__half> h(v.size());
    for (size_t i = 0; i < v.size(); ++i)
        h[i] = __float2half_rn(v[i]);
    return h;
}

//! OIHW (co, ci, 3, 3) -> [ky][kx][ci][co], the weight layout of the kernel contract.
std::vector<float> toTapCiCo(std::vector<float> const& w, int co, int ci, int taps)
{
    std::vector<float> r(w.size());
    for (int o = 0; o < co; ++o)
        for (int i = 0; i < ci; ++i)
            for (int t = 0; t < taps; ++t)
                r[(size_t(t) * ci + i) * co + o] = w[(size_t(o) * ci + i) * taps + t];
    return r;
}

//! Deterministic Bernoulli(density) mask (xorshift), so runs are reproducible.
std::vector<float> syntheticMask(size_t pixels, double density, uint32_t seed)
{
    std::vector<float> m(pixels);
    uint32_t s = seed ? seed : 1u;
    for (size_t i = 0; i < pixels; ++i)
    {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        m[i] = (s >> 8) * (1.0 / 16777216.0) < density ? 1.f : 0.f;
    }
    return m;
}

} // namespace

int main(int argc, char** argv)
{
    char const* fixturePath = nullptr;
    std::string mode;
    double density = -1;
    uint32_t seed = 1;
    int tile = 0;
    bool doCheck = true;
    double tol = 1e-2; // max |error| / max(1, max |reference|)
    char const* dumpPath = nullptr; // raw float32 y (NHWC) and reference, for debugging a mismatch
    for (int i = 1; i < argc; ++i)
    {
        std::string const a = argv[i];
        auto next = [&]() -> char const* {
            if (i + 1 >= argc)
                fail(("missing value after " + a).c_str());
            return argv[++i];
        };
        if (a == "--fixture")
            fixturePath = next();
        else if (a == "--mode")
            mode = next();
        else if (a == "--density")
            density = std::atof(next());
        else if (a == "--seed")
            seed = uint32_t(std::strtoul(next(), nullptr, 10));
        else if (a == "--tile")
            tile = std::atoi(next());
        else if (a == "--no-check")
            doCheck = false;
        else if (a == "--tol")
            tol = std::atof(next());
        else if (a == "--dump")
            dumpPath = next();
        else
            fail(("unknown argument " + a + " (see the comment at the top of driver.cu)").c_str());
    }
    if (!fixturePath || (mode != "sparse" && mode != "dense"))
        fail("usage: driver --fixture F.bin --mode sparse|dense [--density D --seed S] [--tile 32|64] [--no-check]");
    if (density > 1 || (density < 0 && density != -1))
        fail("--density must be in [0, 1]");
    if (tile != 0 && tile != 32 && tile != 64)
        fail("--tile must be 32 or 64");

    Fixture f = readFixture(fixturePath);
    int const px = f.n * f.h * f.w, C = f.c;
    std::vector<float> const mask = density >= 0 ? syntheticMask(px, density, seed) : f.mask;
    double active = 0;
    for (float m : mask)
        active += m;

    // x NCHW -> NHWC (channels-last: the fast path of the kernels and of the dense baseline)
    std::vector<float> xh(size_t(px) * C);
    for (int n = 0; n < f.n; ++n)
        for (int c = 0; c < C; ++c)
            for (int i = 0; i < f.h * f.w; ++i)
                xh[(size_t(n) * f.h * f.w + i) * C + c] = f.x[(size_t(n) * C + c) * f.h * f.w + i];
    int cc = 0;
    for (int l = 0; l < 4; ++l)
        cc += cout_(f, l);

    __half* dX = upload(toHalf(xh));
    __half* dMask = upload(toHalf(mask));
    __half* dW[4];
    for (int l = 0; l < 4; ++l)
        dW[l] = upload(toHalf(toTapCiCo(f.wl[l], cout_(f, l), cin_(f, l), 9)));
    __half* dWc = upload(toHalf(toTapCiCo(f.wc, C, cc, 1)));
    __half* dBc = upload(toHalf(f.bc));
    __half* dY = nullptr;
    check(cudaMalloc(&dY, size_t(px) * C * sizeof(__half)), "cudaMalloc y");
    check(cudaMemset(dY, 0, size_t(px) * C * sizeof(__half)), "cudaMemset y");

#if defined(SMSR_SIMT_EMULATION)
    int const numSms = 46; // what SM86_RTX3070 has
#else
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    int const numSms = prop.multiProcessorCount;
#endif
    if (mode == "sparse")
    {
#if defined(GPUSIM_DENSE_ONLY) // kernels older than the channels-last API: only the baseline can be built
        fail("this driver was built with GPUSIM_DENSE_ONLY (no sparse kernels)");
#else
        smsr::SparseBlockShape s{};
        s.batch = f.n;
        s.channels = C;
        s.height = f.h;
        s.width = f.w;
        for (int l = 0; l < 4; ++l)
        {
            s.dense[l] = f.dense[l];
            s.sparse[l] = f.sparse[l];
        }
        s.format = smsr::TensorFormat::kNHWC;
        smsr::SparseBlockTensors t{};
        t.x = dX;
        t.mask = dMask;
        for (int l = 0; l < 4; ++l)
            t.weights[l] = dW[l];
        t.collectWeight = dWc;
        t.collectBias = dBc;
        t.y = dY;
        size_t const wsSize = smsr::getSparseBlockWorkspaceSize(s, smsr::DataType::kHALF);
        if (wsSize == 0)
            fail("the kernels reject this shape (getSparseBlockWorkspaceSize = 0)");
        void* ws = nullptr;
        check(cudaMalloc(&ws, wsSize), "cudaMalloc workspace");
        check(smsr::enqueueSparseBlock(s, smsr::DataType::kHALF, t, ws, wsSize, 0), "enqueueSparseBlock");
#endif
    }
    else
    {
        if (C != 64 || cc != 256)
            fail("the dense baseline is written for the SMSR block shape (C = 64, 4 x 64 layer outputs)");
        if (tile == 0)
            tile = gpusim::denseTilePixels(px, numSms);
        __half* dConcat = nullptr;
        check(cudaMalloc(&dConcat, size_t(px) * 256 * sizeof(__half)), "cudaMalloc concat");
        __half const* wl[4] = {dW[0], dW[1], dW[2], dW[3]};
        check(gpusim::enqueueDenseBlock(f.n, f.h, f.w, dX, wl, dWc, dBc, dConcat, dY, tile, 0), "dense block");
    }
    check(cudaDeviceSynchronize(), "kernel execution");

    std::vector<__half> yh(size_t(px) * C);
    check(cudaMemcpy(yh.data(), dY, yh.size() * sizeof(__half), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");

    double maxErr = 0, maxRef = 0, refVsFixture = -1;
    bool pass = true;
    if (doCheck)
    {
        std::vector<float> const ones(px, 1.f);
        std::vector<double> const ref = reference(f, mode == "dense" ? ones : mask);
        for (size_t i = 0; i < ref.size(); ++i)
        {
            double const g = __half2float(yh[i]);
            if (!std::isfinite(g))
                maxErr = INFINITY;
            else
                maxErr = std::max(maxErr, std::fabs(g - ref[i]));
            maxRef = std::max(maxRef, std::fabs(ref[i]));
        }
        // FP16 storage of 4 feature maps + FP16 output: ~1e-3 relative on a GPU and in the SIMT emulation;
        // GPGPU-Sim sums each 16-long WMMA dot product in FP16 (instructions.cc mma_impl): ~1e-2 there.
        pass = maxErr <= tol * std::max(1.0, maxRef);
        if (dumpPath)
        {
            FILE* fp = std::fopen(dumpPath, "wb");
            if (!fp)
                fail("cannot write the --dump file");
            for (size_t i = 0; i < ref.size(); ++i)
            {
                float const v[2] = {__half2float(yh[i]), float(ref[i])};
                std::fwrite(v, sizeof(float), 2, fp);
            }
            std::fclose(fp);
        }
        if (mode == "sparse" && density < 0)
        { // the reference itself against the PyTorch block the fixture carries (validates the reference)
            refVsFixture = 0;
            for (int n = 0; n < f.n; ++n)
                for (int c = 0; c < C; ++c)
                    for (int i = 0; i < f.h * f.w; ++i)
                        refVsFixture = std::max(refVsFixture,
                            std::fabs(ref[(size_t(n) * f.h * f.w + i) * C + c] - f.y[(size_t(n) * C + c) * f.h * f.w + i]));
        }
    }
    std::printf("GPUSIM_RESULT mode=%s n=%d c=%d h=%d w=%d density=%.4f tile=%d sms=%d checked=%d max_abs_err=%.6g "
                "max_abs_ref=%.6g ref_vs_fixture=%.6g ok=%d\n",
        mode.c_str(), f.n, C, f.h, f.w, active / px, mode == "dense" ? tile : 0, numSms,
        int(doCheck), maxErr, maxRef, refVsFixture, int(pass));
    return pass ? 0 : 1;
}

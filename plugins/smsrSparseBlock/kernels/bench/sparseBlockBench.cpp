/*
 * GPU benchmark of the SMSRSparseBlock kernels (tests/gpu/run.sh; needs a CUDA device).
 *
 *   smsr_kernels_bench --fixture block.bin [--tile-to 720x1280] [--type fp16|fp32] [--iters 300] [--warmup 30]
 *                      [--graph] [--label TEXT]
 *
 * Real block inputs come from an SMBF fixture (tests/fixtures/dump_block_fixture.py). --tile-to repeats the
 * fixture's features and mask spatially up to H x W, which keeps the real mask's fragmentation (unlike resizing).
 * Every iteration is timed with its own pair of CUDA events; prints one JSON line with the median and percentiles.
 */
#include "sparseBlockKernels.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace
{
#define CHECK_CUDA(call)                                                                                               \
    do                                                                                                                 \
    {                                                                                                                  \
        cudaError_t const e_ = (call);                                                                                 \
        if (e_ != cudaSuccess)                                                                                         \
        {                                                                                                              \
            std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorName(e_), __FILE__, __LINE__, #call);     \
            std::exit(1);                                                                                              \
        }                                                                                                              \
    } while (0)

struct Fixture
{
    smsr::SparseBlockShape s;
    std::vector<float> x, mask, w[4], wc, bc;
};

Fixture load(char const* path)
{
    FILE* f = std::fopen(path, "rb");
    if (!f)
    {
        std::fprintf(stderr, "cannot open fixture %s\n", path);
        std::exit(1);
    }
    int32_t h[13];
    if (std::fread(h, 4, 13, f) != 13 || h[0] != 0x46424D53)
    {
        std::fprintf(stderr, "%s: not an SMBF fixture\n", path);
        std::exit(1);
    }
    Fixture F;
    F.s.batch = h[1];
    F.s.channels = h[2];
    F.s.height = h[3];
    F.s.width = h[4];
    for (int l = 0; l < 4; ++l)
    {
        F.s.dense[l] = h[5 + l];
        F.s.sparse[l] = h[9 + l];
    }
    size_t const hw = size_t(F.s.height) * F.s.width;
    auto rd = [&](std::vector<float>& v, size_t n) {
        v.resize(n);
        if (std::fread(v.data(), 4, n, f) != n)
        {
            std::fprintf(stderr, "%s: truncated\n", path);
            std::exit(1);
        }
    };
    rd(F.x, size_t(F.s.batch) * F.s.channels * hw);
    rd(F.mask, size_t(F.s.batch) * hw);
    for (int l = 0; l < 4; ++l)
        rd(F.w[l], size_t(smsr::layerOutChannels(F.s, l)) * smsr::layerInChannels(F.s, l) * 9);
    rd(F.wc, size_t(F.s.channels) * smsr::collectInChannels(F.s));
    rd(F.bc, size_t(F.s.channels));
    std::fclose(f);
    return F;
}

//! Repeats image 0 of the fixture spatially to H x W (batch 1).
Fixture tileTo(Fixture const& in, int H, int W)
{
    Fixture F = in;
    F.s.batch = 1;
    F.s.height = H;
    F.s.width = W;
    int const h0 = in.s.height, w0 = in.s.width, C = in.s.channels;
    F.x.assign(size_t(C) * H * W, 0.f);
    F.mask.assign(size_t(H) * W, 0.f);
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x)
        {
            int const sy = y % h0, sx = x % w0;
            F.mask[size_t(y) * W + x] = in.mask[size_t(sy) * w0 + sx];
            for (int c = 0; c < C; ++c)
                F.x[(size_t(c) * H + y) * W + x] = in.x[(size_t(c) * h0 + sy) * w0 + sx];
        }
    return F;
}

void* upload(std::vector<float> const& v, bool half)
{
    void* d = nullptr;
    if (half)
    {
        std::vector<__half> h(v.size());
        for (size_t i = 0; i < v.size(); ++i)
            h[i] = __float2half_rn(v[i]);
        CHECK_CUDA(cudaMalloc(&d, h.size() * 2));
        CHECK_CUDA(cudaMemcpy(d, h.data(), h.size() * 2, cudaMemcpyHostToDevice));
    }
    else
    {
        CHECK_CUDA(cudaMalloc(&d, v.size() * 4));
        CHECK_CUDA(cudaMemcpy(d, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
    }
    return d;
}
} // namespace

int main(int argc, char** argv)
{
    char const* fixture = nullptr;
    std::string type = "fp16", label;
    int iters = 300, warmup = 30, tileH = 0, tileW = 0;
    bool graph = false;
    for (int i = 1; i < argc; ++i)
    {
        std::string const a = argv[i];
        if (a == "--fixture" && i + 1 < argc)
            fixture = argv[++i];
        else if (a == "--type" && i + 1 < argc)
            type = argv[++i];
        else if (a == "--iters" && i + 1 < argc)
            iters = std::atoi(argv[++i]);
        else if (a == "--warmup" && i + 1 < argc)
            warmup = std::atoi(argv[++i]);
        else if (a == "--graph")
            graph = true;
        else if (a == "--label" && i + 1 < argc)
            label = argv[++i];
        else if (a == "--tile-to" && i + 1 < argc && std::sscanf(argv[i + 1], "%dx%d", &tileH, &tileW) == 2)
            ++i;
        else
        {
            std::fprintf(stderr, "usage: %s --fixture FILE [--tile-to HxW] [--type fp16|fp32] [--iters N] "
                                 "[--warmup N] [--graph] [--label TEXT]\n", argv[0]);
            return 2;
        }
    }
    if (!fixture || iters < 1)
    {
        std::fprintf(stderr, "--fixture is required\n");
        return 2;
    }
    Fixture F = load(fixture);
    if (tileH > 0 && tileW > 0)
        F = tileTo(F, tileH, tileW);
    bool const half = type == "fp16";
    smsr::DataType const dt = half ? smsr::DataType::kHALF : smsr::DataType::kFLOAT;

    smsr::SparseBlockTensors T;
    T.x = upload(F.x, half);
    T.mask = upload(F.mask, half);
    for (int l = 0; l < 4; ++l)
        T.weights[l] = upload(F.w[l], half);
    T.collectWeight = upload(F.wc, half);
    T.collectBias = upload(F.bc, half);
    size_t const ySize = size_t(F.s.batch) * F.s.channels * F.s.height * F.s.width;
    void* y = nullptr;
    CHECK_CUDA(cudaMalloc(&y, ySize * (half ? 2 : 4)));
    T.y = y;
    size_t const wsBytes = smsr::getSparseBlockWorkspaceSize(F.s, dt);
    void* ws = nullptr;
    CHECK_CUDA(cudaMalloc(&ws, wsBytes));
    cudaStream_t stream;
    CHECK_CUDA(cudaStreamCreate(&stream));

    cudaGraphExec_t exec = nullptr;
    if (graph)
    {
        cudaGraph_t g;
        CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
        CHECK_CUDA(smsr::enqueueSparseBlock(F.s, dt, T, ws, wsBytes, stream));
        CHECK_CUDA(cudaStreamEndCapture(stream, &g));
        CHECK_CUDA(cudaGraphInstantiate(&exec, g, 0));
        CHECK_CUDA(cudaGraphDestroy(g));
    }
    auto once = [&] {
        if (graph)
            CHECK_CUDA(cudaGraphLaunch(exec, stream));
        else
            CHECK_CUDA(smsr::enqueueSparseBlock(F.s, dt, T, ws, wsBytes, stream));
    };
    for (int i = 0; i < warmup; ++i)
        once();
    CHECK_CUDA(cudaStreamSynchronize(stream));
    std::vector<cudaEvent_t> ev(2 * iters);
    for (auto& e : ev)
        CHECK_CUDA(cudaEventCreate(&e));
    for (int i = 0; i < iters; ++i)
    {
        CHECK_CUDA(cudaEventRecord(ev[2 * i], stream));
        once();
        CHECK_CUDA(cudaEventRecord(ev[2 * i + 1], stream));
    }
    CHECK_CUDA(cudaStreamSynchronize(stream));
    std::vector<float> ms(iters);
    for (int i = 0; i < iters; ++i)
        CHECK_CUDA(cudaEventElapsedTime(&ms[i], ev[2 * i], ev[2 * i + 1]));
    std::sort(ms.begin(), ms.end());
    double density = 0;
    for (float m : F.mask)
        density += m != 0.f;
    density /= double(F.mask.size());
    cudaDeviceProp prop{};
    int dev = 0;
    CHECK_CUDA(cudaGetDevice(&dev));
    CHECK_CUDA(cudaGetDeviceProperties(&prop, dev));
    std::printf("{\"impl\": \"smsr_kernels\", \"label\": \"%s\", \"device\": \"%s\", \"type\": \"%s\", \"graph\": %s, "
                "\"N\": %d, \"C\": %d, \"H\": %d, \"W\": %d, \"density\": %.4f, \"iters\": %d, \"median_ms\": %.5f, "
                "\"p10_ms\": %.5f, \"p90_ms\": %.5f, \"workspace_bytes\": %zu}\n",
        label.c_str(), prop.name, type.c_str(), graph ? "true" : "false", F.s.batch, F.s.channels, F.s.height,
        F.s.width, density, iters, ms[iters / 2], ms[iters / 10], ms[iters * 9 / 10], wsBytes);
    return 0;
}

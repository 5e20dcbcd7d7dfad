/*
 * GPU harness of the TensorRT plugin (run by tests/gpu/run.sh on the day a GPU is lent; needs no TensorRT library).
 *
 * Loads libsmsr_trt_plugin.so as TensorRT does (dlopen + getCreators), creates the plugin in the runtime phase
 * from its fields, attaches it to a context, and drives onShapeChange + enqueue on real device buffers. Each case
 * is checked against
 *   1. the kernel library called directly (smsr::enqueueSparseBlock with the same tensors): must agree to
 *      rounding (the plugin is a thin adapter: any difference means wrong I/O mapping, type or workspace), and
 *   2. a float64 CPU evaluation of the op contract (dense-first channels, mask semantics, collect + bias).
 * Cases: FP32 and FP16, batch 1 and 2, odd sizes, empty / full / random masks, two channel splits of the
 * official x2 model. Plus enqueue's rejection of a shape the plugin was not given.
 * INT8 mode (issue 14): the plugin created from the four scale fields, INT8 x / weight codes, FP32 or FP16 y, must
 * give exactly the bits of smsr::enqueueSparseBlockInt8 called directly and of the INT8 contract evaluated on the
 * CPU (plugins/smsrSparseBlock/tests/int8BlockReference.h, the same reference as the emulated host test).
 *
 * usage: smsr_trt_plugin_gpu_harness <path/to/libsmsr_trt_plugin.so>     exit 0 = pass, 1 = fail, 77 = no GPU
 */
#include "kernels/sparseBlockKernels.h"
#include "tests/int8BlockReference.h"

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <random>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace
{

#define CUDA_OK(call)                                                                                                  \
    do                                                                                                                 \
    {                                                                                                                  \
        cudaError_t const e_ = (call);                                                                                 \
        if (e_ != cudaSuccess)                                                                                         \
        {                                                                                                              \
            std::fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorName(e_), __FILE__, __LINE__, #call);     \
            std::exit(1);                                                                                              \
        }                                                                                                              \
    } while (0)

// ---- float <-> half on the host (round to nearest even), no cuda_fp16.h needed --------------------------------
uint16_t toHalf(float f)
{
    uint32_t x;
    std::memcpy(&x, &f, 4);
    uint32_t const sign = (x >> 16) & 0x8000u;
    int32_t exp = static_cast<int32_t>((x >> 23) & 0xFF) - 127 + 15;
    uint32_t mant = x & 0x7FFFFFu;
    if (exp >= 31)
        return static_cast<uint16_t>(sign | 0x7C00u);
    if (exp <= 0)
    {
        if (exp < -10)
            return static_cast<uint16_t>(sign);
        mant |= 0x800000u;
        uint32_t const shift = static_cast<uint32_t>(14 - exp);
        uint32_t h = mant >> shift;
        uint32_t const rem = mant & ((1u << shift) - 1);
        uint32_t const half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1)))
            ++h;
        return static_cast<uint16_t>(sign | h);
    }
    uint32_t h = (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
    uint32_t const rem = mant & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        ++h;
    return static_cast<uint16_t>(sign | h);
}

float fromHalf(uint16_t h)
{
    uint32_t const sign = (h & 0x8000u) << 16;
    int32_t exp = (h >> 10) & 0x1F;
    uint32_t mant = h & 0x3FFu;
    uint32_t x;
    if (exp == 0)
    {
        if (mant == 0)
            x = sign;
        else
        {
            exp = 1;
            while (!(mant & 0x400u))
            {
                mant <<= 1;
                --exp;
            }
            mant &= 0x3FFu;
            x = sign | (static_cast<uint32_t>(exp + 127 - 15) << 23) | (mant << 13);
        }
    }
    else if (exp == 31)
        x = sign | 0x7F800000u | (mant << 13);
    else
        x = sign | (static_cast<uint32_t>(exp + 127 - 15) << 23) | (mant << 13);
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}

// ---- host tensors --------------------------------------------------------------------------------------------
struct Case
{
    char const* name;
    int32_t n, h, w;
    double density; // mask: fraction of ones (0 = empty, 1 = full)
    bool half;
    int32_t dense[4];
    int32_t sparse[4];
};

struct HostBlock
{
    int32_t c{64};
    std::vector<float> x, mask, w[4], wc, bc;
};

// Values rounded to the I/O type, so the CPU reference sees exactly what the GPU sees.
float roundTo(float v, bool half)
{
    return half ? fromHalf(toHalf(v)) : v;
}

HostBlock makeBlock(Case const& k, std::mt19937& rng)
{
    std::uniform_real_distribution<float> u(-1.F, 1.F);
    std::uniform_real_distribution<double> p(0.0, 1.0);
    HostBlock b;
    size_t const plane = size_t(k.h) * k.w;
    b.x.resize(size_t(k.n) * b.c * plane);
    for (auto& v : b.x)
        v = roundTo(u(rng) * 4.F, k.half);
    b.mask.resize(size_t(k.n) * plane);
    for (auto& v : b.mask)
        v = p(rng) < k.density ? 1.F : 0.F;
    int32_t cin = b.c, k_total = 0;
    for (int32_t l = 0; l < 4; ++l)
    {
        int32_t const cout = k.dense[l] + k.sparse[l];
        b.w[l].resize(size_t(cout) * cin * 9);
        for (auto& v : b.w[l])
            v = roundTo(u(rng) * 0.06F, k.half);
        cin = cout;
        k_total += cout;
    }
    b.wc.resize(size_t(b.c) * k_total);
    for (auto& v : b.wc)
        v = roundTo(u(rng) * 0.06F, k.half);
    b.bc.resize(b.c);
    for (auto& v : b.bc)
        v = roundTo(u(rng), k.half);
    return b;
}

// Op contract (DESIGN.md §2) in float64: dense-first channels; layer 0's input is all dense.
std::vector<double> reference(Case const& k, HostBlock const& b)
{
    int32_t const H = k.h, W = k.w, C = b.c;
    size_t const plane = size_t(H) * W;
    std::vector<double> y(size_t(k.n) * C * plane, 0.0);
    for (int32_t n = 0; n < k.n; ++n)
    {
        float const* m = &b.mask[size_t(n) * plane];
        std::vector<double> in(b.x.begin() + ptrdiff_t(size_t(n) * C * plane),
            b.x.begin() + ptrdiff_t(size_t(n + 1) * C * plane));
        int32_t cin = C, dIn = C;
        std::vector<double> feats; // concat(f_0..f_3)
        for (int32_t l = 0; l < 4; ++l)
        {
            int32_t const cout = k.dense[l] + k.sparse[l];
            std::vector<double> z(size_t(cout) * plane, 0.0);
            for (int32_t o = 0; o < cout; ++o)
                for (int32_t i = 0; i < cin; ++i)
                {
                    bool const sparseIn = i >= dIn;
                    for (int32_t yy = 0; yy < H; ++yy)
                        for (int32_t xx = 0; xx < W; ++xx)
                        {
                            if (sparseIn && m[size_t(yy) * W + xx] == 0.F)
                                continue; // M ⊙ conv(x_sparse_in)
                            double s = 0;
                            for (int32_t ky = 0; ky < 3; ++ky)
                                for (int32_t kx = 0; kx < 3; ++kx)
                                {
                                    int32_t const sy = yy + ky - 1, sx = xx + kx - 1;
                                    if (sy < 0 || sy >= H || sx < 0 || sx >= W)
                                        continue;
                                    s += b.w[l][((size_t(ky) * 3 + kx) * cin + i) * cout + o] // 3x3xCinxCout
                                        * in[size_t(i) * plane + size_t(sy) * W + sx];
                                }
                            z[size_t(o) * plane + size_t(yy) * W + xx] += s;
                        }
                }
            for (int32_t o = 0; o < cout; ++o)
                for (size_t q = 0; q < plane; ++q)
                {
                    double& v = z[size_t(o) * plane + q];
                    if (o >= k.dense[l])
                        v *= m[q]; // z[sparse_out] ⊙= M
                    v = std::max(v, 0.0);
                }
            feats.insert(feats.end(), z.begin(), z.end());
            in.swap(z);
            cin = cout;
            dIn = k.dense[l];
        }
        int32_t const K = static_cast<int32_t>(feats.size() / plane);
        for (int32_t o = 0; o < C; ++o)
            for (size_t q = 0; q < plane; ++q)
            {
                double s = b.bc[o];
                for (int32_t i = 0; i < K; ++i)
                    s += b.wc[size_t(i) * C + o] * feats[size_t(i) * plane + q]; // 1x1xKxC
                y[(size_t(n) * C + o) * plane + q] = s;
            }
    }
    return y;
}

// ---- device buffers ------------------------------------------------------------------------------------------
struct DeviceBuffer
{
    void* p{nullptr};
    size_t bytes{0};
    DeviceBuffer() = default;
    explicit DeviceBuffer(size_t n)
        : bytes(n)
    {
        CUDA_OK(cudaMalloc(&p, std::max<size_t>(n, 1)));
    }
    DeviceBuffer(DeviceBuffer&& o) noexcept
        : p(o.p)
        , bytes(o.bytes)
    {
        o.p = nullptr;
    }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept
    {
        std::swap(p, o.p);
        std::swap(bytes, o.bytes);
        return *this;
    }
    DeviceBuffer(DeviceBuffer const&) = delete;
    ~DeviceBuffer()
    {
        if (p)
            cudaFree(p);
    }
};

DeviceBuffer upload(std::vector<float> const& v, bool half)
{
    DeviceBuffer d(v.size() * (half ? 2 : 4));
    if (half)
    {
        std::vector<uint16_t> h(v.size());
        std::transform(v.begin(), v.end(), h.begin(), toHalf);
        CUDA_OK(cudaMemcpy(d.p, h.data(), d.bytes, cudaMemcpyHostToDevice));
    }
    else
        CUDA_OK(cudaMemcpy(d.p, v.data(), d.bytes, cudaMemcpyHostToDevice));
    return d;
}

std::vector<float> download(DeviceBuffer const& d, size_t count, bool half)
{
    std::vector<float> out(count);
    if (half)
    {
        std::vector<uint16_t> h(count);
        CUDA_OK(cudaMemcpy(h.data(), d.p, count * 2, cudaMemcpyDeviceToHost));
        std::transform(h.begin(), h.end(), out.begin(), fromHalf);
    }
    else
        CUDA_OK(cudaMemcpy(out.data(), d.p, count * 4, cudaMemcpyDeviceToHost));
    return out;
}

Dims dims(std::initializer_list<int64_t> v)
{
    Dims d{};
    d.nbDims = static_cast<int32_t>(v.size());
    int32_t i = 0;
    for (int64_t x : v)
        d.d[i++] = x;
    return d;
}

class StderrLogger : public ILogger
{
public:
    void log(Severity s, AsciiChar const* msg) noexcept override
    {
        if (s <= Severity::kWARNING)
            std::fprintf(stderr, "[plugin] %s\n", msg);
    }
};
class Finder : public ILoggerFinder
{
public:
    ILogger* findLogger() override { return &mLogger; }
    StderrLogger mLogger;
};

// ---- one case ------------------------------------------------------------------------------------------------
bool runCase(IPluginCreatorV3One* creator, Case const& k, std::mt19937& rng, cudaStream_t stream)
{
    HostBlock const hb = makeBlock(k, rng);
    DataType const type = k.half ? DataType::kHALF : DataType::kFLOAT;

    PluginField fields[2] = {PluginField("dense_channels", k.dense, PluginFieldType::kINT32, 4),
        PluginField("sparse_channels", k.sparse, PluginFieldType::kINT32, 4)};
    PluginFieldCollection fc{2, fields};
    IPluginV3* built = creator->createPlugin(k.name, &fc, TensorRTPhase::kRUNTIME);
    if (built == nullptr)
    {
        std::printf("FAIL %s: createPlugin returned null\n", k.name);
        return false;
    }
    auto* rt0 = static_cast<IPluginV3OneRuntime*>(built->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    IPluginV3* plugin = rt0->attachToContext(nullptr);
    auto* rt = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));

    int32_t const C = hb.c;
    int32_t kTotal = 0;
    std::vector<Dims> d = {dims({k.n, C, k.h, k.w}), dims({k.n, 1, k.h, k.w})};
    int32_t cin = C;
    for (int32_t l = 0; l < 4; ++l)
    {
        int32_t const cout = k.dense[l] + k.sparse[l];
        d.push_back(dims({3, 3, cin, cout})); // plugin_version 2 layout
        cin = cout;
        kTotal += cout;
    }
    d.push_back(dims({1, 1, kTotal, C}));
    d.push_back(dims({C}));
    d.push_back(dims({k.n, C, k.h, k.w})); // output
    std::vector<PluginTensorDesc> desc(9);
    std::vector<DynamicPluginTensorDesc> ddesc(9);
    for (int32_t i = 0; i < 9; ++i)
    {
        desc[i].dims = d[i];
        desc[i].type = type;
        desc[i].format = TensorFormat::kLINEAR;
        desc[i].scale = -1.F;
        ddesc[i].desc = desc[i];
        ddesc[i].min = ddesc[i].opt = ddesc[i].max = d[i];
    }
    bool ok = true;
    if (rt->onShapeChange(desc.data(), 8, desc.data() + 8, 1) != 0)
    {
        std::printf("FAIL %s: onShapeChange rejected a valid shape\n", k.name);
        ok = false;
    }
    size_t const wsPlugin = build->getWorkspaceSize(ddesc.data(), 8, ddesc.data() + 8, 1);
    smsr::SparseBlockShape shape{};
    shape.batch = k.n;
    shape.channels = C;
    shape.height = k.h;
    shape.width = k.w;
    std::memcpy(shape.dense, k.dense, sizeof k.dense);
    std::memcpy(shape.sparse, k.sparse, sizeof k.sparse);
    smsr::DataType const kt = k.half ? smsr::DataType::kHALF : smsr::DataType::kFLOAT;
    size_t const wsKernel = smsr::getSparseBlockWorkspaceSize(shape, kt);
    if (wsPlugin != wsKernel)
    {
        std::printf("FAIL %s: plugin workspace %zu != kernel library %zu\n", k.name, wsPlugin, wsKernel);
        ok = false;
    }

    DeviceBuffer x = upload(hb.x, k.half), m = upload(hb.mask, k.half), wc = upload(hb.wc, k.half),
                 bc = upload(hb.bc, k.half);
    DeviceBuffer w[4] = {upload(hb.w[0], k.half), upload(hb.w[1], k.half), upload(hb.w[2], k.half),
        upload(hb.w[3], k.half)};
    size_t const outCount = size_t(k.n) * C * k.h * k.w;
    DeviceBuffer yPlugin(outCount * (k.half ? 2 : 4)), yKernel(outCount * (k.half ? 2 : 4));
    DeviceBuffer ws(std::max(wsPlugin, wsKernel));
    CUDA_OK(cudaMemset(yPlugin.p, 0xFF, yPlugin.bytes)); // NaN pattern: unwritten outputs cannot pass
    CUDA_OK(cudaMemset(yKernel.p, 0xFF, yKernel.bytes));

    void const* inputs[8] = {x.p, m.p, w[0].p, w[1].p, w[2].p, w[3].p, wc.p, bc.p};
    void* outputs[1] = {yPlugin.p};
    if (rt->enqueue(desc.data(), desc.data() + 8, inputs, outputs, ws.p, stream) != 0)
    {
        std::printf("FAIL %s: plugin enqueue returned an error\n", k.name);
        ok = false;
    }
    smsr::SparseBlockTensors t{};
    t.x = x.p;
    t.mask = m.p;
    for (int32_t l = 0; l < 4; ++l)
        t.weights[l] = w[l].p;
    t.collectWeight = wc.p;
    t.collectBias = bc.p;
    t.y = yKernel.p;
    CUDA_OK(smsr::enqueueSparseBlock(shape, kt, t, ws.p, ws.bytes, stream));
    CUDA_OK(cudaStreamSynchronize(stream));

    std::vector<float> const a = download(yPlugin, outCount, k.half);
    std::vector<float> const b = download(yKernel, outCount, k.half);
    std::vector<double> const ref = reference(k, hb);
    double maxPK = 0, maxRef = 0, refScale = 1e-6;
    size_t nonFinite = 0;
    for (size_t i = 0; i < outCount; ++i)
    {
        if (!std::isfinite(a[i]))
            ++nonFinite;
        maxPK = std::max(maxPK, double(std::fabs(a[i] - b[i])));
        maxRef = std::max(maxRef, std::fabs(a[i] - ref[i]));
        refScale = std::max(refScale, std::fabs(ref[i]));
    }
    // Plugin and direct call run the same kernels on the same data: equal up to accumulation order.
    double const tolPK = (k.half ? 2e-3 : 1e-5) * refScale;
    double const tolRef = (k.half ? 3e-2 : 1e-4) * refScale;
    bool const pass = ok && nonFinite == 0 && maxPK <= tolPK && maxRef <= tolRef;
    std::printf("%s %-28s N=%d H=%d W=%d %s mask=%.2f  |plugin-kernel|=%.3g (tol %.3g)  |plugin-ref|=%.3g (tol %.3g)%s\n",
        pass ? "ok  " : "FAIL", k.name, k.n, k.h, k.w, k.half ? "fp16" : "fp32", k.density, maxPK, tolPK, maxRef,
        tolRef, nonFinite ? "  non-finite outputs!" : "");

    // A shape the plugin was not told about (mask height off by one) must be rejected, not launched.
    std::vector<PluginTensorDesc> bad = desc;
    bad[1].dims.d[2] = k.h + 1;
    if (rt->enqueue(bad.data(), bad.data() + 8, inputs, outputs, ws.p, stream) == 0)
    {
        std::printf("FAIL %s: enqueue accepted a mask of the wrong height\n", k.name);
        ok = false;
    }
    delete plugin;
    delete built;
    return pass && ok;
}

// ---- INT8 mode ------------------------------------------------------------------------------------------------
struct Int8HarnessCase
{
    char const* name;
    smsr_test::Int8Block block;
    bool half;
};

float identity(float v)
{
    return v;
}
float roundHalfHost(float v)
{
    return fromHalf(toHalf(v));
}

template <typename T>
DeviceBuffer uploadRaw(std::vector<T> const& v)
{
    DeviceBuffer d(v.size() * sizeof(T));
    CUDA_OK(cudaMemcpy(d.p, v.data(), d.bytes, cudaMemcpyHostToDevice));
    return d;
}

bool runInt8Case(IPluginCreatorV3One* creator, Int8HarnessCase const& k, uint32_t seed, cudaStream_t stream)
{
    smsr_test::Int8Block const& b = k.block;
    smsr_test::Int8Case const q = smsr_test::makeInt8Case(b, k.half ? roundHalfHost : identity, seed);
    PluginField fields[6] = {PluginField("dense_channels", b.dense, PluginFieldType::kINT32, 4),
        PluginField("sparse_channels", b.sparse, PluginFieldType::kINT32, 4),
        PluginField("x_scale", &q.xScale, PluginFieldType::kFLOAT32, 1),
        PluginField("feature_scales", q.feature, PluginFieldType::kFLOAT32, 4),
        PluginField("weight_scales", q.weightScales.data(), PluginFieldType::kFLOAT32, int32_t(q.weightScales.size())),
        PluginField("collect_scales", q.collectScales.data(), PluginFieldType::kFLOAT32,
            int32_t(q.collectScales.size()))};
    PluginFieldCollection fc{6, fields};
    IPluginV3* built = creator->createPlugin(k.name, &fc, TensorRTPhase::kRUNTIME);
    if (built == nullptr)
    {
        std::printf("FAIL %s: createPlugin returned null\n", k.name);
        return false;
    }
    auto* rt0 = static_cast<IPluginV3OneRuntime*>(built->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    IPluginV3* plugin = rt0->attachToContext(nullptr);
    auto* rt = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));

    DataType const io = k.half ? DataType::kHALF : DataType::kFLOAT;
    std::vector<Dims> d = {dims({b.n, b.c, b.h, b.w}), dims({b.n, 1, b.h, b.w})};
    for (int32_t l = 0; l < 4; ++l)
        d.push_back(dims({3, 3, b.cin(l), b.cout(l)}));
    d.push_back(dims({1, 1, b.collectIn(), b.c}));
    d.push_back(dims({b.c}));
    d.push_back(dims({b.n, b.c, b.h, b.w}));
    std::vector<PluginTensorDesc> desc(9);
    std::vector<DynamicPluginTensorDesc> ddesc(9);
    for (int32_t i = 0; i < 9; ++i)
    {
        desc[i].dims = d[i];
        desc[i].type = i == 1 || i == 7 || i == 8 ? io : DataType::kINT8;
        desc[i].format = TensorFormat::kLINEAR;
        desc[i].scale = -1.F;
        ddesc[i].desc = desc[i];
        ddesc[i].min = ddesc[i].opt = ddesc[i].max = d[i];
    }
    bool ok = rt->onShapeChange(desc.data(), 8, desc.data() + 8, 1) == 0;
    if (!ok)
        std::printf("FAIL %s: onShapeChange rejected a valid INT8 shape\n", k.name);
    smsr::SparseBlockShape shape{};
    shape.batch = b.n;
    shape.channels = b.c;
    shape.height = b.h;
    shape.width = b.w;
    std::memcpy(shape.dense, b.dense, sizeof b.dense);
    std::memcpy(shape.sparse, b.sparse, sizeof b.sparse);
    smsr::DataType const kt = k.half ? smsr::DataType::kHALF : smsr::DataType::kFLOAT;
    size_t const wsPlugin = build->getWorkspaceSize(ddesc.data(), 8, ddesc.data() + 8, 1);
    size_t const wsKernel = smsr::getSparseBlockInt8WorkspaceSize(shape, kt);
    if (wsPlugin != wsKernel || wsKernel == 0)
    {
        std::printf("FAIL %s: plugin INT8 workspace %zu != kernel library %zu\n", k.name, wsPlugin, wsKernel);
        ok = false;
    }
    DeviceBuffer x = uploadRaw(q.x), m = upload(q.mask, k.half), wc = uploadRaw(q.wc), bc = upload(q.bc, k.half);
    DeviceBuffer w[4] = {uploadRaw(q.w[0]), uploadRaw(q.w[1]), uploadRaw(q.w[2]), uploadRaw(q.w[3])};
    size_t const outCount = q.y.size();
    size_t const esz = k.half ? 2 : 4;
    DeviceBuffer yPlugin(outCount * esz), yKernel(outCount * esz), ws(std::max<size_t>(wsKernel, 1));
    CUDA_OK(cudaMemset(yPlugin.p, 0xFF, yPlugin.bytes));
    CUDA_OK(cudaMemset(yKernel.p, 0xFF, yKernel.bytes));
    void const* inputs[8] = {x.p, m.p, w[0].p, w[1].p, w[2].p, w[3].p, wc.p, bc.p};
    void* outputs[1] = {yPlugin.p};
    if (rt->enqueue(desc.data(), desc.data() + 8, inputs, outputs, ws.p, stream) != 0)
    {
        std::printf("FAIL %s: plugin INT8 enqueue returned an error\n", k.name);
        ok = false;
    }
    CUDA_OK(cudaStreamSynchronize(stream));
    smsr::SparseBlockTensors t{};
    t.x = x.p;
    t.mask = m.p;
    for (int32_t l = 0; l < 4; ++l)
        t.weights[l] = w[l].p;
    t.collectWeight = wc.p;
    t.collectBias = bc.p;
    t.y = yKernel.p;
    smsr::SparseBlockInt8Scales sc{};
    sc.x = q.xScale;
    sc.collect = q.collectScales.data();
    for (int32_t l = 0, off = 0; l < 4; off += b.cout(l), ++l)
    {
        sc.feature[l] = q.feature[l];
        sc.weight[l] = q.weightScales.data() + off;
    }
    CUDA_OK(smsr::enqueueSparseBlockInt8(shape, kt, t, sc, ws.p, ws.bytes, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    std::vector<uint8_t> a(outCount * esz), c(outCount * esz);
    CUDA_OK(cudaMemcpy(a.data(), yPlugin.p, a.size(), cudaMemcpyDeviceToHost));
    CUDA_OK(cudaMemcpy(c.data(), yKernel.p, c.size(), cudaMemcpyDeviceToHost));
    size_t diffKernel = 0, diffRef = 0;
    for (size_t i = 0; i < outCount; ++i)
    {
        diffKernel += std::memcmp(&a[i * esz], &c[i * esz], esz) != 0 ? 1 : 0;
        uint8_t want[4];
        if (k.half)
        {
            uint16_t const h = toHalf(q.y[i]);
            std::memcpy(want, &h, 2);
        }
        else
            std::memcpy(want, &q.y[i], 4);
        diffRef += std::memcmp(&a[i * esz], want, esz) != 0 ? 1 : 0;
    }
    bool const pass = ok && diffKernel == 0 && diffRef == 0;
    std::printf("%s %-28s N=%d H=%d W=%d int8 -> %s  y differing from the direct call: %zu, from the contract: %zu "
                "of %zu\n",
        pass ? "ok  " : "FAIL", k.name, b.n, b.h, b.w, k.half ? "fp16" : "fp32", diffKernel, diffRef, outCount);
    delete plugin;
    delete built;
    return pass;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 2)
    {
        std::fprintf(stderr, "usage: %s <libsmsr_trt_plugin.so>\n", argv[0]);
        return 2;
    }
    int32_t devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0)
    {
        std::printf("no CUDA device: skipping the plugin GPU harness\n");
        return 77;
    }
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr)
    {
        std::fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror());
        return 1;
    }
    using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
    using SetFinder = void (*)(ILoggerFinder*);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
    auto setFinder = reinterpret_cast<SetFinder>(dlsym(lib, "setLoggerFinder"));
    if (getCreators == nullptr || setFinder == nullptr)
    {
        std::fprintf(stderr, "%s lacks getCreators/setLoggerFinder\n", argv[1]);
        return 1;
    }
    static Finder finder;
    setFinder(&finder);
    int32_t nb = 0;
    auto* creator = static_cast<IPluginCreatorV3One*>(getCreators(nb)[0]);

    cudaDeviceProp prop{};
    CUDA_OK(cudaGetDeviceProperties(&prop, 0));
    std::printf("device: %s (SM %d.%d)\n", prop.name, prop.major, prop.minor);

    Case const cases[] = {
        {"block0_fp32", 1, 32, 48, 0.37, false, {24, 9, 3, 0}, {40, 55, 61, 64}},
        {"block0_fp32_batch2_odd", 2, 17, 31, 0.45, false, {24, 9, 3, 0}, {40, 55, 61, 64}},
        {"block0_fp32_empty_mask", 1, 16, 16, 0.0, false, {24, 9, 3, 0}, {40, 55, 61, 64}},
        {"block0_fp32_full_mask", 1, 16, 16, 1.0, false, {24, 9, 3, 0}, {40, 55, 61, 64}},
        {"block3_fp32", 1, 24, 20, 0.6, false, {3, 0, 0, 0}, {61, 64, 64, 64}},
        {"block0_fp16", 1, 40, 24, 0.5, true, {24, 9, 3, 0}, {40, 55, 61, 64}},
        {"block4_fp16_batch2_odd", 2, 15, 9, 0.3, true, {14, 5, 0, 0}, {50, 59, 64, 64}},
    };
    cudaStream_t stream;
    CUDA_OK(cudaStreamCreate(&stream));
    std::mt19937 rng(1234);
    int32_t failures = 0;
    for (auto const& k : cases)
        failures += runCase(creator, k, rng, stream) ? 0 : 1;
    Int8HarnessCase const int8Cases[] = {
        {"block0_int8_fp32", {1, 64, 32, 48, {24, 9, 3, 0}, {40, 55, 61, 64}}, false},
        {"block0_int8_fp16_batch2_odd", {2, 64, 17, 31, {24, 9, 3, 0}, {40, 55, 61, 64}}, true},
        {"block4_int8_fp32_odd", {1, 64, 15, 9, {14, 5, 0, 0}, {50, 59, 64, 64}}, false},
    };
    uint32_t seed = 99;
    for (auto const& k : int8Cases)
        failures += runInt8Case(creator, k, seed++, stream) ? 0 : 1;
    CUDA_OK(cudaStreamDestroy(stream));
    int const nbCases = int(sizeof cases / sizeof cases[0] + sizeof int8Cases / sizeof int8Cases[0]);
    std::printf("%d cases, %d failures\n", nbCases, failures);
    return failures == 0 ? 0 : 1;
}

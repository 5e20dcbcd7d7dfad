/*
 * Host-side test of libsmsr_trt_plugin.so (no GPU, no TensorRT library needed).
 *
 * Loads the plugin library with dlopen exactly as TensorRT's registry does (setLoggerFinder + getCreators) and
 * drives every host method of the creator and plugin: creation from fields and bad field sets, clone, serialize ->
 * recreate in the runtime phase, output types, format negotiation, shape validation, workspace sizing against the
 * kernel library, runtime shape checks, enqueue's validation path (returns before any CUDA call), logging through
 * both logger-finder layouts (TensorRT 10 and TensorRT 11 / TensorRT-RTX) and without a logger, the error
 * recorder, and destructor balance. The engine-build tests (tests/test_trt_plugin.py) cover the same methods
 * called by a real TensorRT builder.
 *
 * Built twice: against libsmsr_trt_plugin.so (real CUDA kernels; enqueue only up to its rejections), and against
 * libsmsr_trt_plugin_emu.so, the same plugin sources over the emulated kernel library (SMSR_SIMT_EMULATION, whose
 * "device memory" is host memory): that build also runs enqueue's success path (testEnqueue) and compares y with
 * a naive double-precision evaluation of the op contract.
 *
 * usage: smsr_trt_plugin_host_test <path/to/libsmsr_trt_plugin.so>
 *        smsr_trt_plugin_emu_host_test <path/to/libsmsr_trt_plugin_emu.so>
 */
#include "kernels/sparseBlockKernels.h"
#include "int8BlockReference.h"

#include <NvInferRuntime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <dlfcn.h>
#include <random>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace
{

int gFailures = 0;
int gChecks = 0;

#define CHECK(cond)                                                                                                    \
    do                                                                                                                 \
    {                                                                                                                  \
        ++gChecks;                                                                                                     \
        if (!(cond))                                                                                                   \
        {                                                                                                              \
            ++gFailures;                                                                                               \
            std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                       \
        }                                                                                                              \
    } while (0)

// ---- loggers -------------------------------------------------------------------------------------------------
std::vector<std::string> gMessages; // every message any test logger received

bool logged(char const* needle)
{
    for (auto const& m : gMessages)
        if (m.find(needle) != std::string::npos)
            return true;
    return false;
}

#if NV_TENSORRT_MAJOR < 11
// TensorRT 10.x layout (what these headers declare).
class LegacyLogger : public ILogger
{
public:
    void log(Severity, AsciiChar const* msg) noexcept override { gMessages.emplace_back(std::string("legacy:") + msg); }
};
class LegacyFinder : public ILoggerFinder
{
public:
    ILogger* findLogger() override { return mLogger; }
    ILogger* mLogger{nullptr};
};
#endif

// TensorRT 11.x / TensorRT-RTX layout: IVersionedInterface first (mirrors those headers).
class VersionedLogger : public IVersionedInterface
{
public:
    InterfaceInfo getInterfaceInfo() const noexcept override { return {"ILogger", 1, 0}; }
    virtual void log(ILogger::Severity, AsciiChar const* msg) noexcept
    {
        gMessages.emplace_back(std::string("versioned:") + msg);
    }
};
class VersionedFinder : public IVersionedInterface
{
public:
    InterfaceInfo getInterfaceInfo() const noexcept override { return {"ILoggerFinder", 1, 0}; }
    virtual VersionedLogger* findLogger() { return &mLogger; }
    VersionedLogger mLogger;
};

class TestRecorder : public IErrorRecorder
{
public:
    int32_t getNbErrors() const noexcept override { return static_cast<int32_t>(mErrors.size()); }
    ErrorCode getErrorCode(int32_t) const noexcept override { return ErrorCode::kINVALID_ARGUMENT; }
    ErrorDesc getErrorDesc(int32_t i) const noexcept override { return mErrors[i].c_str(); }
    bool hasOverflowed() const noexcept override { return false; }
    void clear() noexcept override { mErrors.clear(); }
    bool reportError(ErrorCode, ErrorDesc desc) noexcept override
    {
        mErrors.emplace_back(desc);
        return true;
    }
    RefCount incRefCount() noexcept override { return 1; }
    RefCount decRefCount() noexcept override { return 0; }
    std::vector<std::string> mErrors;
};

class TestContext : public IPluginResourceContext
{
public:
    IGpuAllocator* getGpuAllocator() const noexcept override { return nullptr; }
    IErrorRecorder* getErrorRecorder() const noexcept override { return mRecorder; }
    IErrorRecorder* mRecorder{nullptr};
};

// ---- library -------------------------------------------------------------------------------------------------
using GetCreatorsFn = IPluginCreatorInterface* const* (*) (int32_t&);
using SetLoggerFinderFn = void (*)(ILoggerFinder*);
using LiveObjectsFn = int64_t (*)();

SetLoggerFinderFn gSetLoggerFinder = nullptr;
LiveObjectsFn gLive = nullptr;

// ---- helpers -------------------------------------------------------------------------------------------------
int32_t const kDense[4] = {24, 9, 3, 0};   // official x2 model, block 0
int32_t const kSparse[4] = {40, 55, 61, 64};

struct Fields
{
    std::vector<PluginField> f;
    PluginFieldCollection fc{};
    PluginFieldCollection const* get()
    {
        fc.nbFields = static_cast<int32_t>(f.size());
        fc.fields = f.data();
        return &fc;
    }
};

Fields goodFields()
{
    Fields f;
    f.f.emplace_back("dense_channels", kDense, PluginFieldType::kINT32, 4);
    f.f.emplace_back("sparse_channels", kSparse, PluginFieldType::kINT32, 4);
    return f;
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

// Shapes of the 8 inputs + output for block 0 at N x 64 x H x W.
std::vector<Dims> blockDims(int64_t n, int64_t h, int64_t w)
{
    return {dims({n, 64, h, w}), dims({n, 1, h, w}), dims({3, 3, 64, 64}), dims({3, 3, 64, 64}), dims({3, 3, 64, 64}),
        dims({3, 3, 64, 64}), dims({1, 1, 256, 64}), dims({64}), dims({n, 64, h, w})};
}

std::vector<DynamicPluginTensorDesc> dynDesc(std::vector<Dims> const& d, DataType t, TensorFormat f = TensorFormat::kLINEAR)
{
    std::vector<DynamicPluginTensorDesc> out(d.size());
    for (size_t i = 0; i < d.size(); ++i)
    {
        out[i].desc.dims = d[i];
        out[i].desc.type = t;
        out[i].desc.format = f;
        out[i].desc.scale = -1.F;
        out[i].min = d[i];
        out[i].opt = d[i];
        out[i].max = d[i];
    }
    return out;
}

std::vector<PluginTensorDesc> desc(std::vector<Dims> const& d, DataType t)
{
    std::vector<PluginTensorDesc> out(d.size());
    for (size_t i = 0; i < d.size(); ++i)
    {
        out[i].dims = d[i];
        out[i].type = t;
        out[i].format = TensorFormat::kLINEAR;
        out[i].scale = -1.F;
    }
    return out;
}

IPluginV3OneBuild* buildOf(IPluginV3* p)
{
    return static_cast<IPluginV3OneBuild*>(p->getCapabilityInterface(PluginCapabilityType::kBUILD));
}
IPluginV3OneRuntime* runtimeOf(IPluginV3* p)
{
    return static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
}

// Reads back dense/sparse from getFieldsToSerialize.
bool serializedConfig(IPluginV3* p, int32_t* dense, int32_t* sparse)
{
    PluginFieldCollection const* fc = runtimeOf(p)->getFieldsToSerialize();
    if (fc == nullptr || fc->nbFields != 2)
        return false;
    bool gotD = false, gotS = false;
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        if (f.type != PluginFieldType::kINT32 || f.length != 4 || f.data == nullptr)
            return false;
        bool const isD = std::strcmp(f.name, "dense_channels") == 0;
        bool const isS = std::strcmp(f.name, "sparse_channels") == 0;
        if (!isD && !isS)
            return false;
        std::memcpy(isD ? dense : sparse, f.data, 4 * sizeof(int32_t));
        (isD ? gotD : gotS) = true;
    }
    return gotD && gotS;
}

// createPlugin that must fail with a message containing `needle`.
void expectBadFields(IPluginCreatorV3One* c, PluginFieldCollection const* fc, char const* needle)
{
    gMessages.clear();
    IPluginV3* p = c->createPlugin("bad_node", fc, TensorRTPhase::kBUILD);
    CHECK(p == nullptr);
    if (!logged(needle) || !logged("bad_node"))
        std::fprintf(stderr, "  expected a message containing '%s' naming the node\n", needle);
    CHECK(logged(needle));
    CHECK(logged("'bad_node'"));
    delete p;
}

// ---- tests ---------------------------------------------------------------------------------------------------
void testCreator(IPluginCreatorV3One* c)
{
    InterfaceInfo const info = c->getInterfaceInfo();
    CHECK(std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") == 0);
    CHECK(info.major == 1);
    CHECK(std::strcmp(c->getPluginName(), "SMSRSparseBlock") == 0);
    CHECK(std::strcmp(c->getPluginVersion(), "2") == 0);
    CHECK(std::strcmp(c->getPluginNamespace(), "") == 0);
    PluginFieldCollection const* names = c->getFieldNames();
    CHECK(names != nullptr && names->nbFields == 6);
    if (names != nullptr && names->nbFields == 6)
    {
        CHECK(std::strcmp(names->fields[0].name, "dense_channels") == 0);
        CHECK(std::strcmp(names->fields[1].name, "sparse_channels") == 0);
        CHECK(names->fields[0].type == PluginFieldType::kINT32 && names->fields[0].length == 4);
        CHECK(names->fields[1].type == PluginFieldType::kINT32 && names->fields[1].length == 4);
        // INT8 mode: the parser converts the node's float attributes to these types.
        char const* const int8Names[4] = {"x_scale", "feature_scales", "weight_scales", "collect_scales"};
        int32_t const lengths[4] = {1, 4, 0, 0}; // 0: variable (sum Cout_l, C)
        for (int32_t i = 0; i < 4; ++i)
            CHECK(std::strcmp(names->fields[2 + i].name, int8Names[i]) == 0
                && names->fields[2 + i].type == PluginFieldType::kFLOAT32 && names->fields[2 + i].length == lengths[i]);
    }
}

void testBadFields(IPluginCreatorV3One* c)
{
    expectBadFields(c, nullptr, "no plugin fields given");
    Fields none;
    expectBadFields(c, none.get(), "missing field 'dense_channels'");
    Fields onlyDense;
    onlyDense.f.emplace_back("dense_channels", kDense, PluginFieldType::kINT32, 4);
    expectBadFields(c, onlyDense.get(), "missing field 'sparse_channels'");
    Fields shortDense = goodFields();
    shortDense.f[0].length = 3;
    expectBadFields(c, shortDense.get(), "'dense_channels' must have 4 values");
    float const fl[4] = {24, 9, 3, 0};
    Fields floats = goodFields();
    floats.f[0] = PluginField("dense_channels", fl, PluginFieldType::kFLOAT32, 4);
    expectBadFields(c, floats.get(), "'dense_channels' must hold integers");
    int32_t const neg[4] = {40, 55, -61, 64};
    Fields negative = goodFields();
    negative.f[1].data = neg;
    expectBadFields(c, negative.get(), "sparse_channels[2] = -61 is negative");
    int32_t const zeroD[4] = {24, 9, 0, 0};
    int32_t const zeroS[4] = {40, 55, 0, 64};
    Fields empty;
    empty.f.emplace_back("dense_channels", zeroD, PluginFieldType::kINT32, 4);
    empty.f.emplace_back("sparse_channels", zeroS, PluginFieldType::kINT32, 4);
    expectBadFields(c, empty.get(), "layer 2 has no output channel");
    Fields twice = goodFields();
    twice.f.push_back(twice.f[0]);
    expectBadFields(c, twice.get(), "'dense_channels' given twice");
    Fields noData = goodFields();
    noData.f[1].data = nullptr;
    expectBadFields(c, noData.get(), "'sparse_channels' has no data");
    int32_t const huge[4] = {1 << 20, 9, 3, 0};
    Fields tooMany = goodFields();
    tooMany.f[0].data = huge;
    expectBadFields(c, tooMany.get(), "more than 65536 channels");

    // Accepted variants: INT64 values (ONNX ints), an unknown extra field (warned about and ignored).
    int64_t const d64[4] = {24, 9, 3, 0};
    Fields wide = goodFields();
    wide.f[0] = PluginField("dense_channels", d64, PluginFieldType::kINT64, 4);
    IPluginV3* p = c->createPlugin("wide", wide.get(), TensorRTPhase::kBUILD);
    CHECK(p != nullptr);
    int32_t d[4]{}, s[4]{};
    CHECK(p != nullptr && serializedConfig(p, d, s) && std::memcmp(d, kDense, sizeof d) == 0);
    delete p;
    gMessages.clear();
    int32_t const extra = 7;
    Fields unknown = goodFields();
    unknown.f.emplace_back("scale", &extra, PluginFieldType::kINT32, 1);
    p = c->createPlugin("extra", unknown.get(), TensorRTPhase::kBUILD);
    CHECK(p != nullptr);
    CHECK(logged("ignoring unknown field(s) 'scale'"));
    delete p;
}

void testPlugin(IPluginCreatorV3One* c)
{
    Fields good = goodFields();
    IPluginV3* p = c->createPlugin("smb0", good.get(), TensorRTPhase::kBUILD);
    CHECK(p != nullptr);
    if (p == nullptr)
        return;
    CHECK(std::strcmp(p->getInterfaceInfo().kind, "PLUGIN") == 0);
    auto* core = static_cast<IPluginV3OneCore*>(p->getCapabilityInterface(PluginCapabilityType::kCORE));
    IPluginV3OneBuild* build = buildOf(p);
    IPluginV3OneRuntime* rt = runtimeOf(p);
    CHECK(core != nullptr && build != nullptr && rt != nullptr);
    CHECK(std::strcmp(core->getInterfaceInfo().kind, "PLUGIN_V3ONE_CORE") == 0);
    CHECK(std::strcmp(build->getInterfaceInfo().kind, "PLUGIN_V3ONE_BUILD") == 0);
    CHECK(std::strcmp(rt->getInterfaceInfo().kind, "PLUGIN_V3ONE_RUNTIME") == 0);
    CHECK(std::strcmp(core->getPluginName(), "SMSRSparseBlock") == 0);
    CHECK(std::strcmp(core->getPluginVersion(), "2") == 0);
    CHECK(std::strcmp(core->getPluginNamespace(), "") == 0);
    CHECK(build->getNbOutputs() == 1);
    CHECK(std::string(build->getMetadataString()) == "dense_channels=24,9,3,0 sparse_channels=40,55,61,64");

    // Output data types.
    DataType in[8], out[1];
    for (auto t : {DataType::kFLOAT, DataType::kHALF})
    {
        std::fill(in, in + 8, t);
        out[0] = DataType::kINT32;
        CHECK(build->getOutputDataTypes(out, 1, in, 8) == 0 && out[0] == t);
    }
    gMessages.clear();
    std::fill(in, in + 8, DataType::kFLOAT);
    in[4] = DataType::kHALF;
    CHECK(build->getOutputDataTypes(out, 1, in, 8) != 0);
    CHECK(logged("w2 has type HALF but x has type FLOAT"));
    std::fill(in, in + 8, DataType::kINT8);
    CHECK(build->getOutputDataTypes(out, 1, in, 8) != 0);
    CHECK(logged("x has type INT8 but the node has no INT8 scale fields"));
    CHECK(logged("x INT8 (the output of a QuantizeLinear node"));
    CHECK(build->getOutputDataTypes(out, 1, in, 7) != 0);
    CHECK(logged("expects 8 inputs"));

    // Format negotiation: linear FP32 / FP16, one type for everything.
    auto const d = blockDims(1, 32, 48);
    for (auto t : {DataType::kFLOAT, DataType::kHALF})
    {
        auto io = dynDesc(d, t);
        for (int32_t pos = 0; pos < 9; ++pos)
            CHECK(build->supportsFormatCombination(pos, io.data(), 8, 1));
    }
    {
        auto io = dynDesc(d, DataType::kINT8);
        CHECK(!build->supportsFormatCombination(0, io.data(), 8, 1));
        io = dynDesc(d, DataType::kFLOAT);
        io[1].desc.type = DataType::kHALF;
        CHECK(build->supportsFormatCombination(0, io.data(), 8, 1));
        CHECK(!build->supportsFormatCombination(1, io.data(), 8, 1));
        io[1].desc.type = DataType::kFLOAT;
        io[8].desc.type = DataType::kHALF;
        CHECK(!build->supportsFormatCombination(8, io.data(), 8, 1));
        io = dynDesc(d, DataType::kHALF, TensorFormat::kCHW2);
        CHECK(!build->supportsFormatCombination(0, io.data(), 8, 1));
        // FP16 channels-last: x and y in kHWC8 (C = 64), everything else linear; never for FP32 or C % 8 != 0.
        io = dynDesc(d, DataType::kHALF);
        io[0].desc.format = io[8].desc.format = TensorFormat::kHWC8;
        for (int32_t pos = 0; pos < 9; ++pos)
            CHECK(build->supportsFormatCombination(pos, io.data(), 8, 1));
        io[8].desc.format = TensorFormat::kLINEAR; // y must follow x
        CHECK(!build->supportsFormatCombination(8, io.data(), 8, 1));
        io[1].desc.format = TensorFormat::kHWC8; // the mask (and the weights) stay linear
        CHECK(!build->supportsFormatCombination(1, io.data(), 8, 1));
        io = dynDesc(d, DataType::kFLOAT);
        io[0].desc.format = TensorFormat::kHWC8;
        CHECK(!build->supportsFormatCombination(0, io.data(), 8, 1));
        io = dynDesc(d, DataType::kHALF);
        io[0].desc.format = TensorFormat::kHWC8;
        io[0].desc.dims.d[1] = 12;
        CHECK(!build->supportsFormatCombination(0, io.data(), 8, 1));
        io = dynDesc(d, DataType::kFLOAT);
        CHECK(!build->supportsFormatCombination(9, io.data(), 8, 1));
        CHECK(!build->supportsFormatCombination(-1, io.data(), 8, 1));
        CHECK(!build->supportsFormatCombination(0, io.data(), 7, 1));
    }

    // configurePlugin: valid, dynamic and invalid shapes.
    {
        auto io = dynDesc(d, DataType::kFLOAT);
        CHECK(build->configurePlugin(io.data(), 8, io.data() + 8, 1) == 0);
        auto dyn = dynDesc(blockDims(-1, -1, -1), DataType::kHALF);
        auto const lo = blockDims(1, 8, 8);
        auto const hi = blockDims(2, 128, 96);
        for (size_t i = 0; i < dyn.size(); ++i)
        {
            dyn[i].min = lo[i];
            dyn[i].opt = hi[i];
            dyn[i].max = hi[i];
        }
        CHECK(build->configurePlugin(dyn.data(), 8, dyn.data() + 8, 1) == 0);
        // Workspace: the kernel library's size for the profile's largest shape.
        smsr::SparseBlockShape big{};
        big.batch = 2;
        big.channels = 64;
        big.height = 128;
        big.width = 96;
        std::memcpy(big.dense, kDense, sizeof kDense);
        std::memcpy(big.sparse, kSparse, sizeof kSparse);
        CHECK(build->getWorkspaceSize(dyn.data(), 8, dyn.data() + 8, 1)
            == smsr::getSparseBlockWorkspaceSize(big, smsr::DataType::kHALF));
        auto io32 = dynDesc(hi, DataType::kFLOAT);
        CHECK(build->getWorkspaceSize(io32.data(), 8, io32.data() + 8, 1)
            == smsr::getSparseBlockWorkspaceSize(big, smsr::DataType::kFLOAT));
        // wc given as a 2-D K x C matrix is accepted too.
        io = dynDesc(d, DataType::kFLOAT);
        io[6].desc.dims = dims({256, 64});
        CHECK(build->configurePlugin(io.data(), 8, io.data() + 8, 1) == 0);
    }
    // The kernel library's 2^30-pixel limit per call (N*H*W): a profile up to exactly 2^30 pixels is accepted and
    // gets the library's workspace; one pixel row more is rejected at build time with a message naming the limit
    // (before, it got workspace 0 and every enqueue failed with an unexplained cudaErrorInvalidValue).
    {
        auto atLimit = dynDesc(blockDims(256, 2048, 2048), DataType::kHALF); // 2^8 * 2^11 * 2^11 = 2^30
        gMessages.clear();
        CHECK(build->configurePlugin(atLimit.data(), 8, atLimit.data() + 8, 1) == 0);
        smsr::SparseBlockShape lim{};
        lim.batch = 256;
        lim.channels = 64;
        lim.height = 2048;
        lim.width = 2048;
        std::memcpy(lim.dense, kDense, sizeof kDense);
        std::memcpy(lim.sparse, kSparse, sizeof kSparse);
        size_t const wsLimit = build->getWorkspaceSize(atLimit.data(), 8, atLimit.data() + 8, 1);
        CHECK(wsLimit > 0 && wsLimit == smsr::getSparseBlockWorkspaceSize(lim, smsr::DataType::kHALF));
        CHECK(gMessages.empty());
        auto over = dynDesc(blockDims(-1, -1, -1), DataType::kHALF);
        auto const lo = blockDims(1, 8, 8);
        auto const hi = blockDims(257, 2048, 2048); // 2^30 + 2^22 pixels
        for (size_t i = 0; i < over.size(); ++i)
        {
            over[i].min = lo[i];
            over[i].opt = lo[i];
            over[i].max = hi[i];
        }
        CHECK(build->configurePlugin(over.data(), 8, over.data() + 8, 1) != 0);
        char const* const needle = "N*H*W = 1077936128 pixels exceeds the kernel library's limit of 2^30 = 1073741824";
        if (!logged(needle))
            std::fprintf(stderr, "  expected message '%s'\n", needle);
        CHECK(logged(needle));
        CHECK(logged("largest x of the profile: [257x64x2048x2048]"));
        gMessages.clear();
        CHECK(build->getWorkspaceSize(over.data(), 8, over.data() + 8, 1) == 0);
        CHECK(logged(needle)); // and says so rather than returning 0 silently
    }
    struct BadShape
    {
        int32_t input;
        Dims shape;
        char const* needle;
    };
    BadShape const bad[] = {
        {0, dims({1, 64, 32}), "x must be 4-D"},
        {1, dims({1, 2, 32, 48}), "mask has shape [1x2x32x48], expected [1x1x32x48]"},
        {1, dims({1, 1, 30, 48}), "mask has shape [1x1x30x48]"},
        {2, dims({3, 3, 63, 64}), "w0 has shape [3x3x63x64], expected [3x3x64x64]"},
        {3, dims({3, 3, 64, 59}), "w1 has shape [3x3x64x59], expected [3x3x64x64]"},
        {5, dims({1, 1, 64, 64}), "w3 has shape [1x1x64x64], expected [3x3x64x64]"},
        {6, dims({1, 1, 192, 64}), "wc has shape [1x1x192x64], expected [1x1x256x64]"},
        {2, dims({64, 64, 3, 3}), "w0 has shape [64x64x3x3], expected [3x3x64x64]"}, // old (v1) OIHW layout
        {6, dims({64, 256, 1, 1}), "wc has shape [64x256x1x1], expected [1x1x256x64]"},
        {7, dims({32}), "bc has shape [32], expected [64]"},
    };
    for (auto const& b : bad)
    {
        auto io = dynDesc(d, DataType::kFLOAT);
        io[b.input].desc.dims = b.shape;
        gMessages.clear();
        CHECK(build->configurePlugin(io.data(), 8, io.data() + 8, 1) != 0);
        if (!logged(b.needle))
            std::fprintf(stderr, "  expected message '%s'\n", b.needle);
        CHECK(logged(b.needle));
        CHECK(logged("SMSRSparseBlock 'smb0': "));
    }
    {
        auto io = dynDesc(d, DataType::kFLOAT);
        io[8].desc.type = DataType::kHALF;
        gMessages.clear();
        CHECK(build->configurePlugin(io.data(), 8, io.data() + 8, 1) != 0);
        CHECK(logged("output y has type HALF but x has type FLOAT"));
    }

    // Serialization round trip: fields -> createPlugin(kRUNTIME) -> equal fields.
    {
        PluginFieldCollection const* fc = rt->getFieldsToSerialize();
        CHECK(fc != nullptr);
        IPluginV3* q = c->createPlugin("smb0", fc, TensorRTPhase::kRUNTIME);
        CHECK(q != nullptr);
        int32_t dq[4]{}, sq[4]{};
        CHECK(q != nullptr && serializedConfig(q, dq, sq));
        CHECK(std::memcmp(dq, kDense, sizeof dq) == 0 && std::memcmp(sq, kSparse, sizeof sq) == 0);
        CHECK(q != nullptr && std::string(buildOf(q)->getMetadataString()) == build->getMetadataString());
        delete q;
    }

    // Clone: an independent copy that outlives its original.
    int64_t const before = gLive();
    IPluginV3* cl = p->clone();
    CHECK(cl != nullptr && cl != p);
    CHECK(gLive() == before + 1);
    delete p;
    CHECK(gLive() == before);
    int32_t dc[4]{}, sc[4]{};
    CHECK(cl != nullptr && serializedConfig(cl, dc, sc) && std::memcmp(dc, kDense, sizeof dc) == 0
        && std::memcmp(sc, kSparse, sizeof sc) == 0);

    // Runtime phase: attachToContext, onShapeChange, enqueue's validation (fails before any CUDA call).
    TestRecorder recorder;
    TestContext ctx;
    ctx.mRecorder = &recorder;
    IPluginV3* att = runtimeOf(cl)->attachToContext(&ctx);
    CHECK(att != nullptr && att != cl);
    IPluginV3* noCtx = runtimeOf(cl)->attachToContext(nullptr);
    CHECK(noCtx != nullptr);
    delete noCtx;
    if (att != nullptr)
    {
        IPluginV3OneRuntime* art = runtimeOf(att);
        auto good32 = desc(blockDims(2, 17, 31), DataType::kFLOAT); // odd sizes are fine
        CHECK(art->onShapeChange(good32.data(), 8, good32.data() + 8, 1) == 0);
        auto good16 = desc(blockDims(1, 64, 64), DataType::kHALF);
        CHECK(art->onShapeChange(good16.data(), 8, good16.data() + 8, 1) == 0);
        CHECK(recorder.mErrors.empty());
        auto badMask = desc(blockDims(2, 17, 31), DataType::kFLOAT);
        badMask[1].dims = dims({2, 1, 17, 30});
        CHECK(art->onShapeChange(badMask.data(), 8, badMask.data() + 8, 1) != 0);
        CHECK(recorder.mErrors.size() == 1
            && recorder.mErrors[0].find("mask has shape [2x1x17x30], expected [2x1x17x31]") != std::string::npos);
        auto badOut = desc(blockDims(2, 17, 31), DataType::kFLOAT);
        badOut[8].dims = dims({2, 64, 17, 32});
        CHECK(art->onShapeChange(badOut.data(), 8, badOut.data() + 8, 1) != 0);
        // enqueue rejects bad descriptors and missing pointers itself: no CUDA call happens on this CPU machine.
        std::vector<void const*> ins(8, nullptr);
        std::vector<void*> outs(1, nullptr);
        recorder.clear();
        CHECK(art->enqueue(badMask.data(), badMask.data() + 8, ins.data(), outs.data(), nullptr, nullptr) != 0);
        CHECK(recorder.getNbErrors() == 1);
        auto int8 = desc(blockDims(1, 8, 8), DataType::kINT8);
        CHECK(art->enqueue(int8.data(), int8.data() + 8, ins.data(), outs.data(), nullptr, nullptr) != 0);
        CHECK(art->enqueue(good32.data(), good32.data() + 8, nullptr, nullptr, nullptr, nullptr) != 0);
        CHECK(recorder.getNbErrors() == 3);
        delete att;
    }
    delete cl;
}


// ---- INT8 mode ------------------------------------------------------------------------------------------------
//! The four INT8 scale fields for block 0 (C = 64, sum Cout = 256); values distinct so a mix-up shows.
struct Int8Fields : Fields
{
    float x{0.02F};
    float feature[4]{0.05F, 0.04F, 0.03F, 0.025F};
    std::vector<float> weight = std::vector<float>(256);
    std::vector<float> collect = std::vector<float>(64);
    Int8Fields()
    {
        for (size_t i = 0; i < weight.size(); ++i)
            weight[i] = 1e-3F * float(i + 1);
        for (size_t i = 0; i < collect.size(); ++i)
            collect[i] = 2e-3F * float(i + 1);
        f = goodFields().f;
        f.emplace_back("x_scale", &x, PluginFieldType::kFLOAT32, 1);
        f.emplace_back("feature_scales", feature, PluginFieldType::kFLOAT32, 4);
        f.emplace_back("weight_scales", weight.data(), PluginFieldType::kFLOAT32, 256);
        f.emplace_back("collect_scales", collect.data(), PluginFieldType::kFLOAT32, 64);
    }
    PluginField& field(char const* name)
    {
        for (auto& e : f)
            if (std::strcmp(e.name, name) == 0)
                return e;
        return f[0];
    }
};

//! The float values of field `name` in the plugin's serialized fields (empty when absent or not FLOAT32).
std::vector<float> serializedFloats(IPluginV3* p, char const* name)
{
    PluginFieldCollection const* fc = runtimeOf(p)->getFieldsToSerialize();
    for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i)
        if (std::strcmp(fc->fields[i].name, name) == 0 && fc->fields[i].type == PluginFieldType::kFLOAT32)
        {
            auto const* v = static_cast<float const*>(fc->fields[i].data);
            return std::vector<float>(v, v + fc->fields[i].length);
        }
    return {};
}

//! Input types of an INT8 block: x and weights INT8, mask / bc (and y) `t`.
void int8Types(DataType* in, DataType t)
{
    std::fill(in, in + 8, DataType::kINT8);
    in[1] = in[7] = t;
}

//! Dynamic descriptors of an INT8 block (float type t for mask, bc, y).
std::vector<DynamicPluginTensorDesc> int8Desc(std::vector<Dims> const& d, DataType t)
{
    auto io = dynDesc(d, DataType::kINT8);
    io[1].desc.type = io[7].desc.type = io[8].desc.type = t;
    return io;
}

void testInt8BadFields(IPluginCreatorV3One* c)
{
    {
        Int8Fields f;
        f.f.erase(f.f.begin() + 4); // drop weight_scales
        expectBadFields(c, f.get(), "INT8 scale field(s) 'x_scale', 'feature_scales', 'collect_scales' given without "
                                    "'weight_scales' (256 floats");
        CHECK(logged("needs all four of x_scale, feature_scales, weight_scales, collect_scales"));
    }
    {
        Fields f = goodFields(); // one scale field on an otherwise float node
        float const x = 0.1F;
        f.f.emplace_back("x_scale", &x, PluginFieldType::kFLOAT32, 1);
        expectBadFields(c, f.get(), "given without 'feature_scales' (4 floats");
        CHECK(logged("'collect_scales' (C floats"));
    }
    {
        Int8Fields f;
        f.field("weight_scales").length = 255;
        expectBadFields(c, f.get(), "field 'weight_scales' must have 256 floats");
        CHECK(logged("got 255 values"));
    }
    {
        Int8Fields f;
        f.field("feature_scales").length = 3;
        expectBadFields(c, f.get(), "field 'feature_scales' must have 4 floats");
    }
    {
        Int8Fields f;
        f.field("x_scale").length = 2;
        expectBadFields(c, f.get(), "field 'x_scale' must have 1 float");
    }
    {
        Int8Fields f;
        f.x = 0.F;
        expectBadFields(c, f.get(), "INT8: x_scale must be finite and > 0");
    }
    {
        Int8Fields f;
        f.weight[17] = NAN;
        expectBadFields(c, f.get(), "INT8: every weight_scales value must be finite and > 0");
    }
    {
        Int8Fields f;
        f.collect[63] = -1.F;
        expectBadFields(c, f.get(), "INT8: every collect_scales value must be finite and > 0");
    }
    {
        Int8Fields f;
        int32_t const xs = 1;
        f.field("x_scale") = PluginField("x_scale", &xs, PluginFieldType::kINT32, 1);
        expectBadFields(c, f.get(), "field 'x_scale' must hold floats");
    }
    {
        Int8Fields f;
        f.f.push_back(f.field("collect_scales"));
        expectBadFields(c, f.get(), "field 'collect_scales' given twice");
    }
    {
        // FLOAT64 values are accepted (converted to float32, which is what the kernels use).
        Int8Fields f;
        double const x64 = 0.02;
        f.field("x_scale") = PluginField("x_scale", &x64, PluginFieldType::kFLOAT64, 1);
        IPluginV3* p = c->createPlugin("f64", f.get(), TensorRTPhase::kBUILD);
        CHECK(p != nullptr);
        CHECK(p != nullptr && serializedFloats(p, "x_scale") == std::vector<float>{0.02F});
        delete p;
    }
}

void testInt8Plugin(IPluginCreatorV3One* c)
{
    Int8Fields fields;
    IPluginV3* p = c->createPlugin("smb0", fields.get(), TensorRTPhase::kBUILD);
    CHECK(p != nullptr);
    if (p == nullptr)
        return;
    IPluginV3OneBuild* build = buildOf(p);
    CHECK(std::string(build->getMetadataString()).find("dense_channels=24,9,3,0 sparse_channels=40,55,61,64 int8")
        == 0);

    // Output type = the mask's; the other mode's graph is refused with what the graph must look like.
    DataType in[8], out[1];
    for (auto t : {DataType::kFLOAT, DataType::kHALF})
    {
        int8Types(in, t);
        out[0] = DataType::kINT32;
        CHECK(build->getOutputDataTypes(out, 1, in, 8) == 0 && out[0] == t);
    }
    gMessages.clear();
    std::fill(in, in + 8, DataType::kFLOAT);
    CHECK(build->getOutputDataTypes(out, 1, in, 8) != 0);
    CHECK(logged("x has type FLOAT but the node has INT8 scale fields"));
    CHECK(logged("QuantizeLinear"));
    gMessages.clear();
    int8Types(in, DataType::kFLOAT);
    in[3] = DataType::kFLOAT;
    CHECK(build->getOutputDataTypes(out, 1, in, 8) != 0);
    CHECK(logged("w1 has type FLOAT but an INT8 SMSRSparseBlock needs INT8 weight codes"));
    gMessages.clear();
    int8Types(in, DataType::kFLOAT);
    in[7] = DataType::kHALF;
    CHECK(build->getOutputDataTypes(out, 1, in, 8) != 0);
    CHECK(logged("bc has type HALF but mask has type FLOAT"));
    gMessages.clear();
    int8Types(in, DataType::kINT8);
    CHECK(build->getOutputDataTypes(out, 1, in, 8) != 0);
    CHECK(logged("mask has type INT8"));

    // Formats: x / weights INT8 linear, mask / bc / y one float type, all linear.
    auto const d = blockDims(1, 32, 48);
    for (auto t : {DataType::kFLOAT, DataType::kHALF})
    {
        auto io = int8Desc(d, t);
        for (int32_t pos = 0; pos < 9; ++pos)
            CHECK(build->supportsFormatCombination(pos, io.data(), 8, 1));
        io[8].desc.type = t == DataType::kFLOAT ? DataType::kHALF : DataType::kFLOAT; // y must follow the mask
        CHECK(!build->supportsFormatCombination(8, io.data(), 8, 1));
    }
    {
        auto io = int8Desc(d, DataType::kFLOAT);
        io[0].desc.type = DataType::kFLOAT;
        CHECK(!build->supportsFormatCombination(0, io.data(), 8, 1));
        io = int8Desc(d, DataType::kFLOAT);
        io[0].desc.format = TensorFormat::kCHW4;
        CHECK(!build->supportsFormatCombination(0, io.data(), 8, 1));
        io = int8Desc(d, DataType::kFLOAT);
        io[4].desc.type = DataType::kFLOAT;
        CHECK(!build->supportsFormatCombination(4, io.data(), 8, 1));
        io = int8Desc(d, DataType::kFLOAT);
        io[1].desc.type = DataType::kINT8;
        CHECK(!build->supportsFormatCombination(1, io.data(), 8, 1));
        io = int8Desc(d, DataType::kHALF);
        io[0].desc.format = io[8].desc.format = TensorFormat::kHWC8; // no channels-last in INT8 mode
        CHECK(!build->supportsFormatCombination(0, io.data(), 8, 1));
        CHECK(!build->supportsFormatCombination(8, io.data(), 8, 1));
    }

    // configurePlugin on a dynamic profile; workspace = the kernel library's INT8 size for the largest shape.
    {
        auto dyn = int8Desc(blockDims(-1, -1, -1), DataType::kHALF);
        auto const lo = blockDims(1, 8, 8);
        auto const hi = blockDims(2, 128, 96);
        for (size_t i = 0; i < dyn.size(); ++i)
        {
            dyn[i].min = lo[i];
            dyn[i].opt = hi[i];
            dyn[i].max = hi[i];
        }
        gMessages.clear();
        CHECK(build->configurePlugin(dyn.data(), 8, dyn.data() + 8, 1) == 0);
        CHECK(gMessages.empty());
        smsr::SparseBlockShape big{};
        big.batch = 2;
        big.channels = 64;
        big.height = 128;
        big.width = 96;
        std::memcpy(big.dense, kDense, sizeof kDense);
        std::memcpy(big.sparse, kSparse, sizeof kSparse);
        CHECK(build->getWorkspaceSize(dyn.data(), 8, dyn.data() + 8, 1)
            == smsr::getSparseBlockInt8WorkspaceSize(big, smsr::DataType::kHALF));
        auto io = int8Desc(d, DataType::kFLOAT);
        io[8].desc.type = DataType::kHALF;
        gMessages.clear();
        CHECK(build->configurePlugin(io.data(), 8, io.data() + 8, 1) != 0);
        CHECK(logged("output y has type HALF but mask has type FLOAT"));
    }
    // collect_scales must have C values: checked once C is known (x's dims).
    {
        Int8Fields f;
        f.field("collect_scales").length = 32;
        IPluginV3* q = c->createPlugin("smb_c32", f.get(), TensorRTPhase::kBUILD);
        CHECK(q != nullptr); // C is unknown to the creator
        if (q != nullptr)
        {
            auto io = int8Desc(d, DataType::kFLOAT);
            gMessages.clear();
            CHECK(buildOf(q)->configurePlugin(io.data(), 8, io.data() + 8, 1) != 0);
            CHECK(logged("field 'collect_scales' has 32 values but x has C = 64 channels"));
        }
        delete q;
    }

    // A block outside the INT8 kernels' limits (257 output channels in layer 0) is refused at build time.
    {
        int32_t const wideD[4] = {257, 1, 1, 1}, wideS[4] = {0, 0, 0, 0};
        std::vector<float> ws(260, 1e-3F), cs(64, 1e-3F);
        float const x = 0.02F, fs[4] = {0.05F, 0.05F, 0.05F, 0.05F};
        Fields f;
        f.f.emplace_back("dense_channels", wideD, PluginFieldType::kINT32, 4);
        f.f.emplace_back("sparse_channels", wideS, PluginFieldType::kINT32, 4);
        f.f.emplace_back("x_scale", &x, PluginFieldType::kFLOAT32, 1);
        f.f.emplace_back("feature_scales", fs, PluginFieldType::kFLOAT32, 4);
        f.f.emplace_back("weight_scales", ws.data(), PluginFieldType::kFLOAT32, 260);
        f.f.emplace_back("collect_scales", cs.data(), PluginFieldType::kFLOAT32, 64);
        IPluginV3* q = c->createPlugin("smb_wide", f.get(), TensorRTPhase::kBUILD);
        CHECK(q != nullptr);
        if (q != nullptr)
        {
            auto io = int8Desc({dims({1, 64, 8, 8}), dims({1, 1, 8, 8}), dims({3, 3, 64, 257}), dims({3, 3, 257, 1}),
                                   dims({3, 3, 1, 1}), dims({3, 3, 1, 1}), dims({1, 1, 260, 64}), dims({64}),
                                   dims({1, 64, 8, 8})},
                DataType::kFLOAT);
            gMessages.clear();
            CHECK(buildOf(q)->configurePlugin(io.data(), 8, io.data() + 8, 1) != 0);
            CHECK(logged("the kernel library's INT8 path does not support this block (at most 256 output channels"));
        }
        delete q;
    }

    // Serialization round trip: the INT8 fields come back bit for bit, in the runtime phase too.
    {
        PluginFieldCollection const* fc = runtimeOf(p)->getFieldsToSerialize();
        CHECK(fc != nullptr && fc->nbFields == 6);
        IPluginV3* q = c->createPlugin("smb0", fc, TensorRTPhase::kRUNTIME);
        CHECK(q != nullptr);
        if (q != nullptr)
        {
            CHECK(serializedFloats(q, "x_scale") == std::vector<float>{fields.x});
            CHECK(serializedFloats(q, "feature_scales") == std::vector<float>(fields.feature, fields.feature + 4));
            CHECK(serializedFloats(q, "weight_scales") == fields.weight);
            CHECK(serializedFloats(q, "collect_scales") == fields.collect);
            CHECK(std::string(buildOf(q)->getMetadataString()) == build->getMetadataString());
        }
        delete q;
    }
    // Clone keeps the INT8 fields (and outlives the original).
    IPluginV3* cl = p->clone();
    delete p;
    CHECK(cl != nullptr && serializedFloats(cl, "weight_scales") == fields.weight);
    if (cl != nullptr)
    {
        TestRecorder recorder;
        TestContext ctx;
        ctx.mRecorder = &recorder;
        IPluginV3* att = runtimeOf(cl)->attachToContext(&ctx);
        CHECK(att != nullptr && serializedFloats(att, "collect_scales") == fields.collect);
        if (att != nullptr)
        {
            IPluginV3OneRuntime* art = runtimeOf(att);
            for (auto t : {DataType::kFLOAT, DataType::kHALF})
            {
                auto rd = desc(blockDims(2, 17, 31), DataType::kINT8);
                rd[1].type = rd[7].type = rd[8].type = t;
                CHECK(art->onShapeChange(rd.data(), 8, rd.data() + 8, 1) == 0);
            }
            CHECK(recorder.mErrors.empty());
            auto fl = desc(blockDims(2, 17, 31), DataType::kFLOAT); // a float graph's descriptors
            CHECK(art->onShapeChange(fl.data(), 8, fl.data() + 8, 1) != 0);
            CHECK(recorder.mErrors.size() == 1
                && recorder.mErrors[0].find("x has type FLOAT but the node has INT8 scale fields") != std::string::npos);
            // enqueue with a float graph's descriptors: refused by the full check, before any CUDA call.
            std::vector<void const*> ins(8, nullptr);
            std::vector<void*> outs(1, nullptr);
            CHECK(art->enqueue(fl.data(), fl.data() + 8, ins.data(), outs.data(), nullptr, nullptr) != 0);
            delete att;
        }
    }
    delete cl;
}

#if defined(SMSR_SIMT_EMULATION)
// ---- enqueue's success path (emulated kernel library: "device" pointers are host memory) ---------------------
struct Block
{
    int32_t n, c, h, w;
    int32_t dense[4], sparse[4];
    int32_t cout(int32_t l) const { return dense[l] + sparse[l]; }
    int32_t cin(int32_t l) const { return l == 0 ? c : cout(l - 1); }
    int32_t collectIn() const { return cout(0) + cout(1) + cout(2) + cout(3); }
    std::vector<Dims> ioDims(int64_t nn, int64_t hh, int64_t ww) const
    {
        std::vector<Dims> v{dims({nn, c, hh, ww}), dims({nn, 1, hh, ww})};
        for (int32_t l = 0; l < 4; ++l)
            v.push_back(dims({3, 3, cin(l), cout(l)}));
        v.push_back(dims({1, 1, collectIn(), c}));
        v.push_back(dims({c}));
        v.push_back(dims({nn, c, hh, ww}));
        return v;
    }
};

//! The op contract (docs/DESIGN.md §2) evaluated directly, in double, NCHW. t[0..7] = x, mask, w0..w3, wc, bc.
std::vector<double> naiveBlock(Block const& b, std::vector<float> const* t)
{
    size_t const HW = size_t(b.h) * b.w;
    std::vector<double> y(size_t(b.n) * b.c * HW);
    for (int32_t n = 0; n < b.n; ++n)
    {
        float const* m = t[1].data() + n * HW;
        std::vector<double> in(t[0].begin() + n * b.c * HW, t[0].begin() + (n + 1) * b.c * HW);
        double* yn = y.data() + n * b.c * HW;
        for (int32_t co = 0; co < b.c; ++co)
            for (size_t p = 0; p < HW; ++p)
                yn[co * HW + p] = t[7][co];
        int32_t off = 0;
        for (int32_t l = 0; l < 4; ++l)
        {
            int32_t const cin = b.cin(l), cout = b.cout(l), denseIn = l == 0 ? cin : b.dense[l - 1];
            std::vector<float> const& wl = t[2 + l];
            std::vector<double> f(cout * HW);
            for (int32_t co = 0; co < cout; ++co)
                for (int32_t yy = 0; yy < b.h; ++yy)
                    for (int32_t xx = 0; xx < b.w; ++xx)
                    {
                        double sd = 0, ss = 0;
                        for (int32_t ci = 0; ci < cin; ++ci)
                            for (int32_t k = 0; k < 9; ++k)
                            {
                                int32_t const sy = yy + k / 3 - 1, sx = xx + k % 3 - 1;
                                if (sy >= 0 && sy < b.h && sx >= 0 && sx < b.w)
                                    (ci < denseIn ? sd : ss)
                                        += in[ci * HW + sy * b.w + sx] * wl[(size_t(k) * cin + ci) * cout + co];
                            }
                        double const mp = m[yy * b.w + xx];
                        double z = sd + mp * ss;
                        if (co >= b.dense[l])
                            z *= mp;
                        f[co * HW + yy * b.w + xx] = z > 0 ? z : 0;
                    }
            for (int32_t co = 0; co < b.c; ++co)
                for (int32_t ci = 0; ci < cout; ++ci)
                    for (size_t p = 0; p < HW; ++p)
                        yn[co * HW + p] += t[6][size_t(off + ci) * b.c + co] * f[ci * HW + p];
            off += cout;
            in.swap(f);
        }
    }
    return y;
}

float roundHalf(float v) { return __half2float(__float2half_rn(v)); }

//! One plugin run through the TensorRT call sequence (configurePlugin on a dynamic profile larger than the
//! actual shape, getWorkspaceSize, attachToContext, onShapeChange, enqueue) against the naive reference.
//! hwc8: x and y in TensorRT's kHWC8 (FP16, C % 8 == 0: exactly N x H x W x C), the rest linear.
void runEnqueueCase(IPluginCreatorV3One* c, Block const& b, DataType type, uint32_t seed, bool hwc8 = false)
{
    bool const half = type == DataType::kHALF;
    char const* const tname = hwc8 ? "FP16 HWC8" : half ? "FP16" : "FP32";
    size_t const planeHW = size_t(b.h) * b.w;
    // Element j of planar N x C x HW at its place in the channels-last buffer.
    auto const place = [&](size_t j) {
        size_t const p = j % planeHW, ch = j / planeHW % size_t(b.c), n = j / (planeHW * b.c);
        return hwc8 ? (n * planeHW + p) * b.c + ch : j;
    };
    Fields f;
    f.f.emplace_back("dense_channels", b.dense, PluginFieldType::kINT32, 4);
    f.f.emplace_back("sparse_channels", b.sparse, PluginFieldType::kINT32, 4);
    IPluginV3* p = c->createPlugin("emu_block", f.get(), TensorRTPhase::kBUILD);
    CHECK(p != nullptr);
    if (p == nullptr)
        return;
    // Build phase: profile N 1..n+1, H 4..h+1, W 4..w+3 (the workspace is sized for the largest shape).
    auto dyn = dynDesc(b.ioDims(-1, -1, -1), type);
    if (hwc8)
    {
        dyn[0].desc.format = TensorFormat::kHWC8;
        dyn[8].desc.format = TensorFormat::kHWC8;
        dyn[0].desc.dims.d[1] = b.c; // C is static in real networks: what supportsFormatCombination looks at
        for (int32_t pos = 0; pos < 9; ++pos)
            CHECK(buildOf(p)->supportsFormatCombination(pos, dyn.data(), 8, 1));
    }
    auto const lo = b.ioDims(1, 4, 4), hi = b.ioDims(b.n + 1, b.h + 1, b.w + 3);
    for (size_t i = 0; i < dyn.size(); ++i)
    {
        dyn[i].min = lo[i];
        dyn[i].opt = hi[i];
        dyn[i].max = hi[i];
    }
    CHECK(buildOf(p)->configurePlugin(dyn.data(), 8, dyn.data() + 8, 1) == 0);
    size_t const ws = buildOf(p)->getWorkspaceSize(dyn.data(), 8, dyn.data() + 8, 1);
    smsr::SparseBlockShape big{};
    big.batch = b.n + 1;
    big.channels = b.c;
    big.height = b.h + 1;
    big.width = b.w + 3;
    std::memcpy(big.dense, b.dense, sizeof big.dense);
    std::memcpy(big.sparse, b.sparse, sizeof big.sparse);
    big.format = hwc8 ? smsr::TensorFormat::kNHWC : smsr::TensorFormat::kNCHW;
    size_t const libWs = smsr::getSparseBlockWorkspaceSize(big, half ? smsr::DataType::kHALF : smsr::DataType::kFLOAT);
    CHECK(ws > 0 && ws == libWs);

    // Data: pixels 0..255, weights keeping features on that scale, a ~40 % / ~70 % mask; FP16 inputs are rounded
    // first so the reference sees exactly what the kernels read. Every tensor is distinct: a swapped input shows.
    std::mt19937 rng(seed);
    auto const io = b.ioDims(b.n, b.h, b.w);
    std::vector<float> t[8];
    for (int32_t i = 0; i < 8; ++i)
    {
        int64_t count = 1;
        for (int32_t d = 0; d < io[i].nbDims; ++d)
            count *= io[i].d[d];
        t[i].resize(size_t(count));
    }
    std::uniform_real_distribution<float> pix(0.F, 255.F), unit(0.F, 1.F), bias(-10.F, 10.F);
    for (auto& v : t[0])
        v = pix(rng);
    size_t const HW = size_t(b.h) * b.w;
    for (size_t i = 0; i < t[1].size(); ++i)
        t[1][i] = unit(rng) < (i < HW ? 0.4F : 0.7F) ? 1.F : 0.F;
    for (int32_t l = 0; l < 4; ++l)
    {
        std::normal_distribution<float> g(0.F, std::sqrt(1.F / (9.F * b.cin(l))));
        for (auto& v : t[2 + l])
            v = g(rng);
    }
    std::normal_distribution<float> gc(0.F, std::sqrt(1.F / b.collectIn()));
    for (auto& v : t[6])
        v = gc(rng);
    for (auto& v : t[7])
        v = bias(rng);
    if (half)
        for (auto& vec : t)
            for (auto& v : vec)
                v = roundHalf(v);
    std::vector<double> const ref = naiveBlock(b, t);

    // Device buffers in the plugin's I/O type (host memory under the emulation).
    size_t const esz = half ? 2 : 4;
    std::vector<void*> buf(9, nullptr);
    for (int32_t i = 0; i < 9; ++i)
    {
        size_t const count = i < 8 ? t[i].size() : ref.size();
        CHECK(cudaMalloc(&buf[i], count * esz) == cudaSuccess);
        for (size_t j = 0; j < count; ++j)
        {
            float const v = i < 8 ? t[i][j] : NAN; // y starts as NaN: every element must be written
            size_t const at = i == 0 ? place(j) : j;
            if (half)
                static_cast<__half*>(buf[i])[at] = __float2half_rn(v);
            else
                static_cast<float*>(buf[i])[at] = v;
        }
    }
    void* workspace = nullptr;
    CHECK(cudaMalloc(&workspace, ws) == cudaSuccess);

    TestRecorder recorder;
    TestContext ctx;
    ctx.mRecorder = &recorder;
    IPluginV3* att = runtimeOf(p)->attachToContext(&ctx);
    CHECK(att != nullptr);
    if (att != nullptr)
    {
        auto rd = desc(io, type);
        if (hwc8)
            rd[0].format = rd[8].format = TensorFormat::kHWC8;
        CHECK(runtimeOf(att)->onShapeChange(rd.data(), 8, rd.data() + 8, 1) == 0);
        std::vector<void const*> ins(buf.begin(), buf.begin() + 8);
        std::vector<void*> outs{buf[8]};
        int32_t const rc = runtimeOf(att)->enqueue(rd.data(), rd.data() + 8, ins.data(), outs.data(), workspace, nullptr);
        CHECK(rc == 0);
        CHECK(recorder.mErrors.empty());
        for (auto const& e : recorder.mErrors)
            std::fprintf(stderr, "  enqueue error: %s\n", e.c_str());
        double maxErr = 0, maxRef = 0;
        size_t nonFinite = 0;
        for (size_t j = 0; j < ref.size(); ++j)
        {
            size_t const at = place(j);
            double const y = half ? __half2float(static_cast<__half*>(buf[8])[at]) : static_cast<float*>(buf[8])[at];
            if (!std::isfinite(y))
                ++nonFinite;
            else
                maxErr = std::max(maxErr, std::fabs(y - ref[j]));
            maxRef = std::max(maxRef, std::fabs(ref[j]));
        }
        // Same tolerances as the kernel tests: FP32 abs 1e-3 on 0..255 data; FP16 1e-2 relative to max |y|.
        bool const ok = rc == 0 && nonFinite == 0 && (half ? maxErr <= 1e-2 * maxRef : maxErr <= 1e-3);
        CHECK(ok);
        std::printf("%s plugin enqueue (emulated kernels) %s N=%d C=%d H=%d W=%d dense=%d,%d,%d,%d: max|err|=%.3g "
                    "(max|y|=%.3g, non-finite %zu), workspace %zu bytes\n",
            ok ? "ok  " : "FAIL", tname, b.n, b.c, b.h, b.w, b.dense[0], b.dense[1], b.dense[2], b.dense[3], maxErr,
            maxRef, nonFinite, ws);
        delete att;
    }
    for (void* q : buf)
        cudaFree(q);
    cudaFree(workspace);
    delete p;
}


using smsr_test::Int8Case;

Int8Case makeInt8Case(Block const& b, bool half, uint32_t seed)
{
    smsr_test::Int8Block const ib{b.n, b.c, b.h, b.w, {b.dense[0], b.dense[1], b.dense[2], b.dense[3]},
        {b.sparse[0], b.sparse[1], b.sparse[2], b.sparse[3]}};
    float (*const io)(float) = half ? &roundHalf : static_cast<float (*)(float)>([](float v) { return v; });
    return smsr_test::makeInt8Case(ib, io, seed);
}

//! The plugin's INT8 path through the TensorRT call sequence on the emulated kernels: y must be the contract's
//! bits exactly (FP32 y; FP16 y = the float32 result rounded to half).
void runInt8EnqueueCase(IPluginCreatorV3One* c, Block const& b, DataType outType, uint32_t seed)
{
    bool const half = outType == DataType::kHALF;
    Int8Case k = makeInt8Case(b, half, seed);
    Fields f;
    f.f.emplace_back("dense_channels", b.dense, PluginFieldType::kINT32, 4);
    f.f.emplace_back("sparse_channels", b.sparse, PluginFieldType::kINT32, 4);
    f.f.emplace_back("x_scale", &k.xScale, PluginFieldType::kFLOAT32, 1);
    f.f.emplace_back("feature_scales", k.feature, PluginFieldType::kFLOAT32, 4);
    f.f.emplace_back("weight_scales", k.weightScales.data(), PluginFieldType::kFLOAT32, int32_t(k.weightScales.size()));
    f.f.emplace_back("collect_scales", k.collectScales.data(), PluginFieldType::kFLOAT32, int32_t(k.collectScales.size()));
    IPluginV3* p = c->createPlugin("emu_int8", f.get(), TensorRTPhase::kBUILD);
    CHECK(p != nullptr);
    if (p == nullptr)
        return;
    auto withTypes = [&](std::vector<Dims> const& d) {
        auto io = dynDesc(d, DataType::kINT8);
        io[1].desc.type = io[7].desc.type = io[8].desc.type = outType;
        return io;
    };
    auto dyn = withTypes(b.ioDims(-1, -1, -1));
    auto const lo = b.ioDims(1, 4, 4), hi = b.ioDims(b.n + 1, b.h + 1, b.w + 3);
    for (size_t i = 0; i < dyn.size(); ++i)
    {
        dyn[i].min = lo[i];
        dyn[i].opt = hi[i];
        dyn[i].max = hi[i];
    }
    for (int32_t pos = 0; pos < 9; ++pos)
        CHECK(buildOf(p)->supportsFormatCombination(pos, dyn.data(), 8, 1));
    CHECK(buildOf(p)->configurePlugin(dyn.data(), 8, dyn.data() + 8, 1) == 0);
    size_t const ws = buildOf(p)->getWorkspaceSize(dyn.data(), 8, dyn.data() + 8, 1);
    smsr::SparseBlockShape big{};
    big.batch = b.n + 1;
    big.channels = b.c;
    big.height = b.h + 1;
    big.width = b.w + 3;
    std::memcpy(big.dense, b.dense, sizeof big.dense);
    std::memcpy(big.sparse, b.sparse, sizeof big.sparse);
    CHECK(ws > 0 && ws == smsr::getSparseBlockInt8WorkspaceSize(big, half ? smsr::DataType::kHALF : smsr::DataType::kFLOAT));

    // "Device" buffers (host memory under the emulation): x / weights int8 codes, mask / bc / y the I/O type.
    size_t const esz = half ? 2 : 4;
    auto putFloats = [&](std::vector<float> const& v) {
        void* d = nullptr;
        CHECK(cudaMalloc(&d, v.size() * esz) == cudaSuccess);
        for (size_t j = 0; j < v.size(); ++j)
        {
            if (half)
                static_cast<__half*>(d)[j] = __float2half_rn(v[j]);
            else
                static_cast<float*>(d)[j] = v[j];
        }
        return d;
    };
    auto putCodes = [&](std::vector<int8_t> const& v) {
        void* d = nullptr;
        CHECK(cudaMalloc(&d, v.size()) == cudaSuccess);
        std::memcpy(d, v.data(), v.size());
        return d;
    };
    std::vector<void*> buf{putCodes(k.x), putFloats(k.mask), putCodes(k.w[0]), putCodes(k.w[1]), putCodes(k.w[2]),
        putCodes(k.w[3]), putCodes(k.wc), putFloats(k.bc), putFloats(std::vector<float>(k.y.size(), NAN))};
    void* workspace = nullptr;
    CHECK(cudaMalloc(&workspace, ws) == cudaSuccess);

    TestRecorder recorder;
    TestContext ctx;
    ctx.mRecorder = &recorder;
    IPluginV3* att = runtimeOf(p)->attachToContext(&ctx);
    CHECK(att != nullptr);
    if (att != nullptr)
    {
        auto io = b.ioDims(b.n, b.h, b.w);
        auto rd = desc(io, DataType::kINT8);
        rd[1].type = rd[7].type = rd[8].type = outType;
        CHECK(runtimeOf(att)->onShapeChange(rd.data(), 8, rd.data() + 8, 1) == 0);
        std::vector<void const*> ins(buf.begin(), buf.begin() + 8);
        std::vector<void*> outs{buf[8]};
        int32_t const rc = runtimeOf(att)->enqueue(rd.data(), rd.data() + 8, ins.data(), outs.data(), workspace, nullptr);
        CHECK(rc == 0);
        for (auto const& e : recorder.mErrors)
            std::fprintf(stderr, "  enqueue error: %s\n", e.c_str());
        CHECK(recorder.mErrors.empty());
        size_t mismatches = 0;
        for (size_t j = 0; j < k.y.size(); ++j)
        {
            bool same = false;
            if (half)
            {
                __half const want = __float2half_rn(k.y[j]);
                same = std::memcmp(&static_cast<__half*>(buf[8])[j], &want, 2) == 0;
            }
            else
                same = std::memcmp(&static_cast<float*>(buf[8])[j], &k.y[j], 4) == 0;
            mismatches += same ? 0 : 1;
        }
        // The data must exercise the epilogue: most feature codes neither 0 nor saturated at 127 would be too
        // much to ask with ReLU and masks, but a good share must be.
        double const spread = double(k.unsaturated) / double(k.featureCodes);
        bool const ok = rc == 0 && mismatches == 0 && spread > 0.2;
        CHECK(ok);
        std::printf("%s plugin INT8 enqueue (emulated kernels) y %s N=%d C=%d H=%d W=%d dense=%d,%d,%d,%d: %zu of %zu "
                    "y values differ from the contract's bits (feature codes in 1..126: %.0f %%), workspace %zu bytes\n",
            ok ? "ok  " : "FAIL", half ? "FP16" : "FP32", b.n, b.c, b.h, b.w, b.dense[0], b.dense[1], b.dense[2],
            b.dense[3], mismatches, k.y.size(), 100.0 * spread, ws);
        delete att;
    }
    for (void* q : buf)
        cudaFree(q);
    cudaFree(workspace);
    delete p;
}

void testEnqueue(IPluginCreatorV3One* c)
{
    // Official-like splits, scaled to C=16: dense channels shrinking to zero in later layers; and a block whose
    // layer 0 has no sparse outputs while later layers have no dense ones.
    Block const a{2, 16, 7, 9, {6, 2, 1, 0}, {10, 14, 15, 16}};
    Block const z{2, 16, 7, 9, {16, 0, 0, 0}, {0, 16, 16, 16}};
    uint32_t seed = 11;
    for (Block const& b : {a, z})
        for (DataType t : {DataType::kFLOAT, DataType::kHALF})
            runEnqueueCase(c, b, t, seed++);
    for (Block const& b : {a, z})
        runEnqueueCase(c, b, DataType::kHALF, seed++, true);
    // INT8 mode: bit-exact against the contract.
    for (Block const& b : {a, z})
        for (DataType t : {DataType::kFLOAT, DataType::kHALF})
            runInt8EnqueueCase(c, b, t, seed++);
}
#endif

void testLogging(IPluginCreatorV3One* c)
{
    Fields none;
#if NV_TENSORRT_MAJOR < 11
    LegacyLogger legacyLogger;
    LegacyFinder legacy;
    legacy.mLogger = &legacyLogger;
    gSetLoggerFinder(&legacy);
    gMessages.clear();
    delete c->createPlugin("n1", none.get(), TensorRTPhase::kBUILD);
    CHECK(logged("legacy:SMSRSparseBlock 'n1': missing field 'dense_channels'"));
    legacy.mLogger = nullptr; // finder without a logger: falls back to stderr
    gMessages.clear();
    delete c->createPlugin("n2", none.get(), TensorRTPhase::kBUILD);
    CHECK(gMessages.empty());
#endif
    // static: it stays the library's logger finder for the remaining tests (a local would dangle after return)
    static VersionedFinder versioned;
    gSetLoggerFinder(reinterpret_cast<ILoggerFinder*>(&versioned));
    gMessages.clear();
    delete c->createPlugin("n3", none.get(), TensorRTPhase::kRUNTIME);
    CHECK(logged("versioned:SMSRSparseBlock 'n3': missing field 'dense_channels'"));
    CHECK(logged("(while deserializing the engine)"));
    gSetLoggerFinder(nullptr); // no logger handed over: stderr, no crash
    gMessages.clear();
    delete c->createPlugin("n4", none.get(), TensorRTPhase::kBUILD);
    CHECK(gMessages.empty());
    gSetLoggerFinder(reinterpret_cast<ILoggerFinder*>(&versioned)); // capture for the remaining tests
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 2)
    {
        std::fprintf(stderr, "usage: %s <libsmsr_trt_plugin.so>\n", argv[0]);
        return 2;
    }
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr)
    {
        std::fprintf(stderr, "cannot load %s: %s\n", argv[1], dlerror());
        return 1;
    }
    auto getCreators = reinterpret_cast<GetCreatorsFn>(dlsym(lib, "getCreators"));
    gSetLoggerFinder = reinterpret_cast<SetLoggerFinderFn>(dlsym(lib, "setLoggerFinder"));
    gLive = reinterpret_cast<LiveObjectsFn>(dlsym(lib, "smsrSparseBlockLiveObjects"));
    CHECK(getCreators != nullptr && gSetLoggerFinder != nullptr && gLive != nullptr);
    // Nothing else is exported (internal symbols stay hidden).
    CHECK(dlsym(lib, "validateSparseBlockShape") == nullptr);
    if (getCreators == nullptr || gSetLoggerFinder == nullptr || gLive == nullptr)
        return 1;

    int32_t nb = -1;
    IPluginCreatorInterface* const* creators = getCreators(nb);
    CHECK(nb == 1 && creators != nullptr && creators[0] != nullptr);
    if (nb != 1 || creators == nullptr || creators[0] == nullptr)
        return 1;
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    int32_t nb2 = 0;
    CHECK(getCreators(nb2)[0] == creators[0]); // one creator object for the library's lifetime

    testLogging(creator);
    testCreator(creator);
    testBadFields(creator);
    testPlugin(creator);
    testInt8BadFields(creator);
    testInt8Plugin(creator);
#if defined(SMSR_SIMT_EMULATION)
    testEnqueue(creator);
#endif
    CHECK(gLive() == 0); // every plugin object created above was destroyed exactly once

    std::printf("%d checks, %d failures\n", gChecks, gFailures);
    return gFailures == 0 ? 0 : 1;
}

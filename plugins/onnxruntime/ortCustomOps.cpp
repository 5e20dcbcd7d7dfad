/*
 * ONNX Runtime adapter of the CPU SMSRSparseBlock op: domain "smsr", float32 and float16 kernels, and the INT8
 * variant (x and weights int8 codes, mask / bc / y float32 or float16; ONNX Runtime picks the kernel by input types).
 *
 * Load with SessionOptions.register_custom_ops_library(path) (engine/ort_ops.py does it). Built against the
 * ONNX Runtime C API headers only (ORT_API_MANUAL_INIT), so it works with any onnxruntime >= 1.21 wheel.
 * Every error (bad attributes, shapes that do not match the attributes, BLAS missing) becomes an OrtStatus
 * naming the node and the problem; no exception crosses into ONNX Runtime.
 */
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include "halfConvert.h"
#include "sparseBlockCpu.h"
#include "sparseBlockCpuInt8.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace
{

constexpr char const* kDomain = "smsr";
constexpr char const* kOpName = "SMSRSparseBlock";
constexpr size_t kNumInputs = 8;
constexpr char const* kInputNames[kNumInputs] = {"x", "mask", "w0", "w1", "w2", "w3", "wc", "bc"};

//! A problem with the node or its inputs: reported as ORT_INVALID_ARGUMENT.
struct NodeError : std::runtime_error
{
    using std::runtime_error::runtime_error;
};

std::string shapeString(std::vector<int64_t> const& s)
{
    std::string out = "[";
    for (size_t i = 0; i < s.size(); ++i)
        out += (i ? "," : "") + std::to_string(s[i]);
    return out + "]";
}

std::vector<int64_t> readIntsAttribute(OrtApi const& api, OrtKernelInfo const* info, char const* name,
    std::string const& where)
{
    size_t size = 0;
    if (OrtStatus* st = api.KernelInfoGetAttributeArray_int64(info, name, nullptr, &size))
    {
        api.ReleaseStatus(st);
        throw NodeError(where + ": missing ints attribute '" + name + "' (4 values, one per layer)");
    }
    std::vector<int64_t> v(size);
    if (size > 0)
        if (OrtStatus* st = api.KernelInfoGetAttributeArray_int64(info, name, v.data(), &size))
        {
            std::string msg = api.GetErrorMessage(st);
            api.ReleaseStatus(st);
            throw NodeError(where + ": cannot read attribute '" + name + "': " + msg);
        }
    return v;
}

//! Expected shape of input i (1..7) for x of shape N x C x H x W; -1 = any.
std::vector<int64_t> expectedShape(smsr::SparseBlockShape const& s, size_t i)
{
    using namespace smsr;
    switch (i)
    {
    case 1: return {s.batch, 1, s.height, s.width};
    case 2:
    case 3:
    case 4:
    case 5:
    {
        int const l = int(i) - 2;
        return {3, 3, layerInChannels(s, l), layerOutChannels(s, l)}; // HWIO: the layout the kernels read
    }
    case 6: return {1, 1, collectInChannels(s), s.channels};
    case 7: return {s.channels};
    default: return {};
    }
}

std::string expectedNote(smsr::SparseBlockShape const& s, size_t i)
{
    std::ostringstream o;
    if (i >= 2 && i <= 5)
    {
        int const l = int(i) - 2;
        o << " (3 x 3 x Cin_" << l << " x Cout_" << l << ", plugin_version 2 layout; Cout_" << l << " = D_" << l << "+S_"
          << l << " = " << s.dense[l] << "+" << s.sparse[l] << " from the attributes, Cin_" << l << " = "
          << (l == 0 ? "C" : "D_" + std::to_string(l - 1) + "+S_" + std::to_string(l - 1)) << ")";
    }
    else if (i == 6)
        o << " (1 x 1 x sum of D_l+S_l x C, plugin_version 2 layout)";
    else if (i == 1)
        o << " (N x 1 x H x W of x)";
    return o.str();
}

//! Checks input i's shape; dims < 0 in `actual` (unknown at session creation) are skipped.
void checkShape(smsr::SparseBlockShape const& s, size_t i, std::vector<int64_t> const& actual, std::string const& where,
    bool partial)
{
    std::vector<int64_t> exp = expectedShape(s, i);
    // wc may also come as a 2-D matrix sum(Cout) x C
    if (i == 6 && actual.size() == 2)
        exp.erase(exp.begin(), exp.begin() + 2);
    bool ok = actual.size() == exp.size();
    for (size_t d = 0; ok && d < exp.size(); ++d)
    {
        bool const unknownExp = exp[d] < 0 || (partial && i == 1 && d != 1); // mask N/H/W follow x
        if (actual[d] >= 0 && !unknownExp && actual[d] != exp[d])
            ok = false;
    }
    if (!ok)
        throw NodeError(where + ": input " + std::to_string(i) + " (" + kInputNames[i] + ") has shape "
            + shapeString(actual) + ", expected " + shapeString(exp) + expectedNote(s, i));
}

struct Attributes
{
    int32_t dense[smsr::kSparseBlockLayers]{};
    int32_t sparse[smsr::kSparseBlockLayers]{};
};

std::string nodeWhere(Ort::ConstKernelInfo const& ki, char const* variant)
{
    std::string name;
    try
    {
        name = ki.GetNodeName();
    }
    catch (...)
    {
    }
    return std::string(kOpName) + variant + " node '" + name + "'";
}

//! dense_channels / sparse_channels (4 values each, every layer >= 1 output channel).
Attributes readChannelSplit(OrtApi const& api, OrtKernelInfo const* info, std::string const& where)
{
    Attributes a;
    for (char const* attr : {"dense_channels", "sparse_channels"})
    {
        std::vector<int64_t> v = readIntsAttribute(api, info, attr, where);
        if (v.size() != smsr::kSparseBlockLayers)
            throw NodeError(where + ": attribute '" + attr + "' has " + std::to_string(v.size())
                + " values, expected 4 (one per layer)");
        for (int l = 0; l < smsr::kSparseBlockLayers; ++l)
        {
            if (v[l] < 0 || v[l] > 65536)
                throw NodeError(where + ": attribute '" + attr + "'[" + std::to_string(l) + "] = "
                    + std::to_string(v[l]) + " is out of range");
            (attr[0] == 'd' ? a.dense : a.sparse)[l] = int32_t(v[l]);
        }
    }
    for (int l = 0; l < smsr::kSparseBlockLayers; ++l)
        if (a.dense[l] + a.sparse[l] < 1)
            throw NodeError(where + ": layer " + std::to_string(l)
                + " has no output channels (dense_channels + sparse_channels must be >= 1)");
    return a;
}

//! The block shape from x's shape N x C x H x W and the channel split.
smsr::SparseBlockShape shapeFromX(std::vector<int64_t> const& xs, Attributes const& attr, std::string const& where)
{
    if (xs.size() != 4)
        throw NodeError(where + ": input 0 (x) must be 4-D N x C x H x W, got " + shapeString(xs));
    smsr::SparseBlockShape s;
    s.batch = int32_t(xs[0]);
    s.channels = int32_t(xs[1]);
    s.height = int32_t(xs[2]);
    s.width = int32_t(xs[3]);
    for (int l = 0; l < smsr::kSparseBlockLayers; ++l)
    {
        s.dense[l] = attr.dense[l];
        s.sparse[l] = attr.sparse[l];
    }
    return s;
}

//! The work runner on ONNX Runtime's intra-op pool (dynamic scheduling).
//! Runs a kernel's compute and turns what it throws into an ONNX Runtime status (NodeError / invalid_argument:
//! INVALID_ARGUMENT, anything else: FAIL), the message prefixed with the node where it lacks one.
template <typename F>
OrtStatusPtr guardedCompute(OrtApi const& api, std::string const& where, F&& compute) noexcept
{
    try
    {
        compute();
        return nullptr;
    }
    catch (NodeError const& e)
    {
        return api.CreateStatus(ORT_INVALID_ARGUMENT, e.what());
    }
    catch (std::invalid_argument const& e)
    {
        return api.CreateStatus(ORT_INVALID_ARGUMENT, (where + ": " + e.what()).c_str());
    }
    catch (std::exception const& e)
    {
        return api.CreateStatus(ORT_FAIL, (where + ": " + e.what()).c_str());
    }
    catch (...)
    {
        return api.CreateStatus(ORT_FAIL, (where + ": unknown error").c_str());
    }
}

//! The node's 8 inputs and their shapes; a missing one is a NodeError naming it.
void readInputs(Ort::KernelContext& ctx, std::string const& where, std::vector<Ort::ConstValue>& in,
    std::vector<std::vector<int64_t>>& shapes)
{
    if (ctx.GetInputCount() != kNumInputs)
        throw NodeError(where + ": got " + std::to_string(ctx.GetInputCount()) + " inputs, expected 8");
    for (size_t i = 0; i < kNumInputs; ++i)
    {
        in.push_back(ctx.GetInput(i));
        if (!in.back())
            throw NodeError(where + ": input " + std::to_string(i) + " (" + kInputNames[i] + ") is missing");
        shapes.push_back(in.back().GetTensorTypeAndShapeInfo().GetShape());
    }
}

//! Creates a kernel object; what its constructor throws becomes a status (NodeError: INVALID_ARGUMENT, else FAIL).
template <typename Kernel>
OrtStatusPtr createKernel(OrtApi const& api, OrtKernelInfo const* info, void** kernel, char const* label) noexcept
{
    try
    {
        *kernel = new Kernel(api, info);
        return nullptr;
    }
    catch (NodeError const& e)
    {
        return api.CreateStatus(ORT_INVALID_ARGUMENT, e.what());
    }
    catch (std::exception const& e)
    {
        return api.CreateStatus(ORT_FAIL, (std::string(label) + ": " + e.what()).c_str());
    }
    catch (...)
    {
        return api.CreateStatus(ORT_FAIL, (std::string(label) + ": unknown error while creating the kernel").c_str());
    }
}

struct OrtRunner final : smsr::cpu::ParallelRunner
{
    Ort::KernelContext& ctx;
    explicit OrtRunner(Ort::KernelContext& c) : ctx(c) {}
    void run(size_t total, void (*fn)(void*, size_t), void* data) override
    {
        if (total == 1)
            fn(data, 0);
        else
            ctx.ParallelFor(fn, total, 0, data);
    }
};

template <bool Half>
struct SparseBlockKernel
{
    SparseBlockKernel(OrtApi const& api, OrtKernelInfo const* info) : mApi(api)
    {
        Ort::ConstKernelInfo ki(info);
        mWhere = nodeWhere(ki, "");
        mAttr = readChannelSplit(api, info, mWhere);
        if (ki.GetInputCount() != kNumInputs)
            throw NodeError(mWhere + ": has " + std::to_string(ki.GetInputCount())
                + " inputs, expected 8 (x, mask, w0, w1, w2, w3, wc, bc)");
        // Early shape check where ONNX Runtime knows the shapes already (weights are initializers).
        try
        {
            std::vector<std::vector<int64_t>> shapes;
            for (size_t i = 0; i < kNumInputs; ++i)
                shapes.push_back(ki.GetInputTypeInfo(i).GetTensorTypeAndShapeInfo().GetShape());
            // Rank 0 here means "unknown" (graphs without value_info): leave it to Compute.
            smsr::SparseBlockShape s = shapes[0].empty() ? smsr::SparseBlockShape{} : shapeFrom(shapes[0]);
            if (s.channels > 0)
                for (size_t i = 1; i < kNumInputs; ++i)
                    checkShape(s, i, shapes[i], mWhere, /*partial=*/true);
        }
        catch (Ort::Exception const&)
        {
            // type info unavailable: shapes are checked in Compute
        }
        smsr::cpu::computeDescription(); // loads OpenBLAS now if this CPU needs it: a missing one fails here
    }

    smsr::SparseBlockShape shapeFrom(std::vector<int64_t> const& xs) const { return shapeFromX(xs, mAttr, mWhere); }

    OrtStatusPtr ComputeV2(OrtKernelContext* context) noexcept
    {
        return guardedCompute(mApi, mWhere, [&] { compute(context); });
    }

    void compute(OrtKernelContext* context)
    {
        Ort::KernelContext ctx(context);
        std::vector<Ort::ConstValue> in;
        std::vector<std::vector<int64_t>> shapes;
        readInputs(ctx, mWhere, in, shapes);
        smsr::SparseBlockShape s = shapeFrom(shapes[0]);
        for (int64_t d : shapes[0])
            if (d > INT32_MAX)
                throw NodeError(mWhere + ": x has a dimension above 2^31-1: " + shapeString(shapes[0]));
        for (size_t i = 1; i < kNumInputs; ++i)
            checkShape(s, i, shapes[i], mWhere, /*partial=*/false);
        Ort::UnownedValue out = ctx.GetOutput(0, shapes[0]);
        if (s.batch == 0 || s.height == 0 || s.width == 0)
            return; // empty output, nothing to compute
        if (char const* err = smsr::validateSparseBlockShape(s))
            throw NodeError(mWhere + ": " + err);

        // Weights in float32 (float16 ones are converted: ~150 K values, negligible next to the convolutions).
        float const* w[smsr::kSparseBlockLayers + 2];
        std::vector<float> converted[smsr::kSparseBlockLayers + 2];
        for (int j = 0; j < smsr::kSparseBlockLayers + 2; ++j)
        {
            Ort::ConstValue const& v = in[2 + j];
            if constexpr (Half)
            {
                size_t const n = v.GetTensorTypeAndShapeInfo().GetElementCount();
                converted[j].resize(n);
                smsr::cpu::halfToFloat(reinterpret_cast<uint16_t const*>(v.GetTensorRawData()), converted[j].data(), n);
                w[j] = converted[j].data();
            }
            else
                w[j] = v.GetTensorData<float>();
        }

        // Workspace from the session's CPU allocator (an arena: no page faults on every call).
        smsr::cpu::IoType const io = Half ? smsr::cpu::IoType::kFloat16 : smsr::cpu::IoType::kFloat32;
        size_t const wsSize = smsr::cpu::sparseBlockWorkspaceSize(s, io);
        Ort::MemoryInfo memInfo = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
        OrtMemoryInfo const* memInfoPtr = memInfo;
        OrtAllocator* alloc = ctx.GetAllocator(*memInfoPtr);
        if (!alloc)
            throw std::runtime_error("ONNX Runtime returned no CPU allocator");
        auto releaseAlloc = [this](OrtAllocator* a) { mApi.ReleaseAllocator(a); };
        std::unique_ptr<OrtAllocator, decltype(releaseAlloc)> allocGuard(alloc, releaseAlloc);
        auto freeWs = [alloc](void* p) { alloc->Free(alloc, p); };
        std::unique_ptr<void, decltype(freeWs)> ws(alloc->Alloc(alloc, wsSize), freeWs);
        if (!ws)
            throw std::runtime_error("cannot allocate the " + std::to_string(wsSize >> 20) + " MiB workspace");

        OrtRunner runner(ctx);

        float const* weights[smsr::kSparseBlockLayers] = {w[0], w[1], w[2], w[3]};
        smsr::cpu::sparseBlockForwardEx(s, io,
            in[0].GetTensorRawData(), in[1].GetTensorRawData(), weights, w[4], w[5], out.GetTensorMutableRawData(),
            runner, ws.get(), wsSize);
    }

    OrtApi const& mApi;
    std::string mWhere;
    Attributes mAttr;
};

template <bool Half>
struct SparseBlockOp : Ort::CustomOpBase<SparseBlockOp<Half>, SparseBlockKernel<Half>, /*WithStatus=*/true>
{
    OrtStatusPtr CreateKernelV2(OrtApi const& api, OrtKernelInfo const* info, void** kernel) const noexcept
    {
        return createKernel<SparseBlockKernel<Half>>(api, info, kernel, kOpName);
    }
    char const* GetName() const { return kOpName; }
    char const* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
    size_t GetInputTypeCount() const { return kNumInputs; }
    ONNXTensorElementDataType GetInputType(size_t) const
    {
        return Half ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    }
    size_t GetOutputTypeCount() const { return 1; }
    ONNXTensorElementDataType GetOutputType(size_t) const { return GetInputType(0); }
};

// ---- INT8 variant (issue 14): x int8, weights int8 codes, mask / bc / y of type T, scales as attributes -------------

std::string typeName(ONNXTensorElementDataType t)
{
    switch (t)
    {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return "int8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "float64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
    default: return "ONNX type " + std::to_string(int(t));
    }
}

//! A float attribute; a clear message when it is missing or not a float.
float readFloatAttribute(OrtApi const& api, OrtKernelInfo const* info, char const* name, char const* meaning,
    std::string const& where)
{
    float v = 0.F;
    if (OrtStatus* st = api.KernelInfoGetAttribute_float(info, name, &v))
    {
        api.ReleaseStatus(st);
        throw NodeError(where + ": missing float attribute '" + name + "' (" + meaning + ")");
    }
    return v;
}

std::vector<float> readFloatsAttribute(OrtApi const& api, OrtKernelInfo const* info, char const* name,
    std::string const& meaning, std::string const& where)
{
    size_t size = 0;
    if (OrtStatus* st = api.KernelInfoGetAttributeArray_float(info, name, nullptr, &size))
    {
        api.ReleaseStatus(st);
        throw NodeError(where + ": missing floats attribute '" + name + "' (" + meaning + ")");
    }
    std::vector<float> v(size);
    if (size > 0)
        if (OrtStatus* st = api.KernelInfoGetAttributeArray_float(info, name, v.data(), &size))
        {
            std::string msg = api.GetErrorMessage(st);
            api.ReleaseStatus(st);
            throw NodeError(where + ": cannot read attribute '" + name + "': " + msg);
        }
    return v;
}

//! "attribute 'name' has n values, expected m (what)" unless the counts agree.
void checkCount(std::vector<float> const& v, size_t expected, char const* name, std::string const& what,
    std::string const& where)
{
    if (v.size() != expected)
        throw NodeError(where + ": attribute '" + name + "' has " + std::to_string(v.size()) + " values, expected "
            + std::to_string(expected) + " (" + what + ")");
}

std::string floatString(float v)
{
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%g", double(v));
    return buf;
}

//! The first scale that is not finite and > 0, as "attribute 'name'[i] = v" ("" when all are fine).
std::string firstBadScale(std::vector<float> const& v, char const* name)
{
    for (size_t i = 0; i < v.size(); ++i)
        if (!(std::isfinite(v[i]) && v[i] > 0.F))
            return std::string("attribute '") + name + "'[" + std::to_string(i) + "] = " + floatString(v[i]);
    return "";
}

template <bool Half>
struct SparseBlockInt8Kernel
{
    SparseBlockInt8Kernel(OrtApi const& api, OrtKernelInfo const* info) : mApi(api)
    {
        Ort::ConstKernelInfo ki(info);
        mWhere = nodeWhere(ki, " (INT8)");
        mAttr = readChannelSplit(api, info, mWhere);
        if (ki.GetInputCount() != kNumInputs)
            throw NodeError(mWhere + ": has " + std::to_string(ki.GetInputCount())
                + " inputs, expected 8 (x, mask, w0, w1, w2, w3, wc, bc)");
        mXScale = readFloatAttribute(api, info, "x_scale", "the scale of x's QuantizeLinear node", mWhere);
        mFeature = readFloatsAttribute(api, info, "feature_scales", "4 floats, the scale of each layer's ReLU output codes",
            mWhere);
        checkCount(mFeature, smsr::kSparseBlockLayers, "feature_scales", "one per layer", mWhere);
        int64_t sumCout = 0;
        for (int l = 0; l < smsr::kSparseBlockLayers; ++l)
            sumCout += mAttr.dense[l] + mAttr.sparse[l];
        mWeight = readFloatsAttribute(api, info, "weight_scales",
            "sum of D_l+S_l floats: per-output-channel scales of w0..w3", mWhere);
        checkCount(mWeight, size_t(sumCout), "weight_scales",
            "sum of dense_channels + sparse_channels: one per output channel of w0..w3", mWhere);
        mCollect = readFloatsAttribute(api, info, "collect_scales", "C floats: per-output-channel scales of wc", mWhere);
        // every scale finite and > 0 (the contract's check; the message names the first bad value)
        smsr::SparseBlockShape s = shapeFromX({1, int64_t(mCollect.size()), 1, 1}, mAttr, mWhere);
        if (char const* err = smsr::validateSparseBlockInt8Scales(s, scales()))
        {
            std::string bad = std::isfinite(mXScale) && mXScale > 0.F ? "" : "attribute 'x_scale' = " + floatString(mXScale);
            for (auto [v, name] : {std::pair{&mFeature, "feature_scales"}, {&mWeight, "weight_scales"},
                     {&mCollect, "collect_scales"}})
                if (bad.empty())
                    bad = firstBadScale(*v, name);
            std::string msg = err;
            std::string const prefix = "SMSRSparseBlock INT8: "; // already said by mWhere
            if (msg.rfind(prefix, 0) == 0)
                msg.erase(0, prefix.size());
            throw NodeError(mWhere + ": " + msg + (bad.empty() ? "" : " (got " + bad + ")"));
        }
        try
        {
            std::vector<std::vector<int64_t>> shapes;
            for (size_t i = 0; i < kNumInputs; ++i)
                shapes.push_back(ki.GetInputTypeInfo(i).GetTensorTypeAndShapeInfo().GetShape());
            smsr::SparseBlockShape xs = shapes[0].empty() ? smsr::SparseBlockShape{} : shapeFromX(shapes[0], mAttr, mWhere);
            for (size_t i = 2; i <= 6; ++i)
                checkInt8(i, ki.GetInputTypeInfo(i).GetTensorTypeAndShapeInfo().GetElementType());
            if (xs.channels > 0)
            {
                checkCollectCount(xs);
                for (size_t i = 1; i < kNumInputs; ++i)
                    checkShape(xs, i, shapes[i], mWhere, /*partial=*/true);
            }
        }
        catch (Ort::Exception const&)
        {
            // type info unavailable: shapes are checked in Compute
        }
    }

    smsr::SparseBlockInt8Scales scales() const
    {
        smsr::SparseBlockInt8Scales q;
        q.x = mXScale;
        size_t off = 0;
        for (int l = 0; l < smsr::kSparseBlockLayers; ++l)
        {
            q.feature[l] = mFeature.size() == smsr::kSparseBlockLayers ? mFeature[l] : 0.F;
            q.weight[l] = mWeight.data() + off;
            off += size_t(mAttr.dense[l] + mAttr.sparse[l]);
        }
        q.collect = mCollect.data();
        return q;
    }

    void checkInt8(size_t i, ONNXTensorElementDataType t) const
    {
        if (t != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8)
            throw NodeError(mWhere + ": input " + std::to_string(i) + " (" + kInputNames[i] + ") has element type "
                + typeName(t) + ", expected int8 weight codes (x is int8, so this is the INT8 variant of the op, "
                + "which takes quantized weights)");
    }

    void checkCollectCount(smsr::SparseBlockShape const& s) const
    {
        checkCount(mCollect, size_t(s.channels), "collect_scales", "C = x's channels: one per output channel of wc",
            mWhere);
    }

    OrtStatusPtr ComputeV2(OrtKernelContext* context) noexcept
    {
        return guardedCompute(mApi, mWhere, [&] { compute(context); });
    }

    void compute(OrtKernelContext* context)
    {
        Ort::KernelContext ctx(context);
        std::vector<Ort::ConstValue> in;
        std::vector<std::vector<int64_t>> shapes;
        readInputs(ctx, mWhere, in, shapes);
        smsr::SparseBlockShape s = shapeFromX(shapes[0], mAttr, mWhere);
        for (int64_t d : shapes[0])
            if (d > INT32_MAX)
                throw NodeError(mWhere + ": x has a dimension above 2^31-1: " + shapeString(shapes[0]));
        for (size_t i = 1; i < kNumInputs; ++i)
            checkShape(s, i, shapes[i], mWhere, /*partial=*/false);
        checkCollectCount(s);
        for (size_t i = 2; i <= 6; ++i)
            checkInt8(i, in[i].GetTensorTypeAndShapeInfo().GetElementType());
        Ort::UnownedValue out = ctx.GetOutput(0, shapes[0]);
        if (s.batch == 0 || s.height == 0 || s.width == 0)
            return;
        if (char const* err = smsr::validateSparseBlockShape(s))
            throw NodeError(mWhere + ": " + err);

        int8_t const* w[smsr::kSparseBlockLayers + 1];
        for (int j = 0; j <= smsr::kSparseBlockLayers; ++j)
            w[j] = in[2 + j].GetTensorData<int8_t>();
        std::vector<float> bias(size_t(s.channels));
        if constexpr (Half)
            smsr::cpu::halfToFloat(reinterpret_cast<uint16_t const*>(in[7].GetTensorRawData()), bias.data(), bias.size());
        else
            std::copy_n(in[7].GetTensorData<float>(), bias.size(), bias.begin());

        size_t const wsSize = smsr::cpu::sparseBlockInt8WorkspaceSize(s);
        Ort::MemoryInfo memInfo = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
        OrtMemoryInfo const* memInfoPtr = memInfo;
        OrtAllocator* alloc = ctx.GetAllocator(*memInfoPtr);
        if (!alloc)
            throw std::runtime_error("ONNX Runtime returned no CPU allocator");
        auto releaseAlloc = [this](OrtAllocator* a) { mApi.ReleaseAllocator(a); };
        std::unique_ptr<OrtAllocator, decltype(releaseAlloc)> allocGuard(alloc, releaseAlloc);
        auto freeWs = [alloc](void* p) { alloc->Free(alloc, p); };
        std::unique_ptr<void, decltype(freeWs)> ws(alloc->Alloc(alloc, wsSize), freeWs);
        if (!ws)
            throw std::runtime_error("cannot allocate the " + std::to_string(wsSize >> 20) + " MiB workspace");
        OrtRunner runner(ctx);
        smsr::cpu::sparseBlockForwardInt8(s, Half ? smsr::cpu::IoType::kFloat16 : smsr::cpu::IoType::kFloat32,
            in[0].GetTensorData<int8_t>(), in[1].GetTensorRawData(), w, w[4], bias.data(), scales(),
            out.GetTensorMutableRawData(), runner, ws.get(), wsSize);
    }

    OrtApi const& mApi;
    std::string mWhere;
    Attributes mAttr;
    float mXScale{0.F};
    std::vector<float> mFeature, mWeight, mCollect;
};

//! Input types of the INT8 variant: x and the five weights int8, mask and bc T.
template <bool Half>
struct SparseBlockInt8Op
    : Ort::CustomOpBase<SparseBlockInt8Op<Half>, SparseBlockInt8Kernel<Half>, /*WithStatus=*/true>
{
    OrtStatusPtr CreateKernelV2(OrtApi const& api, OrtKernelInfo const* info, void** kernel) const noexcept
    {
        return createKernel<SparseBlockInt8Kernel<Half>>(api, info, kernel, "SMSRSparseBlock (INT8)");
    }
    char const* GetName() const { return kOpName; }
    char const* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
    size_t GetInputTypeCount() const { return kNumInputs; }
    ONNXTensorElementDataType GetInputType(size_t i) const
    {
        if (i == 1 || i == 7)
            return Half ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
        if (i == 0)
            return ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8;
        // weights: any type here, so that float weights beside an int8 x reach the kernel's clear message
        // (ONNX Runtime's own is "no kernel def matches node inputs")
        return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    }
    size_t GetOutputTypeCount() const { return 1; }
    ONNXTensorElementDataType GetOutputType(size_t) const
    {
        return Half ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    }
};

struct Registry
{
    SparseBlockOp<false> opFloat;
    SparseBlockOp<true> opHalf;
    SparseBlockInt8Op<false> opInt8Float;
    SparseBlockInt8Op<true> opInt8Half;
    Ort::CustomOpDomain domain{kDomain};
    Registry()
    {
        domain.Add(&opFloat);
        domain.Add(&opHalf);
        domain.Add(&opInt8Float);
        domain.Add(&opInt8Half);
    }
};

} // namespace

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL RegisterCustomOps(
    OrtSessionOptions* options, OrtApiBase const* apiBase)
{
    OrtApi const* api = apiBase->GetApi(ORT_API_VERSION);
    if (api == nullptr)
    {
        // Version 1 of the API exists in every onnxruntime: use it to report the problem.
        OrtApi const* api1 = apiBase->GetApi(1);
        std::string const msg = std::string("libsmsr_ort_ops: this onnxruntime (") + apiBase->GetVersionString()
            + ") is too old: the SMSRSparseBlock op needs onnxruntime >= 1.21 (C API " + std::to_string(ORT_API_VERSION)
            + ")";
        if (api1)
            return api1->CreateStatus(ORT_FAIL, msg.c_str());
        std::fprintf(stderr, "%s\n", msg.c_str());
        return nullptr;
    }
    Ort::InitApi(api);
    try
    {
        // Ops and domain must outlive every session that uses them: keep them for the process.
        static Registry* registry = new Registry();
        Ort::UnownedSessionOptions(options).Add(registry->domain);
        return nullptr;
    }
    catch (std::exception const& e)
    {
        return api->CreateStatus(ORT_FAIL, (std::string("libsmsr_ort_ops: registration failed: ") + e.what()).c_str());
    }
}

//! The INT8 inner loops this process uses now ("AVX-512 VNNI" or "plain C++"; SMSR_CPU_PATH=plain forces the
//! plain ones): lets tests and benchmarks check which path they measured (ctypes).
extern "C" __attribute__((visibility("default"))) char const* SmsrCpuInt8Path()
{
    try
    {
        static thread_local std::string desc;
        desc = smsr::cpu::computeDescriptionInt8();
        return desc.c_str();
    }
    catch (...)
    {
        return "unknown";
    }
}

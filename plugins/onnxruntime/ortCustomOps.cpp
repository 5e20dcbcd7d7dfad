/*
 * ONNX Runtime adapter of the CPU SMSRSparseBlock op: domain "smsr", float32 and float16 kernels.
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

template <bool Half>
struct SparseBlockKernel
{
    SparseBlockKernel(OrtApi const& api, OrtKernelInfo const* info) : mApi(api)
    {
        Ort::ConstKernelInfo ki(info);
        std::string name;
        try
        {
            name = ki.GetNodeName();
        }
        catch (...)
        {
        }
        mWhere = std::string(kOpName) + " node '" + name + "'";
        for (char const* attr : {"dense_channels", "sparse_channels"})
        {
            std::vector<int64_t> v = readIntsAttribute(api, info, attr, mWhere);
            if (v.size() != smsr::kSparseBlockLayers)
                throw NodeError(mWhere + ": attribute '" + attr + "' has " + std::to_string(v.size())
                    + " values, expected 4 (one per layer)");
            for (int l = 0; l < smsr::kSparseBlockLayers; ++l)
            {
                if (v[l] < 0 || v[l] > 65536)
                    throw NodeError(mWhere + ": attribute '" + attr + "'[" + std::to_string(l) + "] = "
                        + std::to_string(v[l]) + " is out of range");
                (attr[0] == 'd' ? mAttr.dense : mAttr.sparse)[l] = int32_t(v[l]);
            }
        }
        for (int l = 0; l < smsr::kSparseBlockLayers; ++l)
            if (mAttr.dense[l] + mAttr.sparse[l] < 1)
                throw NodeError(mWhere + ": layer " + std::to_string(l)
                    + " has no output channels (dense_channels + sparse_channels must be >= 1)");
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

    smsr::SparseBlockShape shapeFrom(std::vector<int64_t> const& xs) const
    {
        if (xs.size() != 4)
            throw NodeError(mWhere + ": input 0 (x) must be 4-D N x C x H x W, got " + shapeString(xs));
        smsr::SparseBlockShape s;
        s.batch = int32_t(xs[0]);
        s.channels = int32_t(xs[1]);
        s.height = int32_t(xs[2]);
        s.width = int32_t(xs[3]);
        for (int l = 0; l < smsr::kSparseBlockLayers; ++l)
        {
            s.dense[l] = mAttr.dense[l];
            s.sparse[l] = mAttr.sparse[l];
        }
        return s;
    }

    OrtStatusPtr ComputeV2(OrtKernelContext* context) noexcept
    {
        try
        {
            compute(context);
            return nullptr;
        }
        catch (NodeError const& e)
        {
            return mApi.CreateStatus(ORT_INVALID_ARGUMENT, e.what());
        }
        catch (std::invalid_argument const& e)
        {
            return mApi.CreateStatus(ORT_INVALID_ARGUMENT, (mWhere + ": " + e.what()).c_str());
        }
        catch (std::exception const& e)
        {
            return mApi.CreateStatus(ORT_FAIL, (mWhere + ": " + e.what()).c_str());
        }
        catch (...)
        {
            return mApi.CreateStatus(ORT_FAIL, (mWhere + ": unknown error").c_str());
        }
    }

    void compute(OrtKernelContext* context)
    {
        Ort::KernelContext ctx(context);
        if (ctx.GetInputCount() != kNumInputs)
            throw NodeError(mWhere + ": got " + std::to_string(ctx.GetInputCount()) + " inputs, expected 8");
        std::vector<Ort::ConstValue> in;
        std::vector<std::vector<int64_t>> shapes;
        for (size_t i = 0; i < kNumInputs; ++i)
        {
            in.push_back(ctx.GetInput(i));
            if (!in.back())
                throw NodeError(mWhere + ": input " + std::to_string(i) + " (" + kInputNames[i] + ") is missing");
            shapes.push_back(in.back().GetTensorTypeAndShapeInfo().GetShape());
        }
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

        struct OrtRunner final : smsr::cpu::ParallelRunner
        {
            Ort::KernelContext& ctx;
            explicit OrtRunner(Ort::KernelContext& c) : ctx(c) {}
            void run(size_t total, void (*fn)(void*, size_t), void* data) override
            {
                if (total == 1)
                    fn(data, 0);
                else
                    ctx.ParallelFor(fn, total, 0, data); // ONNX Runtime's intra-op pool, dynamic scheduling
            }
        } runner(ctx);

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
        try
        {
            *kernel = new SparseBlockKernel<Half>(api, info);
            return nullptr;
        }
        catch (NodeError const& e)
        {
            return api.CreateStatus(ORT_INVALID_ARGUMENT, e.what());
        }
        catch (std::exception const& e)
        {
            return api.CreateStatus(ORT_FAIL, (std::string(kOpName) + ": " + e.what()).c_str());
        }
        catch (...)
        {
            return api.CreateStatus(ORT_FAIL, "SMSRSparseBlock: unknown error while creating the kernel");
        }
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

struct Registry
{
    SparseBlockOp<false> opFloat;
    SparseBlockOp<true> opHalf;
    Ort::CustomOpDomain domain{kDomain};
    Registry()
    {
        domain.Add(&opFloat);
        domain.Add(&opHalf);
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

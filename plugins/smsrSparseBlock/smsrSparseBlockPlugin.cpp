#include "smsrSparseBlockPlugin.h"

#include "kernels/sparseBlockKernels.h"
#include "pluginLogging.h"

#include <atomic>
#include <new>

namespace smsr
{
namespace plugin
{

using namespace nvinfer1;

namespace
{

std::atomic<int64_t> gLivePlugins{0};

std::string prefix(std::string const& layer)
{
    return std::string(kPLUGIN_NAME) + " '" + layer + "': ";
}

std::string joinInts(int32_t const* v)
{
    std::string s;
    for (int32_t l = 0; l < kSparseBlockLayers; ++l)
        s += (l ? "," : "") + std::to_string(v[l]);
    return s;
}

//! "" when the kernel library accepts the shape (validateSparseBlockShape + its per-call pixel limit), else why.
//! Checked on the profile's largest shape at build time: past the limit the workspace size would be 0 and every
//! enqueue would fail with an unexplained cudaErrorInvalidValue.
std::string checkKernelShape(SparseBlockShape const& shape)
{
    char const* const msg = validateSparseBlockShape(shape);
    if (msg != nullptr)
        return msg;
    size_t const pixels = size_t(shape.batch) * size_t(shape.height) * size_t(shape.width);
    if (pixels > kMaxSparseBlockPixels)
        return "SMSRSparseBlock: N*H*W = " + std::to_string(pixels) + " pixels exceeds the kernel library's limit of "
            + "2^30 = " + std::to_string(kMaxSparseBlockPixels) + " pixels per call (int32 pixel indices): lower the "
            + "batch or the largest image of the profile, or tile the image";
    return std::string();
}

} // namespace

// ---------------------------------------------------------------------------------------------------------------
// Plugin

SMSRSparseBlockPlugin::SMSRSparseBlockPlugin(std::string layerName, BlockConfig const& cfg)
    : mLayerName(std::move(layerName))
    , mCfg(cfg)
    , mMetadata(std::string("dense_channels=") + joinInts(cfg.dense) + " sparse_channels=" + joinInts(cfg.sparse))
{
    ++gLivePlugins;
}

SMSRSparseBlockPlugin::SMSRSparseBlockPlugin(SMSRSparseBlockPlugin const& other)
    : IPluginV3(other)
    , IPluginV3OneCore(other)
    , IPluginV3OneBuild(other)
    , IPluginV3OneRuntime(other)
    , mLayerName(other.mLayerName)
    , mCfg(other.mCfg)
    , mMetadata(other.mMetadata)
    , mRecorder(other.mRecorder)
{
    // mSerialFields point into the object that owns them: rebuilt on demand, never copied.
    ++gLivePlugins;
}

SMSRSparseBlockPlugin::~SMSRSparseBlockPlugin()
{
    --gLivePlugins;
}

int64_t SMSRSparseBlockPlugin::liveObjects() noexcept
{
    return gLivePlugins.load();
}

void SMSRSparseBlockPlugin::fail(std::string const& msg) const noexcept
{
    try
    {
        reportError(prefix(mLayerName) + msg, mRecorder);
    }
    catch (...)
    {
        logMessage(ILogger::Severity::kERROR, "SMSRSparseBlock: error (out of memory while formatting the message)");
    }
}

IPluginCapability* SMSRSparseBlockPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* SMSRSparseBlockPlugin::clone() noexcept
{
    try
    {
        return new SMSRSparseBlockPlugin(*this);
    }
    catch (...)
    {
        fail("clone failed (out of memory)");
        return nullptr;
    }
}

int32_t SMSRSparseBlockPlugin::getOutputDataTypes(
    nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    try
    {
        if (outputTypes == nullptr || nbOutputs != kNB_OUTPUTS)
        {
            fail("expects 1 output, got " + std::to_string(nbOutputs));
            return -1;
        }
        std::string const err = checkInputTypes(inputTypes, nbInputs);
        if (!err.empty())
        {
            fail(err);
            return -1;
        }
        outputTypes[0] = inputTypes[kIN_X];
        return 0;
    }
    catch (...)
    {
        fail("getOutputDataTypes failed");
        return -1;
    }
}

int32_t SMSRSparseBlockPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
    DimsExprs const* /*shapeInputs*/, int32_t nbShapeInputs, DimsExprs* outputs, int32_t nbOutputs,
    IExprBuilder& /*exprBuilder*/) noexcept
{
    try
    {
        if (inputs == nullptr || outputs == nullptr || nbOutputs != kNB_OUTPUTS || nbShapeInputs != 0)
        {
            fail("expects 1 output and no shape inputs, got " + std::to_string(nbOutputs) + " outputs and "
                + std::to_string(nbShapeInputs) + " shape inputs");
            return -1;
        }
        if (nbInputs != kNB_INPUTS)
        {
            fail("expects 8 inputs (x, mask, w0, w1, w2, w3, wc, bc), got " + std::to_string(nbInputs));
            return -1;
        }
        // Check what is known at build time (weights are constants, N/H/W usually not).
        Dims known[kNB_INPUTS];
        for (int32_t i = 0; i < kNB_INPUTS; ++i)
        {
            int32_t const rank = inputs[i].nbDims;
            if (rank < 0 || rank > Dims::MAX_DIMS)
            {
                fail(std::string(inputName(i)) + " has invalid rank " + std::to_string(rank));
                return -1;
            }
            known[i].nbDims = rank;
            for (int32_t d = 0; d < rank; ++d)
            {
                IDimensionExpr const* e = inputs[i].d[d];
                known[i].d[d] = e != nullptr && e->isConstant() ? e->getConstantValue() : -1;
            }
        }
        std::string const err = checkInputDims(known, kNB_INPUTS, mCfg);
        if (!err.empty())
        {
            fail(err);
            return -1;
        }
        outputs[0] = inputs[kIN_X]; // y has x's shape
        return 0;
    }
    catch (...)
    {
        fail("getOutputShapes failed");
        return -1;
    }
}

bool SMSRSparseBlockPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS || pos < 0 || pos >= nbInputs + nbOutputs)
        return false;
    PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != nvinfer1::TensorFormat::kLINEAR)
        return false;
    if (pos == 0)
        return d.type == nvinfer1::DataType::kFLOAT || d.type == nvinfer1::DataType::kHALF;
    return d.type == inOut[0].desc.type; // every input and the output share x's type
}

int32_t SMSRSparseBlockPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        if (in == nullptr || out == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS)
        {
            fail("expects 8 inputs and 1 output, got " + std::to_string(nbInputs) + " and " + std::to_string(nbOutputs));
            return -1;
        }
        nvinfer1::DataType types[kNB_INPUTS];
        Dims dims[kNB_INPUTS];
        for (int32_t i = 0; i < kNB_INPUTS; ++i)
        {
            types[i] = in[i].desc.type;
            dims[i] = in[i].desc.dims;
        }
        std::string err = checkInputTypes(types, nbInputs);
        if (err.empty())
            err = checkInputDims(dims, nbInputs, mCfg);
        if (err.empty() && out[0].desc.type != types[kIN_X])
            err = std::string("output y has type ") + typeName(out[0].desc.type) + " but x has type "
                + typeName(types[kIN_X]);
        if (err.empty())
        {
            // The largest shape of the profile must be one the kernels accept.
            std::string const msg = checkKernelShape(makeShape(in[kIN_X].max, mCfg));
            if (!msg.empty())
                err = msg + " (largest x of the profile: " + dimsString(in[kIN_X].max) + ")";
        }
        if (!err.empty())
        {
            fail(err);
            return -1;
        }
        return 0;
    }
    catch (...)
    {
        fail("configurePlugin failed");
        return -1;
    }
}

size_t SMSRSparseBlockPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    if (inputs == nullptr || nbInputs != kNB_INPUTS)
        return 0;
    smsr::DataType type{};
    if (!toKernelType(inputs[kIN_X].desc.type, type))
        return 0;
    // Sized for the largest shape of the profile; enqueue asks again for the actual shape.
    SparseBlockShape const shape = makeShape(inputs[kIN_X].max, mCfg);
    try
    {
        // configurePlugin rejects such a profile first; say why here too rather than return 0 silently.
        std::string const err = checkKernelShape(shape);
        if (!err.empty())
        {
            fail(err + " (largest x of the profile: " + dimsString(inputs[kIN_X].max) + ")");
            return 0;
        }
    }
    catch (...)
    {
        return 0;
    }
    return getSparseBlockWorkspaceSize(shape, type);
}

std::string SMSRSparseBlockPlugin::checkRuntime(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) const
{
    if (in == nullptr || out == nullptr || nbInputs != kNB_INPUTS || nbOutputs != kNB_OUTPUTS)
        return "expects 8 inputs and 1 output, got " + std::to_string(nbInputs) + " and " + std::to_string(nbOutputs);
    nvinfer1::DataType types[kNB_INPUTS];
    Dims dims[kNB_INPUTS];
    for (int32_t i = 0; i < kNB_INPUTS; ++i)
    {
        types[i] = in[i].type;
        dims[i] = in[i].dims;
        if (in[i].format != nvinfer1::TensorFormat::kLINEAR)
            return std::string(inputName(i)) + " is not in linear format";
    }
    std::string err = checkInputTypes(types, nbInputs);
    if (err.empty())
        err = checkInputDims(dims, nbInputs, mCfg);
    if (!err.empty())
        return err;
    if (out[0].type != types[kIN_X] || out[0].format != nvinfer1::TensorFormat::kLINEAR)
        return "output y must be linear " + std::string(typeName(types[kIN_X]));
    for (int32_t i = 0; i < 4; ++i)
        if (out[0].dims.nbDims != 4 || out[0].dims.d[i] != dims[kIN_X].d[i])
            return "output y has shape " + dimsString(out[0].dims) + ", expected x's " + dimsString(dims[kIN_X]);
    return checkKernelShape(makeShape(dims[kIN_X], mCfg));
}

int32_t SMSRSparseBlockPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        std::string const err = checkRuntime(in, nbInputs, out, nbOutputs);
        if (!err.empty())
        {
            fail(err);
            return -1;
        }
        return 0;
    }
    catch (...)
    {
        fail("onShapeChange failed");
        return -1;
    }
}

int32_t SMSRSparseBlockPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    try
    {
        // Cheap on success (no allocation): guards the kernels against shapes they were not configured for.
        std::string const err = checkRuntime(inputDesc, kNB_INPUTS, outputDesc, kNB_OUTPUTS);
        if (!err.empty())
        {
            fail(err);
            return -1;
        }
        if (inputs == nullptr || outputs == nullptr)
        {
            fail("enqueue called without tensor pointers");
            return -1;
        }
        smsr::DataType type{};
        toKernelType(inputDesc[kIN_X].type, type); // checked by checkRuntime
        SparseBlockShape const shape = makeShape(inputDesc[kIN_X].dims, mCfg);
        SparseBlockTensors t{};
        t.x = inputs[kIN_X];
        t.mask = inputs[kIN_MASK];
        for (int32_t l = 0; l < kSparseBlockLayers; ++l)
            t.weights[l] = inputs[kIN_W0 + l];
        t.collectWeight = inputs[kIN_WC];
        t.collectBias = inputs[kIN_BC];
        t.y = outputs[0];
        // The workspace TensorRT gives is sized for the profile's largest shape, so it covers this one.
        size_t const wsSize = getSparseBlockWorkspaceSize(shape, type);
        cudaError_t const status = enqueueSparseBlock(shape, type, t, workspace, wsSize, stream);
        if (status != cudaSuccess)
        {
            fail(std::string("kernel library launch failed: ") + cudaGetErrorName(status) + " ("
                + cudaGetErrorString(status) + ") for x " + dimsString(inputDesc[kIN_X].dims) + " "
                + typeName(inputDesc[kIN_X].type) + ", workspace " + std::to_string(wsSize) + " bytes");
            return -1;
        }
        return 0;
    }
    catch (...)
    {
        fail("enqueue failed");
        return -1;
    }
}

IPluginV3* SMSRSparseBlockPlugin::attachToContext(IPluginResourceContext* context) noexcept
{
    try
    {
        auto* p = new SMSRSparseBlockPlugin(*this);
        // Runtime errors of this execution context also go to its error recorder.
        p->mRecorder = context != nullptr ? context->getErrorRecorder() : nullptr;
        return p;
    }
    catch (...)
    {
        fail("attachToContext failed (out of memory)");
        return nullptr;
    }
}

PluginFieldCollection const* SMSRSparseBlockPlugin::getFieldsToSerialize() noexcept
{
    try
    {
        // The same fields the creator reads: serialize -> createPlugin(kRUNTIME) round-trips exactly.
        mSerialFields.clear();
        mSerialFields.emplace_back(kFIELD_DENSE, mCfg.dense, PluginFieldType::kINT32, kSparseBlockLayers);
        mSerialFields.emplace_back(kFIELD_SPARSE, mCfg.sparse, PluginFieldType::kINT32, kSparseBlockLayers);
        mSerialFC.nbFields = static_cast<int32_t>(mSerialFields.size());
        mSerialFC.fields = mSerialFields.data();
        return &mSerialFC;
    }
    catch (...)
    {
        fail("getFieldsToSerialize failed (out of memory)");
        return nullptr;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Creator

SMSRSparseBlockPluginCreator::SMSRSparseBlockPluginCreator()
{
    mFields.emplace_back(kFIELD_DENSE, nullptr, PluginFieldType::kINT32, kSparseBlockLayers);
    mFields.emplace_back(kFIELD_SPARSE, nullptr, PluginFieldType::kINT32, kSparseBlockLayers);
    mFieldNames.nbFields = static_cast<int32_t>(mFields.size());
    mFieldNames.fields = mFields.data();
}

IPluginV3* SMSRSparseBlockPluginCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, TensorRTPhase phase) noexcept
{
    try
    {
        std::string const layer = name != nullptr ? name : "";
        BlockConfig cfg{};
        std::string warnings;
        std::string const err = parseFields(fc, cfg, warnings);
        if (!warnings.empty())
            logWarning(prefix(layer) + warnings);
        if (!err.empty())
        {
            reportError(prefix(layer) + err
                + (phase == TensorRTPhase::kRUNTIME ? " (while deserializing the engine)" : ""));
            return nullptr;
        }
        return new SMSRSparseBlockPlugin(layer, cfg);
    }
    catch (...)
    {
        reportError("SMSRSparseBlock: createPlugin failed (out of memory)");
        return nullptr;
    }
}

} // namespace plugin
} // namespace smsr

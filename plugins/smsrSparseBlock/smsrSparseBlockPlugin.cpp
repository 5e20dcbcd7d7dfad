#include "smsrSparseBlockPlugin.h"

#include "kernels/sparseBlockKernels.h"
#include "pluginLogging.h"

#include <atomic>
#include <cstdlib>
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

//! Channels-last FP16 I/O (TensorRT kHWC8 with C % 8 == 0 is exactly N x H x W x C) or linear (NCHW).
bool isChannelsLast(nvinfer1::TensorFormat f) { return f == nvinfer1::TensorFormat::kHWC8; }

//! The kernel shape for x's dims and I/O format.
SparseBlockShape kernelShape(Dims const& x, BlockConfig const& cfg, nvinfer1::TensorFormat f)
{
    SparseBlockShape s = makeShape(x, cfg);
    s.format = isChannelsLast(f) ? smsr::TensorFormat::kNHWC : smsr::TensorFormat::kNCHW;
    return s;
}

std::string metadata(BlockConfig const& cfg)
{
    std::string s = std::string("dense_channels=") + joinInts(cfg.dense) + " sparse_channels=" + joinInts(cfg.sparse);
    if (cfg.int8)
        s += " int8 x_scale=" + std::to_string(cfg.xScale);
    return s;
}

//! SMSR_PLUGIN_TRACE=1: one INFO line per configurePlugin with the descriptors TensorRT chose (types, formats,
//! profile dims), so tests and users can see from the build what the plugin layer really got (e.g. INT8 inputs).
bool traceEnabled()
{
    char const* v = std::getenv("SMSR_PLUGIN_TRACE");
    return v != nullptr && v[0] != '\0' && std::string(v) != "0";
}

char const* formatName(nvinfer1::TensorFormat f)
{
    switch (f)
    {
    case nvinfer1::TensorFormat::kLINEAR: return "LINEAR";
    case nvinfer1::TensorFormat::kHWC8: return "HWC8";
    default: return "OTHER";
    }
}

std::string traceLine(std::string const& layer, DynamicPluginTensorDesc const* in, DynamicPluginTensorDesc const* out)
{
    std::string s = std::string("SMSR_PLUGIN_TRACE configurePlugin '") + layer + "':";
    for (int32_t i = 0; i <= kNB_INPUTS; ++i)
    {
        DynamicPluginTensorDesc const& d = i < kNB_INPUTS ? in[i] : out[0];
        s += std::string(" ") + (i < kNB_INPUTS ? inputName(i) : "y") + "=" + typeName(d.desc.type) + "/"
            + formatName(d.desc.format) + dimsString(d.max);
    }
    // PluginTensorDesc::scale: TensorRT's implicit-quantization scale (-1 when not set); a strongly typed network
    // with explicit Q/DQ leaves it unset, which is why the INT8 scales travel as fields.
    return s + " x_desc_scale=" + std::to_string(in[kIN_X].desc.scale);
}

bool sameDims(Dims const& a, Dims const& b)
{
    if (a.nbDims != b.nbDims)
        return false;
    for (int32_t i = 0; i < a.nbDims; ++i)
        if (a.d[i] != b.d[i])
            return false;
    return true;
}

} // namespace

// ---------------------------------------------------------------------------------------------------------------
// Plugin

SMSRSparseBlockPlugin::SMSRSparseBlockPlugin(std::string layerName, BlockConfig const& cfg)
    : mLayerName(std::move(layerName))
    , mCfg(cfg)
    , mMetadata(metadata(cfg))
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
        std::string const err = checkInputTypes(inputTypes, nbInputs, mCfg);
        if (!err.empty())
        {
            fail(err);
            return -1;
        }
        outputTypes[0] = floatIoType(inputTypes, mCfg); // x's type; the mask's in INT8 mode
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
    PluginTensorDesc const& x = inOut[kIN_X].desc;
    if (mCfg.int8)
    {
        // INT8 mode: x and the weight codes INT8, mask / bc / y one float type; everything linear.
        if (d.format != nvinfer1::TensorFormat::kLINEAR)
            return false;
        if (pos == kIN_X || (pos >= kIN_W0 && pos <= kIN_WC))
            return d.type == nvinfer1::DataType::kINT8;
        if (pos == kIN_MASK)
            return d.type == nvinfer1::DataType::kFLOAT || d.type == nvinfer1::DataType::kHALF;
        return d.type == inOut[kIN_MASK].desc.type; // bc, y
    }
    if (pos == kIN_X)
    {
        if (d.type == nvinfer1::DataType::kFLOAT)
            return d.format == nvinfer1::TensorFormat::kLINEAR;
        if (d.type != nvinfer1::DataType::kHALF)
            return false;
        // FP16 channels-last when C is a whole number of 8-channel groups: no reformat layers between the plugin
        // and FP16 neighbours that prefer HWC8 (the kernels read and write it in place).
        int64_t const c = d.dims.nbDims == 4 ? d.dims.d[1] : -1;
        return d.format == nvinfer1::TensorFormat::kLINEAR || (isChannelsLast(d.format) && c > 0 && c % 8 == 0);
    }
    if (d.type != x.type) // every input and the output share x's type
        return false;
    if (pos == kNB_INPUTS)
        return d.format == x.format; // y is written in x's format
    return d.format == nvinfer1::TensorFormat::kLINEAR; // mask, weights, bias
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
        if (traceEnabled())
            logMessage(ILogger::Severity::kINFO, traceLine(mLayerName, in, out).c_str());
        std::string err = checkInputTypes(types, nbInputs, mCfg);
        if (err.empty())
            err = checkInputDims(dims, nbInputs, mCfg);
        if (err.empty() && out[0].desc.type != floatIoType(types, mCfg))
            err = std::string("output y has type ") + typeName(out[0].desc.type) + " but "
                + (mCfg.int8 ? "mask" : "x") + " has type " + typeName(floatIoType(types, mCfg));
        if (err.empty())
        {
            // The largest shape of the profile must be one the kernels accept.
            std::string const msg = checkKernelShape(makeShape(in[kIN_X].max, mCfg));
            if (!msg.empty())
                err = msg + " (largest x of the profile: " + dimsString(in[kIN_X].max) + ")";
        }
        smsr::DataType ioType{};
        if (err.empty() && mCfg.int8 && toKernelType(in[kIN_MASK].desc.type, ioType)
            && getSparseBlockInt8WorkspaceSize(makeShape(in[kIN_X].max, mCfg), ioType) == 0)
            // The INT8 path has limits of its own (planar I/O, the requantization multipliers of every output
            // channel travel in the kernel parameters): it sizes such a shape 0 and would refuse every enqueue.
            err = "the kernel library's INT8 path does not support this block (at most 256 output channels per "
                  "layer and C <= 256; largest x of the profile: " + dimsString(in[kIN_X].max) + ")";
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
    nvinfer1::DataType const ioType = mCfg.int8 ? inputs[kIN_MASK].desc.type : inputs[kIN_X].desc.type;
    if (!toKernelType(ioType, type))
        return 0;
    // Sized for the largest shape of the profile; enqueue asks again for the actual shape.
    SparseBlockShape const shape = kernelShape(inputs[kIN_X].max, mCfg, inputs[kIN_X].desc.format);
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
    return mCfg.int8 ? getSparseBlockInt8WorkspaceSize(shape, type) : getSparseBlockWorkspaceSize(shape, type);
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
        bool const xHwc8 = i == kIN_X && isChannelsLast(in[i].format) && !mCfg.int8;
        if (in[i].format != nvinfer1::TensorFormat::kLINEAR && !xHwc8)
            return std::string(inputName(i))
                + (i == kIN_X && !mCfg.int8 ? " must be linear or HWC8" : " is not in linear format");
    }
    std::string err = checkInputTypes(types, nbInputs, mCfg);
    if (err.empty())
        err = checkInputDims(dims, nbInputs, mCfg);
    if (!err.empty())
        return err;
    nvinfer1::TensorFormat const fx = in[kIN_X].format;
    if (isChannelsLast(fx) && (types[kIN_X] != nvinfer1::DataType::kHALF || dims[kIN_X].d[1] % 8 != 0))
        return "x in HWC8 format needs FP16 and C % 8 == 0, got " + std::string(typeName(types[kIN_X])) + " C="
            + std::to_string(dims[kIN_X].d[1]);
    nvinfer1::DataType const ioType = floatIoType(types, mCfg);
    if (out[0].type != ioType || out[0].format != fx)
        return std::string("output y must have ") + (mCfg.int8 ? "mask's type and x's format (" : "x's type and format (")
            + typeName(ioType) + (isChannelsLast(fx) ? ", HWC8)" : ", linear)");
    for (int32_t i = 0; i < 4; ++i)
        if (out[0].dims.nbDims != 4 || out[0].dims.d[i] != dims[kIN_X].d[i])
            return "output y has shape " + dimsString(out[0].dims) + ", expected x's " + dimsString(dims[kIN_X]);
    return checkKernelShape(kernelShape(dims[kIN_X], mCfg, fx));
}

bool SMSRSparseBlockPlugin::sameAsValidated(PluginTensorDesc const* in, PluginTensorDesc const* out) const noexcept
{
    return mRun.valid && in[kIN_X].type == mRun.type && in[kIN_X].format == mRun.format
        && out[0].format == mRun.format && out[0].type == mRun.outType && in[kIN_MASK].type == mRun.outType
        && sameDims(in[kIN_X].dims, mRun.x)
        && sameDims(in[kIN_MASK].dims, mRun.mask) && sameDims(out[0].dims, mRun.y);
}

int32_t SMSRSparseBlockPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        mRun.valid = false;
        std::string const err = checkRuntime(in, nbInputs, out, nbOutputs);
        if (!err.empty())
        {
            fail(err);
            return -1;
        }
        // Everything enqueue needs, computed once per shape.
        mRun.x = in[kIN_X].dims;
        mRun.mask = in[kIN_MASK].dims;
        mRun.y = out[0].dims;
        mRun.type = in[kIN_X].type;
        mRun.outType = out[0].type; // = x's type in float mode, the mask's in INT8 mode (checkRuntime)
        mRun.format = in[kIN_X].format;
        mRun.shape = kernelShape(in[kIN_X].dims, mCfg, in[kIN_X].format);
        toKernelType(mRun.outType, mRun.kernelType); // checked by checkRuntime
        mRun.workspace = mCfg.int8 ? getSparseBlockInt8WorkspaceSize(mRun.shape, mRun.kernelType)
                                   : getSparseBlockWorkspaceSize(mRun.shape, mRun.kernelType);
        mRun.valid = true;
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
        // Success path: integer compares and the launches only (no allocation, no formatting, no sync: CUDA-graph
        // capturable). Messages are built only on the failure paths.
        if (inputDesc == nullptr || outputDesc == nullptr)
        {
            fail("enqueue called without tensor descriptors");
            return -1;
        }
        if (!sameAsValidated(inputDesc, outputDesc) && onShapeChange(inputDesc, kNB_INPUTS, outputDesc, kNB_OUTPUTS) != 0)
            return -1; // not the descriptors onShapeChange validated: full check (it reports why)
        if (inputs == nullptr || outputs == nullptr)
        {
            fail("enqueue called without tensor pointers");
            return -1;
        }
        // An error left pending by earlier work on this thread is reported, not cleared (cudaPeekAtLastError):
        // the kernel library then reads exactly its own launches' status with cudaGetLastError.
        cudaError_t const pending = cudaPeekAtLastError();
        if (pending != cudaSuccess)
        {
            fail(std::string("a CUDA error was already pending before this layer ran (left in place): ")
                + cudaGetErrorName(pending) + " (" + cudaGetErrorString(pending) + ")");
            return -1;
        }
        smsr::DataType const type = mRun.kernelType;
        SparseBlockShape const& shape = mRun.shape;
        SparseBlockTensors t{};
        t.x = inputs[kIN_X];
        t.mask = inputs[kIN_MASK];
        for (int32_t l = 0; l < kSparseBlockLayers; ++l)
            t.weights[l] = inputs[kIN_W0 + l];
        t.collectWeight = inputs[kIN_WC];
        t.collectBias = inputs[kIN_BC];
        t.y = outputs[0];
        // The workspace TensorRT gives is sized for the profile's largest shape, so it covers this one.
        size_t const wsSize = mRun.workspace;
        // INT8 mode: the scales were validated once by the creator; int8Scales only points into mCfg.
        cudaError_t const status = mCfg.int8
            ? enqueueSparseBlockInt8(shape, type, t, int8Scales(mCfg), workspace, wsSize, stream)
            : enqueueSparseBlock(shape, type, t, workspace, wsSize, stream);
        if (status != cudaSuccess)
        {
            fail(std::string("kernel library launch failed: ") + cudaGetErrorName(status) + " ("
                + cudaGetErrorString(status) + ") for x " + dimsString(inputDesc[kIN_X].dims) + " "
                + typeName(inputDesc[kIN_X].type) + (mCfg.int8 ? std::string(" (INT8 mode, y ") + typeName(mRun.outType) + ")" : std::string())
                + ", workspace " + std::to_string(wsSize) + " bytes");
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
        if (mCfg.int8)
        {
            mSerialFields.emplace_back(kFIELD_X_SCALE, &mCfg.xScale, PluginFieldType::kFLOAT32, 1);
            mSerialFields.emplace_back(
                kFIELD_FEATURE_SCALES, mCfg.featureScales, PluginFieldType::kFLOAT32, kSparseBlockLayers);
            mSerialFields.emplace_back(kFIELD_WEIGHT_SCALES, mCfg.weightScales.data(), PluginFieldType::kFLOAT32,
                static_cast<int32_t>(mCfg.weightScales.size()));
            mSerialFields.emplace_back(kFIELD_COLLECT_SCALES, mCfg.collectScales.data(), PluginFieldType::kFLOAT32,
                static_cast<int32_t>(mCfg.collectScales.size()));
        }
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
    // INT8 mode (all four or none). The ONNX parser converts a node's attributes to the types listed here;
    // length 0 = variable (sum of Cout_l, C).
    mFields.emplace_back(kFIELD_X_SCALE, nullptr, PluginFieldType::kFLOAT32, 1);
    mFields.emplace_back(kFIELD_FEATURE_SCALES, nullptr, PluginFieldType::kFLOAT32, kSparseBlockLayers);
    mFields.emplace_back(kFIELD_WEIGHT_SCALES, nullptr, PluginFieldType::kFLOAT32, 0);
    mFields.emplace_back(kFIELD_COLLECT_SCALES, nullptr, PluginFieldType::kFLOAT32, 0);
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

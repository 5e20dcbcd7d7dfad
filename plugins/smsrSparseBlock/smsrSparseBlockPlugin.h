/*
 * SMSRSparseBlock TensorRT plugin (IPluginV3, plugin version "2"): a thin adapter over the kernel library
 * (kernels/sparseBlockKernels.h). One plugin layer computes one SMSR sparse mask block.
 *
 * Fields = the ONNX node's attributes: dense_channels (4 ints), sparse_channels (4 ints); INT8 mode adds x_scale,
 * feature_scales, weight_scales, collect_scales (floats; all four or none).
 * Inputs: x N×C×H×W, mask N×1×H×W, w0..w3 3×3×Cin_l×(D_l+S_l), wc 1×1×ΣCout×C, bc C; output y N×C×H×W.
 * Types: float mode linear FP32 or FP16 (x/y FP16 also kHWC8), all I/O one type; INT8 mode x and weights INT8,
 * mask / bc / y one float type, all linear (PLUGIN.md).
 *
 * Only enqueue touches CUDA: creation, clone, the build-phase methods and serialization run on build
 * machines without a GPU (TensorRT-RTX ahead-of-time builds, CI).
 */
#pragma once

#include "pluginChecks.h"

#include <NvInferRuntime.h>

#include <string>
#include <vector>

namespace smsr
{
namespace plugin
{

class SMSRSparseBlockPlugin final : public nvinfer1::IPluginV3,
                                    public nvinfer1::IPluginV3OneCore,
                                    public nvinfer1::IPluginV3OneBuild,
                                    public nvinfer1::IPluginV3OneRuntime
{
public:
    SMSRSparseBlockPlugin(std::string layerName, BlockConfig const& cfg);
    SMSRSparseBlockPlugin(SMSRSparseBlockPlugin const& other);
    SMSRSparseBlockPlugin& operator=(SMSRSparseBlockPlugin const&) = delete;
    ~SMSRSparseBlockPlugin() override;

    //! Number of plugin objects alive in this library (destructor-balance checks in tests).
    static int64_t liveObjects() noexcept;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override { return kPLUGIN_NAME; }
    char const* getPluginVersion() const noexcept override { return kPLUGIN_VERSION; }
    char const* getPluginNamespace() const noexcept override { return kPLUGIN_NAMESPACE; }

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override { return kNB_OUTPUTS; }
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    char const* getMetadataString() noexcept override { return mMetadata.c_str(); }

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    BlockConfig const& config() const noexcept { return mCfg; }

private:
    //! Logs "SMSRSparseBlock '<layer>': <msg>" (and reports it to the context's error recorder at runtime).
    void fail(std::string const& msg) const noexcept;
    //! Full check of concrete runtime descriptors; "" when fine.
    std::string checkRuntime(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) const;
    //! True when enqueue's descriptors are the ones onShapeChange validated (integer compares only).
    bool sameAsValidated(nvinfer1::PluginTensorDesc const* in, nvinfer1::PluginTensorDesc const* out) const noexcept;

    //! What onShapeChange validated, so enqueue neither re-checks nor formats anything on its success path.
    struct RunConfig
    {
        bool valid{false};
        nvinfer1::Dims x{}, mask{}, y{};
        nvinfer1::DataType type{nvinfer1::DataType::kFLOAT};    //!< x's
        nvinfer1::DataType outType{nvinfer1::DataType::kFLOAT}; //!< y's (= mask's, bc's in INT8 mode)
        nvinfer1::TensorFormat format{nvinfer1::TensorFormat::kLINEAR};
        SparseBlockShape shape{};
        DataType kernelType{DataType::kFLOAT};
        size_t workspace{0};
    };
    RunConfig mRun;

    std::string mLayerName;
    BlockConfig mCfg;
    std::string mMetadata;
    nvinfer1::IErrorRecorder* mRecorder{nullptr};
    std::vector<nvinfer1::PluginField> mSerialFields;
    nvinfer1::PluginFieldCollection mSerialFC{};
};

class SMSRSparseBlockPluginCreator final : public nvinfer1::IPluginCreatorV3One
{
public:
    SMSRSparseBlockPluginCreator();
    ~SMSRSparseBlockPluginCreator() override = default;

    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return &mFieldNames; }
    char const* getPluginName() const noexcept override { return kPLUGIN_NAME; }
    char const* getPluginVersion() const noexcept override { return kPLUGIN_VERSION; }
    char const* getPluginNamespace() const noexcept override { return kPLUGIN_NAMESPACE; }

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldNames{};
};

//! The library's one creator object (getCreators returns it; the auto-registering variant registers it).
nvinfer1::IPluginCreatorV3One& libraryCreator() noexcept;

} // namespace plugin
} // namespace smsr

/*
 * SMSRSparseBlock TensorRT plugin: field parsing and input validation (host only, no CUDA).
 *
 * Every check returns an empty string when fine, else a message naming the problem; the plugin prefixes it
 * with the layer name and reports it through TensorRT's logger / error recorder.
 */
#pragma once

#include "kernels/sparseBlockQuant.h"
#include "kernels/sparseBlockShape.h"

#include <NvInferRuntime.h>

#include <string>
#include <vector>

namespace smsr
{
namespace plugin
{

constexpr char const* kPLUGIN_NAME{"SMSRSparseBlock"};
constexpr char const* kPLUGIN_VERSION{"2"}; // 2: weights in the 3 x 3 x Cin x Cout layout
constexpr char const* kPLUGIN_NAMESPACE{""};
constexpr char const* kFIELD_DENSE{"dense_channels"};
constexpr char const* kFIELD_SPARSE{"sparse_channels"};
// INT8 mode (issue 14, contract in kernels/sparseBlockQuant.h): all four present, or none (float mode).
constexpr char const* kFIELD_X_SCALE{"x_scale"};               //!< 1 float: the QuantizeLinear scale of x
constexpr char const* kFIELD_FEATURE_SCALES{"feature_scales"}; //!< 4 floats: s_f[l]
constexpr char const* kFIELD_WEIGHT_SCALES{"weight_scales"};   //!< sum(Cout_l) floats, layers concatenated
constexpr char const* kFIELD_COLLECT_SCALES{"collect_scales"}; //!< C floats

//! Inputs: x, mask, w0..w3, wc, bc (docs/DESIGN.md §2 of the workplace; plugins/smsrSparseBlock/PLUGIN.md).
constexpr int32_t kNB_INPUTS{8};
constexpr int32_t kNB_OUTPUTS{1};
constexpr int32_t kIN_X{0};
constexpr int32_t kIN_MASK{1};
constexpr int32_t kIN_W0{2};
constexpr int32_t kIN_WC{6};
constexpr int32_t kIN_BC{7};
char const* inputName(int32_t index) noexcept;

//! Upper bound on channels per layer: keeps every product below int32 range in the checks.
constexpr int32_t kMAX_CHANNELS{1 << 16};

//! The plugin's fields (= the ONNX node's attributes).
struct BlockConfig
{
    int32_t dense[kSparseBlockLayers]{};
    int32_t sparse[kSparseBlockLayers]{};
    //! INT8 mode: x and the weights are int8 codes; mask, bc and y one float type. Set by the four scale fields.
    bool int8{false};
    float xScale{0.F};
    float featureScales[kSparseBlockLayers]{};
    std::vector<float> weightScales;  //!< sum(Cout_l)
    std::vector<float> collectScales; //!< C
};

//! The kernel library's view of cfg's scales (pointers into cfg: valid while cfg lives unchanged).
SparseBlockInt8Scales int8Scales(BlockConfig const& cfg) noexcept;

//! Sum over layers of dense_channels + sparse_channels (= weight_scales' length).
int32_t totalOutChannels(BlockConfig const& cfg) noexcept;

//! Reads dense_channels / sparse_channels (INT32 or INT64, 4 values each) and, for INT8 mode, x_scale,
//! feature_scales, weight_scales, collect_scales (FLOAT32 or FLOAT64; all four or none). Unknown fields are listed
//! in `warnings` (ignored); missing, repeated, mistyped or wrongly sized fields are errors.
std::string parseFields(nvinfer1::PluginFieldCollection const* fc, BlockConfig& cfg, std::string& warnings);

//! Field values: non-negative, at least one output channel per layer, bounded; INT8 scales counted and valid.
std::string checkConfig(BlockConfig const& cfg);

//! Float mode: all inputs share one type, FLOAT or HALF. INT8 mode: x and w0..w3, wc INT8; mask and bc one type,
//! FLOAT or HALF. A graph of the other mode is refused with a message saying what it must look like.
std::string checkInputTypes(nvinfer1::DataType const* types, int32_t nbInputs, BlockConfig const& cfg);

//! The type of y (and of the kernel library's float I/O): x's in float mode, mask's in INT8 mode.
nvinfer1::DataType floatIoType(nvinfer1::DataType const* types, BlockConfig const& cfg) noexcept;

//! Input shapes against the fields (INT8 mode: also collect_scales against C); a dimension of -1 is unknown.
std::string checkInputDims(nvinfer1::Dims const* dims, int32_t nbInputs, BlockConfig const& cfg);

//! Kernel-library shape from x's dims (N, C, H, W) and the fields.
SparseBlockShape makeShape(nvinfer1::Dims const& x, BlockConfig const& cfg) noexcept;

//! FLOAT -> kFLOAT, HALF -> kHALF; false for any other type.
bool toKernelType(nvinfer1::DataType type, DataType& out) noexcept;

char const* typeName(nvinfer1::DataType type) noexcept;
std::string dimsString(nvinfer1::Dims const& dims);

} // namespace plugin
} // namespace smsr

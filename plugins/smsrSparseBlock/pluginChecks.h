/*
 * SMSRSparseBlock TensorRT plugin: field parsing and input validation (host only, no CUDA).
 *
 * Every check returns an empty string when fine, else a message naming the problem; the plugin prefixes it
 * with the layer name and reports it through TensorRT's logger / error recorder.
 */
#pragma once

#include "kernels/sparseBlockShape.h"

#include <NvInferRuntime.h>

#include <string>

namespace smsr
{
namespace plugin
{

constexpr char const* kPLUGIN_NAME{"SMSRSparseBlock"};
constexpr char const* kPLUGIN_VERSION{"2"}; // 2: weights in the 3 x 3 x Cin x Cout layout
constexpr char const* kPLUGIN_NAMESPACE{""};
constexpr char const* kFIELD_DENSE{"dense_channels"};
constexpr char const* kFIELD_SPARSE{"sparse_channels"};

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
};

//! Reads dense_channels / sparse_channels (INT32 or INT64, 4 values each). Unknown fields are listed in
//! `warnings` (ignored); missing, repeated, mistyped or wrongly sized fields are errors.
std::string parseFields(nvinfer1::PluginFieldCollection const* fc, BlockConfig& cfg, std::string& warnings);

//! Field values: non-negative, at least one output channel per layer, bounded.
std::string checkConfig(BlockConfig const& cfg);

//! All inputs share one type, FLOAT or HALF.
std::string checkInputTypes(nvinfer1::DataType const* types, int32_t nbInputs);

//! Input shapes against the fields; a dimension of -1 is unknown and not checked.
std::string checkInputDims(nvinfer1::Dims const* dims, int32_t nbInputs, BlockConfig const& cfg);

//! Kernel-library shape from x's dims (N, C, H, W) and the fields.
SparseBlockShape makeShape(nvinfer1::Dims const& x, BlockConfig const& cfg) noexcept;

//! FLOAT -> kFLOAT, HALF -> kHALF; false for any other type.
bool toKernelType(nvinfer1::DataType type, DataType& out) noexcept;

char const* typeName(nvinfer1::DataType type) noexcept;
std::string dimsString(nvinfer1::Dims const& dims);

} // namespace plugin
} // namespace smsr

/*
 * SMSRSparseBlock: shape description shared by the CUDA kernels, the CPU op and the plugins.
 * Pure C++ (no CUDA, TensorRT or ONNX Runtime headers).
 */
#pragma once

#include <cstddef>
#include <cstdint>

namespace smsr
{

constexpr int32_t kSparseBlockLayers = 4;

enum class DataType : int32_t
{
    kFLOAT = 0, //!< float32 I/O, float32 accumulate
    kHALF = 1,  //!< float16 I/O, float32 accumulate
};

//! Memory layout of the block input x and output y (the mask is always N x 1 x H x W).
enum class TensorFormat : int32_t
{
    kNCHW = 0, //!< planar (TensorRT kLINEAR)
    kNHWC = 1, //!< channels-last, channel stride C (TensorRT kHWC8 when C % 8 == 0); FP16 only, C % 8 == 0
};

//! Static description of one block invocation.
struct SparseBlockShape
{
    int32_t batch{0};    //!< N
    int32_t channels{0}; //!< C: block input/output channels (= layer 0 input channels)
    int32_t height{0};   //!< H
    int32_t width{0};    //!< W
    int32_t dense[kSparseBlockLayers]{};  //!< D_l: dense output channels of layer l
    int32_t sparse[kSparseBlockLayers]{}; //!< S_l: sparse output channels of layer l
    TensorFormat format{TensorFormat::kNCHW}; //!< layout of x and y
};

//! Device pointers of one invocation; all float tensors share the DataType.
struct SparseBlockTensors
{
    void const* x{nullptr};                          //!< N x C x H x W (kNCHW) or N x H x W x C (kNHWC)
    void const* mask{nullptr};                       //!< N x 1 x H x W, values exactly 0 or 1
    void const* weights[kSparseBlockLayers]{};       //!< 3 x 3 x Cin_l x Cout_l ([ky][kx][ci][co]), Cin_0 = C, Cin_l = Cout_{l-1}
    void const* collectWeight{nullptr};              //!< 1 x 1 x sum_l(Cout_l) x C ([ci][co])
    void const* collectBias{nullptr};                //!< C
    void* y{nullptr};                                //!< N x C x H x W (kNCHW) or N x H x W x C (kNHWC)
};

//! Output channels D_l+S_l of layer l; input channels of layer l (C for l=0).
inline int32_t layerOutChannels(SparseBlockShape const& s, int32_t l) { return s.dense[l] + s.sparse[l]; }
inline int32_t layerInChannels(SparseBlockShape const& s, int32_t l) { return l == 0 ? s.channels : layerOutChannels(s, l - 1); }
//! Sum over layers of D_l+S_l: the collect conv's input channels.
inline int32_t collectInChannels(SparseBlockShape const& s)
{
    int32_t n = 0;
    for (int32_t l = 0; l < kSparseBlockLayers; ++l)
        n += layerOutChannels(s, l);
    return n;
}

//! nullptr when the shape is valid, else a static message naming the problem.
char const* validateSparseBlockShape(SparseBlockShape const& shape) noexcept;

} // namespace smsr

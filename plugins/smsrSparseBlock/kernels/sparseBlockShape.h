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

//! Static description of one block invocation.
struct SparseBlockShape
{
    int32_t batch{0};    //!< N
    int32_t channels{0}; //!< C: block input/output channels (= layer 0 input channels)
    int32_t height{0};   //!< H
    int32_t width{0};    //!< W
    int32_t dense[kSparseBlockLayers]{};  //!< D_l: dense output channels of layer l
    int32_t sparse[kSparseBlockLayers]{}; //!< S_l: sparse output channels of layer l
};

//! Device pointers of one invocation; all float tensors share the DataType.
struct SparseBlockTensors
{
    void const* x{nullptr};                          //!< N x C x H x W
    void const* mask{nullptr};                       //!< N x 1 x H x W, values exactly 0 or 1
    void const* weights[kSparseBlockLayers]{};       //!< 3 x 3 x Cin_l x (D_l+S_l), Cin_0 = C, Cin_l = D_{l-1}+S_{l-1}
    void const* collectWeight{nullptr};              //!< (1 x 1 x) sum_l(D_l+S_l) x C
    void const* collectBias{nullptr};                //!< C
    void* y{nullptr};                                //!< N x C x H x W
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

#include "sparseBlockShape.h"

namespace smsr
{

char const* validateSparseBlockShape(SparseBlockShape const& s) noexcept
{
    if (s.batch < 1)
        return "SMSRSparseBlock: batch must be >= 1";
    if (s.channels < 1)
        return "SMSRSparseBlock: channels must be >= 1";
    if (s.height < 1 || s.width < 1)
        return "SMSRSparseBlock: height and width must be >= 1";
    for (int32_t l = 0; l < kSparseBlockLayers; ++l)
    {
        if (s.dense[l] < 0 || s.sparse[l] < 0)
            return "SMSRSparseBlock: dense_channels/sparse_channels must be non-negative";
        if (s.dense[l] + s.sparse[l] < 1)
            return "SMSRSparseBlock: every layer needs at least one output channel (dense + sparse >= 1)";
    }
    if (s.format != TensorFormat::kNCHW && s.format != TensorFormat::kNHWC)
        return "SMSRSparseBlock: unknown tensor format";
    // Guard index arithmetic (int32 offsets inside one image plane stack).
    int64_t const plane = int64_t(s.height) * s.width;
    if (plane * collectInChannels(s) > (int64_t(1) << 31) - 1)
        return "SMSRSparseBlock: H*W*channels exceeds 2^31-1 elements per image";
    return nullptr;
}

} // namespace smsr

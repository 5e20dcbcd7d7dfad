#include "pluginChecks.h"

#include <cstring>

namespace smsr
{
namespace plugin
{
namespace
{

using nvinfer1::DataType;
using nvinfer1::Dims;
using nvinfer1::PluginFieldType;

// Reads `length` integers of an INT32/INT64 field into out[]; "" or a message.
std::string readInts(nvinfer1::PluginField const& f, int32_t* out, int32_t count)
{
    std::string const name = f.name;
    if (f.type != PluginFieldType::kINT32 && f.type != PluginFieldType::kINT64)
        return "field '" + name + "' must hold integers (INT32 or INT64), got field type "
            + std::to_string(static_cast<int32_t>(f.type));
    if (f.length != count)
        return "field '" + name + "' must have " + std::to_string(count) + " values (one per layer), got "
            + std::to_string(f.length);
    if (f.data == nullptr)
        return "field '" + name + "' has no data";
    for (int32_t i = 0; i < count; ++i)
    {
        int64_t v = 0;
        if (f.type == PluginFieldType::kINT32)
            v = static_cast<int32_t const*>(f.data)[i];
        else
            v = static_cast<int64_t const*>(f.data)[i];
        if (v < INT32_MIN || v > INT32_MAX)
            return "field '" + name + "'[" + std::to_string(i) + "] = " + std::to_string(v) + " is out of range";
        out[i] = static_cast<int32_t>(v);
    }
    return {};
}

// Reads the float values of a FLOAT32/FLOAT64 field (any length >= 1; counts are checked by checkConfig).
std::string readFloats(nvinfer1::PluginField const& f, std::vector<float>& out)
{
    std::string const name = f.name;
    if (f.type != PluginFieldType::kFLOAT32 && f.type != PluginFieldType::kFLOAT64)
        return "field '" + name + "' must hold floats (FLOAT32 or FLOAT64), got field type "
            + std::to_string(static_cast<int32_t>(f.type));
    if (f.length < 1 || f.length > (1 << 20))
        return "field '" + name + "' has " + std::to_string(f.length) + " values";
    if (f.data == nullptr)
        return "field '" + name + "' has no data";
    out.resize(static_cast<size_t>(f.length));
    for (int32_t i = 0; i < f.length; ++i)
        out[i] = f.type == PluginFieldType::kFLOAT32 ? static_cast<float const*>(f.data)[i]
                                                     : static_cast<float>(static_cast<double const*>(f.data)[i]);
    return {};
}

// The INT8 scale fields, in the order they are described to users.
constexpr int32_t kNB_SCALE_FIELDS = 4;
char const* const kSCALE_FIELDS[kNB_SCALE_FIELDS]
    = {kFIELD_X_SCALE, kFIELD_FEATURE_SCALES, kFIELD_WEIGHT_SCALES, kFIELD_COLLECT_SCALES};

// "x_scale (1 float)" etc.: what each scale field must hold.
std::string expectedScaleCount(int32_t field, BlockConfig const& cfg)
{
    switch (field)
    {
    case 0: return "1 float: the scale of the QuantizeLinear node that makes x";
    case 1: return "4 floats: the scale of each layer's ReLU output";
    case 2:
        return std::to_string(totalOutChannels(cfg))
            + " floats: one per output channel of each layer, layers concatenated (sum of dense_channels + "
              "sparse_channels)";
    default: return "C floats: one per output channel of the collect conv (C = channels of x)";
    }
}

bool known(int64_t d) noexcept
{
    return d >= 0;
}

std::string expectedDims(int64_t const* e, int32_t n)
{
    Dims d{};
    d.nbDims = n;
    for (int32_t i = 0; i < n; ++i)
        d.d[i] = e[i];
    return dimsString(d);
}

// Compares the known dims of input `index` with `expected` (entries < 0 are "any").
std::string matchDims(Dims const& got, int32_t index, int64_t const* expected, int32_t n, char const* why)
{
    bool ok = got.nbDims == n;
    for (int32_t i = 0; ok && i < n; ++i)
        ok = !known(got.d[i]) || !known(expected[i]) || got.d[i] == expected[i];
    if (ok)
        return {};
    return std::string(inputName(index)) + " has shape " + dimsString(got) + ", expected " + expectedDims(expected, n)
        + " (" + why + ")";
}

} // namespace

char const* inputName(int32_t index) noexcept
{
    static char const* const kNames[kNB_INPUTS] = {"x", "mask", "w0", "w1", "w2", "w3", "wc", "bc"};
    return index >= 0 && index < kNB_INPUTS ? kNames[index] : "?";
}

char const* typeName(DataType type) noexcept
{
    // By value: older 10.x headers lack some enumerators.
    switch (static_cast<int32_t>(type))
    {
    case 0: return "FLOAT";
    case 1: return "HALF";
    case 2: return "INT8";
    case 3: return "INT32";
    case 4: return "BOOL";
    case 5: return "UINT8";
    case 6: return "FP8";
    case 7: return "BF16";
    case 8: return "INT64";
    case 9: return "INT4";
    case 10: return "FP4";
    case 11: return "E8M0";
    default: return "UNKNOWN";
    }
}

std::string dimsString(Dims const& dims)
{
    if (dims.nbDims < 0 || dims.nbDims > Dims::MAX_DIMS)
        return "[invalid rank " + std::to_string(dims.nbDims) + "]";
    std::string s = "[";
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        if (i)
            s += "x";
        s += known(dims.d[i]) ? std::to_string(dims.d[i]) : std::string("?");
    }
    return s + "]";
}

std::string parseFields(nvinfer1::PluginFieldCollection const* fc, BlockConfig& cfg, std::string& warnings)
{
    if (fc == nullptr)
        return "no plugin fields given (need dense_channels and sparse_channels)";
    if (fc->nbFields < 0 || (fc->nbFields > 0 && fc->fields == nullptr))
        return "malformed plugin field collection";
    bool haveDense = false;
    bool haveSparse = false;
    bool haveScale[kNB_SCALE_FIELDS]{};
    std::vector<float> scaleValues[kNB_SCALE_FIELDS];
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        nvinfer1::PluginField const& f = fc->fields[i];
        if (f.name == nullptr)
            return "plugin field " + std::to_string(i) + " has no name";
        int32_t scale = -1;
        for (int32_t k = 0; k < kNB_SCALE_FIELDS; ++k)
            if (std::strcmp(f.name, kSCALE_FIELDS[k]) == 0)
                scale = k;
        if (scale >= 0)
        {
            if (haveScale[scale])
                return std::string("field '") + f.name + "' given twice";
            haveScale[scale] = true;
            std::string err = readFloats(f, scaleValues[scale]);
            if (!err.empty())
                return err;
            continue;
        }
        bool const isDense = std::strcmp(f.name, kFIELD_DENSE) == 0;
        bool const isSparse = std::strcmp(f.name, kFIELD_SPARSE) == 0;
        if (!isDense && !isSparse)
        {
            warnings += std::string(warnings.empty() ? "" : ", ") + "'" + f.name + "'";
            continue;
        }
        bool& seen = isDense ? haveDense : haveSparse;
        if (seen)
            return std::string("field '") + f.name + "' given twice";
        seen = true;
        std::string err = readInts(f, isDense ? cfg.dense : cfg.sparse, kSparseBlockLayers);
        if (!err.empty())
            return err;
    }
    if (!warnings.empty())
        warnings = "ignoring unknown field(s) " + warnings;
    if (!haveDense)
        return "missing field 'dense_channels' (4 ints: dense output channels of each layer)";
    if (!haveSparse)
        return "missing field 'sparse_channels' (4 ints: sparse output channels of each layer)";
    std::string err = checkConfig(cfg); // channel counts first: weight_scales' expected count depends on them
    if (!err.empty())
        return err;
    int32_t nbScales = 0;
    for (bool h : haveScale)
        nbScales += h ? 1 : 0;
    if (nbScales == 0)
        return {}; // float mode
    if (nbScales < kNB_SCALE_FIELDS)
    {
        std::string given, missing;
        for (int32_t k = 0; k < kNB_SCALE_FIELDS; ++k)
        {
            std::string& list = haveScale[k] ? given : missing;
            list += std::string(list.empty() ? "" : ", ") + "'" + kSCALE_FIELDS[k] + "'";
            if (!haveScale[k])
                list += " (" + expectedScaleCount(k, cfg) + ")";
        }
        return "INT8 scale field(s) " + given + " given without " + missing
            + ": an INT8 SMSRSparseBlock needs all four of x_scale, feature_scales, weight_scales, collect_scales; "
              "a float one none of them";
    }
    cfg.int8 = true;
    cfg.xScale = scaleValues[0][0];
    for (int32_t l = 0; l < kSparseBlockLayers && l < static_cast<int32_t>(scaleValues[1].size()); ++l)
        cfg.featureScales[l] = scaleValues[1][l];
    cfg.weightScales = scaleValues[2];
    cfg.collectScales = scaleValues[3];
    // Counts (checkConfig cannot see the lengths of fields it did not store).
    size_t const want[3] = {1, kSparseBlockLayers, static_cast<size_t>(totalOutChannels(cfg))};
    for (int32_t k = 0; k < 3; ++k)
        if (scaleValues[k].size() != want[k])
            return std::string("field '") + kSCALE_FIELDS[k] + "' must have " + expectedScaleCount(k, cfg) + "; got "
                + std::to_string(scaleValues[k].size()) + " values";
    return checkConfig(cfg);
}

std::string checkConfig(BlockConfig const& cfg)
{
    for (int32_t l = 0; l < kSparseBlockLayers; ++l)
    {
        std::string const at = "[" + std::to_string(l) + "] = ";
        if (cfg.dense[l] < 0)
            return "dense_channels" + at + std::to_string(cfg.dense[l]) + " is negative";
        if (cfg.sparse[l] < 0)
            return "sparse_channels" + at + std::to_string(cfg.sparse[l]) + " is negative";
        if (cfg.dense[l] > kMAX_CHANNELS || cfg.sparse[l] > kMAX_CHANNELS)
            return "layer " + std::to_string(l) + " has more than " + std::to_string(kMAX_CHANNELS) + " channels";
        if (cfg.dense[l] + cfg.sparse[l] < 1)
            return "layer " + std::to_string(l)
                + " has no output channel (dense_channels + sparse_channels must be >= 1)";
    }
    if (!cfg.int8)
        return {};
    if (cfg.weightScales.size() != static_cast<size_t>(totalOutChannels(cfg)))
        return "field 'weight_scales' must have " + std::to_string(totalOutChannels(cfg)) + " values, got "
            + std::to_string(cfg.weightScales.size());
    if (cfg.collectScales.empty() || cfg.collectScales.size() > static_cast<size_t>(kMAX_CHANNELS))
        return "field 'collect_scales' has " + std::to_string(cfg.collectScales.size())
            + " values; expected C (channels of x)";
    // The contract's own validator; C is collect_scales' length here, checked against x by checkInputDims.
    SparseBlockShape s{};
    s.channels = static_cast<int32_t>(cfg.collectScales.size());
    for (int32_t l = 0; l < kSparseBlockLayers; ++l)
    {
        s.dense[l] = cfg.dense[l];
        s.sparse[l] = cfg.sparse[l];
    }
    char const* const msg = validateSparseBlockInt8Scales(s, int8Scales(cfg));
    if (msg != nullptr)
    {
        std::string m = msg;
        std::string const lead = "SMSRSparseBlock "; // the caller prefixes the layer name already
        return m.compare(0, lead.size(), lead) == 0 ? m.substr(lead.size()) : m;
    }
    return {};
}

SparseBlockInt8Scales int8Scales(BlockConfig const& cfg) noexcept
{
    SparseBlockInt8Scales q{};
    if (!cfg.int8)
        return q;
    q.x = cfg.xScale;
    size_t off = 0;
    for (int32_t l = 0; l < kSparseBlockLayers; ++l)
    {
        q.feature[l] = cfg.featureScales[l];
        q.weight[l] = off < cfg.weightScales.size() ? cfg.weightScales.data() + off : nullptr;
        off += static_cast<size_t>(cfg.dense[l] + cfg.sparse[l]);
    }
    q.collect = cfg.collectScales.empty() ? nullptr : cfg.collectScales.data();
    return q;
}

int32_t totalOutChannels(BlockConfig const& cfg) noexcept
{
    int32_t n = 0;
    for (int32_t l = 0; l < kSparseBlockLayers; ++l)
        n += cfg.dense[l] + cfg.sparse[l];
    return n;
}

DataType floatIoType(DataType const* types, BlockConfig const& cfg) noexcept
{
    return cfg.int8 ? types[kIN_MASK] : types[kIN_X];
}

namespace
{
// What an INT8 node must look like, for the messages that refuse a graph of the other mode.
constexpr char const* kINT8_GRAPH = "x INT8 (the output of a QuantizeLinear node with scale x_scale and int8 zero "
                                    "point 0), w0..w3 and wc INT8 initializers (weight codes), mask, bc and y one "
                                    "float type (FLOAT or HALF)";
} // namespace

std::string checkInputTypes(DataType const* types, int32_t nbInputs, BlockConfig const& cfg)
{
    if (nbInputs != kNB_INPUTS || types == nullptr)
        return "expects " + std::to_string(kNB_INPUTS) + " inputs (x, mask, w0, w1, w2, w3, wc, bc), got "
            + std::to_string(nbInputs);
    DataType const t = types[kIN_X];
    if (!cfg.int8)
    {
        if (t == DataType::kINT8)
            return std::string("x has type INT8 but the node has no INT8 scale fields: an INT8 SMSRSparseBlock needs ")
                + "the attributes x_scale, feature_scales, weight_scales and collect_scales and " + kINT8_GRAPH
                + "; a float one has every input FLOAT or every input HALF";
        if (t != DataType::kFLOAT && t != DataType::kHALF)
            return std::string("x has type ") + typeName(t) + "; supported types are FLOAT and HALF (and INT8 with "
                + "the INT8 scale fields)";
        for (int32_t i = 1; i < nbInputs; ++i)
            if (types[i] != t)
                return std::string(inputName(i)) + " has type " + typeName(types[i]) + " but x has type "
                    + typeName(t) + "; all inputs (including mask and weights) must share one type";
        return {};
    }
    if (t != DataType::kINT8)
        return std::string("x has type ") + typeName(t) + " but the node has INT8 scale fields (x_scale, ...): "
            + "an INT8 SMSRSparseBlock needs " + kINT8_GRAPH
            + "; drop the scale attributes for a float block";
    for (int32_t i = kIN_W0; i <= kIN_WC; ++i)
        if (types[i] != DataType::kINT8)
            return std::string(inputName(i)) + " has type " + typeName(types[i])
                + " but an INT8 SMSRSparseBlock needs INT8 weight codes (" + kINT8_GRAPH + ")";
    DataType const m = types[kIN_MASK];
    if (m != DataType::kFLOAT && m != DataType::kHALF)
        return std::string("mask has type ") + typeName(m) + "; an INT8 SMSRSparseBlock needs " + kINT8_GRAPH;
    if (types[kIN_BC] != m)
        return std::string("bc has type ") + typeName(types[kIN_BC]) + " but mask has type " + typeName(m)
            + "; mask, bc and y must share one float type";
    return {};
}

std::string checkInputDims(Dims const* dims, int32_t nbInputs, BlockConfig const& cfg)
{
    if (nbInputs != kNB_INPUTS || dims == nullptr)
        return "expects " + std::to_string(kNB_INPUTS) + " inputs (x, mask, w0, w1, w2, w3, wc, bc), got "
            + std::to_string(nbInputs);
    Dims const& x = dims[kIN_X];
    if (x.nbDims != 4)
        return "x must be 4-D (N x C x H x W), got " + dimsString(x);
    for (int32_t i = 0; i < 4; ++i)
        if (x.d[i] == 0)
            return "x has an empty dimension: " + dimsString(x);
    int64_t const n = x.d[0];
    int64_t const h = x.d[2];
    int64_t const w = x.d[3];
    // Channel count C: from x, else from the collect weights (both must agree below).
    int64_t c = x.d[1];
    if (!known(c) && dims[kIN_WC].nbDims >= 1)
        c = dims[kIN_WC].d[dims[kIN_WC].nbDims - 1]; // wc: (1 x 1 x) K x C

    int64_t const maskShape[4] = {n, 1, h, w};
    std::string err = matchDims(dims[kIN_MASK], kIN_MASK, maskShape, 4, "N x 1 x H x W of x");
    if (!err.empty())
        return err;

    int64_t collectIn = 0;
    for (int32_t l = 0; l < kSparseBlockLayers; ++l)
    {
        int64_t const out = int64_t(cfg.dense[l]) + cfg.sparse[l];
        int64_t const in = l == 0 ? c : int64_t(cfg.dense[l - 1]) + cfg.sparse[l - 1];
        // plugin_version 2 layout: 3 x 3 x Cin x Cout (HWIO), the [tap][ci][co] order the kernels read
        int64_t const wShape[4] = {3, 3, in, out};
        std::string const why = "3x3 kernel, " + (l == 0 ? std::string("C of x") : "layer " + std::to_string(l - 1) + "'s")
            + " input channels, dense_channels[" + std::to_string(l) + "] + sparse_channels[" + std::to_string(l)
            + "] output channels: the plugin_version 2 layout 3 x 3 x Cin x Cout";
        err = matchDims(dims[kIN_W0 + l], kIN_W0 + l, wShape, 4, why.c_str());
        if (!err.empty())
            return err;
        collectIn += out;
    }
    Dims const& wc = dims[kIN_WC];
    int64_t const wcShape[4] = {1, 1, collectIn, c};
    char const* const wcWhy = "(1 x 1 x) sum of all layers' output channels x C: the plugin_version 2 layout";
    // The 1x1 collect weights may come as 1 x 1 x K x C or as K x C.
    err = matchDims(wc, kIN_WC, wc.nbDims == 2 ? wcShape + 2 : wcShape, wc.nbDims == 2 ? 2 : 4, wcWhy);
    if (!err.empty())
        return err;
    int64_t const bcShape[1] = {c};
    err = matchDims(dims[kIN_BC], kIN_BC, bcShape, 1, "C");
    if (!err.empty())
        return err;
    if (cfg.int8 && known(c) && static_cast<int64_t>(cfg.collectScales.size()) != c)
        return "field 'collect_scales' has " + std::to_string(cfg.collectScales.size()) + " values but x has C = "
            + std::to_string(c) + " channels (one scale per output channel of the collect conv)";
    return {};
}

SparseBlockShape makeShape(Dims const& x, BlockConfig const& cfg) noexcept
{
    SparseBlockShape s{};
    if (x.nbDims == 4)
    {
        // Clamp so an absurd dimension fails validation instead of wrapping around.
        auto const clamp = [](int64_t v) { return static_cast<int32_t>(v < 0 ? -1 : (v > INT32_MAX ? INT32_MAX : v)); };
        s.batch = clamp(x.d[0]);
        s.channels = clamp(x.d[1]);
        s.height = clamp(x.d[2]);
        s.width = clamp(x.d[3]);
    }
    for (int32_t l = 0; l < kSparseBlockLayers; ++l)
    {
        s.dense[l] = cfg.dense[l];
        s.sparse[l] = cfg.sparse[l];
    }
    return s;
}

bool toKernelType(DataType type, smsr::DataType& out) noexcept
{
    if (type == DataType::kFLOAT)
        out = smsr::DataType::kFLOAT;
    else if (type == DataType::kHALF)
        out = smsr::DataType::kHALF;
    else
        return false;
    return true;
}

} // namespace plugin
} // namespace smsr

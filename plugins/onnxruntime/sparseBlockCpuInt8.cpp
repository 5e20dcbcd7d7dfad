#include "sparseBlockCpuInt8.h"

#include "cpuKernelsInt8.h"
#include "parallelPhase.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace smsr::cpu
{
namespace
{

constexpr int kTile = 256; // pixels per work item
constexpr size_t kAlign = 64;
constexpr uint8_t kSignedZero = 128; // layer 0's x codes are stored as x + 128 (u8 for vpdpbusd)

size_t alignUp(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }
int roundUp4(int v) { return (v + 3) / 4 * 4; }
int roundUp16(int v) { return (v + 15) / 16 * 16; }

//! Bytes of a k4-packed matrix (cpuKernelsInt8.h) for `nRuns` runs of `len` rows each and n outputs.
size_t packedBytes(int nRuns, int len, int n) { return size_t(nRuns) * k4Groups(len) * roundUp16(n) * 4; }

struct Layout
{
    size_t x0{0}, feat[kSparseBlockLayers]{}, state{0}, lists[3]{};
    size_t wAll[kSparseBlockLayers]{}, wDense[kSparseBlockLayers]{}, wcAll{0}, wcDense{0};
    size_t bias0{0}, mult[kSparseBlockLayers]{}, cScale{0}, cBias{0}, total{0};
};

Layout makeLayout(SparseBlockShape const& s)
{
    size_t const np = size_t(s.height + 2) * (s.width + 2);
    size_t const hw = size_t(s.height) * s.width;
    Layout L;
    size_t off = 0;
    auto take = [&off](size_t bytes) {
        size_t const at = off;
        off += alignUp(bytes);
        return at;
    };
    L.x0 = take(np * roundUp4(s.channels));
    for (int l = 0; l < kSparseBlockLayers; ++l)
        L.feat[l] = take(np * roundUp4(layerOutChannels(s, l)));
    L.state = take(np);
    for (auto& list : L.lists) // active, inactive, halo pixels (padded indices)
        list = take(hw * sizeof(int32_t));
    int wcAllGroups = 0, wcDenseGroups = 0;
    for (int l = 0; l < kSparseBlockLayers; ++l)
    {
        int const din = l == 0 ? s.channels : s.dense[l - 1];
        L.wAll[l] = take(packedBytes(9, layerInChannels(s, l), layerOutChannels(s, l)));
        L.wDense[l] = take(packedBytes(9, din, s.dense[l]));
        L.mult[l] = take(roundUp16(layerOutChannels(s, l)) * sizeof(float));
        wcAllGroups += k4Groups(layerOutChannels(s, l));
        wcDenseGroups += k4Groups(s.dense[l]);
    }
    L.wcAll = take(size_t(wcAllGroups) * roundUp16(s.channels) * 4);
    L.wcDense = take(size_t(wcDenseGroups) * roundUp16(s.channels) * 4);
    L.bias0 = take(roundUp16(layerOutChannels(s, 0)) * sizeof(int32_t));
    L.cScale = take(roundUp16(s.channels) * sizeof(float));
    L.cBias = take(roundUp16(s.channels) * sizeof(float));
    L.total = off + kAlign; // slack to align the base pointer
    return L;
}

//! Packs runs of weight rows into the k4 layout: run r has lens[r] rows, row c of run r at rowOf(r, c) (n codes).
template <typename RowOf>
void packK4(int nRuns, int const* lens, int n, RowOf rowOf, int8_t* dst)
{
    int const ldw = roundUp16(n);
    for (int r = 0; r < nRuns; ++r)
        for (int g = 0; g < k4Groups(lens[r]); ++g)
        {
            std::memset(dst, 0, size_t(ldw) * 4);
            for (int j = 0; j < 4 && 4 * g + j < lens[r]; ++j)
            {
                int8_t const* row = rowOf(r, 4 * g + j);
                for (int o = 0; o < n; ++o)
                    dst[o * 4 + j] = row[o];
            }
            dst += size_t(ldw) * 4;
        }
}

struct Scratch
{
    std::vector<int32_t> acc;
};
Scratch& scratch()
{
    thread_local Scratch s;
    return s;
}

#if defined(__SSE2__)
//! 16 x 16 bytes: rows r[k] (channel k, 16 pixels) -> r[i] (pixel i, 16 channels).
inline void transpose16x16(__m128i* r)
{
    __m128i a[16];
    for (int g = 0; g < 4; ++g) // channels 4g..4g+3 of 16 pixels -> 4 registers of 4 pixels x 4 channels
    {
        __m128i const lo01 = _mm_unpacklo_epi8(r[4 * g], r[4 * g + 1]), hi01 = _mm_unpackhi_epi8(r[4 * g], r[4 * g + 1]);
        __m128i const lo23 = _mm_unpacklo_epi8(r[4 * g + 2], r[4 * g + 3]);
        __m128i const hi23 = _mm_unpackhi_epi8(r[4 * g + 2], r[4 * g + 3]);
        a[4 * g + 0] = _mm_unpacklo_epi16(lo01, lo23); // pixels 0..3
        a[4 * g + 1] = _mm_unpackhi_epi16(lo01, lo23); // pixels 4..7
        a[4 * g + 2] = _mm_unpacklo_epi16(hi01, hi23); // pixels 8..11
        a[4 * g + 3] = _mm_unpackhi_epi16(hi01, hi23); // pixels 12..15
    }
    for (int q = 0; q < 4; ++q) // pixels 4q..4q+3: the four channel groups side by side
    {
        __m128i const lo01 = _mm_unpacklo_epi32(a[q], a[4 + q]), hi01 = _mm_unpackhi_epi32(a[q], a[4 + q]);
        __m128i const lo23 = _mm_unpacklo_epi32(a[8 + q], a[12 + q]), hi23 = _mm_unpackhi_epi32(a[8 + q], a[12 + q]);
        r[4 * q + 0] = _mm_unpacklo_epi64(lo01, lo23);
        r[4 * q + 1] = _mm_unpackhi_epi64(lo01, lo23);
        r[4 * q + 2] = _mm_unpacklo_epi64(hi01, hi23);
        r[4 * q + 3] = _mm_unpackhi_epi64(hi01, hi23);
    }
}
#endif

//! dst[i * ld + c] = src[c * plane + i] + 128 for i < n, c < channels (int8 NCHW row -> u8 pixel-major).
void toPixelMajor(int8_t const* src, size_t plane, int channels, int n, uint8_t* dst, int ld)
{
    int i0 = 0;
#if defined(__SSE2__)
    if (channels % 16 == 0) // 16 x 16 byte blocks through registers (SSE2: every x86-64)
    {
        __m128i const flip = _mm_set1_epi8(char(0x80)); // + 128 mod 256 on the byte = xor of the sign bit
        for (; i0 + 16 <= n; i0 += 16)
            for (int c0 = 0; c0 < channels; c0 += 16)
            {
                __m128i r[16];
                for (int k = 0; k < 16; ++k)
                    r[k] = _mm_xor_si128(
                        _mm_loadu_si128(reinterpret_cast<__m128i const*>(src + (c0 + k) * plane + i0)), flip);
                transpose16x16(r);
                for (int i = 0; i < 16; ++i)
                    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + size_t(i0 + i) * ld + c0), r[i]);
            }
    }
#endif
    for (int c = 0; c < channels; ++c)
        for (int i = i0; i < n; ++i)
            dst[size_t(i) * ld + c] = uint8_t(int(src[c * plane + i]) + 128);
}

struct LayerPlan
{
    int din{0}, cin{0}, dout{0}, sout{0};
    ByteRun all[9]{}, dense[9]{}; // the 3x3 taps over all inputs / the dense inputs
    uint8_t* dst{nullptr};        // dst[p * ld + o]
    int ld{0};
    int8_t const* wAll{nullptr};   // k4: 9 taps x cin rows, cout outputs
    int8_t const* wDense{nullptr}; // k4: 9 taps x din rows, dout outputs
    int32_t const* bias{nullptr};  // layer 0: -128 * sum of weights (the x + 128 offset); else none
    float const* mult{nullptr};    // requantization multipliers r_l
    int cout() const { return dout + sout; }
};

//! One image at a time; maps over the zero-padded (H+2) x (W+2) grid, pixel-major (see cpuKernels.h).
struct ImageJob
{
    bool half{false};
    int H{0}, W{0}, Wp{0}, C{0}, sx{0};
    size_t hw{0}, np{0};
    int8_t const* x{nullptr};
    void* y{nullptr};
    uint8_t* x0{nullptr};
    uint8_t* state{nullptr}; // 0 padding, 1 inactive, 2 active
    int32_t* lists[3]{};     // active, inactive, halo (inactive with an active 8-neighbour)
    int counts[3]{};
    LayerPlan layers[kSparseBlockLayers];
    ByteRun cAll[kSparseBlockLayers]{}, cDense[kSparseBlockLayers]{};
    int nCDense{0};
    int8_t const* wcAll{nullptr};
    int8_t const* wcDense{nullptr};
    float const* cScale{nullptr};
    float const* cBias{nullptr};
    Int8Kernels const* k{nullptr};
    int layer{0};

    static size_t tiles(int n) { return (size_t(n) + kTile - 1) / kTile; }
    int tapOffset(int t) const { return (t / 3 - 1) * Wp + (t % 3 - 1); }

    //! Padded row `item`: x codes + 128 into x0 (padding 128), zero padding of the feature maps.
    void prepareRow(size_t item) const
    {
        int const yy = int(item) - 1;
        size_t const rowStart = item * Wp;
        auto padPixels = [&](size_t p0, size_t n) {
            std::memset(x0 + p0 * sx, kSignedZero, n * sx);
            for (LayerPlan const& L : layers)
                std::memset(L.dst + p0 * L.ld, 0, n * L.ld);
        };
        if (yy < 0 || yy >= H)
        {
            padPixels(rowStart, Wp);
            return;
        }
        padPixels(rowStart, 1);
        padPixels(rowStart + Wp - 1, 1);
        toPixelMajor(x + size_t(yy) * W, hw, C, W, x0 + (rowStart + 1) * sx, sx);
    }

    size_t layerItems() const
    {
        LayerPlan const& L = layers[layer];
        return tiles(counts[0]) + (L.dout > 0 ? tiles(counts[1]) : 0) + (L.sout > 0 ? tiles(counts[2]) : 0);
    }

    void layerItem(size_t item) const
    {
        LayerPlan const& L = layers[layer];
        size_t const nA = tiles(counts[0]), nI = L.dout > 0 ? tiles(counts[1]) : 0;
        int which = 0;
        if (item >= nA + nI)
        {
            which = 2;
            item -= nA + nI;
        }
        else if (item >= nA)
        {
            which = 1;
            item -= nA;
        }
        int32_t const* list = lists[which] + item * kTile;
        int const n = int(std::min<size_t>(kTile, counts[which] - item * kTile));
        if (which == 0) // active: all outputs from all inputs
            k->igemm(list, n, L.all, 9, L.wAll, L.cout(), roundUp16(L.cout()), L.bias, L.mult, L.dst, L.ld, 0,
                nullptr);
        else if (which == 1) // inactive: dense outputs from dense inputs
            k->igemm(list, n, L.dense, 9, L.wDense, L.dout, roundUp16(L.dout), L.bias, L.mult, L.dst, L.ld, 0,
                nullptr);
        else // halo: the zeros an active neighbour's 3x3 reads from the sparse channels
            for (int i = 0; i < n; ++i)
                std::memset(L.dst + size_t(list[i]) * L.ld + L.dout, 0, size_t(L.sout));
    }

    size_t collectItems() const { return tiles(counts[0]) + tiles(counts[1]); }

    void collectItem(size_t item) const
    {
        bool const active = item < tiles(counts[0]);
        int const which = active ? 0 : 1;
        size_t const b = active ? item : item - tiles(counts[0]);
        int32_t const* list = lists[which] + b * kTile;
        int const n = int(std::min<size_t>(kTile, counts[which] - b * kTile));
        std::vector<int32_t>& acc = scratch().acc;
        if (acc.size() < size_t(n) * C)
            acc.resize(size_t(n) * C);
        // inactive pixels: only the dense channels can be nonzero there
        k->igemm(list, n, active ? cAll : cDense, active ? kSparseBlockLayers : nCDense, active ? wcAll : wcDense, C,
            roundUp16(C), nullptr, nullptr, nullptr, 0, 0, acc.data());
        k->storeCollect(acc.data(), C, list, n, Wp, W, hw, cScale, cBias, half, y);
    }
};

} // namespace

size_t sparseBlockInt8WorkspaceSize(SparseBlockShape const& shape) noexcept
{
    if (validateSparseBlockShape(shape) != nullptr)
        return 0;
    return makeLayout(shape).total;
}

std::string computeDescriptionInt8() { return int8Kernels().name; }

void sparseBlockForwardInt8(SparseBlockShape const& s, IoType ioType, int8_t const* x, void const* mask,
    int8_t const* const weights[4], int8_t const* collectWeight, float const* collectBias,
    SparseBlockInt8Scales const& scales, void* y, ParallelRunner& runner, void* workspace, size_t workspaceSize)
{
    if (char const* err = validateSparseBlockShape(s))
        throw std::invalid_argument(err);
    if (s.format != TensorFormat::kNCHW)
        throw std::invalid_argument("SMSRSparseBlock INT8 (CPU): only NCHW x/y are supported");
    if (!x || !mask || !weights || !collectWeight || !collectBias || !y)
        throw std::invalid_argument("SMSRSparseBlock INT8: null tensor pointer");
    for (int l = 0; l < kSparseBlockLayers; ++l)
        if (!weights[l])
            throw std::invalid_argument("SMSRSparseBlock INT8: null weight pointer");
    if (ioType != IoType::kFloat32 && ioType != IoType::kFloat16)
        throw std::invalid_argument("SMSRSparseBlock INT8: unsupported I/O type");
    if (char const* err = validateSparseBlockInt8Scales(s, scales))
        throw std::invalid_argument(err);
    if (int64_t(s.height + 2) * (s.width + 2) > (int64_t(1) << 30))
        throw std::invalid_argument("SMSRSparseBlock INT8: image too large for the CPU op (more than 2^30 pixels)");
    // int32 accumulation stays exact (no intermediate overflow either): |sum| <= K * max|a| * 127, with a <= 255
    // for layer 0 (x + 128) and <= 127 for feature codes. Far above any real block (the official one has K <= 576).
    for (int l = 0; l <= kSparseBlockLayers; ++l)
    {
        int64_t const k = l < kSparseBlockLayers ? int64_t(9) * layerInChannels(s, l) : collectInChannels(s);
        if (k * (l == 0 ? 255 : 127) * 127 > INT32_MAX)
            throw std::invalid_argument(std::string("SMSRSparseBlock INT8 (CPU): ")
                + (l < kSparseBlockLayers ? "layer " + std::to_string(l) + " has" : "the collect has")
                + " too many input channels for exact int32 accumulation");
    }

    Layout const lay = makeLayout(s);
    std::unique_ptr<char[]> owned;
    if (!workspace)
    {
        owned.reset(new char[lay.total]);
        workspace = owned.get();
    }
    else if (workspaceSize < lay.total)
        throw std::invalid_argument("SMSRSparseBlock INT8: workspace too small");
    char* ws = reinterpret_cast<char*>(alignUp(reinterpret_cast<uintptr_t>(workspace)));
    // Tests: fill the workspace with 0xff first, so that reading anything not written first shows.
    if (char const* poison = std::getenv("SMSR_CPU_POISON"); poison && *poison == '1')
        std::memset(ws, 0xff, lay.total - kAlign);

    ImageJob job;
    job.half = ioType == IoType::kFloat16;
    job.H = s.height;
    job.W = s.width;
    job.Wp = s.width + 2;
    job.C = s.channels;
    job.sx = roundUp4(s.channels);
    job.hw = size_t(s.height) * s.width;
    job.np = size_t(s.height + 2) * job.Wp;
    job.x0 = reinterpret_cast<uint8_t*>(ws + lay.x0);
    job.state = reinterpret_cast<uint8_t*>(ws + lay.state);
    for (int i = 0; i < 3; ++i)
        job.lists[i] = reinterpret_cast<int32_t*>(ws + lay.lists[i]);
    job.k = &int8Kernels();

    // ---- per-call packing of the weights (~150 K codes: negligible next to the convolutions)
    int const C = s.channels;
    for (int l = 0; l < kSparseBlockLayers; ++l)
    {
        LayerPlan& L = job.layers[l];
        L.dout = s.dense[l];
        L.sout = s.sparse[l];
        L.cin = layerInChannels(s, l);
        L.din = l == 0 ? C : s.dense[l - 1];
        L.dst = reinterpret_cast<uint8_t*>(ws + lay.feat[l]);
        L.ld = roundUp4(L.cout());
        uint8_t const* src = l == 0 ? job.x0 : job.layers[l - 1].dst;
        int const srcLd = l == 0 ? job.sx : job.layers[l - 1].ld;
        for (int t = 0; t < 9; ++t)
        {
            L.all[t] = ByteRun{src, srcLd, job.tapOffset(t) * srcLd, L.cin};
            L.dense[t] = ByteRun{src, srcLd, job.tapOffset(t) * srcLd, L.din};
        }
        int8_t const* w = weights[l]; // 3 x 3 x cin x cout
        int const cin = L.cin, cout = L.cout();
        auto rowOf = [w, cin, cout](int t, int c) { return w + (size_t(t) * cin + c) * cout; };
        int lensAll[9], lensDense[9];
        std::fill_n(lensAll, 9, cin);
        std::fill_n(lensDense, 9, L.din);
        auto* wAll = reinterpret_cast<int8_t*>(ws + lay.wAll[l]);
        auto* wDense = reinterpret_cast<int8_t*>(ws + lay.wDense[l]);
        packK4(9, lensAll, cout, rowOf, wAll);
        packK4(9, lensDense, L.dout, rowOf, wDense); // the top-left din x dout corner of each tap
        L.wAll = wAll;
        L.wDense = wDense;
        auto* mult = reinterpret_cast<float*>(ws + lay.mult[l]);
        std::fill_n(mult, roundUp16(cout), 0.f);
        sparseBlockRequantMultipliers(s, scales, l, mult);
        L.mult = mult;
    }
    {
        // layer 0 reads x + 128 everywhere (padding included): subtract 128 * sum of each output's weights
        auto* bias0 = reinterpret_cast<int32_t*>(ws + lay.bias0);
        int const cout = layerOutChannels(s, 0);
        std::fill_n(bias0, roundUp16(cout), 0);
        for (size_t r = 0; r < size_t(9) * C; ++r)
            for (int o = 0; o < cout; ++o)
                bias0[o] -= int32_t(kSignedZero) * weights[0][r * cout + o];
        job.layers[0].bias = bias0;
    }
    {
        // collect: all channels per layer (active pixels), the dense ones (inactive pixels)
        int lensAll[kSparseBlockLayers], lensDense[kSparseBlockLayers], colAll[kSparseBlockLayers],
            colDense[kSparseBlockLayers];
        int col = 0;
        for (int l = 0; l < kSparseBlockLayers; ++l)
        {
            LayerPlan const& L = job.layers[l];
            job.cAll[l] = ByteRun{L.dst, L.ld, 0, L.cout()};
            lensAll[l] = L.cout();
            colAll[l] = col;
            if (L.dout > 0)
            {
                lensDense[job.nCDense] = L.dout;
                colDense[job.nCDense] = col;
                job.cDense[job.nCDense++] = ByteRun{L.dst, L.ld, 0, L.dout};
            }
            col += L.cout();
        }
        auto* wcAll = reinterpret_cast<int8_t*>(ws + lay.wcAll);
        auto* wcDense = reinterpret_cast<int8_t*>(ws + lay.wcDense);
        packK4(kSparseBlockLayers, lensAll, C,
            [&](int r, int c) { return collectWeight + size_t(colAll[r] + c) * C; }, wcAll);
        packK4(job.nCDense, lensDense, C,
            [&](int r, int c) { return collectWeight + size_t(colDense[r] + c) * C; }, wcDense);
        job.wcAll = wcAll;
        job.wcDense = wcDense;
        auto* cScale = reinterpret_cast<float*>(ws + lay.cScale);
        auto* cBias = reinterpret_cast<float*>(ws + lay.cBias);
        std::fill_n(cScale, roundUp16(C), 0.f);
        std::fill_n(cBias, roundUp16(C), 0.f);
        std::copy_n(scales.collect, C, cScale);
        std::copy_n(collectBias, C, cBias);
        job.cScale = cScale;
        job.cBias = cBias;
    }

    size_t const elemSize = ioType == IoType::kFloat32 ? sizeof(float) : sizeof(uint16_t);
    size_t const hw = job.hw;
    for (int n = 0; n < s.batch; ++n)
    {
        job.x = x + size_t(n) * C * hw;
        job.y = static_cast<char*>(y) + size_t(n) * C * hw * elemSize;
        char const* m = static_cast<char const*>(mask) + size_t(n) * hw * elemSize;
        std::fill(job.state, job.state + job.np, uint8_t(0));
        for (int yy = 0; yy < s.height; ++yy)
            for (int xx = 0; xx < s.width; ++xx)
            {
                size_t const p = size_t(yy) * s.width + xx;
                bool const on = ioType == IoType::kFloat32
                    ? reinterpret_cast<float const*>(m)[p] != 0.f
                    : (reinterpret_cast<uint16_t const*>(m)[p] & 0x7fffu) != 0;
                job.state[size_t(yy + 1) * job.Wp + xx + 1] = on ? 2 : 1;
            }
        std::fill_n(job.counts, 3, 0);
        for (int yy = 0; yy < s.height; ++yy)
            for (int xx = 0; xx < s.width; ++xx)
            {
                int const p = (yy + 1) * job.Wp + xx + 1;
                if (job.state[p] == 2)
                {
                    job.lists[0][job.counts[0]++] = p;
                    continue;
                }
                job.lists[1][job.counts[1]++] = p;
                uint8_t const* up = job.state + p - job.Wp;
                uint8_t const* mid = job.state + p;
                uint8_t const* dn = job.state + p + job.Wp;
                if (up[-1] == 2 || up[0] == 2 || up[1] == 2 || mid[-1] == 2 || mid[1] == 2 || dn[-1] == 2
                    || dn[0] == 2 || dn[1] == 2)
                    job.lists[2][job.counts[2]++] = p;
            }
        runPhase(runner, size_t(s.height + 2), [&](size_t i) { job.prepareRow(i); });
        for (int l = 0; l < kSparseBlockLayers; ++l)
        {
            job.layer = l;
            runPhase(runner, job.layerItems(), [&](size_t i) { job.layerItem(i); });
        }
        runPhase(runner, job.collectItems(), [&](size_t i) { job.collectItem(i); });
    }
}

} // namespace smsr::cpu

#include "sparseBlockCpu.h"

#include "cpuBlas.h"
#include "cpuKernels.h"
#include "parallelPhase.h"
#include "halfConvert.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

namespace smsr::cpu
{
namespace
{

// Pixels per span / gather batch: a gathered batch (256 x 9 Cin floats, 576 KB for Cin = 64) stays in L2.
constexpr int kTile = 256;
constexpr size_t kAlign = 64;
// Relative extra cost per pixel of the gather path (im2col copy) over computing a pixel inside a contiguous
// span straight from the padded maps: a span is computed whole when count * (1 + kGatherCost) >= span size.
// (Estimate for the OpenBLAS path: im2col copy + BLAS packing measured at ~10-35 % of a pixel's GEMM time.)
constexpr double kGatherCost = 0.35;

size_t alignUp(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

//! One 3x3 layer: where its input and output channels live, and its weights packed for both paths.
struct LayerPlan
{
    int din{0}, cin{0};   // input channels: the first din of the cin are dense (layer 0: din = cin = C)
    int dout{0}, sout{0}; // output channels, dense first
    float const* src{nullptr}; // input: src[p * srcStride + srcOff + c]
    int srcStride{0}, srcOff{0};
    float* dst{nullptr};       // output map: dst[p * cout + o]
    // The op's weights come as 3 x 3 x cin x cout, i.e. a (9 cin) x cout matrix with row = tap * cin + c: the
    // GEMMs read it in place (per tap, or whole for the gather path), so no per-call transpose.
    float const* w{nullptr};
    float const* iAll{nullptr}; // igemm: 9 cin x roundUp16(cout): w itself when cout % 16 == 0, else a padded copy
    float* wDense{nullptr};     // dense-only part: 9 din x roundUp16(dout), row = tap * din + c (zero-padded)
    int cout() const { return dout + sout; }
};

//! Pixel sets of one image for one part of the work: whole spans computed in place, and a gather list.
struct WorkSet
{
    int32_t* spans{nullptr}; // span indices
    int nSpans{0};
    int32_t* list{nullptr};  // padded pixel indices, ascending
    int nList{0};
    int items() const { return nSpans + (nList + kTile - 1) / kTile; }
};

//! Workspace layout (byte offsets), identical for every call with the same shape.
struct Layout
{
    size_t x0{0}, feat[kSparseBlockLayers]{}, state{0}, sets[5]{}, y32{0};
    // packed weights: K x roundUp16(N), zero-padded (iAll / iWc only where N is not a multiple of 16)
    size_t wDense[kSparseBlockLayers]{}, iAll[kSparseBlockLayers]{}, wcDense{0}, iWc{0}, total{0};
};

int roundUp16(int v) { return (v + 15) / 16 * 16; }

int sumDense(SparseBlockShape const& s)
{
    int n = 0;
    for (int l = 0; l < kSparseBlockLayers; ++l)
        n += s.dense[l];
    return n;
}

//! Spans are segments of one image row (<= kTile pixels, equal lengths): contiguous in the padded maps and in y.
struct Spans
{
    int perRow{1}, len{1};
    explicit Spans(int width = 1) : perRow((width + kTile - 1) / kTile), len((width + perRow - 1) / perRow) {}
};

Layout makeLayout(SparseBlockShape const& s, IoType io)
{
    size_t const np = size_t(s.height + 2) * (s.width + 2);
    size_t const hw = size_t(s.height) * s.width;
    size_t const nSpans = size_t(s.height) * Spans(s.width).perRow;
    Layout L;
    size_t off = 0;
    auto take = [&off](size_t bytes) {
        size_t const at = off;
        off += alignUp(bytes);
        return at;
    };
    L.x0 = take(np * s.channels * sizeof(float));
    for (int l = 0; l < kSparseBlockLayers; ++l)
        L.feat[l] = take(np * layerOutChannels(s, l) * sizeof(float));
    L.state = take(np);
    for (auto& set : L.sets) // layer active/inactive, collect active/inactive, halo: spans then list
        set = take((hw + nSpans) * sizeof(int32_t));
    L.y32 = take(io == IoType::kFloat16 ? hw * s.channels * sizeof(float) : 0); // float16 output staging
    for (int l = 0; l < kSparseBlockLayers; ++l)
    {
        size_t const cin = layerInChannels(s, l);
        int const cout = layerOutChannels(s, l);
        size_t const din = l == 0 ? s.channels : s.dense[l - 1];
        L.wDense[l] = take(9 * din * roundUp16(s.dense[l]) * sizeof(float));
        L.iAll[l] = take(cout % 16 ? 9 * cin * roundUp16(cout) * sizeof(float) : 0);
    }
    L.wcDense = take(size_t(sumDense(s)) * roundUp16(s.channels) * sizeof(float));
    L.iWc = take(s.channels % 16 ? size_t(collectInChannels(s)) * roundUp16(s.channels) * sizeof(float) : 0);
    L.total = off + kAlign; // slack to align the base pointer
    return L;
}

// ---- per-thread scratch (persistent: ONNX Runtime's pool threads live as long as the session) -------------
struct Scratch
{
    std::vector<float> gathered, product;
    float* get(std::vector<float>& v, size_t n)
    {
        if (v.size() < n)
            v.resize(n);
        return v.data();
    }
};
Scratch& scratch()
{
    thread_local Scratch s;
    return s;
}

//! One image. Maps are pixel-major over the zero-padded grid (see cpuKernels.h): x0 (C channels) and one map per
//! layer output f_l (D_l + S_l channels, dense first; small strides keep a 3-row window of a map in L2).
//! Sparse channels read as zeros at inactive pixels (written as zeros wherever something reads them), so the
//! next layer and the collect read any neighbour without a mask test.
//! Each layer: active pixels get all outputs from all inputs; inactive ones dense outputs from dense inputs. The
//! collect: all channels at active pixels, dense ones elsewhere. Work items of kTile pixels:
//!  - AVX-512: pixel lists through the indirect GEMM (rows read in place, fused ReLU store);
//!  - otherwise: whole spans (row segments) by one OpenBLAS GEMM per 3x3 tap on shifted views of the input map,
//!    or scattered pixels by im2col gather + one GEMM (a cost model picks per span).
struct ImageJob
{
    IoType io{IoType::kFloat32};
    int H{0}, W{0}, Wp{0}, C{0}, ctot{0}, sumD{0};
    size_t hw{0}, np{0};
    Spans spans;
    int nSpans{0};
    void const* x{nullptr};
    float* y{nullptr}; // float32 output (the image's y, or the staging buffer for float16)
    float* x0{nullptr};
    uint8_t* state{nullptr};
    WorkSet layerActive, layerInactive, collectActive, collectInactive;
    // igemm path: inactive pixels next to an active one. Only their sparse channels are ever read (by the 3x3
    // of an active pixel), so only they get the zeros; elsewhere the sparse channels are left unwritten.
    WorkSet halo;
    bool zeroAllInactive{true}; // OpenBLAS path: its whole-span GEMMs read every pixel's sparse channels
    LayerPlan layers[kSparseBlockLayers];
    float const* wc{nullptr};      // ctot x C (as given: 1 x 1 x ctot x C)
    float const* wcDense{nullptr}; // sumD x roundUp16(C): wc's dense rows in layer order, zero-padded
    RowRun allRuns[kSparseBlockLayers]{}, denseRuns[kSparseBlockLayers]{};
    int nDenseRuns{0};
    bool useIgemm{false};
    float const* iWc{nullptr}; // igemm: ctot x roundUp16(C) (wc itself when C % 16 == 0)
    float const* bias{nullptr};
    blas::SgemmFn sgemm{nullptr};
    Kernels const* k{nullptr};
    int layer{0}; // current phase

    int spanRow(int span) const { return span / spans.perRow; }
    int spanX(int span) const { return (span % spans.perRow) * spans.len; }
    int spanCount(int span) const { return std::min(spans.len, W - spanX(span)); }
    int spanStart(int span) const { return (spanRow(span) + 1) * Wp + spanX(span) + 1; } // padded index
    int tapOffset(int t) const { return (t / 3 - 1) * Wp + (t % 3 - 1); }

    void gemm(int trA, int trB, int m, int n, int kk, float const* a, int lda, float const* b, int ldb, float beta,
        float* c, int ldc) const
    {
        sgemm(blas::kRowMajor, trA, trB, m, n, kk, 1.f, a, lda, b, ldb, beta, c, ldc);
    }

    // -- phase: NCHW (float or half) -> padded pixel-major x0, one padded row per item; also zeroes the pads
    //    of the maps (interior values are all rewritten by the layers).
    void prepareRow(size_t item) const
    {
        int const yy = int(item) - 1;
        auto zeroPixels = [&](size_t p0, size_t n) {
            std::fill(x0 + p0 * C, x0 + (p0 + n) * C, 0.f);
            for (LayerPlan const& L : layers)
                std::fill(L.dst + p0 * L.cout(), L.dst + (p0 + n) * L.cout(), 0.f);
        };
        size_t const rowStart = size_t(item) * Wp;
        if (yy < 0 || yy >= H)
        {
            zeroPixels(rowStart, Wp);
            return;
        }
        zeroPixels(rowStart, 1);
        zeroPixels(rowStart + Wp - 1, 1);
        float* dstRow = x0 + (rowStart + 1) * C;
        if (io == IoType::kFloat32)
        {
            k->toPixelMajor(static_cast<float const*>(x) + size_t(yy) * W, hw, C, W, dstRow);
            return;
        }
        std::vector<float>& tmp = scratch().gathered; // float16: convert the row's planes first
        tmp.resize(size_t(C) * W);
        for (int c = 0; c < C; ++c)
            halfToFloat(static_cast<uint16_t const*>(x) + size_t(c) * hw + size_t(yy) * W, tmp.data() + size_t(c) * W, W);
        k->toPixelMajor(tmp.data(), W, C, W, dstRow);
    }

    // -- phase: one 3x3 layer
    //! Items of the current layer's phase: active part, inactive part (skipped when it writes nothing), halo zeros.
    size_t inactiveItems() const
    {
        LayerPlan const& L = layers[layer];
        return zeroAllInactive || L.dout > 0 ? layerInactive.items() : 0;
    }
    size_t haloItems() const
    {
        return zeroAllInactive || layers[layer].sout == 0 ? 0 : (halo.nList + kTile - 1) / kTile;
    }
    size_t layerItems() const { return layerActive.items() + inactiveItems() + haloItems(); }

    void layerItem(size_t item) const
    {
        LayerPlan const& L = layers[layer];
        if (item >= size_t(layerActive.items()) + inactiveItems())
        {
            size_t const b = item - layerActive.items() - inactiveItems();
            int32_t const* list = halo.list + b * kTile;
            int const n = int(std::min<size_t>(kTile, halo.nList - b * kTile));
            for (int i = 0; i < n; ++i)
                std::fill_n(L.dst + size_t(list[i]) * L.cout() + L.dout, L.sout, 0.f);
            return;
        }
        bool const active = int(item) < layerActive.items();
        WorkSet const& set = active ? layerActive : layerInactive;
        size_t const local = active ? item : item - layerActive.items();
        int const nOut = active ? L.cout() : L.dout;
        int const run = active ? L.cin : L.din;
        int const zeroTail = active || !zeroAllInactive ? 0 : L.sout;
        bool const compute = nOut > 0 && run > 0; // else: all outputs are ReLU(0) or 0
        Scratch& s = scratch();
        if (int(local) < set.nSpans)
        {
            int const span = set.spans[local];
            int const s0 = spanStart(span), n = spanCount(span);
            float* out = s.get(s.product, size_t(n) * std::max(nOut, 1));
            if (compute)
            {
                // tap t's weights: rows t * cin .. of w; the dense part is its top-left din x dout corner
                for (int t = 0; t < 9; ++t)
                    gemm(blas::kNoTrans, blas::kNoTrans, n, nOut, run,
                        L.src + long(s0 + tapOffset(t)) * L.srcStride + L.srcOff, L.srcStride,
                        L.w + size_t(t) * L.cin * L.cout(), L.cout(), t == 0 ? 0.f : 1.f, out, nOut);
            }
            else
                std::fill(out, out + size_t(n) * nOut, 0.f);
            k->storeSpan(out, nOut, s0, n, state, active ? 2 : 1, L.dst, L.cout(), zeroTail);
        }
        else
        {
            size_t const b = local - set.nSpans;
            int32_t const* list = set.list + b * kTile;
            int const n = int(std::min<size_t>(kTile, set.nList - b * kTile));
            if (useIgemm && compute)
            {
                RowRun taps[9];
                for (int t = 0; t < 9; ++t)
                    taps[t] = RowRun{L.src, L.srcStride, tapOffset(t) * L.srcStride + L.srcOff, run};
                k->igemm(list, n, taps, 9, active ? L.iAll : L.wDense, nOut, roundUp16(nOut), L.dst, L.cout(), zeroTail,
                    nullptr);
                return;
            }
            float* out = s.get(s.product, size_t(n) * std::max(nOut, 1));
            if (compute)
            {
                int const kdim = 9 * run;
                float* g = s.get(s.gathered, size_t(n) * kdim);
                k->gatherIm2col(L.src, L.srcStride, L.srcOff, run, list, n, Wp, g);
                gemm(blas::kNoTrans, blas::kNoTrans, n, nOut, kdim, g, kdim, active ? L.w : L.wDense,
                    active ? L.cout() : roundUp16(nOut), 0.f, out, nOut);
            }
            else
                std::fill(out, out + size_t(n) * nOut, 0.f);
            k->storeList(out, nOut, list, n, L.dst, L.cout(), zeroTail);
        }
    }

    // -- phase: collect 1x1 (+ bias) into NCHW float32: out (C x n) = wc^T (wc: K x C) * rows^T
    void collectItem(size_t item) const
    {
        bool const active = int(item) < collectActive.items();
        WorkSet const& set = active ? collectActive : collectInactive;
        size_t const local = active ? item : item - collectActive.items();
        Scratch& s = scratch();
        if (int(local) < set.nSpans) // a whole row segment, all channels (exact: sparse ones are 0 where inactive)
        {
            int const span = set.spans[local];
            int const n = spanCount(span);
            float* yt = y + size_t(spanRow(span)) * W + spanX(span);
            int col = 0;
            for (int l = 0; l < kSparseBlockLayers; ++l)
            {
                int const cout = layers[l].cout();
                gemm(blas::kTrans, blas::kTrans, C, n, cout, wc + size_t(col) * C, C,
                    layers[l].dst + size_t(spanStart(span)) * cout, cout, l == 0 ? 0.f : 1.f, yt, int(hw));
                col += cout;
            }
            k->addBias(yt, C, n, hw, bias);
            return;
        }
        size_t const b = local - set.nSpans;
        int32_t const* list = set.list + b * kTile;
        int const n = int(std::min<size_t>(kTile, set.nList - b * kTile));
        float* out = s.get(s.product, size_t(n) * C);
        int const kdim = active ? ctot : sumD;
        if (useIgemm)
        {
            if (kdim > 0)
                k->igemm(list, n, active ? allRuns : denseRuns, active ? kSparseBlockLayers : nDenseRuns,
                    active ? iWc : wcDense, C, roundUp16(C), nullptr, 0, 0, out);
            else
                std::fill(out, out + size_t(n) * C, 0.f);
            k->storeRows(out, C, list, n, Wp, W, hw, bias, y);
            return;
        }
        if (kdim > 0)
        {
            float* g = s.get(s.gathered, size_t(n) * kdim);
            k->gatherRows(active ? allRuns : denseRuns, active ? kSparseBlockLayers : nDenseRuns, list, n, g, kdim);
            gemm(blas::kTrans, blas::kTrans, C, n, kdim, active ? wc : wcDense, active ? C : roundUp16(C), g, kdim,
                0.f, out, n);
        }
        else
            std::fill(out, out + size_t(n) * C, 0.f);
        k->storeColumns(out, C, list, n, Wp, W, hw, bias, y);
    }
};

void packWeights(SparseBlockShape const& s, float const* const weights[4], float const* wc, char* ws,
    Layout const& lay, ImageJob& job)
{
    for (int l = 0; l < kSparseBlockLayers; ++l)
    {
        LayerPlan& L = job.layers[l];
        L.dout = s.dense[l];
        L.sout = s.sparse[l];
        L.din = l == 0 ? s.channels : s.dense[l - 1];
        L.cin = layerInChannels(s, l);
        L.src = l == 0 ? job.x0 : job.layers[l - 1].dst;
        L.srcStride = l == 0 ? s.channels : job.layers[l - 1].cout();
        L.srcOff = 0;
        L.dst = reinterpret_cast<float*>(ws + lay.feat[l]);
        L.w = weights[l]; // 3 x 3 x cin x cout: read in place
        L.wDense = reinterpret_cast<float*>(ws + lay.wDense[l]);
        int const cin = L.cin, cout = L.cout(), din = L.din, dout = L.dout;
        int const ldD = roundUp16(dout);
        // only the small dense-only corner is packed (its rows are not contiguous in w); this runs every call
        std::fill(L.wDense, L.wDense + size_t(9) * din * ldD, 0.f);
        for (int t = 0; t < 9; ++t)
            for (int c = 0; c < din; ++c)
                std::copy_n(L.w + (size_t(t) * cin + c) * cout, dout, L.wDense + (size_t(t) * din + c) * ldD);
        L.iAll = L.w;
        if (job.useIgemm && cout % 16 != 0) // igemm reads 16 outputs at a time: pad
        {
            int const ldA = roundUp16(cout);
            auto* padded = reinterpret_cast<float*>(ws + lay.iAll[l]);
            std::fill(padded, padded + size_t(9) * cin * ldA, 0.f);
            for (size_t r = 0; r < size_t(9) * cin; ++r)
                std::copy_n(L.w + r * cout, cout, padded + r * ldA);
            L.iAll = padded;
        }
        job.allRuns[l] = RowRun{L.dst, cout, 0, cout};
        if (dout > 0)
            job.denseRuns[job.nDenseRuns++] = RowRun{L.dst, cout, 0, dout};
    }
    // collect: wc's dense rows in the order the dense runs are gathered, padded to 16 outputs
    int const C = s.channels, ldC = roundUp16(C);
    auto* wcD = reinterpret_cast<float*>(ws + lay.wcDense);
    std::fill(wcD, wcD + size_t(job.sumD) * ldC, 0.f);
    float* d = wcD;
    for (int r = 0; r < job.nDenseRuns; ++r)
    {
        int col = 0;
        for (int l = 0; l < kSparseBlockLayers && job.layers[l].dst != job.denseRuns[r].base; ++l)
            col += job.layers[l].cout();
        for (int j = 0; j < job.denseRuns[r].len; ++j, d += ldC)
            std::copy_n(wc + size_t(col + j) * C, C, d);
    }
    job.wc = wc;
    job.wcDense = wcD;
    job.iWc = wc;
    if (job.useIgemm && C % 16 != 0)
    {
        auto* iWc = reinterpret_cast<float*>(ws + lay.iWc);
        std::fill(iWc, iWc + size_t(job.ctot) * ldC, 0.f);
        for (int kk = 0; kk < job.ctot; ++kk)
            std::copy_n(wc + size_t(kk) * C, C, iWc + size_t(kk) * ldC);
        job.iWc = iWc;
    }
}

} // namespace

void ThreadRunner::run(size_t total, void (*fn)(void*, size_t), void* data)
{
    size_t const n = std::min<size_t>(size_t(mThreads), total);
    if (n <= 1)
    {
        for (size_t i = 0; i < total; ++i)
            fn(data, i);
        return;
    }
    std::atomic<size_t> next{0};
    auto work = [&] {
        for (size_t i; (i = next.fetch_add(1)) < total;)
            fn(data, i);
    };
    std::vector<std::thread> threads;
    threads.reserve(n - 1);
    for (size_t t = 0; t + 1 < n; ++t)
        threads.emplace_back(work);
    work();
    for (auto& t : threads)
        t.join();
}

size_t sparseBlockWorkspaceSize(SparseBlockShape const& shape, IoType ioType) noexcept
{
    if (validateSparseBlockShape(shape) != nullptr)
        return 0;
    return makeLayout(shape, ioType).total;
}

std::string blasDescription()
{
    return blas::get().description + "; gather loops: " + kernels().name;
}

std::string computeDescription()
{
    Kernels const& k = kernels();
    char const* path = std::getenv("SMSR_CPU_PATH");
    if (k.igemm && !(path && std::strncmp(path, "blas", 4) == 0))
        return std::string("AVX-512 indirect GEMM (") + k.name + " loops)";
    return "im2col / shifted views + " + blas::get().description + " (" + k.name + " loops)";
}

void sparseBlockForwardEx(SparseBlockShape const& s, IoType ioType, void const* x, void const* mask,
    float const* const weights[4], float const* collectWeight, float const* collectBias, void* y,
    ParallelRunner& runner, void* workspace, size_t workspaceSize)
{
    if (char const* err = validateSparseBlockShape(s))
        throw std::invalid_argument(err);
    if (!x || !mask || !weights || !collectWeight || !collectBias || !y)
        throw std::invalid_argument("SMSRSparseBlock: null tensor pointer");
    for (int l = 0; l < kSparseBlockLayers; ++l)
        if (!weights[l])
            throw std::invalid_argument("SMSRSparseBlock: null weight pointer");
    if (ioType != IoType::kFloat32 && ioType != IoType::kFloat16)
        throw std::invalid_argument("SMSRSparseBlock: unsupported I/O type");
    if (int64_t(s.height + 2) * (s.width + 2) > (int64_t(1) << 30))
        throw std::invalid_argument("SMSRSparseBlock: image too large for the CPU op (more than 2^30 pixels)");

    Layout const lay = makeLayout(s, ioType);
    std::unique_ptr<char[]> owned;
    if (!workspace)
    {
        owned.reset(new char[lay.total]);
        workspace = owned.get();
    }
    else if (workspaceSize < lay.total)
        throw std::invalid_argument("SMSRSparseBlock: workspace too small");
    char* ws = reinterpret_cast<char*>(alignUp(reinterpret_cast<uintptr_t>(workspace)));
    // Tests: fill the workspace with NaN bit patterns, so that reading anything not written first shows.
    if (char const* poison = std::getenv("SMSR_CPU_POISON"); poison && *poison == '1')
        std::memset(ws, 0xff, lay.total - kAlign);

    ImageJob job;
    job.io = ioType;
    job.H = s.height;
    job.W = s.width;
    job.Wp = s.width + 2;
    job.C = s.channels;
    job.hw = size_t(s.height) * s.width;
    job.np = size_t(s.height + 2) * job.Wp;
    job.spans = Spans(s.width);
    job.nSpans = s.height * job.spans.perRow;
    job.ctot = collectInChannels(s);
    job.sumD = sumDense(s);
    job.x0 = reinterpret_cast<float*>(ws + lay.x0);
    job.state = reinterpret_cast<uint8_t*>(ws + lay.state);
    WorkSet* sets[5] = {&job.layerActive, &job.layerInactive, &job.collectActive, &job.collectInactive, &job.halo};
    for (int i = 0; i < 5; ++i)
    {
        sets[i]->spans = reinterpret_cast<int32_t*>(ws + lay.sets[i]);
        sets[i]->list = sets[i]->spans + job.nSpans;
    }
    job.bias = collectBias;
    job.k = &kernels();
    // Path: the AVX-512 indirect GEMM when the CPU has it, else im2col/shifted views + OpenBLAS with the cost
    // model. SMSR_CPU_PATH=blas | blas-gather | blas-span forces the OpenBLAS path (tests, benchmarks).
    char const* pathEnv = std::getenv("SMSR_CPU_PATH");
    std::string const path = pathEnv ? pathEnv : "";
    job.useIgemm = job.k->igemm != nullptr && path.rfind("blas", 0) != 0;
    double const g = job.useIgemm || path == "blas-gather" ? 0.0 : path == "blas-span" ? 1e30 : 1.0 + kGatherCost;
    job.sgemm = job.useIgemm ? nullptr : blas::get().sgemm; // OpenBLAS only where its path runs
    packWeights(s, weights, collectWeight, ws, lay, job);

    size_t const elemSize = ioType == IoType::kFloat32 ? sizeof(float) : sizeof(uint16_t);
    size_t const hw = job.hw;
    double const ctot = job.ctot, sumD = job.sumD;
    for (int n = 0; n < s.batch; ++n)
    {
        job.x = static_cast<char const*>(x) + size_t(n) * s.channels * hw * elemSize;
        job.y = ioType == IoType::kFloat32 ? static_cast<float*>(y) + size_t(n) * s.channels * hw
                                           : reinterpret_cast<float*>(ws + lay.y32);
        // pixel states on the padded grid (pads stay 0)
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
        // per span: compute it whole, or gather its pixels (cost model above)
        for (WorkSet* set : sets)
            set->nSpans = set->nList = 0;
        for (int sp = 0; sp < job.nSpans; ++sp)
        {
            int const s0 = job.spanStart(sp), cnt = job.spanCount(sp);
            uint8_t const* st = job.state + s0;
            int a = 0;
            for (int i = 0; i < cnt; ++i)
                a += st[i] == 2;
            int const q = cnt - a;
            auto split = [&](WorkSet& set, uint8_t want) {
                for (int i = 0; i < cnt; ++i)
                    if (st[i] == want)
                        set.list[set.nList++] = s0 + i;
            };
            if (a > 0 && a * g >= cnt)
                job.layerActive.spans[job.layerActive.nSpans++] = sp;
            else
                split(job.layerActive, 2);
            if (q > 0 && q * g >= cnt)
                job.layerInactive.spans[job.layerInactive.nSpans++] = sp;
            else
                split(job.layerInactive, 1);
            // collect: the whole span costs cnt * ctot, the split a * ctot + q * sumD (+ gathers)
            if ((a * ctot + q * sumD) * g >= cnt * ctot)
                job.collectActive.spans[job.collectActive.nSpans++] = sp;
            else
            {
                split(job.collectActive, 2);
                split(job.collectInactive, 1);
            }
        }
        job.zeroAllInactive = !job.useIgemm;
        if (job.useIgemm)
            for (int yy = 0; yy < s.height; ++yy)
                for (int xx = 0; xx < s.width; ++xx)
                {
                    int const p = (yy + 1) * job.Wp + xx + 1;
                    if (job.state[p] != 1)
                        continue;
                    uint8_t const* up = job.state + p - job.Wp;
                    uint8_t const* mid = job.state + p;
                    uint8_t const* dn = job.state + p + job.Wp;
                    bool const near = up[-1] == 2 || up[0] == 2 || up[1] == 2 || mid[-1] == 2 || mid[1] == 2
                        || dn[-1] == 2 || dn[0] == 2 || dn[1] == 2;
                    if (near)
                        job.halo.list[job.halo.nList++] = p;
                }

#ifdef SMSR_CPU_PROFILE // phase times on stderr (developer builds only)
        // calling thread's CPU time: meaningful with one thread, robust to other processes' load
        auto cpuMs = [] {
            timespec t;
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
            return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
        };
        double t0 = cpuMs();
        auto lap = [&t0, &cpuMs](char const* what) {
            double const t1 = cpuMs();
            std::fprintf(stderr, "%s %.2f ms  ", what, t1 - t0);
            t0 = t1;
        };
        std::fprintf(stderr, "[spans/list: layer act %d/%d inact %d/%d collect %d/%d/%d halo %d] ",
            job.layerActive.nSpans, job.layerActive.nList, job.layerInactive.nSpans, job.layerInactive.nList,
            job.collectActive.nSpans, job.collectActive.nList, job.collectInactive.nList, job.halo.nList);
#else
        auto lap = [](char const*) {};
#endif
        runPhase(runner, size_t(s.height + 2), [&](size_t i) { job.prepareRow(i); });
        lap("prepare");
        for (int l = 0; l < kSparseBlockLayers; ++l)
        {
            job.layer = l;
            runPhase(runner, job.layerItems(), [&](size_t i) { job.layerItem(i); });
            lap("layer");
        }
        runPhase(runner, job.collectActive.items() + job.collectInactive.items(), [&](size_t i) { job.collectItem(i); });
        lap("collect");
        if (ioType == IoType::kFloat16)
        {
            uint16_t* yh = static_cast<uint16_t*>(y) + size_t(n) * s.channels * hw;
            size_t const chunk = 1 << 16;
            size_t const total = hw * s.channels;
            runPhase(runner, (total + chunk - 1) / chunk, [&](size_t i) {
                size_t const at = i * chunk;
                floatToHalf(job.y + at, yh + at, std::min(chunk, total - at));
            });
        }
        lap("\n");
    }
}

void sparseBlockForward(SparseBlockShape const& shape, float const* x, float const* mask,
    float const* const weights[4], float const* collectWeight, float const* collectBias, float* y, int numThreads)
{
    ThreadRunner runner(numThreads);
    sparseBlockForwardEx(shape, IoType::kFloat32, x, mask, weights, collectWeight, collectBias, y, runner);
}

} // namespace smsr::cpu

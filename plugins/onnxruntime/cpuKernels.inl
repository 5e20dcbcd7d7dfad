// Body of the inner loops (see cpuKernels.h); included by cpuKernelsBase.cpp and cpuKernelsAvx512.cpp inside
// namespace smsr::cpu::<variant>. Plain loops: the compiler vectorises them for each target; the AVX-512 variant
// adds an intrinsics micro-kernel (igemm).
// Only local (anonymous-namespace) functions and no std:: templates here, so that the AVX-512 translation unit
// emits no out-of-line function another unit could pick up.
namespace
{

inline void copyRun(float* __restrict d, float const* __restrict s, int n)
{
    for (int i = 0; i < n; ++i)
        d[i] = s[i];
}

inline void zeroRun(float* __restrict d, int n)
{
    for (int i = 0; i < n; ++i)
        d[i] = 0.f;
}

inline void reluRun(float* __restrict d, float const* __restrict s, int n)
{
    for (int i = 0; i < n; ++i)
        d[i] = s[i] > 0.f ? s[i] : 0.f;
}

void gatherIm2col(float const* src, int stride, int off, int run, int32_t const* list, int count, int Wp, float* g)
{
    size_t const st = size_t(stride);
    if (run == stride)
    {
        // whole rows: the three horizontal taps of a padded row are one contiguous block
        int const block = 3 * run;
        for (int i = 0; i < count; ++i, g += 3 * block)
        {
            float const* c = src + (size_t(list[i]) - 1) * st;
            copyRun(g, c - size_t(Wp) * st, block);
            copyRun(g + block, c, block);
            copyRun(g + 2 * block, c + size_t(Wp) * st, block);
        }
        return;
    }
    for (int i = 0; i < count; ++i)
    {
        float const* c = src + size_t(list[i]) * st + off;
        for (int dy = -1; dy <= 1; ++dy)
            for (int dx = -1; dx <= 1; ++dx, g += run)
                copyRun(g, c + (long(dy) * Wp + dx) * long(st), run);
    }
}

void storeSpan(float const* out, int nOut, int s0, int count, uint8_t const* state, uint8_t want, float* dst, int ld,
    int zeroTail)
{
    for (int i = 0; i < count; ++i)
    {
        if (state[s0 + i] != want)
            continue;
        float* d = dst + size_t(s0 + i) * ld;
        reluRun(d, out + size_t(i) * nOut, nOut);
        zeroRun(d + nOut, zeroTail);
    }
}

void storeList(float const* out, int nOut, int32_t const* list, int count, float* dst, int ld, int zeroTail)
{
    for (int i = 0; i < count; ++i)
    {
        float* d = dst + size_t(list[i]) * ld;
        reluRun(d, out + size_t(i) * nOut, nOut);
        zeroRun(d + nOut, zeroTail);
    }
}

void gatherRows(RowRun const* runs, int nRuns, int32_t const* list, int count, float* g, int ldg)
{
    for (int i = 0; i < count; ++i)
    {
        float* d = g + size_t(i) * ldg;
        for (int r = 0; r < nRuns; ++r)
        {
            copyRun(d, runs[r].base + size_t(list[i]) * runs[r].stride + runs[r].off, runs[r].len);
            d += runs[r].len;
        }
    }
}

void storeColumns(float const* out, int channels, int32_t const* list, int count, int Wp, int W, size_t hw,
    float const* bias, float* y)
{
    // one channel plane at a time: reads of `out` are contiguous, writes follow the ascending pixel list
    int32_t pos[256];
    for (int base = 0; base < count; base += 256)
    {
        int const n = count - base < 256 ? count - base : 256;
        for (int i = 0; i < n; ++i)
        {
            int const p = list[base + i];
            int const py = p / Wp;
            pos[i] = (py - 1) * W + (p - py * Wp - 1);
        }
        for (int c = 0; c < channels; ++c)
        {
            float* __restrict yc = y + c * hw;
            float const* __restrict oc = out + size_t(c) * count + base;
            float const b = bias[c];
            for (int i = 0; i < n; ++i)
                yc[pos[i]] = oc[i] + b;
        }
    }
}

void addBias(float* y, int channels, int n, size_t ld, float const* bias)
{
    for (int c = 0; c < channels; ++c)
    {
        float* __restrict yc = y + c * ld;
        float const b = bias[c];
        for (int i = 0; i < n; ++i)
            yc[i] += b;
    }
}

void storeRows(float const* out, int channels, int32_t const* list, int count, int Wp, int W, size_t hw,
    float const* bias, float* y)
{
    int32_t pos[256];
    for (int base = 0; base < count; base += 256)
    {
        int const n = count - base < 256 ? count - base : 256;
        for (int i = 0; i < n; ++i)
        {
            int const p = list[base + i];
            int const py = p / Wp;
            pos[i] = (py - 1) * W + (p - py * Wp - 1);
        }
        float const* ob = out + size_t(base) * channels;
        // groups of 16 pixels; within a group one channel plane at a time (see storeColumns)
        for (int i = 0; i < n; i += 16)
        {
            int const m = n - i < 16 ? n - i : 16;
            float const* src = ob + size_t(i) * channels;
#if defined(__AVX512F__)
            if (m == 16 && pos[i + 15] - pos[i] == 15)
            {
                // 16 consecutive output pixels: per channel one strided gather, one contiguous store
                __m512i const rowIdx = _mm512_mullo_epi32(
                    _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(channels));
                for (int c = 0; c < channels; ++c)
                {
                    __m512 const v = _mm512_i32gather_ps(rowIdx, src + c, 4);
                    _mm512_storeu_ps(y + c * hw + pos[i], _mm512_add_ps(v, _mm512_set1_ps(bias[c])));
                }
                continue;
            }
#endif
            for (int c = 0; c < channels; ++c)
            {
                float* __restrict yc = y + c * hw;
                float const b = bias[c];
                for (int j = 0; j < m; ++j)
                    yc[pos[i + j]] = src[size_t(j) * channels + c] + b;
            }
        }
    }
}

#if defined(__AVX512F__)
// In-register transpose of a 16 x 16 float block (rows r[0..15] -> columns).
inline void transpose16(__m512* r)
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2)
    {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4)
    {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; ++i)
    {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
    }
    for (int i = 0; i < 8; ++i)
    {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    }
}
#endif

void toPixelMajor(float const* src, size_t plane, int channels, int n, float* dst)
{
    int i0 = 0;
#if defined(__AVX512F__)
    if (channels % 16 == 0) // 16 x 16 blocks through registers
        for (; i0 + 16 <= n; i0 += 16)
            for (int c0 = 0; c0 < channels; c0 += 16)
            {
                __m512 r[16];
                for (int j = 0; j < 16; ++j)
                    r[j] = _mm512_loadu_ps(src + (c0 + j) * plane + i0);
                transpose16(r);
                for (int j = 0; j < 16; ++j)
                    _mm512_storeu_ps(dst + size_t(i0 + j) * channels + c0, r[j]);
            }
#endif
    // blocks of 16 pixels: the destination block (16 x channels floats) stays in L1 while all planes are read
    for (; i0 < n; i0 += 16)
    {
        int const m = n - i0 < 16 ? n - i0 : 16;
        for (int c = 0; c < channels; ++c)
        {
            float const* __restrict s = src + c * plane + i0;
            float* __restrict d = dst + size_t(i0) * channels + c;
            for (int i = 0; i < m; ++i)
                d[size_t(i) * channels] = s[i];
        }
    }
}

#if defined(__AVX512F__)
// Indirect GEMM micro-kernel: MR pixels x NZ*16 outputs held in registers; per input channel one row of the
// packed weights (NZ vectors) and one broadcast per pixel. Rows are read straight from the feature maps.
// One tap (a run of input channels) for one block of MR pixels: acc += rows x w-slice.
template <int MR, int NZ>
inline void igemmTap(float const* const* a, int len, float const* wk, int ldw, __m512* accMem)
{
    __m512 acc[MR][NZ];
    for (int r = 0; r < MR; ++r)
        for (int z = 0; z < NZ; ++z)
            acc[r][z] = accMem[r * NZ + z];
    for (int c = 0; c < len; ++c, wk += ldw)
    {
        __m512 wv[NZ];
        for (int z = 0; z < NZ; ++z)
            wv[z] = _mm512_loadu_ps(wk + 16 * z);
        for (int r = 0; r < MR; ++r)
        {
            __m512 const b = _mm512_set1_ps(a[r][c]);
            for (int z = 0; z < NZ; ++z)
                acc[r][z] = _mm512_fmadd_ps(b, wv[z], acc[r][z]);
        }
    }
    for (int r = 0; r < MR; ++r)
        for (int z = 0; z < NZ; ++z)
            accMem[r * NZ + z] = acc[r][z];
}

inline void prefetchRow(float const* row, int len)
{
    char const* p = reinterpret_cast<char const*>(row);
    for (int b = 0; b < len * 4; b += 64)
        _mm_prefetch(p + b, _MM_HINT_T0);
}

// Tiles of TB blocks of MR pixels, tap-major: a tap's weight slice (len x 16 NZ floats) stays in L1 across the
// tile's blocks; the next tap's rows are prefetched meanwhile (the collect streams its inputs from memory).
template <int MR, int NZ>
void igemmChunk(int32_t const* list, int count, RowRun const* taps, int nTaps, float const* w, int n, int ldw, int n0,
    float* dst, int ld, float* out)
{
    constexpr int TB = 4;
    int const nHere = n - n0 < NZ * 16 ? n - n0 : NZ * 16;
    __m512 const zero = _mm512_set1_ps(0.f);
    for (int i0 = 0; i0 < count; i0 += MR * TB)
    {
        int const tileCount = count - i0 < MR * TB ? count - i0 : MR * TB;
        int const nb = (tileCount + MR - 1) / MR;
        int32_t pix[TB][MR];
        for (int b = 0; b < nb; ++b)
        {
            int const m = tileCount - b * MR < MR ? tileCount - b * MR : MR;
            for (int r = 0; r < MR; ++r)
                pix[b][r] = list[i0 + b * MR + (r < m ? r : m - 1)]; // short block: repeat a valid pixel
        }
        __m512 acc[TB][MR * NZ];
        for (int b = 0; b < nb; ++b)
            for (int j = 0; j < MR * NZ; ++j)
                acc[b][j] = zero;
        float const* wk = w + n0;
        for (int t = 0; t < nTaps; ++t)
        {
            RowRun const tap = taps[t];
            for (int b = 0; b < nb; ++b)
            {
                float const* a[MR];
                for (int r = 0; r < MR; ++r)
                    a[r] = tap.base + long(pix[b][r]) * tap.stride + tap.off;
                if (t + 1 < nTaps)
                    for (int r = 0; r < MR; ++r)
                        prefetchRow(taps[t + 1].base + long(pix[b][r]) * taps[t + 1].stride + taps[t + 1].off,
                            taps[t + 1].len);
                else if (i0 + MR * TB + b * MR < count) // next tile's first tap
                    for (int r = 0; r < MR && i0 + MR * TB + b * MR + r < count; ++r)
                        prefetchRow(taps[0].base + long(list[i0 + MR * TB + b * MR + r]) * taps[0].stride + taps[0].off,
                            taps[0].len);
                igemmTap<MR, NZ>(a, tap.len, wk, ldw, acc[b]);
            }
            wk += long(tap.len) * ldw;
        }
        for (int b = 0; b < nb; ++b)
        {
            int const m = tileCount - b * MR < MR ? tileCount - b * MR : MR;
            for (int r = 0; r < m; ++r)
                for (int z = 0; z < NZ; ++z)
                {
                    int const o = 16 * z;
                    int const left = nHere - o;
                    __mmask16 const mk = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
                    if (dst)
                        _mm512_mask_storeu_ps(dst + long(pix[b][r]) * ld + n0 + o, mk,
                            _mm512_max_ps(acc[b][r * NZ + z], zero));
                    else
                        _mm512_mask_storeu_ps(out + long(i0 + b * MR + r) * n + n0 + o, mk, acc[b][r * NZ + z]);
                }
        }
    }
}

void igemm(int32_t const* list, int count, RowRun const* taps, int nTaps, float const* w, int n, int ldw, float* dst,
    int ld, int zeroTail, float* out)
{
    for (int n0 = 0; n0 < n; n0 += 64)
    {
        int const nz = (n - n0 + 15) / 16;
        switch (nz >= 4 ? 4 : nz)
        {
        case 4: igemmChunk<6, 4>(list, count, taps, nTaps, w, n, ldw, n0, dst, ld, out); break;
        case 3: igemmChunk<8, 3>(list, count, taps, nTaps, w, n, ldw, n0, dst, ld, out); break;
        case 2: igemmChunk<12, 2>(list, count, taps, nTaps, w, n, ldw, n0, dst, ld, out); break;
        default: igemmChunk<12, 1>(list, count, taps, nTaps, w, n, ldw, n0, dst, ld, out); break;
        }
    }
    if (dst && zeroTail > 0)
        for (int i = 0; i < count; ++i)
            zeroRun(dst + long(list[i]) * ld + n, zeroTail);
}
#define SMSR_IGEMM igemm
#else
#define SMSR_IGEMM nullptr
#endif

} // namespace

Kernels const& get()
{
    static Kernels const k{
        gatherIm2col, storeSpan, storeList, gatherRows, storeColumns, addBias, SMSR_IGEMM, storeRows, toPixelMajor,
        SMSR_KERNELS_NAME};
    return k;
}

// AVX-512 VNNI INT8 loops (see cpuKernelsInt8.h); compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni
// -ffp-contract=off (own translation unit: no VNNI code can leak into the rest of the library).
//
// Indirect GEMM micro-kernel: MR pixels x NZ*16 outputs of int32 accumulators in registers; per group of 4 input
// channels one 64-byte weight vector per 16 outputs (k4 layout) and one 4-byte broadcast per pixel, then
// vpdpbusd (u8 activations x s8 weights, 4 products summed into each int32 lane, exact). Rows are read straight
// from the padded feature maps, as in the float op's AVX-512 kernel.
// Includes nothing with inline functions of external linkage (halfConvert.h, sparseBlockQuant.h): the linker could
// pick this unit's AVX-512 copy for the plain path's callers.
#include "cpuKernelsInt8.h"

#include <immintrin.h>

#include <cstring>

// GCC 12 warns inside its own avx512fintrin.h (undefined pass-through operands): not our code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace smsr::cpu::int8vnni
{
namespace
{

constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC; // explicit: independent of MXCSR

inline __m512i broadcast4(uint8_t const* p)
{
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

inline void prefetchRow(uint8_t const* row, int len)
{
    for (int b = 0; b < len; b += 64)
        _mm_prefetch(reinterpret_cast<char const*>(row) + b, _MM_HINT_T0);
}

// One block of MR pixels at a time, every tap with the accumulators held in registers (no spill between taps:
// runs are short here, 4..64 bytes, and a layer's packed weights, <= 37 KB for 64 x 64, stay in L1/L2); the next
// tap's rows (at the last tap: the next block's first rows) are prefetched meanwhile.
// NZ 16-output vectors; HT: the last one has <= 8 valid outputs and runs as a 256-bit vpdpbusd (half the cost of a
// 512-bit one on Zen 4 and on Intel's server cores): narrow dense layers (D_l = 24, 9, 3, ...) waste less.
template <int MR, int NZ, bool HT>
void igemmChunk(int32_t const* list, int count, ByteRun const* taps, int nTaps, int8_t const* w, int n, int ldw,
    int n0, int32_t const* bias, float const* mult, uint8_t* dst, int ld, int32_t* out)
{
    constexpr int NF = HT ? NZ - 1 : NZ; // full 512-bit vectors
    constexpr int NA = NF > 0 ? NF : 1;  // array size (no zero-length arrays)
    int const nHere = n - n0 < NZ * 16 ? n - n0 : NZ * 16;
    size_t const groupStride = size_t(ldw) * 4;
    __m512 const zeroF = _mm512_setzero_ps(), maxCode = _mm512_set1_ps(127.f);
    for (int i0 = 0; i0 < count; i0 += MR)
    {
        int const m = count - i0 < MR ? count - i0 : MR;
        int32_t pix[MR];
        for (int r = 0; r < MR; ++r)
            pix[r] = list[i0 + (r < m ? r : m - 1)]; // short block: repeat a valid pixel
        __m512i acc[MR][NA];
        __m256i accHalf[MR];
        for (int r = 0; r < MR; ++r)
        {
            for (int z = 0; z < NA; ++z)
                acc[r][z] = _mm512_setzero_si512();
            accHalf[r] = _mm256_setzero_si256();
        }
        int8_t const* wk = w + size_t(n0) * 4;
        for (int t = 0; t < nTaps; ++t)
        {
            ByteRun const tap = taps[t];
            uint8_t const* a[MR];
            for (int r = 0; r < MR; ++r)
                a[r] = tap.base + long(pix[r]) * tap.stride + tap.off;
            if (t + 1 < nTaps)
                for (int r = 0; r < MR; ++r)
                    prefetchRow(taps[t + 1].base + long(pix[r]) * taps[t + 1].stride + taps[t + 1].off, taps[t + 1].len);
            else
                for (int r = 0; r < MR && i0 + MR + r < count; ++r)
                    prefetchRow(taps[0].base + long(list[i0 + MR + r]) * taps[0].stride + taps[0].off, taps[0].len);
            int const groups = k4Groups(tap.len);
            for (int g = 0; g < groups; ++g, wk += groupStride)
            {
                __m512i wv[NA];
                for (int z = 0; z < NF; ++z)
                    wv[z] = _mm512_loadu_si512(wk + 64 * z);
                __m256i wHalf = _mm256_setzero_si256();
                if constexpr (HT)
                    wHalf = _mm256_loadu_si256(reinterpret_cast<__m256i const*>(wk + 64 * NF));
                for (int r = 0; r < MR; ++r)
                {
                    __m512i const b = broadcast4(a[r] + 4 * g);
                    for (int z = 0; z < NF; ++z)
                        acc[r][z] = _mm512_dpbusd_epi32(acc[r][z], b, wv[z]);
                    if constexpr (HT)
                        accHalf[r] = _mm256_dpbusd_epi32(accHalf[r], _mm512_castsi512_si256(b), wHalf);
                }
            }
        }
        for (int r = 0; r < m; ++r)
            for (int z = 0; z < NZ; ++z)
            {
                int const o = 16 * z;
                int const left = nHere - o;
                __mmask16 const mk = left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1);
                __m512i v = z < NF ? acc[r][z < NF ? z : 0] : _mm512_zextsi256_si512(accHalf[r]);
                if (bias)
                    v = _mm512_add_epi32(v, _mm512_loadu_si512(bias + n0 + o));
                if (dst)
                {
                    // requantize: float32(acc) * r, clamp to [0, 127] (ReLU), round to nearest even. Clamping
                    // before the rounding gives the same codes and keeps huge products out of the int convert.
                    __m512 f = _mm512_mul_round_ps(
                        _mm512_cvt_roundepi32_ps(v, kRound), _mm512_loadu_ps(mult + n0 + o), kRound);
                    f = _mm512_min_ps(_mm512_max_ps(f, zeroF), maxCode);
                    __m128i const codes = _mm512_cvtepi32_epi8(_mm512_cvt_roundps_epi32(f, kRound));
                    _mm_mask_storeu_epi8(dst + long(pix[r]) * ld + n0 + o, mk, codes);
                }
                else
                    _mm512_mask_storeu_epi32(out + long(i0 + r) * n + n0 + o, mk, v);
            }
    }
}

void igemm(int32_t const* list, int count, ByteRun const* taps, int nTaps, int8_t const* w, int n, int ldw,
    int32_t const* bias, float const* mult, uint8_t* dst, int ld, int zeroTail, int32_t* out)
{
    for (int n0 = 0; n0 < n; n0 += 64)
    {
        int const nz = (n - n0 + 15) / 16;
        bool const halfTail = nz <= 4 && n - n0 - 16 * (nz - 1) <= 8; // the last vector has <= 8 outputs
#define SMSR_CHUNK(MR, NZ, HT) igemmChunk<MR, NZ, HT>(list, count, taps, nTaps, w, n, ldw, n0, bias, mult, dst, ld, out)
        switch (nz >= 4 ? 4 : nz)
        {
        case 4: halfTail ? SMSR_CHUNK(6, 4, true) : SMSR_CHUNK(6, 4, false); break;
        case 3: halfTail ? SMSR_CHUNK(8, 3, true) : SMSR_CHUNK(8, 3, false); break;
        case 2: halfTail ? SMSR_CHUNK(12, 2, true) : SMSR_CHUNK(12, 2, false); break;
        default: halfTail ? SMSR_CHUNK(12, 1, true) : SMSR_CHUNK(12, 1, false); break;
        }
#undef SMSR_CHUNK
    }
    if (dst && zeroTail > 0)
        for (int i = 0; i < count; ++i)
            std::memset(dst + long(list[i]) * ld + n, 0, size_t(zeroTail));
}

//! y = float32(acc) * scale then + bias: explicit multiply and add (no FMA), round to nearest even.
inline __m512 dequant(__m512i acc, float scale, float bias)
{
    __m512 const prod = _mm512_mul_ps(_mm512_cvt_roundepi32_ps(acc, kRound), _mm512_set1_ps(scale));
    return _mm512_add_ps(prod, _mm512_set1_ps(bias));
}

// In-register transpose of a 16 x 16 block of 32-bit lanes (rows r[0..15] -> columns); as cpuKernels.inl's.
inline void transpose16(__m512i* ri)
{
    __m512 r[16], t[16];
    for (int i = 0; i < 16; ++i)
        r[i] = _mm512_castsi512_ps(ri[i]);
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
        ri[i] = _mm512_castps_si512(_mm512_shuffle_f32x4(t[i], t[i + 8], 0x88));
        ri[i + 8] = _mm512_castps_si512(_mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD));
    }
}

//! One channel's values at the m pixels of a group: a contiguous (masked) store when the pixels are consecutive,
//! else one scalar store per lane.
inline void storeChannel(__m512 v, bool half, void* y, size_t at, int32_t const* pos, int m, __mmask16 lanes,
    bool contiguous)
{
    if (half)
    {
        __m256i const h = _mm512_cvtps_ph(v, kRound);
        uint16_t* yc = static_cast<uint16_t*>(y) + at;
        if (contiguous)
            _mm256_mask_storeu_epi16(yc + pos[0], lanes, h);
        else
        {
            alignas(32) uint16_t tmp[16];
            _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), h);
            for (int j = 0; j < m; ++j)
                yc[pos[j]] = tmp[j];
        }
        return;
    }
    float* yc = static_cast<float*>(y) + at;
    if (contiguous)
        _mm512_mask_storeu_ps(yc + pos[0], lanes, v);
    else
    {
        alignas(64) float tmp[16];
        _mm512_store_ps(tmp, v);
        for (int j = 0; j < m; ++j)
            yc[pos[j]] = tmp[j];
    }
}

void storeCollect(int32_t const* acc, int channels, int32_t const* list, int count, int Wp, int W, size_t hw,
    float const* scale, float const* bias, bool half, void* y)
{
    int32_t pos[16];
    __m512i const rowIdx =
        _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32(channels));
    for (int i = 0; i < count; i += 16)
    {
        int const m = count - i < 16 ? count - i : 16;
        for (int j = 0; j < m; ++j)
        {
            int const p = list[i + j];
            int const py = p / Wp;
            pos[j] = (py - 1) * W + (p - py * Wp - 1);
        }
        int32_t const* src = acc + size_t(i) * channels;
        __mmask16 const lanes = m == 16 ? __mmask16(0xffff) : __mmask16((1u << m) - 1);
        bool const contiguous = pos[m - 1] - pos[0] == m - 1;
        int c0 = 0;
        if (m == 16) // 16 pixels x 16 channels through registers
            for (; c0 + 16 <= channels; c0 += 16)
            {
                __m512i r[16];
                for (int j = 0; j < 16; ++j)
                    r[j] = _mm512_loadu_si512(src + size_t(j) * channels + c0);
                transpose16(r);
                for (int k = 0; k < 16; ++k)
                    storeChannel(dequant(r[k], scale[c0 + k], bias[c0 + k]), half, y, size_t(c0 + k) * hw, pos, m,
                        lanes, contiguous);
            }
        for (int c = c0; c < channels; ++c) // the rest: one strided gather per channel
        {
            __m512 const v = dequant(
                _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), lanes, rowIdx, src + c, 4), scale[c], bias[c]);
            storeChannel(v, half, y, size_t(c) * hw, pos, m, lanes, contiguous);
        }
    }
}

} // namespace

Int8Kernels const& get()
{
    static Int8Kernels const k{igemm, storeCollect, "AVX-512 VNNI"};
    return k;
}

} // namespace smsr::cpu::int8vnni

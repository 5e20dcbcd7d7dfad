/*
 * IEEE binary16 <-> float32 conversion for the CPU op's float16 I/O (round to nearest even).
 * Uses the F16C instructions when the CPU has them (checked at run time, so the build stays portable).
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SMSR_HAVE_X86 1
#endif

namespace smsr::cpu
{

inline float halfToFloatScalar(uint16_t h)
{
    uint32_t const sign = uint32_t(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f)
        bits = sign | 0x7f800000u | (mant << 13); // inf / nan
    else if (exp != 0)
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    else if (mant == 0)
        bits = sign;
    else
    { // subnormal: normalise
        exp = 113;
        while ((mant & 0x400u) == 0)
        {
            mant <<= 1;
            --exp;
        }
        bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

inline uint16_t floatToHalfScalar(float f)
{
    uint32_t x;
    std::memcpy(&x, &f, 4);
    uint32_t const sign = (x >> 16) & 0x8000u;
    uint32_t const absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) // inf / nan (keep nan quiet)
        return uint16_t(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
    if (absx >= 0x477ff000u) // rounds to >= 65520: overflow to inf
        return uint16_t(sign | 0x7c00u);
    if (absx < 0x38800000u) // below the smallest normal half: subnormal or zero
    {
        if (absx < 0x33000000u) // < 2^-25: rounds to zero
            return uint16_t(sign);
        uint32_t const e = absx >> 23;
        uint32_t const m = (absx & 0x7fffffu) | 0x800000u;
        uint32_t const shift = 126 - e; // 14..24
        uint32_t r = m >> shift;
        uint32_t const rem = m & ((1u << shift) - 1);
        uint32_t const half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u)))
            ++r;
        return uint16_t(sign | r);
    }
    uint32_t const e = (absx >> 23) - 112;
    uint32_t r = (e << 10) | ((absx >> 13) & 0x3ffu);
    uint32_t const rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u)))
        ++r; // may carry into the exponent, which is the correct rounding
    return uint16_t(sign | r);
}

#if SMSR_HAVE_X86
__attribute__((target("avx,f16c"))) inline void halfToFloatF16c(uint16_t const* src, float* dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<__m128i const*>(src + i))));
    for (; i < n; ++i)
        dst[i] = halfToFloatScalar(src[i]);
}
__attribute__((target("avx,f16c"))) inline void floatToHalfF16c(float const* src, uint16_t* dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
            _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; ++i)
        dst[i] = floatToHalfScalar(src[i]);
}
inline bool cpuHasF16c()
{
    static bool const has = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
    }();
    return has;
}
#endif

inline void halfToFloat(uint16_t const* src, float* dst, size_t n)
{
#if SMSR_HAVE_X86
    if (cpuHasF16c())
        return halfToFloatF16c(src, dst, n);
#endif
    for (size_t i = 0; i < n; ++i)
        dst[i] = halfToFloatScalar(src[i]);
}

inline void floatToHalf(float const* src, uint16_t* dst, size_t n)
{
#if SMSR_HAVE_X86
    if (cpuHasF16c())
        return floatToHalfF16c(src, dst, n);
#endif
    for (size_t i = 0; i < n; ++i)
        dst[i] = floatToHalfScalar(src[i]);
}

} // namespace smsr::cpu

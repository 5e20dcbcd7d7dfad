// Plain (portable C++) INT8 loops (see cpuKernelsInt8.h) and the run-time choice of the variant.
// Compiled with -ffp-contract=off: the collect epilogue is a float32 multiply then a float32 add.
#include "cpuKernelsInt8.h"

#include "halfConvert.h"
#include "sparseBlockQuant.h"

#include <cstdlib>
#include <cstring>

namespace smsr::cpu
{
namespace int8plain
{
namespace
{

constexpr int kChunk = 64; // outputs per pass (an int32 accumulator row on the stack)

void igemm(int32_t const* list, int count, ByteRun const* taps, int nTaps, int8_t const* w, int n, int ldw,
    int32_t const* bias, float const* mult, uint8_t* dst, int ld, int zeroTail, int32_t* out)
{
    for (int i = 0; i < count; ++i)
    {
        long const p = list[i];
        for (int o0 = 0; o0 < n; o0 += kChunk)
        {
            int const nh = n - o0 < kChunk ? n - o0 : kChunk;
            int32_t acc[kChunk];
            for (int o = 0; o < nh; ++o)
                acc[o] = bias ? bias[o0 + o] : 0;
            int8_t const* wg = w + size_t(o0) * 4;
            for (int t = 0; t < nTaps; ++t)
            {
                uint8_t const* row = taps[t].base + p * taps[t].stride + taps[t].off;
                int const groups = k4Groups(taps[t].len);
                for (int g = 0; g < groups; ++g, wg += size_t(ldw) * 4)
                {
                    int32_t const a0 = row[4 * g], a1 = row[4 * g + 1], a2 = row[4 * g + 2], a3 = row[4 * g + 3];
                    for (int o = 0; o < nh; ++o)
                    {
                        int8_t const* wo = wg + 4 * o;
                        acc[o] += a0 * wo[0] + a1 * wo[1] + a2 * wo[2] + a3 * wo[3];
                    }
                }
            }
            if (dst)
            {
                uint8_t* d = dst + p * ld + o0;
                for (int o = 0; o < nh; ++o)
                    d[o] = uint8_t(requantizeReluCode(acc[o], mult[o0 + o]));
            }
            else
                for (int o = 0; o < nh; ++o)
                    out[size_t(i) * n + o0 + o] = acc[o];
        }
        if (dst && zeroTail > 0)
            std::memset(dst + p * ld + n, 0, size_t(zeroTail));
    }
}

void storeCollect(int32_t const* acc, int channels, int32_t const* list, int count, int Wp, int W, size_t hw,
    float const* scale, float const* bias, bool half, void* y)
{
    for (int i = 0; i < count; ++i)
    {
        int const p = list[i];
        int const py = p / Wp;
        size_t const pos = size_t(py - 1) * W + (p - py * Wp - 1);
        int32_t const* a = acc + size_t(i) * channels;
        for (int c = 0; c < channels; ++c)
        {
            float const v = dequantizeCollect(a[c], scale[c], bias[c]);
            if (half)
                static_cast<uint16_t*>(y)[c * hw + pos] = floatToHalfScalar(v);
            else
                static_cast<float*>(y)[c * hw + pos] = v;
        }
    }
}

} // namespace

Int8Kernels const& get()
{
    static Int8Kernels const k{igemm, storeCollect, "plain C++"};
    return k;
}
} // namespace int8plain

Int8Kernels const& int8Kernels()
{
#if defined(SMSR_HAVE_VNNI_KERNELS)
    static bool const cpuHasVnni = [] {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    }();
    // read per call (not cached), so tests can compare both paths in one process
    char const* env = std::getenv("SMSR_CPU_PATH");
    if (cpuHasVnni && !(env && std::strcmp(env, "plain") == 0))
        return int8vnni::get();
#endif
    return int8plain::get();
}

} // namespace smsr::cpu

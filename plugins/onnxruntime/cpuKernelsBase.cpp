#include "cpuKernels.h"

#include <cstdlib>
#include <cstring>

namespace smsr::cpu
{
namespace base
{
#define SMSR_KERNELS_NAME "baseline"
#include "cpuKernels.inl"
#undef SMSR_KERNELS_NAME
} // namespace base

Kernels const& kernels()
{
    static Kernels const* chosen = [] {
#if defined(SMSR_HAVE_AVX512_KERNELS)
        char const* env = std::getenv("SMSR_CPU_KERNELS");
        bool const forceBase = env && std::strcmp(env, "baseline") == 0;
        __builtin_cpu_init();
        if (!forceBase && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
            return &avx512::get();
#endif
        return &base::get();
    }();
    return *chosen;
}

} // namespace smsr::cpu

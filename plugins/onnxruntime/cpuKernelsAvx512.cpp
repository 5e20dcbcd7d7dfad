// AVX-512 build of cpuKernels.inl (compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl; see CMakeLists.txt).
#include "cpuKernels.h"

#include <immintrin.h>

// GCC 12 warns inside its own avx512fintrin.h (_mm512_max_ps' undefined pass-through operand): not our code.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace smsr::cpu
{
namespace avx512
{
#define SMSR_KERNELS_NAME "avx512"
#include "cpuKernels.inl"
#undef SMSR_KERNELS_NAME
} // namespace avx512
} // namespace smsr::cpu

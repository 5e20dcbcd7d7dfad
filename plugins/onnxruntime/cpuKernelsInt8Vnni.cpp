// AVX-512 VNNI INT8 loops (see cpuKernelsInt8.h); compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni
// -ffp-contract=off. Until the vpdpbusd micro-kernel lands, this variant runs the plain loops.
#include "cpuKernelsInt8.h"

namespace smsr::cpu::int8vnni
{
Int8Kernels const& get() { return int8plain::get(); }
} // namespace smsr::cpu::int8vnni

/*
 * OpenBLAS access for the CPU SMSRSparseBlock op, loaded at first use with dlopen.
 *
 * Why not link it: OpenBLAS picks its kernels (its "core type") in a constructor that runs when the library is
 * loaded. On CPUs it does not know yet (e.g. AMD family 0x1A / Zen 5) the DYNAMIC_ARCH build falls back to its
 * AVX2 "Haswell" kernels, half the speed of the AVX-512 ones (measured: 107 vs 190 GFLOP/s for our GEMM shapes).
 * Loading it ourselves lets us choose the core type first, for the duration of the load only:
 *   SMSR_OPENBLAS_CORETYPE=<name>  that OpenBLAS core (e.g. Haswell, SkylakeX); "auto" = OpenBLAS's own choice
 *                                  (which honours OPENBLAS_CORETYPE);
 *   unset                          SkylakeX on CPUs with the AVX-512 subsets its kernels need, even over an
 *                                  OPENBLAS_CORETYPE in the environment (that one usually targets NumPy/SciPy's
 *                                  copies of OpenBLAS); otherwise OpenBLAS's own choice.
 * blasDescription() / the benchmarks print the core actually used.
 *
 * Library search order: env SMSR_OPENBLAS_LIB (a path), the path found at configure time (scipy_openblas32 or
 * BLAS_LIBRARIES), then the sonames libscipy_openblas.so, libopenblas.so.0, libopenblas.so (RUNPATH / system).
 * Symbols: scipy_cblas_sgemm (scipy-openblas32 wheel, prefixed) or cblas_sgemm (any CBLAS).
 */
#pragma once

#include <string>

namespace smsr::cpu::blas
{

// CBLAS enum values (ABI of every CBLAS): passed as int so that no cblas.h is needed here.
constexpr int kRowMajor = 101;
constexpr int kNoTrans = 111;
constexpr int kTrans = 112;

using SgemmFn = void (*)(int order, int transA, int transB, int m, int n, int k, float alpha, float const* a, int lda,
    float const* b, int ldb, float beta, float* c, int ldc);

struct Library
{
    SgemmFn sgemm{nullptr};
    std::string description; //!< "OpenBLAS ... core SkylakeX (/path/libscipy_openblas.so)"
};

//! Loads the library once per process (thread-safe) and sets its own threading to 1 (we parallelise ourselves).
//! Throws std::runtime_error naming what was tried when no usable BLAS is found.
Library const& get();

} // namespace smsr::cpu::blas

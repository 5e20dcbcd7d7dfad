/*
 * CPU SIMT execution layer: lets CUDA kernel sources (.cu/.cuh) compile with the host compiler and run on
 * the CPU, one fiber per CUDA thread, so tests execute the same kernel code the GPU runs.
 *
 * Provides: __global__/__device__/__shared__ spellings, dim3, threadIdx/blockIdx/blockDim/gridDim,
 * __syncthreads (checked: all live threads, same source line), static __shared__ (function statics; blocks run
 * one at a time), dynamic shared memory (SIMT_DYNAMIC_SHARED, poisoned with 0xFF = NaN before every block),
 * warp intrinsics (__shfl*_sync, __ballot/__any/__all_sync, __syncwarp, __activemask), atomics, __half,
 * nvcuda::wmma m16n16k16 half->float fragments (warp-wide, alignment-checked), the <cuda_pipeline.h> cp.async
 * primitives (copies land at the issuing thread's __pipeline_wait_prior), and the small part of the CUDA
 * runtime API kernels' host code uses (malloc/memcpy/memset/streams/errors; everything synchronous).
 *
 * Scheduling: a block's warps run one after another in a chosen order (ascending, descending or random per
 * pass, env SIMT_ORDER=asc|desc|random[:seed] or simt::setWarpOrder); a warp runs until all its lanes are blocked
 * at __syncthreads or have exited, so a missing __syncthreads shows up as a data race. Deadlocks (a barrier that
 * can never complete) are reported with the waiting lines, and the launch fails instead of hanging.
 * Limits are documented in plugins/common/simt/README.md.
 */
#pragma once

#if !defined(SMSR_SIMT_EMULATION)
#error "cuda_runtime_emu.h is the CPU emulation of CUDA; define SMSR_SIMT_EMULATION (the CMake emu targets do)"
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>

// ----------------------------------------------------------------------------------------------- keywords
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __align__(n) alignas(n)
#define __shared__ static
#define __constant__ static
#define warpSize 32

// ----------------------------------------------------------------------------------------------- vector types
struct dim3
{
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};
struct uint3
{
    unsigned x, y, z;
};
// Alignment matches CUDA's, so UBSan flags misaligned vector loads exactly where the GPU would fault.
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

// ----------------------------------------------------------------------------------------------- runtime API
enum cudaError
{
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorLaunchFailure = 719,
};
typedef enum cudaError cudaError_t;
struct CUstream_st;
typedef CUstream_st* cudaStream_t;
enum cudaMemcpyKind
{
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

char const* cudaGetErrorString(cudaError_t e);
char const* cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaMalloc(void** p, size_t bytes);
template <typename T>
inline cudaError_t cudaMalloc(T** p, size_t bytes)
{
    return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
cudaError_t cudaFree(void* p);
cudaError_t cudaMemcpy(void* dst, void const* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, void const* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = nullptr);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s = nullptr);
cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize();

// ----------------------------------------------------------------------------------------------- __half
struct alignas(2) __half
{
    uint16_t bits;
};
struct alignas(4) __half2
{
    __half x, y;
};
namespace simt
{
uint16_t floatToHalfBits(float f); // round to nearest even, with subnormals, inf and NaN
float halfBitsToFloat(uint16_t h);
} // namespace simt
inline __half __float2half_rn(float f) { return __half{simt::floatToHalfBits(f)}; }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline float __half2float(__half h) { return simt::halfBitsToFloat(h.bits); }
inline __half2 __floats2half2_rn(float a, float b) { return {__float2half_rn(a), __float2half_rn(b)}; }
inline float __low2float(__half2 h) { return __half2float(h.x); }
inline float __high2float(__half2 h) { return __half2float(h.y); }

// ----------------------------------------------------------------------------------------------- IEEE intrinsics
// Round-to-nearest-even float32 operations that nvcc never contracts into an FMA; volatile keeps the host compiler
// from contracting them either (-ffp-contract=fast with FMA hardware), so emulated epilogues give the GPU's bits.
inline float __fmul_rn(float a, float b)
{
    volatile float r = a * b;
    return r;
}
inline float __fadd_rn(float a, float b)
{
    volatile float r = a + b;
    return r;
}
inline float __int2float_rn(int v) { return static_cast<float>(v); } // default rounding mode: nearest even
inline int __float2int_rn(float v) { return static_cast<int>(std::nearbyint(v)); } // caller keeps v in int range

// ----------------------------------------------------------------------------------------------- scheduler
namespace simt
{
enum class WarpOrder
{
    kAscending,
    kDescending,
    kRandom,
};
//! Order in which a block's warps are run (default from env SIMT_ORDER, else ascending).
void setWarpOrder(WarpOrder order, uint64_t seed = 1);
WarpOrder warpOrder();
char const* warpOrderName();

namespace detail
{
struct ThreadState
{
    uint3 tidx;
    unsigned linear; // linear thread id in the block
};
struct BlockState
{
    uint3 bidx;
    dim3 bdim;
    dim3 gdim;
};
extern ThreadState* gCurrent; // the running fiber's CUDA thread
extern BlockState gBlock;
void* dynamicShared();
void syncthreads(char const* file, int line);
//! Warp-collective exchange: every lane in `mask` deposits `value`; returns all 32 deposits (lane order).
uint64_t const* warpExchange(unsigned mask, uint64_t value, char const* what);
void warpDone(unsigned mask); // second barrier: nobody reuses the exchange slots before all have read them
void warpSync(unsigned mask, char const* what);
unsigned activeMask();
[[noreturn]] void fail(char const* fmt, ...);
void launch(char const* name, std::function<void()> body, dim3 grid, dim3 block, size_t smem);
// wmma support: the warp's scratch matrices (A, B, C/D: 16x16 each).
float* warpScratch();
} // namespace detail

inline void* dynamicSharedMemory() { return detail::dynamicShared(); }

template <typename... P>
struct Launcher
{
    char const* name;
    void (*kernel)(P...);
    dim3 grid, block;
    size_t smem;
    void operator()(P... args) const
    {
        auto k = kernel;
        // Every fiber calls the kernel with its own copy of the parameters, like a CUDA thread.
        detail::launch(name, [=]() { k(args...); }, grid, block, smem);
    }
};
template <typename... P>
Launcher<P...> makeLauncher(char const* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t)
{
    return Launcher<P...>{name, kernel, grid, block, smem};
}
} // namespace simt

#define threadIdx (::simt::detail::gCurrent->tidx)
#define blockIdx (::simt::detail::gBlock.bidx)
#define blockDim (::simt::detail::gBlock.bdim)
#define gridDim (::simt::detail::gBlock.gdim)
#define __syncthreads() ::simt::detail::syncthreads(__FILE__, __LINE__)

// ----------------------------------------------------------------------------------------------- warp intrinsics
inline void __syncwarp(unsigned mask = 0xffffffffu) { simt::detail::warpSync(mask, "__syncwarp"); }
inline unsigned __activemask() { return simt::detail::activeMask(); }

namespace simt
{
namespace detail
{
template <typename T>
inline uint64_t toBits(T v)
{
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of an unsupported type");
    uint64_t b = 0;
    std::memcpy(&b, &v, sizeof(T));
    return b;
}
template <typename T>
inline T fromBits(uint64_t b)
{
    T v;
    std::memcpy(&v, &b, sizeof(T));
    return v;
}
inline unsigned laneId() { return gCurrent->linear & 31u; }
template <typename T>
inline T shuffle(unsigned mask, T v, int srcLaneInSegment, int width, char const* what)
{
    uint64_t const* all = warpExchange(mask, toBits(v), what);
    unsigned const lane = laneId();
    unsigned const segBase = lane & ~unsigned(width - 1);
    unsigned src = srcLaneInSegment < 0 || srcLaneInSegment >= width ? lane : segBase + unsigned(srcLaneInSegment);
    if (!(mask >> src & 1u))
        fail("%s: source lane %u is not in the mask 0x%08x (undefined on the GPU)", what, src, mask);
    T r = fromBits<T>(all[src]);
    warpDone(mask);
    return r;
}
} // namespace detail
} // namespace simt

template <typename T>
inline T __shfl_sync(unsigned mask, T v, int srcLane, int width = 32)
{
    return simt::detail::shuffle(mask, v, srcLane & (width - 1), width, "__shfl_sync");
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int laneMask, int width = 32)
{
    int const lane = int(simt::detail::laneId()) & (width - 1);
    return simt::detail::shuffle(mask, v, lane ^ laneMask, width, "__shfl_xor_sync");
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    int const lane = int(simt::detail::laneId()) & (width - 1);
    int const src = lane + int(delta);
    return simt::detail::shuffle(mask, v, src < width ? src : lane, width, "__shfl_down_sync");
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32)
{
    int const lane = int(simt::detail::laneId()) & (width - 1);
    int const src = lane - int(delta);
    return simt::detail::shuffle(mask, v, src >= 0 ? src : lane, width, "__shfl_up_sync");
}
inline unsigned __ballot_sync(unsigned mask, int pred)
{
    uint64_t const* all = simt::detail::warpExchange(mask, pred ? 1u : 0u, "__ballot_sync");
    unsigned r = 0;
    for (unsigned l = 0; l < 32; ++l)
        if ((mask >> l & 1u) && all[l])
            r |= 1u << l;
    simt::detail::warpDone(mask);
    return r;
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __ffs(int v) { return __builtin_ffs(v); }
inline int __clz(int v) { return v == 0 ? 32 : __builtin_clz(unsigned(v)); }

// ----------------------------------------------------------------------------------------------- atomics
// Blocks run on one OS thread and fibers switch only inside barriers/collectives: plain read-modify-write is atomic.
template <typename T>
inline T atomicAdd(T* p, T v)
{
    T old = *p;
    *p = old + v;
    return old;
}
template <typename T>
inline T atomicMax(T* p, T v)
{
    T old = *p;
    *p = old < v ? v : old;
    return old;
}
template <typename T>
inline T atomicExch(T* p, T v)
{
    T old = *p;
    *p = v;
    return old;
}
template <typename T>
inline T atomicCAS(T* p, T cmp, T v)
{
    T old = *p;
    if (old == cmp)
        *p = v;
    return old;
}
template <typename T>
inline T __ldg(T const* p)
{
    return *p;
}
inline void __threadfence() {}
inline void __threadfence_block() {}

// ----------------------------------------------------------------------------------------------- cp.async
// <cuda_pipeline.h> primitives (sm_80 cp.async). Each thread queues its copies; the source is read when the copy is
// issued, but the shared-memory destination is written only when the issuing thread's __pipeline_wait_prior(N)
// retires the batch (all committed batches except the N newest). A missing or too-weak wait leaves stale data in
// shared memory, as on the GPU when the copy has not landed yet.
namespace simt
{
namespace detail
{
void pipelineCopy(void* dst, void const* src, size_t bytes, size_t zfill);
void pipelineCommit();
void pipelineWaitPrior(size_t newestPending);
} // namespace detail
} // namespace simt
inline void __pipeline_memcpy_async(void* dst, void const* src, size_t sizeAndAlign, size_t zfill = 0)
{
    simt::detail::pipelineCopy(dst, src, sizeAndAlign, zfill);
}
inline void __pipeline_commit() { simt::detail::pipelineCommit(); }
inline void __pipeline_wait_prior(size_t prior) { simt::detail::pipelineWaitPrior(prior); }

// ----------------------------------------------------------------------------------------------- wmma
namespace nvcuda
{
namespace wmma
{
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t
{
    mem_row_major,
    mem_col_major,
};

// Emulated register layout: lane t holds elements i = e*32 + t (e < 8) of the 16x16 tile, row i/16, col i%16.
// Real hardware uses another (unspecified) mapping; code that only does element-wise work on x[] is portable.
template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment
{
    static_assert(M == 16 && N == 16 && K == 16, "the SIMT layer emulates only m16n16k16 WMMA");
    static constexpr int num_elements = 8;
    T x[num_elements];
};

namespace detail
{
inline void checkPtr(void const* p, unsigned ldm, unsigned elemBytes, char const* what)
{
    if (reinterpret_cast<uintptr_t>(p) % 32 != 0)
        ::simt::detail::fail("%s: pointer %p is not 256-bit aligned (required by WMMA)", what, p);
    if ((ldm * elemBytes) % 16 != 0)
        ::simt::detail::fail("%s: ldm=%u is not a multiple of 16 bytes (required by WMMA)", what, ldm);
}
inline float toF(__half h) { return __half2float(h); }
inline float toF(float f) { return f; }
template <typename T>
inline T fromF(float f);
template <>
inline float fromF<float>(float f) { return f; }
template <>
inline __half fromF<__half>(float f) { return __float2half_rn(f); }
// fill_fragment of integer fragments: the value is converted like the float argument's static_cast on the GPU.
template <>
inline int fromF<int>(float f) { return static_cast<int>(f); }
template <>
inline signed char fromF<signed char>(float f) { return static_cast<signed char>(f); }
template <typename Frag>
inline void fillOwn(Frag& f, float v)
{
    for (int e = 0; e < Frag::num_elements; ++e)
        f.x[e] = fromF<typename std::remove_reference<decltype(f.x[0])>::type>(v);
}
} // namespace detail

template <typename Use, typename T, typename L>
inline void fill_fragment(fragment<Use, 16, 16, 16, T, L>& f, float v)
{
    ::simt::detail::warpSync(0xffffffffu, "wmma::fill_fragment");
    detail::fillOwn(f, v);
}

template <typename Use, typename T, typename L>
inline void load_matrix_sync(fragment<Use, 16, 16, 16, T, L>& f, T const* p, unsigned ldm)
{
    static_assert(!std::is_void<L>::value, "use the layout_t overload for accumulators");
    ::simt::detail::warpSync(0xffffffffu, "wmma::load_matrix_sync");
    detail::checkPtr(p, ldm, sizeof(T), "wmma::load_matrix_sync");
    unsigned const lane = ::simt::detail::laneId();
    for (int e = 0; e < 8; ++e)
    {
        unsigned const i = unsigned(e) * 32 + lane, r = i / 16, c = i % 16;
        f.x[e] = std::is_same<L, row_major>::value ? p[r * ldm + c] : p[c * ldm + r];
    }
    ::simt::detail::warpSync(0xffffffffu, "wmma::load_matrix_sync");
}

template <typename T>
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, T>& f, T const* p, unsigned ldm, layout_t layout)
{
    ::simt::detail::warpSync(0xffffffffu, "wmma::load_matrix_sync");
    detail::checkPtr(p, ldm, sizeof(T), "wmma::load_matrix_sync");
    unsigned const lane = ::simt::detail::laneId();
    for (int e = 0; e < 8; ++e)
    {
        unsigned const i = unsigned(e) * 32 + lane, r = i / 16, c = i % 16;
        f.x[e] = layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
    }
    ::simt::detail::warpSync(0xffffffffu, "wmma::load_matrix_sync");
}

template <typename T>
inline void store_matrix_sync(T* p, fragment<accumulator, 16, 16, 16, T> const& f, unsigned ldm, layout_t layout)
{
    ::simt::detail::warpSync(0xffffffffu, "wmma::store_matrix_sync");
    detail::checkPtr(p, ldm, sizeof(T), "wmma::store_matrix_sync");
    unsigned const lane = ::simt::detail::laneId();
    for (int e = 0; e < 8; ++e)
    {
        unsigned const i = unsigned(e) * 32 + lane, r = i / 16, c = i % 16;
        (layout == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[e];
    }
    ::simt::detail::warpSync(0xffffffffu, "wmma::store_matrix_sync");
}

//! D = A*B + C, warp-wide: lanes publish their A/B/C elements, then each computes its own D elements
//! (products of halves are exact in float; sums in float in k order — the GPU's order differs).
template <typename LA, typename LB, typename TC>
inline void mma_sync(fragment<accumulator, 16, 16, 16, TC>& d, fragment<matrix_a, 16, 16, 16, __half, LA> const& a,
    fragment<matrix_b, 16, 16, 16, __half, LB> const& b, fragment<accumulator, 16, 16, 16, TC> const& c)
{
    ::simt::detail::warpSync(0xffffffffu, "wmma::mma_sync");
    float* s = ::simt::detail::warpScratch();
    float* sa = s;
    float* sb = s + 256;
    float* sc = s + 512;
    unsigned const lane = ::simt::detail::laneId();
    for (int e = 0; e < 8; ++e)
    {
        unsigned const i = unsigned(e) * 32 + lane;
        sa[i] = __half2float(a.x[e]);
        sb[i] = __half2float(b.x[e]);
        sc[i] = detail::toF(c.x[e]);
    }
    ::simt::detail::warpSync(0xffffffffu, "wmma::mma_sync");
    float out[8];
    for (int e = 0; e < 8; ++e)
    {
        unsigned const i = unsigned(e) * 32 + lane, r = i / 16, col = i % 16;
        float acc = sc[i];
        for (unsigned k = 0; k < 16; ++k)
            acc += sa[r * 16 + k] * sb[k * 16 + col];
        out[e] = acc;
    }
    ::simt::detail::warpSync(0xffffffffu, "wmma::mma_sync"); // all lanes read the scratch before d is written
    for (int e = 0; e < 8; ++e)
        d.x[e] = detail::fromF<TC>(out[e]);
}

//! INT8 WMMA (sm_72+): D = A*B + C with signed char A/B and int32 accumulators, exact integer math. Like the GPU
//! without satf, sums wrap modulo 2^32 (computed in 64 bits, then truncated, so the emulation has no signed overflow).
template <typename LA, typename LB>
inline void mma_sync(fragment<accumulator, 16, 16, 16, int>& d, fragment<matrix_a, 16, 16, 16, signed char, LA> const& a,
    fragment<matrix_b, 16, 16, 16, signed char, LB> const& b, fragment<accumulator, 16, 16, 16, int> const& c)
{
    ::simt::detail::warpSync(0xffffffffu, "wmma::mma_sync");
    int32_t* s = reinterpret_cast<int32_t*>(::simt::detail::warpScratch()); // 768 x 4 bytes of raw scratch
    int32_t* sa = s;
    int32_t* sb = s + 256;
    int32_t* sc = s + 512;
    unsigned const lane = ::simt::detail::laneId();
    for (int e = 0; e < 8; ++e)
    {
        unsigned const i = unsigned(e) * 32 + lane;
        sa[i] = a.x[e];
        sb[i] = b.x[e];
        sc[i] = c.x[e];
    }
    ::simt::detail::warpSync(0xffffffffu, "wmma::mma_sync");
    int out[8];
    for (int e = 0; e < 8; ++e)
    {
        unsigned const i = unsigned(e) * 32 + lane, r = i / 16, col = i % 16;
        int64_t acc = sc[i];
        for (unsigned k = 0; k < 16; ++k)
            acc += int64_t(sa[r * 16 + k]) * sb[k * 16 + col];
        out[e] = int(int32_t(uint32_t(uint64_t(acc)))); // two's-complement wrap, as the GPU's int32 adder
    }
    ::simt::detail::warpSync(0xffffffffu, "wmma::mma_sync"); // all lanes read the scratch before d is written
    for (int e = 0; e < 8; ++e)
        d.x[e] = out[e];
}
} // namespace wmma
} // namespace nvcuda

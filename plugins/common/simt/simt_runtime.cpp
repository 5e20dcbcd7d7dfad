// CPU SIMT execution layer: fibers, block/warp scheduler, barriers, deadlock detection, runtime API.
// One fiber per CUDA thread; a hand-written context switch on x86-64 (ucontext elsewhere, ~10x slower).
#include "simt/cuda_runtime_emu.h"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define SIMT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SIMT_ASAN 1
#endif
#endif
#if defined(SIMT_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__x86_64__)
extern "C" void simt_switch_context(void** saveSp, void* newSp); // defined in asm below
extern "C" void simt_fiber_entry();
#else
#include <ucontext.h>
#endif

namespace simt
{
namespace detail
{
ThreadState* gCurrent = nullptr;
BlockState gBlock{};

namespace
{
// ------------------------------------------------------------------------------------------- context switch
#if defined(__x86_64__)
// Saves callee-saved registers, MXCSR and the x87 control word on the current stack, swaps stacks, restores.
asm(R"(
    .text
    .globl simt_switch_context
    .type simt_switch_context,@function
simt_switch_context:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size simt_switch_context, .-simt_switch_context
    .section .note.GNU-stack,"",@progbits
    .text
)");
#endif

enum class St : uint8_t
{
    kRunnable,
    kAtBlockBarrier,
    kAtWarpBarrier,
    kDone,
};

struct Fiber
{
    char* stackBase{nullptr}; // usable stack (above the guard page)
    size_t stackSize{0};
    void* sp{nullptr};
#if !defined(__x86_64__)
    ucontext_t uc{};
#endif
    void* asanFake{nullptr};
    ThreadState ts{};
    St state{St::kRunnable};
    char const* waitWhat{""};
    int waitLine{0};
};

struct Warp
{
    unsigned arrived{0};
    unsigned expected{0};
    char const* what{""};
    uint64_t slots[32]{};
    float scratch[768]{};
};

size_t const kPage = 4096;
size_t stackBytes()
{
    static size_t const bytes = [] {
        size_t kb = 0;
        if (char const* e = std::getenv("SIMT_STACK_KB"))
            kb = size_t(std::strtoul(e, nullptr, 10));
#if defined(SIMT_ASAN)
        if (kb == 0)
            kb = 512;
#else
        if (kb == 0)
            kb = 128;
#endif
        return (kb * 1024 + kPage - 1) / kPage * kPage;
    }();
    return bytes;
}

std::vector<Fiber> gFibers;
std::vector<Warp> gWarps;
std::vector<unsigned char> gDynSmem; // grown as needed; reallocated exactly for ASan builds
unsigned char* gDynSmemPtr = nullptr;
size_t gDynSmemBytes = 0;
void* gSchedSp = nullptr;
#if !defined(__x86_64__)
ucontext_t gSchedUc;
#endif
#if defined(SIMT_ASAN)
void const* gSchedStackBottom = nullptr; // the scheduler's (thread's) stack, for ASan's fiber switch annotations
size_t gSchedStackSize = 0;
void* gSchedFake = nullptr;
#endif
Fiber* gRunning = nullptr;
std::function<void()> const* gBody = nullptr;
unsigned gThreadsInBlock = 0;
unsigned gBlockArrived = 0;
char const* gBarrierFile = nullptr;
int gBarrierLine = 0;
bool gFailed = false;
std::string gFailMessage;
cudaError_t gLastError = cudaSuccess;

WarpOrder gOrder = [] {
    WarpOrder o = WarpOrder::kAscending;
    if (char const* e = std::getenv("SIMT_ORDER"))
    {
        std::string s(e);
        if (s.rfind("desc", 0) == 0)
            o = WarpOrder::kDescending;
        else if (s.rfind("rand", 0) == 0)
            o = WarpOrder::kRandom;
    }
    return o;
}();
std::mt19937_64 gRng = [] {
    uint64_t seed = 1;
    if (char const* e = std::getenv("SIMT_ORDER"))
        if (char const* c = std::strchr(e, ':'))
            seed = std::strtoull(c + 1, nullptr, 10);
    return std::mt19937_64(seed);
}();

void ensureFibers(unsigned n)
{
    size_t const bytes = stackBytes();
    while (gFibers.size() < n)
    {
        // Guard page below each stack: a fiber stack overflow faults instead of corrupting a neighbour.
        void* m = mmap(nullptr, bytes + kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
        {
            std::fprintf(stderr, "SIMT: mmap of a %zu-byte fiber stack failed\n", bytes);
            std::abort();
        }
        mprotect(m, kPage, PROT_NONE);
        Fiber f;
        f.stackBase = static_cast<char*>(m) + kPage;
        f.stackSize = bytes;
        gFibers.push_back(f);
    }
}

void switchToScheduler(Fiber* self, bool exiting)
{
#if defined(SIMT_ASAN)
    __sanitizer_start_switch_fiber(exiting ? nullptr : &self->asanFake, gSchedStackBottom, gSchedStackSize);
#else
    (void) exiting;
#endif
#if defined(__x86_64__)
    simt_switch_context(&self->sp, gSchedSp);
#else
    swapcontext(&self->uc, &gSchedUc);
#endif
#if defined(SIMT_ASAN)
    __sanitizer_finish_switch_fiber(self->asanFake, nullptr, nullptr);
#endif
}

void fiberMain()
{
#if defined(SIMT_ASAN)
    __sanitizer_finish_switch_fiber(nullptr, &gSchedStackBottom, &gSchedStackSize);
#endif
    Fiber* self = gRunning;
    (*gBody)();
    self->state = St::kDone;
    // A thread that exits releases nobody but may complete a __syncthreads the others wait at.
    switchToScheduler(self, true);
    std::abort(); // never resumed
}


} // namespace
} // namespace detail
} // namespace simt
#if defined(__x86_64__)
extern "C" void simt_fiber_entry() { simt::detail::fiberMain(); }
#endif
namespace simt
{
namespace detail
{
namespace
{
void initFiber(Fiber& f, ThreadState const& ts)
{
    f.ts = ts;
    f.state = St::kRunnable;
    f.asanFake = nullptr;
#if defined(SIMT_ASAN)
    __asan_unpoison_memory_region(f.stackBase, f.stackSize); // abandoned fibers may leave poison behind
#endif
#if defined(__x86_64__)
    uintptr_t top = (reinterpret_cast<uintptr_t>(f.stackBase) + f.stackSize) & ~uintptr_t(15);
    uint64_t* s = reinterpret_cast<uint64_t*>(top);
    *--s = 0;                                                   // fake return address of the entry function
    *--s = reinterpret_cast<uint64_t>(&simt_fiber_entry);       // `ret` of simt_switch_context lands here
    for (int i = 0; i < 6; ++i)
        *--s = 0;                                               // rbp rbx r12 r13 r14 r15
    uint32_t mxcsr = 0;
    uint16_t fcw = 0;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fcw));
    *--s = uint64_t(mxcsr) | (uint64_t(fcw) << 32);
    f.sp = s;
#else
    getcontext(&f.uc);
    f.uc.uc_stack.ss_sp = f.stackBase;
    f.uc.uc_stack.ss_size = f.stackSize;
    f.uc.uc_link = nullptr;
    makecontext(&f.uc, reinterpret_cast<void (*)()>(&fiberMain), 0);
#endif
}

void resume(Fiber& f)
{
    gRunning = &f;
    gCurrent = &f.ts;
#if defined(SIMT_ASAN)
    __sanitizer_start_switch_fiber(&gSchedFake, f.stackBase, f.stackSize);
#endif
#if defined(__x86_64__)
    simt_switch_context(&gSchedSp, f.sp);
#else
    swapcontext(&gSchedUc, &f.uc);
#endif
#if defined(SIMT_ASAN)
    __sanitizer_finish_switch_fiber(gSchedFake, nullptr, nullptr);
#endif
    gRunning = nullptr;
    gCurrent = nullptr;
}

void blockFail(std::string msg)
{
    if (!gFailed)
    {
        gFailed = true;
        gFailMessage = std::move(msg);
    }
}

unsigned liveThreads()
{
    unsigned n = 0;
    for (unsigned t = 0; t < gThreadsInBlock; ++t)
        n += gFibers[t].state != St::kDone;
    return n;
}

// Releases __syncthreads once every live thread waits there (threads that exited before it are an error:
// undefined behaviour on the GPU, and the usual cause of hangs).
void checkBlockBarrier()
{
    if (gBlockArrived == 0)
        return;
    unsigned const live = liveThreads();
    if (gBlockArrived < live)
        return;
    if (live < gThreadsInBlock)
    {
        char buf[256];
        std::snprintf(buf, sizeof buf, "__syncthreads at %s:%d reached by %u threads while %u threads of the block have exited",
            gBarrierFile, gBarrierLine, live, gThreadsInBlock - live);
        blockFail(buf);
        return;
    }
    for (unsigned t = 0; t < gThreadsInBlock; ++t)
        if (gFibers[t].state == St::kAtBlockBarrier)
            gFibers[t].state = St::kRunnable;
    gBlockArrived = 0;
    gBarrierFile = nullptr;
}

std::string describeWaits()
{
    std::string s;
    unsigned shown = 0;
    for (unsigned t = 0; t < gThreadsInBlock && shown < 8; ++t)
    {
        Fiber const& f = gFibers[t];
        if (f.state == St::kDone)
            continue;
        char buf[256];
        if (f.state == St::kAtBlockBarrier)
            std::snprintf(buf, sizeof buf, "\n  thread %u waits at __syncthreads %s:%d", t, f.waitWhat, f.waitLine);
        else
            std::snprintf(buf, sizeof buf, "\n  thread %u (warp %u) waits in %s (lanes arrived 0x%08x of 0x%08x)", t,
                t / 32, f.waitWhat, gWarps[t / 32].arrived, gWarps[t / 32].expected);
        s += buf;
        ++shown;
    }
    return s;
}

// Runs one warp until none of its lanes can make progress.
bool runWarp(unsigned w)
{
    bool progressed = false;
    unsigned const begin = w * 32, end = std::min(gThreadsInBlock, begin + 32);
    for (bool again = true; again && !gFailed;)
    {
        again = false;
        for (unsigned t = begin; t < end && !gFailed; ++t)
        {
            if (gFibers[t].state != St::kRunnable)
                continue;
            resume(gFibers[t]);
            progressed = again = true;
        }
        checkBlockBarrier();
    }
    return progressed;
}

void runBlock(std::vector<unsigned>& order, unsigned numWarps)
{
    while (!gFailed)
    {
        if (liveThreads() == 0)
            return;
        if (gOrder == WarpOrder::kRandom)
            std::shuffle(order.begin(), order.end(), gRng);
        bool progressed = false;
        for (unsigned i = 0; i < numWarps && !gFailed; ++i)
            progressed |= runWarp(order[i]);
        checkBlockBarrier();
        if (!progressed && !gFailed && liveThreads() != 0)
        {
            bool anyRunnable = false;
            for (unsigned t = 0; t < gThreadsInBlock; ++t)
                anyRunnable |= gFibers[t].state == St::kRunnable;
            if (!anyRunnable)
                blockFail("deadlock: no thread can proceed" + describeWaits());
        }
    }
}
} // namespace

// ------------------------------------------------------------------------------------------- in-kernel API
void* dynamicShared() { return gDynSmemPtr; }

[[noreturn]] void fail(char const* fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char where[96] = "";
    if (gCurrent)
        std::snprintf(where, sizeof where, " [block (%u,%u,%u) thread (%u,%u,%u)]", gBlock.bidx.x, gBlock.bidx.y,
            gBlock.bidx.z, gCurrent->tidx.x, gCurrent->tidx.y, gCurrent->tidx.z);
    blockFail(std::string(buf) + where);
    if (!gRunning)
    {
        std::fprintf(stderr, "SIMT ERROR: %s\n", gFailMessage.c_str());
        std::abort();
    }
    for (;;)
        switchToScheduler(gRunning, false); // the scheduler abandons the block and never resumes us
}

void syncthreads(char const* file, int line)
{
    Fiber* self = gRunning;
    if (!self)
        fail("__syncthreads called outside a kernel");
    if (gBarrierFile && (gBarrierLine != line || std::strcmp(gBarrierFile, file) != 0))
        fail("divergent __syncthreads: this thread is at %s:%d while others wait at %s:%d", file, line, gBarrierFile,
            gBarrierLine);
    gBarrierFile = file;
    gBarrierLine = line;
    self->state = St::kAtBlockBarrier;
    self->waitWhat = file;
    self->waitLine = line;
    ++gBlockArrived;
    switchToScheduler(self, false);
}

void warpSync(unsigned mask, char const* what)
{
    Fiber* self = gRunning;
    if (!self)
        fail("%s called outside a kernel", what);
    unsigned const lane = self->ts.linear & 31u, w = self->ts.linear / 32;
    unsigned const warpLanes = std::min(32u, gThreadsInBlock - w * 32);
    unsigned const full = warpLanes == 32 ? 0xffffffffu : (1u << warpLanes) - 1;
    if (!(mask >> lane & 1u))
        fail("%s: calling lane %u is not in its mask 0x%08x", what, lane, mask);
    mask &= full; // lanes beyond a partial last warp do not exist
    Warp& wp = gWarps[w];
    if (wp.arrived == 0)
    {
        wp.expected = mask;
        wp.what = what;
    }
    else if (wp.expected != mask || std::strcmp(wp.what, what) != 0)
        fail("warp divergence: lane %u is in %s (mask 0x%08x) while lanes 0x%08x wait in %s (mask 0x%08x)", lane, what,
            mask, wp.arrived, wp.what, wp.expected);
    wp.arrived |= 1u << lane;
    if (wp.arrived == wp.expected)
    {
        for (unsigned l = 0; l < warpLanes; ++l)
            if (wp.expected >> l & 1u)
                gFibers[w * 32 + l].state = St::kRunnable;
        wp.arrived = 0;
        return;
    }
    self->state = St::kAtWarpBarrier;
    self->waitWhat = what;
    self->waitLine = 0;
    switchToScheduler(self, false);
}

uint64_t const* warpExchange(unsigned mask, uint64_t value, char const* what)
{
    Warp& wp = gWarps[gRunning ? gRunning->ts.linear / 32 : 0];
    wp.slots[gRunning ? gRunning->ts.linear & 31u : 0] = value;
    warpSync(mask, what);
    return wp.slots;
}

void warpDone(unsigned mask) { warpSync(mask, "warp collective (read phase)"); }

unsigned activeMask()
{
    unsigned const w = gCurrent->linear / 32;
    unsigned m = 0;
    for (unsigned l = 0; l < 32 && w * 32 + l < gThreadsInBlock; ++l)
        if (gFibers[w * 32 + l].state != St::kDone)
            m |= 1u << l;
    return m;
}

float* warpScratch() { return gWarps[gCurrent->linear / 32].scratch; }
// ------------------------------------------------------------------------------------------- cp.async queues
namespace
{
struct PendingCopy
{
    unsigned char* dst;
    unsigned char data[16];
    uint32_t bytes;
    uint64_t batch; // index of the batch it belongs to (= commits made by the thread before it was issued)
};
struct CopyQueue
{
    std::vector<PendingCopy> pending;
    uint64_t commits{0};
};
std::vector<CopyQueue> gCopyQueues; // one per thread of the running block, reset at every block start

CopyQueue& myQueue()
{
    if (!gRunning)
        fail("cp.async primitive called outside a kernel");
    return gCopyQueues[gRunning->ts.linear];
}
} // namespace

void pipelineCopy(void* dst, void const* src, size_t bytes, size_t zfill)
{
    CopyQueue& q = myQueue();
    if (bytes != 4 && bytes != 8 && bytes != 16)
        fail("__pipeline_memcpy_async: size %zu is not 4, 8 or 16", bytes);
    if (zfill > bytes)
        fail("__pipeline_memcpy_async: zfill %zu > size %zu", zfill, bytes);
    if (reinterpret_cast<uintptr_t>(dst) % bytes != 0 || reinterpret_cast<uintptr_t>(src) % bytes != 0)
        fail("__pipeline_memcpy_async: %zu-byte copy with misaligned pointers (dst %p, src %p)", bytes, dst, src);
    unsigned char* const d = static_cast<unsigned char*>(dst);
    if (!gDynSmemPtr || d < gDynSmemPtr || d + bytes > gDynSmemPtr + gDynSmemBytes)
        fail("__pipeline_memcpy_async: destination %p is not inside the block's dynamic shared memory", dst);
    PendingCopy c{};
    c.dst = d;
    c.bytes = uint32_t(bytes);
    c.batch = q.commits;
    if (bytes > zfill) // src-size 0 reads nothing (predicated-off copy)
        std::memcpy(c.data, src, bytes - zfill);
    q.pending.push_back(c);
}

void pipelineCommit() { ++myQueue().commits; }

void pipelineWaitPrior(size_t newestPending)
{
    CopyQueue& q = myQueue();
    // Batches [0, commits - newestPending) must have landed; copies not yet committed are never waited for.
    uint64_t const limit = q.commits > newestPending ? q.commits - newestPending : 0;
    size_t keep = 0;
    for (size_t i = 0; i < q.pending.size(); ++i)
    {
        PendingCopy const& c = q.pending[i];
        if (c.batch < limit)
            std::memcpy(c.dst, c.data, c.bytes);
        else
            q.pending[keep++] = c;
    }
    q.pending.resize(keep);
}


void launch(char const* name, std::function<void()> body, dim3 grid, dim3 block, size_t smem)
{
    uint64_t const threads = uint64_t(block.x) * block.y * block.z;
    if (threads == 0 || threads > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535
        || smem > 48 * 1024)
    {
        std::fprintf(stderr, "SIMT ERROR: %s: invalid launch configuration grid (%u,%u,%u) block (%u,%u,%u) smem %zu\n",
            name, grid.x, grid.y, grid.z, block.x, block.y, block.z, smem);
        gLastError = cudaErrorInvalidConfiguration;
        return;
    }
    if (gRunning)
        fail("kernel %s launched from inside a kernel (dynamic parallelism is not emulated)", name);
    unsigned const n = unsigned(threads), numWarps = (n + 31) / 32;
    ensureFibers(n);
    gWarps.assign(numWarps, Warp{});
#if defined(SIMT_ASAN)
    // Exact-size allocation so ASan reports dynamic shared memory overruns.
    unsigned char* dyn = smem ? static_cast<unsigned char*>(std::aligned_alloc(128, (smem + 127) / 128 * 128)) : nullptr;
    if (dyn)
        __asan_poison_memory_region(dyn + smem, (smem + 127) / 128 * 128 - smem);
#else
    if (gDynSmem.size() < smem + 128)
        gDynSmem.resize(smem + 128);
    unsigned char* dyn = smem ? reinterpret_cast<unsigned char*>(
                                    (reinterpret_cast<uintptr_t>(gDynSmem.data()) + 127) & ~uintptr_t(127))
                              : nullptr;
#endif
    gDynSmemPtr = dyn;
    gDynSmemBytes = smem;
    gBody = &body;
    gThreadsInBlock = n;
    gFailed = false;
    gBlock.gdim = grid;
    gBlock.bdim = block;
    std::vector<unsigned> order(numWarps);
    for (unsigned i = 0; i < numWarps; ++i)
        order[i] = gOrder == WarpOrder::kDescending ? numWarps - 1 - i : i;

    for (unsigned bz = 0; bz < grid.z && !gFailed; ++bz)
        for (unsigned by = 0; by < grid.y && !gFailed; ++by)
            for (unsigned bx = 0; bx < grid.x && !gFailed; ++bx)
            {
                gBlock.bidx = uint3{bx, by, bz};
                if (dyn)
                    std::memset(dyn, 0xFF, smem); // NaN poison: reading unwritten shared memory shows up
                for (unsigned t = 0; t < n; ++t)
                {
                    ThreadState ts;
                    ts.linear = t;
                    ts.tidx = uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
                    initFiber(gFibers[t], ts);
                }
                gCopyQueues.assign(n, CopyQueue{}); // copies never waited for by a finished block are dropped
                for (Warp& w : gWarps)
                    w.arrived = 0;
                gBlockArrived = 0;
                gBarrierFile = nullptr;
                runBlock(order, numWarps);
            }
#if defined(SIMT_ASAN)
    std::free(dyn);
#endif
    gDynSmemPtr = nullptr;
    gBody = nullptr;
    if (gFailed)
    {
        std::fprintf(stderr, "SIMT ERROR: kernel %s, block (%u,%u,%u), warp order %s: %s\n", name, gBlock.bidx.x,
            gBlock.bidx.y, gBlock.bidx.z, warpOrderName(), gFailMessage.c_str());
        gLastError = cudaErrorLaunchFailure;
        gFailed = false;
    }
}
} // namespace detail

void setWarpOrder(WarpOrder order, uint64_t seed)
{
    detail::gOrder = order;
    detail::gRng.seed(seed);
}
WarpOrder warpOrder() { return detail::gOrder; }
char const* warpOrderName()
{
    switch (detail::gOrder)
    {
    case WarpOrder::kAscending: return "ascending";
    case WarpOrder::kDescending: return "descending";
    case WarpOrder::kRandom: return "random";
    }
    return "?";
}

// ------------------------------------------------------------------------------------------- __half
uint16_t floatToHalfBits(float f)
{
    uint32_t x;
    std::memcpy(&x, &f, 4);
    uint32_t const sign = (x >> 16) & 0x8000u;
    uint32_t const absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) // inf / NaN
        return uint16_t(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
    if (absx >= 0x477ff000u) // rounds to >= 65520: overflow to inf
        return uint16_t(sign | 0x7c00u);
    if (absx < 0x38800000u) // subnormal half (or zero): value = m * 2^-24
    {
        float const a = std::fabs(f) * 16777216.0f; // exact scaling by 2^24
        float const r = std::nearbyint(a);          // round-half-even in the default rounding mode
        return uint16_t(sign | uint32_t(r));
    }
    uint32_t const e = (absx >> 23) - 112; // rebias 127 -> 15
    uint32_t m = absx & 0x7fffffu;
    uint32_t h = (e << 10) | (m >> 13);
    uint32_t const rest = m & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        ++h; // may carry into the exponent, which is the correct result
    return uint16_t(sign | h);
}

float halfBitsToFloat(uint16_t h)
{
    uint32_t const sign = uint32_t(h & 0x8000u) << 16;
    uint32_t const e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    uint32_t x;
    if (e == 0)
    {
        float const v = float(m) * (1.0f / 16777216.0f);
        std::memcpy(&x, &v, 4);
        x |= sign;
    }
    else if (e == 31)
        x = sign | 0x7f800000u | (m << 13);
    else
        x = sign | ((e + 112) << 23) | (m << 13);
    float f;
    std::memcpy(&f, &x, 4);
    return f;
}
} // namespace simt

// ----------------------------------------------------------------------------------------------- runtime API
using simt::detail::gLastError;

char const* cudaGetErrorName(cudaError_t e)
{
    switch (e)
    {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    }
    return "cudaErrorUnknown";
}
char const* cudaGetErrorString(cudaError_t e) { return cudaGetErrorName(e); }
cudaError_t cudaGetLastError()
{
    cudaError_t e = gLastError;
    gLastError = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError() { return gLastError; }
cudaError_t cudaMalloc(void** p, size_t bytes)
{
    if (!p)
        return cudaErrorInvalidValue;
    *p = bytes ? std::aligned_alloc(256, (bytes + 255) / 256 * 256) : nullptr;
    return bytes && !*p ? cudaErrorMemoryAllocation : cudaSuccess;
}
cudaError_t cudaFree(void* p)
{
    std::free(p);
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, void const* src, size_t bytes, cudaMemcpyKind)
{
    if (bytes)
        std::memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, void const* src, size_t bytes, cudaMemcpyKind k, cudaStream_t)
{
    return cudaMemcpy(dst, src, bytes, k);
}
cudaError_t cudaMemset(void* p, int value, size_t bytes)
{
    if (bytes)
        std::memset(p, value, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t) { return cudaMemset(p, value, bytes); }
cudaError_t cudaStreamCreate(cudaStream_t* s)
{
    *s = nullptr;
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

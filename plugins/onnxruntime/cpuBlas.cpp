#include "cpuBlas.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <vector>

#ifndef SMSR_OPENBLAS_PATH
#define SMSR_OPENBLAS_PATH ""
#endif

namespace smsr::cpu::blas
{
namespace
{

void* findSymbol(void* handle, std::initializer_list<char const*> names)
{
    for (char const* n : names)
        if (void* s = dlsym(handle, n))
            return s;
    return nullptr;
}

bool cpuHasAvx512ForOpenBlas()
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512cd");
#else
    return false;
#endif
}

//! Sets (or overrides) `name` while the library's constructor runs and restores the previous state afterwards,
//! so the process environment is unchanged. Done once, under call_once.
class ScopedEnv
{
public:
    ScopedEnv(char const* name, char const* value, bool overrideExisting) : mName(name)
    {
        char const* old = std::getenv(name);
        if (old && !overrideExisting)
            return;
        if (old)
            mOld = old;
        mHadOld = old != nullptr;
        setenv(name, value, 1);
        mSet = true;
    }
    ~ScopedEnv()
    {
        if (!mSet)
            return;
        if (mHadOld)
            setenv(mName, mOld.c_str(), 1);
        else
            unsetenv(mName);
    }
    ScopedEnv(ScopedEnv const&) = delete;
    ScopedEnv& operator=(ScopedEnv const&) = delete;

private:
    char const* mName;
    std::string mOld;
    bool mHadOld{false};
    bool mSet{false};
};

//! Core type for our OpenBLAS instance: SMSR_OPENBLAS_CORETYPE if set ("auto" = OpenBLAS's own choice, which
//! honours OPENBLAS_CORETYPE), else SkylakeX on CPUs with the AVX-512 subsets its kernels use (also over an
//! OPENBLAS_CORETYPE from the environment: that one usually targets NumPy/SciPy, and this op's speed depends on
//! it), else OpenBLAS's own choice.
std::string chosenCoreType()
{
    if (char const* v = std::getenv("SMSR_OPENBLAS_CORETYPE"))
        return std::string(v) == "auto" ? std::string() : std::string(v);
    return cpuHasAvx512ForOpenBlas() ? "SkylakeX" : "";
}

Library load()
{
    std::vector<std::string> candidates;
    if (char const* env = std::getenv("SMSR_OPENBLAS_LIB"); env && *env)
        candidates.emplace_back(env);
    if (*SMSR_OPENBLAS_PATH)
        candidates.emplace_back(SMSR_OPENBLAS_PATH);
    for (char const* soname : {"libscipy_openblas.so", "libopenblas.so.0", "libopenblas.so"})
        candidates.emplace_back(soname);

    std::string tried;
    void* handle = nullptr;
    std::string path;
    {
        // Single-threaded OpenBLAS: the op splits the work itself (ONNX Runtime's intra-op pool or numThreads);
        // OpenBLAS threads on top would oversubscribe the cores.
        ScopedEnv threads("OPENBLAS_NUM_THREADS", "1", /*overrideExisting=*/false);
        std::string const coreType = chosenCoreType();
        std::optional<ScopedEnv> core;
        if (!coreType.empty())
            core.emplace("OPENBLAS_CORETYPE", coreType.c_str(), /*overrideExisting=*/true);
        for (auto const& c : candidates)
        {
            handle = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL);
            if (handle)
            {
                path = c;
                break;
            }
            char const* err = dlerror();
            tried += "\n  " + c + ": " + (err ? err : "not loadable");
        }
    }
    if (!handle)
        throw std::runtime_error("SMSRSparseBlock CPU op: no OpenBLAS library could be loaded. Tried:" + tried
            + "\nInstall it with `pip install scipy-openblas32` and rebuild, or set SMSR_OPENBLAS_LIB to a "
              "libopenblas.so path.");

    Library lib;
    lib.sgemm = reinterpret_cast<SgemmFn>(findSymbol(handle, {"scipy_cblas_sgemm", "cblas_sgemm"}));
    if (!lib.sgemm)
        throw std::runtime_error("SMSRSparseBlock CPU op: " + path + " exports neither scipy_cblas_sgemm nor cblas_sgemm");
    using SetThreadsFn = void (*)(int);
    if (auto setThreads = reinterpret_cast<SetThreadsFn>(
            findSymbol(handle, {"scipy_openblas_set_num_threads", "openblas_set_num_threads"})))
        setThreads(1);
    using StrFn = char const* (*) ();
    auto config = reinterpret_cast<StrFn>(findSymbol(handle, {"scipy_openblas_get_config", "openblas_get_config"}));
    auto core = reinterpret_cast<StrFn>(findSymbol(handle, {"scipy_openblas_get_corename", "openblas_get_corename"}));
    lib.description = std::string(config ? config() : "CBLAS") + ", core " + (core ? core() : "?") + " (" + path + ")";
    return lib; // the handle stays open for the life of the process
}

} // namespace

Library const& get()
{
    static std::once_flag once;
    static Library lib;
    static std::string error;
    std::call_once(once, [] {
        try
        {
            lib = load();
        }
        catch (std::exception const& e)
        {
            error = e.what();
        }
    });
    if (!lib.sgemm)
        throw std::runtime_error(error);
    return lib;
}

} // namespace smsr::cpu::blas

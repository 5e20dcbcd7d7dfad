/*
 * libsmsr_trt_plugin_autoreg.so only: registers the SMSRSparseBlock creator when the library is loaded, for tools
 * that merely dlopen a plugin library (trtexec --staticPlugins, polygraphy --plugins, ctypes.CDLL) instead of
 * handing it to the plugin registry (loadLibrary / trtexec --dynamicPlugins, which use libsmsr_trt_plugin.so).
 *
 * Nothing is linked against TensorRT: the registry is the one of a TensorRT library ALREADY loaded in the process
 * (dlopen RTLD_NOLOAD by soname), so load TensorRT first. The registry's binary layout differs between TensorRT 10
 * (deprecated IPluginV2 methods first) and TensorRT 11 / TensorRT-RTX (checked: 1.7), so it is chosen from the
 * library's version and called through a mirror class.
 */
#include "pluginLogging.h"
#include "smsrSparseBlockPlugin.h"

#include <cstdio>
#include <cstring>
#include <dlfcn.h>

namespace smsr
{
namespace plugin
{
// External linkage on purpose (see pluginLogging.cpp: anonymous-namespace mirrors get devirtualized away).
namespace abiRegistry
{
//! TensorRT 10.x IPluginRegistry (NvInferRuntimeCommon.h of 10.0 ... 10.14: only appended methods since 10.0).
class Registry10
{
public:
    virtual bool registerCreatorV2(void*, char const*) noexcept = 0;
    virtual void* const* getPluginCreatorList(int32_t*) const noexcept = 0;
    virtual void* getPluginCreator(char const*, char const*, char const*) noexcept = 0;

protected:
    virtual ~Registry10() noexcept = default;

public:
    virtual void setErrorRecorder(void*) noexcept = 0;
    virtual void* getErrorRecorder() const noexcept = 0;
    virtual bool deregisterCreatorV2(void const*) noexcept = 0;
    virtual bool isParentSearchEnabled() const = 0;
    virtual void setParentSearchEnabled(bool) = 0;
    virtual void* loadLibrary(char const*) noexcept = 0;
    virtual void deregisterLibrary(void*) noexcept = 0;
    virtual bool registerCreator(nvinfer1::IPluginCreatorInterface&, char const*) noexcept = 0;
    virtual nvinfer1::IPluginCreatorInterface* const* getAllCreators(int32_t*) const noexcept = 0;
    virtual nvinfer1::IPluginCreatorInterface* getCreator(char const*, char const*, char const*) noexcept = 0;
};

//! TensorRT 11.x / TensorRT-RTX IPluginRegistry (no IPluginV2 methods).
class Registry11
{
protected:
    virtual ~Registry11() noexcept = default;

public:
    virtual void setErrorRecorder(void*) noexcept = 0;
    virtual void* getErrorRecorder() const noexcept = 0;
    virtual bool isParentSearchEnabled() const = 0;
    virtual void setParentSearchEnabled(bool) = 0;
    virtual void* loadLibrary(char const*) noexcept = 0;
    virtual void deregisterLibrary(void*) noexcept = 0;
    virtual bool registerCreator(nvinfer1::IPluginCreatorInterface&, char const*) noexcept = 0;
    virtual nvinfer1::IPluginCreatorInterface* const* getAllCreators(int32_t*) const noexcept = 0;
    virtual nvinfer1::IPluginCreatorInterface* getCreator(char const*, char const*, char const*) noexcept = 0;
};

//! Logger finder over the loaded TensorRT library's getLogger() (its global logger).
class GlobalLoggerFinder final : public nvinfer1::ILoggerFinder
{
public:
    nvinfer1::ILogger* findLogger() override
    {
        return mGetLogger != nullptr ? mGetLogger() : nullptr;
    }
    nvinfer1::ILogger* (*mGetLogger)(){nullptr};
};
} // namespace abiRegistry

namespace
{

struct TensorRTLibrary
{
    char const* soname;
    bool rtx;
};

// Sonames of TensorRT libraries that own a plugin registry (full, lean, dispatch runtimes; TensorRT-RTX).
TensorRTLibrary const kLibraries[] = {
    {"libnvinfer.so.10", false},
    {"libnvinfer.so.11", false},
    {"libnvinfer_lean.so.10", false},
    {"libnvinfer_lean.so.11", false},
    {"libnvinfer_dispatch.so.10", false},
    {"libnvinfer_dispatch.so.11", false},
    {"libtensorrt_rtx.so.1", true},
};

template <typename Registry>
bool registerWith(void* registry) noexcept
{
    auto* r = static_cast<Registry*>(registry);
    nvinfer1::IPluginCreatorV3One& creator = libraryCreator();
    // Already there (e.g. libsmsr_trt_plugin.so was loaded through the registry): nothing to do. Scanned with
    // getAllCreators: getCreator would log an error for a plugin it does not know.
    int32_t nb = 0;
    nvinfer1::IPluginCreatorInterface* const* all = r->getAllCreators(&nb);
    for (int32_t i = 0; all != nullptr && i < nb; ++i)
    {
        if (all[i] == nullptr || std::strcmp(all[i]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0)
            continue;
        auto* other = static_cast<nvinfer1::IPluginCreatorV3One*>(all[i]);
        if (std::strcmp(other->getPluginName(), creator.getPluginName()) == 0
            && std::strcmp(other->getPluginVersion(), creator.getPluginVersion()) == 0
            && std::strcmp(other->getPluginNamespace(), creator.getPluginNamespace()) == 0)
        {
            logMessage(nvinfer1::ILogger::Severity::kINFO, "SMSRSparseBlock: creator already registered");
            return true;
        }
    }
    return r->registerCreator(creator, creator.getPluginNamespace());
}

abiRegistry::GlobalLoggerFinder& finder()
{
    static abiRegistry::GlobalLoggerFinder instance; // constructed on first use: safe in a load-time constructor
    return instance;
}

__attribute__((constructor)) void autoRegister()
{
    for (TensorRTLibrary const& lib : kLibraries)
    {
        void* const handle = dlopen(lib.soname, RTLD_NOW | RTLD_NOLOAD);
        if (handle == nullptr)
            continue;
        using GetRegistry = void* (*) ();
        using GetInt = int32_t (*)();
        auto const getRegistry = reinterpret_cast<GetRegistry>(dlsym(handle, "getPluginRegistry"));
        auto const getMajor = reinterpret_cast<GetInt>(dlsym(handle, "getInferLibMajorVersion"));
        finder().mGetLogger = reinterpret_cast<nvinfer1::ILogger* (*) ()>(dlsym(handle, "getLogger"));
        setLoggerFinder(&finder());
        void* const registry = getRegistry != nullptr ? getRegistry() : nullptr;
        if (registry == nullptr)
        {
            std::fprintf(stderr, "[SMSRSparseBlock] ERROR: %s has no plugin registry: SMSRSparseBlock not registered\n",
                lib.soname);
            continue;
        }
        bool const layout11 = lib.rtx || (getMajor != nullptr && getMajor() >= 11);
        bool const ok = layout11 ? registerWith<abiRegistry::Registry11>(registry)
                                 : registerWith<abiRegistry::Registry10>(registry);
        if (!ok)
            reportError(std::string("SMSRSparseBlock: registering the plugin creator with ") + lib.soname + " failed");
        return;
    }
    std::fprintf(stderr,
        "[SMSRSparseBlock] ERROR: libsmsr_trt_plugin_autoreg.so was loaded before any TensorRT library, so "
        "SMSRSparseBlock is not registered. Load TensorRT first (import tensorrt / tensorrt_rtx), or load "
        "libsmsr_trt_plugin.so through the plugin registry (load_library, trtexec --dynamicPlugins).\n");
}

} // namespace
} // namespace plugin
} // namespace smsr

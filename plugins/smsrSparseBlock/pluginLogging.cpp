#include "pluginLogging.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <cxxabi.h>
#include <typeinfo>

namespace smsr
{
namespace plugin
{

// ---------------------------------------------------------------------------------------------------------------
// Two binary layouts of ILoggerFinder / ILogger exist, and the one that matters is the loading library's, not the
// one of the headers this library was compiled against:
//  - TensorRT 10.x: plain classes, findLogger() / log() in the first virtual slot;
//  - TensorRT 11.x and TensorRT-RTX (checked: 1.7): both derive from IVersionedInterface, whose three virtuals
//    (getAPILanguage, getInterfaceInfo, destructor) come first.
// Calling through the wrong layout returns garbage (getAPILanguage() == 0 looks like "no logger") or worse, so the
// layout is read from the object's RTTI (its base classes) and only then called through a mirror class below.
// The mirrors have external linkage on purpose: in an anonymous namespace the compiler may conclude that no class
// implements them and devirtualize the calls into __cxa_pure_virtual (seen with g++ -O3).
// ---------------------------------------------------------------------------------------------------------------
namespace abi10
{
class Logger
{
public:
    virtual void log(int32_t severity, char const* msg) noexcept = 0;
    virtual ~Logger() = default;
};
class LoggerFinder
{
public:
    virtual Logger* findLogger() = 0;

protected:
    virtual ~LoggerFinder() = default;
};
} // namespace abi10

namespace abi11
{
struct InterfaceInfo
{
    char const* kind;
    int32_t major;
    int32_t minor;
};
class Versioned
{
public:
    virtual int32_t getAPILanguage() const noexcept = 0;
    virtual InterfaceInfo getInterfaceInfo() const noexcept = 0;
    virtual ~Versioned() noexcept = default;
};
class Logger : public Versioned
{
public:
    virtual void log(int32_t severity, char const* msg) noexcept = 0;
};
class LoggerFinder : public Versioned
{
public:
    virtual Logger* findLogger() = 0;
};
} // namespace abi11

namespace
{

enum class Layout : int32_t
{
    kUNKNOWN = 0,
    kLEGACY = 1,    //!< TensorRT 10.x
    kVERSIONED = 2, //!< TensorRT 11.x, TensorRT-RTX
};

// Searches the RTTI base-class graph of `ti` for a class named `mangled`.
bool hasBase(std::type_info const* ti, char const* mangled, int32_t depth = 0) noexcept
{
    if (ti == nullptr || depth > 16)
        return false;
    if (std::strcmp(ti->name(), mangled) == 0)
        return true;
    if (auto const* si = dynamic_cast<abi::__si_class_type_info const*>(ti))
        return hasBase(si->__base_type, mangled, depth + 1);
    if (auto const* vmi = dynamic_cast<abi::__vmi_class_type_info const*>(ti))
        for (unsigned i = 0; i < vmi->__base_count; ++i)
            if (hasBase(vmi->__base_info[i].__base_type, mangled, depth + 1))
                return true;
    return false;
}

// Layout of a TensorRT-owned polymorphic object (Itanium C++ ABI: typeinfo pointer just before the vtable).
Layout layoutOf(void const* object, char const* legacyName) noexcept
{
    if (object == nullptr)
        return Layout::kUNKNOWN;
    void const* const* vtable = *static_cast<void const* const* const*>(object);
    auto const* ti = static_cast<std::type_info const*>(vtable[-1]);
    if (ti == nullptr) // built without RTTI
        return Layout::kUNKNOWN;
    if (hasBase(ti, "N8nvinfer119IVersionedInterfaceE"))
        return Layout::kVERSIONED;
    if (hasBase(ti, legacyName))
        return Layout::kLEGACY;
    return Layout::kUNKNOWN;
}

// Without RTTI to go by, trust that the loading library matches the headers we were built with.
Layout headerLayout() noexcept
{
#if NV_TENSORRT_MAJOR >= 11
    return Layout::kVERSIONED;
#else
    return Layout::kLEGACY;
#endif
}

std::atomic<void*> gFinder{nullptr};
std::atomic<Layout> gFinderLayout{Layout::kUNKNOWN};

// Logs through TensorRT's logger; false when there is none.
bool logThroughFinder(int32_t severity, char const* msg) noexcept
{
    void* const finder = gFinder.load();
    if (finder == nullptr)
        return false;
    try
    {
        Layout const finderLayout = gFinderLayout.load();
        // Asked on every message: the logger of the current builder/runtime may change.
        void* const logger = finderLayout == Layout::kVERSIONED
            ? static_cast<void*>(static_cast<abi11::LoggerFinder*>(finder)->findLogger())
            : static_cast<void*>(static_cast<abi10::LoggerFinder*>(finder)->findLogger());
        if (logger == nullptr)
            return false;
        // The logger's own RTTI decides; without RTTI it has the finder's layout.
        Layout layout = layoutOf(logger, "N8nvinfer17ILoggerE");
        if (layout == Layout::kUNKNOWN)
            layout = finderLayout;
        if (layout == Layout::kVERSIONED)
            static_cast<abi11::Logger*>(logger)->log(severity, msg);
        else
            static_cast<abi10::Logger*>(logger)->log(severity, msg);
        return true;
    }
    catch (...)
    {
        return false;
    }
}

} // namespace

void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept
{
    Layout layout = layoutOf(finder, "N8nvinfer113ILoggerFinderE");
    if (layout == Layout::kUNKNOWN)
        layout = headerLayout();
    gFinderLayout.store(layout);
    gFinder.store(static_cast<void*>(finder));
}

void logMessage(nvinfer1::ILogger::Severity severity, char const* msg) noexcept
{
    if (msg == nullptr)
        return;
    if (logThroughFinder(static_cast<int32_t>(severity), msg))
        return;
    // No logger handed over (or none found): never lose errors and warnings.
    if (severity == nvinfer1::ILogger::Severity::kINTERNAL_ERROR || severity == nvinfer1::ILogger::Severity::kERROR)
        std::fprintf(stderr, "[SMSRSparseBlock] ERROR: %s\n", msg);
    else if (severity == nvinfer1::ILogger::Severity::kWARNING)
        std::fprintf(stderr, "[SMSRSparseBlock] WARNING: %s\n", msg);
}

void reportError(std::string const& msg, nvinfer1::IErrorRecorder* recorder) noexcept
{
    logMessage(nvinfer1::ILogger::Severity::kERROR, msg.c_str());
    if (recorder != nullptr)
    {
        try
        {
            recorder->reportError(nvinfer1::ErrorCode::kINVALID_ARGUMENT, msg.c_str());
        }
        catch (...)
        {
        }
    }
}

void logWarning(std::string const& msg) noexcept
{
    logMessage(nvinfer1::ILogger::Severity::kWARNING, msg.c_str());
}

} // namespace plugin
} // namespace smsr

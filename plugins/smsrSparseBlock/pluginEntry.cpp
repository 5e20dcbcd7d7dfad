/*
 * Entry points of the plugin library, as TensorRT's plugin registry expects them
 * (IPluginRegistry::loadLibrary, trtexec --dynamicPlugins, IBuilderConfig::setPluginsToSerialize):
 *   setLoggerFinder(ILoggerFinder*)       TensorRT hands over its logger finder
 *   getCreators(int32_t&)                 the library's IPluginV3 creators
 * plus smsrSparseBlockLiveObjects() for destructor-balance checks in tests.
 */
#include "pluginLogging.h"
#include "smsrSparseBlockPlugin.h"

#define SMSR_PLUGIN_API extern "C" __attribute__((visibility("default")))

nvinfer1::IPluginCreatorV3One& smsr::plugin::libraryCreator() noexcept
{
    static smsr::plugin::SMSRSparseBlockPluginCreator instance;
    return instance;
}

SMSR_PLUGIN_API void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept
{
    smsr::plugin::setLoggerFinder(finder);
}

SMSR_PLUGIN_API nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) noexcept
{
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&smsr::plugin::libraryCreator()};
    nbCreators = 1;
    return creators;
}

SMSR_PLUGIN_API int64_t smsrSparseBlockLiveObjects() noexcept
{
    return smsr::plugin::SMSRSparseBlockPlugin::liveObjects();
}

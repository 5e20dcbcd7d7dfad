/*
 * SMSRSparseBlock TensorRT plugin: reporting through TensorRT's logger and error recorder.
 *
 * TensorRT hands plugin libraries an ILoggerFinder (setLoggerFinder entry point). When none was handed over,
 * or it finds no logger, errors and warnings go to stderr so that they are never lost.
 */
#pragma once

#include <NvInferRuntime.h>

#include <string>

namespace smsr
{
namespace plugin
{

void setLoggerFinder(nvinfer1::ILoggerFinder* finder) noexcept;

void logMessage(nvinfer1::ILogger::Severity severity, char const* msg) noexcept;

//! Logs an error and, when an error recorder is known (runtime phase), reports it there too.
void reportError(std::string const& msg, nvinfer1::IErrorRecorder* recorder = nullptr) noexcept;

void logWarning(std::string const& msg) noexcept;

} // namespace plugin
} // namespace smsr

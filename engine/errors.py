"""User-facing errors of the runtime, each with a process exit code.

The CLI catches `EngineError` and prints its message (never a traceback); anything else is a bug.
Exit codes (documented in `python -m engine --help`):
    0  success
    2  usage error (bad option, no input matched, output would overwrite an input)
    3  an input image could not be used (missing, corrupt, unsupported, too large)
    4  model/engine error (missing or corrupt file, wrong scale, built for another TensorRT/GPU)
    5  a backend or a library it needs is not available (runtime not installed, plugin library missing), or the
       backend failed while running one input (BackendRunError: the file is reported, the others still run)
    6  out of memory even with the smallest tile
    7  the output file could not be written
When several inputs are processed and some fail, the exit code is the one of the first failure.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_MODEL = 4
EXIT_BACKEND = 5
EXIT_OOM = 6
EXIT_OUTPUT = 7


class EngineError(Exception):
    """Base of all errors caused by the user's inputs or environment (not bugs)."""

    exit_code = 1


class UsageError(EngineError):
    exit_code = EXIT_USAGE


# --- input images -------------------------------------------------------------------------
class ImageError(EngineError):
    exit_code = EXIT_INPUT


class ImageNotFoundError(ImageError):
    pass


class CorruptImageError(ImageError):
    pass


class UnsupportedImageError(ImageError):
    pass


class ImageTooLargeError(ImageError):
    """Pixel count above the decompression-bomb limit (override with --allow-large-images)."""


# --- models and engines -------------------------------------------------------------------
class ModelError(EngineError):
    exit_code = EXIT_MODEL


class ScaleMismatchError(ModelError):
    pass


class ManifestError(ModelError):
    """Engine manifest missing a key, unreadable, or describing another TensorRT/GPU/scale."""


# --- backends -----------------------------------------------------------------------------
class BackendUnavailableError(EngineError):
    exit_code = EXIT_BACKEND


class PluginLibraryError(BackendUnavailableError):
    """Custom-op / TensorRT plugin library missing, unloadable or not the one the engine was built with."""


class BackendRunError(EngineError):
    """The backend (ONNX Runtime, TensorRT, CUDA) failed on one call for a reason other than memory: reported for
    that input, the next inputs are still processed."""

    exit_code = EXIT_BACKEND


class OutOfMemoryError(EngineError):
    """Raised by the pipeline when even the smallest tile does not fit."""

    exit_code = EXIT_OOM


class BackendOutOfMemory(OutOfMemoryError):
    """Raised by a backend when one call ran out of (host or device) memory. The pipeline catches it and retries
    with smaller tiles; where nothing retries (`bench`, backend creation) it still reaches the user as a one-line
    out-of-memory error (exit 6), never as a traceback."""


# --- outputs ------------------------------------------------------------------------------
class OutputError(EngineError):
    exit_code = EXIT_OUTPUT

"""Locate the built TensorRT plugin library and its C++ host test (same search order as engine/ort_ops.py).

    1. the environment variable SMSR_TRT_PLUGIN_LIB (a path to libsmsr_trt_plugin.so),
    2. <repo>/build/plugins/smsrSparseBlock/libsmsr_trt_plugin.so,
    3. <repo>/build*/plugins/smsrSparseBlock/libsmsr_trt_plugin.so (newest first).
"""

from __future__ import annotations

import os
from pathlib import Path

LIB_NAME = "libsmsr_trt_plugin.so"
AUTOREG_NAME = "libsmsr_trt_plugin_autoreg.so"  # self-registering variant, built beside it
ENV_VAR = "SMSR_TRT_PLUGIN_LIB"
REL_DIR = Path("plugins") / "smsrSparseBlock"
HOST_TEST = Path("tests") / "smsr_trt_plugin_host_test"
BUILD_HINT = (
    "build it with: cmake -S . -B build -DTensorRT_ROOT=../shared/third_party/tensorrt-10.14 && "
    "cmake --build build -j2 (needs nvcc for the CUDA kernel library and TensorRT headers)"
)


def find_plugin_library(repo_root: Path) -> Path | None:
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env) if Path(env).is_file() else None
    default = repo_root / "build" / REL_DIR / LIB_NAME
    if default.is_file():
        return default
    found = sorted(repo_root.glob(f"build*/{REL_DIR}/{LIB_NAME}"), key=lambda p: p.stat().st_mtime, reverse=True)
    return found[0] if found else None


def autoreg_library(plugin_library: Path) -> Path | None:
    lib = plugin_library.parent / AUTOREG_NAME
    return lib if lib.is_file() else None


def host_test_binary(plugin_library: Path) -> Path | None:
    """The C++ host test built beside the library (None when the build skipped it)."""
    exe = plugin_library.parent / HOST_TEST
    return exe if exe.is_file() else None

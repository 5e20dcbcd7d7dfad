"""The CUDA driver library (libcuda, present wherever an NVIDIA driver is: desktop, server, Jetson), via ctypes.
One loader for the runtime's GPU checks and the engine builder's GPU detection."""
from __future__ import annotations

import ctypes


def load_libcuda() -> ctypes.CDLL | None:
    """The driver library, or None when this machine has no NVIDIA driver."""
    for lib in ("libcuda.so.1", "libcuda.so"):
        try:
            return ctypes.CDLL(lib)
        except OSError:
            continue
    return None

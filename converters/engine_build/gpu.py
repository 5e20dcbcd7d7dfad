"""Which GPU is in this machine, through the CUDA driver API (libcuda, present wherever a driver is: desktop,
server and Jetson). Returns None on machines without a driver or GPU; never initialises a TensorRT runtime."""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

from engine.cuda_driver import load_libcuda

_CC_MAJOR, _CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_{MAJOR,MINOR}


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "8.7"


def detect_gpu(device: int = 0) -> GpuInfo | None:
    cuda = load_libcuda()
    if cuda is None:
        return None
    try:
        if cuda.cuInit(0) != 0:
            return None
        dev = ctypes.c_int()
        if cuda.cuDeviceGet(ctypes.byref(dev), device) != 0:
            return None
        name = ctypes.create_string_buffer(256)
        major, minor = ctypes.c_int(), ctypes.c_int()
        if (cuda.cuDeviceGetName(name, 256, dev) != 0
                or cuda.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, dev) != 0
                or cuda.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, dev) != 0):
            return None
    except (AttributeError, OSError):
        return None
    return GpuInfo(name.value.decode(errors="replace"), f"{major.value}.{minor.value}")

"""Under SMSR_STRICT=1 (`make test`, CI) the set-up must have produced every part, so that no test module can
silently skip: PyTorch, Polygraphy, TensorRT-RTX, the checkpoint and Set5, the CPU op library, the TensorRT plugin
library and the emulated kernel tests including the real-model fixture."""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import strict

pytestmark = pytest.mark.skipif(not strict(), reason="only checked under SMSR_STRICT=1 (make test / CI)")

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["torch", "polygraphy", "onnx_graphsurgeon", "onnxconverter_common",
                                    "tensorrt_rtx", "png", "tritonclient.grpc"])
def test_python_dependency_installed(module):
    importlib.import_module(module)


def test_data_present(official_weights, set5_dir):
    assert official_weights.is_file() and (set5_dir / "LR_bicubic" / "X2").is_dir()


def test_cpu_op_library_built():
    from engine import ort_ops
    assert ort_ops.find_custom_op_library() is not None, ort_ops.BUILD_HINT


def test_trt_plugin_library_built():
    build = Path(os.environ.get("SMSR_BUILD_DIR", REPO / "build"))
    assert (build / "plugins" / "smsrSparseBlock" / "libsmsr_trt_plugin.so").is_file()


def test_emulated_kernel_tests_registered_with_real_model_fixture():
    build = Path(os.environ.get("SMSR_BUILD_DIR", REPO / "build"))
    assert shutil.which("ctest"), "ctest not on PATH"
    listed = subprocess.run(["ctest", "--test-dir", str(build), "-N"], capture_output=True, text=True,
                            timeout=60).stdout
    for name in ("smsr_kernels_emu_fixture", "smsr_simt_selftest"):
        assert name in listed, f"ctest does not list {name}:\n{listed}"

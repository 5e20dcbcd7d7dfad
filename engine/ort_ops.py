"""Find and register the compiled ONNX Runtime custom-op library (libsmsr_ort_ops.so: the CPU SMSRSparseBlock).

The library is built by CMake (target smsr_ort_ops, see README). Search order:
    1. the environment variable SMSR_ORT_OPS_LIB (a path to the .so),
    2. <repo>/build/plugins/onnxruntime/libsmsr_ort_ops.so (the standard build folder of a checkout),
    3. engine/lib/libsmsr_ort_ops.so next to this package: where `cmake --install build` puts it (install rule in
       plugins/onnxruntime/CMakeLists.txt), or copy it there by hand for an installed engine package.
Other build*/ folders (experiments, other configurations) are never searched: a stale library must not be picked
up silently; point SMSR_ORT_OPS_LIB at one to use it.
No PyTorch import here; onnxruntime is imported only by the caller.
"""
from __future__ import annotations

import os
import pathlib

from .errors import PluginLibraryError

LIB_NAME = "libsmsr_ort_ops.so"
ENV_VAR = "SMSR_ORT_OPS_LIB"
OP_DOMAIN = "smsr"
OP_TYPE = "SMSRSparseBlock"
MIN_ORT_VERSION = (1, 21)  # the library speaks ONNX Runtime's C API version 21

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
_SUBDIR = pathlib.Path("plugins") / "onnxruntime" / LIB_NAME
PACKAGE_LIB_DIR = pathlib.Path(__file__).resolve().parent / "lib"  # installed copy (cmake --install)
BUILD_HINT = ("build it with: cmake -S . -B build -DONNXRUNTIME_ROOT=<onnxruntime headers, e.g. "
              "../shared/third_party/onnxruntime-1.21> && cmake --build build -j2 --target smsr_ort_ops "
              f"(needs `pip install scipy-openblas32`; `cmake --install build` also copies it to engine/lib/), or set "
              f"{ENV_VAR} to the library's path")


class CustomOpLibraryError(PluginLibraryError, RuntimeError):
    """The custom-op library is missing, cannot be loaded, or did not register its op."""


def find_custom_op_library() -> pathlib.Path | None:
    """Path of libsmsr_ort_ops.so, or None when no built library is found.

    An explicitly set SMSR_ORT_OPS_LIB that does not exist raises instead of silently falling back."""
    env = os.environ.get(ENV_VAR)
    if env:
        path = pathlib.Path(env).expanduser()
        if not path.is_file():
            raise CustomOpLibraryError(f"{ENV_VAR}={env} does not name an existing file")
        return path.resolve()
    for candidate in (REPO_ROOT / "build" / _SUBDIR, PACKAGE_LIB_DIR / LIB_NAME):
        if candidate.is_file():
            return candidate
    return None


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def register_custom_ops(session_options) -> pathlib.Path:
    """Register the SMSRSparseBlock op library with an onnxruntime.SessionOptions; returns the library path.

    Raises CustomOpLibraryError (with a how-to-build hint) when the library is missing or unusable."""
    import onnxruntime as ort

    if _version_tuple(ort.__version__) < MIN_ORT_VERSION:
        raise CustomOpLibraryError(
            f"onnxruntime {ort.__version__} is too old for {LIB_NAME}: it needs >= "
            f"{'.'.join(map(str, MIN_ORT_VERSION))} (C API 21); upgrade with `pip install -U onnxruntime`")
    path = find_custom_op_library()
    if path is None:
        raise CustomOpLibraryError(f"{LIB_NAME} (the CPU {OP_TYPE} op for ONNX Runtime) was not found; {BUILD_HINT}")
    try:
        session_options.register_custom_ops_library(str(path))
    except Exception as exc:  # onnxruntime raises its own Fail/RuntimeException types
        raise CustomOpLibraryError(f"cannot load {path}: {exc}; rebuild it ({BUILD_HINT})") from exc
    _check_registered(path)
    return path


def _probe_model_bytes() -> bytes | None:
    """A one-node model using the op (1 channel, 1 pixel), or None when the onnx package is missing."""
    try:
        import numpy as np
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    inits = [numpy_helper.from_array(np.ones(shape, np.float32), name) for name, shape in
             [("w0", (3, 3, 1, 1)), ("w1", (3, 3, 1, 1)), ("w2", (3, 3, 1, 1)), ("w3", (3, 3, 1, 1)),
              ("wc", (1, 1, 4, 1)), ("bc", (1,))]]  # the op's weight layout: 3 x 3 x Cin x Cout, 1 x 1 x K x C
    node = helper.make_node(OP_TYPE, ["x", "mask", "w0", "w1", "w2", "w3", "wc", "bc"], ["y"], domain=OP_DOMAIN,
                            dense_channels=[1, 1, 1, 1], sparse_channels=[0, 0, 0, 0],
                            plugin_version="2", plugin_namespace="")
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 1, 1]) for n in ("x", "mask", "y")]
    graph = helper.make_graph([node], "smsr_probe", io[:2], io[2:], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(OP_DOMAIN, 1)])
    model.ir_version = 8
    return model.SerializeToString()


def _check_registered(path: pathlib.Path) -> None:
    """Run a tiny model through the op in a fresh session (never the caller's options, whose settings could
    write files): catches a library that loaded but registered nothing, or whose OpenBLAS is missing."""
    import numpy as np
    import onnxruntime as ort

    model = _probe_model_bytes()
    if model is None:
        return
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    try:
        options.register_custom_ops_library(str(path))
        session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        one = np.ones((1, 1, 1, 1), np.float32)
        session.run(None, {"x": one, "mask": one})
    except Exception as exc:
        raise CustomOpLibraryError(
            f"{path} loaded but the {OP_DOMAIN}::{OP_TYPE} op is not usable with onnxruntime "
            f"{ort.__version__}: {exc}") from exc

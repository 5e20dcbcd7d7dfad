"""ONNX Runtime backend: CUDA execution provider when present, else CPU.

The deploy graph's SMSRSparseBlock nodes need our custom-op library (engine/ort_ops.py registers it; imported only
for graphs that contain the op). Graph facts come from the model's metadata_props (smsr.scale, smsr.graph,
smsr.precision); a model without them gets its scale from a tiny probe run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendOutOfMemory, BackendUnavailableError, ModelError, PluginLibraryError
from .base import Backend, Limits, require_module

CUSTOM_OP = b"SMSRSparseBlock"
_OOM_MARKERS = ("failed to allocate memory", "bad_alloc", "bad allocation", "out of memory",
                "cudaerrormemoryallocation", "cudnn_status_alloc_failed", "cublas_status_alloc_failed")


def is_oom_message(msg: str) -> bool:
    m = msg.lower()
    return any(k in m for k in _OOM_MARKERS)


class OrtBackend(Backend):
    # Peak RSS grows by 4-6 KiB per LR pixel (measured: ORT 1.32 CPU, x2 reference and deploy graphs, 128²..384²).
    bytes_per_lr_pixel = 6 * 1024

    def __init__(self, model_path, device: str = "auto", threads: int | None = None):
        ort = require_module("onnxruntime", "ONNX Runtime (pip install onnxruntime)")
        path = Path(model_path)
        if not path.is_file():
            raise ModelError("ONNX model %s not found" % path)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = threads
        self.custom_op_library = None
        if CUSTOM_OP in path.read_bytes():  # the deploy graph: a cheap test that needs no onnx parser
            self.custom_op_library = _register_custom_ops(so)
        available = ort.get_available_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise BackendUnavailableError("ONNX Runtime has no CUDA provider here (available: %s); install "
                                          "onnxruntime-gpu or use --backend ort-cpu" % ", ".join(available))
        use_cuda = device in ("auto", "cuda") and "CUDAExecutionProvider" in available
        providers = (["CUDAExecutionProvider"] if use_cuda else []) + ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        except Exception as e:  # ORT raises its own exception types (Fail, InvalidGraph, InvalidProtobuf, ...)
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if CUSTOM_OP.decode() in msg:
                raise PluginLibraryError("%s: the SMSRSparseBlock custom op could not be used: %s" % (path, msg)) \
                    from None
            raise ModelError("%s: cannot load ONNX model: %s" % (path, msg)) from None
        self.path = path
        self.name = "ort-cuda" if use_cuda and "CUDAExecutionProvider" in self.session.get_providers() else "ort-cpu"
        inputs = self.session.get_inputs()
        self.input_name = next((i.name for i in inputs if i.name == "lr"), inputs[0].name)
        itype = next(i.type for i in inputs if i.name == self.input_name)
        self.input_dtype = np.float16 if "float16" in itype else np.float32
        outs = [o.name for o in self.session.get_outputs()]
        self.sr_name = "sr" if "sr" in outs else outs[0]
        self.masks_name = "masks" if "masks" in outs else None
        self.has_masks = self.masks_name is not None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.graph = meta.get("smsr.graph", "deploy" if self.custom_op_library else "reference")
        self.precision = meta.get("smsr.precision", "fp16" if self.input_dtype == np.float16 else "fp32")
        self.limits = Limits(min_hw=(2, 2))  # the graph handles any H, W >= 2 (odd too): no padding
        if "smsr.scale" in meta:
            try:
                self.scale = int(meta["smsr.scale"])
            except ValueError:
                raise ModelError("%s: bad smsr.scale metadata %r" % (path, meta["smsr.scale"])) from None
        else:
            self.scale = self._probe_scale()

    def _probe_scale(self) -> int:
        sr, _ = self.run(np.zeros((1, 3, 8, 8), np.float32))
        if sr.shape[2] % 8 or sr.shape[2] != sr.shape[3]:
            raise ModelError("%s: output shape %s is not an integer upscale of 8×8" % (self.path, sr.shape))
        return sr.shape[2] // 8

    def describe(self) -> str:
        s = super().describe()
        if self.custom_op_library:
            s += ", custom ops from %s" % self.custom_op_library
        return s

    def run(self, x, want_masks=False):
        names = [self.sr_name] + ([self.masks_name] if want_masks and self.masks_name else [])
        feed = {self.input_name: np.ascontiguousarray(x, dtype=self.input_dtype)}
        try:
            outs = self.session.run(names, feed)
        except MemoryError:
            raise BackendOutOfMemory("host memory exhausted") from None
        except Exception as e:
            if is_oom_message(str(e)):
                raise BackendOutOfMemory(str(e)) from None
            raise
        sr = outs[0].astype(np.float32, copy=False)
        masks = outs[1].astype(np.float32, copy=False) if len(outs) > 1 else None
        return sr, masks

    def close(self):
        self.session = None


def _register_custom_ops(so) -> str:
    """Register the SMSRSparseBlock CPU op library (engine/ort_ops.py, imported only for deploy graphs)."""
    try:
        from .. import ort_ops
    except ImportError as e:
        raise PluginLibraryError("this is a deploy graph (SMSRSparseBlock nodes) and needs the custom-op library, "
                                 "but engine/ort_ops.py could not be imported (%s); use the reference graph "
                                 "or install the full engine package" % e) from None
    try:
        return str(ort_ops.register_custom_ops(so))
    except RuntimeError as e:  # ort_ops.CustomOpLibraryError: message says how to build the library
        raise PluginLibraryError(str(e)) from None

"""ONNX Runtime backend: CUDA execution provider when present, else CPU.

The deploy graph's SMSRSparseBlock nodes need our custom-op library (engine/ort_ops.py registers it; imported only
for graphs that contain the op). Graph facts come from the model's metadata_props (smsr.scale, smsr.graph,
smsr.precision); a model without them gets its scale from a tiny probe run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendOutOfMemory, BackendRunError, BackendUnavailableError, ModelError, PluginLibraryError
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

    def __init__(self, model_path, device: str = "auto", threads: int | None = None, log=None):
        log = log or (lambda s: None)
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
        if use_cuda and device == "auto" and self.custom_op_library:
            # Our SMSRSparseBlock op is CPU-only: under the CUDA provider ORT would copy activations device->host
            # and back around every sparse block, which costs more than the dense layers gain.
            use_cuda = False
            log("note: deploy graph on ONNX Runtime: using the CPU provider although CUDA is available, because "
                "the SMSRSparseBlock op runs on the CPU only (the CUDA provider would copy data to and from the GPU "
                "around each sparse block); pass --device cuda to use it anyway, or use the reference graph or a "
                "TensorRT engine on the GPU")
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
        self.fixed_batch, self.limits = _input_limits(next(i.shape for i in inputs if i.name == self.input_name))
        if "smsr.scale" in meta:
            try:
                self.scale = int(meta["smsr.scale"])
            except ValueError:
                raise ModelError("%s: bad smsr.scale metadata %r" % (path, meta["smsr.scale"])) from None
        else:
            self.scale = self._probe_scale()

    def _probe_scale(self) -> int:
        h, w = (max(8, self.limits.min_hw[0]), max(8, self.limits.min_hw[1]))
        try:
            sr, _ = self.run(np.zeros((1, 3, h, w), np.float32))
        except BackendRunError as e:
            raise ModelError("%s: cannot determine the scale (no smsr.scale metadata, probe run failed: %s)"
                             % (self.path, e)) from None
        if sr.shape[2] % h or sr.shape[3] % w or sr.shape[2] // h != sr.shape[3] // w:
            raise ModelError("%s: output shape %s is not an integer upscale of %d×%d" % (self.path, sr.shape, h, w))
        return sr.shape[2] // h

    def describe(self) -> str:
        s = super().describe()
        if self.custom_op_library:
            s += ", custom ops from %s" % self.custom_op_library
        return s

    def run(self, x, want_masks=False):
        names = [self.sr_name] + ([self.masks_name] if want_masks and self.masks_name else [])
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        n = x.shape[0]
        if self.fixed_batch is not None and n < self.fixed_batch:  # a graph with a fixed N: fill with copies
            x = np.concatenate([x] + [x[-1:]] * (self.fixed_batch - n))
        try:
            outs = self.session.run(names, {self.input_name: x})
        except MemoryError:
            raise BackendOutOfMemory("host memory exhausted") from None
        except Exception as e:  # ORT's own types (InvalidArgument, Fail, RuntimeException, ...)
            msg = str(e).strip() or type(e).__name__
            if is_oom_message(msg):
                raise BackendOutOfMemory(msg) from None
            raise BackendRunError("ONNX Runtime failed on an input of shape %s with %s: %s"
                                  % ("×".join(map(str, x.shape)), self.path.name, msg.splitlines()[0])) from None
        sr = outs[0][:n].astype(np.float32, copy=False)
        masks = outs[1][:n].astype(np.float32, copy=False) if len(outs) > 1 else None
        return sr, masks

    def close(self):
        self.session = None


def _input_limits(shape) -> tuple[int | None, Limits]:
    """(fixed batch or None, Limits) from the ONNX input shape N×3×H×W: a graph exported with fixed sizes accepts
    exactly those, so the pipeline pads smaller images up and tiles larger ones; symbolic dims take any size >= 2
    (odd too: no padding)."""
    dims = list(shape) if shape is not None else []
    fixed = [d if isinstance(d, int) and d > 0 else None for d in dims] if len(dims) == 4 else [None] * 4
    n, _, h, w = fixed
    lo = (h or 2, w or 2)
    hi = (h, w) if h is not None or w is not None else None
    if hi is not None:  # one fixed side: the other is free (no upper bound)
        hi = (h or 1 << 30, w or 1 << 30)
    return n, Limits(min_hw=lo, max_hw=hi, max_batch=n)


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

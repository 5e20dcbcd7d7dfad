"""The backend interface and the factory that picks one.

A backend maps a batch of LR images (N×3×H×W float32, RGB 0..255) to SR images (N×3×sH×sW float32, unclamped)
and, when the graph has them, the SMSR spatial masks (N×5×H×W, 0/1). It states its shape limits (the TensorRT
profile) so the pipeline can pad, tile and batch around them; it never pads by itself.
Backends are imported lazily: choosing ONNX Runtime never imports TensorRT or PyTorch.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import (BackendOutOfMemory, BackendUnavailableError, EngineError, OutOfMemoryError, ScaleMismatchError,
                      UsageError)

BACKEND_CHOICES = ("auto", "tensorrt", "ort", "ort-cpu", "ort-cuda", "torch", "triton")


@dataclass
class Limits:
    """Shape limits of a backend (LR pixels). The pipeline pads up to `min_hw` / a multiple of `multiple` and crops
    back, tiles above `max_hw`, and sends at most `max_batch` tiles per call."""

    min_hw: tuple[int, int] = (1, 1)
    max_hw: tuple[int, int] | None = None
    multiple: int = 1
    max_batch: int | None = None


class Backend(abc.ABC):
    name: str = "?"  # e.g. "ort-cpu", "tensorrt"
    scale: int
    has_masks: bool = False
    precision: str = "fp32"
    graph: str = "?"  # "reference" | "deploy"
    limits: Limits = Limits()
    # Tile origins must be multiples of this: SMSR's mask branch pools 2×2 (see engine/tiling.py).
    align: int = 2
    # Rough peak memory per LR pixel of one image, used to decide when to tile within a memory budget.
    bytes_per_lr_pixel: int = 4096

    @abc.abstractmethod
    def run(self, x: np.ndarray, want_masks: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """x: N×3×H×W float32 -> (sr N×3×sH×sW float32, masks N×5×H×W float32 or None).
        Raises errors.BackendOutOfMemory when the call did not fit (the pipeline retries smaller), and
        errors.BackendRunError for any other failure of the runtime (reported per input, never a traceback)."""

    def describe(self) -> str:
        return "%s (x%d, %s, %s graph)" % (self.name, self.scale, self.precision, self.graph)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _suffix(p) -> str:
    return Path(p).suffix.lower() if p else ""


def create_backend(kind: str = "auto", *, model=None, engine=None, scale: int | None = None, device: str = "auto",
                   plugin=None, threads: int | None = None, log: Callable[[str], None] | None = None,
                   remote: dict | None = None) -> Backend:
    """Build the backend `kind` from an engine (TensorRT) or a model (.onnx for ONNX Runtime, .pt/.pth for
    PyTorch). `auto` tries TensorRT when an engine is given and it can run here, then ONNX Runtime (CUDA provider if
    present, else CPU), then PyTorch; `log` receives one line saying what was picked and why."""
    log = log or (lambda s: None)
    if kind == "triton":  # a served model: no local model or engine (engine/backends/triton.py)
        from .triton import create_triton_backend
        backend = create_triton_backend(remote or {}, log)
        log("backend: %s" % backend.describe())
        _check_scale(backend, scale)
        return backend
    try:
        return _create(kind, model, engine, scale, device, plugin, threads, log)
    except BackendOutOfMemory as e:
        raise OutOfMemoryError("not enough memory to load the model/engine: %s" % e) from None


def _create(kind, model, engine, scale, device, plugin, threads, log) -> Backend:
    if kind not in BACKEND_CHOICES:
        raise UsageError("unknown backend %r (choose from %s)" % (kind, ", ".join(BACKEND_CHOICES)))
    if engine is None and model is None:
        raise UsageError("give --engine ENGINE (TensorRT) or --model MODEL (.onnx, or .pt weights for --backend torch)")
    is_torch_model = _suffix(model) in (".pt", ".pth")

    def make_trt():
        if engine is None:
            raise UsageError("--backend tensorrt needs --engine ENGINE")
        from .tensorrt import TensorRTBackend
        return TensorRTBackend(engine, scale=scale, plugin=plugin, log=log)

    def make_ort(dev):
        if model is None or is_torch_model:
            raise UsageError("--backend ort needs --model MODEL.onnx")
        from .onnxruntime import OrtBackend
        return OrtBackend(model, device=dev, threads=threads, log=log)

    def make_torch():
        if model is None:
            raise UsageError("--backend torch needs --model WEIGHTS.pt (or an ONNX model for the ort backend)")
        from .torch import TorchBackend
        return TorchBackend(model, scale=scale, device=device)

    if kind == "tensorrt":
        backend = make_trt()
    elif kind in ("ort", "ort-cpu", "ort-cuda"):
        backend = make_ort({"ort": device, "ort-cpu": "cpu", "ort-cuda": "cuda"}[kind])
    elif kind == "torch":
        backend = make_torch()
    else:
        backend = None
        reasons = []
        candidates = []
        if engine is not None:
            candidates.append(("tensorrt", make_trt))
        if model is not None and not is_torch_model:
            candidates.append(("ort", lambda: make_ort(device)))
        if model is not None and is_torch_model:
            candidates.append(("torch", make_torch))
        for i, (name, make) in enumerate(candidates):
            try:
                backend = make()
                break
            except ScaleMismatchError:
                raise
            except EngineError as e:
                if i == len(candidates) - 1:
                    raise
                reasons.append("%s not usable: %s" % (name, e))
        assert backend is not None
        log("backend: %s; picked by --backend auto%s"
            % (backend.describe(), " (" + "; ".join(reasons) + ")" if reasons else ""))
        _check_scale(backend, scale)
        return backend
    log("backend: %s" % backend.describe())
    _check_scale(backend, scale)
    return backend


def _check_scale(backend: Backend, scale: int | None) -> None:
    if scale is not None and backend.scale != scale:
        name = backend.describe()
        backend.close()
        raise ScaleMismatchError("the model/engine upscales x%d but --scale %d was requested: %s"
                                 % (backend.scale, scale, name))


def require_module(name: str, what: str):
    """Import an optional dependency or raise BackendUnavailableError saying what to install."""
    import importlib
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise BackendUnavailableError("%s is not available: %s (install it to use this backend)" % (what, e)) from None

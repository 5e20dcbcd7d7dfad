"""PyTorch reference backend (optional): runs the converters' model from a checkpoint.

Only for checking the other backends against the original model; imported (with torch) only when chosen.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import BackendOutOfMemory, BackendRunError, BackendUnavailableError, ModelError, UsageError
from .base import Backend, Limits, require_module


class TorchBackend(Backend):
    has_masks = True
    graph = "pytorch"
    bytes_per_lr_pixel = 8 * 1024

    def __init__(self, weights, scale: int | None = None, device: str = "auto"):
        torch = require_module("torch", "PyTorch")
        try:
            from converters.model import load_smsr
        except ImportError as e:
            raise BackendUnavailableError("the PyTorch backend needs converters.model (run from the project "
                                          "checkout): %s" % e) from None
        path = Path(weights)
        if not path.is_file():
            raise ModelError("checkpoint %s not found" % path)
        if scale is None:
            m = re.search(r"x(\d)", path.stem)
            if not m:
                raise UsageError("cannot tell the scale of %s from its name: pass --scale" % path)
            scale = int(m.group(1))
        try:
            model = load_smsr(str(path), scale)
        except (RuntimeError, KeyError, ValueError, OSError) as e:
            raise ModelError("%s: cannot load as an x%d SMSR checkpoint: %s" % (path, scale, e)) from None
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError("PyTorch sees no CUDA device")
        self.device = "cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
        self.torch = torch
        self.model = model.to(self.device).eval()
        self.scale = scale
        self.name = "torch-" + self.device
        self.limits = Limits(min_hw=(2, 2))

    def run(self, x, want_masks=False):
        torch = self.torch
        try:
            with torch.inference_mode():
                t = torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(self.device)
                if want_masks:
                    sr, masks = self.model.forward_with_masks(t)
                    return sr.float().cpu().numpy(), masks.float().cpu().numpy()
                return self.model(t).float().cpu().numpy(), None
        except (torch.cuda.OutOfMemoryError, MemoryError) as e:
            raise BackendOutOfMemory(str(e)) from None
        except (RuntimeError, ValueError) as e:
            if "out of memory" in str(e).lower() or "not enough memory" in str(e).lower():
                raise BackendOutOfMemory(str(e)) from None
            msg = (str(e).strip() or type(e).__name__).splitlines()[0]
            raise BackendRunError("PyTorch failed on an input of shape %s: %s"
                                  % ("×".join(map(str, np.shape(x))), msg)) from None

    def close(self):
        self.model = None

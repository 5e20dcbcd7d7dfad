"""Adaptive tile routing (`--route`): easy tiles exit early through bicubic instead of the network.

SMSR's output is tail(features) + bicubic(x - mean) + mean, and bicubic weights sum to one, so a tile whose
learned residual is negligible is served by bicubic(x) alone: the network's own bicubic branch, computed here in
numpy (PyTorch's F.interpolate, mode="bicubic", align_corners=False, A = -0.75, border samples clamped) so the
runtime needs no PyTorch. tests/test_routing.py checks it against the model's branch.

Difficulty score: the RMS of the 4-neighbour Laplacian of the tile's luma, in 0..255 levels (a flat or linear
tile scores 0, uniform noise ~200). It is computed from the LR tile only and costs well under 1 % of the tile's
inference. Of the candidates we measured (gradients, high-pass energies, percentiles, variance, and a regressor
fitted on all of them) it ranks tiles best by what routing them loses, the network's residual over bicubic, and
as well as the fitted regressor, so no regressor is shipped (benchmarks/route_calibrate.py; numbers in
docs/BENCHMARKS.md). A mean over the tile (not a maximum) because what routing costs in PSNR is that residual's
energy summed over the tile.

`auto` is AUTO_THRESHOLD, chosen by measurement (benchmarks/route_calibrate.py, ONNX Runtime CPU, deploy graph,
Set5 x2, tiles of DEFAULT_ROUTE_TILE with the default overlap): the largest threshold at which mean PSNR_Y drops by
<= 0.02 dB and no image by more than 0.1 dB against --route off at the same tiling (13.3, measured 2026-12-01),
rounded down to an integer. The score is a per-pixel mean,
so the threshold means the same at other tile sizes, but smaller tiles isolate more flat regions (more tiles exit,
slightly more loss) and larger ones fewer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import UsageError

CUBIC_A = -0.75  # PyTorch's bicubic coefficient (and ONNX Resize's cubic_coeff_a in the exported graph)
DEFAULT_ROUTE_TILE = 64  # LR tile size used by --route when --tile is not given (the size auto was measured at)
AUTO_THRESHOLD = 13.0  # score units (see the module doc); measured by benchmarks/route_calibrate.py
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _cubic_taps(length: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices 4×sL, weights 4×sL) of the 1-D bicubic upsampling of a length-`length` axis by `scale`."""
    # float32 coordinates as PyTorch computes them: src = (dst + 0.5) / scale - 0.5, scale given as 1/scale_factor.
    inv = np.float32(1.0 / scale)
    src = (np.arange(length * scale, dtype=np.float32) + np.float32(0.5)) * inv - np.float32(0.5)
    i0 = np.floor(src)
    t = (src - i0).astype(np.float32)
    a = np.float32(CUBIC_A)

    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    w = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)]).astype(np.float32)
    idx = np.clip(i0.astype(np.int64)[None, :] + np.arange(-1, 3)[:, None], 0, length - 1)
    return idx, w


def _interp_axis(x: np.ndarray, axis: int, scale: int) -> np.ndarray:
    idx, w = _cubic_taps(x.shape[axis], scale)
    shape = [1] * x.ndim
    shape[axis] = -1
    out = None
    for k in range(4):  # x0*w0 + x1*w1 + x2*w2 + x3*w3, PyTorch's order
        term = np.take(x, idx[k], axis=axis) * w[k].reshape(shape)
        out = term if out is None else out + term
    return out


def bicubic_upsample(x: np.ndarray, scale: int) -> np.ndarray:
    """...×H×W float array -> ...×sH×sW float32: PyTorch's bicubic (align_corners=False), width pass then height."""
    x = np.asarray(x, np.float32)
    return _interp_axis(_interp_axis(x, x.ndim - 1, scale), x.ndim - 2, scale)


def difficulty(tile: np.ndarray) -> float:
    """3×h×w RGB (0..255) -> RMS of the luma's 4-neighbour Laplacian (edges replicated)."""
    y = np.tensordot(_LUMA, np.asarray(tile, np.float32), axes=(0, 0))
    p = np.pad(y, 1, mode="edge")
    lap = 4 * y - p[:-2, 1:-1] - p[2:, 1:-1] - p[1:-1, :-2] - p[1:-1, 2:]
    return float(np.sqrt(np.mean(np.square(lap))))


@dataclass(frozen=True)
class Router:
    """Tiles scoring below `threshold` take the cheap path (bicubic), the others go to the backend."""

    threshold: float
    scale: int

    def routes(self, tile: np.ndarray) -> bool:
        return difficulty(tile) < self.threshold

    def cheap(self, tile: np.ndarray) -> np.ndarray:
        return bicubic_upsample(tile, self.scale)

    def describe(self) -> str:
        return "%g" % self.threshold + (" (auto)" if self.threshold == AUTO_THRESHOLD else "")


def parse_route(value: str) -> float | None:
    """--route off|auto|THRESHOLD -> None (off) or a threshold >= 0 in score units."""
    v = value.strip().lower()
    if v == "off":
        return None
    if v == "auto":
        return AUTO_THRESHOLD
    try:
        t = float(v)
    except ValueError:
        raise UsageError("--route expects off, auto or a threshold number, got %r" % value) from None
    if not np.isfinite(t) or t < 0:
        raise UsageError("--route threshold must be a finite number >= 0, got %r" % value)
    return t

"""From an LR array to an SR array with one backend: padding to the backend's limits, tiling, OOM retries.

Whole-image inference is used unless the user asked for tiles, the image exceeds the backend's maximum shape (a
TensorRT profile), or the estimated memory exceeds the budget. On BackendOutOfMemory the tile size is halved (down to
`min_tile`) and the image is done again; only then does the user see an OutOfMemoryError.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .backends.base import Backend
from .errors import BackendOutOfMemory, OutOfMemoryError, UnsupportedImageError, UsageError
from .tiling import run_tiled

DEFAULT_OVERLAP = 16
MIN_TILE = 32
MIN_NETWORK_HW = 2


@dataclass
class UpscaleResult:
    sr: np.ndarray  # 3×sH×sW float32, unclamped
    masks: np.ndarray | None  # K×H×W float32 in [0, 1] or None
    tile: int | None  # tile size used (None = whole image)
    tiles: int  # number of tiles run (1 for whole image)


def pad_to_limits(x: np.ndarray, min_hw: tuple[int, int], multiple: int) -> tuple[np.ndarray, int, int]:
    """Pad N×C×H×W at the bottom/right (mirror) so H, W >= min and multiples of `multiple`; return the padded array
    and the original H, W so the caller can crop. Only for backends that need it: padding changes border results."""
    _, _, h, w = x.shape
    th = max(h, min_hw[0])
    tw = max(w, min_hw[1])
    th = -(-th // multiple) * multiple
    tw = -(-tw // multiple) * multiple
    if (th, tw) == (h, w):
        return x, h, w
    return np.pad(x, ((0, 0), (0, 0), (0, th - h), (0, tw - w)), mode="symmetric"), h, w


class Upscaler:
    def __init__(self, backend: Backend, tile: int | None = None, overlap: int = DEFAULT_OVERLAP, batch: int = 1,
                 mem_budget_bytes: int | None = None, min_tile: int = MIN_TILE,
                 log: Callable[[str], None] | None = None):
        self.backend = backend
        self.log = log or (lambda s: None)
        self.overlap = overlap
        self.batch = max(1, batch)
        if backend.limits.max_batch:
            self.batch = min(self.batch, backend.limits.max_batch)
        self.mem_budget = mem_budget_bytes
        self._fit_overlap_to_max_tile()
        self.min_tile = max(min_tile, self.overlap + 2 * backend.align)
        mx = self._max_tile()
        if mx is not None:
            self.min_tile = min(self.min_tile, mx)
        self.tile = None if tile is None else self._check_tile(tile)

    def _fit_overlap_to_max_tile(self) -> None:
        """A backend with a small maximum input (a fixed-size ONNX graph, a small TensorRT profile) may leave no
        room for the overlap: shrink it so tiles still advance by at least 2 aligned steps."""
        mx, a = self._max_tile(), self.backend.align
        if mx is None or mx - self.overlap >= 2 * a:
            return
        new = max(0, ((mx // 2) // a) * a)
        if mx - new < a:
            raise UsageError("the backend takes at most %d×%d pixels per call: too small to tile" % (mx, mx))
        lim = self.backend.limits.max_hw
        self.log("note: the backend takes at most %d×%d pixels per call (tiles up to %d×%d); tile overlap %d "
                 "reduced to %d" % (lim[1], lim[0], mx, mx, self.overlap, new))
        self.overlap = new

    def _check_tile(self, tile: int) -> int:
        a = self.backend.align
        if tile % a:
            # Every interior tile has exactly this size: an odd one would zero-pad its mask at the inner edge
            # (the mask branch pools 2×2), costing accuracy at every cut.
            rounded = -(-tile // a) * a
            self.log("note: --tile %d rounded up to %d (tiles must be a multiple of %d: the mask branch pools %d×%d)"
                     % (tile, rounded, a, a, a))
            tile = rounded
        if tile - self.overlap < a:
            raise UsageError("--tile %d must be larger than --tile-overlap %d (by at least %d)"
                             % (tile, self.overlap, a))
        mx = self._max_tile()
        if mx is not None and tile > mx:
            self.log("note: tile %d exceeds the engine's maximum; using %d" % (tile, mx))
            tile = mx
        return tile

    def _max_tile(self) -> int | None:
        """Largest tile the backend accepts: the last tile of a row may be align-1 longer than the others."""
        lim = self.backend.limits.max_hw
        if lim is None:
            return None
        a = self.backend.align
        return ((min(lim) - (a - 1)) // a) * a

    def _auto_tile(self, h: int, w: int) -> int | None:
        """Tile size forced by the backend's limits or the memory budget (None: whole image fits)."""
        tile = None
        mx = self._max_tile()
        lim = self.backend.limits.max_hw
        if lim is not None and (h > lim[0] or w > lim[1]):
            tile = mx
        if self.mem_budget is not None:
            max_px = self.mem_budget // max(1, self.backend.bytes_per_lr_pixel * self.batch)
            if h * w > max_px:
                side = int(max_px ** 0.5)
                side = max(self.min_tile, (side // self.backend.align) * self.backend.align)
                tile = side if tile is None else min(tile, side)
        return tile

    def _run_padded(self, x: np.ndarray, want_masks: bool):
        lim = self.backend.limits
        # SMSR itself needs 2×2 (its mask branch pools 2×2): smaller images are mirror-padded and cropped back.
        min_hw = (max(MIN_NETWORK_HW, lim.min_hw[0]), max(MIN_NETWORK_HW, lim.min_hw[1]))
        xp, h, w = pad_to_limits(x, min_hw, lim.multiple)
        sr, masks = self.backend.run(xp, want_masks)
        s = self.backend.scale
        sr = sr[:, :, :h * s, :w * s]
        if masks is not None:
            masks = masks[:, :, :h, :w]
        return sr, masks

    def upscale(self, x: np.ndarray, want_masks: bool = False,
                on_tiles: Callable[[int, int], None] | None = None) -> UpscaleResult:
        """x: 3×H×W float32 (0..255) -> UpscaleResult."""
        _, h, w = x.shape
        if h < 1 or w < 1:
            raise UnsupportedImageError("image is %d×%d: it has no pixels" % (w, h))
        tile = self.tile if self.tile is not None else self._auto_tile(h, w)
        while True:
            try:
                return self._attempt(x, tile, want_masks, on_tiles)
            except BackendOutOfMemory as e:
                current = tile if tile is not None and (h > tile or w > tile) else max(h, w)
                new = max(self.min_tile, ((current // 2) // self.backend.align) * self.backend.align)
                if current <= self.min_tile:
                    raise OutOfMemoryError("out of memory even with %d×%d tiles (%s); lower --batch, free memory, or "
                                           "use a backend with more memory" % (current, current, e)) from None
                self.log("out of memory with %s; retrying with %d×%d tiles"
                         % ("the whole image" if tile is None or current != tile else "%d×%d tiles" % (tile, tile),
                            new, new))
                tile = new

    def _attempt(self, x, tile, want_masks, on_tiles) -> UpscaleResult:
        _, h, w = x.shape
        run = lambda batch: self._run_padded(batch, want_masks)  # noqa: E731
        if tile is None or (h <= tile and w <= tile):
            sr, masks = run(x[None])
            if on_tiles:
                on_tiles(1, 1)
            return UpscaleResult(sr[0], masks[0] if masks is not None else None, None, 1)
        counter = {"n": 0}

        def progress(done, total):
            counter["n"] = total
            if on_tiles:
                on_tiles(done, total)

        sr, masks = run_tiled(run, x, self.backend.scale, tile, self.overlap, self.backend.align, self.batch,
                              progress)
        return UpscaleResult(sr, masks, tile, counter["n"])

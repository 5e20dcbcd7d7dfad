"""Tiled inference: split the LR image into overlapping tiles, run them in batches, blend the outputs.

Why these rules:
- Tile origins are multiples of `align` (2 for SMSR): the mask branch pools 2×2 and upsamples, so a tile that starts
  on an odd row would see a shifted pooling grid and produce different masks than the whole image.
- The last tile of a row/column ends exactly at the image edge (its length may be up to align-1 longer than the
  others), so the edge of the image is seen the way whole-image inference sees it (including the odd-size rule).
- Neighbouring tiles overlap by at least `overlap` LR pixels. At a cut, a tile's outer quarter of the overlap is
  dropped (weight 0: those pixels lack the most context) and the middle half is cross-faded linearly with the
  neighbour, so no seam line is visible. Image borders get full weight (there is no neighbour there).
- Masks are blended with the same weights at LR resolution (values become fractions near cuts).
Tolerance: a network whose receptive-field radius is <= overlap/4 gives the whole-image result up to float
rounding (tests/test_tiling.py). SMSR is not such a network: its channel attention pools over the whole input, so
a tile's features differ slightly everywhere, not only near cuts, and the difference depends on the tile size far
more than on the overlap or the blend. Measured on Set5 x2 (reference graph, ONNX Runtime CPU), PSNR_Y of tiled
minus whole-image output, mean / worst image, and the largest per-pixel difference (0..255):
    tile 64,  overlap 8:   -0.005 / 0.028 dB, 7.5        tile 96,  overlap 16: -0.001 / 0.026 dB, 4
    tile 64,  overlap 16:  -0.007 / 0.034 dB, 7.5        tile 128, overlap 32: +0.003 / 0.010 dB, 3
    tile 64,  overlap 24:  -0.009 / 0.042 dB, 7.6
Documented tolerance: |delta PSNR_Y| <= 0.05 dB per image for tiles >= 64 with overlap 16 (tests/test_cli.py);
prefer the largest tile that fits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

RunFn = Callable[[np.ndarray], tuple[np.ndarray, "np.ndarray | None"]]


@dataclass(frozen=True)
class Tile:
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0


def plan_axis(length: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """[start, stop) intervals covering 0..length; starts are multiples of `align`, consecutive tiles overlap by
    >= `overlap`, all tiles have length `tile` except the last, which ends at `length` (tile .. tile+align-1 long)."""
    if length <= 0:
        raise ValueError("length must be positive")
    if length <= tile:
        return [(0, length)]
    stride_max = ((tile - overlap) // align) * align
    if stride_max < align:
        raise ValueError("tile (%d) must exceed overlap (%d) by at least %d" % (tile, overlap, align))
    last = ((length - tile) // align) * align
    if last == 0:  # one tile, up to align-1 longer than `tile`
        return [(0, length)]
    n_gaps = -(-last // stride_max)
    step = -(-last // n_gaps)
    step = -(-step // align) * align  # <= stride_max because last/n_gaps <= stride_max and stride_max % align == 0
    starts = [min(i * step, last) for i in range(n_gaps + 1)]
    starts = sorted(set(starts))
    return [(s, s + tile) for s in starts[:-1]] + [(starts[-1], length)]


def plan_tiles(height: int, width: int, tile: int, overlap: int, align: int = 1) -> list[Tile]:
    ys = plan_axis(height, tile, overlap, align)
    xs = plan_axis(width, tile, overlap, align)
    return [Tile(y0, y1, x0, x1) for (y0, y1) in ys for (x0, x1) in xs]


def _ramp(n: int, margin: int, ramp: int, lo: bool, hi: bool) -> np.ndarray:
    """1-D weights of length n. At a cut edge (lo/hi): 0 over the first `margin` samples, then a linear rise over
    `ramp` samples to 1. Two neighbours overlapping by margin+ramp+margin have weights summing to exactly 1."""
    k = np.arange(n, dtype=np.float32) + 0.5
    w = np.ones(n, np.float32)
    for on, d in ((lo, k), (hi, k[::-1])):
        if on:
            w = np.minimum(w, np.clip((d - margin) / ramp, 0, 1) if ramp > 0 else (d > margin).astype(np.float32))
    return w


def blend_margins(overlap: int) -> tuple[int, int]:
    """(discarded margin, ramp width) in LR pixels for an overlap: a quarter of the overlap at each cut is dropped
    (the pixels that lack the most context), the middle half is cross-faded."""
    margin = overlap // 4
    return margin, overlap - 2 * margin


def tile_weights(t: Tile, height: int, width: int, overlap: int, scale: int) -> np.ndarray:
    """(sh×sw) blending weights of tile `t` at output resolution `scale` (scale=1 for masks)."""
    margin, ramp = blend_margins(overlap)
    m, r = margin * scale, ramp * scale
    wy = _ramp((t.y1 - t.y0) * scale, m, r, t.y0 > 0, t.y1 < height)
    wx = _ramp((t.x1 - t.x0) * scale, m, r, t.x0 > 0, t.x1 < width)
    return wy[:, None] * wx[None, :]


class TileAccumulator:
    """Weighted sum of tile outputs; `result()` normalises by the summed weights."""

    def __init__(self, channels: int, height: int, width: int, scale: int, overlap: int,
                 mask_channels: int | None = None):
        self.h, self.w, self.scale, self.overlap = height, width, scale, overlap
        self.acc = np.zeros((channels, height * scale, width * scale), np.float32)
        self.wsum = np.zeros((height * scale, width * scale), np.float32)
        self.macc = np.zeros((mask_channels, height, width), np.float32) if mask_channels else None
        self.mwsum = np.zeros((height, width), np.float32) if mask_channels else None

    def add(self, t: Tile, sr: np.ndarray, masks: np.ndarray | None = None) -> None:
        s = self.scale
        w = tile_weights(t, self.h, self.w, self.overlap, s)
        ys, xs = slice(t.y0 * s, t.y1 * s), slice(t.x0 * s, t.x1 * s)
        self.acc[:, ys, xs] += sr * w
        self.wsum[ys, xs] += w
        if self.macc is not None and masks is not None:
            wm = tile_weights(t, self.h, self.w, self.overlap, 1)
            self.macc[:, t.y0:t.y1, t.x0:t.x1] += masks * wm
            self.mwsum[t.y0:t.y1, t.x0:t.x1] += wm

    def result(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self.wsum.min() <= 0 or (self.mwsum is not None and self.mwsum.min() <= 0):
            raise AssertionError("tiling left pixels without weight (tile plan bug)")
        sr = self.acc / self.wsum
        masks = self.macc / self.mwsum if self.macc is not None else None
        return sr, masks


def _batches(tiles: list[Tile], batch: int) -> Iterable[list[Tile]]:
    """Tiles grouped by shape (a batch must be one tensor), at most `batch` per group, in raster order."""
    groups: dict[tuple[int, int], list[Tile]] = {}
    for t in tiles:
        groups.setdefault(t.shape, []).append(t)
    for group in groups.values():
        for i in range(0, len(group), batch):
            yield group[i:i + batch]


def run_tiled(run: RunFn, x: np.ndarray, scale: int, tile: int, overlap: int, align: int = 1, batch: int = 1,
              on_tiles_done: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Upscale 3×H×W `x` tile by tile. `run` maps N×3×h×w -> (N×3×sh×sw, N×K×h×w masks or None)."""
    _, h, w = x.shape
    tiles = plan_tiles(h, w, tile, overlap, align)
    acc: TileAccumulator | None = None
    done = 0
    for group in _batches(tiles, max(1, batch)):
        inp = np.stack([x[:, t.y0:t.y1, t.x0:t.x1] for t in group])
        sr, masks = run(inp)
        if acc is None:
            acc = TileAccumulator(sr.shape[1], h, w, scale, overlap, masks.shape[1] if masks is not None else None)
        for i, t in enumerate(group):
            acc.add(t, sr[i], masks[i] if masks is not None else None)
        done += len(group)
        if on_tiles_done:
            on_tiles_done(done, len(tiles))
    return acc.result()


@dataclass
class RoutedResult:
    sr: np.ndarray
    masks: np.ndarray | None  # network masks; zero on routed tiles (no sparse work there); None if none computed
    tiles: int
    routed: int  # tiles that took the cheap path
    routed_map: np.ndarray  # H×W in [0, 1]: blend weight of routed tiles at each LR pixel (1 = fully cheap path)


def run_tiled_routed(run: RunFn, x: np.ndarray, scale: int, tile: int, overlap: int, align: int, batch: int,
                     router, on_tiles_done: Callable[[int, int], None] | None = None) -> RoutedResult:
    """run_tiled with adaptive routing (engine/routing.py): every tile is scored on its own; tiles the router
    accepts are upscaled by `router.cheap`, the others are batched to `run` exactly as run_tiled does. Both kinds
    are blended with the same weights, so overlaps cross-fade between a routed tile and a computed one."""
    _, h, w = x.shape
    tiles = plan_tiles(h, w, tile, overlap, align)
    cheap = [t for t in tiles if router.routes(x[:, t.y0:t.y1, t.x0:t.x1])]
    cheap_set = set(cheap)
    hard = [t for t in tiles if t not in cheap_set]
    acc = TileAccumulator(x.shape[0], h, w, scale, overlap)
    mask_k = None
    done = 0
    for group in _batches(hard, max(1, batch)):
        sr, masks = run(np.stack([x[:, t.y0:t.y1, t.x0:t.x1] for t in group]))
        if masks is not None and acc.macc is None:
            mask_k = masks.shape[1]
            acc.macc = np.zeros((mask_k, h, w), np.float32)
            acc.mwsum = np.zeros((h, w), np.float32)
        for i, t in enumerate(group):
            acc.add(t, sr[i], masks[i] if masks is not None else None)
        done += len(group)
        if on_tiles_done:
            on_tiles_done(done, len(tiles))
    routed_map = np.zeros((h, w), np.float32)
    for t in cheap:
        acc.add(t, router.cheap(x[:, t.y0:t.y1, t.x0:t.x1]),
                np.zeros((mask_k, *t.shape), np.float32) if mask_k else None)
        routed_map[t.y0:t.y1, t.x0:t.x1] += tile_weights(t, h, w, overlap, 1)
    if cheap and on_tiles_done:
        on_tiles_done(len(tiles), len(tiles))
    sr, masks = acc.result()
    wsum = np.zeros((h, w), np.float32)
    for t in tiles:
        wsum[t.y0:t.y1, t.x0:t.x1] += tile_weights(t, h, w, overlap, 1)
    return RoutedResult(sr, masks, len(tiles), len(cheap), routed_map / wsum)

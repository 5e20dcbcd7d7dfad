"""Calibration data from a folder of images, sampled deterministically.

Two modes:
- "images": each image whole (one N=1 batch per image; sizes may differ, the graphs have dynamic H/W);
- "patches": square LR patches at positions drawn from a seeded generator, stacked into batches.
The same folder, mode, seed and counts always give the same arrays (sorted file names, numpy Generator(seed)).
Arrays are N x 3 x H x W float32 RGB on 0..255, the graphs' input convention.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from engine.errors import ImageError
from engine.image_io import IMAGE_SUFFIXES, read_rgb

MODES = ("images", "patches")


class CalibrationDataError(ValueError):
    """The calibration folder or options cannot give any calibration data."""


@dataclass(frozen=True)
class CalibrationConfig:
    mode: str = "images"
    max_images: int | None = None   # first N images in sorted order (None: all)
    patch_size: int = 64            # LR pixels (patches mode)
    patches_per_image: int = 8
    batch_size: int = 8             # patches per batch (patches mode)
    seed: int = 0


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationDataError(f"calibration folder {folder} not found")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CalibrationDataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in calibration folder "
                                   f"{folder}")
    return files


def load_rgb_chw(path: Path) -> np.ndarray:
    """1 x 3 x H x W float32 on 0..255; CalibrationDataError naming the file when it cannot be used."""
    try:
        arr = read_rgb(path).astype(np.float32)
    except ImageError as exc:  # the message names the file
        raise CalibrationDataError(f"calibration image {exc}; remove it from the calibration folder") from None
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise CalibrationDataError(f"calibration image {path} is {arr.shape[1]}x{arr.shape[0]}; SMSR needs at "
                                   "least 2x2 pixels")
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None])


def check_calibration_folder(folder: str | Path, config: CalibrationConfig = CalibrationConfig()) -> int:
    """Decode every image calibration would use (cheap next to calibration itself), so a bad folder is reported
    before any slow step; returns how many images will be used."""
    if config.mode not in MODES:
        raise CalibrationDataError(f"unknown calibration mode {config.mode!r}; expected one of {MODES}")
    files = list_images(folder)[: config.max_images]
    for f in files:
        load_rgb_chw(f)
    return len(files)


def sample_patches(img: np.ndarray, size: int, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`count` size x size crops of a 1 x 3 x H x W image at seeded random positions (the whole image, once,
    when it is smaller than a patch)."""
    _, _, h, w = img.shape
    if h < size or w < size:
        return [img]
    ys = rng.integers(0, h - size + 1, count)
    xs = rng.integers(0, w - size + 1, count)
    return [img[:, :, y:y + size, x:x + size] for y, x in zip(ys, xs)]


def calibration_batches(folder: str | Path, config: CalibrationConfig = CalibrationConfig()) -> list[np.ndarray]:
    if config.mode not in MODES:
        raise CalibrationDataError(f"unknown calibration mode {config.mode!r}; expected one of {MODES}")
    files = list_images(folder)[: config.max_images]
    if config.mode == "images":
        return [load_rgb_chw(p) for p in files]
    rng = np.random.default_rng(config.seed)
    patches = [p for f in files for p in sample_patches(load_rgb_chw(f), config.patch_size,
                                                         config.patches_per_image, rng)]
    same = [p for p in patches if p.shape[2:] == (config.patch_size, config.patch_size)]
    small = [p for p in patches if p.shape[2:] != (config.patch_size, config.patch_size)]
    batches = [np.concatenate(same[i:i + config.batch_size]) for i in range(0, len(same), config.batch_size)]
    return batches + small  # images smaller than a patch go whole, one per batch


class ArrayReader(CalibrationDataReader):
    """onnxruntime.quantization CalibrationDataReader over a list of arrays (re-iterable via rewind)."""

    def __init__(self, batches: list[np.ndarray], input_name: str = "lr", dtype=np.float32):
        self.batches, self.input_name, self.dtype = batches, input_name, dtype
        self._it: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict | None:
        b = next(self._it, None)
        return None if b is None else {self.input_name: b.astype(self.dtype)}

    def rewind(self) -> None:
        self._it = iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

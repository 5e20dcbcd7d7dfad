"""Optimization profiles for the LR input "lr" (N x 3 x H x W).

Presets (the runtime pads odd sizes to even and tiles images larger than the profile's max, so max bounds memory,
not what the engine can process):
- photo: min 1x3x16x16, opt 1x3x256x256, max 1x3x512x512 (LR pixels; 512x512 keeps a Jetson's activation memory
  around 1 GB at FP16 for x2);
- 720p / 1080p: video frames whose OUTPUT is 1280x720 / 1920x1080: LR = ceil(out / scale) rounded up to even,
  opt = max = that frame at the batch size (fixed-size video gets the kernels tuned for exactly its shape),
  min = one frame.
--batch sets N of opt and max. Explicit --min/--opt/--max shapes override the preset's.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

PRESETS = ("photo", "720p", "1080p")
VIDEO_OUTPUT = {"720p": (720, 1280), "1080p": (1080, 1920)}
PHOTO = {"min": (16, 16), "opt": (256, 256), "max": (512, 512)}
MIN_SIDE = 2  # the mask branch's AvgPool(2) needs at least 2 LR pixels per side
CHANNELS = 3


class ProfileError(ValueError):
    """An optimization profile that cannot be built; the message names the problem."""


Shape = tuple[int, int, int, int]


@dataclass(frozen=True)
class Profile:
    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        for key in ("min", "opt", "max"):
            s = getattr(self, key)
            if len(s) != 4 or any(not isinstance(v, int) for v in s):
                raise ProfileError(f"profile {key} shape must be 4 integers N,3,H,W, got {s}")
            if s[1] != CHANNELS:
                raise ProfileError(f"profile {key} shape {fmt(s)}: the input has 3 (RGB) channels, not {s[1]}")
            if s[0] < 1 or s[2] < MIN_SIDE or s[3] < MIN_SIDE:
                raise ProfileError(f"profile {key} shape {fmt(s)}: need N >= 1 and H, W >= {MIN_SIDE}")
        for i, dim in enumerate("NCHW"):
            if not self.min[i] <= self.opt[i] <= self.max[i]:
                raise ProfileError(f"profile needs min <= opt <= max for {dim}: "
                                   f"{self.min[i]} / {self.opt[i]} / {self.max[i]}")

    def as_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    def describe(self) -> str:
        return f"min {fmt(self.min)}, opt {fmt(self.opt)}, max {fmt(self.max)}"


def fmt(shape: Shape) -> str:
    return "x".join(str(v) for v in shape)


def parse_shape(text: str, batch: int = 1) -> Shape:
    """'HxW' (N = batch, C = 3) or 'NxCxHxW' ('x', ',' or '*' as separators)."""
    parts = [p for p in re.split(r"[x,*X ]+", text.strip()) if p]
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise ProfileError(f"shape {text!r}: expected HxW or NxCxHxW with integers") from None
    if len(vals) == 2:
        return (batch, CHANNELS, vals[0], vals[1])
    if len(vals) == 4:
        return tuple(vals)  # type: ignore[return-value]
    raise ProfileError(f"shape {text!r}: expected HxW or NxCxHxW")


def even_ceil(out_pixels: int, scale: int) -> int:
    """LR side for an output side: ceil(out / scale), rounded up to even (the runtime pads to even)."""
    v = math.ceil(out_pixels / scale)
    return v + (v % 2)


def make_profile(scale: int, preset: str = "photo", batch: int = 1, min_shape: str | None = None,
                 opt_shape: str | None = None, max_shape: str | None = None) -> Profile:
    if preset not in PRESETS:
        raise ProfileError(f"unknown profile preset {preset!r}; expected one of {', '.join(PRESETS)}")
    if batch < 1:
        raise ProfileError(f"batch size must be >= 1, got {batch}")
    if scale < 1:
        raise ProfileError(f"scale must be >= 1, got {scale}")
    if preset == "photo":
        hw = PHOTO
        shapes = {"min": (1, CHANNELS, *hw["min"]), "opt": (batch, CHANNELS, *hw["opt"]),
                  "max": (batch, CHANNELS, *hw["max"])}
    else:
        oh, ow = VIDEO_OUTPUT[preset]
        h, w = even_ceil(oh, scale), even_ceil(ow, scale)
        shapes = {"min": (1, CHANNELS, h, w), "opt": (batch, CHANNELS, h, w), "max": (batch, CHANNELS, h, w)}
    for key, text in (("min", min_shape), ("opt", opt_shape), ("max", max_shape)):
        if text:
            shapes[key] = parse_shape(text, 1 if key == "min" else batch)
    # An explicit max below the preset's opt (e.g. a small test profile) pulls opt (and min) down with it.
    if max_shape and not opt_shape:
        shapes["opt"] = tuple(min(a, b) for a, b in zip(shapes["opt"], shapes["max"]))
    if (max_shape or opt_shape) and not min_shape:
        shapes["min"] = tuple(min(a, b) for a, b in zip(shapes["min"], shapes["opt"]))
    return Profile(shapes["min"], shapes["opt"], shapes["max"])

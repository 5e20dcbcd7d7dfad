"""Polygraphy data loader (`--data-loader-script calibration/polygraphy_data.py:load_data`): real LR image crops
instead of random values, so comparisons see realistic masks. Configured by environment variables (polygraphy
calls load_data() without arguments):
    SMSR_COMPARE_DATA   folder of LR images (default ../shared/data/Set5/LR_bicubic/X2 beside the repo)
    SMSR_COMPARE_SHAPE  NxCxHxW or HxW crop (default 1x3x64x64; must lie inside the engine's profile)
    SMSR_COMPARE_COUNT  number of inputs (default 3)
    SMSR_COMPARE_DTYPE  float32 (default) or float16 (for graphs with FP16 inputs)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:  # polygraphy imports this file by path
    sys.path.insert(0, str(_REPO))

from calibration.data import CalibrationConfig, calibration_batches  # noqa: E402


def load_data():
    folder = os.environ.get("SMSR_COMPARE_DATA", str(_REPO.parent / "shared/data/Set5/LR_bicubic/X2"))
    dims = [int(v) for v in os.environ.get("SMSR_COMPARE_SHAPE", "1x3x64x64").lower().split("x")]
    n, h, w = (1, *dims) if len(dims) == 2 else (dims[0], dims[2], dims[3])
    count = int(os.environ.get("SMSR_COMPARE_COUNT", "3"))
    dtype = np.dtype(os.environ.get("SMSR_COMPARE_DTYPE", "float32"))
    if h != w:
        raise ValueError("SMSR_COMPARE_SHAPE: use a square crop (HxH)")
    cfg = CalibrationConfig(mode="patches", patch_size=h, patches_per_image=n * count, batch_size=n, seed=0)
    batches = [b for b in calibration_batches(folder, cfg) if b.shape == (n, 3, h, w)]
    for b in batches[:count]:
        yield {"lr": b.astype(dtype)}

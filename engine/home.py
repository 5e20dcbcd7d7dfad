"""The user cache: $SMSR_HOME (default ~/.cache/smsr, or $XDG_CACHE_HOME/smsr).

    models/smsr_x{s}_deploy.onnx   the default model of `smsr upscale` / `smsr bench` (smsr export-onnx --install,
                                   make demo)
    weights/smsr_x2_official.pt    the official checkpoint (smsr download)
    data/Set5/                     Set5 HR + LR_bicubic/X2 (smsr download)
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "SMSR_HOME"
CHECKPOINT_NAME = "smsr_x2_official.pt"


def smsr_home() -> Path:
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    return (Path(cache).expanduser() if cache else Path.home() / ".cache") / "smsr"


def models_dir() -> Path:
    return smsr_home() / "models"


def default_model_path(scale: int = 2) -> Path:
    return models_dir() / f"smsr_x{scale}_deploy.onnx"


def default_weights_path() -> Path:
    return smsr_home() / "weights" / CHECKPOINT_NAME


def default_data_dir() -> Path:
    """The folder holding Set5/ (like ../shared/data)."""
    return smsr_home() / "data"


FILL_HINT = ("create it with `smsr export-onnx --install` (needs the checkpoint: `smsr download` fetches it) or "
             "`make demo` in a checkout, or pass --model/--engine")

"""Shared fixtures: the official checkpoint, Set5, the exported ONNX graphs (made once per session).

Data locations: SMSR_WEIGHTS (file) and SMSR_DATA (folder with Set5/), default ../shared beside the repo.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import missing_component

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(autouse=True)
def _empty_smsr_home(tmp_path_factory, monkeypatch):
    """Tests never read or fill the user's cache ($SMSR_HOME, default ~/.cache/smsr): an empty one per test."""
    monkeypatch.setenv("SMSR_HOME", str(tmp_path_factory.mktemp("smsr_home")))


def _weights_path() -> Path:
    return Path(os.environ.get("SMSR_WEIGHTS", SHARED / "weights" / "smsr_x2_official.pt"))


def _data_root() -> Path:
    return Path(os.environ.get("SMSR_DATA", SHARED / "data"))


def _require_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        missing_component("PyTorch (converters extra) is not installed")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def official_weights() -> Path:
    path = _weights_path()
    if not path.is_file():
        missing_component(f"official x2 checkpoint not found at {path} (set SMSR_WEIGHTS)")
    return path


@pytest.fixture(scope="session")
def set5_dir() -> Path:
    path = _data_root() / "Set5"
    if not (path / "HR").is_dir():
        missing_component(f"Set5 not found at {path} (set SMSR_DATA to the folder that holds Set5/)")
    return path


@pytest.fixture(scope="session")
def official_model(official_weights):
    _require_torch()
    from converters.model import load_smsr
    return load_smsr(official_weights, 2)


@pytest.fixture(scope="session")
def onnx_graphs(official_weights, tmp_path_factory) -> dict[str, Path]:
    """{'reference', 'deploy', 'reference_fp16', 'deploy_fp16'} -> path, official x2 model."""
    _require_torch()
    from converters.export_onnx import export_all
    return export_all(official_weights, 2, tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="session")
def set5_lr_images(set5_dir):
    """name -> H x W x 3 uint8 LR (x2) image."""
    from engine.image_io import read_rgb
    lr_dir = set5_dir / "LR_bicubic" / "X2"
    return {p.stem: read_rgb(p) for p in sorted(lr_dir.glob("*.png"))}

"""Loading and validating SMSR checkpoints, with clear errors for every way a file can be wrong."""
from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

import torch

from .smsr import SMSR

# The official pretrained models ship with the authors' repository (github.com/LongguangWang/SMSR,
# folder experiment/). The x2 file this project is validated against has this SHA-256.
OFFICIAL_CHECKPOINTS = {
    2: {
        "url": "https://github.com/LongguangWang/SMSR/raw/master/experiment/SMSR_X2/model/model_1000.pt",
        "sha256": "fe2a9ea09595e1ee3288d5543a22802ead716bdd0b4df9a5af373eb943eced0a",
        "filename": "smsr_x2_official.pt",
    },
}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used for the requested model (message names the problem)."""


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def download_checkpoint(scale: int, dest_dir: str | os.PathLike, url: str | None = None,
                        sha256: str | None = None) -> Path:
    """Download a checkpoint into dest_dir and verify its SHA-256; never leaves a partial file."""
    known = OFFICIAL_CHECKPOINTS.get(scale, {})
    url = url or known.get("url")
    sha256 = sha256 or known.get("sha256")
    if not url:
        raise CheckpointError(f"no official checkpoint URL is known for scale {scale}; pass --url")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / (known.get("filename") or Path(url).name)
    if dest.exists() and sha256 and sha256_of(dest) == sha256:
        return dest
    from engine.atomic_write import atomic_write

    def fetch(out):
        with urllib.request.urlopen(url, timeout=60) as response:
            h = hashlib.sha256()
            while block := response.read(1 << 20):
                h.update(block)
                out.write(block)
        if sha256 and h.hexdigest() != sha256:  # raising here discards the temp file
            raise CheckpointError(f"downloaded {url} has SHA-256 {h.hexdigest()}, expected {sha256}")
    atomic_write(dest, fetch)
    return dest


def _unwrap_state_dict(obj, path: Path) -> dict:
    """Accept a plain state dict or the usual wrappers ({'state_dict'|'model'|'params': ...}, 'module.')."""
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "params", "params_ema"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not contain a PyTorch state dict of tensors")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def load_state_dict_file(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for non-checkpoint files
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return _unwrap_state_dict(obj, path)


def infer_scale(state: dict) -> int | None:
    """Scale from the tail conv: it outputs 3*s^2 channels before PixelShuffle(s)."""
    w = state.get("tail.0.weight")
    if w is None or w.dim() != 4:
        return None
    s = round((w.shape[0] / 3) ** 0.5)
    return s if 3 * s * s == w.shape[0] else None


def build_model_from_state(state: dict, scale: int, path: str | os.PathLike = "<state dict>") -> SMSR:
    ckpt_scale = infer_scale(state)
    if ckpt_scale is not None and ckpt_scale != scale:
        raise CheckpointError(f"{path} is an x{ckpt_scale} checkpoint (tail outputs {3 * ckpt_scale ** 2} "
                              f"channels) but scale {scale} was requested")
    model = SMSR(scale)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        def show(keys):
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {show(unexpected)}")
        raise CheckpointError(f"{path} is not an SMSR checkpoint of this architecture: " + "; ".join(parts))
    bad_shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in expected.items() if state[k].shape != v.shape]
    if bad_shapes:
        raise CheckpointError(f"{path} has tensors of the wrong shape for SMSR x{scale}: " + "; ".join(bad_shapes[:5]))
    model.load_state_dict(state, strict=True)
    model.eval()
    return model.prepare()  # fails early on an ambiguous channel mask


def load_smsr(path: str | os.PathLike, scale: int) -> SMSR:
    """Build SMSR x{scale} from a checkpoint file (strict key and shape match), in eval mode."""
    return build_model_from_state(load_state_dict_file(path), scale, path)

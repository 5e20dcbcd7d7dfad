"""Loading and validating SMSR checkpoints, with clear errors for every way a file can be wrong."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from .smsr import SMSR

# The official pretrained models ship with the authors' repository (github.com/LongguangWang/SMSR,
# folder experiment/). The x2 file this project is validated against has this SHA-256.
OFFICIAL_CHECKPOINTS = {
    2: {
        # the authors' repository at the commit engine/download.py pins
        "url": "https://raw.githubusercontent.com/LongguangWang/SMSR/e1fd21e99a1baad14b6e6b4a7cd36735d7180ea5/"
               "experiment/SMSR_X2/model/model_1000.pt",
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


def download_checkpoint(scale: int, dest_dir: str | os.PathLike | None = None, url: str | None = None,
                        sha256: str | None = None) -> Path:
    """Download a checkpoint into dest_dir (default $SMSR_HOME/weights) and verify its SHA-256; never leaves a
    partial file or an empty folder. Raises engine.download.DownloadError (network) / HashMismatchError.
    `smsr download` fetches the official x2 checkpoint and Set5 together."""
    from engine.download import HashMismatchError, fetch
    from engine.home import default_weights_path
    known = OFFICIAL_CHECKPOINTS.get(scale, {})
    url = url or known.get("url")
    sha256 = sha256 or known.get("sha256")
    if not url:
        raise CheckpointError(f"no official checkpoint URL is known for scale {scale}; pass --url")
    dest_dir = Path(dest_dir) if dest_dir is not None else default_weights_path().parent
    dest = dest_dir / (known.get("filename") or Path(url).name)
    if dest.exists() and sha256 and sha256_of(dest) == sha256:
        return dest
    created = not dest_dir.exists()
    dest_dir.mkdir(parents=True, exist_ok=True)
    try:
        fetch(url, dest, sha256)
    except BaseException as exc:
        if created and not any(dest_dir.iterdir()):
            dest_dir.rmdir()
        if isinstance(exc, HashMismatchError):
            raise CheckpointError(str(exc)) from None
        raise
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


def _load_failure(exc: Exception) -> str:
    """Why torch.load refused the file, without PyTorch's advice to retry with weights_only=False: unpickling an
    untrusted file can run arbitrary code, and a real SMSR checkpoint never needs it."""
    text = str(exc)
    if "weights_only" in text or "Unpickl" in type(exc).__name__:
        return ("it holds Python objects other than tensors, which are refused because loading them could run "
                "code; a checkpoint from the SMSR training code holds only tensors")
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def load_state_dict_file(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for non-checkpoint files
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({_load_failure(exc)})") from None
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

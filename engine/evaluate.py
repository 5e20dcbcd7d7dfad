"""Evaluate SMSR on a benchmark folder (HR/ and LR_bicubic/X{s}/), PSNR/SSIM on Y like the SR literature.

    python -m engine.evaluate --backend torch --weights W --data DIR [--json]
    python -m engine.evaluate --backend ort --model smsr_x2_deploy.onnx --data DIR
    python -m engine.evaluate --backend tensorrt --engine smsr_x2_deploy_fp16_<builder>.engine --data DIR
The scale comes from the model (ONNX metadata, engine manifest, checkpoint); --scale only checks it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import EngineError, UsageError
from .image_io import IMAGE_SUFFIXES, read_rgb
from .metrics import psnr_y, ssim_y, to_uint8


Predictor = Callable[[np.ndarray], np.ndarray]  # N x 3 x H x W float32 (0..255) -> N x 3 x sH x sW


@dataclass
class ImageResult:
    name: str
    lr_size: str
    psnr_y: float
    ssim_y: float
    mask_density: float | None
    seconds: float


def find_pairs(data: Path, scale: int) -> list[tuple[str, Path, Path]]:
    """(name, hr, lr) triples; LR files may be named like the HR file or with an 'x{s}' suffix."""
    hr_dir, lr_dir = data / "HR", data / "LR_bicubic" / f"X{scale}"
    for d in (hr_dir, lr_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"{d} not found: expected a folder with HR/ and LR_bicubic/X{scale}/")
    pairs = []
    for hr in sorted(p for p in hr_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        candidates = [lr_dir / hr.name, lr_dir / f"{hr.stem}x{scale}{hr.suffix}"]
        lr = next((c for c in candidates if c.exists()), None)
        if lr is None:
            raise FileNotFoundError(f"no LR image for {hr.name} in {lr_dir}")
        pairs.append((hr.stem, hr, lr))
    if not pairs:
        raise FileNotFoundError(f"no images in {hr_dir}")
    return pairs


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


def make_predictor(backend: str, scale: int | None, weights: str | None, model: str | None,
                   threads: int | None, engine: str | None = None, plugin: str | None = None):
    """A function LR -> (SR, masks or None) for the chosen backend (engine.backends), with the model's scale as
    its `scale` attribute, and a description. `scale` None: the model's own."""
    from .backends import create_backend
    if backend == "torch":
        if not weights:
            raise UsageError("--backend torch needs --weights")
        if threads:
            import torch  # only the reference backend uses it
            torch.set_num_threads(threads)
        if scale is None:
            scale = _checkpoint_scale(weights)
        runner = create_backend("torch", model=weights, scale=scale, device="cpu")
    elif backend == "ort":
        if not model:
            raise UsageError("--backend ort needs --model (an ONNX file from converters.export_onnx)")
        runner = create_backend("ort", model=model, scale=scale, threads=threads)
    elif backend == "tensorrt":
        if not engine:
            raise UsageError("--backend tensorrt needs --engine (from build-engine, with its manifest)")
        runner = create_backend("tensorrt", engine=engine, scale=scale, plugin=plugin)
    else:
        raise UsageError(f"unknown backend {backend!r} (choose torch, ort or tensorrt)")
    def predict(lr):
        return runner.run(lr, want_masks=True)
    predict.scale = runner.scale
    return predict, runner.describe()


def _checkpoint_scale(weights: str) -> int | None:
    """The scale an SMSR checkpoint was trained for (its tail conv), or None to let the backend decide."""
    try:
        from converters.model.checkpoint import infer_scale, load_state_dict_file
        return infer_scale(load_state_dict_file(weights))
    except Exception:  # the backend reports an unreadable file itself
        return None


def evaluate(predict, pairs, scale: int, progress=None) -> list[ImageResult]:
    results = []
    for name, hr_path, lr_path in pairs:
        hr = mod_crop(read_rgb(hr_path), scale)
        lr = read_rgb(lr_path)
        if (lr.shape[0] * scale, lr.shape[1] * scale) != hr.shape[:2]:
            raise ValueError(f"{name}: LR {lr.shape[1]}x{lr.shape[0]} x{scale} does not match the mod-cropped "
                             f"HR {hr.shape[1]}x{hr.shape[0]}")
        x = np.ascontiguousarray(lr.transpose(2, 0, 1)[None].astype(np.float32))
        t0 = time.perf_counter()
        sr, masks = predict(x)
        seconds = time.perf_counter() - t0
        sr_img = to_uint8(sr[0].transpose(1, 2, 0))
        results.append(ImageResult(name, f"{lr.shape[1]}x{lr.shape[0]}", psnr_y(sr_img, hr, scale),
                                   ssim_y(sr_img, hr, scale),
                                   None if masks is None else float(masks.mean()), seconds))
        if progress:
            progress(results[-1])
    return results


def summarize(results: list[ImageResult]) -> dict:
    return {
        "images": len(results),
        "psnr_y": float(np.mean([r.psnr_y for r in results])),
        "ssim_y": float(np.mean([r.ssim_y for r in results])),
        "mask_density": (float(np.mean([r.mask_density for r in results]))
                         if all(r.mask_density is not None for r in results) else None),
        "seconds": float(sum(r.seconds for r in results)),  # total
        "seconds_mean": float(np.mean([r.seconds for r in results])),
    }


def main(argv: list[str] | None = None, prog: str = "python -m engine.evaluate") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=("torch", "ort", "tensorrt"), default="ort")
    ap.add_argument("--weights", help="PyTorch checkpoint (torch backend)")
    ap.add_argument("--model", help="ONNX model (ort backend)")
    ap.add_argument("--engine", help="TensorRT engine with its manifest (tensorrt backend, needs a GPU)")
    ap.add_argument("--plugin", help="TensorRT plugin library (default: from the engine manifest)")
    ap.add_argument("--data", required=True, help="folder with HR/ and LR_bicubic/X{scale}/")
    ap.add_argument("--scale", type=int, choices=(2, 3, 4),
                    help="expected scale (default: the model's own; an error if the model differs)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: library default)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args(argv)
    try:
        if not Path(args.data).is_dir():
            raise FileNotFoundError(f"{args.data} not found: expected a folder with HR/ and LR_bicubic/X<scale>/")
        predict, description = make_predictor(args.backend, args.scale, args.weights, args.model, args.threads,
                                              args.engine, args.plugin)
        args.scale = scale = predict.scale
        pairs = find_pairs(Path(args.data), scale)
        if not args.json:
            print(f"backend: {description}")
            print(f"{'image':<12} {'LR size':>9} {'PSNR_Y':>8} {'SSIM_Y':>7} {'mask':>6} {'sec':>6}")

        def show(r: ImageResult):
            if not args.json:
                dens = "-" if r.mask_density is None else f"{100 * r.mask_density:.0f}%"
                print(f"{r.name:<12} {r.lr_size:>9} {r.psnr_y:8.3f} {r.ssim_y:7.4f} {dens:>6} {r.seconds:6.2f}",
                      flush=True)
        results = evaluate(predict, pairs, args.scale, show)
    except EngineError as exc:  # user-facing tool: one clear line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (FileNotFoundError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = summarize(results)
    if args.json:
        print(json.dumps({"backend": description, "scale": args.scale, "data": str(args.data), **summary,
                          "per_image": [asdict(r) for r in results]}))
    else:
        dens = "-" if summary["mask_density"] is None else f"{100 * summary['mask_density']:.0f}%"
        print(f"{'mean':<12} {'':>9} {summary['psnr_y']:8.3f} {summary['ssim_y']:7.4f} {dens:>6} "
              f"{summary['seconds_mean']:6.2f}")
        print(f"x{scale}, {summary['images']} images in {summary['seconds']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

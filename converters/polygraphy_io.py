"""Inputs and reference outputs in Polygraphy's JSON formats, so its CLI can compare every backend.

Polygraphy's CLI cannot load an ONNX Runtime custom-op library, and PyTorch is no Polygraphy runner; this tool
produces their outputs as Polygraphy RunResults files, and `polygraphy run ... --load-outputs` compares:

    python -m converters.polygraphy_io inputs --data ../shared/data/Set5 --out poly/inputs.json
    python -m converters.polygraphy_io torch  --weights W --inputs poly/inputs.json --out poly/pytorch.json
    python -m converters.polygraphy_io ort    --model out/onnx/smsr_x2_deploy.onnx --inputs poly/inputs.json --out poly/deploy.json
    polygraphy run out/onnx/smsr_x2_reference.onnx --onnxrt --load-inputs poly/inputs.json \
        --load-outputs poly/pytorch.json --atol sr:1e-3 masks:0 --rtol 0 --check-error-stat max
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

INPUT_NAME = "lr"


def make_inputs(data: Path | None, seed: int = 0, max_side: int = 96) -> list[dict[str, np.ndarray]]:
    """Set5 LR crops (if given), an odd-sized random image, an empty-mask (flat) and a full-mask (noise)
    image, and an odd-sized batch of 2."""
    rng = np.random.default_rng(seed)
    feeds = []
    if data is not None:
        from engine.image_io import read_rgb
        for p in sorted((Path(data) / "LR_bicubic" / "X2").glob("*.png")):
            img = read_rgb(p)[:max_side, :max_side]
            feeds.append(img.transpose(2, 0, 1)[None].astype(np.float32))
    feeds.append((rng.random((1, 3, 37, 23)) * 255).astype(np.float32))
    feeds.append(np.full((1, 3, 30, 26), 128.0, np.float32))
    feeds.append((rng.random((1, 3, 26, 30)) * 255).astype(np.float32))
    feeds.append((rng.random((2, 3, 19, 25)) * 255).astype(np.float32))
    return [{INPUT_NAME: np.ascontiguousarray(f)} for f in feeds]


def _save_results(runner_name: str, outputs: list[dict[str, np.ndarray]], path: Path) -> None:
    from polygraphy.comparator import RunResults
    from polygraphy.comparator.struct import IterationResult
    results = RunResults()
    results.append((runner_name, [IterationResult(outputs=o, runner_name=runner_name) for o in outputs]))
    path.parent.mkdir(parents=True, exist_ok=True)
    results.save(str(path))


def _load_inputs(path: Path) -> list[dict[str, np.ndarray]]:
    from polygraphy.json import load_json
    return load_json(str(path), description="input data")


def torch_outputs(weights: str, scale: int, feeds) -> list[dict[str, np.ndarray]]:
    import torch
    from .model import load_smsr
    model = load_smsr(weights, scale)
    outs = []
    with torch.no_grad():
        for feed in feeds:
            sr, masks = model.forward_with_masks(torch.from_numpy(feed[INPUT_NAME].astype(np.float32)))
            outs.append({"sr": sr.numpy(), "masks": masks.numpy()})
    return outs


def ort_outputs(model: str, feeds, threads: int | None = None) -> list[dict[str, np.ndarray]]:
    from engine.backends.onnxruntime import OrtBackend
    backend = OrtBackend(model, device="cpu", threads=threads)
    outs = []
    for feed in feeds:
        sr, masks = backend.run(feed[INPUT_NAME], want_masks=True)
        outs.append({"sr": sr, "masks": masks})
    return outs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m converters.polygraphy_io", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("inputs", help="write comparison inputs (Polygraphy data-loader JSON)")
    p.add_argument("--data", help="Set5-style folder (LR_bicubic/X2 crops are included)")
    p.add_argument("--out", required=True)
    p = sub.add_parser("torch", help="run the PyTorch model, save Polygraphy RunResults")
    p.add_argument("--weights", required=True)
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--inputs", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("ort", help="run an ONNX graph on ONNX Runtime (custom op included), save RunResults")
    p.add_argument("--model", required=True)
    p.add_argument("--inputs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.cmd == "inputs":
        from polygraphy.json import save_json
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        save_json(make_inputs(Path(args.data) if args.data else None), args.out, description="input data")
    elif args.cmd == "torch":
        _save_results("pytorch", torch_outputs(args.weights, args.scale, _load_inputs(Path(args.inputs))),
                      Path(args.out))
    else:
        _save_results(f"onnxrt-{Path(args.model).stem}",
                      ort_outputs(args.model, _load_inputs(Path(args.inputs)), args.threads), Path(args.out))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

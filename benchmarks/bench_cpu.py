"""CPU benchmark on Set5 x2: reference graph (ONNX Runtime), deploy graph (ONNX Runtime + our sparse op), PyTorch.

    python benchmarks/bench_cpu.py --weights W --data ../shared/data/Set5 [--threads 2] [--runs 7] [--int8-dir D]

--int8-dir: a folder with smsr_x2_reference_int8.onnx and smsr_x2_deploy_int8.onnx (`python converters/build_engine.py
--precision int8 --onnx-only ...`): adds ONNX Runtime's own INT8 (QDQ) reference graph and the INT8 deploy graph
(INT8 inside our op) to the same interleaved runs.

Method: every backend gets one warm-up pass over the 5 images; then `--runs` repetitions, each timing one full
pass over Set5 per backend, backends interleaved within a repetition (so machine noise hits all alike).
Reported: median total seconds per backend, and the median of the per-repetition ratios reference/deploy.
Prints a table and one JSON line (prefix "JSON ").
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _ort_runner(path: Path, threads: int):
    from engine.backends.onnxruntime import OrtBackend
    backend = OrtBackend(path, device="cpu", threads=threads)
    return lambda x: backend.run(x)[0]


def _torch_runner(weights: Path, threads: int, formulation: str):
    import torch
    from converters.model import load_smsr
    torch.set_num_threads(threads)
    model = load_smsr(weights, 2)

    def run(x):
        with torch.no_grad():
            return model.forward_with_masks(torch.from_numpy(x), formulation)[0]
    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True, type=Path)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--onnx-dir", type=Path, help="reuse exported graphs (default: export to a temp dir)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch rows")
    ap.add_argument("--int8-dir", type=Path, help="also time the INT8 reference and INT8 deploy graphs in it")
    args = ap.parse_args(argv)

    from converters.export_onnx import export_all
    from engine.image_io import read_rgb
    onnx_dir = args.onnx_dir or Path(tempfile.mkdtemp(prefix="smsr_bench_"))
    graphs = {k: onnx_dir / f"smsr_x2_{k}.onnx" for k in ("reference", "deploy")}
    if not all(p.exists() for p in graphs.values()):
        graphs = export_all(args.weights, 2, onnx_dir, fp16=False)
    images = [read_rgb(p).transpose(2, 0, 1)[None].astype(np.float32).copy()
              for p in sorted((args.data / "LR_bicubic" / "X2").glob("*.png"))]

    runners = {
        "ort reference (dense)": _ort_runner(graphs["reference"], args.threads),
        "ort deploy (sparse op)": _ort_runner(graphs["deploy"], args.threads),
    }
    if args.int8_dir is not None:
        for kind, label in (("reference", "ort reference INT8 (QDQ)"), ("deploy", "ort deploy INT8 (INT8 op)")):
            path = args.int8_dir / f"smsr_x2_{kind}_int8.onnx"
            if not path.exists():
                ap.error(f"{path} not found: make it with converters/build_engine.py --precision int8 --onnx-only")
            runners[label] = _ort_runner(path, args.threads)
    if not args.no_torch:
        runners["torch dense-masked"] = _torch_runner(args.weights, args.threads, "dense_masked")
        runners["torch sparse (gather+GEMM)"] = _torch_runner(args.weights, args.threads, "sparse")

    def one_pass(run) -> float:
        t0 = time.perf_counter()
        for x in images:
            run(x)
        return time.perf_counter() - t0

    for run in runners.values():  # warm-up
        one_pass(run)
    times = {name: [] for name in runners}
    for _ in range(args.runs):
        for name, run in runners.items():
            times[name].append(one_pass(run))
    ref, dep = times["ort reference (dense)"], times["ort deploy (sparse op)"]
    ratio = statistics.median(r / d for r, d in zip(ref, dep))

    base = statistics.median(ref)
    print(f"Set5 x2, {len(images)} images, {args.threads} threads, median of {args.runs} runs "
          f"({platform.processor() or platform.machine()}, {platform.python_version()})")
    print(f"{'backend':<28} {'median s':>9} {'min s':>7} {'vs ORT reference':>17}")
    for name, t in times.items():
        print(f"{name:<28} {statistics.median(t):9.3f} {min(t):7.3f} {base / statistics.median(t):16.2f}x")
    print("JSON " + json.dumps({
        "benchmark": "cpu_set5_x2", "threads": args.threads, "runs": args.runs,
        "median_seconds": {k: statistics.median(v) for k, v in times.items()},
        "ratio_reference_over_deploy": ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

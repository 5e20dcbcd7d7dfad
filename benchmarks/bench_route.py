"""Adaptive tile routing (--route): fraction of tiles routed, quality change and wall time against --route off.

    python benchmarks/bench_route.py --model out/onnx/smsr_x2_deploy.onnx --data ../shared/data/Set5 \
        --plot docs/route_bench.png

Inputs (x2 model):
- Set5 x2 LR (quality: PSNR_Y against HR, uint8, shave 2, as engine.evaluate);
- Set5 HR used as inputs (larger, with flat regions; no ground truth: quality = PSNR_Y of the routed output against
  the --route off output, i.e. how far routing moves away from the full network);
- a photo-like 1920×1080 input: a mosaic of the Set5 HR images, two rows of 540 px, each image mirror-padded
  (np.pad "symmetric") to 540 px height, concatenated left to right (second row in reverse order) and repeated
  until 1920 px wide (same quality measure as the HR inputs).
Method: one ONNX Runtime CPU session; every configuration (route off at the same tile size, the thresholds, and
for the Set5 sets the whole-image default without tiles) is warmed up on a 160×160 crop of the set's first image,
then `--runs` repetitions each time one full pass over the set per configuration, configurations interleaved so
machine noise hits all alike. Reported: median pass time, and the median over repetitions of (off time /
configuration time).
Prints a table, one JSON line (prefix "JSON "), and writes a PNG plot with --plot (needs matplotlib).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.backends.onnxruntime import OrtBackend  # noqa: E402
from engine.evaluate import find_pairs, mod_crop  # noqa: E402
from engine.image_io import read_rgb  # noqa: E402
from engine.metrics import psnr_y, to_uint8  # noqa: E402
from engine.pipeline import DEFAULT_OVERLAP, Upscaler  # noqa: E402
from engine.routing import AUTO_THRESHOLD, DEFAULT_ROUTE_TILE, Router  # noqa: E402


def mosaic(images: list[np.ndarray], height: int = 1080, width: int = 1920) -> np.ndarray:
    """H×W×3 uint8 photo-like frame from H×W×3 images (see the module doc)."""
    row_h = height // 2
    rows = []
    for order in (images, images[::-1]):
        parts, w, i = [], 0, 0
        while w < width:
            img = order[i % len(order)]
            pad = max(0, row_h - img.shape[0])
            parts.append(np.pad(img, ((0, pad), (0, 0), (0, 0)), mode="symmetric")[:row_h])
            w += img.shape[1]
            i += 1
        rows.append(np.concatenate(parts, axis=1)[:, :width])
    return np.concatenate(rows, axis=0)


def _chw(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img.transpose(2, 0, 1).astype(np.float32))


def bench_set(backend, name, images, hrs, thresholds, tile, runs, whole, log):
    scale = backend.scale
    configs = {"off": Upscaler(backend, tile=tile)}
    for t in thresholds:
        configs["T=%g" % t] = Upscaler(backend, tile=tile, router=Router(t, scale))
    if whole:
        configs["whole image (no tiles)"] = Upscaler(backend)
    for up in configs.values():  # warm-up (a crop: ORT sees the same tile shapes, the 1080p frame costs less)
        up.upscale(np.ascontiguousarray(images[0][:, :160, :160]))
    times = {k: [] for k in configs}
    outs, routed = {}, {}
    for r in range(runs):
        for k, up in configs.items():
            t0 = time.perf_counter()
            res = [up.upscale(x) for x in images]
            times[k].append(time.perf_counter() - t0)
            if r == 0:
                outs[k] = [to_uint8(x.sr.transpose(1, 2, 0)) for x in res]
                routed[k] = (sum(x.routed for x in res), sum(x.tiles for x in res))
        log("  %s: run %d/%d done" % (name, r + 1, runs))
    rows = []
    for k in configs:
        if hrs is not None:
            ps = [psnr_y(o, h, scale) for o, h in zip(outs[k], hrs)]
            base = [psnr_y(o, h, scale) for o, h in zip(outs["off"], hrs)]
            d = np.array(base) - np.array(ps)
            quality = {"psnr_y": float(np.mean(ps)), "mean_drop": float(d.mean()), "max_drop": float(d.max())}
        else:  # fidelity to the full network: PSNR_Y of this output against --route off's
            ps = [psnr_y(o, b) for o, b in zip(outs[k], outs["off"])]
            quality = {"psnr_vs_off": float(min(ps))}
        rows.append({"set": name, "config": k, "threshold": configs[k].router.threshold if configs[k].router else None,
                     "routed": routed[k][0], "tiles": routed[k][1],
                     "median_s": statistics.median(times[k]), "min_s": min(times[k]),
                     "speedup_vs_off": statistics.median(o / t for o, t in zip(times["off"], times[k])),
                     **quality})
    return rows


def print_rows(rows):
    print(f"{'set':<18} {'config':<24} {'routed':>11} {'median s':>9} {'vs off':>7}  quality")
    for r in rows:
        if "mean_drop" in r:
            q = f"PSNR_Y {r['psnr_y']:.3f} dB, drop {r['mean_drop']:+.4f} mean / {r['max_drop']:+.4f} worst"
        else:
            q = "identical to off" if r["psnr_vs_off"] == float("inf") else \
                f"PSNR_Y vs off {r['psnr_vs_off']:.2f} dB (worst image)"
        frac = f"{r['routed']}/{r['tiles']}" if r["threshold"] is not None else "-"
        print(f"{r['set']:<18} {r['config']:<24} {frac:>11} {r['median_s']:9.2f} {r['speedup_vs_off']:6.2f}x  {q}")


def plot(rows, path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    lr = [r for r in rows if r["set"] == "Set5 x2 LR" and (r["threshold"] is not None or r["config"] == "off")]
    a.plot([r["speedup_vs_off"] for r in lr], [-r["mean_drop"] for r in lr], "o-", label="mean of 5 images")
    a.plot([r["speedup_vs_off"] for r in lr], [-r["max_drop"] for r in lr], "s--", label="worst image")
    for i, r in enumerate(lr):  # labels stacked: the first points sit on top of each other near (1, 0)
        a.annotate(r["config"], (r["speedup_vs_off"], -r["mean_drop"]), textcoords="offset points",
                   xytext=(6, 4 - 11 * i if r["speedup_vs_off"] < 1.2 else 4), fontsize=8)
    a.axhline(-0.02, color="gray", lw=0.8, ls=":")
    a.axhline(-0.1, color="gray", lw=0.8, ls=":")
    a.set_xlabel("speed-up vs --route off (same tiles)")
    a.set_ylabel("PSNR_Y change vs --route off (dB)")
    a.set_title("Set5 x2: quality vs speed")
    a.legend(fontsize=8)
    f = np.linspace(0, 0.97, 50)
    b.plot(f, 1 / (1 - f), color="gray", lw=0.8, ls=":", label="ideal 1/(1 - fraction): routed tiles free")
    for name in dict.fromkeys(r["set"] for r in rows):
        pts = [r for r in rows if r["set"] == name and (r["threshold"] is not None or r["config"] == "off")]
        b.plot([r["routed"] / r["tiles"] if r["threshold"] is not None else 0 for r in pts],
               [r["speedup_vs_off"] for r in pts], "o-", label=name)
        for r in pts:
            if r["threshold"] == AUTO_THRESHOLD:
                b.annotate("auto", (r["routed"] / r["tiles"], r["speedup_vs_off"]), textcoords="offset points",
                           xytext=(-8, 6), fontsize=8)
    b.set_yscale("log")
    b.set_xlabel("fraction of tiles routed (thresholds %s)" % ", ".join(
        "%g" % t for t in sorted({r["threshold"] for r in rows if r["threshold"] is not None})))
    b.set_ylabel("speed-up vs --route off (same tiles)")
    b.set_title("speed-up vs tiles routed")
    b.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path, help="x2 ONNX graph (deploy graph for the CPU op)")
    ap.add_argument("--data", required=True, type=Path, help="Set5 folder (HR/, LR_bicubic/X2/)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tile", type=int, default=DEFAULT_ROUTE_TILE)
    ap.add_argument("--thresholds", type=float, nargs="+",
                    default=[AUTO_THRESHOLD / 2, AUTO_THRESHOLD, 2 * AUTO_THRESHOLD, 4 * AUTO_THRESHOLD])
    ap.add_argument("--runs", type=int, nargs=3, default=[5, 3, 2], metavar=("LR", "HR", "FHD"),
                    help="timed repetitions for Set5 LR, Set5 HR and the 1080p frame (default: 5 3 2)")
    ap.add_argument("--fhd-thresholds", type=float, nargs="+", default=[AUTO_THRESHOLD, 2 * AUTO_THRESHOLD],
                    help="thresholds for the 1080p frame (default: auto and 2x auto; it is the slow one)")
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--sets", nargs="+", choices=("lr", "hr", "fhd"), default=["lr", "hr", "fhd"])
    ap.add_argument("--replot", type=Path, help="only redraw --plot from rows written by --json")
    args = ap.parse_args(argv)
    if args.replot:
        plot(json.loads(args.replot.read_text()), args.plot)
        return 0
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    backend = OrtBackend(args.model, device="cpu", threads=args.threads)
    pairs = find_pairs(args.data, 2)
    hrs = [mod_crop(read_rgb(hr), 2) for _, hr, _ in pairs]
    lrs = [_chw(read_rgb(lr)) for _, _, lr in pairs]
    t0 = time.perf_counter()
    rows = []
    if "lr" in args.sets:
        rows += bench_set(backend, "Set5 x2 LR", lrs, hrs, args.thresholds, args.tile, args.runs[0], True, log)
    if "hr" in args.sets:
        rows += bench_set(backend, "Set5 HR as input", [_chw(h) for h in hrs], None, args.thresholds, args.tile,
                          args.runs[1], True, log)
    if "fhd" in args.sets:
        rows += bench_set(backend, "1920x1080 mosaic", [_chw(mosaic(hrs))], None,
                          args.fhd_thresholds, args.tile, args.runs[2], False, log)
    total = time.perf_counter() - t0
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"backend {backend.describe()}, {args.threads} threads, tile {args.tile}, overlap {DEFAULT_OVERLAP}; "
          f"runs {args.runs}; {platform.processor() or platform.machine()}; total {total:.0f} s; "
          f"load average at the end {load:.1f}")
    print_rows(rows)
    print("JSON " + json.dumps({"benchmark": "route", "tile": args.tile, "threads": args.threads,
                                "auto": AUTO_THRESHOLD, "rows": rows, "total_s": total, "load_end": load}))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.plot:
        plot(rows, args.plot)
        print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Calibrate adaptive tile routing (engine/routing.py): which difficulty score, and the `auto` threshold.

    python benchmarks/route_calibrate.py --model out/onnx/smsr_x2_deploy.onnx --data ../shared/data/Set5

1. Every tile of Set5 x2 LR and of Set5 HR used as inputs (tile --tile, default overlap) runs once through the
   model (ONNX Runtime CPU); per tile we record candidate scores from the LR tile and what routing it would lose:
   the residual energy mean((Y_sr - Y_bicubic)^2) (both sets) and the gain over bicubic vs HR,
   mse(bicubic) - mse(sr) on Y (Set5 LR only). Printed: Spearman rank correlation of each candidate with both, and
   of a tiny regressor (least squares on the log candidates, leave-one-image-out), plus each score's cost.
2. Threshold sweep on Set5 x2: the real pipeline (engine.tiling.run_tiled_routed) with the network's tile outputs
   cached, so each threshold costs only bicubic and blending. PSNR_Y (uint8, shave = scale) against --route off at
   the same tiling; `auto` = the largest grid threshold up to which every threshold keeps the mean drop <= 0.02 dB
   and every image's drop <= 0.1 dB. The same threshold is then evaluated at other tile sizes.
Prints tables and one JSON line (prefix "JSON ").
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.backends.onnxruntime import OrtBackend  # noqa: E402
from engine.evaluate import find_pairs, mod_crop  # noqa: E402
from engine.image_io import read_rgb  # noqa: E402
from engine.metrics import psnr_y, rgb_to_y, to_uint8  # noqa: E402
from engine.pipeline import DEFAULT_OVERLAP  # noqa: E402
from engine.routing import DEFAULT_ROUTE_TILE, Router, bicubic_upsample, difficulty  # noqa: E402
from engine.tiling import plan_tiles, run_tiled_routed  # noqa: E402

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _luma(t):
    return np.tensordot(LUMA, t, axes=(0, 0))


def _box3(y):
    p = np.pad(y, 1, mode="edge")
    return sum(p[i:i + y.shape[0], j:j + y.shape[1]] for i in range(3) for j in range(3)) / 9.0


def _grad_l1(t):
    y = _luma(t)
    return float(np.abs(np.diff(y, axis=1)).mean() + np.abs(np.diff(y, axis=0)).mean())


def _highpass_rms(t):
    y = _luma(t)
    return float(np.sqrt(np.mean((y - _box3(y)) ** 2)))


# Candidate scores, all from the LR tile (3×h×w, 0..255). The first is engine.routing.difficulty.
CANDIDATES = {
    "laplacian_rms": difficulty,
    "highpass_rms (Y - box3)": _highpass_rms,
    "highpass_l1": lambda t: float(np.mean(np.abs(_luma(t) - _box3(_luma(t))))),
    "grad_l1 (mean |dx|+|dy|)": _grad_l1,
    "grad_rms": lambda t: float(np.sqrt(np.mean(np.diff(_luma(t), axis=1) ** 2) +
                                        np.mean(np.diff(_luma(t), axis=0) ** 2))),
    "grad_p95": lambda t: float(np.percentile(np.abs(np.diff(_luma(t), axis=1))[:-1] +
                                              np.abs(np.diff(_luma(t), axis=0))[:, :-1], 95)),
    "std (luma)": lambda t: float(_luma(t).std()),
}


def spearman(a, b) -> float:
    ra = np.argsort(np.argsort(a)).astype(np.float64)
    rb = np.argsort(np.argsort(b)).astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


class CachedRun:
    """The backend's run() memoised on the input bytes: a sweep re-runs the pipeline without the network."""

    def __init__(self, backend):
        self.backend, self.cache = backend, {}

    def __call__(self, x):
        out = []
        for i in range(x.shape[0]):
            key = hashlib.sha1(x[i].tobytes()).hexdigest() + str(x[i].shape)
            if key not in self.cache:
                self.cache[key] = self.backend.run(np.ascontiguousarray(x[i:i + 1]))[0][0]
            out.append(self.cache[key])
        return np.stack(out), None


def tile_records(run, images, tile, scale, overlap, hrs=None):
    """Per tile: image index, candidate scores, residual energy, gain over bicubic vs HR (or None)."""
    recs = []
    for k, x in enumerate(images):
        for t in plan_tiles(x.shape[1], x.shape[2], tile, overlap, 2):
            xt = x[:, t.y0:t.y1, t.x0:t.x1]
            sr = run(xt[None])[0][0]
            bic = bicubic_upsample(xt, scale)
            ysr, ybic = _luma(sr), _luma(bic)
            rec = {"image": k, "scores": {n: f(xt) for n, f in CANDIDATES.items()},
                   "residual": float(np.mean((ysr - ybic) ** 2)), "gain": None}
            if hrs is not None:
                hr = rgb_to_y(hrs[k][t.y0 * scale:t.y1 * scale, t.x0 * scale:t.x1 * scale])
                # On the 16..235 luma scale of the metric (rgb_to_y of the float outputs).
                e_sr = rgb_to_y(sr.transpose(1, 2, 0)) - hr
                e_bic = rgb_to_y(bic.transpose(1, 2, 0)) - hr
                rec["gain"] = float(np.mean(e_bic ** 2) - np.mean(e_sr ** 2))
            recs.append(rec)
    return recs


def regressor_cv(recs) -> list[float]:
    """Leave-one-image-out predictions of log residual from [1, log(1+each candidate)] by least squares."""
    names = list(CANDIDATES)
    X = np.array([[1.0] + [np.log1p(r["scores"][n]) for n in names] for r in recs])
    y = np.log(np.array([r["residual"] for r in recs]) + 1e-6)
    groups = np.array([r["group"] for r in recs])
    pred = np.zeros(len(recs))
    for g in np.unique(groups):
        tr = groups != g
        coef, *_ = np.linalg.lstsq(X[tr], y[tr], rcond=None)
        pred[~tr] = X[~tr] @ coef
    return pred


def sweep(run, lrs, hrs, scale, tile, overlap, thresholds):
    """{threshold: (per-image PSNR_Y list, tiles routed, tiles total)}; threshold 0 = --route off."""
    out = {}
    for thr in thresholds:
        ps, routed, total = [], 0, 0
        for x, hr in zip(lrs, hrs):
            r = run_tiled_routed(run, x, scale, tile, overlap, 2, 1, Router(thr, scale))
            ps.append(psnr_y(to_uint8(r.sr.transpose(1, 2, 0)), hr, scale))
            routed, total = routed + r.routed, total + r.tiles
        out[thr] = (ps, routed, total)
    return out


def choose_auto(res, mean_budget=0.02, image_budget=0.1):
    base = np.array(res[0.0][0])
    best = 0.0
    for thr in sorted(res):
        d = base - np.array(res[thr][0])
        if d.mean() > mean_budget or d.max() > image_budget:
            break
        best = thr
    return best


def score_study(run, backend, lrs, hrs, hr_inputs, args, scale) -> dict:
    """Part 1: per-tile candidate scores against what routing loses; each score's cost against the network's."""
    t0 = time.perf_counter()
    rec_lr = tile_records(run, lrs, args.tile, scale, args.overlap, hrs)
    rec_hr = tile_records(run, hr_inputs, args.tile, scale, args.overlap)
    print(f"per-tile records: {len(rec_lr)} Set5 LR tiles, {len(rec_hr)} Set5-HR-as-input tiles "
          f"(tile {args.tile}, overlap {args.overlap}; {time.perf_counter() - t0:.1f} s)")
    for r in rec_lr:
        r["group"] = r["image"]
    for r in rec_hr:
        r["group"] = 100 + r["image"]
    both = rec_lr + rec_hr
    tile_x = lrs[0][:, :args.tile, :args.tile].copy()
    backend.run(tile_x[None])  # warm-up
    t_net = statistics.median(_timed(lambda: backend.run(tile_x[None])) for _ in range(5))
    corr = {}
    print(f"{'score':<26} {'rho residual (all)':>19} {'rho gain vs HR (LR)':>20} {'cost us':>8} {'% of tile':>9}")
    for n, f in CANDIDATES.items():
        cost = statistics.median(_timed(lambda: f(tile_x)) for _ in range(50))
        corr[n] = {"rho_residual": spearman([r["scores"][n] for r in both], [r["residual"] for r in both]),
                   "rho_gain": spearman([r["scores"][n] for r in rec_lr], [r["gain"] for r in rec_lr]),
                   "cost_us": cost * 1e6, "cost_pct_of_tile": 100 * cost / t_net}
        c = corr[n]
        print(f"{n:<26} {c['rho_residual']:19.3f} {c['rho_gain']:20.3f} {c['cost_us']:8.0f} "
              f"{c['cost_pct_of_tile']:8.2f}%")
    pred = regressor_cv(both)
    rho_reg = spearman(pred, [r["residual"] for r in both])
    print(f"{'regressor (all, LOIO)':<26} {rho_reg:19.3f} {'':>20} (sum of the costs above)")
    bic_cost = statistics.median(_timed(lambda: bicubic_upsample(tile_x, scale)) for _ in range(20))
    print(f"network on one {args.tile}x{args.tile} tile: {t_net * 1e3:.1f} ms (median of 5); "
          f"bicubic cheap path: {bic_cost * 1e3:.2f} ms ({100 * bic_cost / t_net:.1f} %)")

    return {"tiles_lr": len(rec_lr), "tiles_hr": len(rec_hr), "scores": corr, "rho_regressor": rho_reg,
            "net_tile_ms": t_net * 1e3, "bicubic_tile_ms": bic_cost * 1e3}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path, help="deploy (or reference) ONNX graph, x2")
    ap.add_argument("--data", required=True, type=Path, help="Set5 folder (HR/, LR_bicubic/X2/)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tile", type=int, default=DEFAULT_ROUTE_TILE)
    ap.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP)
    ap.add_argument("--skip-scores", action="store_true", help="only the threshold sweep (no score comparison)")
    ap.add_argument("--max-threshold", type=float, default=24.0, help="sweep --step, 2·--step, ... up to this")
    ap.add_argument("--step", type=float, default=0.1)
    ap.add_argument("--other-tiles", type=int, nargs="*", default=[48, 96, 128])
    args = ap.parse_args(argv)
    scale = 2
    backend = OrtBackend(args.model, device="cpu", threads=args.threads)
    run = CachedRun(backend)
    pairs = find_pairs(args.data, scale)
    hrs = [mod_crop(read_rgb(hr), scale) for _, hr, _ in pairs]
    lrs = [np.ascontiguousarray(read_rgb(lr).transpose(2, 0, 1).astype(np.float32)) for _, _, lr in pairs]
    hr_inputs = [np.ascontiguousarray(h.transpose(2, 0, 1).astype(np.float32)) for h in hrs]

    study = {} if args.skip_scores else score_study(run, backend, lrs, hrs, hr_inputs, args, scale)

    # 2. Threshold sweep at the default tile.
    grid = [0.0] + [round(v, 2) for v in np.arange(args.step, args.max_threshold + 1e-9, args.step)]
    res = sweep(run, lrs, hrs, scale, args.tile, args.overlap, grid)
    auto_max = choose_auto(res)
    auto = float(np.floor(auto_max))  # engine.routing.AUTO_THRESHOLD: rounded down, a margin below the edge
    base = np.array(res[0.0][0])
    print(f"\nSet5 x2, tile {args.tile}: PSNR_Y drop vs --route off (mean / worst image), tiles routed")
    rows = []
    for thr in grid:
        ps, routed, total = res[thr]
        d = base - np.array(ps)
        rows.append({"threshold": thr, "mean_drop": float(d.mean()), "max_drop": float(d.max()),
                     "routed": routed, "tiles": total})
        mark = "  <- largest admissible" if thr == auto_max else ""
        if thr in (auto, auto_max) or routed != (rows[-2]["routed"] if len(rows) > 1 else 0):  # only where it changes
            print(f"  T={thr:5.2f}: {d.mean():+.4f} / {d.max():+.4f} dB, {routed}/{total} tiles{mark}")
    print(f"largest admissible threshold: {auto_max}; auto (rounded down): {auto}")

    # 3. Tile-size dependence at that threshold.
    dep = []
    for tile in [args.tile] + list(args.other_tiles):
        r = sweep(run, lrs, hrs, scale, tile, args.overlap, [0.0, auto])
        d = np.array(r[0.0][0]) - np.array(r[auto][0])
        dep.append({"tile": tile, "mean_drop": float(d.mean()), "max_drop": float(d.max()),
                    "routed": r[auto][1], "tiles": r[auto][2], "psnr_off": float(np.mean(r[0.0][0]))})
        print(f"  tile {tile:4d} overlap {args.overlap}: T={auto}: drop {d.mean():+.4f} / {d.max():+.4f} dB, "
              f"{r[auto][1]}/{r[auto][2]} tiles routed (PSNR_Y off {np.mean(r[0.0][0]):.3f})")
    print("JSON " + json.dumps({"benchmark": "route_calibrate", "tile": args.tile, "overlap": args.overlap,
                                "model": str(args.model), **study, "sweep": rows, "auto_max": auto_max,
                                "auto": auto, "tile_dependence": dep}))
    return 0


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


if __name__ == "__main__":
    sys.exit(main())

"""tests/gpu/run.sh's results: everything in one results.json, and results.md, the section for docs/BENCHMARKS.md.

    python tests/gpu/summarize.py --work build-gpu/work --out $OUT [--commit SHA]

Reads from the work folder: device.json, steps.jsonl, step_<name>.note, bench.json (bench_blocks.py),
network.json (network_gpu.py); from the output folder: ncu.csv. Missing parts are reported as missing, never
invented. Block rows: median per call, the faster of eager and CUDA graph; 5 blocks summed against 5 x the dense
block at the same frame size (every SMB has the same dense shape, 64 -> 64 channels).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import sys
from collections import defaultdict
from pathlib import Path

NCU_METRICS = {  # column -> (heading, scale, format)
    "gpu__time_duration.sum": ("time µs", 1e-3, "{:.1f}"),
    "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active": ("tensor pipe %", 1, "{:.1f}"),
    "smsp__inst_executed.sum": ("instructions (M)", 1e-6, "{:.2f}"),
    "dram__bytes.sum": ("DRAM MB", 1e-6, "{:.1f}"),
    "sm__warps_active.avg.pct_of_peak_sustained_active": ("achieved occupancy %", 1, "{:.1f}"),
    "launch__registers_per_thread": ("registers", 1, "{:.0f}"),
}


def _load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _load_lines(path: Path) -> list[dict]:
    try:
        return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip().startswith("{")]
    except (OSError, ValueError):
        return []


def _num(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except (AttributeError, ValueError):
        return None


def parse_ncu(text: str) -> list[dict]:
    """Rows of `ncu --csv --page raw`: kernel name + the metrics above (units row and notes skipped)."""
    lines = [ln for ln in text.splitlines() if ln.startswith('"')]
    rows = []
    for r in csv.DictReader(io.StringIO("\n".join(lines))):
        if not (r.get("ID") or "").strip().isdigit():
            continue  # the units row
        row = {"kernel": (r.get("Kernel Name") or "?")[:80]}
        for k in NCU_METRICS:
            row[k] = _num(r.get(k, ""))
        rows.append(row)
    return rows


def best(entry: dict) -> float | None:
    vals = [entry.get(m, {}).get("median_ms") for m in ("eager", "graph")]
    vals = [v for v in vals if v is not None]
    return min(vals) if vals else None


def collect(work: Path, out: Path, commit: str) -> dict:
    steps = _load_lines(work / "steps.jsonl")
    for s in steps:
        note = work / f"step_{s['step']}.note"
        s["notes"] = note.read_text().strip().splitlines() if note.is_file() else []
    try:
        ncu = parse_ncu((out / "ncu.csv").read_text())
    except OSError:
        ncu = []
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
            "device": _load_json(work / "device.json") or {}, "steps": steps,
            "bench": _load_json(work / "bench.json"), "network": _load_json(work / "network.json"), "ncu": ncu}


def block_table(bench: dict) -> list[str]:
    """Per frame size, image and I/O format: 5 blocks summed vs 5 x the dense block."""
    groups = defaultdict(list)
    for r in bench.get("sparse", []):
        groups[(r["W"], r["H"], r["mask"], r["image"], r["nhwc"])].append(r)
    out = ["| frame | mask | I/O | mean density | kernels, 5 blocks | dense cuDNN, 5 blocks | speed-up | "
           "slowest block vs dense |", "|---|---|---|---|---|---|---|---|"]
    for (w, h, kind, image, nhwc), rows in sorted(groups.items(), key=lambda kv: (-kv[0][0], kv[0][2], kv[0][3])):
        dense = bench.get("dense", {}).get(f"{w}x{h}", {}).get("block")
        d_ms = best(dense) if dense else None
        ms = [best(r) for r in rows]
        label = f"{image} (tiled)" if kind == "real" else f"{kind} mask"
        if len(rows) != 5 or None in ms or not all(r.get("correct") for r in rows):
            out.append(f"| {w}×{h} | {label} | {'NHWC' if nhwc else 'NCHW'} | | incomplete or wrong output | | | |")
            continue
        total = sum(ms)
        dens = sum(r["density"] for r in rows) / 5
        speed = f"{5 * d_ms / total:.2f}×" if d_ms else "n/a"
        worst = f"{d_ms / max(ms):.2f}×" if d_ms else "n/a"
        out.append(f"| {w}×{h} | {label} | {'NHWC' if nhwc else 'NCHW'} | {dens:.3f} | {total:.3f} ms | "
                   + (f"{5 * d_ms:.3f} ms" if d_ms else "n/a") + f" | {speed} | {worst} |")
    return out


def int8_table(bench: dict) -> list[str]:
    """INT8 (issue 14): per image, 5 INT8 blocks summed vs 5 x the dense INT8 block (im2col + torch._int_mm)."""
    rows = bench.get("int8", [])
    if not rows:
        return []
    dense = {r["block"]: best(r["dense_int8"]) for r in rows if r.get("dense_int8")}
    d5 = sum(dense.values()) / len(dense) * 5 if dense else None
    out = ["| frame | image | mean density | INT8 kernels, 5 blocks | dense INT8 (im2col + _int_mm), 5 blocks | "
           "speed-up | bit-exact |", "|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["image"] for r in rows):
        rr = [r for r in rows if r["image"] == name]
        times = [best(r) for r in rr]
        ok = all(r.get("correct") for r in rr)
        k5 = sum(times) if len(rr) == 5 and all(t is not None for t in times) else None
        dens = sum(r.get("density", 0) for r in rr) / len(rr)
        out.append(f"| {rr[0]['W']}x{rr[0]['H']} | {name} | {dens:.2f} | "
                   f"{f'{k5:.3f} ms' if k5 else '–'} | {f'{d5:.3f} ms' if d5 else '–'} | "
                   f"{f'{d5 / k5:.2f}×' if k5 and d5 else '–'} | {'yes' if ok else 'NO'} |")
    return out


def layer_lines(bench: dict) -> list[str]:
    out = []
    for size, d in sorted(bench.get("dense", {}).items(), key=lambda kv: -int(kv[0].split("x")[0])):
        cells = [best(v) for v in d.get("layers", [])] + [best(d.get("collect", {})), best(d.get("block", {}))]
        out.append(f"- dense cuDNN FP16 {size}: layers 0-3 "
                   + " / ".join(f"{c:.3f}" if c is not None else "n/a" for c in cells[:4])
                   + f" ms, concat+collect {cells[4] or float('nan'):.3f} ms, block {cells[5] or float('nan'):.3f} ms")
    for r in bench.get("sparse", []):
        if r.get("kernels"):
            ks = ", ".join(f"{k['name'].split('(')[0].split('<')[0][-40:]} {k['us']:.1f}" for k in r["kernels"])
            out.append(f"- kernels {r['W']}x{r['H']} {r['image']} block {r['block']} "
                       f"({'NHWC' if r['nhwc'] else 'NCHW'}, density {r['density']:.2f}), µs per kernel in launch "
                       f"order: {ks}")
    return out


def network_lines(net: dict) -> list[str]:
    out = ["| image | size | PSNR_Y kernels FP16 | dense-masked FP16 | dense-masked FP32 | Δ (kernels − FP16) | "
           "max abs diff | masks agree |", "|---|---|---|---|---|---|---|---|"]
    for r in net.get("set5", {}).get("images", []):
        out.append(f"| {r['image']} | {r['size']} | {r['psnr_kernels']:.4f} | {r['psnr_dense_masked']:.4f} | "
                   f"{r.get('psnr_dense_masked_fp32', float('nan')):.4f} | {r['delta_db']:+.4f} dB | "
                   f"{r['max_abs_diff']:.3f} | {100 * r['mask_agreement']:.2f} % |")
    s5 = net.get("set5", {})
    out.append(f"\nSet5 agreement (every image within 0.01 dB): **{'yes' if s5.get('agree') else 'NO'}** "
               f"(max |Δ| {s5.get('max_abs_delta_db', float('nan')):.4f} dB).\n")
    fr = net.get("frame")
    if fr:
        out += [f"{fr['W']}×{fr['H']} LR frame ({fr['content']}), FP16, median per frame:\n",
                "| network | eager | CUDA graph | mask density |", "|---|---|---|---|"]
        labels = {"kernels": "block kernels (op)", "dense_masked": "dense-masked blocks (reference)",
                  "dense": "plain dense blocks (masks ignored; timing only)"}
        for k, label in labels.items():
            if k in fr:
                g = fr[k].get("graph", {})
                out.append(f"| {label} | {fr[k]['eager']['median_ms']:.3f} ms | "
                           + (f"{g['median_ms']:.3f} ms" if "median_ms" in g else f"n/a ({g.get('error', '')})")
                           + f" | {fr[k]['mask_density']:.3f} |")
        k, dm, d = (fr.get(n, {}).get("best_ms") for n in ("kernels", "dense_masked", "dense"))
        if k and dm and d:
            out.append(f"\nKernel network: {dm / k:.2f}× the dense-masked network, {d / k:.2f}× the plain dense "
                       "network (best of eager / graph).")
    return out


def markdown(res: dict) -> str:
    dev = res["device"]
    title = dev.get("name") or "unknown GPU"
    out = [f"## GPU run: SMSRSparseBlock kernels on {title} ({res['date'][:10]})\n",
           f"`bash tests/gpu/run.sh` (tests/gpu/METHOD.md), commit {res['commit']}. Device: {title}, "
           f"sm_{str(dev.get('compute_cap', '?')).replace('.', '')}, driver {dev.get('driver', '?')}, "
           f"{dev.get('sm_count', '?')} SMs, runtime {dev.get('runtime', '?')}; PyTorch {dev.get('torch', '?')}, "
           f"cuDNN {dev.get('cudnn', '?')}.\n",
           "| step | status | s (budget) | notes |", "|---|---|---|---|"]
    for s in res["steps"]:
        notes = "; ".join(s.get("notes", []))[:400].replace("|", "/")
        out.append(f"| {s['step']} | {s['status']} | {s['seconds']} ({s['budget']}) | {notes} |")
    bench = res.get("bench")
    out.append("\n### Blocks: kernels vs dense cuDNN FP16 (median per call, best of eager / CUDA graph)\n")
    if bench:
        out += block_table(bench)
        out.append("")
        out += layer_lines(bench)
        for e in bench.get("errors", [])[:10]:
            out.append(f"- error: {e}")
    else:
        out.append("No block benchmark results (see the steps table).")
    out.append("\n### ncu: every kernel of one block call (1280×720, baby block 0, FP16)\n")
    if res.get("ncu"):
        out += ["| kernel | " + " | ".join(h for h, _, _ in NCU_METRICS.values()) + " |",
                "|---|" + "---|" * len(NCU_METRICS)]
        for r in res["ncu"]:
            cells = [f.format(r[k] * sc) if r.get(k) is not None else "n/a" for k, (_, sc, f) in NCU_METRICS.items()]
            out.append(f"| {r['kernel'].replace('|', '/')} | " + " | ".join(cells) + " |")
    else:
        out.append("No ncu results (see the steps table).")
    if bench and bench.get("int8"):
        out.append("\n### INT8 blocks: INT8 kernels vs dense INT8 (median per call, best of eager / CUDA graph)\n")
        out += int8_table(bench)
    out.append("\n### Whole network, SMSR x2 in PyTorch FP16: block kernels vs dense-masked blocks\n")
    out += network_lines(res["network"]) if res.get("network") else ["No whole-network results (see the steps table)."]
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--commit", default="unknown")
    args = ap.parse_args(argv)
    out = Path(args.out)
    res = collect(Path(args.work), out, args.commit)
    (out / "results.json").write_text(json.dumps(res, indent=1))
    md = markdown(res)
    (out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())

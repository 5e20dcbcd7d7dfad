"""Turn tests/gpu/run.sh's bench.jsonl into the Markdown section appended to docs/BENCHMARKS.md.

    python tests/gpu/summarize.py bench.jsonl --device NAME --commit SHA [--sanitizer TEXT]

Rows: smsr_kernels FP16 per Set5 image (5 blocks summed) and at 1280x720 (Set5 masks tiled), next to the dense
PyTorch/cuDNN FP16 block at the same shape (x5 blocks); best of eager/CUDA-graph per implementation; medians.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections import defaultdict


def load(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def best(rows: list[dict]) -> dict | None:
    return min(rows, key=lambda r: r["median_ms"]) if rows else None


def summarize(rows: list[dict], device: str, commit: str, sanitizer: str) -> str:
    sparse = defaultdict(list)  # (scope, image, type) -> per-block best rows
    by_cfg = defaultdict(list)
    dense = defaultdict(list)
    for r in rows:
        if r["impl"] == "smsr_kernels":
            scope, name = r["label"].split(":", 1)
            image, block = name.rsplit("_b", 1)
            by_cfg[(scope, image, r["type"], block)].append(r)
        else:
            dense[r["label"]].append(r)
    for (scope, image, typ, block), rs in by_cfg.items():
        sparse[(scope, image, typ)].append((int(block), best(rs)))
    out = [f"\n## SMSRSparseBlock kernels vs dense cuDNN — {device}\n",
           f"{datetime.date.today().isoformat()}, commit {commit}, tests/gpu/run.sh; compute-sanitizer: {sanitizer}.",
           "Median per block invocation (best of eager / CUDA graph), 5 blocks summed; dense = PyTorch/cuDNN FP16",
           "channels-last 4×conv3x3+ReLU, concat, conv1x1, same shape, ×5.\n",
           "| input | type | mean mask density | smsr_kernels (5 blocks) | dense cuDNN (×5) | speed-up |",
           "|---|---|---|---|---|---|"]
    for (scope, image, typ), blocks in sorted(sparse.items()):
        blocks.sort()
        total = sum(r["median_ms"] for _, r in blocks)
        dens = sum(r["density"] for _, r in blocks) / len(blocks)
        d = best(dense.get("720p" if scope == "720p" else f"set5:{image}", []))
        d_ms = 5 * d["median_ms"] if d and typ == d["type"] else None
        label = f"{image} {blocks[0][1]['H']}×{blocks[0][1]['W']}" if scope == "set5" else f"720p (tiled {image} masks)"
        out.append(f"| {label} | {typ.upper()} | {dens:.3f} | {total:.3f} ms | "
                   + (f"{d_ms:.3f} ms | {d_ms / total:.2f}× |" if d_ms else "n/a | n/a |"))
    out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--device", required=True)
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--sanitizer", default="not run")
    args = ap.parse_args(argv)
    print(summarize(load(args.results), args.device, args.commit, args.sanitizer))
    return 0


if __name__ == "__main__":
    sys.exit(main())

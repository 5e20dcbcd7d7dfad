"""CPU checks of the GPU benchmark tooling: the roofline model's invariants and the BENCHMARKS.md summary maths."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import roofline  # noqa: E402
import summarize  # noqa: E402

OFFICIAL_BLOCK0 = ([24, 9, 3, 0], [40, 55, 61, 64])


def test_full_mask_all_sparse_executes_exactly_the_dense_macs():
    kernels = roofline.sparse_block_kernels([0, 0, 0, 0], [64, 64, 64, 64], d=1.0)
    dense = roofline.dense_block_kernels()
    assert sum(m for m, _ in kernels) == sum(m for m, _ in dense) == 163_840


def test_empty_mask_costs_only_dense_channels():
    kernels = roofline.sparse_block_kernels(*OFFICIAL_BLOCK0, d=0.0)
    # layer 3 has no dense outputs: no work at all; the collect reads only the 36 dense channels (+ padding)
    assert kernels[4][0] == 0
    assert kernels[5][0] == 64 * (32 + 32 + 32)


@pytest.mark.parametrize("d", [0.05, 0.37, 0.63, 1.0])
def test_executed_macs_cover_the_useful_macs(d):
    executed = sum(m for m, _ in roofline.sparse_block_kernels(*OFFICIAL_BLOCK0, d=d))
    useful = roofline.useful_macs(*OFFICIAL_BLOCK0, d)
    assert useful <= executed <= 1.5 * useful  # padding of tiny dense parts (3, 9 ch) weighs most at low density


def test_design_criterion_on_orin_at_37_percent():
    orin = roofline.DEVICES["Jetson AGX Orin 64GB"]
    dense = roofline.roofline(roofline.dense_block_kernels(), orin["fp16"], orin["bw"])
    sparse = roofline.roofline(roofline.sparse_block_kernels(*OFFICIAL_BLOCK0, d=0.37), orin["fp16"], orin["bw"])
    assert dense / sparse >= 1.5


def test_tile_activity_counts_partial_tiles_by_their_pixels():
    import numpy as np
    mask = np.zeros((9, 17))
    mask[8, 16] = 1  # the lone pixel of the bottom-right 1x1 tile
    assert roofline.tile_activity(mask) == pytest.approx(1 / (9 * 17))
    mask[0, 0] = 1  # a full 8x16 tile
    assert roofline.tile_activity(mask) == pytest.approx((1 + 128) / (9 * 17))


def test_summary_sums_blocks_and_picks_the_faster_mode(tmp_path):
    rows = []
    for b in range(5):
        for graph, ms in ((False, 0.30), (True, 0.20)):
            rows.append({"impl": "smsr_kernels", "label": f"720p:baby_b{b}", "type": "fp16", "graph": graph,
                         "H": 720, "W": 1280, "density": 0.2 * b, "median_ms": ms})
    rows.append({"impl": "torch_dense_cudnn", "label": "720p", "type": "fp16", "graph": True, "median_ms": 0.5})
    path = tmp_path / "bench.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    text = summarize.summarize(summarize.load(str(path)), "Test GPU", "abc123", "clean")
    line = next(ln for ln in text.splitlines() if ln.startswith("| 720p"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2] == "0.400"          # mean density of the 5 blocks
    assert cells[3] == "1.000 ms"       # 5 x 0.20 (graph mode is faster)
    assert cells[4] == "2.500 ms"       # 5 x dense block
    assert cells[5] == "2.50×"
    assert "Test GPU" in text and "abc123" in text

"""CPU checks of the GPU benchmark tooling: the roofline and performance models and the BENCHMARKS.md summary maths."""
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


# ------------------------------------------------------------------------------------------- performance model
import perf_model  # noqa: E402

ORIN, H200 = perf_model.DEVICES["orin"], perf_model.DEVICES["h200"]
PX720 = perf_model.FRAMES["1280x720"]


def test_dense_baseline_is_the_stated_formula():
    px = 1000
    peak = 0.7 * 1024 * 16 * 1.3e9
    bw = 0.8 * 204.8e9
    conv = max(64 * 64 * 9 * px / peak, 256 * px / bw) + 4e-6
    collect = max(256 * 64 * px / peak, 640 * px / bw) + 4e-6
    assert perf_model.dense_block_time(px, ORIN) == pytest.approx(4 * conv + collect)


def test_full_mask_all_sparse_executes_at_least_the_dense_work():
    for design in ("v1", "v2"):
        gemms, _, _ = perf_model.block_gemms(design, [0] * 4, [64] * 4, 1.0, 128 * 100)
        macs = sum(rows * perf_model.pad(n, 16) * k * 32 for g in gemms for rows, n, k in g.parts)
        assert macs >= 163_840 * 128 * 100


def test_inactive_pixels_cost_only_dense_outputs_and_the_collect():
    gemms, _, _ = perf_model.block_gemms("v2", [0, 0, 0, 0], [64] * 4, 0.0, 1280)
    work = [(rows, n, k) for g in gemms for rows, n, k in g.parts if rows > 0]
    assert work == [(1280, 64, 0)]  # only the fused collect's epilogue: y = bias at every pixel
    assert perf_model.gemm_time(gemms[3], ORIN, perf_model.NOMINAL["v2"])["sm"] > 0


def test_v2_has_five_launches_v1_eight():
    assert perf_model.block_gemms("v2", *OFFICIAL_BLOCK0, 0.37, 1000)[2] == 5
    assert perf_model.block_gemms("v1", *OFFICIAL_BLOCK0, 0.37, 1000)[2] == 8


@pytest.mark.parametrize("design", ["v1", "v2"])
def test_model_time_grows_with_density(design):
    k = perf_model.NOMINAL[design]
    times = [perf_model.frame_times(design, [d] * 5, PX720, ORIN, k)["sparse_ms"] for d in (0.0, 0.37, 0.63, 1.0)]
    assert times == sorted(times) and times[0] < times[-1]


def test_issue_bound_loop_is_slower_than_tensor_bound():
    fast = dataclasses_replace(perf_model.NOMINAL["v2"], instr_per_hmma=6.0)
    slow = dataclasses_replace(perf_model.NOMINAL["v2"], instr_per_hmma=24.0)
    t_fast = perf_model.frame_times("v2", [0.37] * 5, PX720, ORIN, fast)["sparse_ms"]
    t_slow = perf_model.frame_times("v2", [0.37] * 5, PX720, ORIN, slow)["sparse_ms"]
    assert t_slow > 2 * t_fast


def test_todays_kernels_miss_and_the_v2_design_meets_the_orin_targets():
    v1 = perf_model.frame_times("v1", [0.37] * 5, PX720, ORIN, perf_model.NOMINAL["v1"])
    assert v1["speedup"] < 1.0
    v2 = perf_model.NOMINAL["v2"]
    assert perf_model.frame_times("v2", [0.37] * 5, PX720, ORIN, v2)["speedup"] >= 1.3
    assert perf_model.frame_times("v2", [1.0] * 5, PX720, ORIN, v2)["speedup"] >= 0.9


def test_derived_limit_is_tensor_rate_bound():
    lim = perf_model.derived_instr_per_hmma_limit()
    assert 8.0 <= lim <= 16.0  # above 8 a sub-core is issue-bound; the targets leave a little room


def test_occupancy_from_registers_and_shared_memory():
    k = perf_model.NOMINAL["v2"]
    assert perf_model.occupancy(ORIN, dataclasses_replace(k, registers=128)) == 2
    assert perf_model.occupancy(ORIN, dataclasses_replace(k, registers=64)) == 4
    assert perf_model.occupancy(ORIN, dataclasses_replace(k, registers=32, smem_block=100 * 1024)) == 1


def test_kernels_from_a_report():
    loop = {"mma_op": "HMMA.16816.F32", "outermost": True, "nest_per_mma": 7.5, "async_copy": True,
            "memory": {"LDGSTS.BYPASS.128": 6}, "lower_bound": True,
            "inner_loops": [{"instructions": 5, "moves_data": False}]}
    inner = dict(loop, outermost=False, nest_per_mma=3.0, async_copy=False, memory={}, inner_loops=[])
    rep = {"source": "x.cu", "archs": {"87": {"k": {"registers": 96, "smem_static": 0,
                                                     "main_loops": [loop, inner]}}}}
    k = perf_model.kernels_from_report(rep, "87", "v2")
    assert (k.instr_per_hmma, k.async_copy, k.l1_bypass, k.registers) == (7.5, True, True, 96)
    assert not k.lower_bound  # a short control-only inner loop does not make the count a bound


def test_measured_densities_cover_set5_with_the_documented_mean():
    dens = [d for v in perf_model.MEASURED_DENSITY.values() for d in v]
    assert len(perf_model.MEASURED_DENSITY) == 5 and len(dens) == 25
    assert 0.30 <= sum(dens) / len(dens) <= 0.40  # DESIGN.md: mean 37 % (pixel-weighted), 18 % .. 63 % per image


def dataclasses_replace(obj, **kw):
    import dataclasses
    return dataclasses.replace(obj, **kw)

"""CPU checks of the GPU tooling: the roofline model's invariants, the performance model (perf_model.py),
tests/gpu/run.sh's plan (--dry-run) and driver, the results summary, and the PyTorch op over the kernel library
(run on the emulated kernels here)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
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


# ------------------------------------------------------------------------------------------ tests/gpu/run.sh
REPO = Path(__file__).resolve().parents[2]
RUN_SH = REPO / "tests" / "gpu" / "run.sh"


def _shared() -> Path:
    from conftest import SHARED
    from helpers import missing_component
    shared = Path(os.environ.get("SHARED", SHARED))
    if not (shared / "third_party" / "tensorrt-10.14").is_dir() or not (shared / "data" / "Set5").is_dir():
        missing_component(f"{shared} lacks third_party/tensorrt-10.14 or data/Set5 (the GPU run's carry)")
    return shared


def _run_sh(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    full = {**os.environ, "SHARED": str(_shared()), **(env or {})}
    return subprocess.run(["bash", str(RUN_SH), *args], cwd=REPO, env=full, capture_output=True, text=True,
                          timeout=timeout)


def test_dry_run_checks_the_plan():
    r = _run_sh("--dry-run")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "DRY RUN OK" in out
    for what in ("budgets sum to", "result files (<= 8)", "device tools named", "carry folder complete",
                 'run(command="bash tests/gpu/run.sh", carry=["gpu-carry"]'):
        assert what in out, what


@pytest.mark.parametrize("env, message", [
    ({"GPU_RUN_LIMIT_S": "300"}, "not under the 300 s limit"),
    ({"GPU_CARRY_MAX_MIB": "1"}, "over the 1 MiB limit"),
])
def test_dry_run_fails_when_a_limit_is_broken(env, message):
    r = _run_sh("--dry-run", env=env)
    assert r.returncode != 0 and message in r.stderr, r.stdout + r.stderr


def test_dry_run_fails_on_an_undeclared_tool(tmp_path):
    bad = tmp_path / "run.sh"
    bad.write_text(RUN_SH.read_text().replace("  T nvcc --version", "  T strace -f true; T nvcc --version", 1))
    r = _run_sh("--dry-run", env={"GPU_RUN_TOOLS_FROM": str(bad)})
    assert r.returncode != 0 and "strace" in r.stderr and "differ from DEVICE_TOOLS" in r.stderr


def _fake_tools(tmp_path: Path, **scripts: str) -> Path:
    """A bin folder of shell scripts standing in for the device's tools (name=script body)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = ('case "$*" in *compute_cap*noheader*) echo 9.0 ;; *noheader*) echo "Fake GPU" ;; '
           '*) echo "name, compute_cap"; echo "Fake GPU, 9.0" ;; esac')
    for name, body in {"nvidia-smi": smi, **scripts}.items():
        f = bin_dir / name
        f.write_text("#!/bin/sh\n" + body + "\n")
        f.chmod(0o755)
    return bin_dir


def _device_run(tmp_path, bin_dir, steps, build=None):
    out, build = tmp_path / "out", build or tmp_path / "build-gpu"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "OUT": str(out), "BUILD": str(build),
           "CARRY_DIR": "no-such-carry"}
    r = _run_sh("--only", steps, env=env, timeout=200)
    statuses = {s["step"]: s["status"] for s in summarize._load_lines(build / "work" / "steps.jsonl")}
    return r, out, statuses


def test_device_run_reports_a_failed_build_and_skips_what_needs_it(tmp_path):
    bin_dir = _fake_tools(tmp_path, cmake='echo "fake cmake: configure failed" >&2; exit 1')
    r, out, statuses = _device_run(tmp_path, bin_dir, "build,check,sanitizer,ncu")
    assert r.returncode == 1, r.stdout + r.stderr
    assert statuses == {"build": "failed", "check": "skipped", "sanitizer": "skipped", "ncu": "skipped",
                        "report": "ok"}
    files = sorted(p.name for p in out.iterdir())
    assert {"results.md", "results.json", "run.log", "build.log"} <= set(files) and len(files) <= 8
    md = (out / "results.md").read_text()
    assert "| build | failed |" in md and "needs build, which did not succeed" in md
    assert json.loads((out / "results.json").read_text())["steps"][0]["step"] == "build"


def _fake_native_build(tmp_path) -> Path:
    build = tmp_path / "build-gpu"
    native = build / "plugins" / "smsrSparseBlock" / "kernels" / "smsr_kernels_native_test"
    native.parent.mkdir(parents=True)
    native.write_text("#!/bin/sh\necho PASSED\n")
    native.chmod(0o755)
    return build


@pytest.mark.parametrize("sanitizer, status, text", [
    # gVisor, as seen by the device tool's KINDS.md: the device is refused, then error 999
    ('echo "========= Error: Device not supported"; echo "error 999"; exit 1', "unsupported",
     "compute-sanitizer not supported here (Device not supported)"),
    ('echo "========= Invalid __global__ write of size 4 bytes"; exit 99', "failed", "memcheck: REPORTED ERRORS"),
    ('echo "========= ERROR SUMMARY: 0 errors"; exit 0', "ok", "initcheck: clean"),
])
def test_sanitizer_step_tells_unsupported_from_errors(tmp_path, sanitizer, status, text):
    bin_dir = _fake_tools(tmp_path, **{"compute-sanitizer": sanitizer})
    r, out, statuses = _device_run(tmp_path, bin_dir, "sanitizer", build=_fake_native_build(tmp_path))
    assert statuses["sanitizer"] == status, r.stdout + r.stderr
    assert text in (out / "results.md").read_text()
    assert r.returncode == (1 if status == "failed" else 0)


def test_collect_appends_the_results_section(tmp_path):
    (tmp_path / "results.md").write_text("## GPU run: test section\n")
    (tmp_path / "results.json").write_text("{}")
    md = tmp_path / "BENCH.md"
    md.write_text("# Benchmarks\n")
    r = subprocess.run(["bash", str(RUN_SH), "--collect", str(tmp_path)], env={**os.environ, "BENCH_MD": str(md)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert md.read_text() == "# Benchmarks\n\n## GPU run: test section\n"
    r = subprocess.run(["bash", str(RUN_SH), "--collect", str(tmp_path / "none")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "lacks results.md" in r.stderr


# ------------------------------------------------------------------------------------------ summarize.py
def _timing(ms):
    return {"eager": {"median_ms": ms * 1.5}, "graph": {"median_ms": ms}}


def test_summary_sums_five_blocks_against_five_dense_blocks(tmp_path):
    bench = {"dense": {"1280x720": {"block": _timing(0.5), "layers": [_timing(0.1)] * 4, "collect": _timing(0.05)}},
             "sparse": [{"image": "baby", "block": b, "W": 1280, "H": 720, "mask": "real", "nhwc": False,
                         "density": 0.2 * b, "correct": True, **_timing(0.2)} for b in range(5)]}
    text = summarize.markdown({"date": "2026-12-01T00:00:00", "commit": "abc123", "device": {"name": "Test GPU"},
                               "steps": [], "bench": bench, "network": None, "ncu": []})
    line = next(ln for ln in text.splitlines() if ln.startswith("| 1280×720 | baby"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[3] == "0.400"          # mean density of the 5 blocks
    assert cells[4] == "1.000 ms"       # 5 x 0.20 (the graph is faster than eager)
    assert cells[5] == "2.500 ms"       # 5 x the dense block
    assert cells[6] == "2.50×"
    assert "Test GPU" in text and "abc123" in text and "No whole-network results" in text


def test_summary_refuses_to_time_wrong_outputs():
    rows = [{"image": "bird", "block": b, "W": 640, "H": 360, "mask": "real", "nhwc": True, "density": 0.3,
             "correct": b != 2, **_timing(0.1)} for b in range(5)]
    lines = summarize.block_table({"dense": {"640x360": {"block": _timing(0.3)}}, "sparse": rows})
    assert "incomplete or wrong output" in lines[-1] and "ms" not in lines[-1]


def test_ncu_raw_csv_is_parsed_per_kernel():
    text = ('==PROF== Connected to process 1\n'
            '"ID","Kernel Name","gpu__time_duration.sum","smsp__inst_executed.sum","dram__bytes.sum"\n'
            '"","","nsecond","inst","byte"\n'
            '"0","layerKernel<__half>(Params)","12,345","1,000,000","2000000"\n'
            '"1","prepareKernel(Map)","1,000","5000","100"\n')
    rows = summarize.parse_ncu(text)
    assert [r["kernel"] for r in rows] == ["layerKernel<__half>(Params)", "prepareKernel(Map)"]
    assert rows[0]["gpu__time_duration.sum"] == 12345 and rows[0]["smsp__inst_executed.sum"] == 1e6
    assert rows[1]["sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active"] is None


# ------------------------------------------------------------------------------------------ the op, emulated
@pytest.fixture(scope="module")
def emulated_op():
    """smsr_torch over libsmsr_block_capi_emu.so (the emulated kernels: CPU tensors)."""
    from helpers import missing_component
    pytest.importorskip("torch")
    if not shutil.which("cmake"):
        missing_component("cmake not found: cannot build libsmsr_block_capi_emu.so")
    build = Path(os.environ.get("SMSR_BUILD_DIR", REPO / "build"))
    if not (build / "CMakeCache.txt").is_file():
        missing_component(f"no CMake build dir at {build} (make setup / wt-build.sh)")
    r = subprocess.run(["cmake", "--build", str(build), "-j", "2", "--target", "smsr_block_capi_emu"],
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, f"building smsr_block_capi_emu failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    sys.path.insert(0, str(REPO / "tests" / "gpu" / "torch_ext"))
    import smsr_torch
    lib = smsr_torch.load_library(build / "tests" / "gpu" / "libsmsr_block_capi_emu.so")
    assert lib.emulated
    return smsr_torch


def _crop_inputs(model, set5_lr_images, name="butterfly", size=(18, 22)):
    import numpy as np

    from bench_blocks import block_inputs
    img = set5_lr_images[name]
    top, left = (img.shape[0] - size[0]) // 2, (img.shape[1] - size[1]) // 2
    lr = img[top:top + size[0], left:left + size[1]].astype(np.float32).transpose(2, 0, 1)[None].copy()
    return block_inputs(model, lr)


def test_op_matches_the_model_blocks_on_the_emulated_kernels(emulated_op, official_model, set5_lr_images):
    import torch
    inputs = _crop_inputs(official_model, set5_lr_images)
    densities = []
    for b, (x, mask) in enumerate(inputs):
        smb = official_model.body[b].body
        with torch.no_grad():
            ref = smb(x, mask, "dense_masked")
        kb = emulated_op.KernelBlock(smb)
        y = kb(x, mask)
        assert float((y - ref).abs().max()) <= 1e-3, f"block {b}: FP32 op differs from the model"
        y16 = kb.half()(x.half(), mask.half()).float()
        assert float((y16 - ref).abs().max() / ref.abs().max()) <= 1e-2, f"block {b}: FP16 op off"
        densities.append(float(mask.mean()))
    assert 0 < min(densities) and max(densities) < 1  # real, partial masks: both code paths ran


def test_op_rejects_bad_input_clearly(emulated_op, official_model, set5_lr_images):
    import torch
    x, mask = _crop_inputs(official_model, set5_lr_images)[0]
    kb = emulated_op.KernelBlock(official_model.body[0].body)
    with pytest.raises(ValueError, match="needs cpu tensors of one dtype"):
        kb(x.half(), mask)  # FP16 features with FP32 weights
    if not emulated_op._LIB.supports_nhwc:
        kb.nhwc = True
        with pytest.raises(ValueError, match="reads NCHW only"):
            kb(x, mask)
    with pytest.raises(ValueError, match="SMSRSparseBlock"):
        torch.ops.smsr_gpu.sparse_block(x[:, :8], mask, kb.w0, kb.w1, kb.w2, kb.w3, kb.wc, kb.bc,
                                        [0, 0, 0, 0], [0, 0, 0, 0], False)


@pytest.mark.parametrize("layout", ["oihw", "hwio"])
def test_kernel_weights_follow_the_contract_layout(emulated_op, official_model, monkeypatch, layout):
    from converters import deploy_op
    monkeypatch.setattr(deploy_op, "PLUGIN_VERSION", "1" if layout == "oihw" else "2")
    smb = official_model.body[1].body
    w, wc, dense, sparse = emulated_op.kernel_weights(smb)
    ref_w, ref_wc, _, _ = deploy_op.permuted_weights(smb)
    c_total = sum(dense) + sum(sparse)
    if layout == "oihw":
        assert w[2].shape == ref_w[2].shape and (w[2] == ref_w[2]).all()
    else:  # [ky][kx][ci][co] = W[co][ci][ky][kx]; wc [0][0][ci][co] = wc[co][ci]
        assert tuple(w[2].shape) == (3, 3, ref_w[2].shape[1], ref_w[2].shape[0])
        assert float(w[2][1, 2, 5, 7]) == float(ref_w[2][7, 5, 1, 2])
        assert tuple(wc.shape) == (1, 1, c_total, 64) and float(wc[0, 0, 100, 3]) == float(ref_wc[3, 100, 0, 0])


def test_device_scripts_run_end_to_end_on_the_emulated_kernels(emulated_op, official_weights, set5_dir, tmp_path):
    """bench_blocks.py and network_gpu.py with --cpu (tiny sizes): every path but CUDA events, graphs, profiler."""
    import bench_blocks
    import network_gpu
    lib = str(emulated_op._LIB.path)
    bench_json, net_json = tmp_path / "bench.json", tmp_path / "network.json"
    assert bench_blocks.main(["--weights", str(official_weights), "--images", str(set5_dir / "LR_bicubic" / "X2"),
                              "--lib", lib, "--sizes", "20x12", "--iters", "1", "--warmup", "0", "--max-images", "1",
                              "--cpu", "--out", str(bench_json)]) == 0
    bench = json.loads(bench_json.read_text())
    formats = 2 if emulated_op._LIB.supports_nhwc else 1  # NCHW, and NHWC where the kernels have it
    assert len(bench["sparse"]) == 15 * formats and not bench["errors"]  # 5 real-mask blocks + 5 full + 5 empty
    assert all(r["correct"] and r["rel_err"] <= 1e-2 for r in bench["sparse"])
    assert {r["mask"] for r in bench["sparse"]} == {"real", "full", "empty"}
    # INT8 (issue 14): 5 blocks bit-exact vs the contract, and the dense INT8 baseline exact at a full mask
    assert len(bench["int8"]) == 5 and all(r["correct"] and r["mismatches"] == 0 for r in bench["int8"])
    assert all(r["dense_int8"]["exact_at_full_mask"] for r in bench["int8"] if "dense_int8" in r)
    assert network_gpu.main(["--weights", str(official_weights), "--set5", str(set5_dir), "--lib", lib, "--cpu",
                             "--crop", "16x20", "--size", "24x16", "--iters", "1", "--warmup", "0",
                             "--out", str(net_json)]) == 0
    net = json.loads(net_json.read_text())
    assert net["set5"]["agree"] and len(net["set5"]["images"]) == 5
    assert all(r["max_abs_diff"] <= 1e-2 and r["mask_agreement"] == 1.0 for r in net["set5"]["images"])
    assert any(0 < r["density"] < 1 for r in net["set5"]["images"])
    assert {"kernels", "dense_masked", "dense"} <= set(net["frame"])
    md = summarize.markdown({"date": "2026-12-01T00:00:00", "commit": "x", "device": {}, "steps": [],
                             "bench": bench, "network": net, "ncu": []})
    assert md.count("| 20×12 |") == 3 * formats and "Set5 agreement (every image within 0.01 dB): **yes**" in md


def test_one_pass_fixture_inputs_equal_dump_block_fixtures(official_model, set5_lr_images):
    import numpy as np

    sys.path.insert(0, str(REPO / "tests" / "fixtures"))
    from dump_block_fixture import block_io
    from make_fixtures import all_block_io
    lr = set5_lr_images["bird"][50:70, 40:66].astype(np.float32).transpose(2, 0, 1)[None].copy()
    for b, got in enumerate(all_block_io(official_model, lr)):
        for name, a, e in zip(("x", "mask", "y"), got, block_io(official_model, lr, b)):
            assert np.allclose(a, e, rtol=0, atol=1e-4), f"block {b} {name}"


def test_check_step_names_the_failing_fixtures(tmp_path):
    build = tmp_path / "build-gpu"
    native = build / "plugins" / "smsrSparseBlock" / "kernels" / "smsr_kernels_native_test"
    native.parent.mkdir(parents=True)
    native.write_text('#!/bin/sh\ncase "$2" in *bird_b3*) echo "FAIL fixture"; exit 1;; esac\necho PASSED\n')
    native.chmod(0o755)
    fixtures = build / "work" / "fixtures"
    fixtures.mkdir(parents=True)
    for name in ("baby", "bird"):
        for b in range(5):
            (fixtures / f"{name}_b{b}.bin").touch()
    r, out, statuses = _device_run(tmp_path, _fake_tools(tmp_path), "check", build=build)
    assert statuses["check"] == "failed" and r.returncode == 1
    md = (out / "results.md").read_text()
    assert "1 of 10 fixtures FAILED: bird_b3" in md
    assert (out / "check.log").read_text().count("PASSED") == 10  # the random cases + 9 good fixtures


@pytest.mark.parametrize("ncu, status, text", [
    ('echo "==ERROR== Failed to initialize the profiler: LibraryNotLoaded" >&2; exit 1', "unsupported",
     "ncu not supported here"),
    ('echo \'"ID","Kernel Name","gpu__time_duration.sum"\'; echo \'"","","nsecond"\'; '
     'echo \'"0","layerKernel","1000"\'; echo \'"1","collectKernel","500"\'', "ok", "ncu: 2 kernels profiled"),
    # an ncu that lacks the tensor-pipe metric: profiled again without it
    ('case "$*" in *hmma*) echo "==ERROR== Failed to find metric sm__pipe_tensor_op_hmma" >&2; exit 1;; esac; '
     'echo \'"ID","Kernel Name","gpu__time_duration.sum"\'; echo \'"0","layerKernel","1000"\'', "ok",
     "profiled without it"),
])
def test_ncu_step_tells_unsupported_from_results(tmp_path, ncu, status, text):
    build = _fake_native_build(tmp_path)
    (build / "work" / "fixtures").mkdir(parents=True)
    (build / "work" / "fixtures" / "ncu_baby_b0.smbf").touch()
    r, out, statuses = _device_run(tmp_path, _fake_tools(tmp_path, ncu=ncu), "ncu", build=build)
    assert statuses["ncu"] == status, r.stdout + r.stderr
    md = (out / "results.md").read_text()
    assert text in md
    if status == "ok":
        assert "| layerKernel | 1.0 |" in md


def test_the_c_abi_library_exports_only_its_functions(emulated_op):
    """The version script keeps the static CUDA runtime inside libsmsr_block_capi private (PyTorch has its own)."""
    if not shutil.which("nm"):
        pytest.skip("nm not found")
    libs = [emulated_op._LIB.path, emulated_op._LIB.path.with_name("libsmsr_block_capi.so")]
    for lib in (p for p in libs if p.is_file()):  # the CUDA one exists where nvcc built it
        out = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True).stdout
        names = {ln.split()[-1] for ln in out.splitlines() if ln.split() and ln.split()[1] in "TDBRW"}
        assert names and all(n.startswith("smsr_capi_") for n in names), f"{lib.name} exports {sorted(names)[:8]}"


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


def test_int8_dense_baseline_has_twice_the_rate_and_byte_activations():
    px = 1000
    peak = 0.7 * 1024 * 2 * 16 * 1.3e9
    bw = 0.8 * 204.8e9
    conv = max(64 * 64 * 9 * px / peak, 128 * px / bw) + 4e-6
    collect = max(256 * 64 * px / peak, (256 + 128) * px / bw) + 4e-6  # int8 features in, FP16 y out
    assert perf_model.dense_block_time(px, ORIN, perf_model.PRECISIONS["int8"]) == pytest.approx(4 * conv + collect)


def test_int8_blocks_have_byte_features_groups_of_16_and_the_weight_pack_launch():
    int8 = perf_model.PRECISIONS["int8"]
    g16, _, n8 = perf_model.block_gemms("v2", [24, 9, 3, 0], [40, 55, 61, 64], 1.0, 1000, prec=int8)
    g8, _, n16 = perf_model.block_gemms("v2", [24, 9, 3, 0], [40, 55, 61, 64], 1.0, 1000)
    assert n8 == n16 + 1
    assert g16[0].dram_bytes < g8[0].dram_bytes
    # layer 1 reads f_0 padded to 16: 32 + 48 = 80 channels = 3 chunks of 32 per tap (FP16: 24 + 40 = 64: 2)
    assert g16[1].parts[0][2] == 27 and g8[1].parts[0][2] == 18


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

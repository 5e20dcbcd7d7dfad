"""converters/build_engine.py: profile/shape logic, engine names, the no-TensorRT path, input errors, and real
TensorRT-RTX engine builds (CPU-only, in subprocesses: a builder abort must not take pytest down) with their
manifests and the runtime's mismatch detection on them. No TensorRT runtime is ever created here."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest
from helpers import missing_component

from converters.engine_build.builders import engine_name, short_version, target_tag
from converters.engine_build.profile import Profile, ProfileError, even_ceil, make_profile, parse_shape

REPO = Path(__file__).resolve().parents[1]
SMALL_PROFILE = ["--min-shape", "1x3x16x16", "--opt-shape", "1x3x32x32", "--max-shape", "1x3x64x64"]
BLOCK_TRT = "import sys; sys.modules['tensorrt'] = None; sys.modules['tensorrt_rtx'] = None; "


def run_build(args, pre: str = "", timeout: int = 300) -> subprocess.CompletedProcess:
    code = f"import sys; {pre}from converters.build_engine import main; sys.exit(main(sys.argv[1:]))"
    # The repository first; an existing PYTHONPATH (e.g. a sitecustomize folder) stays behind it.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- profile / shape logic ---------------------------------------------------------------------------------------
def test_photo_preset_and_batch():
    p = make_profile(2, "photo")
    assert (p.min, p.opt, p.max) == ((1, 3, 16, 16), (1, 3, 256, 256), (1, 3, 512, 512))
    p = make_profile(4, "photo", batch=4)
    assert p.min[0] == 1 and p.opt[0] == 4 and p.max[0] == 4


@pytest.mark.parametrize("preset,scale,hw", [("720p", 2, (360, 640)), ("720p", 3, (240, 428)),
                                             ("1080p", 2, (540, 960)), ("1080p", 4, (270, 480)),
                                             ("1080p", 3, (360, 640))])
def test_video_presets_cover_the_output_frame(preset, scale, hw):
    p = make_profile(scale, preset, batch=2)
    assert p.opt == p.max == (2, 3, *hw) and p.min == (1, 3, *hw)
    out_h, out_w = {"720p": (720, 1280), "1080p": (1080, 1920)}[preset]
    assert hw[0] * scale >= out_h and hw[1] * scale >= out_w  # the frame fits
    assert hw[0] % 2 == 0 and hw[1] % 2 == 0  # runtime pads to even
    assert (hw[0] - 2) * scale < out_h  # and it is the smallest even size that fits


def test_even_ceil():
    assert [even_ceil(o, s) for o, s in ((720, 2), (1280, 3), (1081, 2), (7, 1))] == [360, 428, 542, 8]


def test_explicit_shapes_override_and_pull_opt_down():
    p = make_profile(2, "photo", max_shape="64x64")
    assert p.max == (1, 3, 64, 64) and p.opt == (1, 3, 64, 64) and p.min == (1, 3, 16, 16)
    p = make_profile(2, "photo", min_shape="1x3x8x8", opt_shape="2x3x32x48", max_shape="4x3x64x96")
    assert (p.min, p.opt, p.max) == ((1, 3, 8, 8), (2, 3, 32, 48), (4, 3, 64, 96))
    assert parse_shape("32x48", batch=3) == (3, 3, 32, 48)
    assert parse_shape("1,3,16,16") == (1, 3, 16, 16)
    assert Profile((1, 3, 8, 8), (1, 3, 8, 8), (1, 3, 8, 8)).as_dict() == {
        "min": [1, 3, 8, 8], "opt": [1, 3, 8, 8], "max": [1, 3, 8, 8]}


@pytest.mark.parametrize("kwargs,match", [
    (dict(min_shape="1x3x64x64", opt_shape="1x3x32x32", max_shape="1x3x128x128"), "min <= opt <= max for H"),
    (dict(max_shape="1x4x64x64"), "3 \\(RGB\\) channels"),
    (dict(min_shape="1x3x1x16"), "H, W >= 2"),
    (dict(max_shape="64"), "expected HxW or NxCxHxW"),
    (dict(max_shape="axb"), "integers"),
    (dict(preset="4k"), "unknown profile preset"),
    (dict(batch=0), "batch size"),
])
def test_profile_errors(kwargs, match):
    with pytest.raises(ProfileError, match=match):
        make_profile(2, **kwargs)


def test_engine_names_say_scale_precision_builder_target():
    assert engine_name(2, "deploy", "int8", "tensorrt-rtx", "1.7.1.116", ["8.6"]) == \
        "smsr_x2_deploy_int8_trtrtx1.7.1_sm86.engine"
    assert engine_name(4, "reference", "fp16", "tensorrt", "10.3.0.30", ["8.7"]) == \
        "smsr_x4_reference_fp16_trt10.3.0_sm87.engine"
    assert target_tag(["7.5", "12.0"], "ampere+") == "sm75-sm120-ampplus"
    assert short_version("10.14.1.48") == "10.14.1"


# --- CLI without TensorRT, and input errors -------------------------------------------------------------------------
def test_script_runs_from_the_repo_root():
    res = subprocess.run([sys.executable, "converters/build_engine.py", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=60, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert res.returncode == 0, res.stderr
    for opt in ("--precision", "--builder", "--calib-data", "--onnx-only", "--reference", "--plugin",
                "--timing-cache", "--opt-level", "--workspace-mb", "--compute-capability", "--batch"):
        assert opt in res.stdout


def test_without_tensorrt_every_onnx_artifact_and_a_clear_message(official_weights, set5_dir, tmp_path):
    """No TensorRT importable: exit code 3 before anything is exported (the export takes 15-70 s), with a message
    naming what is missing and --onnx-only; --onnx-only then writes all ONNX graphs (reference, deploy, FP16, INT8
    Q/DQ), checked, and a second run reuses the unchanged ones."""
    out = tmp_path / "out"
    calib = ["--calib-data", set5_dir / "LR_bicubic" / "X2", "--calib-mode", "patches", "--calib-images", "2",
             "--calib-patch", "32", "--calib-patches-per-image", "4", "--eval-data", "none"]
    t0 = time.perf_counter()
    res = run_build(["--weights", official_weights, "--scale", 2, "--precision", "int8", "--out-dir", out, *calib],
                    pre=BLOCK_TRT)
    assert res.returncode == 3, res.stdout + res.stderr
    assert "needs TensorRT" in res.stderr and "--onnx-only" in res.stderr and "tensorrt-rtx" in res.stderr
    assert "nothing was exported" in res.stderr and not list(out.glob("*.onnx")) and "exporting" not in res.stdout
    assert time.perf_counter() - t0 < 60
    res = run_build(["--weights", official_weights, "--scale", 2, "--precision", "int8", "--out-dir", out, *calib,
                     "--onnx-only"], pre=BLOCK_TRT)
    assert res.returncode == 0, res.stdout + res.stderr
    for key in ("reference", "deploy", "reference_fp16", "deploy_fp16", "reference_int8", "deploy_int8"):
        path = out / f"smsr_x2_{key}.onnx"
        assert path.is_file(), key
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        assert {p.key: p.value for p in model.metadata_props}["smsr.precision"] == (key.split("_") + ["fp32"])[1]
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("smsr_x2_*.onnx") if "int8" not in p.name}
    res = run_build(["--weights", official_weights, "--scale", 2, "--out-dir", out, "--onnx-only"], pre=BLOCK_TRT)
    assert res.returncode == 0 and res.stdout.count("unchanged: reused") == 4, res.stdout
    assert {n: (out / n).stat().st_mtime_ns for n in stamps} == stamps  # not rewritten
    report = json.loads((out / "smsr_x2_int8_calibration.json").read_text())
    assert report["calibration_data"]["mode"] == "patches" and report["calibration_data"]["images"] == 2
    # --onnx-only: same inputs, success, no engine
    res = run_build(["--onnx", out / "smsr_x2_reference.onnx", "--reference", "--precision", "fp16",
                     "--out-dir", out, "--onnx-only"], pre=BLOCK_TRT)
    assert res.returncode == 0, res.stderr
    assert not list(out.glob("*.engine"))


def test_deploy_without_plugin_library_is_an_input_error(onnx_graphs, tmp_path):
    res = run_build(["--onnx", onnx_graphs["deploy_fp16"], "--precision", "fp16", "--out-dir", tmp_path,
                     "--plugin", tmp_path / "nope.so", *SMALL_PROFILE])
    assert res.returncode == 2
    assert "plugin library" in res.stderr and "--reference" in res.stderr


def test_input_errors(onnx_graphs, tmp_path):
    res = run_build(["--onnx", onnx_graphs["reference"], "--reference", "--out-dir", tmp_path,
                     "--max-shape", "1x3x8x8", "--min-shape", "1x3x16x16"])
    assert res.returncode == 2 and "min <= opt <= max" in res.stderr
    res = run_build(["--onnx", onnx_graphs["reference"], "--reference", "--precision", "int8", "--out-dir", tmp_path,
                     "--onnx-only"])
    assert res.returncode == 2 and "--calib-data" in res.stderr
    res = run_build(["--onnx", onnx_graphs["reference"], "--scale", 3, "--reference", "--out-dir", tmp_path])
    assert res.returncode == 2 and "x2 graph" in res.stderr


def test_bad_calibration_folder_is_reported_before_export(official_weights, tmp_path):
    """A corrupt calibration image: one `error:` line naming it, exit 2, and nothing exported first."""
    calib = tmp_path / "calib"
    calib.mkdir()
    from PIL import Image
    Image.new("RGB", (12, 10)).save(calib / "a.png")
    (calib / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    out = tmp_path / "out"
    res = run_build(["--weights", official_weights, "--scale", 2, "--precision", "int8", "--calib-data", calib,
                     "--out-dir", out, "--onnx-only"])
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.startswith("error: ") and "b.png" in res.stderr
    assert not out.exists() or not list(out.glob("*.onnx"))
    res = run_build(["--weights", official_weights, "--scale", 2, "--precision", "int8", "--out-dir", out,
                     "--onnx-only"])
    assert res.returncode == 2 and "--calib-data" in res.stderr
    assert not out.exists() or not list(out.glob("*.onnx"))


def test_unwritable_out_dir_is_one_line(official_weights, tmp_path):
    """build_engine.py and export_onnx with an output folder that cannot be created: `error:`, exit 2."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    res = run_build(["--weights", official_weights, "--scale", 2, "--out-dir", blocker / "sub", "--onnx-only"])
    assert res.returncode == 2 and "Traceback" not in res.stderr and "file.txt" in res.stderr, res.stderr
    r = subprocess.run([sys.executable, "-m", "converters.export_onnx", "--weights", str(official_weights),
                        "--scale", "2", "--out-dir", str(blocker / "sub")], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.startswith("error: ")
    assert "file.txt" in r.stderr


# --- real engines with TensorRT-RTX (CPU build) -------------------------------------------------------------------
def _need_rtx():
    if importlib.util.find_spec("tensorrt_rtx") is None:
        missing_component("tensorrt_rtx not installed (make setup installs tensorrt-rtx-cu13)")
    from engine import trt_rtx_setup
    ok, msg = trt_rtx_setup.status()
    if not ok:
        missing_component(f"TensorRT-RTX packaging fix missing ({msg}); run python -m engine.trt_rtx_setup")


def _rtx_version() -> str:
    res = subprocess.run([sys.executable, "-c", "import tensorrt_rtx; print(tensorrt_rtx.__version__)"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def _rtx_args(out: Path) -> list:
    return ["--builder", "tensorrt-rtx", "--compute-capability", "8.6", "--out-dir", out, "--no-progress",
            *SMALL_PROFILE]


def _build_and_load(args, out: Path):
    res = run_build([*args, *_rtx_args(out)])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    line = next(l for l in res.stdout.splitlines() if l.startswith("engine: "))
    engine = Path(line.split()[1])
    from engine.manifest import load_manifest, manifest_path_for
    return engine, load_manifest(manifest_path_for(engine)), res


@pytest.fixture(scope="module")
def rtx_reference_engines(onnx_graphs, set5_dir, tmp_path_factory):
    _need_rtx()
    out = tmp_path_factory.mktemp("rtx_ref")
    calib = ["--calib-data", set5_dir / "LR_bicubic" / "X2", "--calib-mode", "patches", "--calib-images", "2",
             "--calib-patch", "32", "--eval-data", "none"]
    built = {}
    for precision in ("fp16", "int8"):
        built[precision] = _build_and_load(["--onnx", onnx_graphs["reference"], "--reference",
                                            "--precision", precision, *(calib if precision == "int8" else [])], out)
    return out, built


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_rtx_reference_engine_and_manifest(rtx_reference_engines, onnx_graphs, official_weights, precision):
    out, built = rtx_reference_engines
    engine, manifest, res = built[precision]
    assert engine.name == f"smsr_x2_reference_{precision}_trtrtx{short_version(_rtx_version())}_sm86.engine"
    data = engine.read_bytes()
    assert data[:4] == b"vtrt" and len(data) > 100_000  # TensorRT-RTX engine header
    onnx_path = out / f"smsr_x2_reference_{precision}.onnx"
    assert manifest.scale == 2 and manifest.precision == precision and manifest.graph == "reference"
    assert manifest.builder == "tensorrt-rtx" and manifest.builder_version == _rtx_version()
    assert manifest.compute_capabilities == ["8.6"] and manifest.plugin_library is None
    assert manifest.profile == {"min": [1, 3, 16, 16], "opt": [1, 3, 32, 32], "max": [1, 3, 64, 64]}
    assert manifest.onnx_sha256 == sha256(onnx_path)
    assert manifest.checkpoint_sha256 == sha256(official_weights)
    assert manifest.created and manifest.extra["build_seconds"] > 0
    assert manifest.extra["engine_bytes"] == len(data) and manifest.extra["engine_sha256"] == sha256(engine)
    assert Path(manifest.extra["timing_cache"]).is_file()
    model = onnx.load(str(onnx_path))
    has_qdq = any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    assert has_qdq == (precision == "int8")
    print(f"{precision}: {len(data) / 1e6:.2f} MB, {manifest.extra['build_seconds']:.2f} s")


def test_runtime_refuses_mismatching_engines(rtx_reference_engines):
    from engine.errors import ManifestError, ScaleMismatchError
    from engine.manifest import check_compatible
    _, built = rtx_reference_engines
    _, manifest, _ = built["fp16"]
    version = manifest.builder_version
    check_compatible(manifest, version, "8.6", 2, runtime_builder="tensorrt-rtx")  # the matching machine
    with pytest.raises(ManifestError, match="compute capability"):
        check_compatible(manifest, version, "8.9", 2)
    with pytest.raises(ManifestError, match="built with tensorrt-rtx"):
        check_compatible(manifest, "0.9.0", "8.6", 2)
    with pytest.raises(ScaleMismatchError, match="x2"):
        check_compatible(manifest, version, "8.6", 4)
    with pytest.raises(ManifestError, match="runtime is tensorrt"):
        check_compatible(manifest, version, "8.6", 2, runtime_builder="tensorrt")


_CACHE_SPY = """
import hashlib, tensorrt_rtx as _t
_create, _set = _t.IBuilderConfig.create_timing_cache, _t.IBuilderConfig.set_timing_cache
def _spy_create(self, data):
    print("SPY create_timing_cache", len(bytes(data)), hashlib.sha256(bytes(data)).hexdigest(), flush=True)
    return _create(self, data)
def _spy_set(self, cache, ignore_mismatch):
    ok = _set(self, cache, ignore_mismatch)
    print("SPY set_timing_cache", ok, flush=True)
    return ok
_t.IBuilderConfig.create_timing_cache, _t.IBuilderConfig.set_timing_cache = _spy_create, _spy_set
"""


def test_timing_cache_is_reused(rtx_reference_engines, onnx_graphs, tmp_path):
    """A second build is handed the first build's cache bytes and accepts them (no fall-back to a new cache), and
    the file is rewritten as a cache the builder accepts again. (TensorRT-RTX's timing cache holds no timings,
    so this checks the plumbing; with TensorRT 10 the same path feeds real tactic timings.)"""
    out, built = rtx_reference_engines
    cache = Path(built["fp16"][1].extra["timing_cache"])
    data = cache.read_bytes()
    assert data, "the first build wrote an empty timing cache"
    spy = tmp_path / "spy.py"
    spy.write_text(_CACHE_SPY)
    res = run_build([*_rtx_args(out), "--onnx", onnx_graphs["reference_fp16"], "--reference", "--precision", "fp16",
                     "--timing-cache", cache], pre=f"exec(open({str(spy)!r}).read()); ")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    spied = [line.split()[1:] for line in res.stdout.splitlines() if line.startswith("SPY ")]
    # Exactly one cache, made from the previous file's bytes, and accepted by the builder config.
    assert spied == [["create_timing_cache", str(len(data)), hashlib.sha256(data).hexdigest()],
                     ["set_timing_cache", "True"]], spied
    line = next(l for l in res.stdout.splitlines() if l.startswith("manifest: "))
    from engine.manifest import load_manifest
    assert load_manifest(Path(line.split()[1])).extra["timing_cache"] == str(cache)
    assert cache.stat().st_size > 0


@pytest.fixture(scope="module")
def plugin_library():
    from converters.build_engine import default_plugin_library
    lib = default_plugin_library()
    if lib is None or not lib.is_file():
        missing_component("TensorRT plugin library libsmsr_trt_plugin.so not built (cmake --build build)")
    return lib


def test_rtx_deploy_engines_with_plugin(onnx_graphs, set5_dir, plugin_library, tmp_path):
    """FP16 and INT8 engines of the deploy graph: TensorRT-RTX loads our plugin and calls its build methods."""
    _need_rtx()
    from calibration.data import CalibrationConfig
    from calibration.pipeline import make_int8_graphs
    art = make_int8_graphs(onnx_graphs["reference"], onnx_graphs["deploy"], set5_dir / "LR_bicubic" / "X2", tmp_path,
                           2, "max", CalibrationConfig(mode="patches", max_images=2, patch_size=32),
                           log=lambda m: None)
    blocks = [n.name for n in onnx.load(str(art.deploy), load_external_data=False).graph.node
              if n.op_type == "SMSRSparseBlock"]
    assert len(blocks) == 5
    for precision, src in (("fp16", onnx_graphs["deploy_fp16"]), ("int8", art.deploy)):
        engine, manifest, res = _build_and_load(["--onnx", src, "--precision", precision,
                                                 "--plugin", plugin_library], tmp_path)
        assert engine.name.startswith(f"smsr_x2_deploy_{precision}_trtrtx")
        assert engine.read_bytes()[:4] == b"vtrt"
        assert manifest.graph == "deploy" and manifest.precision == precision
        assert manifest.plugin_library == {"path": str(plugin_library.resolve()), "sha256": sha256(plugin_library)}
        assert manifest.onnx_sha256 == sha256(src)
        types = manifest.extra["plugin_layer_types"]
        if precision == "fp16":
            assert types is None  # checked for INT8 deploy graphs only
            continue
        # Every plugin layer of the INT8 deploy graph, per the builder's own layer information: INT8 x and weights.
        assert sorted(types) == sorted(blocks), types
        for node, t in types.items():
            assert t["x"] == "Int8" and t["weights"] == ["Int8"] * 5, (node, t)
            assert t["mask"] == t["bc"] == t["y"] == "Float", (node, t)
        assert "plugin layers with INT8 x and weights (builder layer information): 5 of 5" in res.stdout


# --- the builder's layer information (converters/engine_build/layer_info.py), on log text of TensorRT-RTX 1.7's form
def _layer_line(node: str, x="Int8", weights=("Int8",) * 5, fl="Float", workspace=True) -> str:
    def t(name, dtype, dims="-1,64,-1,-1"):
        return (f"{{ Name: {name}, Dimensions: [{dims}], Strides: [-1,-1,-1,1], StrideOrder: [3,2,1,0], "
                f"Datatype: {dtype}, Format: (Linear) Row major linear format }}")
    consts = [t(f"w{i}_constant{w}_myl0", w, "3,3,64,64") for i, w in enumerate(weights[:4])]
    consts += [t(f"wc_constant{weights[4]}_myl0", weights[4], "1,1,256,64"), t(f"bc_constant{fl}_myl0", fl, "64")]
    outs = [t("y", fl)] + ([t(f"{node}_wksp.1_myl0", "UInt8", "45089024")] if workspace else [])
    return (f"Name: {node}_myl0_2, LayerType: custom_layer, Inputs: [ {t('xq', x)}, {t('mask', fl, '-1,1,-1,-1')}], "
            f"Constants: [ {', '.join(consts)}], Outputs: [ {', '.join(outs)}], TacticName: , StreamId: 0, "
            f"Metadata: [ONNX Layer: {node}]")


class _FakeLogger:
    def __init__(self, *lines):
        self.messages = [(None, "Parsing node: smb0"), (None, "Layers:\n" + "\n".join(lines))] if lines else []


def test_layer_info_check_of_int8_plugin_layers(capsys):
    from converters.engine_build.builders import BuildError, BuilderAdapter
    check = BuilderAdapter.check_int8_plugin_layers
    ok = check(_FakeLogger(_layer_line("a"), _layer_line("b", workspace=False)), ["a", "b"])
    assert ok["a"] == {"engine_layer": "a_myl0_2", "x": "Int8", "mask": "Float", "weights": ["Int8"] * 5,
                       "bc": "Float", "y": "Float"} and ok["b"]["y"] == "Float"
    assert "INT8 x and weights (builder layer information): 2 of 2" in capsys.readouterr().out
    # A block kept float on purpose (--int8-blocks float) is reported, not refused.
    mixed = check(_FakeLogger(_layer_line("a"), _layer_line("f", x="Float", weights=("Float",) * 5)), ["a", "f"])
    assert mixed["f"]["x"] == "Float" and "1 of 2" in capsys.readouterr().out
    # INT8 x but a float weight, or a half bias with float y: not the INT8 contract.
    with pytest.raises(BuildError, match=r"a_myl0_2: weight wc_constantFloat_myl0 is Float, not Int8"):
        check(_FakeLogger(_layer_line("a", weights=("Int8",) * 4 + ("Float",))), ["a"])
    with pytest.raises(BuildError, match="no plugin layer for b"):
        check(_FakeLogger(_layer_line("a")), ["a", "b"])
    assert check(_FakeLogger(), ["a"]) is None  # no layer information logged: said, not guessed
    assert "not checked" in capsys.readouterr().out


# --- builder adapters without a builder (fake module: only the adapters' own decisions are tested) --------------------
class _FakeTrt:
    __version__ = "10.3.0.30"

    class ComputeCapability:
        __members__ = {"NONE": 0, "CURRENT": 1, "SM75": 2, "SM86": 3, "SM120": 4}


def test_tensorrt_adapter_needs_a_gpu_and_rejects_cc_targets(monkeypatch):
    from converters.engine_build import builders
    opts = builders.BuildOptions(profile=make_profile(2))
    monkeypatch.setattr(builders, "detect_gpu", lambda: None)
    with pytest.raises(builders.BuilderUnavailable, match="needs a GPU.*--builder tensorrt-rtx"):
        builders.TensorRTAdapter(_FakeTrt).resolve_targets(opts)
    opts.compute_capabilities = ["8.7"]
    with pytest.raises(builders.BuilderUnavailable, match="TensorRT-RTX option"):
        builders.TensorRTAdapter(_FakeTrt).resolve_targets(opts)
    monkeypatch.setattr(builders, "detect_gpu", lambda: builders.GpuInfo("Orin", "8.7"))
    opts.compute_capabilities = None
    assert builders.TensorRTAdapter(_FakeTrt).resolve_targets(opts) == (["8.7"], "Orin")


def test_rtx_adapter_targets(monkeypatch):
    from converters.engine_build import builders
    rtx = builders.TensorRTRTXAdapter(_FakeTrt)
    assert rtx.supported_ccs() == ["7.5", "8.6", "12.0"]
    monkeypatch.setattr(builders, "detect_gpu", lambda: None)
    opts = builders.BuildOptions(profile=make_profile(2), compute_capabilities=["8.6", "12.0"])
    assert rtx.resolve_targets(opts) == (["8.6", "12.0"], None)
    opts.compute_capabilities = ["9.0"]
    with pytest.raises(builders.BuilderUnavailable, match="cannot target compute capability 9.0"):
        rtx.resolve_targets(opts)
    opts.compute_capabilities = None  # no GPU: the consumer RTX default set, as far as this version supports it
    monkeypatch.setattr(builders, "DEFAULT_RTX_CCS", ("7.5", "8.6"))
    assert rtx.resolve_targets(opts) == (["7.5", "8.6"], None)
    monkeypatch.setattr(builders, "detect_gpu", lambda: builders.GpuInfo("RTX 3060", "8.6"))
    assert rtx.resolve_targets(opts) == (["8.6"], "RTX 3060")


def test_load_builder_names_what_is_missing(monkeypatch):
    from converters.engine_build import builders
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    monkeypatch.setattr(builders, "_ensure_rtx_symlink", lambda: None)
    with pytest.raises(builders.BuilderUnavailable, match="tensorrt-rtx: ModuleNotFoundError.*--onnx-only"):
        builders.load_builder("tensorrt-rtx")
    with pytest.raises(builders.BuilderUnavailable, match="tensorrt: ModuleNotFoundError"):
        builders.load_builder("auto")
    with pytest.raises(ValueError, match="unknown builder"):
        builders.load_builder("trtexec")


def test_auto_builder_fallback_to_tensorrt_rtx_is_said_in_words(monkeypatch, capsys):
    """--builder auto without TensorRT (or without a GPU) builds for RTX GPUs: said before anything is exported."""
    import argparse
    import converters.build_engine as be
    from converters.engine_build import builders
    monkeypatch.setattr(builders, "load_builder", lambda choice: argparse.Namespace(name="tensorrt-rtx"))
    monkeypatch.setattr(builders, "_import", lambda name: ModuleNotFoundError(name))
    monkeypatch.setattr(builders, "detect_gpu", lambda: None)
    be.pick_builder(argparse.Namespace(builder="auto", compute_capability=None))
    out = capsys.readouterr().out
    assert "TensorRT not found: building a TensorRT-RTX engine for sm75, sm86, sm89, sm120" in out
    assert "it will not run on Jetson or with TensorRT 10" in out
    be.pick_builder(argparse.Namespace(builder="tensorrt-rtx", compute_capability=None))  # asked for: no note
    assert capsys.readouterr().out == ""

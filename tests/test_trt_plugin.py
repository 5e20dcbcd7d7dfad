"""The TensorRT plugin SMSRSparseBlock (libsmsr_trt_plugin.so) inside real TensorRT-RTX engine builds, on a CPU.

Every TensorRT call runs in a subprocess (tests/trt/*.py): the TensorRT-RTX parser aborts the whole process on
some errors, which must fail one test, not take pytest down. No engine is ever run (no GPU here: creating a
runtime fails on CUDA initialisation); the plugin's enqueue is exercised by tests/gpu/plugin_harness.cpp.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from helpers import missing_component

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
TRT_DIR = TESTS_DIR / "trt"

# Dynamic-shape profiles (min:opt:max) for the engine builds.
SMB_SHAPES = ["x:1x64x8x8:1x64x64x64:2x64x128x128", "mask:1x1x8x8:1x1x64x64:2x1x128x128"]
SR_SHAPES = ["lr:1x3x16x16:1x3x128x128:2x3x256x256"]


def _load(name: str):
    """Import a helper module from tests/trt/ by path (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"smsr_trt_{name}", TRT_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plugin_lib = _load("plugin_lib")
smb_onnx = _load("smb_onnx")


@pytest.fixture(scope="module")
def plugin_library() -> Path:
    path = plugin_lib.find_plugin_library(REPO_ROOT)
    if path is None:
        missing_component(f"{plugin_lib.LIB_NAME} not built: {plugin_lib.BUILD_HINT}")
    return path


@pytest.fixture(scope="module")
def tensorrt_rtx() -> None:
    """TensorRT-RTX installed and its packaging bug fixed (checked without importing it here)."""
    if importlib.util.find_spec("tensorrt_rtx") is None:
        pytest.skip("tensorrt_rtx not installed (pip install tensorrt-rtx-cu13==1.7.1.116)")
    from engine.trt_rtx_setup import status

    fixed, msg = status()
    if not fixed:
        missing_component(f"TensorRT-RTX packaging fix missing: {msg}; run: python -m engine.trt_rtx_setup")


def _run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
    # A negative return code is a signal: TensorRT aborted the helper process.
    assert proc.returncode >= 0, f"{cmd} was killed by signal {-proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


def build_engine(plugin: Path, model: Path, tmp_path: Path, shapes: list[str], engine: bool = True,
                 load: str = "registry", layer_info: bool = False) -> dict:
    """tests/trt/build_engine.py in a subprocess. layer_info: also the builder's layer information of the plugin
    layers (profiling verbosity DETAILED) and the plugin's configurePlugin trace (SMSR_PLUGIN_TRACE=1)."""
    report = tmp_path / f"{model.stem}.report.json"
    cmd = [sys.executable, str(TRT_DIR / "build_engine.py"), "--plugin", str(plugin), "--onnx", str(model),
           "--report", str(report), "--load", load]
    for s in shapes:
        cmd += ["--shape", s]
    if engine:
        cmd += ["--engine", str(tmp_path / f"{model.stem}.engine")]
    if layer_info:
        cmd = ["env", "SMSR_PLUGIN_TRACE=1", *cmd, "--layer-info"]
    proc = _run(cmd)
    assert report.is_file(), f"no report from build_engine.py (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    result = json.loads(report.read_text())
    result["returncode"] = proc.returncode
    result["stderr"] = proc.stderr
    return result


def _errors(result: dict) -> str:
    return "\n".join(f"{sev}: {msg}" for sev, msg in result.get("log", []) if sev in ("ERROR", "INTERNAL_ERROR"))


def _smb_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == "SMSRSparseBlock"]


def _ints(node: onnx.NodeProto, name: str) -> list[int]:
    return next(list(a.ints) for a in node.attribute if a.name == name)


# ------------------------------------------------------------------------------------------------ host side


@pytest.fixture(scope="module")
def autoreg_library(plugin_library) -> Path:
    path = plugin_lib.autoreg_library(plugin_library)
    if path is None:
        missing_component(f"{plugin_lib.AUTOREG_NAME} not built beside {plugin_library}: {plugin_lib.BUILD_HINT}")
    return path


def _exports_and_needed(lib: Path) -> tuple[set[str], list[str]]:
    nm = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True, check=True)
    exported = {line.split()[-1] for line in nm.stdout.splitlines() if line.strip()}
    readelf = subprocess.run(["readelf", "-d", str(lib)], capture_output=True, text=True, check=True)
    needed = [line.split("[")[-1].rstrip("]") for line in readelf.stdout.splitlines() if "(NEEDED)" in line]
    return exported, needed


def test_plugin_library_exports_and_dependencies(plugin_library, autoreg_library):
    """Exports TensorRT's plugin-library entry points only; no libnvinfer / TensorRT / shared cudart dependency."""
    exported, needed = _exports_and_needed(plugin_library)
    assert exported == {"getCreators", "setLoggerFinder", "smsrSparseBlockLiveObjects"}, exported
    assert not [n for n in needed if "nvinfer" in n or "tensorrt" in n or "cudart" in n], needed
    # The self-registering variant must not offer getCreators (the registry would register it a second time).
    exported, needed = _exports_and_needed(autoreg_library)
    assert exported == {"smsrSparseBlockLiveObjects"}, exported
    assert not [n for n in needed if "nvinfer" in n or "tensorrt" in n or "cudart" in n], needed


def test_host_methods_cpp(plugin_library):
    """C++ host test: every host method of creator and plugin, both logger layouts, destructor balance."""
    exe = plugin_lib.host_test_binary(plugin_library)
    if exe is None:
        missing_component(f"smsr_trt_plugin_host_test not built beside {plugin_library}: {plugin_lib.BUILD_HINT}")
    proc = _run([str(exe), str(plugin_library)], timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 failures" in proc.stdout


def test_enqueue_success_path_on_emulated_kernels(plugin_library):
    """The same plugin sources over the emulated kernel library (libsmsr_trt_plugin_emu.so): configurePlugin on a
    dynamic profile, getWorkspaceSize = the kernel library's, onShapeChange, enqueue with host pointers; y against a
    naive evaluation of the op contract (FP32 and FP16 linear, FP16 kHWC8 channels-last I/O, splits with zero dense
    channels), the INT8 mode's y bit for bit against the INT8 contract, plus every host check."""
    build_dir = plugin_library.parent
    lib = build_dir / "libsmsr_trt_plugin_emu.so"
    exe = build_dir / "tests" / "smsr_trt_plugin_emu_host_test"
    if not lib.is_file() or not exe.is_file():
        missing_component(f"{lib.name} / {exe.name} not built beside {plugin_library}: {plugin_lib.BUILD_HINT}")
    proc = _run([str(exe), str(lib)], timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 failures" in proc.stdout
    runs = [line for line in proc.stdout.splitlines() if "plugin enqueue (emulated kernels)" in line]
    assert len(runs) == 6 and all(line.startswith("ok") for line in runs), proc.stdout
    assert {"FP32", "FP16", "HWC8"} <= {w for line in runs for w in line.split()}
    # INT8 mode: y bit-exact against the contract (kernels/sparseBlockQuant.h), FP32 and FP16 y.
    int8_runs = [line for line in proc.stdout.splitlines() if "plugin INT8 enqueue (emulated kernels)" in line]
    assert len(int8_runs) == 4 and all(line.startswith("ok") and " 0 of " in line for line in int8_runs), proc.stdout


def test_host_methods_through_registry(plugin_library, tensorrt_rtx, tmp_path):
    """TensorRT-RTX's registry loads the library; creation from good/bad fields, logging, destructor balance."""
    report = tmp_path / "registry.json"
    proc = _run([sys.executable, str(TRT_DIR / "registry_checks.py"), "--plugin", str(plugin_library),
                 "--report", str(report)])
    assert report.is_file(), proc.stderr[-3000:]
    failed = [r for r in json.loads(report.read_text()) if not r["ok"]]
    assert not failed and proc.returncode == 0, failed or proc.stderr[-3000:]


# ------------------------------------------------------------------------------------------------ engine builds


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["fp32", "fp16"])
def test_single_block_engine(plugin_library, tensorrt_rtx, tmp_path, dtype):
    model = tmp_path / "smb.onnx"
    onnx.save(smb_onnx.make_smb_model(dtype=dtype), model)
    r = build_engine(plugin_library, model, tmp_path, SMB_SHAPES)
    assert r["ok"], f"{r.get('error')}\n{_errors(r)}"
    assert r["plugin_layers"] == ["smb0"]
    want = "DataType.HALF" if dtype == np.float16 else "DataType.FLOAT"
    assert r["plugin_layer_io_types"] == [[want]]
    assert r["engine_magic"] == "vtrt" and r["engine_bytes"] > 0
    assert min(r["engine_field_counts"].values()) >= 1, r["engine_field_counts"]
    engine = (tmp_path / "smb.engine").read_bytes()
    assert struct.pack("<4i", *smb_onnx.BLOCK0_DENSE) in engine and struct.pack("<4i", *smb_onnx.BLOCK0_SPARSE) in engine


# ------------------------------------------------------------------------------------------------ INT8 mode


def _layer_info_problems(r: dict, node: str) -> list[str]:
    """What is wrong with the INT8 plugin layer `node` per the builder's layer information (empty: all fine)."""
    from converters.engine_build.layer_info import LayerInfo, TensorInfo, int8_problems

    info = r.get("engine_plugin_layers", {}).get(node)
    if info is None:
        return [f"no layer information for {node}: {sorted(r.get('engine_plugin_layers', {}))}"]
    layer = LayerInfo(info["name"], info["type"],
                      *[[TensorInfo(t["name"], t["dtype"], t["format"], t["dims"]) for t in info[k]]
                        for k in ("inputs", "constants", "outputs")], info["onnx_nodes"])
    return int8_problems(layer)


def _trace_types(line: str) -> dict[str, str]:
    """'... x=INT8/LINEAR[2x64x128x128] mask=FLOAT/LINEAR[...] ...' -> {'x': 'INT8/LINEAR', ...}."""
    return {k: v.split("[")[0] for k, v in (w.split("=", 1) for w in line.split() if "=" in w)}


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["fp32", "fp16"])
def test_single_block_int8_engine(plugin_library, tensorrt_rtx, tmp_path, dtype):
    """x -> QuantizeLinear -> SMSRSparseBlock (INT8 x, INT8 weight initializers, float mask/bc/y) builds, and the
    builder's own layer information says the plugin layer got INT8 x and weights; the plugin's configurePlugin
    trace says the same; the engine carries the INT8 fields (getFieldsToSerialize) bit for bit."""
    model_proto = smb_onnx.make_smb_int8_model(dtype=dtype)
    model = tmp_path / "smb_int8.onnx"
    onnx.save(model_proto, model)
    r = build_engine(plugin_library, model, tmp_path, SMB_SHAPES, layer_info=True)
    assert r["ok"], f"{r.get('error')}\n{_errors(r)}"
    assert r["plugin_layers"] == ["smb0"]
    fl = "HALF" if dtype == np.float16 else "FLOAT"
    # The network after parsing: x and the five weight tensors INT8, mask / bc / y float.
    assert r["plugin_layer_input_types"]["smb0"] == [f"DataType.{t}" for t in
                                                     ["INT8", fl] + ["INT8"] * 5 + [fl, fl]]
    # The builder's information on the finished engine.
    assert _layer_info_problems(r, "smb0") == [], r.get("engine_plugin_layers")
    # What TensorRT handed configurePlugin.
    assert r["plugin_trace"], "no SMSR_PLUGIN_TRACE line logged"
    for line in r["plugin_trace"]:
        t = _trace_types(line)
        assert "'smb0'" in line and t["x"] == "INT8/LINEAR" and t["mask"] == t["bc"] == t["y"] == f"{fl}/LINEAR", line
        assert all(t[w] == "INT8/LINEAR" for w in ("w0", "w1", "w2", "w3", "wc")), line
    engine = (tmp_path / "smb_int8.engine").read_bytes()
    for name, values in smb_onnx.int8_attrs(model_proto).items():
        assert struct.pack(f"<{len(values)}f", *values) in engine, name


def test_layer_info_check_sees_a_float_block(plugin_library, tensorrt_rtx, tmp_path):
    """The INT8 check of the layer information fails on a float block (it can fail), and the trace says FLOAT."""
    model = tmp_path / "smb.onnx"
    onnx.save(smb_onnx.make_smb_model(), model)
    r = build_engine(plugin_library, model, tmp_path, SMB_SHAPES, engine=False, layer_info=True)
    assert r["ok"], f"{r.get('error')}\n{_errors(r)}"
    problems = _layer_info_problems(r, "smb0")
    assert any("x (" in p and "is Float, not Int8" in p for p in problems), problems
    assert any("weight" in p and "not Int8" in p for p in problems), problems
    assert r["plugin_trace"] and all(_trace_types(l)["x"] == "FLOAT/LINEAR" for l in r["plugin_trace"])


MALFORMED_INT8 = {
    "missing weight_scales": (dict(drop_attrs=("weight_scales",)),
                              "INT8 scale field(s) 'x_scale', 'feature_scales', 'collect_scales' given without "
                              "'weight_scales' (256 floats"),
    "weight_scales one short": (dict(scale_overrides={"weight_scales": [0.01] * 255}),
                                "field 'weight_scales' must have 256 floats"),
    "collect_scales not C": (dict(scale_overrides={"collect_scales": [0.01] * 32}),
                             "field 'collect_scales' has 32 values but x has C = 64 channels"),
    "zero x_scale": (dict(scale_overrides={"x_scale": 0.0}), "INT8: x_scale must be finite and > 0"),
    "float x with INT8 fields": (dict(float_x=True), "x has type FLOAT but the node has INT8 scale fields"),
    "INT8 x without fields": (dict(drop_attrs=smb_onnx.INT8_SCALE_ATTRS),
                              "x has type INT8 but the node has no INT8 scale fields"),
}


@pytest.mark.parametrize("case", list(MALFORMED_INT8))
def test_malformed_int8_node_fails_with_our_message(plugin_library, tensorrt_rtx, tmp_path, case):
    kwargs, needle = MALFORMED_INT8[case]
    model = tmp_path / "bad_int8.onnx"
    onnx.save(smb_onnx.make_smb_int8_model(**kwargs), model)
    r = build_engine(plugin_library, model, tmp_path, SMB_SHAPES, engine=False)
    assert not r["ok"] and r["stage"] in ("parse", "build"), r.get("stage")
    errors = _errors(r)
    assert needle in errors and "SMSRSparseBlock 'smb0'" in errors, f"expected {needle!r} among:\n{errors}"


MALFORMED = {
    "wrong weight shape": (dict(weight_sparse=(40, 50, 61, 64)),
                           "w1 has shape [3x3x64x59], expected [3x3x64x64]"),
    "wrong channel counts": (dict(dense=(24, 9, 3, 0), sparse=(40, 55, 61, 60), weight_sparse=(40, 55, 61, 64)),
                             "w3 has shape [3x3x64x64], expected [3x3x64x60]"),
    "missing weight": (dict(drop_input="bc"), "expects 8 inputs (x, mask, w0, w1, w2, w3, wc, bc), got 7"),
    "missing middle weight": (dict(drop_input="w2"), "SMSRSparseBlock 'smb0'"),
    "bad mask shape": (dict(mask_channels=2), "mask has shape [?x2x?x?], expected [?x1x?x?]"),
    "three values per attribute": (dict(dense=(24, 9, 3), sparse=(40, 55, 61)),
                                   "field 'dense_channels' must have 4 values (one per layer), got 3"),
    "negative channels": (dict(dense=(24, 9, -3, 0)), "dense_channels[2] = -3 is negative"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_node_fails_with_our_message(plugin_library, tensorrt_rtx, tmp_path, case):
    kwargs, needle = MALFORMED[case]
    model = tmp_path / "bad.onnx"
    onnx.save(smb_onnx.make_smb_model(**kwargs), model)
    r = build_engine(plugin_library, model, tmp_path, SMB_SHAPES, engine=False)
    assert not r["ok"] and r["stage"] in ("parse", "build"), r.get("stage")
    errors = _errors(r)
    if case == "missing middle weight":
        # TensorRT-RTX rejects an empty input itself before asking the plugin; the error must still name the node.
        assert "smb0" in errors, errors
    else:
        assert needle in errors, f"expected {needle!r} among the builder's errors:\n{errors}"


# ------------------------------------------------------------------------------------------------ official x2


@pytest.mark.parametrize("kind", ["deploy", "deploy_fp16"])
def test_official_x2_deploy_engine(plugin_library, tensorrt_rtx, onnx_graphs, tmp_path, kind, record_property):
    """The converter's deploy graph: one plugin layer per SMB, the engine carries each layer's fields."""
    path = Path(onnx_graphs[kind])
    nodes = _smb_nodes(onnx.load(str(path), load_external_data=False))
    assert len(nodes) == 5
    r = build_engine(plugin_library, path, tmp_path, SR_SHAPES)
    assert r["ok"], f"{r.get('error')}\n{_errors(r)}"
    assert sorted(r["plugin_layers"]) == sorted(n.name for n in nodes)
    want = "DataType.HALF" if kind.endswith("fp16") else "DataType.FLOAT"
    assert r["plugin_layer_io_types"] == [[want]] * 5
    engine = (tmp_path / f"{path.stem}.engine").read_bytes()
    assert engine[:4] == b"vtrt" and len(engine) == r["engine_bytes"]
    for n in nodes:  # the serialized fields of every block are in the engine
        for field in ("dense_channels", "sparse_channels"):
            assert struct.pack("<4i", *_ints(n, field)) in engine, (n.name, field)
    record_property("build_seconds", round(r["build_seconds"], 3))
    record_property("engine_bytes", r["engine_bytes"])
    print(f"\n{kind}: TensorRT-RTX {r['tensorrt_rtx']} build {r['build_seconds']:.2f} s, "
          f"engine {r['engine_bytes'] / 1e6:.2f} MB, {len(r['plugin_layers'])} plugin layers of {r['num_layers']}")


def test_official_graph_with_corrupted_node_names_it(plugin_library, tensorrt_rtx, onnx_graphs, tmp_path):
    """Channel counts of one block that disagree with its weights: the error names that node and the weight."""
    model = onnx.load(str(onnx_graphs["deploy"]))
    node = _smb_nodes(model)[2]
    attr = next(a for a in node.attribute if a.name == "dense_channels")
    attr.ints[1] += 1  # 7 -> 8 dense channels in layer 1 of block 2: w1 has 64, the node now claims 65
    path = tmp_path / "corrupted.onnx"
    onnx.save(model, path)
    r = build_engine(plugin_library, path, tmp_path, SR_SHAPES, engine=False)
    errors = _errors(r)
    assert not r["ok"]
    assert f"SMSRSparseBlock '{node.name}': w1 has shape [3x3x64x64], expected [3x3x64x65]" in errors, errors


# ------------------------------------------------------------------------------------------------ dlopen-only tools


def test_autoreg_library_registers_on_dlopen(autoreg_library, tensorrt_rtx, tmp_path):
    """trtexec --staticPlugins / polygraphy --plugins only dlopen the library: the autoreg variant registers itself."""
    model = tmp_path / "smb.onnx"
    onnx.save(smb_onnx.make_smb_model(dtype=np.float16), model)
    r = build_engine(autoreg_library, model, tmp_path, SMB_SHAPES, load="dlopen")
    assert r["ok"] and r["plugin_layers"] == ["smb0"], f"{r.get('error')}\n{_errors(r)}"
    bad = tmp_path / "bad.onnx"
    onnx.save(smb_onnx.make_smb_model(mask_channels=2), bad)
    r = build_engine(autoreg_library, bad, tmp_path, SMB_SHAPES, engine=False, load="dlopen")
    assert "SMSRSparseBlock 'smb0': mask has shape" in _errors(r)  # logged through TensorRT's global logger


def test_autoreg_library_loaded_first_says_why(autoreg_library):
    """Loaded before any TensorRT library: nothing to register with, and it says so (no crash)."""
    proc = _run([sys.executable, "-c", f"import ctypes; ctypes.CDLL({str(autoreg_library)!r})"], timeout=60)
    assert proc.returncode == 0
    assert "loaded before any TensorRT library" in proc.stderr, proc.stderr


def test_polygraphy_convert_with_autoreg_plugin(autoreg_library, tensorrt_rtx, tmp_path):
    """The PLUGIN.md recipe: polygraphy (TensorRT-RTX mode) --plugins, with TensorRT imported first."""
    if importlib.util.find_spec("polygraphy") is None:
        pytest.skip("polygraphy not installed")
    model = tmp_path / "smb.onnx"
    onnx.save(smb_onnx.make_smb_model(), model)
    engine = tmp_path / "smb.engine"
    cmd = [sys.executable, "-c", "import sys, tensorrt_rtx; from polygraphy.tools._main import main; sys.exit(main())",
           "convert", str(model), "--plugins", str(autoreg_library), "-o", str(engine),
           "--trt-min-shapes", "x:[1,64,8,8]", "mask:[1,1,8,8]", "--trt-opt-shapes", "x:[1,64,32,32]",
           "mask:[1,1,32,32]", "--trt-max-shapes", "x:[1,64,64,64]", "mask:[1,1,64,64]"]
    env_cmd = ["env", "POLYGRAPHY_USE_TENSORRT_RTX=1", *cmd]
    proc = _run(env_cmd)
    assert proc.returncode == 0 and engine.is_file(), proc.stdout[-2000:] + proc.stderr[-3000:]
    assert engine.read_bytes()[:4] == b"vtrt"

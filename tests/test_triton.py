"""export-triton: every written config.pbtxt parses as Triton's ModelConfig (tritonclient's model_config_pb2) with the
right I/O, batching and files; the TensorRT model's checks (builder, TensorRT version, profile, several plans); the
triton client's errors that need no server. Serving the models for real: tests/test_triton_server.py."""
from __future__ import annotations

import socket
import subprocess
import sys

from pathlib import Path

import pytest

from engine.errors import ManifestError, UsageError
from engine.manifest import EngineManifest, file_sha256
from engine.triton_repo import export_repository
from helpers import missing_component
from standin_model import build_standin

REPO = Path(__file__).resolve().parents[1]  # `python -m engine` must be this checkout


def _parse(path):
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        missing_component("tritonclient[grpc] is not installed (pip install -e '.[triton]')")
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("tri_models")
    return {"ref": build_standin(d / "ref.onnx"), "deploy": build_standin(d / "dep.onnx", custom_op=True),
            "fp16": build_standin(d / "f16.onnx", fp16=True), "x3": build_standin(d / "x3.onnx", scale=3)}


def _dtype(name):
    from tritonclient.grpc import model_config_pb2
    return model_config_pb2.DataType.Value(name)


def test_python_and_onnxruntime_models(models, tmp_path):
    made = export_repository(tmp_path, name="m", tile=48, onnx_path=models["x3"], max_batch=6, instances=2,
                             queue_delay_us=500, threads=2, log=lambda s: None)
    assert set(made) == {"python", "onnxruntime"}
    py = _parse(tmp_path / "m_py" / "config.pbtxt")
    assert py.name == "m_py" and py.backend == "python" and py.max_batch_size == 6
    assert [(i.name, list(i.dims), i.data_type) for i in py.input] == [("lr", [3, 48, 48], _dtype("TYPE_FP32"))]
    assert [(o.name, list(o.dims)) for o in py.output] == [("sr", [3, 144, 144]), ("masks", [5, 48, 48])]
    assert py.dynamic_batching.max_queue_delay_microseconds == 500
    assert py.instance_group[0].count == 2 and py.instance_group[0].kind == py.instance_group[0].KIND_CPU
    assert py.parameters["onnx_model"].string_value == "model.onnx"
    assert py.parameters["threads"].string_value == "2"
    assert (tmp_path / "m_py" / "1" / "model.py").is_file()
    ort = _parse(tmp_path / "m_ort" / "config.pbtxt")
    assert ort.backend == "onnxruntime" and ort.max_batch_size == 6 and not ort.model_operations.op_library_filename
    # the copied graph takes exactly the configured tile (N free)
    import onnx
    g = onnx.load(str(tmp_path / "m_ort" / "1" / "model.onnx")).graph
    dims = [[d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim] for v in (g.input[0], g.output[0])]
    assert dims == [["N", 3, 48, 48], ["N", 3, 144, 144]]


def test_fp16_graph_types(models, tmp_path):
    export_repository(tmp_path, name="h", tile=32, onnx_path=models["fp16"], log=lambda s: None)
    ort = _parse(tmp_path / "h_ort" / "config.pbtxt")
    assert {t.data_type for t in list(ort.input) + list(ort.output)} == {_dtype("TYPE_FP16")}
    py = _parse(tmp_path / "h_py" / "config.pbtxt")  # the python model casts: FP32 on the wire
    assert {t.data_type for t in list(py.input) + list(py.output)} == {_dtype("TYPE_FP32")}


def test_deploy_graph_names_the_op_library(models, tmp_path, monkeypatch):
    lib = tmp_path / "libsmsr_ort_ops.so"
    lib.write_bytes(b"stand-in library bytes")
    monkeypatch.setenv("SMSR_ORT_OPS_LIB", str(lib))
    export_repository(tmp_path / "repo", name="d", tile=64, onnx_path=models["deploy"], server_root="/srv/models",
                      log=lambda s: None)
    ort = _parse(tmp_path / "repo" / "d_ort" / "config.pbtxt")
    assert list(ort.model_operations.op_library_filename) == ["/srv/models/d_ort/1/libsmsr_ort_ops.so"]
    assert ort.output[0].name == "sr_custom" and list(ort.output[0].dims) == [3, 128, 128]
    for m in ("d_ort", "d_py"):
        assert (tmp_path / "repo" / m / "1" / "libsmsr_ort_ops.so").read_bytes() == lib.read_bytes()


def _engine(tmp_path, name, cc, plugin, *, builder="tensorrt", version="10.14.1.48", max_n=4, graph="deploy",
            hw=(16, 256)):
    e = tmp_path / (name + ".engine")
    e.write_bytes(b"serialized engine " + name.encode())  # Triton reads it, not the exporter
    EngineManifest(scale=2, precision="fp16", graph=graph, builder=builder, builder_version=version,
                   profile={"min": [1, 3, hw[0], hw[0]], "opt": [max_n, 3, hw[0], hw[0]],
                            "max": [max_n, 3, hw[1], hw[1]]},
                   compute_capabilities=cc,
                   plugin_library={"path": str(plugin), "sha256": file_sha256(plugin)} if plugin else None
                   ).save(tmp_path / (e.name + ".json"))
    return e


@pytest.fixture
def plugin(tmp_path):
    p = tmp_path / "libplugin.so"
    p.write_bytes(b"plugin bytes")
    return p


def test_tensorrt_single_plan_and_launch_line(models, tmp_path, plugin):
    e = _engine(tmp_path, "a", ["8.7"], plugin, max_n=4)
    logs = []
    made = export_repository(tmp_path / "repo", name="t", tile=128, engines=[e], onnx_path=models["fp16"],
                             server_trt="10.14.1", log=logs.append)
    assert set(made) == {"python", "onnxruntime", "tensorrt"}
    c = _parse(tmp_path / "repo" / "t_trt" / "config.pbtxt")
    assert c.platform == "tensorrt_plan" and c.max_batch_size == 4  # from the profile, not --max-batch
    assert [(i.name, list(i.dims), i.data_type) for i in c.input] == [("lr", [3, 128, 128], _dtype("TYPE_FP16"))]
    assert [o.name for o in c.output] == ["sr", "masks"] and list(c.output[0].dims) == [3, 256, 256]
    assert c.instance_group[0].kind == c.instance_group[0].KIND_GPU and c.HasField("dynamic_batching")
    assert (tmp_path / "repo" / "t_trt" / "1" / "model.plan").read_bytes() == e.read_bytes()
    assert (tmp_path / "repo" / "t_trt" / "libsmsr_trt_plugin.so").read_bytes() == plugin.read_bytes()
    launch = (tmp_path / "repo" / "LAUNCH.txt").read_text()
    assert "--backend-config=tensorrt,plugins=/models/t_trt/libsmsr_trt_plugin.so" in launch
    assert "LD_PRELOAD=/models/t_trt/libsmsr_trt_plugin.so" in launch
    assert any("--backend-config=tensorrt,plugins=" in s for s in logs)  # printed too


def test_tensorrt_plans_per_compute_capability(tmp_path, plugin):
    a = _engine(tmp_path, "a", ["8.7"], plugin, max_n=8)
    b = _engine(tmp_path, "b", ["9.0", "10.0"], plugin, max_n=2)
    export_repository(tmp_path / "repo", name="t", tile=64, engines=[a, b], log=lambda s: None)
    c = _parse(tmp_path / "repo" / "t_trt" / "config.pbtxt")
    assert dict(c.cc_model_filenames) == {"8.7": "model_sm87.plan", "9.0": "model_sm90.plan",
                                          "10.0": "model_sm100.plan"}
    assert c.max_batch_size == 2  # every plan must take the batch
    assert (tmp_path / "repo" / "t_trt" / "1" / "model_sm100.plan").read_bytes() == b.read_bytes()


@pytest.mark.parametrize("kw, server_trt, tile, match", [
    (dict(version="10.14.1.48"), "11.0.0", 128, "built with tensorrt 10.14.1.48 but this runtime is 11.0.0"),
    (dict(version="10.14.1.48"), "10.13.0", 128, "tensorrt 10.14.1.48"),
    (dict(builder="tensorrt-rtx", version="1.2.0"), None, 128, "standard TensorRT engines only"),
    (dict(hw=(16, 96)), None, 128, "outside the profile"),
])
def test_tensorrt_checks(tmp_path, plugin, kw, server_trt, tile, match):
    e = _engine(tmp_path, "a", ["8.7"], plugin, **kw)
    with pytest.raises((ManifestError, UsageError), match=match):
        export_repository(tmp_path / "repo", name="t", tile=tile, engines=[e], server_trt=server_trt,
                          log=lambda s: None)


def test_tensorrt_plugin_must_be_the_built_one(tmp_path, plugin):
    e = _engine(tmp_path, "a", ["8.7"], plugin)
    plugin.write_bytes(b"another build")
    with pytest.raises(Exception, match="not the one the engine was built with"):
        export_repository(tmp_path / "repo", name="t", tile=64, engines=[e], log=lambda s: None)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_cli_export_and_usage_errors(models, tmp_path):
    r = _cli("export-triton", "-o", str(tmp_path / "r"), "--model", str(models["ref"]), "--tile", "40")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "r" / "smsr_x2_py" / "config.pbtxt").is_file()
    r = _cli("export-triton", "-o", str(tmp_path / "r2"), "--model", str(models["ref"]), "--tile", "33")
    assert r.returncode == 2 and "even" in r.stderr and "Traceback" not in r.stderr
    r = _cli("export-triton", "-o", str(tmp_path / "r3"))
    assert r.returncode == 2 and "--model" in r.stderr


def test_client_needs_url_and_model(tmp_path):
    img = tmp_path / "x.png"
    r = _cli("upscale", str(img), "-o", str(tmp_path / "o.png"), "--backend", "triton", "--triton-model", "m")
    assert r.returncode == 2 and "--url" in r.stderr


def test_client_server_unreachable(tmp_path):
    pytest.importorskip("tritonclient.grpc")
    from PIL import Image
    img = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(img)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    r = _cli("upscale", str(img), "-o", str(tmp_path / "o.png"), "--backend", "triton", "--url",
             "127.0.0.1:%d" % port, "--triton-model", "m", "--triton-timeout", "5")
    assert r.returncode == 5, r.stderr
    assert "unreachable" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.png").exists()



def _config(**over):
    cfg = {"max_batch_size": 8,
           "input": [{"name": "lr", "data_type": "TYPE_FP32", "dims": ["3", "64", "64"]}],
           "output": [{"name": "sr", "data_type": "TYPE_FP32", "dims": ["3", "128", "128"]},
                      {"name": "masks", "data_type": "TYPE_FP32", "dims": ["5", "64", "64"]}]}
    cfg.update(over)
    return cfg


def _read(cfg):
    pytest.importorskip("tritonclient.grpc")
    from engine.backends.triton import TritonBackend
    be = TritonBackend.__new__(TritonBackend)  # the config check alone, no server
    be.model, be.url = "m", "h:1"
    be._read_config(cfg)
    return be


def test_client_reads_served_config():
    be = _read(_config())
    assert (be.scale, be.tile_hw, be.has_masks, be.input_name, be.precision) == (2, (64, 64), True, "lr", "fp32")
    assert be.limits.min_hw == be.limits.max_hw == (64, 64)


@pytest.mark.parametrize("over, match", [
    (dict(max_batch_size=0), "max_batch_size is 0"),
    (dict(input=[{"name": "lr", "data_type": "TYPE_FP32", "dims": ["-1", "-1", "3"]}]), "expected fixed 3×T×T"),
    (dict(input=[{"name": "lr", "data_type": "TYPE_UINT8", "dims": ["3", "64", "64"]}]), "TYPE_UINT8"),
    (dict(output=[{"name": "sr", "data_type": "TYPE_FP32", "dims": ["3", "100", "128"]}]), "not an integer upscale"),
    (dict(input=[]), "expected 1 input"),
])
def test_client_rejects_mismatched_config(over, match):
    from engine.errors import ModelError
    with pytest.raises(ModelError, match=match):
        _read(_config(**over))


@pytest.mark.parametrize("plugin_trt, server_trt, match", [
    ("11.0.0", None, "built for TensorRT 11.0.0 but the engine"),
    ("10.14.1", "11.1.0", None),  # caught first by the engine check (same version needed)
    ("10.14.1", "10.14.1", ""),
])
def test_tensorrt_plugin_version_from_sidecar(tmp_path, plugin, plugin_trt, server_trt, match):
    from engine.errors import EngineError
    (tmp_path / (plugin.name + ".archs")).write_text(
        '{"sass": ["sm_87"], "ptx": [], "cuda": "13.0", "tensorrt": "%s"}' % plugin_trt)
    e = _engine(tmp_path, "a", ["8.7"], plugin)
    run = lambda: export_repository(tmp_path / "repo", name="t", tile=64, engines=[e],  # noqa: E731
                                    server_trt=server_trt, log=lambda s: None)
    if match == "":
        run()
        assert (tmp_path / "repo" / "t_trt" / "libsmsr_trt_plugin.so").is_file()
    else:
        with pytest.raises(EngineError, match=match or "11.1.0"):
            run()

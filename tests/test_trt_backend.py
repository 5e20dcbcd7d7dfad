"""TensorRT backend: manifest validation and compatibility rules, plugin resolution (CPU), and the backend itself
(marked gpu + tensorrt; skipped with a reason unless TensorRT, cuda-python and an NVIDIA GPU are present)."""
from __future__ import annotations

import hashlib
import importlib.util
import json

import numpy as np
import pytest

from engine.errors import BackendRunError, ManifestError, PluginLibraryError, ScaleMismatchError
from engine.manifest import (EngineManifest, check_compatible, find_manifest, load_manifest, manifest_path_for,
                             resolve_plugin_library)


def manifest_dict(**over):
    d = {"scale": 2, "precision": "fp16", "graph": "reference", "builder": "tensorrt", "builder_version": "10.14.1.48",
         "compute_capabilities": ["8.7"], "profile": {"min": [1, 3, 8, 8], "opt": [1, 3, 128, 128],
                                                       "max": [4, 3, 512, 512]},
         "onnx_sha256": "a" * 64, "checkpoint_sha256": "b" * 64, "created": "2026-01-01T00:00:00Z"}
    d.update(over)
    return d


def test_manifest_round_trip(tmp_path):
    m = EngineManifest.from_dict(manifest_dict(future_key=[1, 2]))
    p = m.save(manifest_path_for(tmp_path / "e.engine"))
    assert p.name == "e.engine.json" and find_manifest(tmp_path / "e.engine") == p
    back = load_manifest(p)
    assert back == m and back.extra == {"future_key": [1, 2]} and back.source == p
    assert back.min_shape == (1, 8, 8) and back.max_shape == (4, 512, 512)
    assert json.loads(p.read_text())["future_key"] == [1, 2]


@pytest.mark.parametrize("change,msg", [
    ({"scale": 0}, "scale"),
    ({"precision": "fp8"}, "precision"),
    ({"graph": "other"}, "graph"),
    ({"builder": "onnxruntime"}, "builder"),
    ({"builder_version": "latest"}, "builder_version"),
    ({"compute_capabilities": None, "gpu_name": None}, "compute_capabilities"),
    ({"compute_capabilities": ["sm87"]}, "compute_capabilities"),
    ({"profile": {"min": [1, 3, 8, 8], "max": [1, 3, 8, 8]}}, "profile"),
    ({"profile": {"min": [1, 3, 64, 8], "opt": [1, 3, 32, 8], "max": [1, 3, 128, 8]}}, "min <= opt <= max"),
    ({"profile": {"min": [1, 1, 8, 8], "opt": [1, 1, 8, 8], "max": [1, 1, 8, 8]}}, "[N, 3, H, W]"),
    ({"graph": "deploy"}, "plugin_library"),
])
def test_manifest_validation(change, msg):
    with pytest.raises(ManifestError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        EngineManifest.from_dict(manifest_dict(**change))


def test_manifest_missing_keys_and_bad_json(tmp_path):
    d = manifest_dict()
    del d["profile"], d["scale"]
    with pytest.raises(ManifestError, match="missing key.*scale.*profile|missing key.*profile"):
        EngineManifest.from_dict(d)
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(ManifestError, match="unreadable"):
        load_manifest(p)
    with pytest.raises(ManifestError, match="not found"):
        load_manifest(tmp_path / "none.json")


def test_check_compatible_rules():
    m = EngineManifest.from_dict(manifest_dict())
    check_compatible(m, "10.14.1.48", "8.7", 2, runtime_builder="tensorrt")
    check_compatible(m, "10.14.1", None, None)  # unknown values are not checked
    with pytest.raises(ScaleMismatchError, match="x2.*x4"):
        check_compatible(m, "10.14.1.48", "8.7", 4)
    with pytest.raises(ManifestError, match="10.14.1.48.*10.3.0"):
        check_compatible(m, "10.3.0.26", "8.7", 2)
    with pytest.raises(ManifestError, match="compute capability 8.7.*9.0"):
        check_compatible(m, "10.14.1.48", "9.0", 2, gpu_name="H100")
    with pytest.raises(ManifestError, match="tensorrt-rtx"):
        check_compatible(m, "10.14.1.48", "8.7", 2, runtime_builder="tensorrt-rtx")
    vc = EngineManifest.from_dict(manifest_dict(version_compatible=True, hardware_compatibility="ampere+"))
    check_compatible(vc, "10.15.0", "9.0", 2)  # newer runtime of the same major, any Ampere+ GPU
    with pytest.raises(ManifestError):
        check_compatible(vc, "10.13.0", "9.0", 2)
    with pytest.raises(ManifestError):
        check_compatible(vc, "10.15.0", "7.5", 2)
    rtx = EngineManifest.from_dict(manifest_dict(builder="tensorrt-rtx", builder_version="1.7.1.116",
                                                 compute_capabilities=["8.6", "8.9", "12.0"]))
    check_compatible(rtx, "1.8.0", "8.9", 2)
    with pytest.raises(ManifestError, match="1.7.1.116"):
        check_compatible(rtx, "2.0.0", "8.9", 2)
    by_name = EngineManifest.from_dict(manifest_dict(compute_capabilities=None, gpu_name="Orin"))
    check_compatible(by_name, "10.14.1.48", None, 2, gpu_name="Orin")
    with pytest.raises(ManifestError, match="Orin"):
        check_compatible(by_name, "10.14.1.48", None, 2, gpu_name="RTX 4090")


def test_resolve_plugin_library(tmp_path, monkeypatch):
    monkeypatch.delenv("SMSR_PLUGIN_LIBRARY", raising=False)
    lib = tmp_path / "libplugin.so"
    lib.write_bytes(b"plugin bytes")
    sha = hashlib.sha256(b"plugin bytes").hexdigest()
    m = EngineManifest.from_dict(manifest_dict(graph="deploy", plugin_library={"path": "libplugin.so", "sha256": sha}),
                                 source=tmp_path / "e.engine.json")
    assert resolve_plugin_library(m) == tmp_path / "libplugin.so"  # relative to the manifest
    lib.write_bytes(b"rebuilt")
    with pytest.raises(PluginLibraryError, match="not the one the engine was built with"):
        resolve_plugin_library(m)
    assert resolve_plugin_library(m, verify_sha256=False) == lib
    lib.unlink()
    with pytest.raises(PluginLibraryError, match="not found"):
        resolve_plugin_library(m)
    other = tmp_path / "elsewhere.so"
    other.write_bytes(b"plugin bytes")
    monkeypatch.setenv("SMSR_PLUGIN_LIBRARY", str(other))
    assert resolve_plugin_library(m) == other


# --- the backend on a GPU -------------------------------------------------------------------------------------------
def _gpu_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "needs TensorRT's Python runtime (module tensorrt), not installable on this CPU-only machine"
    if importlib.util.find_spec("cuda") is None:
        return "needs cuda-python (pip install cuda-python)"
    try:
        from engine.backends.tensorrt import gpu_info, import_cudart
        gpu_info(import_cudart())
    except Exception as e:  # noqa: BLE001 - any failure means no usable GPU
        return "needs an NVIDIA GPU (%s)" % e
    return None


_REASON = _gpu_reason()


def _build_engine(onnx_path, out_dir, profile, fp16=False):
    """Standard TensorRT 10 build of a stand-in graph + a manifest (what build_engine.py does for real graphs)."""
    import tensorrt as trt
    from engine.backends.tensorrt import gpu_info, import_cudart
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes()), [parser.get_error(i) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    prof = builder.create_optimization_profile()
    prof.set_shape("lr", profile["min"], profile["opt"], profile["max"])
    config.add_optimization_profile(prof)
    plan = builder.build_serialized_network(network, config)
    eng = out_dir / "standin.engine"
    eng.write_bytes(bytes(plan))
    cc, name = gpu_info(import_cudart())
    EngineManifest(scale=2, precision="fp32", graph="reference", builder="tensorrt", builder_version=trt.__version__,
                   compute_capabilities=[cc], gpu_name=name, profile=profile).save(manifest_path_for(eng))
    return eng


@pytest.fixture(scope="module")
def trt_engine(tmp_path_factory):
    if _REASON:
        pytest.skip(_REASON)
    from standin_model import build_standin
    d = tmp_path_factory.mktemp("trt")
    onnx_path = build_standin(d / "standin.onnx")
    profile = {"min": [1, 3, 8, 8], "opt": [2, 3, 32, 32], "max": [4, 3, 64, 64]}
    return onnx_path, _build_engine(onnx_path, d, profile)


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(_REASON is not None, reason=_REASON or "")
def test_trt_matches_ort_and_cuda_graphs_replay(trt_engine):
    from engine.backends.base import create_backend
    from standin_model import reference_upscale
    onnx_path, eng = trt_engine
    logs = []
    be = create_backend("auto", engine=eng, model=onnx_path, log=logs.append)
    assert be.name == "tensorrt" and "backend: tensorrt" in logs[0]
    x = np.random.default_rng(0).uniform(0, 255, (2, 3, 21, 33)).astype(np.float32)
    want = reference_upscale(onnx_path, x)
    outs = [be.run(x, want_masks=True) for _ in range(4)]  # 1st plain, 2nd captured, then replayed
    for sr, masks in outs:
        assert sr.shape == want.shape and masks.shape == (2, 5, 21, 33)
        np.testing.assert_allclose(sr, want, atol=2e-2)
    assert be.use_cuda_graphs and len(be._graphs) == 1
    np.testing.assert_array_equal(outs[1][0], outs[3][0])
    be.close()


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(_REASON is not None, reason=_REASON or "")
def test_trt_pipeline_pads_and_tiles_to_profile(trt_engine):
    from engine.backends.tensorrt import TensorRTBackend
    from engine.pipeline import Upscaler
    from standin_model import reference_upscale
    onnx_path, eng = trt_engine
    be = TensorRTBackend(eng)
    assert be.limits.min_hw == (8, 8) and be.limits.max_hw == (64, 64) and be.limits.max_batch == 4
    small = np.random.default_rng(1).uniform(0, 255, (3, 5, 6)).astype(np.float32)
    res = Upscaler(be).upscale(small)  # padded up to the profile minimum, cropped back
    assert res.sr.shape == (3, 10, 12)
    big = np.random.default_rng(2).uniform(0, 255, (3, 150, 97)).astype(np.float32)
    res = Upscaler(be, overlap=12, batch=4).upscale(big)  # above the profile maximum: tiled
    assert res.tile is not None and res.tiles > 1
    np.testing.assert_allclose(res.sr, reference_upscale(onnx_path, big[None])[0], atol=2e-2)
    be.close()


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.skipif(_REASON is not None, reason=_REASON or "")
def test_trt_manifest_mismatch_is_reported(trt_engine, tmp_path):
    from engine.backends.tensorrt import TensorRTBackend
    _, eng = trt_engine
    copy = tmp_path / "copy.engine"
    copy.write_bytes(eng.read_bytes())
    d = json.loads(manifest_path_for(eng).read_text())
    d["compute_capabilities"] = ["1.0"]
    manifest_path_for(copy).write_text(json.dumps(d))
    with pytest.raises(ManifestError, match="compute capability 1.0"):
        TensorRTBackend(copy)


# --- the backend's logic on the CPU, against fakes of tensorrt and cuda-python ----------------------------------------
# The fakes implement only the calls the backend makes, with "device" memory in host RAM and a stream that can record
# work into a "CUDA graph" instead of running it. They check data flow (pinned staging, async copies, shapes baked
# into captured graphs, fallbacks), not TensorRT itself: the GPU tests above do that on a machine with one.
import ctypes  # noqa: E402
import enum  # noqa: E402
import types  # noqa: E402


class _Err(enum.Enum):
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2
    cudaErrorStreamCaptureUnsupported = 900


class FakeCudart:
    cudaError_t = _Err
    cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    cudaStreamCaptureMode = types.SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)

    def __init__(self, max_alloc=1 << 40, capture_ok=True):
        self.mem, self.max_alloc, self.capture_ok = {}, max_alloc, capture_ok
        self.capturing, self.recorded, self.graphs = None, [], {}
        self.launches = self.captures = 0
        self.pinned = set()

    def cudaGetDeviceCount(self):
        return _Err.cudaSuccess, 1

    def cudaGetDevice(self):
        return _Err.cudaSuccess, 0

    def cudaGetDeviceProperties(self, dev):
        return _Err.cudaSuccess, types.SimpleNamespace(major=8, minor=7, name=b"Fake Orin")

    def _alloc(self, n):
        if n > self.max_alloc:
            return _Err.cudaErrorMemoryAllocation, 0
        buf = (ctypes.c_byte * n)()
        self.mem[ctypes.addressof(buf)] = buf
        return _Err.cudaSuccess, ctypes.addressof(buf)

    def cudaMalloc(self, n):
        return self._alloc(n)

    def cudaMallocHost(self, n):
        err, p = self._alloc(n)
        self.pinned.add(p)
        return err, p

    def cudaFree(self, p):
        self.mem.pop(p)
        return (_Err.cudaSuccess,)

    def cudaFreeHost(self, p):
        self.pinned.discard(p)
        return self.cudaFree(p)

    def cudaStreamCreate(self):
        return _Err.cudaSuccess, 77

    def cudaStreamDestroy(self, s):
        return (_Err.cudaSuccess,)

    def cudaStreamSynchronize(self, s):
        return (_Err.cudaSuccess,)

    def cudaGetLastError(self):
        return (_Err.cudaSuccess,)

    def submit(self, op):
        """Run `op` now, or record it while the stream is being captured."""
        if self.capturing is not None:
            self.capturing.append(op)
        else:
            op()

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        assert stream == 77
        host = src if kind == 1 else dst
        assert int(host) in self.pinned, "async copies must use pinned host memory"
        self.submit(lambda: ctypes.memmove(int(dst), int(src), n))
        return (_Err.cudaSuccess,)

    def cudaStreamBeginCapture(self, s, mode):
        if not self.capture_ok:
            return (_Err.cudaErrorStreamCaptureUnsupported,)
        self.capturing = []
        return (_Err.cudaSuccess,)

    def cudaStreamEndCapture(self, s):
        ops, self.capturing = self.capturing, None
        self.captures += 1
        gid = len(self.graphs) + 1
        self.graphs[gid] = ops
        return _Err.cudaSuccess, gid

    def cudaGraphInstantiate(self, g, flags):
        return _Err.cudaSuccess, g

    def cudaGraphLaunch(self, exe, s):
        self.launches += 1
        for op in self.graphs[exe]:
            op()
        return (_Err.cudaSuccess,)

    def cudaGraphExecDestroy(self, e):
        return (_Err.cudaSuccess,)

    def cudaGraphDestroy(self, g):
        self.graphs.pop(g, None)
        return (_Err.cudaSuccess,)


def make_fake_trt(onnx_path, profile, version="10.14.1.48"):
    """A tensorrt module whose engine runs the stand-in ONNX graph with ONNX Runtime."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    IOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    cuda_holder = {}

    class Context:
        def __init__(self):
            self.shape, self.addr = None, {}
            self.dirty = True  # set_input_shape since the last ordinary (uncaptured) enqueue
            trt.contexts.append(self)

        def set_input_shape(self, name, shape):
            self.shape = tuple(shape)
            self.dirty = True
            return True

        def get_tensor_shape(self, name):
            n, _, h, w = self.shape
            return {"lr": self.shape, "sr": (n, 3, 2 * h, 2 * w), "masks": (n, 5, h, w)}[name]

        def set_tensor_address(self, name, ptr):
            self.addr[name] = ptr

        def execute_async_v3(self, stream):
            capturing = cuda_holder["cudart"].capturing is not None
            if capturing and self.dirty:  # TensorRT needs one ordinary enqueue after a shape change first
                trt.violations.append("captured right after set_input_shape%s" % (self.shape,))
            if capturing and trt.fail_in_capture:
                return False
            if not capturing:
                self.dirty = False
            shapes = {k: self.get_tensor_shape(k) for k in ("lr", "sr", "masks")}  # baked in when captured
            addr = dict(self.addr)

            def view(name):
                n = int(np.prod(shapes[name]))
                return np.frombuffer((ctypes.c_float * n).from_address(addr[name]), np.float32).reshape(shapes[name])

            def op():
                sr, masks = sess.run(["sr", "masks"], {"lr": view("lr").copy()})
                view("sr")[...] = sr
                view("masks")[...] = masks
            cuda_holder["cudart"].submit(op)
            return True

    class Engine:
        num_io_tensors = 3

        def get_tensor_name(self, i):
            return ["lr", "sr", "masks"][i]

        def get_tensor_mode(self, name):
            return IOMode.INPUT if name == "lr" else IOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return "float32"

        def get_tensor_profile_shape(self, name, idx):
            return profile["min"], profile["opt"], profile["max"]

        def create_execution_context(self):
            return Context()

    trt = types.SimpleNamespace(
        __version__=version, TensorIOMode=IOMode, nptype=lambda dt: np.float32,
        Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None}),
        Runtime=lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda data: Engine()),
        loaded=[], contexts=[], violations=[], fail_in_capture=False)
    trt.get_plugin_registry = lambda: types.SimpleNamespace(load_library=trt.loaded.append)
    return trt, cuda_holder


@pytest.fixture
def fake_gpu(tmp_path, monkeypatch):
    from engine.backends import tensorrt as trtb
    from standin_model import build_standin
    onnx_path = build_standin(tmp_path / "standin.onnx")
    profile = {"min": [1, 3, 8, 8], "opt": [2, 3, 32, 32], "max": [4, 3, 64, 64]}
    trt, holder = make_fake_trt(onnx_path, profile)
    holder["cudart"] = FakeCudart()
    monkeypatch.setattr(trtb, "import_tensorrt", lambda builder: (trt, "tensorrt"))
    monkeypatch.setattr(trtb, "import_cudart", lambda: holder["cudart"])
    eng = tmp_path / "standin.engine"
    eng.write_bytes(b"serialized")
    lib = tmp_path / "libplugin.so"
    lib.write_bytes(b"plugin")
    EngineManifest(scale=2, precision="fp32", graph="deploy", builder="tensorrt", builder_version="10.14.1.48",
                   compute_capabilities=["8.7"], profile=profile,
                   plugin_library={"path": "libplugin.so", "sha256": hashlib.sha256(b"plugin").hexdigest()}
                   ).save(manifest_path_for(eng))
    return types.SimpleNamespace(onnx=onnx_path, engine=eng, trt=trt, holder=holder, lib=lib, profile=profile)


def test_fake_gpu_run_graph_capture_and_replay(fake_gpu):
    from engine.backends.tensorrt import TensorRTBackend
    from standin_model import reference_upscale
    be = TensorRTBackend(fake_gpu.engine)
    cud = fake_gpu.holder["cudart"]
    assert fake_gpu.trt.loaded == [str(fake_gpu.lib)]  # plugin loaded before deserialising
    assert be.scale == 2 and be.graph == "deploy" and be.limits.max_hw == (64, 64) and be.limits.max_batch == 4
    rng = np.random.default_rng(0)
    xa = rng.uniform(0, 255, (2, 3, 21, 33)).astype(np.float32)
    xb = rng.uniform(0, 255, (1, 3, 16, 16)).astype(np.float32)
    # After every shape change one ordinary enqueue + sync runs first; only then is a shape captured or its graph
    # replayed: A, A (captured), B, A (ordinary: the context was set to B), A (replayed), B, B (captured), B (replay).
    plan = [(xa, 0, 0), (xa, 1, 1), (xb, 1, 1), (xa, 1, 1), (xa, 1, 2), (xb, 1, 2), (xb, 2, 3), (xb, 2, 4)]
    for x, captures, launches in plan:
        sr, masks = be.run(x, want_masks=True)
        np.testing.assert_allclose(sr, reference_upscale(fake_gpu.onnx, x), atol=1e-3)
        assert masks.shape == (x.shape[0], 5) + x.shape[2:]
        assert (cud.captures, cud.launches) == (captures, launches)
    assert fake_gpu.trt.violations == []
    xa2 = rng.uniform(0, 255, xa.shape).astype(np.float32)
    np.testing.assert_allclose(be.run(xa2)[0], reference_upscale(fake_gpu.onnx, xa2), atol=1e-3)
    np.testing.assert_allclose(be.run(xa2)[0], reference_upscale(fake_gpu.onnx, xa2), atol=1e-3)  # replayed
    assert cud.launches == 5 and fake_gpu.trt.violations == []
    with pytest.raises(BackendRunError, match="outside the engine profile"):
        be.run(np.zeros((1, 3, 4, 4), np.float32))
    be.close()
    assert cud.mem == {}  # every device and pinned buffer freed


def test_fake_gpu_capture_failure_falls_back(fake_gpu):
    from engine.backends.tensorrt import TensorRTBackend
    from standin_model import reference_upscale
    fake_gpu.holder["cudart"].capture_ok = False
    be = TensorRTBackend(fake_gpu.engine)
    x = np.random.default_rng(1).uniform(0, 255, (1, 3, 12, 10)).astype(np.float32)
    for _ in range(3):
        np.testing.assert_allclose(be.run(x)[0], reference_upscale(fake_gpu.onnx, x), atol=1e-3)
    assert not be.use_cuda_graphs


def test_fake_gpu_failure_during_capture_falls_back_per_shape(fake_gpu):
    """execute_async_v3 returning False inside a capture: the capture is ended and discarded, the call still gives
    the right result, and that shape is never captured again; other shapes still are."""
    from engine.backends.tensorrt import TensorRTBackend
    from standin_model import reference_upscale
    cud = fake_gpu.holder["cudart"]
    be = TensorRTBackend(fake_gpu.engine)
    rng = np.random.default_rng(2)
    xa = rng.uniform(0, 255, (1, 3, 12, 10)).astype(np.float32)
    xb = rng.uniform(0, 255, (1, 3, 14, 10)).astype(np.float32)
    fake_gpu.trt.fail_in_capture = True
    for _ in range(4):
        np.testing.assert_allclose(be.run(xa)[0], reference_upscale(fake_gpu.onnx, xa), atol=1e-3)
    assert cud.capturing is None  # the failed capture was ended
    assert cud.captures == 1 and cud.launches == 0 and be._graphs == {}
    assert (1, 3, 12, 10) in be._capture_failed and be.use_cuda_graphs
    fake_gpu.trt.fail_in_capture = False
    for _ in range(3):
        np.testing.assert_allclose(be.run(xb)[0], reference_upscale(fake_gpu.onnx, xb), atol=1e-3)
    assert cud.captures == 2 and cud.launches == 2 and list(be._graphs) == [(1, 3, 14, 10)]
    be.close()


@pytest.mark.parametrize("capturable,captures", [(None, 0), (False, 0), (True, 1)])
def test_fake_gpu_rtx_captures_only_when_capturable(fake_gpu, monkeypatch, capturable, captures):
    """TensorRT-RTX: capture only when IExecutionContext.is_stream_capturable(stream) says so; absent API: never."""
    from engine.backends import tensorrt as trtb
    from standin_model import reference_upscale
    trt = fake_gpu.trt
    trt.__version__ = "1.7.1.116"
    monkeypatch.setattr(trtb, "import_tensorrt", lambda builder: (trt, "tensorrt-rtx"))
    d = json.loads(manifest_path_for(fake_gpu.engine).read_text())
    d.update(builder="tensorrt-rtx", builder_version="1.7.1.116")
    manifest_path_for(fake_gpu.engine).write_text(json.dumps(d))
    be = trtb.TensorRTBackend(fake_gpu.engine)
    asked = []
    if capturable is not None:
        be.context.is_stream_capturable = lambda stream: asked.append(stream) or capturable
    x = np.random.default_rng(3).uniform(0, 255, (1, 3, 16, 16)).astype(np.float32)
    for _ in range(3):
        np.testing.assert_allclose(be.run(x)[0], reference_upscale(fake_gpu.onnx, x), atol=1e-3)
    assert fake_gpu.holder["cudart"].captures == captures
    assert asked == ([] if capturable is None else [77] * len(asked)) and (capturable is None or asked)
    be.close()


def test_fake_gpu_pipeline_pads_and_tiles(fake_gpu):
    from engine.backends.base import create_backend
    from engine.pipeline import Upscaler
    from standin_model import reference_upscale
    logs = []
    be = create_backend("auto", engine=fake_gpu.engine, model=fake_gpu.onnx, log=logs.append)
    assert be.name == "tensorrt" and logs[0].startswith("backend: tensorrt")
    small = np.random.default_rng(1).uniform(0, 255, (3, 5, 6)).astype(np.float32)
    assert Upscaler(be).upscale(small).sr.shape == (3, 10, 12)  # padded to the profile minimum, cropped back
    big = np.random.default_rng(2).uniform(0, 255, (3, 150, 97)).astype(np.float32)
    res = Upscaler(be, overlap=12, batch=4).upscale(big)  # above the profile maximum: tiled
    assert res.tile is not None and res.tiles > 1
    np.testing.assert_allclose(res.sr, reference_upscale(fake_gpu.onnx, big[None])[0], atol=1e-2)


def test_fake_gpu_mismatches(fake_gpu, monkeypatch):
    from engine.backends.base import create_backend
    from engine.errors import OutOfMemoryError
    d = json.loads(manifest_path_for(fake_gpu.engine).read_text())
    d["compute_capabilities"] = ["9.0"]
    manifest_path_for(fake_gpu.engine).write_text(json.dumps(d))
    with pytest.raises(ManifestError, match="8.7"):
        create_backend("tensorrt", engine=fake_gpu.engine)
    d["compute_capabilities"], d["builder_version"] = ["8.7"], "10.3.0.26"
    manifest_path_for(fake_gpu.engine).write_text(json.dumps(d))
    with pytest.raises(ManifestError, match="10.3.0.26"):
        create_backend("tensorrt", engine=fake_gpu.engine)
    d["builder_version"] = "10.14.1.48"
    manifest_path_for(fake_gpu.engine).write_text(json.dumps(d))
    fake_gpu.holder["cudart"].max_alloc = 1000  # buffers for the profile maximum do not fit
    with pytest.raises(OutOfMemoryError):
        create_backend("tensorrt", engine=fake_gpu.engine)

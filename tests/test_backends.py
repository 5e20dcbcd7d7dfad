"""Backends: the factory and auto-selection, ONNX Runtime (fp32/fp16, metadata, masks), PyTorch reference, and
agreement of the real reference/deploy graphs with the PyTorch model where weights are present."""
from __future__ import annotations

import numpy as np
import pytest

from engine.backends.base import create_backend
from engine.backends.onnxruntime import OrtBackend, is_oom_message
from engine.errors import BackendUnavailableError, ModelError, UsageError
from engine.masks_viz import render_masks
from standin_model import build_standin, reference_upscale


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    d = tmp_path_factory.mktemp("standins")
    return {
        "fp32": build_standin(d / "s32.onnx"),
        "fp16": build_standin(d / "s16.onnx", fp16=True),
        "x3_nometa": build_standin(d / "s3.onnx", scale=3, metadata=False),
        "nomasks": build_standin(d / "snm.onnx", with_masks=False),
    }


def test_auto_picks_ort_and_says_so(standins):
    logs = []
    be = create_backend("auto", model=standins["fp32"], log=logs.append)
    assert be.name == "ort-cpu" and be.scale == 2 and be.has_masks and be.graph == "reference"
    assert logs and logs[0].startswith("backend: ort-cpu") and "auto" in logs[0]


def test_ort_run_shapes_and_values(standins):
    be = OrtBackend(standins["fp32"], device="cpu")
    x = np.random.default_rng(0).uniform(0, 255, (2, 3, 7, 11)).astype(np.float32)
    sr, masks = be.run(x, want_masks=True)
    assert sr.shape == (2, 3, 14, 22) and sr.dtype == np.float32
    assert masks.shape == (2, 5, 7, 11) and set(np.unique(masks)) <= {0.0, 1.0}
    np.testing.assert_allclose(sr, reference_upscale(standins["fp32"], x), atol=1e-4)
    assert be.run(x)[1] is None  # masks only when asked


def test_fp16_graph_is_fed_half(standins):
    be = OrtBackend(standins["fp16"], device="cpu")
    assert be.input_dtype == np.float16 and be.precision == "fp16"
    x = np.random.default_rng(1).uniform(0, 255, (1, 3, 9, 9)).astype(np.float32)
    sr, _ = be.run(x)
    assert sr.dtype == np.float32
    ref = OrtBackend(standins["fp32"], device="cpu").run(x)[0]
    assert np.abs(sr - ref).max() < 1.0  # same weights, half precision


def test_scale_probed_without_metadata(standins):
    be = OrtBackend(standins["x3_nometa"], device="cpu")
    assert be.scale == 3 and be.graph == "reference"


def test_no_masks_output(standins):
    be = OrtBackend(standins["nomasks"], device="cpu")
    assert not be.has_masks
    assert be.run(np.zeros((1, 3, 4, 4), np.float32), want_masks=True)[1] is None


def test_factory_errors(standins, tmp_path):
    with pytest.raises(UsageError, match="unknown backend"):
        create_backend("magic", model=standins["fp32"])
    with pytest.raises(UsageError, match="--engine"):
        create_backend("auto")
    with pytest.raises(UsageError, match="--engine"):
        create_backend("tensorrt", model=standins["fp32"])
    with pytest.raises(ModelError, match="not found"):
        create_backend("ort", model=tmp_path / "missing.onnx")


def test_ort_cuda_unavailable_is_reported(standins):
    import onnxruntime as ort
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has the CUDA provider")
    with pytest.raises(BackendUnavailableError, match="CUDA provider"):
        create_backend("ort-cuda", model=standins["fp32"])


def test_oom_messages():
    assert is_oom_message("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Failed to allocate memory for requested "
                          "buffer of size 123")
    assert is_oom_message("CUDA failure 2: out of memory")
    assert not is_oom_message("Invalid input name: x")


def test_render_masks_layout():
    rgb = np.random.default_rng(0).uniform(0, 255, (30, 40, 3)).astype(np.float32)
    masks = np.zeros((5, 30, 40), np.float32)
    masks[2, :15] = 1
    img = render_masks(rgb, masks)
    zoom = -(-256 // 40)
    assert img.mode == "RGB" and img.size[0] == 3 * 40 * zoom + 4
    assert img.size[1] > 2 * 30 * zoom + 2 + 30  # the legend strip below the panels
    a = np.asarray(img).astype(int)
    p2 = a[:30 * zoom, 2 * (40 * zoom + 2):]  # block 2's panel (third): tinted where the mask is on
    assert p2[20 * zoom:, :, 0].mean() < p2[: 12 * zoom, :, 0].mean() - 50
    from engine.masks_viz import panel_labels
    assert [t.split(":")[0] for t in panel_labels(masks)[:5]] == ["block %d" % b for b in range(5)]  # as summary


# --- the real graphs (exported by the lead's converter from ../shared weights) ------------------------------------
@pytest.fixture(scope="module")
def lr_image(set5_lr_images):
    img = set5_lr_images["bird"][:48, :45]  # odd width on purpose
    return np.ascontiguousarray(img.astype(np.float32).transpose(2, 0, 1))[None]


def test_reference_graph_matches_pytorch(onnx_graphs, official_weights, lr_image):
    pytest.importorskip("torch")
    ref = create_backend("ort", model=onnx_graphs["reference"])
    torch_be = create_backend("torch", model=official_weights, scale=2)
    a, ma = ref.run(lr_image, want_masks=True)
    b, mb = torch_be.run(lr_image, want_masks=True)
    assert a.shape == b.shape == (1, 3, 96, 90)
    assert np.abs(a - b).max() < 1e-2
    assert ma.shape == mb.shape == (1, 5, 48, 45)
    assert np.mean(ma != mb) < 1e-3


def test_deploy_graph_matches_reference(onnx_graphs, lr_image):
    from helpers import missing_component
    from engine.errors import PluginLibraryError
    try:
        dep = create_backend("ort", model=onnx_graphs["deploy"])
    except PluginLibraryError as e:
        missing_component("ONNX Runtime custom-op library not available: %s" % e)
    assert dep.graph == "deploy" and dep.custom_op_library
    ref = create_backend("ort", model=onnx_graphs["reference"])
    a, ma = ref.run(lr_image, want_masks=True)
    b, mb = dep.run(lr_image, want_masks=True)
    assert np.abs(a - b).max() < 1e-2
    assert np.mean(ma != mb) < 1e-3


def test_runtime_imports_no_torch_or_tensorrt():
    import subprocess
    import sys
    code = ("import sys, engine.cli, engine.pipeline, engine.backends.onnxruntime, engine.backends.tensorrt, "
            "engine.image_io, engine.masks_viz; "
            "bad = [m for m in ('torch', 'tensorrt', 'tensorrt_rtx', 'cuda') if m in sys.modules]; "
            "sys.exit('imported at module level: %s' % bad if bad else 0)")
    from pathlib import Path
    r = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def _fix_input(path, dims):
    import onnx
    m = onnx.load(str(path))
    for d, v in zip(m.graph.input[0].type.tensor_type.shape.dim, dims):
        if isinstance(v, int):
            d.Clear()
            d.dim_value = v
    onnx.save(m, str(path))
    return path


def test_fixed_input_shape_becomes_limits(tmp_path):
    """A graph exported with a fixed N×3×16×16 input: the backend states it, so the pipeline pads/tiles to it."""
    from engine.pipeline import Upscaler
    path = _fix_input(build_standin(tmp_path / "f.onnx"), (1, 3, 16, 16))
    be = OrtBackend(path, device="cpu")
    assert be.limits.min_hw == (16, 16) and be.limits.max_hw == (16, 16) and be.limits.max_batch == 1
    x = np.random.default_rng(0).uniform(0, 255, (3, 9, 37)).astype(np.float32)
    res = Upscaler(be, batch=4).upscale(x)
    assert res.sr.shape == (3, 18, 74) and res.tiles > 1
    dyn = OrtBackend(build_standin(tmp_path / "d.onnx"), device="cpu")
    assert dyn.limits.max_hw is None and dyn.limits.max_batch is None and dyn.limits.min_hw == (2, 2)


def test_fixed_batch_is_filled(tmp_path):
    """A fixed batch of 2 with one image: the batch is filled with copies and only the real result returned."""
    path = _fix_input(build_standin(tmp_path / "b2.onnx"), (2, 3, "H", "W"))
    be = OrtBackend(path, device="cpu")
    assert be.limits.max_batch == 2 and be.limits.max_hw is None
    x = np.random.default_rng(1).uniform(0, 255, (1, 3, 7, 9)).astype(np.float32)
    sr, masks = be.run(x, want_masks=True)
    assert sr.shape == (1, 3, 14, 18) and masks.shape == (1, 5, 7, 9)
    np.testing.assert_allclose(sr, reference_upscale(build_standin(tmp_path / "ref.onnx"), x), atol=1e-4)


def test_run_failure_is_a_backend_run_error(tmp_path, monkeypatch):
    from engine.errors import BackendRunError, EngineError
    be = OrtBackend(build_standin(tmp_path / "s.onnx"), device="cpu")

    class Session:
        def run(self, names, feed):
            raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input: lr")
    be.session = Session()
    with pytest.raises(BackendRunError, match="INVALID_ARGUMENT") as info:
        be.run(np.zeros((1, 3, 4, 4), np.float32))
    assert isinstance(info.value, EngineError) and info.value.exit_code == 5


@pytest.mark.parametrize("deploy,device,cuda_first", [(True, "auto", False), (True, "cuda", True),
                                                      (False, "auto", True)])
def test_deploy_graph_prefers_cpu_over_cuda_provider(tmp_path, monkeypatch, deploy, device, cuda_first):
    """With onnxruntime-gpu, --device auto keeps a deploy graph (CPU-only custom op) on the CPU and says why;
    an explicit --device cuda, or a reference graph, gets the CUDA provider."""
    import onnxruntime as ort
    from engine.backends import onnxruntime as ortb
    plain = build_standin(tmp_path / "plain.onnx")
    model = build_standin(tmp_path / "m.onnx", custom_op=deploy)
    seen = {}
    real_session = ort.InferenceSession

    def session(path, sess_options=None, providers=None):
        seen["providers"] = list(providers)
        return real_session(str(plain), providers=["CPUExecutionProvider"])  # no GPU here: run the plain graph
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", session)
    monkeypatch.setattr(ortb, "_register_custom_ops", lambda so: "libfake.so")
    logs = []
    create_backend("ort", model=model, device=device, log=logs.append).close()
    assert (seen["providers"][0] == "CUDAExecutionProvider") == cuda_first
    assert seen["providers"][-1] == "CPUExecutionProvider"
    said = any("SMSRSparseBlock op runs on the CPU only" in m for m in logs)
    assert said == (deploy and device == "auto")


def test_torch_run_failure_is_a_backend_run_error(official_weights):
    """A non-memory PyTorch error (here: an input too small for SMSR) is a BackendRunError, not a traceback."""
    pytest.importorskip("torch")
    from engine.errors import BackendRunError
    be = create_backend("torch", model=official_weights, scale=2)
    with pytest.raises(BackendRunError, match="PyTorch failed"):
        be.run(np.zeros((1, 3, 1, 5), np.float32))

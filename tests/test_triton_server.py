"""A REAL Triton Inference Server on the CPU (tritonserver + Python backend from the nvidia-pytriton wheel, in the venv
`make triton-venv` creates) serving the exported Python-backend model of the official x2 deploy graph (ONNX Runtime
CPU + our SMSRSparseBlock op inside the server), driven through `--backend triton`.

Skipped (also under SMSR_STRICT=1) only when that venv was not created: pip may be unable to install the wheel; with
the venv present, every failure is a failure. The tensorrt_plan and onnxruntime models cannot be served by that
binary (it has no such backends); see README "Triton Inference Server".
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import missing_component
from triton_server import TritonServer, metric, triton_venv

REPO = Path(__file__).resolve().parents[1]  # `python -m engine` must be this checkout
pytestmark = pytest.mark.slow
TILE = 32
MODEL = "smsr_x2_py"


@pytest.fixture(scope="module")
def server(onnx_graphs, tmp_path_factory):
    venv = triton_venv()
    if not (venv / ".ok").is_file():
        pytest.skip("Triton venv %s not created (make triton-venv; pip could not install nvidia-pytriton?)" % venv)
    try:
        import tritonclient.grpc  # noqa: F401
    except ImportError:
        missing_component("tritonclient[grpc] is not installed (pip install -e '.[triton]')")
    from engine.ort_ops import find_custom_op_library
    if find_custom_op_library() is None:
        missing_component("libsmsr_ort_ops.so is not built (the deploy graph needs it inside the server)")
    from engine.triton_repo import export_repository
    work = tmp_path_factory.mktemp("triton")
    repo = work / "repo"
    # 20 ms of queue delay: requests arriving together are joined into one execution.
    export_repository(repo, name="smsr_x2", tile=TILE, onnx_path=onnx_graphs["deploy"], kinds=["python"],
                      max_batch=8, queue_delay_us=20000, threads=2, log=lambda s: None)
    # in the repository but never loaded (explicit model control): "not ready"
    export_repository(repo, name="idle", tile=TILE, onnx_path=onnx_graphs["reference"], kinds=["python"],
                      log=lambda s: None)
    srv = TritonServer(venv, repo, [MODEL], work)
    try:
        srv.wait_ready([MODEL])
        srv.repo = repo
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def local(server):
    """The served graph run locally: the same fixed-size ONNX file through the same runtime."""
    from engine.backends.onnxruntime import OrtBackend
    return OrtBackend(server.repo / MODEL / "1" / "model.onnx", device="cpu", threads=2)


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def _crop(set5_dir, tmp_path, name, size):
    from PIL import Image
    img = Image.open(set5_dir / "LR_bicubic" / "X2" / ("%s.png" % name)).convert("RGB")
    p = tmp_path / ("%s_%d.png" % (name, size))
    img.crop((0, 0, size, size)).save(p)
    return p


def test_ready_and_model_facts(server):
    from engine.backends.triton import TritonBackend
    be = TritonBackend(server.url, MODEL)
    assert (be.scale, be.tile_hw, be.has_masks, be.server_max_batch) == (2, (TILE, TILE), True, 8)
    assert be.limits.min_hw == be.limits.max_hw == (TILE, TILE)
    be.close()


def test_upscale_bit_identical_to_local_run(server, set5_dir, tmp_path):
    img = _crop(set5_dir, tmp_path, "bird", 80)  # 16 tiles
    common = ["--tile-overlap", "8", "-q"]
    r = _cli("upscale", str(img), "-o", str(tmp_path / "remote.png"), "--backend", "triton", "--url", server.url,
             "--triton-model", MODEL, *common)
    assert r.returncode == 0, r.stderr
    r2 = _cli("upscale", str(img), "-o", str(tmp_path / "local.png"), "--backend", "ort-cpu", "--model",
              str(server.repo / MODEL / "1" / "model.onnx"), "--threads", "2", *common)
    assert r2.returncode == 0, r2.stderr
    from PIL import Image
    a, b = (np.asarray(Image.open(tmp_path / n)) for n in ("remote.png", "local.png"))
    assert a.shape == (160, 160, 3) and np.array_equal(a, b)


def test_upscaled_arrays_identical_with_masks(server, local, set5_dir):
    from engine.backends.triton import TritonBackend
    from engine.image_io import read_rgb
    from engine.pipeline import Upscaler
    x = read_rgb(set5_dir / "LR_bicubic" / "X2" / "head.png")[:70, :66].transpose(2, 0, 1).astype(np.float32)
    be = TritonBackend(server.url, MODEL, in_flight=4)
    remote = Upscaler(be, overlap=8, batch=4).upscale(x, want_masks=True)
    mine = Upscaler(local, tile=remote.tile, overlap=8, batch=1).upscale(x, want_masks=True)
    be.close()
    assert remote.tiles == mine.tiles > 1
    assert np.array_equal(remote.sr, mine.sr) and np.array_equal(remote.masks, mine.masks)


def test_unknown_model_and_bad_url(server, tmp_path, set5_dir):
    img = _crop(set5_dir, tmp_path, "bird", 40)
    r = _cli("upscale", str(img), "-o", str(tmp_path / "o.png"), "--backend", "triton", "--url", server.url,
             "--triton-model", "nope")
    assert r.returncode == 4 and "has no model 'nope'" in r.stderr and MODEL in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "o.png").exists()
    r = _cli("upscale", str(img), "-o", str(tmp_path / "o.png"), "--backend", "triton", "--url", server.url,
             "--triton-model", "idle_py")
    assert r.returncode == 5 and "'idle_py'" in r.stderr and "not ready" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "o.png").exists()


def test_request_timeout_is_retried_then_reported(server, tmp_path, set5_dir):
    img = _crop(set5_dir, tmp_path, "bird", 40)
    r = _cli("upscale", str(img), "-o", str(tmp_path / "o.png"), "--backend", "triton", "--url", server.url,
             "--triton-model", MODEL, "--triton-timeout", "0.001")
    assert r.returncode == 5 and "timed out" in r.stderr and "3 tries" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "o.png").exists()


def test_load_concurrent_clients_batched(server, local):
    """8 clients × 20 tiles at once: every response equals the local result of that tile, and the server's metrics
    show executions that joined several requests."""
    from engine.backends.triton import TritonBackend
    rng = np.random.default_rng(1)
    tiles = rng.uniform(0, 255, (8, 20, 3, TILE, TILE)).astype(np.float32)
    expect = [[local.run(t[None])[0][0] for t in client] for client in tiles]
    before = server.metrics()
    errors, done = [], []

    def client(k):
        try:
            be = TritonBackend(server.url, MODEL, in_flight=4)
            for i in range(0, 20, 4):
                sr, _ = be.run(tiles[k, i:i + 4])
                for j in range(4):
                    if not np.array_equal(sr[j], expect[k][i + j]):
                        errors.append("client %d tile %d differs by %g" % (k, i + j,
                                                                           np.abs(sr[j] - expect[k][i + j]).max()))
                done.append(4)
            be.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append("client %d: %s" % (k, e))

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "load test exceeded 300 s"
    assert not errors, errors[:5]
    assert sum(done) == 160
    after = server.metrics()
    req = metric(after, "nv_inference_request_success", MODEL) - metric(before, "nv_inference_request_success", MODEL)
    execs = metric(after, "nv_inference_exec_count", MODEL) - metric(before, "nv_inference_exec_count", MODEL)
    print("load: 160 tiles in %.1f s, %d requests in %d executions" % (time.monotonic() - t0, req, execs))
    assert req == 160 and 0 < execs < req


def test_server_killed_mid_run(server, set5_dir, tmp_path):
    """Runs last (kills the module's server): the client reports it and writes no output."""
    img = set5_dir / "LR_bicubic" / "X2" / "baby.png"  # 256×256: ~140 tiles of 32×32
    out = tmp_path / "killed.png"
    before = metric(server.metrics(), "nv_inference_request_success", MODEL)
    p = subprocess.Popen([sys.executable, "-m", "engine", "upscale", str(img), "-o", str(out), "--backend", "triton",
                          "--url", server.url, "--triton-model", MODEL, "--tile-overlap", "8", "--triton-timeout",
                          "20"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t_end = time.monotonic() + 120
        while metric(server.metrics(), "nv_inference_request_success", MODEL) < before + 8:
            assert p.poll() is None and time.monotonic() < t_end, "client ended before the kill"
            time.sleep(0.2)
        server.kill()
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 5, err
    assert "stopped answering" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob("killed*"))

"""What the user reads when something is missing or wrong: the real cause, one line, no harmful advice."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_engine_without_gpu_names_the_gpu_not_a_package(tmp_path, monkeypatch):
    """No driver here: TensorRT's or cuda-python's absence is not the cause worth naming."""
    from engine.backends import tensorrt as trtb
    from engine.errors import BackendUnavailableError
    monkeypatch.setattr(trtb, "gpu_driver_problem", lambda: "no NVIDIA driver here (libcuda.so.1 not found)")
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    with pytest.raises(BackendUnavailableError) as e:
        trtb.import_cudart()
    assert "no NVIDIA driver" in str(e.value) and "cuda-python" not in str(e.value) and "--model" in str(e.value)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt_rtx", None)
    with pytest.raises(BackendUnavailableError, match="no NVIDIA driver") as e:
        trtb.import_tensorrt(None)
    assert "not installed" not in str(e.value)
    monkeypatch.setattr(trtb, "gpu_driver_problem", lambda: None)  # a GPU: then the package is the cause
    with pytest.raises(BackendUnavailableError, match=r"pip install cuda-python"):
        trtb.import_cudart()


def test_driver_probe_on_this_machine():
    from engine.backends.tensorrt import gpu_driver_problem
    problem = gpu_driver_problem()
    assert problem is None or "NVIDIA" in problem


def test_upscale_engine_on_cpu_machine_is_one_line(tmp_path):
    from engine.backends.tensorrt import gpu_driver_problem
    if gpu_driver_problem() is None:
        pytest.skip("a GPU driver is present here")
    eng = tmp_path / "x.engine"
    eng.write_bytes(b"\0" * 16)
    img = tmp_path / "i.png"
    from PIL import Image
    Image.new("RGB", (4, 4)).save(img)
    r = subprocess.run([sys.executable, "-m", "engine", "upscale", str(img), "-o", str(tmp_path / "o"), "--engine",
                        str(eng), "--backend", "tensorrt"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 5 and "Traceback" not in r.stderr
    assert "NVIDIA" in r.stderr and "pip install cuda-python" not in r.stderr


def test_non_checkpoint_pickle_never_suggests_weights_only_false(tmp_path):
    torch = pytest.importorskip("torch")
    import collections
    from converters.model import CheckpointError, load_smsr
    path = tmp_path / "objects.pt"
    torch.save({"net": collections.Counter(a=1), "fn": print}, path)  # not only tensors
    with pytest.raises(CheckpointError) as e:
        load_smsr(path, 2)
    msg = str(e.value)
    assert "weights_only" not in msg and "objects.pt" in msg and "could run code" in msg


def test_evaluate_reads_the_scale_from_the_model(onnx_graphs, set5_dir):
    r = subprocess.run([sys.executable, "-m", "engine.evaluate", "--model", str(onnx_graphs["reference"]),
                        "--data", str(set5_dir), "--threads", "2"], cwd=REPO, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines() if line.strip()}
    per_image = [float(rows[n][-1]) for n in ("baby", "bird", "butterfly", "head", "woman")]
    assert abs(float(rows["mean"][-1]) - sum(per_image) / 5) < 0.011  # the mean row's sec is a mean
    assert "x2, 5 images in" in r.stdout
    r = subprocess.run([sys.executable, "-m", "engine.evaluate", "--model", str(onnx_graphs["reference"]),
                        "--data", str(set5_dir), "--scale", "3"], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 4 and "x2" in r.stderr and "Traceback" not in r.stderr


def test_evaluate_tensorrt_backend_needs_an_engine(set5_dir):
    from engine.evaluate import main
    assert main(["--backend", "tensorrt", "--data", str(set5_dir)]) == 2


def test_summary_explains_its_columns(official_weights):
    r = subprocess.run([sys.executable, "-m", "converters.summary", "--weights", str(official_weights)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "D dense ones computed at every pixel and S sparse ones" in text and "block 0-4" in text


def test_compare_script_usage_exits_2():
    r = subprocess.run(["bash", "scripts/compare_trt_ort.sh"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("usage: scripts/compare_trt_ort.sh COMMAND")
    assert "set -euo" not in r.stderr + r.stdout  # not its own shell lines
    r = subprocess.run(["bash", "scripts/compare_trt_ort.sh", "--help"], cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "layerwise-ort" in r.stdout

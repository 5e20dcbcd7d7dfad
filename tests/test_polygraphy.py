"""The README's Polygraphy recipes, run for real: PyTorch vs reference graph, reference vs deploy, FP16 vs FP32."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("polygraphy")

from helpers import missing_component  # noqa: E402

# Documented tolerances (0..255 output scale):
#  FP32 graphs vs PyTorch / each other: max |diff| of "sr" <= 1e-3 (accumulation order), "masks" identical.
#  FP16 graphs vs FP32: mean |diff| of "sr" <= 0.25 (measured <= 0.06), masks flip on <= 1 % of pixels
#  (measured <= 0.2 %: logits that tie within FP16 resolution).
FP32_ARGS = ["--atol", "sr:1e-3", "masks:0", "--rtol", "0", "--check-error-stat", "max"]
FP16_ARGS = ["--atol", "sr:0.25", "masks:0.01", "--rtol", "0", "--check-error-stat", "mean"]


def _run(*args):
    proc = subprocess.run([*args], capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


def _polygraphy():
    exe = shutil.which("polygraphy")
    if exe is None:
        missing_component("polygraphy CLI not on PATH")
    return exe


@pytest.fixture(scope="module")
def poly_files(tmp_path_factory, official_weights, set5_dir):
    d = tmp_path_factory.mktemp("poly")
    rc, out = _run(sys.executable, "-m", "converters.polygraphy_io", "inputs", "--data", str(set5_dir),
                   "--out", str(d / "inputs.json"))
    assert rc == 0, out
    rc, out = _run(sys.executable, "-m", "converters.polygraphy_io", "torch", "--weights", str(official_weights),
                   "--inputs", str(d / "inputs.json"), "--out", str(d / "pytorch.json"))
    assert rc == 0, out
    return d


def test_reference_graph_vs_pytorch(onnx_graphs, poly_files):
    rc, out = _run(_polygraphy(), "run", str(onnx_graphs["reference"]), "--onnxrt",
                   "--load-inputs", str(poly_files / "inputs.json"),
                   "--load-outputs", str(poly_files / "pytorch.json"), *FP32_ARGS)
    assert rc == 0 and "PASSED" in out, out[-3000:]


def _ort_results(model, poly_files, name):
    out_file = poly_files / f"{name}.json"
    rc, out = _run(sys.executable, "-m", "converters.polygraphy_io", "ort", "--model", str(model),
                   "--inputs", str(poly_files / "inputs.json"), "--out", str(out_file), "--threads", "2")
    if rc != 0 and "CustomOpLibraryError" in out:
        missing_component("SMSRSparseBlock CPU op library not built")
    assert rc == 0, out[-3000:]
    return out_file


def test_deploy_graph_vs_reference_graph(onnx_graphs, poly_files):
    deploy = _ort_results(onnx_graphs["deploy"], poly_files, "deploy")
    rc, out = _run(_polygraphy(), "run", str(onnx_graphs["reference"]), "--onnxrt",
                   "--load-inputs", str(poly_files / "inputs.json"), "--load-outputs", str(deploy), *FP32_ARGS)
    assert rc == 0 and "PASSED" in out, out[-3000:]


@pytest.mark.parametrize("kind", ["reference_fp16", "deploy_fp16"])
def test_fp16_graph_vs_pytorch(onnx_graphs, poly_files, kind):
    results = _ort_results(onnx_graphs[kind], poly_files, kind)
    rc, out = _run(_polygraphy(), "run", "--load-outputs", str(poly_files / "pytorch.json"), str(results),
                   *FP16_ARGS)
    assert rc == 0 and "PASSED" in out, out[-3000:]


def test_comparison_detects_a_wrong_model(onnx_graphs, poly_files, official_weights, tmp_path):
    """The recipe can fail: an x2 model with one perturbed tail weight does not pass the FP32 check."""
    import torch
    from converters.export_onnx import export_graph
    from converters.model import load_smsr
    model = load_smsr(official_weights, 2)
    with torch.no_grad():
        model.tail[0].bias[0] += 0.01
    wrong = export_graph(model, tmp_path / "wrong.onnx", "reference")
    rc, out = _run(_polygraphy(), "run", str(wrong), "--onnxrt", "--load-inputs", str(poly_files / "inputs.json"),
                   "--load-outputs", str(poly_files / "pytorch.json"), *FP32_ARGS)
    assert rc != 0 and "FAILED" in out

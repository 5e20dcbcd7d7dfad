"""The `smsr` console script: dispatch, the default model in $SMSR_HOME, the converters' missing-PyTorch line."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import home, smsr
from standin_model import build_standin

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def img(tmp_path):
    p = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(p)
    return p


def test_usage_lists_every_command(capsys):
    assert smsr.main([]) == 2
    out = capsys.readouterr().out
    for name in ("upscale", "bench", "evaluate", "export-onnx", "build-engine", "summary", "download"):
        assert name in out
    assert smsr.main(["--help"]) == 0
    assert smsr.main(["nope"]) == 2 and "unknown command 'nope'" in capsys.readouterr().err


def test_subcommand_help_names_smsr(capsys):
    with pytest.raises(SystemExit) as e:
        smsr.main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    out = " ".join(out.split())
    assert "usage: smsr bench" in out and "WIDTHxHEIGHT" in out and "640x360 is landscape" in out


def test_empty_cache_names_the_command_that_fills_it(capsys, img, tmp_path):
    rc = smsr.main(["upscale", str(img), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert str(home.default_model_path()) in err and "smsr export-onnx --install" in err
    assert not (tmp_path / "out").exists()


def test_default_model_is_used(capsys, img, tmp_path):
    dest = home.default_model_path()
    dest.parent.mkdir(parents=True)
    build_standin(dest)
    assert smsr.main(["upscale", str(img), "-o", str(tmp_path / "out")]) == 0
    assert "(default)" in capsys.readouterr().err
    assert Image.open(tmp_path / "out" / "img.png").size == (32, 24)
    assert smsr.main(["bench", "--size", "40x20", "--iters", "1", "--warmup", "0"]) == 0
    assert "input 1×3×20×40" in capsys.readouterr().out  # WIDTHxHEIGHT: 20 rows of 40 pixels


def test_converter_without_pytorch_is_one_line(capsys, monkeypatch):
    def no_torch(name):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")
    monkeypatch.setattr(smsr, "_load", no_torch)
    assert smsr.main(["export-onnx", "--install"]) == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'smsr-engine[convert]'" in err


def test_fail_fast_before_inference(capsys, img, tmp_path):
    """An unusable output folder or an impossible format is a usage error before the model is even loaded."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    missing_model = tmp_path / "no_such_model.onnx"  # never opened: the output check comes first
    assert smsr.main(["upscale", str(img), "-o", str(blocker / "sub"), "--model", str(missing_model)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (6, 4), (1, 2, 3, 128)).save(rgba)
    model = build_standin(tmp_path / "m.onnx")
    calls = []
    import engine.pipeline as pipeline
    real = pipeline.Upscaler.upscale
    pipeline.Upscaler.upscale = lambda self, *a, **k: calls.append(1) or real(self, *a, **k)
    try:
        rc = smsr.main(["upscale", str(rgba), "-o", str(tmp_path / "o"), "--format", "jpg", "--model", str(model)])
    finally:
        pipeline.Upscaler.upscale = real
    err = capsys.readouterr().err
    assert rc == 2 and "JPEG cannot store an alpha channel" in err and "--format" in err
    assert calls == [] and not list((tmp_path / "o").glob("*"))


def test_console_script_entry_point_is_declared():
    text = (REPO / "pyproject.toml").read_text()
    assert 'smsr = "engine.smsr:main"' in text


def test_export_install_then_upscale(official_weights, img, tmp_path):
    """The newcomer's path: export-onnx --install, then upscale with no --model (the real deploy graph, CPU op)."""
    from engine import ort_ops
    if ort_ops.find_custom_op_library() is None:
        from helpers import missing_component
        missing_component("CPU op library not built")
    env_home = home.smsr_home()
    r = subprocess.run([sys.executable, "-m", "engine.smsr", "export-onnx", "--install", "--weights",
                        str(official_weights)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert (env_home / "models" / "smsr_x2_deploy.onnx").is_file() and "default model" in r.stdout
    assert [p.name for p in (env_home / "models").iterdir()] == ["smsr_x2_deploy.onnx"]
    r = subprocess.run([sys.executable, "-m", "engine.smsr", "upscale", str(img), "-o", str(tmp_path / "out")],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "backend ort-cpu" in r.stdout and Image.open(tmp_path / "out" / "img.png").size == (32, 24)

"""CLI: outputs, error messages and exit codes, no partial files, folder with a bad file, Set5 quality."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import image_io
from engine.cli import main
from engine.errors import BackendOutOfMemory
from standin_model import build_standin, reference_upscale

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_standin(tmp_path_factory.mktemp("m") / "standin_x2.onnx", scale=2)


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    rng = np.random.default_rng(3)
    for name, (h, w) in {"a.png": (17, 23), "b.png": (20, 20), "c.jpg": (9, 31)}.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / name)
    return d


def run_cli(capsys, *args):
    """main() in-process: any exception escaping it is what a user would see as a traceback, so it fails the test
    with that message; a failure must be an int exit code with one `error: ...` line per failure on stderr."""
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    except BaseException as e:  # noqa: BLE001
        pytest.fail("the CLI let %s escape (a traceback for the user): %s" % (type(e).__name__, e))
    out, err = capsys.readouterr()
    assert isinstance(rc, int)
    if rc not in (0, 2):
        assert any(line.startswith("error: ") for line in err.splitlines()), err
    return rc, out, err


def run_cli_subprocess(*args, timeout=120):
    """The real entry point in a child process (a traceback would show in its stderr)."""
    r = subprocess.run([sys.executable, "-m", "engine"] + [str(a) for a in args], cwd=REPO, capture_output=True,
                       text=True, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, r.stdout, r.stderr


def _no_temp_files(folder: Path):
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_folder_upscale_and_summary(capsys, model, images, tmp_path):
    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, "upscale", images, "-o", out, "--model", model)
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.jpg"]
    assert Image.open(out / "a.png").size == (46, 34)
    # Values: the whole-image output of the model, clamped and rounded.
    x = np.asarray(Image.open(images / "a.png")).astype(np.float32).transpose(2, 0, 1)[None]
    want = np.clip(np.rint(reference_upscale(model, x)[0]), 0, 255).transpose(1, 2, 0)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a.png")), want)
    assert "upscaled 3 images" in stdout and "MP/s" in stdout and "backend ort-cpu" in stdout
    assert "backend: ort-cpu" in err  # says which backend auto picked


def test_folder_with_bad_file_processes_the_rest(capsys, model, images, tmp_path):
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, "upscale", images, "-o", out, "--model", model)
    assert rc == 3
    assert "broken.png" in err and "error:" in err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.jpg"]
    assert "upscaled 3 images" in stdout and "1 failed" in stdout and "broken.png" in stdout


def test_glob_single_file_and_masks(capsys, model, images, tmp_path):
    rc, _, _ = run_cli(capsys, "upscale", str(images / "*.png"), "-o", tmp_path / "g", "--model", model,
                       "--save-masks")
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["a.png", "a_masks.png", "b.png", "b_masks.png"]
    rc, _, _ = run_cli(capsys, "upscale", images / "b.png", "-o", tmp_path / "single.png", "--model", model)
    assert rc == 0 and Image.open(tmp_path / "single.png").size == (40, 40)


def test_tiled_cli_matches_whole(capsys, model, images, tmp_path):
    run_cli(capsys, "upscale", images / "a.png", "-o", tmp_path / "w.png", "--model", model)
    rc, _, _ = run_cli(capsys, "upscale", images / "a.png", "-o", tmp_path / "t.png", "--model", model,
                       "--tile", "12", "--tile-overlap", "12", "--batch", "2")
    assert rc == 2  # tile must exceed the overlap
    rc, _, _ = run_cli(capsys, "upscale", images / "a.png", "-o", tmp_path / "t.png", "--model", model,
                       "--tile", "14", "--tile-overlap", "12", "--batch", "2")
    assert rc == 0
    a = np.asarray(Image.open(tmp_path / "w.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "t.png")).astype(int)
    assert np.abs(a - b).max() <= 1  # rounding of a float-identical result


@pytest.mark.parametrize("make_input,code,msg", [
    (lambda d: d / "missing.png", 3, "no such file"),
    (lambda d: (d / "junk.png").write_bytes(b"nope") and d / "junk.png", 3, "junk.png"),
    (lambda d: str(d / "*.webp"), 3, "matches no file"),
])
def test_input_errors(capsys, model, tmp_path, make_input, code, msg):
    inp = make_input(tmp_path)
    out = tmp_path / "out"
    rc, _, err = run_cli(capsys, "upscale", inp, "-o", out, "--model", model)
    assert rc == code and msg in err
    assert not out.exists() or list(out.iterdir()) == []


def test_decompression_bomb(capsys, model, tmp_path):
    p = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(p)
    rc, _, err = run_cli(capsys, "upscale", p, "-o", tmp_path / "o", "--model", model, "--max-pixels", "50000")
    assert rc == 3 and "--allow-large-images" in err
    assert not (tmp_path / "o" / "big.png").exists()
    rc, _, _ = run_cli(capsys, "upscale", p, "-o", tmp_path / "o", "--model", model, "--max-pixels", "50000",
                       "--allow-large-images")
    assert rc == 0 and Image.open(tmp_path / "o" / "big.png").size == (600, 400)


def test_model_errors(capsys, model, images, tmp_path):
    rc, _, err = run_cli(capsys, "upscale", images, "-o", tmp_path / "o", "--model", model, "--scale", "3")
    assert rc == 4 and "x2" in err and "3" in err
    rc, _, err = run_cli(capsys, "upscale", images, "-o", tmp_path / "o", "--model", tmp_path / "none.onnx")
    assert rc == 4 and "not found" in err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage" * 100)
    rc, _, err = run_cli(capsys, "upscale", images, "-o", tmp_path / "o", "--model", bad)
    assert rc == 4 and "bad.onnx" in err
    rc, _, err = run_cli(capsys, "upscale", images, "-o", tmp_path / "o")
    assert rc == 2 and "--engine" in err
    assert not (tmp_path / "o").exists()


def test_missing_custom_op_library(capsys, images, tmp_path, monkeypatch):
    deploy = build_standin(tmp_path / "deploy.onnx", custom_op=True)
    fake = types.ModuleType("engine.ort_ops")

    class CustomOpLibraryError(RuntimeError):
        pass

    def register_custom_ops(so):
        raise CustomOpLibraryError("SMSRSparseBlock library libsmsr_ort_ops.so not found: build it with cmake")
    fake.register_custom_ops = register_custom_ops
    monkeypatch.setitem(sys.modules, "engine.ort_ops", fake)
    import engine
    monkeypatch.setattr(engine, "ort_ops", fake, raising=False)
    rc, _, err = run_cli(capsys, "upscale", images, "-o", tmp_path / "o", "--model", deploy, "--backend", "ort")
    assert rc == 5 and "build it with cmake" in err


def _engine_with_manifest(tmp_path, **over):
    eng = tmp_path / "smsr_x2.engine"
    eng.write_bytes(b"not really an engine")
    m = {"scale": 2, "precision": "fp16", "graph": "deploy", "builder": "tensorrt", "builder_version": "10.14.1",
         "compute_capabilities": ["8.7"], "profile": {"min": [1, 3, 8, 8], "opt": [1, 3, 64, 64],
                                                       "max": [4, 3, 256, 256]},
         "plugin_library": {"path": "libsmsr_plugin.so", "sha256": "0" * 64}}
    m.update(over)
    (tmp_path / "smsr_x2.engine.json").write_text(json.dumps(m))
    return eng


def test_engine_errors_before_any_gpu_work(capsys, images, tmp_path):
    eng = _engine_with_manifest(tmp_path)
    rc, _, err = run_cli(capsys, "upscale", images, "-o", tmp_path / "o", "--engine", eng, "--scale", "4")
    assert rc == 4 and "x2" in err and "x4" in err
    rc, _, err = run_cli(capsys, "upscale", images, "-o", tmp_path / "o", "--engine", eng)
    assert rc == 5 and "libsmsr_plugin.so" in err and "not found" in err
    (tmp_path / "libsmsr_plugin.so").write_bytes(b"other build")
    rc, _, err = run_cli(capsys, "upscale", images, "-o", tmp_path / "o", "--engine", eng)
    assert rc == 5 and "not the one the engine was built with" in err
    eng2 = _engine_with_manifest(tmp_path / "..", builder="nonsense")
    rc, _, err = run_cli(capsys, "upscale", images, "-o", tmp_path / "o", "--engine", eng2)
    assert rc == 4 and "builder" in err


def test_auto_falls_back_to_ort_and_says_why(capsys, model, images, tmp_path):
    eng = _engine_with_manifest(tmp_path)
    rc, _, err = run_cli(capsys, "upscale", images, "-o", tmp_path / "o", "--engine", eng, "--model", model)
    assert rc == 0
    assert "backend: ort-cpu" in err and "tensorrt not usable" in err


def test_out_of_memory_retries_then_fails(capsys, model, images, tmp_path, monkeypatch):
    from engine.backends import onnxruntime as ortb
    real_run = ortb.OrtBackend.run
    limit = {"px": 48 * 48}

    def run(self, x, want_masks=False):
        if x.shape[0] * x.shape[2] * x.shape[3] > limit["px"]:
            raise BackendOutOfMemory("fake: Failed to allocate memory")
        return real_run(self, x, want_masks)
    monkeypatch.setattr(ortb.OrtBackend, "run", run)
    src = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8)).save(src)
    rc, _, err = run_cli(capsys, "upscale", src, "-o", tmp_path / "o.png", "--model", model)
    assert rc == 0 and "retrying with 40×40 tiles" in err
    assert Image.open(tmp_path / "o.png").size == (160, 160)
    limit["px"] = 1
    rc, _, err = run_cli(capsys, "upscale", src, "-o", tmp_path / "o2.png", "--model", model)
    assert rc == 6 and "out of memory" in err
    assert not (tmp_path / "o2.png").exists() and _no_temp_files(tmp_path)


def test_no_partial_output_when_writing_fails(capsys, model, images, tmp_path, monkeypatch):
    real = image_io._encode_to

    def broken(img, f, fmt):
        if isinstance(f, io.BytesIO):  # the before-inference format check encodes in memory
            return real(img, f, fmt)
        f.write(b"half an image")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(image_io, "_encode_to", broken)
    out = tmp_path / "o"
    rc, _, err = run_cli(capsys, "upscale", images, "-o", out, "--model", model)
    assert rc == 7 and "No space left" in err
    assert list(out.iterdir()) == []


def test_refuses_to_overwrite_input(capsys, model, images):
    rc, _, err = run_cli(capsys, "upscale", images / "a.png", "-o", images, "--model", model)
    assert rc == 2 and "overwrite an input" in err


def test_bench(capsys, model):
    rc, out, _ = run_cli(capsys, "bench", "--model", model, "--size", "24x20", "--iters", "2", "--warmup", "1",
                         "--batch", "2")
    assert rc == 0 and "bench: backend ort-cpu" in out and "images/s" in out


def test_entry_point_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "engine", "upscale", str(tmp_path / "x.png"), "-o", str(tmp_path / "o"),
                        "--model", str(tmp_path / "m.onnx")], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 4 and "error:" in r.stderr and "Traceback" not in r.stderr


# --- the real SMSR graphs on Set5 (needs ../shared weights and data) -----------------------------------------------
def _psnr_folder(out: Path, set5: Path) -> dict[str, float]:
    from engine.metrics import psnr_y
    res = {}
    for hr_path in sorted((set5 / "HR").glob("*.png")):
        hr = np.asarray(Image.open(hr_path).convert("RGB"))
        sr = np.asarray(Image.open(out / hr_path.name).convert("RGB"))
        res[hr_path.stem] = psnr_y(sr, hr[:sr.shape[0], :sr.shape[1]], shave=2)
    return res


@pytest.fixture(scope="module")
def set5_whole(onnx_graphs, set5_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("set5_whole")
    assert main(["upscale", str(set5_dir / "LR_bicubic" / "X2"), "-o", str(out), "--backend", "ort",
                 "--model", str(onnx_graphs["reference"]), "-q"]) == 0
    return _psnr_folder(out, set5_dir)


def test_set5_reference_graph_psnr(set5_whole):
    assert len(set5_whole) == 5
    assert np.mean(list(set5_whole.values())) == pytest.approx(37.99, abs=0.01)


def test_set5_tiled_within_tolerance(set5_whole, onnx_graphs, set5_dir, tmp_path):
    assert main(["upscale", str(set5_dir / "LR_bicubic" / "X2"), "-o", str(tmp_path), "--backend", "ort", "--model",
                 str(onnx_graphs["reference"]), "--tile", "64", "--tile-overlap", "16", "-q", "--batch", "2"]) == 0
    tiled = _psnr_folder(tmp_path, set5_dir)
    assert abs(np.mean(list(tiled.values())) - np.mean(list(set5_whole.values()))) <= 0.05
    assert max(abs(tiled[k] - set5_whole[k]) for k in tiled) <= 0.05


def test_set5_deploy_graph_psnr(set5_whole, onnx_graphs, set5_dir, tmp_path):
    from helpers import missing_component
    from engine.backends.base import create_backend
    from engine.errors import PluginLibraryError
    try:
        create_backend("ort", model=onnx_graphs["deploy"]).close()
    except PluginLibraryError as e:
        missing_component("ONNX Runtime custom-op library not available: %s" % e)
    assert main(["upscale", str(set5_dir / "LR_bicubic" / "X2"), "-o", str(tmp_path), "--backend", "ort", "--model",
                 str(onnx_graphs["deploy"]), "-q", "--save-masks"]) == 0
    dep = _psnr_folder(tmp_path, set5_dir)
    assert np.mean(list(dep.values())) == pytest.approx(37.99, abs=0.01)
    assert (tmp_path / "baby_masks.png").is_file()
    assert os.path.getsize(tmp_path / "baby_masks.png") > 1000


def _fixed_shape_model(path, n=1, h=16, w=16):
    """The stand-in with its input fixed to n×3×h×w, as a graph exported without dynamic axes."""
    import onnx
    m = onnx.load(str(build_standin(path)))
    dims = m.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, (n, 3, h, w)):
        d.Clear()
        d.dim_value = v
    onnx.save(m, str(path))
    return path


def test_fixed_input_size_model_pads_and_tiles(images, tmp_path):
    """An ONNX graph with a FIXED 16×16 input upscaling a folder: images smaller than 16 are padded, larger ones
    tiled; every image is written (the real entry point, so an escaping ORT error would show as a traceback)."""
    fixed = _fixed_shape_model(tmp_path / "fixed16.onnx")
    rc, out, err = run_cli_subprocess("upscale", images, "-o", tmp_path / "o", "--model", fixed)
    assert rc == 0, err
    sizes = {p.name: Image.open(p).size for p in (tmp_path / "o").iterdir()}
    assert sizes == {"a.png": (46, 34), "b.png": (40, 40), "c.jpg": (62, 18)}
    assert "upscaled 3 images" in out and "overlap 16 reduced" in err


def _odd_failing_model(path):
    """Dynamic H, W but only even sizes work: MaxPool 2×2 then ×4 upsampling added to a ×2 upsampling (a shape
    error inside ONNX Runtime for odd inputs, at run time)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    nodes = [helper.make_node("Resize", ["lr", "", "s2"], ["up2"], mode="nearest"),
             helper.make_node("MaxPool", ["lr"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Resize", ["pool", "", "s4"], ["up4"], mode="nearest"),
             helper.make_node("Add", ["up2", "up4"], ["sr"])]
    inits = [numpy_helper.from_array(np.array([1, 1, k, k], np.float32), "s%d" % k) for k in (2, 4)]
    g = helper.make_graph(nodes, "odd_fails", [helper.make_tensor_value_info("lr", TensorProto.FLOAT,
                                                                             ["N", 3, "H", "W"])],
                          [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["N", 3, "SH", "SW"])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    helper.set_model_props(m, {"smsr.scale": "2"})
    onnx.save(m, str(path))
    return path


def test_backend_run_error_is_reported_per_file(images, tmp_path):
    """ONNX Runtime failing on one image (17×23: odd) is one `error:` line naming it, exit 5; the folder goes on."""
    bad_model = _odd_failing_model(tmp_path / "even_only.onnx")
    rc, out, err = run_cli_subprocess("upscale", images, "-o", tmp_path / "o", "--model", bad_model)
    assert rc == 5, err
    assert "error: " in err and "a.png" in err and "ONNX Runtime failed" in err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["b.png"]  # 20×20; c.jpg is 9×31
    assert "upscaled 1 image" in out and "2 failed" in out


def test_bench_out_of_memory_is_one_line(capsys, model, monkeypatch):
    from engine.backends import onnxruntime as ortb

    def run(self, x, want_masks=False):
        raise BackendOutOfMemory("fake: Failed to allocate memory")
    monkeypatch.setattr(ortb.OrtBackend, "run", run)
    rc, _, err = run_cli(capsys, "bench", "--model", model, "--size", "24x20", "--iters", "1", "--warmup", "0")
    assert rc == 6 and "out of memory" in err and "--size" in err


def test_bench_run_error_is_one_line(model, tmp_path):
    rc, _, err = run_cli_subprocess("bench", "--model", _odd_failing_model(tmp_path / "m.onnx"), "--size", "9x9",
                                    "--iters", "1", "--warmup", "0")
    assert rc == 5 and "error: " in err and "ONNX Runtime failed" in err


def test_progress_bar_draws_on_request():
    import io
    from engine.progress import Progress
    s = io.StringIO()
    with Progress(4, "images", stream=s, enabled=True) as bar:  # tqdm bar, forced on a non-terminal
        for i in range(4):
            bar.update(i + 1, mp=2.0)
    text = s.getvalue()
    assert "images" in text and "4/4" in text and "MP/s" in text and "\r" in text
    plain = io.StringIO()
    with Progress(4, "images", stream=plain) as bar:  # not a terminal: plain lines, here only the final one
        for i in range(4):
            bar.update(i + 1)
    assert plain.getvalue().startswith("images 4/4 (100%)") and "\r" not in plain.getvalue()
    single = io.StringIO()
    Progress(1, "tiles", stream=single).update(1)  # one step: nothing to report
    assert single.getvalue() == ""
    off = io.StringIO()
    Progress(4, stream=off, enabled=False).update(4)
    assert off.getvalue() == ""


def test_bench_beyond_fixed_model_size_is_a_usage_error(capsys, tmp_path):
    fixed = _fixed_shape_model(tmp_path / "fixed16.onnx")
    rc, _, err = run_cli(capsys, "bench", "--model", fixed, "--size", "40x40", "--iters", "1", "--warmup", "0")
    assert rc == 2 and "--size 40x40" in err and "16x16" in err
    rc, out, _ = run_cli(capsys, "bench", "--model", fixed, "--size", "40x40", "--iters", "1", "--warmup", "0",
                         "--tile", "16")
    assert rc == 0 and "tile 16" in out
    rc, out, _ = run_cli(capsys, "bench", "--model", fixed, "--size", "12x10", "--iters", "1", "--warmup", "0")
    assert rc == 0 and "bench: backend ort-cpu" in out  # padded up to 16×16

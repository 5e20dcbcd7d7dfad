"""Images smaller than SMSR's 2×2 minimum (and just above it) upscale: mirror-padded to the backend minimum and
cropped back, for RGB, grey, palette and alpha inputs."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.cli import main
from engine.pipeline import pad_to_limits
from standin_model import build_standin, reference_upscale

SHAPES = [(1, 1), (1, 7), (7, 1), (2, 2), (3, 3)]  # (width, height)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_standin(tmp_path_factory.mktemp("m") / "standin_x2.onnx", scale=2)


def _make(mode: str, w: int, h: int, path):
    rng = np.random.default_rng(w * 31 + h)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if mode == "RGB":
        im = Image.fromarray(rgb)
    elif mode == "L":
        im = Image.fromarray(rgb[:, :, 0])
    elif mode == "P":
        im = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    else:  # RGBA
        im = Image.fromarray(np.dstack([rgb, rng.integers(0, 256, (h, w), dtype=np.uint8)]), "RGBA")
    im.save(path)
    return path


@pytest.mark.parametrize("w,h", SHAPES)
@pytest.mark.parametrize("mode,out_mode", [("RGB", "RGB"), ("L", "L"), ("P", "RGB"), ("RGBA", "RGBA")])
def test_tiny_image_upscales(capsys, model, tmp_path, mode, out_mode, w, h):
    src = _make(mode, w, h, tmp_path / "tiny.png")
    out = tmp_path / "out.png"
    assert main(["upscale", str(src), "-o", str(out), "--model", str(model)]) == 0, capsys.readouterr().err
    res = Image.open(out)
    assert res.size == (2 * w, 2 * h) and res.mode == out_mode
    if mode == "RGB":  # values: the network on the mirror-padded image, cropped back
        x = np.asarray(Image.open(src)).astype(np.float32).transpose(2, 0, 1)[None]
        xp, _, _ = pad_to_limits(x, (2, 2), 1)
        want = np.clip(np.rint(reference_upscale(model, xp)[0, :, :2 * h, :2 * w]), 0, 255).transpose(1, 2, 0)
        np.testing.assert_array_equal(np.asarray(res), want)


def test_pad_mirrors_a_single_pixel():
    x = np.arange(3, dtype=np.float32).reshape(1, 3, 1, 1)
    xp, h, w = pad_to_limits(x, (2, 2), 1)
    assert (h, w) == (1, 1) and xp.shape == (1, 3, 2, 2) and (xp == x).all()


@pytest.mark.parametrize("w,h", [(1, 1), (1, 7), (7, 1)])
def test_real_network_on_tiny_images(onnx_graphs, tmp_path, w, h):
    """The exported SMSR graph itself (not the stand-in): 1-pixel sides run through the padding."""
    src = _make("RGB", w, h, tmp_path / "tiny.png")
    out = tmp_path / "out.png"
    assert main(["upscale", str(src), "-o", str(out), "--model", str(onnx_graphs["reference"])]) == 0
    assert Image.open(out).size == (2 * w, 2 * h)

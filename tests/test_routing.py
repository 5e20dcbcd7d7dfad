"""Adaptive tile routing (engine/routing.py): off is today's pipeline bit for bit, per-tile decisions in mixed
batches, batch-size independence, cross-faded joins, the numpy bicubic against PyTorch and the model's own branch,
and the CLI option."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.backends.base import Backend
from engine.cli import main
from engine.errors import UsageError
from engine.pipeline import Upscaler
from engine.routing import AUTO_THRESHOLD, DEFAULT_ROUTE_TILE, Router, bicubic_upsample, difficulty, parse_route
from engine.tiling import blend_margins, plan_tiles, run_tiled, run_tiled_routed
from helpers import missing_component
from standin_model import build_standin


class OffsetBicubic(Backend):
    """A 'network' whose output is bicubic + `offset` (per sample, deterministic), recording what it was sent."""

    def __init__(self, offset=10.0, scale=2):
        self.name, self.scale, self.offset, self.has_masks = "fake", scale, offset, True
        self.sent = []

    def run(self, x, want_masks=False):
        self.sent.extend(x[i].copy() for i in range(x.shape[0]))
        masks = np.ones((x.shape[0], 5, *x.shape[2:]), np.float32) if want_masks else None
        return bicubic_upsample(x, self.scale) + np.float32(self.offset), masks


def _half_flat_half_textured(h=150, w=170, seed=0):
    x = np.full((3, h, w), 90.0, np.float32)
    x[:, :, w // 2:] = np.random.default_rng(seed).uniform(0, 255, (3, h, w - w // 2))
    return x


def _smooth(h, w):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([60 + 0.05 * xx + 0.03 * yy, 100 + 2 * np.sin(xx / 40), 140 - 0.04 * yy]).astype(np.float32)


# ---- numpy bicubic ------------------------------------------------------------------------------------------


def _torch():
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        missing_component("PyTorch (converters extra) is not installed")
    return torch, F


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 3, 17, 23), (2, 3, 2, 2), (1, 3, 1, 7), (1, 3, 64, 65)])
def test_numpy_bicubic_equals_torch(scale, shape):
    torch, F = _torch()
    x = np.random.default_rng(sum(shape) + scale).uniform(0, 255, shape).astype(np.float32)
    want = F.interpolate(torch.from_numpy(x), scale_factor=scale, mode="bicubic", align_corners=False).numpy()
    got = bicubic_upsample(x, scale)
    assert got.shape == want.shape and got.dtype == np.float32
    # FP32 rounding only (measured <= 6e-5 at x2/x4, <= 5e-4 at x3 where 1/3 is inexact); a wrong A, a missing
    # clamp or align_corners=True each differ by > 1 on this input.
    assert np.abs(got - want).max() < 2e-3


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_cheap_path_equals_the_models_bicubic_branch(scale):
    """With the tail zeroed, SMSR outputs add_mean(bicubic(sub_mean(x))): its bicubic branch. The cheap path
    (bicubic of x, the mean shift cancels because bicubic weights sum to one) must match it."""
    torch, _ = _torch()
    from converters.model.smsr import SMSR
    torch.manual_seed(scale)
    model = SMSR(scale).eval()
    with torch.no_grad():
        for p in model.tail.parameters():
            p.zero_()
        x = np.random.default_rng(scale).uniform(0, 255, (2, 3, 19, 26)).astype(np.float32)
        branch = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(Router(AUTO_THRESHOLD, scale).cheap(x), branch, rtol=0, atol=2e-3)


# ---- score and option ---------------------------------------------------------------------------------------


def test_parse_route():
    assert parse_route("off") is None
    assert parse_route("AUTO") == AUTO_THRESHOLD
    assert parse_route("2.5") == 2.5
    for bad in ("-1", "nan", "fast", ""):
        with pytest.raises(UsageError):
            parse_route(bad)


def test_textured_tiles_are_never_routed_at_auto(set5_lr_images):
    rng = np.random.default_rng(5)
    t = DEFAULT_ROUTE_TILE
    yy, xx = np.mgrid[0:t, 0:t]
    textured = {
        "uniform noise": rng.uniform(0, 255, (3, t, t)),
        "mild noise (sigma 8) on grey": 128 + rng.normal(0, 8, (3, t, t)),
        "stripes of period 4": np.broadcast_to(np.where(xx % 4 < 2, 80.0, 170.0), (3, t, t)),
        "checkerboard of 3 px": np.broadcast_to(np.where((xx // 3 + yy // 3) % 2, 60.0, 190.0), (3, t, t)),
        "noise patch on a quarter of a flat tile": np.pad(rng.uniform(0, 255, (3, t // 2, t // 2)),
                                                          ((0, 0), (0, t // 2), (0, t // 2)), constant_values=128),
    }
    # Natural texture: the butterfly's wing and the bird's head feathers (Set5 x2 LR).
    bf = set5_lr_images["butterfly"].transpose(2, 0, 1)
    textured["butterfly wing"] = bf[:, 32:32 + t, 32:32 + t]
    textured["bird head"] = set5_lr_images["bird"].transpose(2, 0, 1)[:, 20:20 + t, 40:40 + t]
    router = Router(AUTO_THRESHOLD, 2)
    for name, tile in textured.items():
        tile = np.asarray(tile, np.float32)
        assert tile.shape == (3, t, t), name
        assert not router.routes(tile), "%s (score %.2f) was routed at auto (%g)" % (name, difficulty(tile),
                                                                                   AUTO_THRESHOLD)
    # The score can pass too: a flat tile and a gentle gradient are routed.
    assert router.routes(np.full((3, t, t), 37.0, np.float32))
    assert router.routes(_smooth(t, t))


# ---- pipeline -----------------------------------------------------------------------------------------------


def test_route_off_is_bit_identical_to_the_pipeline_without_routing():
    be = OffsetBicubic()
    x = _half_flat_half_textured()
    tiled = Upscaler(be, tile=48, overlap=16, batch=3).upscale(x, want_masks=True)
    want_sr, want_masks = run_tiled(lambda b: be.run(b, True), x, 2, 48, 16, 2, 3)
    assert np.array_equal(tiled.sr, want_sr) and np.array_equal(tiled.masks, want_masks)
    assert tiled.routed == 0 and tiled.routed_map is None
    whole = Upscaler(be).upscale(x)  # no tile, no route: one whole-image call as before
    assert np.array_equal(whole.sr, be.run(x[None])[0][0]) and whole.tiles == 1
    # A threshold of 0 routes nothing and reproduces run_tiled exactly (same batches, same accumulation order).
    r = run_tiled_routed(lambda b: be.run(b, True), x, 2, 48, 16, 2, 3, Router(0.0, 2))
    assert r.routed == 0 and np.array_equal(r.sr, want_sr) and np.array_equal(r.masks, want_masks)


def test_constant_image_routes_every_tile_and_equals_bicubic():
    be = OffsetBicubic()
    x = np.full((3, 150, 133), 77.0, np.float32)
    res = Upscaler(be, router=Router(AUTO_THRESHOLD, 2)).upscale(x, want_masks=True)
    assert res.tiles > 4 and res.routed == res.tiles and not be.sent
    assert res.tile == DEFAULT_ROUTE_TILE
    np.testing.assert_allclose(res.sr, 77.0, atol=1e-3)
    assert res.masks is None and np.all(res.routed_map == 1)
    # A smooth (not constant) image: every tile routed, and the result is whole-image bicubic, because each
    # tile's clamped border lies in the part of the overlap that the blend discards.
    x = _smooth(150, 133)
    res = Upscaler(be, router=Router(AUTO_THRESHOLD, 2)).upscale(x)
    assert res.routed == res.tiles > 4
    np.testing.assert_allclose(res.sr, bicubic_upsample(x, 2), rtol=0, atol=1e-3)


def test_threshold_is_applied_per_tile_in_mixed_batches():
    be = OffsetBicubic()
    x = _half_flat_half_textured()
    thr = 5.0
    tiles = plan_tiles(150, 170, 48, 16, 2)
    scores = [difficulty(x[:, t.y0:t.y1, t.x0:t.x1]) for t in tiles]
    easy = [t for t, s in zip(tiles, scores) if s < thr]
    assert 0 < len(easy) < len(tiles)  # a mixed image
    r = run_tiled_routed(lambda b: be.run(b, True), x, 2, 48, 16, 2, 4, Router(thr, 2))
    assert r.routed == len(easy) and r.tiles == len(tiles)
    # Exactly the hard tiles were sent to the backend (in batches of up to 4), each scoring >= the threshold.
    assert len(be.sent) == len(tiles) - len(easy)
    assert all(difficulty(s) >= thr for s in be.sent)
    # Where a routed tile has full weight the output is bicubic (offset 0), where a computed one has, offset 10.
    offset = r.sr - bicubic_upsample(x, 2)
    full = r.routed_map.repeat(2, 0).repeat(2, 1)
    assert np.abs(offset[:, full == 1]).max() < 1e-3
    assert np.abs(offset[:, full == 0] - 10).max() < 1e-3
    # Masks: the network's where it ran, zero on routed tiles.
    assert r.masks.max() == 1 and np.all(r.masks[:, r.routed_map == 1] == 0)


def test_routed_and_computed_tiles_cross_fade_without_seam():
    be = OffsetBicubic(offset=10.0)
    x = _half_flat_half_textured()
    overlap = 16
    r = run_tiled_routed(lambda b: be.run(b), x, 2, 48, overlap, 2, 2, Router(5.0, 2))
    assert 0 < r.routed < r.tiles
    offset = (r.sr - bicubic_upsample(x, 2))[0]  # 10 × (weight of computed tiles), 0..10
    _, ramp = blend_margins(overlap)
    # A hard switch would jump by 10 between neighbouring pixels; the cross-fade spreads it over the ramp
    # (ramp LR pixels = 2·ramp output pixels).
    steps = max(np.abs(np.diff(offset, axis=0)).max(), np.abs(np.diff(offset, axis=1)).max())
    assert 0 < steps <= 10 / (2 * ramp) + 1e-3


@pytest.mark.parametrize("batch", [2, 3, 7, 50])
def test_results_identical_whatever_the_batch_size(batch):
    x = _half_flat_half_textured(seed=2)
    router = Router(5.0, 2)
    one = Upscaler(OffsetBicubic(), tile=40, overlap=8, batch=1, router=router).upscale(x, want_masks=True)
    be = OffsetBicubic()
    many = Upscaler(be, tile=40, overlap=8, batch=batch, router=router).upscale(x, want_masks=True)
    assert 0 < one.routed < one.tiles and many.routed == one.routed
    assert np.array_equal(many.sr, one.sr) and np.array_equal(many.masks, one.masks)
    assert np.array_equal(many.routed_map, one.routed_map)


def test_same_routing_through_onnx_runtime(tmp_path):
    """The same code path on a real backend (ONNX Runtime, stand-in graph): batch independence to float rounding
    and bicubic exactly where routed."""
    from engine.backends.onnxruntime import OrtBackend
    be = OrtBackend(build_standin(tmp_path / "s.onnx"), device="cpu")
    x = _half_flat_half_textured(96, 120)
    router = Router(5.0, 2)
    a = Upscaler(be, tile=40, overlap=12, batch=1, router=router).upscale(x, want_masks=True)
    b = Upscaler(be, tile=40, overlap=12, batch=4, router=router).upscale(x, want_masks=True)
    assert 0 < a.routed == b.routed < a.tiles
    assert np.abs(a.sr - b.sr).max() < 1e-4
    full = a.routed_map.repeat(2, 0).repeat(2, 1) == 1
    assert np.abs((a.sr - bicubic_upsample(x, 2))[:, full]).max() < 1e-3


# ---- CLI ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build_standin(tmp_path_factory.mktemp("m") / "standin_x2.onnx", scale=2)


def _save(path, x):
    Image.fromarray(np.clip(np.rint(x.transpose(1, 2, 0)), 0, 255).astype(np.uint8)).save(path)


def test_cli_route(capsys, model, tmp_path):
    src = tmp_path / "mixed.png"
    _save(src, _half_flat_half_textured(130, 150))
    out_off, out_none, out_auto = tmp_path / "off.png", tmp_path / "none.png", tmp_path / "auto.png"
    assert main(["upscale", str(src), "-o", str(out_none), "--model", str(model), "--tile", "64"]) == 0
    assert main(["upscale", str(src), "-o", str(out_off), "--model", str(model), "--tile", "64",
                 "--route", "off"]) == 0
    capsys.readouterr()
    assert np.array_equal(np.asarray(Image.open(out_off)), np.asarray(Image.open(out_none)))
    assert main(["upscale", str(src), "-o", str(out_auto), "--model", str(model), "--route", "auto",
                 "--save-masks"]) == 0
    stdout = capsys.readouterr().out
    n_tiles = len(plan_tiles(130, 150, DEFAULT_ROUTE_TILE, 16, 2))
    assert "tiles exited early" in stdout and "of %d tiles" % n_tiles in stdout, stdout
    masks_png = tmp_path / "auto_masks.png"
    assert masks_png.exists()
    # The extra panel is there: one more row of panels than the same picture without routing (7 panels, 3 columns).
    from engine.masks_viz import render_masks
    lr_rgb = np.asarray(Image.open(src).convert("RGB"), np.float32)
    plain = render_masks(lr_rgb, np.zeros((5, 130, 150), np.float32))
    zoom, gap = -(-256 // 150), 2
    assert Image.open(masks_png).size == (plain.size[0], plain.size[1] + 130 * zoom + gap)
    assert main(["bench", "--model", str(model), "--size", "96x96", "--iters", "1", "--warmup", "0",
                 "--route", "auto"]) == 0
    assert "tiles exited early per call" in capsys.readouterr().out


def test_cli_route_bad_value_is_a_usage_error(capsys, model, tmp_path):
    src = tmp_path / "a.png"
    _save(src, np.zeros((3, 8, 8), np.float32))
    with pytest.raises(SystemExit) as e:
        main(["upscale", str(src), "-o", str(tmp_path / "o.png"), "--model", str(model), "--route", "fast"])
    assert e.value.code == 2
    assert "--route expects off, auto or a threshold" in capsys.readouterr().err


def test_auto_keeps_its_quality_budget_on_set5(capsys, onnx_graphs, set5_dir, tmp_path):
    """The shipped `auto` on the measurement it was chosen by (deploy graph, ONNX Runtime CPU, Set5 x2, tiles 64):
    mean PSNR_Y drop <= 0.02 dB and every image <= 0.1 dB against --route off at the same tiles."""
    from engine.backends.base import create_backend
    from engine.errors import PluginLibraryError
    from engine.metrics import psnr_y
    try:
        create_backend("ort", model=onnx_graphs["deploy"]).close()
    except PluginLibraryError as e:
        missing_component("ONNX Runtime custom-op library not available: %s" % e)
    lr = set5_dir / "LR_bicubic" / "X2"
    psnr = {}
    for route in ("off", "auto"):
        out = tmp_path / route
        assert main(["upscale", str(lr), "-o", str(out), "--backend", "ort", "--model", str(onnx_graphs["deploy"]),
                     "--tile", str(DEFAULT_ROUTE_TILE), "--route", route, "-q"]) == 0
        psnr[route] = {}
        for hr_path in sorted((set5_dir / "HR").glob("*.png")):
            hr = np.asarray(Image.open(hr_path).convert("RGB"))
            sr = np.asarray(Image.open(out / hr_path.name).convert("RGB"))
            psnr[route][hr_path.stem] = psnr_y(sr, hr[:sr.shape[0], :sr.shape[1]], shave=2)
    summary = capsys.readouterr().out
    assert "6 of 64 tiles exited early" in summary, summary  # as measured (docs/BENCHMARKS.md)
    drops = [psnr["off"][k] - psnr["auto"][k] for k in psnr["off"]]
    assert len(drops) == 5 and np.mean(drops) <= 0.02 and max(drops) <= 0.1, drops

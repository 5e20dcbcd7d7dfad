"""Tiling: tile plans, blending, tiled == whole within tolerance (odd sizes), padding, OOM retries."""
from __future__ import annotations

import numpy as np
import pytest

from engine.backends.base import Backend, Limits
from engine.errors import BackendOutOfMemory, OutOfMemoryError, UsageError
from engine.pipeline import Upscaler, pad_to_limits
from engine.tiling import plan_axis, plan_tiles, run_tiled, tile_weights
from standin_model import RECEPTIVE_RADIUS, build_standin, reference_upscale


@pytest.mark.parametrize("length", [1, 2, 5, 16, 17, 33, 64, 65, 100, 127, 255])
@pytest.mark.parametrize("tile,overlap,align", [(16, 4, 1), (16, 4, 2), (32, 8, 2), (20, 0, 2), (12, 9, 2)])
def test_plan_axis_properties(length, tile, overlap, align):
    spans = plan_axis(length, tile, overlap, align)
    assert spans[0][0] == 0 and spans[-1][1] == length
    for s, e in spans:
        assert s % align == 0, spans
        assert 0 < e - s <= max(length, 1)
    for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
        assert s1 > s0, spans
        assert e0 - s1 >= overlap, spans  # neighbours overlap by at least `overlap`
    if length > tile:
        assert all(e - s == tile for s, e in spans[:-1])
        assert tile <= spans[-1][1] - spans[-1][0] < tile + align


def test_plan_axis_rejects_tile_not_larger_than_overlap():
    with pytest.raises(ValueError):
        plan_axis(100, 16, 16, 2)


def test_weights_cover_every_pixel():
    h, w, s, ov = 37, 53, 2, 6
    tiles = plan_tiles(h, w, 16, ov, 2)
    acc = np.zeros((h * s, w * s))
    for t in tiles:
        acc[t.y0 * s:t.y1 * s, t.x0 * s:t.x1 * s] += tile_weights(t, h, w, ov, s)
    assert acc.min() > 0.05
    # Where neighbours overlap by exactly `overlap`, their cross-fades sum to one.
    assert np.median(acc) == pytest.approx(1.0)


def _box_net(radius: int, scale: int):
    """A numpy 'network' with receptive radius `radius`: `radius` 3×3 box blurs (zero padding), nearest upscale."""
    def run(x):
        y = x.astype(np.float64)
        for _ in range(radius):
            p = np.pad(y, ((0, 0), (0, 0), (1, 1), (1, 1)))
            y = sum(p[:, :, i:i + y.shape[2], j:j + y.shape[3]] for i in range(3) for j in range(3)) / 9.0
        y = y.repeat(scale, 2).repeat(scale, 3)
        return y.astype(np.float32), None
    return run


def test_tiled_equals_whole_when_overlap_covers_receptive_field():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (3, 45, 61)).astype(np.float32)
    net = _box_net(3, 2)
    whole = net(x[None])[0][0]
    # Exact when the receptive radius (3) <= overlap/4 (documented in engine/tiling.py).
    tiled, _ = run_tiled(net, x, 2, tile=24, overlap=12, align=2, batch=3)
    assert tiled.shape == whole.shape
    assert np.abs(tiled - whole).max() < 1e-3
    # And the comparison can fail: with too little overlap the seams are plainly visible.
    for ov in (0, 4):
        seams, _ = run_tiled(net, x, 2, tile=24, overlap=ov, align=2)
        assert np.abs(seams - whole).max() > 5


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return build_standin(tmp_path_factory.mktemp("standin") / "standin_x2.onnx", scale=2)


@pytest.mark.parametrize("h,w", [(37, 53), (31, 17), (64, 65)])
def test_tiled_matches_whole_standin_odd_sizes(standin, h, w):
    from engine.backends.onnxruntime import OrtBackend
    be = OrtBackend(standin, device="cpu")
    rng = np.random.default_rng(h * w)
    x = rng.uniform(0, 255, (3, h, w)).astype(np.float32)
    whole = reference_upscale(standin, x[None])[0]
    up = Upscaler(be, tile=24, overlap=4 * RECEPTIVE_RADIUS, batch=4)
    res = up.upscale(x, want_masks=True)
    assert res.tiles > 1 and res.sr.shape == whole.shape
    # Documented tolerance for a network whose receptive radius <= overlap/4: float rounding only.
    assert np.abs(res.sr - whole).max() < 1e-3
    masks_whole = be.run(x[None], want_masks=True)[1][0]
    assert res.masks.shape == masks_whole.shape
    assert np.abs(res.masks - masks_whole).max() < 1e-5
    # Batch size changes the grouping, not the result.
    res1 = Upscaler(be, tile=24, overlap=4 * RECEPTIVE_RADIUS, batch=1).upscale(x)
    assert np.abs(res1.sr - res.sr).max() < 1e-4


class FakeBackend(Backend):
    """Nearest-neighbour ×2 with configurable limits and an OOM threshold, counting calls."""

    def __init__(self, limits=Limits(), oom_above=None, scale=2):
        self.name, self.scale, self.limits, self.oom_above = "fake", scale, limits, oom_above
        self.calls = []

    def run(self, x, want_masks=False):
        self.calls.append(x.shape)
        n, c, h, w = x.shape
        if self.limits.max_hw and (h > self.limits.max_hw[0] or w > self.limits.max_hw[1]):
            raise AssertionError("backend got %s above its max" % (x.shape,))
        if h < self.limits.min_hw[0] or w < self.limits.min_hw[1] or h % self.limits.multiple or \
                w % self.limits.multiple:
            raise AssertionError("backend got %s violating its limits" % (x.shape,))
        if self.oom_above is not None and n * h * w > self.oom_above:
            raise BackendOutOfMemory("fake OOM at %s" % (x.shape,))
        s = self.scale
        return x.repeat(s, 2).repeat(s, 3), np.ones((n, 5, h, w), np.float32)


def test_padding_for_backend_limits_crops_back():
    be = FakeBackend(Limits(min_hw=(16, 16), multiple=2))
    x = np.arange(3 * 7 * 9, dtype=np.float32).reshape(3, 7, 9)
    res = Upscaler(be).upscale(x)
    assert be.calls == [(1, 3, 16, 16)]
    np.testing.assert_array_equal(res.sr, x.repeat(2, 1).repeat(2, 2))
    xp, h, w = pad_to_limits(x[None], (1, 1), 2)
    assert xp.shape == (1, 3, 8, 10) and (h, w) == (7, 9)


def test_auto_tiles_above_engine_profile():
    be = FakeBackend(Limits(min_hw=(8, 8), max_hw=(32, 32)))
    x = np.random.default_rng(0).uniform(0, 255, (3, 75, 41)).astype(np.float32)
    res = Upscaler(be, overlap=4).upscale(x)
    assert res.tile is not None and res.tiles > 1
    np.testing.assert_allclose(res.sr, x.repeat(2, 1).repeat(2, 2), atol=1e-3)


def test_oom_retries_with_smaller_tiles():
    be = FakeBackend(oom_above=40 * 40)
    logs = []
    x = np.random.default_rng(0).uniform(0, 255, (3, 90, 70)).astype(np.float32)
    res = Upscaler(be, overlap=4, log=logs.append).upscale(x)
    assert res.tile is not None and res.tile <= 40
    assert any("out of memory" in m for m in logs)
    np.testing.assert_allclose(res.sr, x.repeat(2, 1).repeat(2, 2), atol=1e-3)


def test_oom_at_smallest_tile_is_a_user_error():
    be = FakeBackend(oom_above=10)
    with pytest.raises(OutOfMemoryError, match="out of memory"):
        Upscaler(be, overlap=4).upscale(np.zeros((3, 80, 80), np.float32))


def test_tile_must_exceed_overlap():
    with pytest.raises(UsageError):
        Upscaler(FakeBackend(), tile=16, overlap=16)


def test_odd_tile_is_rounded_to_align_once():
    """An odd --tile would make every interior tile odd (its mask zero-padded at the inner edge): rounded up to
    the backend's align, said once in the log."""
    be = FakeBackend()
    logs = []
    up = Upscaler(be, tile=65, overlap=2, log=logs.append)
    assert up.tile == 66
    assert sum("rounded up to 66" in m for m in logs) == 1
    x = np.random.default_rng(0).uniform(0, 255, (3, 150, 140)).astype(np.float32)
    res = up.upscale(x)
    # Only tiles that end at the image edge may differ from 66 (and be odd); interior tiles are 66.
    assert res.tiles > 2 and (1, 3, 66, 66) in be.calls and not any(65 in c for c in be.calls), be.calls
    assert sum("rounded" in m for m in logs) == 1  # not again per image/tile
    assert Upscaler(FakeBackend(), tile=64, overlap=2, log=logs.append).tile == 64  # even: unchanged


def test_small_backend_maximum_shrinks_overlap():
    """A fixed 16×16 graph (max input 16) with the default overlap 16: the overlap is reduced so tiles advance."""
    be = FakeBackend(Limits(min_hw=(16, 16), max_hw=(16, 16), max_batch=1))
    logs = []
    x = np.random.default_rng(0).uniform(0, 255, (3, 37, 23)).astype(np.float32)
    res = Upscaler(be, batch=4, log=logs.append).upscale(x)
    assert res.tiles > 1 and all(c == (1, 3, 16, 16) for c in be.calls)
    np.testing.assert_allclose(res.sr, x.repeat(2, 1).repeat(2, 2), atol=1e-3)
    assert any("overlap 16 reduced" in m for m in logs)

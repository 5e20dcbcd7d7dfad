"""calibration/int8_block.py, the executable INT8 op contract every implementation is compared with bit for bit.

Checked here against the float contract (converters/deploy_op.sparse_block_reference): with unit scales and
integer-valued tensors every float32 operation is exact, so the INT8 formula must reproduce the float op with its
ReLU clamped at 127 exactly; plus the rounding rule and the helpers the converter uses.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from calibration.int8_block import (Int8BlockScales, fold_collect_weights, quantize_per_channel,  # noqa: E402
                                    requant_multipliers, sparse_block_int8)
from converters.deploy_op import from_op_layout  # noqa: E402


def _float_block_clamped(x, mask, weights, wc, bc, dense):
    """The float contract with each layer's ReLU output clamped to 127 (what int8 feature codes can hold)."""
    t = lambda a: torch.tensor(np.asarray(a, np.float64))  # noqa: E731  (float64: integer sums stay exact)
    fea, m, d_in, feats = t(x), t(mask), x.shape[1], []
    for w, d_out in zip(weights, dense):
        w = from_op_layout(t(w))
        z = F.conv2d(fea[:, :d_in], w[:, :d_in], padding=1) if d_in else 0
        if d_in < w.shape[1]:
            z = z + m * F.conv2d(fea[:, d_in:], w[:, d_in:], padding=1)
        z = torch.cat([z[:, :d_out], z[:, d_out:] * m], 1)
        fea = torch.clamp(z, 0, 127)
        feats.append(fea)
        d_in = d_out
    y = F.conv2d(torch.cat(feats, 1), from_op_layout(t(wc)), t(bc))
    return y.numpy(), feats


@pytest.mark.parametrize("dense,sparse,hw,density", [
    ([3, 2, 0, 1], [5, 6, 8, 7], (9, 7), 0.4),
    ([8, 8, 8, 8], [0, 0, 0, 0], (5, 6), 0.5),
    ([0, 0, 0, 0], [8, 8, 8, 8], (6, 5), 0.0),
    ([2, 3, 1, 0], [6, 5, 7, 8], (4, 11), 1.0),
])
def test_unit_scales_reproduce_the_float_contract_exactly(dense, sparse, hw, density):
    rng = np.random.default_rng(sum(hw))
    c = 12
    outc = [d + s for d, s in zip(dense, sparse)]
    cin = [c] + outc[:3]
    x = rng.integers(-6, 7, (2, c, *hw)).astype(np.int8)
    mask = (rng.random((2, 1, *hw)) < density).astype(np.float32)
    ws = [rng.integers(-2, 3, (3, 3, ci, co)).astype(np.int8) for ci, co in zip(cin, outc)]
    wc = rng.integers(-3, 4, (1, 1, sum(outc), c)).astype(np.int8)
    bc = rng.integers(-50, 50, c).astype(np.float32)
    ones = Int8BlockScales(1.0, (1.0,) * 4, np.ones(sum(outc), np.float32), np.ones(c, np.float32))
    y, feats = sparse_block_int8(x, mask, ws, wc, bc, dense, sparse, ones)
    y_ref, feats_ref = _float_block_clamped(x, mask, ws, wc, bc, dense)
    if density > 0 or dense[0] > 0:
        assert any((f == 127).any() for f in feats), "the test must reach the clamp"
    else:  # nothing active and nothing dense: every feature is zero, y is the bias
        assert not any(f.any() for f in feats)
    for f, fr in zip(feats, feats_ref):
        np.testing.assert_array_equal(np.transpose(f, (0, 3, 1, 2)), fr)
    np.testing.assert_array_equal(y, y_ref.astype(np.float32))


def test_requantization_rounds_half_to_even_in_float32():
    s = Int8BlockScales(1.0, (2.0, 1.0, 1.0, 1.0), np.ones(4, np.float32), np.ones(1, np.float32))
    r = requant_multipliers(s.x_scale, s.weight_scales[:1], s.feature_scales[0])
    assert r.dtype == np.float32 and r[0] == np.float32(0.5)
    # acc 1, 3, 5 at multiplier 0.5 -> 0.5, 1.5, 2.5 -> 0, 2, 2 (ties to even), negatives -> 0 (ReLU)
    x = np.zeros((1, 1, 1, 3), np.int8)
    x[0, 0, 0] = [1, 3, 5]
    w0 = np.zeros((3, 3, 1, 1), np.int8)
    w0[1, 1, 0, 0] = 1
    ident = np.zeros((3, 3, 1, 1), np.int8)
    ident[1, 1, 0, 0] = 1
    _, feats = sparse_block_int8(x, np.ones((1, 1, 1, 3), np.float32), [w0, ident, ident, ident],
                                 np.zeros((1, 1, 4, 1), np.int8), np.zeros(1, np.float32), [1, 1, 1, 1], [0, 0, 0, 0], s)
    assert feats[0][0, 0, :, 0].tolist() == [0, 2, 2]


def test_multiplier_is_float64_math_rounded_once():
    s_in, s_out = np.float32(0.0123), np.float32(0.0456)
    s_w = np.array([0.001, 0.37, 1e-6], np.float32)
    r = requant_multipliers(s_in, s_w, s_out)
    expect = [np.float32(float(s_in) * float(v) / float(s_out)) for v in s_w]
    assert r.tolist() == expect


def test_weight_quantization_and_folding():
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.2, (3, 3, 5, 4))
    w[..., 2] = 0.0  # an all-zero output channel gets a usable scale and zero codes
    codes, scales = quantize_per_channel(w)
    assert codes.dtype == np.int8 and scales.dtype == np.float32 and scales.shape == (4,)
    assert np.abs(codes).max() == 127 and (codes[..., 2] == 0).all() and scales[2] > 0
    assert np.abs(codes * scales.astype(np.float64) - w).max() <= scales.max() / 2 + 1e-9
    wc = np.ones((1, 1, 6, 2))
    folded = fold_collect_weights(wc, [1.0, 2.0, 3.0, 4.0], [1, 2, 2, 1])
    assert folded[0, 0, :, 0].tolist() == [1.0, 2.0, 2.0, 3.0, 3.0, 4.0]


def test_rejects_float_input():
    s = Int8BlockScales(1.0, (1.0,) * 4, np.ones(4, np.float32), np.ones(1, np.float32))
    with pytest.raises(TypeError, match="int8"):
        sparse_block_int8(np.zeros((1, 1, 2, 2), np.float32), np.ones((1, 1, 2, 2)), [], None, None, [1] * 4,
                          [0] * 4, s)

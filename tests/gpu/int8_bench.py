"""INT8 part of the block benchmark (issue 14): quantize a real block input, the exact INT8 reference in PyTorch,
the dense INT8 baseline, and one benchmark row of the INT8 sparse kernels against it.

- quantize_block: x codes (x_scale = max|x| / 127), per-output-channel weight codes, feature scales max-calibrated
  on the float block's ReLU outputs, folded collect weights (calibration.int8_block helpers: the converter's rule).
- reference_int8: the INT8 contract (calibration/int8_block.py) in torch, on the device: the integer sums as float64
  convolutions (exact: every |partial sum| < 2^53), requantization and the collect epilogue as separate float32
  multiply and add ops (never fused), so the result has the same bits as the kernels; checked bit for bit.
- dense_int8_block: what a dense INT8 engine computes for the block: 4 x (im2col + torch._int_mm int8 -> int32 +
  requantization) and the 1x1 collect as one _int_mm, y float16. An im2col GEMM, not a tuned implicit GEMM (the
  model's dense INT8 baseline, tests/gpu/perf_model.py, assumes 70 % of the INT8 peak): a weaker baseline than
  cuDNN FP16's, stated as such in the results.
"""
from __future__ import annotations

import numpy as np


def _conv3x3(a, w):
    """conv2d with padding 1 that also takes zero input channels (a layer after one without dense outputs)."""
    import torch
    import torch.nn.functional as F
    if a.shape[1] == 0:
        return torch.zeros((a.shape[0], w.shape[0], a.shape[2], a.shape[3]), dtype=a.dtype, device=a.device)
    return F.conv2d(a, w, padding=1)


def _float_features(x, mask, weights, dense, sparse):
    """Float block's ReLU outputs (torch, float32 on x's device), op semantics: for the feature-scale calibration."""
    import torch
    m = (mask != 0).float()
    a, d_in, feats = x.float(), x.shape[1], []
    for l, w in enumerate(weights):
        wt = w.float().permute(3, 2, 0, 1)  # HWIO -> OIHW
        z = _conv3x3(a[:, :d_in], wt[:, :d_in])
        if d_in < wt.shape[1]:
            z = z + m * _conv3x3(a[:, d_in:], wt[:, d_in:])
        z[:, dense[l]:] *= m
        a, d_in = torch.relu(z), dense[l]
        feats.append(a)
    return feats


def quantize_block(x, mask, weights, wc, dense, sparse):
    """(x8, w8 list, wc8, Int8BlockScales) for one block input; weights/wc in the op layout (HWIO, dense-first)."""
    import torch
    from calibration.int8_block import Int8BlockScales, fold_collect_weights, quantize_per_channel
    x_scale = float(x.abs().max()) / 127 or 1.0
    x8 = torch.clamp(torch.round(x.float() / x_scale), -128, 127).to(torch.int8)
    feature_scales = tuple(float(f.max()) / 127 or 1.0 for f in _float_features(x, mask, weights, dense, sparse))
    quant = [quantize_per_channel(w.detach().cpu().double().numpy(), axis=-1) for w in weights]
    cout = [d + s for d, s in zip(dense, sparse)]
    wc8, s_c = quantize_per_channel(fold_collect_weights(wc.detach().cpu().double().numpy(), feature_scales, cout),
                                    axis=-1)
    scales = Int8BlockScales(x_scale, feature_scales, np.concatenate([s for _, s in quant]), s_c)
    dev = x.device
    return (x8, [torch.from_numpy(q).to(dev) for q, _ in quant], torch.from_numpy(wc8).to(dev), scales)


def _requant(acc, r):
    """float32(acc) * r, round half to even, clamp 0..127 (torch ops: one float32 multiply, no FMA)."""
    import torch
    return torch.clamp(torch.round(acc.float() * r), 0, 127)


def reference_int8(x8, mask, w8, wc8, bc, dense, sparse, scales):
    """The INT8 contract on the device; y in bc's dtype, NCHW."""
    import torch
    import torch.nn.functional as F
    from calibration.int8_block import requant_multipliers
    dev = x8.device
    m = (mask != 0).double()
    a, d_in, s_in = x8.double(), x8.shape[1], scales.x_scale
    cout = [d + s for d, s in zip(dense, sparse)]
    feats = []
    for l, (w, s_w) in enumerate(zip(w8, scales.layer_weight_scales(cout))):
        wt = w.double().permute(3, 2, 0, 1)
        acc = _conv3x3(a[:, :d_in], wt[:, :d_in])
        if d_in < wt.shape[1]:
            acc = acc + m * _conv3x3(a[:, d_in:], wt[:, d_in:])
        acc[:, dense[l]:] *= m
        r = torch.from_numpy(requant_multipliers(s_in, s_w, scales.feature_scales[l])).to(dev).view(1, -1, 1, 1)
        a = _requant(acc, r).double()
        feats.append(a)
        d_in, s_in = dense[l], scales.feature_scales[l]
    wct = wc8.double().reshape(-1, wc8.shape[-1]).t().reshape(wc8.shape[-1], -1, 1, 1)
    acc_c = F.conv2d(torch.cat(feats, 1), wct)
    s_c = torch.from_numpy(np.asarray(scales.collect_scales, np.float32)).to(dev).view(1, -1, 1, 1)
    y = acc_c.float() * s_c
    y = y + bc.float().view(1, -1, 1, 1)
    return y.to(bc.dtype)


def dense_int8_block(x8, w8, wc8, r_layers, s_c, bc):
    """Callable: the dense INT8 block (every pixel, every channel) as im2col + torch._int_mm, channels-last int8."""
    import torch
    n, c, h, w = x8.shape
    wm = [w.reshape(-1, w.shape[-1]).contiguous() for w in w8]   # (9 Cin) x Cout, rows [ky][kx][ci]
    wcm = wc8.reshape(-1, wc8.shape[-1]).contiguous()
    rs = [r.view(1, -1) for r in r_layers]
    s_c, bias = s_c.view(1, -1), bc.float().view(1, -1)

    def run():
        a = x8.permute(0, 2, 3, 1).contiguous()                    # N x H x W x C int8
        feats = []
        for l in range(4):
            p = torch.nn.functional.pad(a, (0, 0, 1, 1, 1, 1))
            cols = torch.cat([p[:, ky:ky + h, kx:kx + w, :] for ky in range(3) for kx in range(3)], -1)
            acc = torch._int_mm(cols.reshape(n * h * w, -1), wm[l])
            a = _requant(acc, rs[l]).to(torch.int8).reshape(n, h, w, -1)
            feats.append(a)
        acc = torch._int_mm(torch.cat(feats, -1).reshape(n * h * w, -1), wcm)
        y = acc.float() * s_c
        return (y + bias).to(bc.dtype).reshape(n, h, w, -1)
    return run


def layer_multipliers(scales, dense, sparse, dev):
    """r_l (4 float32 tensors) and s_c on the device."""
    import torch
    from calibration.int8_block import requant_multipliers
    cout = [d + s for d, s in zip(dense, sparse)]
    s_in = [scales.x_scale, *scales.feature_scales[:3]]
    rs = [torch.from_numpy(requant_multipliers(s_in[l], s_w, scales.feature_scales[l])).to(dev)
          for l, s_w in enumerate(scales.layer_weight_scales(cout))]
    return rs, torch.from_numpy(np.asarray(scales.collect_scales, np.float32)).to(dev)


def bench_row(lib, x, m, weights, wc, bc, dense, sparse, timing, iters, warmup, dense_time: bool) -> dict:
    """Quantize, run the INT8 kernels, check bit for bit against reference_int8, time both (and the dense INT8
    baseline at this shape when dense_time)."""
    import torch
    x8, w8, wc8, scales = quantize_block(x, m, weights, wc, dense, sparse)
    mh, bh = m.half(), bc.half()
    op = lambda: lib.run_int8(x8, mh, w8, wc8, bh, dense, sparse, scales)  # noqa: E731
    row = {"density": float((m != 0).float().mean())}
    y = op()
    ref = reference_int8(x8, mh, w8, wc8, bh, dense, sparse, scales)
    row["mismatches"] = int((y != ref).sum())
    row["correct"] = row["mismatches"] == 0 and bool(torch.isfinite(y).all())
    row.update(timing.time_eager_and_graph(op, iters, warmup))
    if dense_time:
        rs, s_c = layer_multipliers(scales, dense, sparse, x.device)
        dense_op = dense_int8_block(x8, w8, wc8, rs, s_c, bh)
        row["dense_int8"] = timing.time_eager_and_graph(dense_op, iters, warmup)
        # the baseline computes the same numbers: at an all-active mask the INT8 contract is the dense block
        full = torch.ones_like(mh)
        want = reference_int8(x8, full, w8, wc8, bh, dense, sparse, scales)
        row["dense_int8"]["exact_at_full_mask"] = bool(torch.equal(dense_op().permute(0, 3, 1, 2), want))
    return row

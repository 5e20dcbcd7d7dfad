"""The INT8 SMSRSparseBlock in numpy: the executable form of the INT8 op contract, and the converter's helpers.

Contract (same text as plugins/smsrSparseBlock/kernels/sparseBlockQuant.h; every implementation must give the same
bits): x is int8 (value ~ x_scale * code), weights are int8 codes with per-output-channel scales, mask / bc / y share
one float type T.

    a_0 = x codes; a_l = f_{l-1} codes (0..127)
    acc_l = conv3x3(a_l[dense_in], w_l[dense_in]) + M * conv3x3(a_l[sparse_in], w_l[sparse_in])   (exact integers)
    acc_l[sparse_out] *= M
    f_l = clip(rint_even(float32(acc_l) * r_l), 0, 127),  r_l = float32(f64(s_in) * f64(s_w_l) / f64(s_f[l]))
    y   = T(float32(float32(acc_c) * s_c) + float32(bc)),  acc_c = collect1x1(concat(f_0..f_3), wc)

s_in is x_scale for layer 0 and feature_scales[l-1] after it. wc holds codes of the collect weights with the feature
scales folded in (fold_collect_weights), so one integer sum covers the four layers.
No PyTorch here: tests and the runtime side use it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QMAX = 127


@dataclass(frozen=True)
class Int8BlockScales:
    """The op's INT8 attributes: x_scale, feature_scales (4), weight_scales (sum Cout_l), collect_scales (C)."""
    x_scale: float
    feature_scales: tuple[float, ...]
    weight_scales: np.ndarray   # float32, concatenated over the 4 layers in the op's (dense-first) channel order
    collect_scales: np.ndarray  # float32, C

    def layer_weight_scales(self, out_channels: list[int]) -> list[np.ndarray]:
        bounds = np.cumsum([0] + list(out_channels))
        return [self.weight_scales[bounds[l]:bounds[l + 1]] for l in range(len(out_channels))]


def requant_multipliers(s_in: float, weight_scales: np.ndarray, s_out: float) -> np.ndarray:
    """r[co] = float32(f64(s_in) * f64(s_w[co]) / f64(s_out)), s_* taken as float32 first (ONNX attributes)."""
    s_in64 = np.float64(np.float32(s_in))
    s_out64 = np.float64(np.float32(s_out))
    return (s_in64 * np.asarray(weight_scales, np.float32).astype(np.float64) / s_out64).astype(np.float32)


def quantize_per_channel(w: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 codes in [-127, 127] and float32 scales max|w|/127 along `axis` (an all-zero channel: 1)."""
    w = np.asarray(w, np.float64)
    axis = axis % w.ndim
    other = tuple(a for a in range(w.ndim) if a != axis)
    amax = np.abs(w).max(axis=other) if other else np.abs(w)
    scales = np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    codes = np.clip(np.rint(w / scales.astype(np.float64).reshape(shape)), -QMAX, QMAX).astype(np.int8)
    return codes, scales


def fold_collect_weights(wc: np.ndarray, feature_scales, out_channels: list[int]) -> np.ndarray:
    """wc (1 x 1 x sum Cout x C, float) with row ci multiplied by the scale of the layer feature it reads."""
    per_row = np.repeat(np.asarray(feature_scales, np.float64), out_channels)
    return np.asarray(wc, np.float64) * per_row.reshape(1, 1, -1, 1)


def _conv3x3(a: np.ndarray, w: np.ndarray, dtype=np.int64) -> np.ndarray:
    """a: N x H x W x Cin integer codes, w: 3 x 3 x Cin x Cout codes -> exact int64 sums (zero padding);
    dtype float64 for the float op."""
    n, h, wd, _ = a.shape
    pad = np.pad(a.astype(dtype), ((0, 0), (1, 1), (1, 1), (0, 0)))
    acc = np.zeros((n, h, wd, w.shape[3]), dtype)
    w64 = w.astype(dtype)
    for ky in range(3):
        for kx in range(3):
            acc += pad[:, ky:ky + h, kx:kx + wd, :] @ w64[ky, kx]
    return acc


def sparse_block_int8(x: np.ndarray, mask: np.ndarray, weights: list[np.ndarray], wc: np.ndarray, bc: np.ndarray,
                      dense: list[int], sparse: list[int], scales: Int8BlockScales,
                      out_dtype=np.float32) -> tuple[np.ndarray, list[np.ndarray]]:
    """The contract on NCHW int8 x, N x 1 x H x W mask, HWIO int8 weights. Returns (y NCHW, feature codes NHWC)."""
    x = np.asarray(x)
    if x.dtype != np.int8:
        raise TypeError(f"x must be int8 codes, got {x.dtype}")
    out_channels = [d + s for d, s in zip(dense, sparse)]
    m = (np.asarray(mask, np.float32)[:, 0] != 0).astype(np.int64)[..., None]  # N x H x W x 1
    a = np.transpose(x, (0, 2, 3, 1))
    d_in = x.shape[1]
    s_in = scales.x_scale
    feats = []
    for l, (w, s_w) in enumerate(zip(weights, scales.layer_weight_scales(out_channels))):
        acc = _conv3x3(a[..., :d_in], w[:, :, :d_in])
        if d_in < w.shape[2]:
            acc += m * _conv3x3(a[..., d_in:], w[:, :, d_in:])
        acc[..., dense[l]:] *= m
        r = requant_multipliers(s_in, s_w, scales.feature_scales[l])
        codes = np.clip(np.rint(acc.astype(np.float32) * r), 0, QMAX).astype(np.int8)
        feats.append(codes)
        a, d_in, s_in = codes, dense[l], scales.feature_scales[l]
    acc_c = np.concatenate(feats, -1).astype(np.int64) @ np.asarray(wc).reshape(-1, wc.shape[-1]).astype(np.int64)
    y = acc_c.astype(np.float32) * np.asarray(scales.collect_scales, np.float32)
    y = y + np.asarray(bc).astype(np.float32)
    return np.transpose(y, (0, 3, 1, 2)).astype(out_dtype), feats


def sparse_block_float(x: np.ndarray, mask: np.ndarray, weights: list[np.ndarray], wc: np.ndarray, bc: np.ndarray,
                       dense: list[int], sparse: list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The float op (same layout and masking as sparse_block_int8) in float64: what the INT8 block approximates.
    Returns (y NCHW, ReLU features NHWC)."""
    m = (np.asarray(mask, np.float32)[:, 0] != 0).astype(np.float64)[..., None]
    a = np.transpose(np.asarray(x, np.float64), (0, 2, 3, 1))
    d_in = a.shape[-1]
    feats = []
    for l, w in enumerate(weights):
        w = np.asarray(w, np.float64)
        acc = _conv3x3(a[..., :d_in], w[:, :, :d_in], np.float64)
        if d_in < w.shape[2]:
            acc += m * _conv3x3(a[..., d_in:], w[:, :, d_in:], np.float64)
        acc[..., dense[l]:] *= m
        a = np.maximum(acc, 0)
        feats.append(a)
        d_in = dense[l]
    y = np.concatenate(feats, -1) @ np.asarray(wc, np.float64).reshape(-1, wc.shape[-1]) + np.asarray(bc, np.float64)
    return np.transpose(y, (0, 3, 1, 2)), feats

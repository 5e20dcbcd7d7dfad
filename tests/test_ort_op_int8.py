"""The INT8 SMSRSparseBlock (CPU op in libsmsr_ort_ops.so) on ONNX Runtime: bit-exact against the numpy contract.

The reference is calibration.int8_block.sparse_block_int8 (the executable form of sparseBlockQuant.h); every
comparison is np.array_equal on y (float32 and float16). Both inner-loop paths run: the AVX-512 VNNI one (where the
CPU has avx512_vnni; CI does) and the plain C++ one (SMSR_CPU_PATH=plain), and they are compared with each other.
Weights are quantized with the converter's helpers (quantize_per_channel, fold_collect_weights) from float weights,
with scales calibrated on a float run of the same block (some codes saturate at 127, as in real graphs).
"""
from __future__ import annotations

import ctypes
import pathlib
import zlib

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from calibration.int8_block import (  # noqa: E402
    Int8BlockScales, fold_collect_weights, quantize_per_channel, sparse_block_int8)
from engine import ort_ops  # noqa: E402

LIB = ort_ops.find_custom_op_library()
needs_lib = pytest.mark.skipif(LIB is None, reason=f"{ort_ops.LIB_NAME} not built ({ort_ops.BUILD_HINT})")
INPUTS = ["x", "mask", "w0", "w1", "w2", "w3", "wc", "bc"]
CPU_HAS_VNNI = "avx512_vnni" in pathlib.Path("/proc/cpuinfo").read_text() if pathlib.Path("/proc/cpuinfo").exists() \
    else False
PATHS = ["default", "plain"]


@pytest.fixture(autouse=True)
def _poisoned_workspace(monkeypatch):
    """The op fills its workspace with 0xff first (SMSR_CPU_POISON=1): reading anything it did not write shows."""
    monkeypatch.setenv("SMSR_CPU_POISON", "1")


def use_path(monkeypatch, path):
    if path == "plain":
        monkeypatch.setenv("SMSR_CPU_PATH", "plain")
    else:
        monkeypatch.delenv("SMSR_CPU_PATH", raising=False)


def int8_path() -> str:
    """The INT8 inner loops the library uses now (its SmsrCpuInt8Path export)."""
    fn = ctypes.CDLL(str(LIB)).SmsrCpuInt8Path
    fn.restype = ctypes.c_char_p
    return fn().decode()


# ---- a quantized block -----------------------------------------------------------------------------------------
def _conv3x3(a, w):
    """a N x H x W x Cin float64, w 3 x 3 x Cin x Cout, zero padding."""
    n, h, wd, _ = a.shape
    pad = np.pad(a, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return sum(pad[:, ky:ky + h, kx:kx + wd] @ w[ky, kx] for ky in range(3) for kx in range(3))


def float_features(x, mask, ws, dense):
    """The float block's ReLU outputs per layer (NHWC float64): the calibration run."""
    m = (mask[:, 0] != 0)[..., None].astype(np.float64)
    a, d_in, feats = np.transpose(x, (0, 2, 3, 1)).astype(np.float64), x.shape[1], []
    for w, d in zip(ws, dense):
        w = w.astype(np.float64)
        z = _conv3x3(a[..., :d_in], w[:, :, :d_in])
        if d_in < w.shape[2]:
            z = z + m * _conv3x3(a[..., d_in:], w[:, :, d_in:])
        z[..., d:] *= m
        a = np.maximum(z, 0)
        feats.append(a)
        d_in = d
    return feats


def quantize_block(x, mask, ws, wc, dense, sparse, headroom=0.7):
    """Float x (NCHW), HWIO weights -> (x codes, weight codes, wc codes, scales), as the converter makes them.

    headroom < 1 puts the feature ranges below the calibrated maxima, so that the clamp at 127 is exercised."""
    out_channels = [d + s for d, s in zip(dense, sparse)]
    x_scale = float(np.float32(max(np.abs(x).max(), 1e-3) / 127))
    feats = float_features(x, mask, ws, dense)
    feature_scales = tuple(float(np.float32(max(f.max(), 1e-3) * headroom / 127)) for f in feats)
    w_codes, w_scales = zip(*(quantize_per_channel(w, axis=-1) for w in ws))
    wc_codes, c_scales = quantize_per_channel(fold_collect_weights(wc, feature_scales, out_channels), axis=-1)
    x_codes = np.clip(np.rint(x / np.float32(x_scale)), -128, 127).astype(np.int8)  # QuantizeLinear, zero point 0
    scales = Int8BlockScales(x_scale, feature_scales, np.concatenate(w_scales).astype(np.float32), c_scales)
    return x_codes, list(w_codes), wc_codes, scales


def random_block(channels, dense, sparse, rng):
    ws, cin = [], channels
    for d, s in zip(dense, sparse):
        ws.append(rng.standard_normal((3, 3, cin, d + s)) / np.sqrt(9 * cin))
        cin = d + s
    wc = rng.standard_normal((1, 1, sum(dense) + sum(sparse), channels)) * 0.1
    bc = (rng.standard_normal(channels) * 0.1).astype(np.float32)
    return ws, wc, bc


def int8_model(w_codes, wc_codes, bc, dense, sparse, scales, x_shape, mask_shape, elem=TensorProto.FLOAT,
               **overrides):
    attrs = dict(dense_channels=list(dense), sparse_channels=list(sparse), plugin_version="2", plugin_namespace="",
                 x_scale=scales.x_scale, feature_scales=list(scales.feature_scales),
                 weight_scales=[float(v) for v in scales.weight_scales],
                 collect_scales=[float(v) for v in scales.collect_scales])
    attrs.update(overrides)
    attrs = {k: v for k, v in attrs.items() if v is not None}
    bc_t = bc.astype(np.float16 if elem == TensorProto.FLOAT16 else np.float32)
    inits = [numpy_helper.from_array(a, n) for n, a in zip(INPUTS[2:], [*w_codes, wc_codes, bc_t])]
    node = helper.make_node("SMSRSparseBlock", INPUTS, ["y"], domain="smsr", **attrs)
    graph = helper.make_graph(
        [node], "block_int8",
        [helper.make_tensor_value_info("x", TensorProto.INT8, list(x_shape)),
         helper.make_tensor_value_info("mask", elem, list(mask_shape))],
        [helper.make_tensor_value_info("y", elem, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("smsr", 1)])
    model.ir_version = 8
    return model.SerializeToString()


def session(model_bytes, threads=2):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    ort_ops.register_custom_ops(opts)
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def run_both(x_codes, mask, w_codes, wc_codes, bc, dense, sparse, scales, half, threads=2):
    """(op y, reference y) for one element type."""
    elem, dt = (TensorProto.FLOAT16, np.float16) if half else (TensorProto.FLOAT, np.float32)
    bc_t = bc.astype(dt)
    model = int8_model(w_codes, wc_codes, bc_t, dense, sparse, scales, x_codes.shape, mask.shape, elem)
    y = session(model, threads).run(None, {"x": x_codes, "mask": mask.astype(dt)})[0]
    ref, _ = sparse_block_int8(x_codes, mask, w_codes, wc_codes, bc_t, dense, sparse, scales, out_dtype=dt)
    return y, ref


def assert_bit_exact(y, ref):
    assert y.shape == ref.shape and y.dtype == ref.dtype
    if not np.array_equal(y, ref):
        diff = np.argwhere(y != ref)
        raise AssertionError(f"{len(diff)} of {y.size} values differ, first at {tuple(diff[0])}: "
                             f"op {y[tuple(diff[0])]} vs reference {ref[tuple(diff[0])]}")


# ---- bit-exact on small random blocks ----------------------------------------------------------------------------
SPLITS = {
    "block0_like": (20, [8, 3, 1, 0], [12, 17, 19, 20]),   # C not a multiple of 16
    "no_dense": (16, [0, 0, 0, 0], [16, 16, 16, 16]),
    "no_sparse_some": (8, [8, 3, 8, 1], [0, 5, 0, 7]),       # dense=0 and sparse=0 layers, D_l not a multiple of 4
    "odd": (13, [5, 0, 7, 2], [3, 9, 1, 10]),
    "wide": (70, [30, 2, 5, 0], [40, 66, 75, 70]),           # > 64 outputs: several output chunks
}


@needs_lib
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("split", sorted(SPLITS))
@pytest.mark.parametrize("density", [0.0, 0.37, 1.0])
def test_bit_exact_random(monkeypatch, path, split, density):
    use_path(monkeypatch, path)
    channels, dense, sparse = SPLITS[split]
    rng = np.random.default_rng(zlib.crc32(f"{split}-{density}".encode()))
    n, h, w = 2, 9, 13  # odd sizes, two images
    ws, wc, bc = random_block(channels, dense, sparse, rng)
    x = rng.standard_normal((n, channels, h, w)) * 2.0
    mask = (rng.random((n, 1, h, w)) < density).astype(np.float32)
    x_codes, w_codes, wc_codes, scales = quantize_block(x, mask, ws, wc, dense, sparse)
    for half in (False, True):
        assert_bit_exact(*run_both(x_codes, mask, w_codes, wc_codes, bc, dense, sparse, scales, half))


@needs_lib
@pytest.mark.parametrize("path", PATHS)
def test_many_tiles_one_and_two_threads(monkeypatch, path):
    """Several 256-pixel work items per phase, extreme x codes (-128, 127), 1 and 2 threads."""
    use_path(monkeypatch, path)
    channels, dense, sparse = SPLITS["block0_like"]
    rng = np.random.default_rng(5)
    ws, wc, bc = random_block(channels, dense, sparse, rng)
    x = rng.standard_normal((1, channels, 37, 41)) * 2.0
    mask = (rng.random((1, 1, 37, 41)) < 0.5).astype(np.float32)
    x_codes, w_codes, wc_codes, scales = quantize_block(x, mask, ws, wc, dense, sparse)
    x_codes[0, :, :3] = -128
    x_codes[0, :, 3:6] = 127
    for threads in (1, 2):
        assert_bit_exact(*run_both(x_codes, mask, w_codes, wc_codes, bc, dense, sparse, scales, False, threads))


# ---- the official block 0 at 48 x 48 with its real mask ---------------------------------------------------------------
@pytest.fixture(scope="module")
def official_block0(official_model, set5_lr_images):
    """Block 0 of the official x2 model on a 48 x 48 crop of Set5 'butterfly': its real input and mask, weights
    in the op's layout, quantized like the converter does (scales calibrated on this crop)."""
    import torch

    from converters.deploy_op import op_weights

    lr = set5_lr_images["butterfly"][40:88, 40:88]
    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))[None].astype(np.float32))
        x = official_model.head(official_model.sub_mean(t))
        smm = official_model.body[0]
        mask = smm.spatial_mask(x)
        ws, wc, dense, sparse = op_weights(smm.body)
        bc = smm.body.collect.bias.detach().numpy().astype(np.float32)
    x, mask = x.numpy(), mask.numpy().astype(np.float32)
    ws, wc = [w.numpy() for w in ws], wc.numpy()
    assert 0.05 < mask.mean() < 0.95, "the crop should have a partial mask"
    x_codes, w_codes, wc_codes, scales = quantize_block(x, mask, ws, wc, dense, sparse, headroom=1.0)
    return x_codes, mask, w_codes, wc_codes, bc, dense, sparse, scales


@needs_lib
@pytest.mark.parametrize("half", [False, True])
def test_official_block0_bit_exact_both_paths(monkeypatch, official_block0, half):
    outs = {}
    for path in PATHS:
        use_path(monkeypatch, path)
        y, ref = run_both(*official_block0, half)
        assert_bit_exact(y, ref)
        outs[path] = y
    assert np.array_equal(outs["default"], outs["plain"])


@needs_lib
def test_paths_are_the_ones_claimed(monkeypatch):
    """VNNI is chosen on a CPU with avx512_vnni (CI's machines have it), the plain loops when forced."""
    monkeypatch.delenv("SMSR_CPU_PATH", raising=False)
    assert int8_path() == ("AVX-512 VNNI" if CPU_HAS_VNNI else "plain C++")
    monkeypatch.setenv("SMSR_CPU_PATH", "plain")
    assert int8_path() == "plain C++"


# ---- bad nodes: clear messages ------------------------------------------------------------------------------------------
@pytest.fixture
def small():
    channels, dense, sparse = 8, [2, 3, 0, 4], [6, 5, 8, 4]
    rng = np.random.default_rng(1)
    ws, wc, bc = random_block(channels, dense, sparse, rng)
    x = rng.standard_normal((1, channels, 5, 6))
    mask = (rng.random((1, 1, 5, 6)) < 0.5).astype(np.float32)
    x_codes, w_codes, wc_codes, scales = quantize_block(x, mask, ws, wc, dense, sparse)
    return x_codes, mask, w_codes, wc_codes, bc, dense, sparse, scales


def _run(model, x_codes, mask):
    session(model).run(None, {"x": x_codes, "mask": mask})


@needs_lib
@pytest.mark.parametrize("attr,value,pattern", [
    ("x_scale", None, r"missing float attribute 'x_scale' \(the scale of x's QuantizeLinear node\)"),
    ("x_scale", 0.0, r"x_scale must be finite and > 0 \(got attribute 'x_scale' = 0\)"),
    ("x_scale", float("nan"), r"x_scale must be finite and > 0 \(got attribute 'x_scale' = nan\)"),
    ("feature_scales", None, r"missing floats attribute 'feature_scales'"),
    ("feature_scales", [0.1, 0.1, 0.1], r"attribute 'feature_scales' has 3 values, expected 4 \(one per layer\)"),
    ("feature_scales", [0.1, -0.1, 0.1, 0.1],
     r"every feature_scales value must be finite and > 0 \(got attribute 'feature_scales'\[1\] = -0.1\)"),
    ("weight_scales", [0.01] * 31, r"attribute 'weight_scales' has 31 values, expected 32 \(sum of dense_channels"),
    ("weight_scales", [0.01] * 31 + [float("inf")],
     r"every weight_scales value must be finite and > 0 \(got attribute 'weight_scales'\[31\] = inf\)"),
    ("collect_scales", None, r"missing floats attribute 'collect_scales'"),
    ("collect_scales", [0.01] * 7, r"attribute 'collect_scales' has 7 values, expected 8 \(C = x's channels"),
    ("collect_scales", [0.01] * 7 + [0.0],
     r"every collect_scales value must be finite and > 0 \(got attribute 'collect_scales'\[7\] = 0\)"),
])
def test_bad_scale_attributes(small, attr, value, pattern):
    x_codes, mask, w_codes, wc_codes, bc, dense, sparse, scales = small
    model = int8_model(w_codes, wc_codes, bc, dense, sparse, scales, x_codes.shape, mask.shape, **{attr: value})
    with pytest.raises(Exception, match=r"SMSRSparseBlock \(INT8\) node '.*': " + pattern):
        _run(model, x_codes, mask)


@needs_lib
def test_symbolic_shapes_and_nonbinary_mask(small):
    """Symbolic N/C/H/W (shapes known only at run time) give the same bits; a mask value other than 0/1 counts as
    active where nonzero, like the float op (and -0.0 as inactive, as in the reference)."""
    x_codes, mask, w_codes, wc_codes, bc, dense, sparse, scales = small
    model = int8_model(w_codes, wc_codes, bc, dense, sparse, scales, ["N", "C", "H", "W"], ["N", 1, "H", "W"])
    sess = session(model)
    ref, _ = sparse_block_int8(x_codes, mask, w_codes, wc_codes, bc, dense, sparse, scales)
    assert_bit_exact(sess.run(None, {"x": x_codes, "mask": mask})[0], ref)
    odd = np.where(mask != 0, np.float32(0.5), np.float32(-0.0))
    assert_bit_exact(sess.run(None, {"x": x_codes, "mask": odd})[0], ref)


@needs_lib
def test_collect_scales_count_checked_at_run_time_with_symbolic_shapes(small):
    x_codes, mask, w_codes, wc_codes, bc, dense, sparse, scales = small
    bad = Int8BlockScales(scales.x_scale, scales.feature_scales, scales.weight_scales, scales.collect_scales[:7])
    model = int8_model(w_codes, wc_codes, bc, dense, sparse, bad, ["N", "C", "H", "W"], ["N", 1, "H", "W"])
    with pytest.raises(Exception, match=r"'collect_scales' has 7 values, expected 8"):
        _run(model, x_codes, mask)


@needs_lib
def test_weight_of_wrong_shape(small):
    x_codes, mask, w_codes, wc_codes, bc, dense, sparse, scales = small
    w_codes = list(w_codes)
    w_codes[1] = w_codes[1][:, :, :5]
    model = int8_model(w_codes, wc_codes, bc, dense, sparse, scales, x_codes.shape, mask.shape)
    with pytest.raises(Exception, match=r"input 3 \(w1\) has shape \[3,3,5,8\], expected \[3,3,8,8\]"):
        _run(model, x_codes, mask)


@needs_lib
def test_weight_of_wrong_type(small):
    """Float weights beside an int8 x: the INT8 variant says what it expected (not ORT's "no kernel def matches")."""
    x_codes, mask, w_codes, wc_codes, bc, dense, sparse, scales = small
    w_codes = list(w_codes)
    w_codes[0] = w_codes[0].astype(np.float32)
    model = int8_model(w_codes, wc_codes, bc, dense, sparse, scales, x_codes.shape, mask.shape)
    with pytest.raises(Exception, match=r"input 2 \(w0\) has element type float32, expected int8 weight codes"):
        _run(model, x_codes, mask)

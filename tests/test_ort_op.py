"""The CPU SMSRSparseBlock op (libsmsr_ort_ops.so) on ONNX Runtime against a float64 numpy reference.

The reference is written from the op contract (DESIGN.md §2), channels dense-first:
    z = conv3x3(x[dense_in], W[:, dense_in]) + M * conv3x3(x[sparse_in], W[:, sparse_in]);  z[sparse_out] *= M
    f_l = ReLU(z);  y = conv1x1(concat(f_0..f_3), wc) + bc
Mask values: the graph feeds exactly 0/1; the op treats any nonzero value as active (tested below).
Weights: the tests and the reference hold them as OIHW (as torch has them); block_model() puts them into the op's
layout (plugin_version 2: w_l 3 x 3 x Cin x Cout, wc 1 x 1 x K x C) unless told to pass them as they are.
Skipped when the library is not built (see engine/ort_ops.py for how to build it).
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from engine import ort_ops  # noqa: E402

LIB = ort_ops.find_custom_op_library()
needs_lib = pytest.mark.skipif(LIB is None, reason=f"{ort_ops.LIB_NAME} not built ({ort_ops.BUILD_HINT})")

INPUTS = ["x", "mask", "w0", "w1", "w2", "w3", "wc", "bc"]


# ---- reference ---------------------------------------------------------------------------------------------
def conv3x3(x, w):
    """x N x Cin x H x W, w Cout x Cin x 3 x 3, zero padding 1 (float64)."""
    n, _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], h, wd))
    for ky in range(3):
        for kx in range(3):
            out += np.einsum("oc,nchw->nohw", w[:, :, ky, kx], xp[:, :, ky:ky + h, kx:kx + wd])
    return out


def reference(x, mask, ws, wc, bc, dense, sparse):
    x, mask = x.astype(np.float64), mask.astype(np.float64)
    m = (mask != 0).astype(np.float64)
    feats, fea, d_in = [], x, x.shape[1]
    for w, d_out in zip(ws, dense):
        w = w.astype(np.float64)
        z = conv3x3(fea[:, :d_in], w[:, :d_in])
        if d_in < w.shape[1]:
            z = z + m * conv3x3(fea[:, d_in:], w[:, d_in:])
        z[:, d_out:] *= m[:, 0:1]
        fea = np.maximum(z, 0)
        feats.append(fea)
        d_in = d_out
    cat = np.concatenate(feats, 1)
    wc2 = wc.reshape(wc.shape[0], -1).astype(np.float64)
    return np.einsum("oc,nchw->nohw", wc2, cat) + bc.astype(np.float64)[None, :, None, None]


# ---- models ------------------------------------------------------------------------------------------------
def make_weights(channels, dense, sparse, rng, dtype=np.float32):
    ws, cin = [], channels
    for d, s in zip(dense, sparse):
        ws.append((rng.standard_normal((d + s, cin, 3, 3)) / np.sqrt(9 * cin)).astype(dtype))
        cin = d + s
    wc = (rng.standard_normal((channels, sum(dense) + sum(sparse), 1, 1)) * 0.1).astype(dtype)
    bc = (rng.standard_normal(channels) * 0.1).astype(dtype)
    return ws, wc, bc


def op_layout(w):
    """OIHW (or a 2-D C x K matrix) -> the op's 3 x 3 x Cin x Cout (or K x C) layout."""
    return np.ascontiguousarray(w.T if w.ndim == 2 else w.transpose(2, 3, 1, 0))


def block_model(ws, wc, bc, dense, sparse, x_shape, mask_shape, elem=TensorProto.FLOAT, inputs=None,
                oihw_as_is=False, **attr_overrides):
    attrs = dict(dense_channels=list(dense), sparse_channels=list(sparse), plugin_version="2", plugin_namespace="")
    attrs.update(attr_overrides)
    attrs = {k: v for k, v in attrs.items() if v is not None}
    if not oihw_as_is:
        ws, wc = [op_layout(w) for w in ws], op_layout(wc)
    inits = [numpy_helper.from_array(a, n) for n, a in zip(INPUTS[2:], [*ws, wc, bc])]
    node = helper.make_node("SMSRSparseBlock", inputs or INPUTS, ["y"], domain="smsr", **attrs)
    graph = helper.make_graph(
        [node], "block",
        [helper.make_tensor_value_info("x", elem, list(x_shape)),
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


def random_mask(rng, n, h, w, density):
    return (rng.random((n, 1, h, w)) < density).astype(np.float32)


# ---- correctness ---------------------------------------------------------------------------------------------
SPLITS = {
    "official_block0": (64, [24, 9, 3, 0], [40, 55, 61, 64]),
    "official_block3": (64, [3, 0, 0, 0], [61, 64, 64, 64]),
    "no_dense": (16, [0, 0, 0, 0], [16, 16, 16, 16]),
    "random": (12, [5, 0, 7, 2], [3, 9, 1, 10]),
    "no_sparse_some": (8, [8, 3, 8, 1], [0, 5, 0, 7]),
}


@pytest.fixture(autouse=True)
def _poisoned_workspace(monkeypatch):
    """The op fills its workspace with NaN first (SMSR_CPU_POISON=1): reading anything it did not write shows."""
    monkeypatch.setenv("SMSR_CPU_POISON", "1")


@needs_lib
@pytest.mark.parametrize("split", sorted(SPLITS))
@pytest.mark.parametrize("density", [0.0, 0.05, 0.37, 1.0])
def test_float32_matches_reference(split, density):
    channels, dense, sparse = SPLITS[split]
    rng = np.random.default_rng(zlib.crc32(f"{split}-{density}".encode()))
    n, h, w = 2, 13, 21  # odd sizes, two images
    ws, wc, bc = make_weights(channels, dense, sparse, rng)
    x = (rng.random((n, channels, h, w)) * 255).astype(np.float32)
    mask = random_mask(rng, n, h, w, density)
    sess = session(block_model(ws, wc, bc, dense, sparse, x.shape, mask.shape))
    y = sess.run(None, {"x": x, "mask": mask})[0]
    ref = reference(x, mask, ws, wc, bc, dense, sparse)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.abs(y - ref).max() <= 1e-3, f"max abs error {np.abs(y - ref).max()} (max |ref| {np.abs(ref).max()})"


@needs_lib
@pytest.mark.parametrize("density", [0.0, 0.37, 1.0])
def test_float16_matches_reference(density):
    channels, dense, sparse = SPLITS["official_block0"]
    rng = np.random.default_rng(7)
    n, h, w = 2, 11, 9
    ws, wc, bc = make_weights(channels, dense, sparse, rng, np.float16)
    x = (rng.random((n, channels, h, w)) * 255).astype(np.float16)
    mask = random_mask(rng, n, h, w, density).astype(np.float16)
    sess = session(block_model(ws, wc, bc, dense, sparse, x.shape, mask.shape, TensorProto.FLOAT16))
    y = sess.run(None, {"x": x, "mask": mask})[0]
    assert y.dtype == np.float16
    ref = reference(x, mask, ws, wc, bc, dense, sparse)
    rel = np.abs(y.astype(np.float64) - ref).max() / np.abs(ref).max()
    assert rel <= 1e-2, f"relative error {rel}"


@needs_lib
@pytest.mark.parametrize("path", ["blas", "blas-gather", "blas-span"])
def test_openblas_paths_match_reference(monkeypatch, path):
    """The OpenBLAS paths (used where the CPU lacks AVX-512; forced here with SMSR_CPU_PATH) agree too."""
    monkeypatch.setenv("SMSR_CPU_PATH", path)
    channels, dense, sparse = SPLITS["official_block0"]
    rng = np.random.default_rng(13)
    n, h, w = 2, 15, 17
    ws, wc, bc = make_weights(channels, dense, sparse, rng)
    x = (rng.random((n, channels, h, w)) * 255).astype(np.float32)
    mask = random_mask(rng, n, h, w, 0.37)
    mask[0, 0, :5] = 1  # some fully active rows (whole-row spans in the cost model)
    y = session(block_model(ws, wc, bc, dense, sparse, x.shape, mask.shape)).run(None, {"x": x, "mask": mask})[0]
    assert np.abs(y - reference(x, mask, ws, wc, bc, dense, sparse)).max() <= 1e-3


@needs_lib
def test_many_tiles_and_threads_agree():
    """A larger image (several 256-pixel tiles per phase): 1 and 2 threads give the reference."""
    channels, dense, sparse = SPLITS["random"]
    rng = np.random.default_rng(3)
    n, h, w = 1, 41, 67
    ws, wc, bc = make_weights(channels, dense, sparse, rng)
    x = (rng.random((n, channels, h, w)) * 255).astype(np.float32)
    mask = random_mask(rng, n, h, w, 0.4)
    model = block_model(ws, wc, bc, dense, sparse, x.shape, mask.shape)
    ref = reference(x, mask, ws, wc, bc, dense, sparse)
    for threads in (1, 2):
        y = session(model, threads).run(None, {"x": x, "mask": mask})[0]
        assert np.abs(y - ref).max() <= 1e-3


@needs_lib
def test_collect_weight_as_matrix():
    """wc may also be given as a sum(D_l+S_l) x C matrix (same values as the 1 x 1 x K x C layout)."""
    channels, dense, sparse = SPLITS["random"]
    rng = np.random.default_rng(17)
    ws, wc, bc = make_weights(channels, dense, sparse, rng)
    x = (rng.random((1, channels, 8, 9)) * 255).astype(np.float32)
    mask = random_mask(rng, 1, 8, 9, 0.5)
    y4 = session(block_model(ws, wc, bc, dense, sparse, x.shape, mask.shape)).run(None, {"x": x, "mask": mask})[0]
    y2 = session(block_model(ws, wc[:, :, 0, 0], bc, dense, sparse, x.shape, mask.shape)).run(
        None, {"x": x, "mask": mask})[0]
    np.testing.assert_array_equal(y4, y2)


@needs_lib
def test_nonbinary_mask_counts_as_active_where_nonzero():
    """Documented choice: a mask value other than 0/1 is accepted and means 'active' when nonzero."""
    channels, dense, sparse = SPLITS["random"]
    rng = np.random.default_rng(5)
    ws, wc, bc = make_weights(channels, dense, sparse, rng)
    x = (rng.random((1, channels, 9, 10)) * 255).astype(np.float32)
    binary = random_mask(rng, 1, 9, 10, 0.5)
    sess = session(block_model(ws, wc, bc, dense, sparse, x.shape, binary.shape))
    y_binary = sess.run(None, {"x": x, "mask": binary})[0]
    y_scaled = sess.run(None, {"x": x, "mask": binary * 0.5})[0]
    np.testing.assert_array_equal(y_binary, y_scaled)


@needs_lib
def test_dynamic_shapes_are_checked_at_run_time():
    """Symbolic N/H/W: the model builds; a mask whose size differs from x at run time is rejected clearly."""
    channels, dense, sparse = SPLITS["random"]
    rng = np.random.default_rng(11)
    ws, wc, bc = make_weights(channels, dense, sparse, rng)
    sess = session(block_model(ws, wc, bc, dense, sparse, ["N", channels, "H", "W"], ["N", 1, "H", "W"]))
    x = (rng.random((1, channels, 7, 8)) * 255).astype(np.float32)
    good = random_mask(rng, 1, 7, 8, 0.5)
    y = sess.run(None, {"x": x, "mask": good})[0]
    assert np.abs(y - reference(x, good, ws, wc, bc, dense, sparse)).max() <= 1e-3
    with pytest.raises(Exception, match=r"input 1 \(mask\) has shape \[1,1,7,9\], expected \[1,1,7,8\]"):
        sess.run(None, {"x": x, "mask": random_mask(rng, 1, 7, 9, 0.5)})


@needs_lib
def test_unknown_rank_inputs_are_checked_at_run_time():
    """Graphs without value_info (e.g. after FP16 conversion) give x an unknown rank at session creation."""
    channels, dense, sparse = SPLITS["random"]
    rng = np.random.default_rng(12)
    ws, wc, bc = make_weights(channels, dense, sparse, rng)
    model = onnx.load_from_string(block_model(ws, wc, bc, dense, sparse, [1], [1]))
    for vi in model.graph.input:
        vi.type.tensor_type.ClearField("shape")  # rank unknown
    sess = session(model.SerializeToString())
    x = (rng.random((2, channels, 5, 6)) * 255).astype(np.float32)
    mask = random_mask(rng, 2, 5, 6, 0.4)
    y = sess.run(None, {"x": x, "mask": mask})[0]
    assert np.abs(y - reference(x, mask, ws, wc, bc, dense, sparse)).max() <= 1e-3
    with pytest.raises(Exception, match=r"input 0 \(x\) must be 4-D"):
        sess.run(None, {"x": x[0], "mask": mask})


# ---- malformed nodes: a clear error, never a crash ---------------------------------------------------------------
def _build_and_run(model_bytes, x, mask):
    session(model_bytes).run(None, {"x": x, "mask": mask})


@pytest.fixture
def small():
    channels, dense, sparse = 8, [2, 3, 0, 4], [6, 5, 8, 4]
    rng = np.random.default_rng(1)
    ws, wc, bc = make_weights(channels, dense, sparse, rng)
    x = (rng.random((1, channels, 5, 6)) * 255).astype(np.float32)
    mask = random_mask(rng, 1, 5, 6, 0.5)
    return channels, dense, sparse, ws, wc, bc, x, mask


@needs_lib
def test_weight_rows_not_matching_attributes(small):
    channels, dense, sparse, ws, wc, bc, x, mask = small
    bad_dense = [3, 3, 0, 4]  # layer 0 would have 9 outputs, w0 has 8 rows
    with pytest.raises(Exception, match=r"input 2 \(w0\) has shape \[3,3,8,8\], expected \[3,3,8,9\]"):
        _build_and_run(block_model(ws, wc, bc, bad_dense, sparse, x.shape, mask.shape), x, mask)


@needs_lib
def test_weight_input_channels_wrong(small):
    channels, dense, sparse, ws, wc, bc, x, mask = small
    ws = list(ws)
    ws[2] = ws[2][:, :5]  # layer 2 needs Cin = D_1 + S_1 = 8
    with pytest.raises(Exception, match=r"input 4 \(w2\) has shape \[3,3,5,8\], expected \[3,3,8,8\]"):
        _build_and_run(block_model(ws, wc, bc, dense, sparse, x.shape, mask.shape), x, mask)


@needs_lib
def test_collect_weight_wrong(small):
    channels, dense, sparse, ws, wc, bc, x, mask = small
    with pytest.raises(Exception, match=r"input 6 \(wc\) has shape \[1,1,31,8\], expected \[1,1,32,8\]"):
        _build_and_run(block_model(ws, wc[:, :31], bc, dense, sparse, x.shape, mask.shape), x, mask)


@needs_lib
def test_old_oihw_layout_is_rejected_naming_the_expected_shape(small):
    """A plugin_version 1 graph (OIHW weights) fails with the shape the op wants, not with wrong numbers."""
    channels, dense, sparse, ws, wc, bc, x, mask = small
    with pytest.raises(Exception, match=r"input 2 \(w0\) has shape \[8,8,3,3\], expected \[3,3,8,8\] "
                                        r"\(3 x 3 x Cin_0 x Cout_0, plugin_version 2 layout"):
        _build_and_run(block_model(ws, wc, bc, dense, sparse, x.shape, mask.shape, oihw_as_is=True), x, mask)
    ws_ok = [op_layout(w) for w in ws]  # only wc left in OIHW
    with pytest.raises(Exception, match=r"input 6 \(wc\) has shape \[8,32,1,1\], expected \[1,1,32,8\]"):
        _build_and_run(block_model(ws_ok, wc, bc, dense, sparse, x.shape, mask.shape, oihw_as_is=True), x, mask)


@needs_lib
def test_mask_wrong_shape(small):
    channels, dense, sparse, ws, wc, bc, x, mask = small
    mask2 = np.concatenate([mask, mask], 1)
    with pytest.raises(Exception, match=r"input 1 \(mask\) has shape \[1,2,5,6\], expected \[1,1,5,6\]"):
        _build_and_run(block_model(ws, wc, bc, dense, sparse, x.shape, mask2.shape), x, mask2)


@needs_lib
def test_missing_input(small):
    channels, dense, sparse, ws, wc, bc, x, mask = small
    model = block_model(ws, wc, bc, dense, sparse, x.shape, mask.shape, inputs=INPUTS[:-1])
    with pytest.raises(Exception, match=r"SMSRSparseBlock.*input size 7"):
        _build_and_run(model, x, mask)


@needs_lib
@pytest.mark.parametrize("attr,value,pattern", [
    ("dense_channels", [2, 3, 0], r"'dense_channels' has 3 values, expected 4"),
    ("sparse_channels", None, r"missing ints attribute 'sparse_channels'"),
    ("sparse_channels", [6, 5, -8, 4], r"'sparse_channels'\[2\] = -8 is out of range"),
])
def test_bad_attributes(small, attr, value, pattern):
    channels, dense, sparse, ws, wc, bc, x, mask = small
    model = block_model(ws, wc, bc, dense, sparse, x.shape, mask.shape, **{attr: value})
    with pytest.raises(Exception, match=pattern):
        _build_and_run(model, x, mask)


@needs_lib
def test_layer_without_channels(small):
    channels, dense, sparse, ws, wc, bc, x, mask = small
    model = block_model(ws, wc, bc, [2, 3, 0, 0], [6, 5, 8, 0], x.shape, mask.shape)
    with pytest.raises(Exception, match=r"layer 3 has no output channels"):
        _build_and_run(model, x, mask)


@needs_lib
def test_x_not_4d(small):
    channels, dense, sparse, ws, wc, bc, x, mask = small
    x3 = x[0]
    with pytest.raises(Exception, match=r"x\) must be 4-D"):
        _build_and_run(block_model(ws, wc, bc, dense, sparse, x3.shape, mask.shape), x3, mask)


# ---- library discovery ---------------------------------------------------------------------------------------------
def test_missing_library_gives_build_hint(monkeypatch, tmp_path):
    monkeypatch.delenv(ort_ops.ENV_VAR, raising=False)
    monkeypatch.setattr(ort_ops, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(ort_ops, "PACKAGE_LIB_DIR", tmp_path / "engine" / "lib")
    assert ort_ops.find_custom_op_library() is None
    with pytest.raises(ort_ops.CustomOpLibraryError, match=r"not found.*cmake .*smsr_ort_ops"):
        ort_ops.register_custom_ops(ort.SessionOptions())


def test_search_order_never_picks_other_build_dirs(monkeypatch, tmp_path):
    """$SMSR_ORT_OPS_LIB, then <repo>/build/..., then the installed engine/lib/ copy; never build-<other>/."""
    monkeypatch.delenv(ort_ops.ENV_VAR, raising=False)
    monkeypatch.setattr(ort_ops, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(ort_ops, "PACKAGE_LIB_DIR", tmp_path / "engine" / "lib")

    def put(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"lib")
        return path
    put(tmp_path / "build-experiment" / "plugins" / "onnxruntime" / ort_ops.LIB_NAME)  # stale experiment
    assert ort_ops.find_custom_op_library() is None
    installed = put(tmp_path / "engine" / "lib" / ort_ops.LIB_NAME)
    assert ort_ops.find_custom_op_library() == installed
    standard = put(tmp_path / "build" / "plugins" / "onnxruntime" / ort_ops.LIB_NAME)
    assert ort_ops.find_custom_op_library() == standard
    env = put(tmp_path / "elsewhere" / ort_ops.LIB_NAME)
    monkeypatch.setenv(ort_ops.ENV_VAR, str(env))
    assert ort_ops.find_custom_op_library() == env.resolve()


def test_env_var_to_missing_file(monkeypatch, tmp_path):
    monkeypatch.setenv(ort_ops.ENV_VAR, str(tmp_path / "nope.so"))
    with pytest.raises(ort_ops.CustomOpLibraryError, match=r"SMSR_ORT_OPS_LIB=.*does not name an existing file"):
        ort_ops.find_custom_op_library()


def test_unloadable_library(monkeypatch, tmp_path):
    fake = tmp_path / ort_ops.LIB_NAME
    fake.write_bytes(b"not a shared library")
    monkeypatch.setenv(ort_ops.ENV_VAR, str(fake))
    with pytest.raises(ort_ops.CustomOpLibraryError, match=r"cannot load"):
        ort_ops.register_custom_ops(ort.SessionOptions())


def test_error_class_is_runtime_error():
    assert issubclass(ort_ops.CustomOpLibraryError, RuntimeError)


def test_ort_ops_does_not_import_torch():
    import subprocess
    import sys
    code = "import sys, engine.ort_ops; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ort_ops.REPO_ROOT).returncode == 0

"""INT8 deploy graphs that are INT8 inside the SMSRSparseBlock nodes (issue 14): the converter's graph, its
validator, and (with the ONNX Runtime CPU op) accuracy on a crop and bit-exactness against the numpy reference."""
from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from calibration.data import CalibrationConfig
from calibration.int8_block import fold_collect_weights, quantize_per_channel
from calibration.int8_graph import (Int8GraphError, feature_tensors, int8_block_names, is_int8_block,
                                    validate_int8_blocks)
from calibration.qdq import validate_qdq

TINY = CalibrationConfig(mode="patches", max_images=3, patch_size=32, patches_per_image=3)


@pytest.fixture(scope="module")
def int8_graphs(onnx_graphs, set5_dir, tmp_path_factory):
    """Tiny calibration (9 LR crops of 3 Set5 images), both variants of the deploy graph."""
    from calibration.pipeline import make_int8_graphs
    out = {}
    for mode in ("int8", "float"):
        d = tmp_path_factory.mktemp(f"int8_{mode}")
        out[mode] = make_int8_graphs(onnx_graphs["reference"], onnx_graphs["deploy"], set5_dir / "LR_bicubic" / "X2",
                                     d, 2, "max", TINY, log=lambda m: None, int8_blocks=mode)
    return out


def _parts(model):
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    return inits, producer


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def test_deploy_graph_blocks_are_int8(int8_graphs, onnx_graphs):
    art = int8_graphs["int8"]
    model = onnx.load(str(art.deploy))
    validate_qdq(model)
    inits, producer = _parts(model)
    blocks = [n for n in model.graph.node if n.op_type == "SMSRSparseBlock"]
    assert len(blocks) == 5 and all(is_int8_block(n) for n in blocks)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["smsr.int8.blocks"] == "int8" and meta["smsr.int8.int8_blocks"].split(",") == [n.name for n in blocks]
    assert art.report["scheme"]["int8_blocks"] == "int8"
    assert art.report["graphs"]["deploy"]["int8_custom_nodes"] == [n.name for n in blocks]
    assert art.report["graphs"]["deploy"]["float_custom_nodes"] == []
    ranges = art.report["ranges"]
    ref = onnx.load(str(onnx_graphs["reference"]))
    feats = feature_tensors(ref)
    fp32 = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(onnx_graphs["deploy"])).graph.initializer}
    shared = 0
    for node in blocks:
        a = _attrs(node)
        q = producer[node.input[0]]
        assert q.op_type == "QuantizeLinear"
        assert np.float32(inits[q.input[1]]) == np.float32(a["x_scale"])
        assert inits[q.input[2]].dtype == np.int8 and inits[q.input[2]] == 0
        # x_scale: the block input's calibrated range / 127 (the same tensor's Q node)
        assert a["x_scale"] == pytest.approx(ranges[q.input[0]]["amax"] / 127, rel=1e-6)
        shared += q.input[0] == "/head/head.2/Conv_output_0"
        # feature scales: the reference graph's four SMB ReLU outputs / 127
        prefix = node.name[: -len("SMSRSparseBlock")]
        assert a["feature_scales"] == pytest.approx([ranges[t]["amax"] / 127 for t in feats[prefix]], rel=1e-6)
        dense, sparse = a["dense_channels"], a["sparse_channels"]
        cout = [d + s for d, s in zip(dense, sparse)]
        w_scales = []
        for l in range(4):
            w8 = inits[node.input[2 + l]]
            codes, s = quantize_per_channel(fp32[node.input[2 + l][: -len("_int8")]], axis=-1)
            assert w8.dtype == np.int8 and np.array_equal(w8, codes)
            w_scales.append(s)
        np.testing.assert_array_equal(np.asarray(a["weight_scales"], np.float32), np.concatenate(w_scales))
        wc_codes, c_scales = quantize_per_channel(
            fold_collect_weights(fp32[node.input[6][: -len("_int8")]], a["feature_scales"], cout), axis=-1)
        assert np.array_equal(inits[node.input[6]], wc_codes)
        np.testing.assert_array_equal(np.asarray(a["collect_scales"], np.float32), c_scales)
        assert inits[node.input[7]].dtype == np.float32  # bc, like mask and y, in the graph's float type
    assert shared == 1  # block 0 reads the head output, which the Q/DQ pass had already quantized
    # the float weights of the op are gone from the graph
    assert not any(n.endswith(".body.w0") for n in inits)


def test_float_escape_hatch(int8_graphs):
    art = int8_graphs["float"]
    model = onnx.load(str(art.deploy))
    validate_qdq(model)
    assert int8_block_names(model) == []
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["smsr.int8.blocks"] == "float" and len(meta["smsr.int8.float_blocks"].split(",")) == 5
    assert art.report["scheme"]["int8_blocks"] == "float"
    assert "stays float" in art.report["scheme"]["custom_op"]
    assert len(art.report["graphs"]["deploy"]["float_custom_nodes"]) == 5


def test_report_says_which_blocks_run_int8(int8_graphs):
    art = int8_graphs["int8"]
    md = art.report_md.read_text()
    assert "INT8 SMSRSparseBlock scales" in md and "/body.4/body/SMSRSparseBlock (INT8 SMSRSparseBlock)" in md
    assert len(art.report["int8_block_scales"]) == 5


def _first_block(model):
    return next(n for n in model.graph.node if n.op_type == "SMSRSparseBlock")


@pytest.mark.parametrize("damage, message", [
    ("x_scale", r"x_scale .* differs from the scale .* of QuantizeLinear"),
    ("no_quantize", r"must be the output of a QuantizeLinear node"),
    ("float_weight", r"w1 must be int8 codes, got float32"),
    ("weight_shape", r"w2 has shape \(3, 3, 64, 63\), expected \(3, 3, 64, 64\)"),
    ("feature_scales", r"feature_scales has 3 values, expected 4"),
    ("weight_scales", r"every weight_scales value must be finite and > 0"),
    ("missing_attr", r"lacks attribute\(s\) collect_scales"),
    ("quantized_float_node", r"no INT8 attributes"),
])
def test_validator_refuses_bad_int8_nodes(int8_graphs, damage, message):
    model = copy.deepcopy(onnx.load(str(int8_graphs["int8"].deploy)))
    validate_int8_blocks(model)
    node = _first_block(model)
    a = _attrs(node)

    def set_attr(name, value):
        keep = [x for x in node.attribute if x.name != name]
        del node.attribute[:]
        node.attribute.extend(keep + ([helper.make_attribute(name, value)] if value is not None else []))

    def set_init(name, arr):
        init = next(i for i in model.graph.initializer if i.name == name)
        init.CopyFrom(numpy_helper.from_array(arr, name))
    inits, producer = _parts(model)
    if damage == "x_scale":
        set_attr("x_scale", float(a["x_scale"]) * 1.001)
    elif damage == "no_quantize":
        node.input[0] = producer[node.input[0]].input[0]  # the float tensor, no Q node
    elif damage == "float_weight":
        set_init(node.input[3], inits[node.input[3]].astype(np.float32))
    elif damage == "weight_shape":
        set_init(node.input[4], inits[node.input[4]][..., :63])
    elif damage == "feature_scales":
        set_attr("feature_scales", list(a["feature_scales"])[:3])
    elif damage == "weight_scales":
        set_attr("weight_scales", [0.0] + list(a["weight_scales"])[1:])
    elif damage == "missing_attr":
        set_attr("collect_scales", None)
    elif damage == "quantized_float_node":
        for name in ("x_scale", "feature_scales", "weight_scales", "collect_scales"):
            set_attr(name, None)
    with pytest.raises(Int8GraphError, match=message):
        validate_int8_blocks(model)
    with pytest.raises(ValueError, match=node.name):  # validate_qdq runs it too, naming the node
        validate_qdq(model)


# --- running the INT8 deploy graph: stock ONNX Runtime on the standard-ops form, and our CPU op ----------------------
def _crop(set5_dir, name="butterfly", y=40, x=52, size=48):
    from engine.image_io import read_rgb
    lr = read_rgb(set5_dir / "LR_bicubic" / "X2" / f"{name}.png").astype(np.float32)
    hr = read_rgb(set5_dir / "HR" / f"{name}.png").astype(np.float32)
    lr_crop = np.ascontiguousarray(lr[y:y + size, x:x + size].transpose(2, 0, 1)[None])
    return lr_crop, hr[2 * y:2 * (y + size), 2 * x:2 * (x + size)]


def _with_outputs(model, names):
    model = copy.deepcopy(model)
    model.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in names)
    return model.SerializeToString()


def _block_io(model):
    """(node, x int8 tensor, mask tensor, y tensor) of every INT8 block."""
    return [(n, n.input[0], n.input[1], n.output[0]) for n in model.graph.node if is_int8_block(n)]


def _run(model_bytes, lr, with_op: bool):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    if with_op:
        from engine import ort_ops
        ort_ops.register_custom_ops(opts)
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"lr": lr})))


def _int8_op_session_or_skip(model_bytes, lr):
    """The deploy graph on our CPU op; skip (fail in CI) when the op library is missing or has no INT8 path."""
    from helpers import missing_component
    from engine import ort_ops
    if ort_ops.find_custom_op_library() is None:
        missing_component("ONNX Runtime CPU op library (libsmsr_ort_ops.so) not built")
    try:
        return _run(model_bytes, lr, with_op=True)
    except Exception as exc:  # noqa: BLE001
        if "int8" in str(exc).lower():
            missing_component(f"the CPU op has no INT8 variant in this build (branch cpu8): {str(exc)[:200]}")
        raise


def _check_blocks_bit_exact(model, outs):
    from calibration.int8_block import Int8BlockScales, sparse_block_int8
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node, x, m, y in _block_io(model):
        a = _attrs(node)
        scales = Int8BlockScales(a["x_scale"], tuple(a["feature_scales"]), np.asarray(a["weight_scales"], np.float32),
                                 np.asarray(a["collect_scales"], np.float32))
        w = [inits[t] for t in node.input[2:7]]
        assert outs[x].dtype == np.int8
        want, _ = sparse_block_int8(outs[x], outs[m], w[:4], w[4], inits[node.input[7]], list(a["dense_channels"]),
                                    list(a["sparse_channels"]), scales)
        assert 0.05 < outs[m].mean() < 0.99, node.name  # a crop with both active and inactive pixels
        assert outs[y].dtype == np.float32 and outs[y].shape == want.shape
        np.testing.assert_array_equal(outs[y].view(np.uint32), want.view(np.uint32), err_msg=node.name)


def _psnr_y(sr, hr):
    from engine.metrics import psnr_y
    return psnr_y(np.clip(np.rint(sr[0].transpose(1, 2, 0)), 0, 255), hr, 2)


@pytest.mark.parametrize("runner", ["standard_ops", "cpu_op"])
def test_int8_deploy_graph_runs_bit_exact_and_close_to_fp32(int8_graphs, onnx_graphs, set5_dir, runner):
    """Every INT8 block's output in the running graph equals the numpy reference (int8_block.sparse_block_int8)
    on the same int8 input and mask, bit for bit; the SR crop is within 0.25 dB PSNR_Y of FP32 (tiny calibration)."""
    from calibration.int8_emulate import expand_int8_blocks
    model = onnx.load(str(int8_graphs["int8"].deploy))
    watch = [t for _, x, m, y in _block_io(model) for t in (x, m, y)]
    lr, hr = _crop(set5_dir)
    if runner == "standard_ops":
        outs = _run(_with_outputs(expand_int8_blocks(model), watch), lr, with_op=False)
    else:
        outs = _int8_op_session_or_skip(_with_outputs(model, watch), lr)
    _check_blocks_bit_exact(model, outs)
    fp32 = _run(onnx.load(str(onnx_graphs["reference"])).SerializeToString(), lr, with_op=False)
    p32, p8 = _psnr_y(fp32["sr"], hr), _psnr_y(outs["sr"], hr)
    assert p8 >= p32 - 0.25, (p8, p32)  # measured: 34.961 vs 34.933 dB (-0.03)
    assert p8 <= p32 + 0.2, (p8, p32)  # INT8 cannot beat FP32 by much: sanity


def test_keep_one_block_float(int8_graphs, onnx_graphs):
    """--int8-keep-float REGEX on an SMSRSparseBlock node name: that block stays the float op, the rest go INT8."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    from calibration.int8_graph import convert_blocks
    ranges = TensorsData(CalibrationMethod.MinMax, {
        k: TensorData(lowest=np.float32(v["min"]), highest=np.float32(v["max"]))
        for k, v in int8_graphs["float"].report["ranges"].items()})
    model = onnx.load(str(int8_graphs["float"].deploy))
    done = convert_blocks(model, onnx.load(str(onnx_graphs["reference"])), ranges,
                          keep_float=(r"^/body\.4/body/",))
    assert [b.node for b in done] == [f"/body.{i}/body/SMSRSparseBlock" for i in range(4)]
    assert int8_block_names(model) == [b.node for b in done]
    validate_qdq(model)  # the float block keeps its float weights and DequantizeLinear input
    last = [n for n in model.graph.node if n.op_type == "SMSRSparseBlock"][-1]
    assert not is_int8_block(last) and last.input[2] in {i.name for i in model.graph.initializer}


def test_build_engine_int8_blocks_option():
    from converters.build_engine import parse_args
    base = ["--weights", "w.pt", "--scale", "2", "--precision", "int8", "--out-dir", "o"]
    assert parse_args(base).int8_blocks == "int8"
    assert parse_args(base + ["--int8-blocks", "float"]).int8_blocks == "float"


def test_zero_feature_range_is_a_clear_error(int8_graphs, onnx_graphs):
    """A layer output that was 0 on every calibration image cannot get an INT8 scale: the error names it."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    from calibration.int8_graph import convert_blocks
    ref = onnx.load(str(onnx_graphs["reference"]))
    dead = feature_tensors(ref)["/body.2/body/"][1]
    table = int8_graphs["float"].report["ranges"]
    ranges = TensorsData(CalibrationMethod.MinMax, {
        k: TensorData(lowest=np.float32(0 if k == dead else v["min"]), highest=np.float32(0 if k == dead else v["max"]))
        for k, v in table.items()})
    with pytest.raises(Int8GraphError, match=rf"calibrated range of SMB layer output '{dead}' is 0.0..0.0"):
        convert_blocks(onnx.load(str(int8_graphs["float"].deploy)), ref, ranges)

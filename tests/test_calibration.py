"""INT8 calibration: deterministic data, activation ranges on synthetic data with known ranges, Q/DQ graph validity,
range transfer to the deploy graph, the report, and the INT8 accuracy on Set5 x2 (within 0.3 dB of FP32)."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from calibration.data import (CalibrationConfig, CalibrationDataError, calibration_batches, sample_patches)
from calibration.qdq import (constants_to_initializers, deploy_ranges, quantize_graph, select_nodes,
                             validate_qdq)
from calibration.ranges import as_floats, compute_ranges
from calibration.report import build_report, write_report

FP32_SET5_X2_PSNR = 37.991  # reference graph on ONNX Runtime (DESIGN.md §1)


# --- synthetic models ---------------------------------------------------------------------------------------------
def tiny_model(weight_as_constant: bool = False, seed: int = 0) -> onnx.ModelProto:
    """lr (N,3,H,W) -> Conv 3->4 (3x3) -> Relu -> Conv 4->3 (1x1) -> sr."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
    w1[2] *= 10  # one output channel 10x larger: per-channel scales must differ
    w2 = rng.normal(0, 0.3, (3, 4, 1, 1)).astype(np.float32)
    b2 = np.zeros(3, np.float32)
    nodes = []
    inits = [numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2")]
    if weight_as_constant:
        nodes.append(helper.make_node("Constant", [], ["w1"], name="c_w1", value=numpy_helper.from_array(w1)))
    else:
        inits.append(numpy_helper.from_array(w1, "w1"))
    nodes += [helper.make_node("Conv", ["lr", "w1"], ["c1"], name="/head/Conv", pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c1"], ["r1"], name="/head/Relu"),
              helper.make_node("Conv", ["r1", "w2", "b2"], ["sr"], name="/tail2/Conv")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("lr", TensorProto.FLOAT,
                                                                             ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["N", 3, "H", "W"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = model.metadata_props.add()
    meta.key, meta.value = "smsr.precision", "fp32"
    onnx.checker.check_model(model)
    return model


@pytest.fixture()
def tiny_path(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_model(), str(path))
    return path


def write_images(folder, sizes, seed=0):
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"img{i:02d}.png")
    return folder


# --- data -----------------------------------------------------------------------------------------------------------
def test_whole_images_sorted_and_exact(tmp_path):
    folder = write_images(tmp_path / "imgs", [(20, 30), (17, 9), (32, 32)])
    (folder / "notes.txt").write_text("not an image")
    batches = calibration_batches(folder, CalibrationConfig(mode="images"))
    assert [b.shape for b in batches] == [(1, 3, 20, 30), (1, 3, 17, 9), (1, 3, 32, 32)]
    from PIL import Image
    ref = np.asarray(Image.open(folder / "img01.png").convert("RGB"), np.float32).transpose(2, 0, 1)
    np.testing.assert_array_equal(batches[1][0], ref)
    assert batches[0].dtype == np.float32
    assert len(calibration_batches(folder, CalibrationConfig(mode="images", max_images=2))) == 2


def test_patches_are_deterministic_and_seeded(tmp_path):
    folder = write_images(tmp_path / "imgs", [(40, 50), (64, 48), (10, 12)])
    cfg = CalibrationConfig(mode="patches", patch_size=16, patches_per_image=5, batch_size=4, seed=3)
    a, b = calibration_batches(folder, cfg), calibration_batches(folder, cfg)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    # 10 full patches in batches of 4 (4, 4, 2), then the too-small image whole
    assert [x.shape for x in a] == [(4, 3, 16, 16), (4, 3, 16, 16), (2, 3, 16, 16), (1, 3, 10, 12)]
    other = calibration_batches(folder, CalibrationConfig(mode="patches", patch_size=16, patches_per_image=5,
                                                          batch_size=4, seed=4))
    assert not np.array_equal(a[0], other[0])


def test_patches_are_crops_of_the_image():
    img = np.arange(2 * 3 * 20 * 30, dtype=np.float32).reshape(2, 3, 20, 30)[:1]
    patches = sample_patches(img, 8, 6, np.random.default_rng(0))
    for p in patches:
        assert p.shape == (1, 3, 8, 8)
        y, x = divmod(int(p[0, 0, 0, 0]), 30)
        np.testing.assert_array_equal(p, img[:, :, y:y + 8, x:x + 8])


def test_bad_calibration_folder(tmp_path):
    with pytest.raises(CalibrationDataError, match="not found"):
        calibration_batches(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationDataError, match="no images"):
        calibration_batches(tmp_path / "empty")


def test_unreadable_calibration_images_are_named(tmp_path):
    from calibration.data import check_calibration_folder
    folder = write_images(tmp_path / "imgs", [(20, 30), (17, 9)])
    assert check_calibration_folder(folder) == 2
    (folder / "img05.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)  # corrupt
    for check in (check_calibration_folder, calibration_batches):
        with pytest.raises(CalibrationDataError, match="img05.png"):
            check(folder)
    assert check_calibration_folder(folder, CalibrationConfig(max_images=2)) == 2  # only the images used
    (folder / "img05.png").unlink()
    from PIL import Image
    Image.new("RGB", (1, 5)).save(folder / "img03.png")
    with pytest.raises(CalibrationDataError, match="img03.png is 1x5"):
        check_calibration_folder(folder)


# --- ranges on synthetic data with known ranges ---------------------------------------------------------------------
def _known_batches():
    """Values uniform in [0, 1) plus a single outlier of 1000 and a single -50. (The outlier sits in the first batch:
    ONNX Runtime's histogram calibrators fix the bin width on the first batch and widen the histogram by that
    width later, so a 1000x range jump in a later batch makes the entropy search very slow.)"""
    rng = np.random.default_rng(1)
    batches = [rng.random((2, 3, 32, 32), dtype=np.float32) for _ in range(4)]
    batches[0][1, 0, 5, 7] = 1000.0
    batches[3][0, 2, 1, 1] = -50.0
    return batches


def test_max_ranges_are_exact(tiny_path):
    batches = _known_batches()
    ranges = as_floats(compute_ranges(tiny_path, batches, "max", op_types=["Conv"]))
    lo, hi = ranges["lr"]
    assert hi == pytest.approx(1000.0) and lo == pytest.approx(-1000.0)  # symmetric: +-max |x|
    # the Relu output (input of the second conv) is non-negative; its exact max comes from running the graph
    import onnxruntime as ort
    sess = ort.InferenceSession(_with_output(tiny_path, "r1"), providers=["CPUExecutionProvider"])
    amax = max(float(np.abs(sess.run(["r1"], {"lr": b})[0]).max()) for b in batches)
    assert ranges["r1"][1] == pytest.approx(amax, rel=1e-6)


def test_percentile_and_entropy_clip_the_outlier(tiny_path):
    batches = _known_batches()
    pct = as_floats(compute_ranges(tiny_path, batches, "percentile", op_types=["Conv"], percentile=99.99))
    lo, hi = pct["lr"]
    # 99.99 % of |x| lies below 1; the single 1000 (1 in 24576 values) must not set the range
    assert 0.9 <= max(abs(lo), abs(hi)) <= 1.1
    ent = as_floats(compute_ranges(tiny_path, batches, "entropy", op_types=["Conv"]))
    assert max(abs(v) for v in ent["lr"]) < 1000.0


def test_unknown_method(tiny_path):
    with pytest.raises(ValueError, match="unknown calibration method"):
        compute_ranges(tiny_path, _known_batches(), "mse")


def _with_output(path, name):
    model = onnx.load(str(path))
    model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return model.SerializeToString()


# --- Q/DQ graphs --------------------------------------------------------------------------------------------------
def _qdq_checks(model: onnx.ModelProto):
    validate_qdq(model)  # checker + strict shape inference + INT8 zero points 0
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    dq_weights = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
                  and inits[n.input[0]].ndim == 4]
    return inits, dq_weights


@pytest.mark.parametrize("as_constant", [False, True])
def test_qdq_graph_is_valid_and_close(tmp_path, as_constant):
    src = tmp_path / "tiny.onnx"
    onnx.save(tiny_model(weight_as_constant=as_constant), str(src))
    batches = _known_batches()[:2]
    ranges = compute_ranges(src, batches, "max", op_types=["Conv"])
    res = quantize_graph(src, tmp_path / "tiny_int8.onnx", ranges, exclude=())
    assert res.quantized_nodes == ["/head/Conv", "/tail2/Conv"]
    model = onnx.load(str(res.path))
    assert {p.key: p.value for p in model.metadata_props}["smsr.precision"] == "int8"
    inits, dq_weights = _qdq_checks(model)
    # both conv weights are stored INT8 with per-channel scales (axis 0, one scale per output channel)
    assert len(dq_weights) == 2
    for dq in dq_weights:
        assert inits[dq.input[0]].dtype == np.int8
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        assert axis == 0 and inits[dq.input[1]].shape == (inits[dq.input[0]].shape[0],)
    w1_scales = inits[dq_weights[0].input[1]] if inits[dq_weights[0].input[0]].shape[0] == 4 else \
        inits[dq_weights[1].input[1]]
    assert w1_scales[2] > 5 * np.median(w1_scales)  # the 10x channel got its own scale
    # activations: per-tensor Q/DQ on the conv inputs; bias stays float
    assert "b2" in inits and inits["b2"].dtype == np.float32
    import onnxruntime as ort
    x = np.random.default_rng(5).random((1, 3, 24, 24), dtype=np.float32)
    f32 = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"lr": x})[0]
    i8 = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"]).run(None, {"lr": x})[0]
    # the input range is +-1000 (outlier), so the input step is 1000/127 ~ 8: expect coarse but bounded error
    assert np.abs(i8 - f32).max() < 0.5 * np.abs(f32).max() + 8
    rel = np.linalg.norm(i8 - f32) / np.linalg.norm(f32)
    assert np.isfinite(rel)


def test_qdq_accuracy_with_a_good_range(tmp_path, tiny_path):
    batches = [np.random.default_rng(i).random((1, 3, 24, 24), dtype=np.float32) for i in range(3)]
    res = quantize_graph(tiny_path, tmp_path / "q.onnx", compute_ranges(tiny_path, batches, "max",
                                                                          op_types=["Conv"]), exclude=())
    import onnxruntime as ort
    x = batches[0]
    f32 = ort.InferenceSession(str(tiny_path), providers=["CPUExecutionProvider"]).run(None, {"lr": x})[0]
    i8 = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"]).run(None, {"lr": x})[0]
    assert np.linalg.norm(i8 - f32) / np.linalg.norm(f32) < 0.03


def test_exclusions_and_missing_ranges(tmp_path, tiny_path):
    quant, excl = select_nodes(onnx.load(str(tiny_path)), exclude=(r"^/tail2/",))
    assert quant == ["/head/Conv"] and excl == ["/tail2/Conv"]
    ranges = compute_ranges(tiny_path, _known_batches()[:1], "max", op_types=["Conv"])
    res = quantize_graph(tiny_path, tmp_path / "q.onnx", ranges, exclude=(r"^/tail2/",))
    model = onnx.load(str(res.path))
    tail = next(n for n in model.graph.node if n.name == "/tail2/Conv")
    inits = {i.name for i in model.graph.initializer}
    assert "w2" in inits and tail.input[1] == "w2"  # float weight, untouched
    from onnxruntime.quantization.calibrate import TensorsData
    empty = TensorsData(ranges.calibration_method, {})
    with pytest.raises(ValueError, match="no calibrated range"):
        quantize_graph(tiny_path, tmp_path / "q2.onnx", empty, exclude=())


def test_validate_qdq_rejects_float_graph_and_nonzero_zero_point(tiny_path, tmp_path):
    with pytest.raises(ValueError, match="no QuantizeLinear"):
        validate_qdq(onnx.load(str(tiny_path)))
    ranges = compute_ranges(tiny_path, _known_batches()[:1], "max", op_types=["Conv"])
    model = onnx.load(str(quantize_graph(tiny_path, tmp_path / "q.onnx", ranges, exclude=()).path))
    q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    zp = next(i for i in model.graph.initializer if i.name == q.input[2])
    zp.CopyFrom(numpy_helper.from_array(np.array(3, np.int8), zp.name))
    with pytest.raises(ValueError, match="zero point must be int8 0"):
        validate_qdq(model)


def _custom_op_with_dq_weight(axis):
    """One SMSRSparseBlock (C = 8, 8 channels per layer) whose w0 comes out of a per-channel DequantizeLinear."""
    c = 8
    inits = [numpy_helper.from_array(np.ones((3, 3, c, c), np.int8), "w0_q"),
             numpy_helper.from_array(np.full(c, 0.01, np.float32), "w0_scale"),
             numpy_helper.from_array(np.zeros(c, np.int8), "w0_zp")]
    inits += [numpy_helper.from_array(np.ones((3, 3, c, c), np.float32), f"w{i}") for i in (1, 2, 3)]
    inits += [numpy_helper.from_array(np.ones((1, 1, 4 * c, c), np.float32), "wc"),
              numpy_helper.from_array(np.zeros(c, np.float32), "bc")]
    nodes = [helper.make_node("DequantizeLinear", ["w0_q", "w0_scale", "w0_zp"], ["w0"], name="w0_dq", axis=axis),
             helper.make_node("SMSRSparseBlock", ["x", "mask", "w0", "w1", "w2", "w3", "wc", "bc"], ["y"],
                              name="smb", domain="smsr", dense_channels=[0] * 4, sparse_channels=[c] * 4,
                              plugin_version="2", plugin_namespace="")]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, ch, 4, 4]) for n, ch in (("x", c), ("mask", 1))]
    graph = helper.make_graph(nodes, "g", io, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, 4, 4])],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("smsr", 1)])


def test_validate_qdq_wants_axis_3_for_custom_op_weights():
    """The op's weights are 3 x 3 x Cin x Cout: per-channel (output-channel) scales sit on axis 3, not Conv's 0."""
    validate_qdq(_custom_op_with_dq_weight(axis=3))
    with pytest.raises(ValueError, match=r"w0_dq: per-channel scales of SMSRSparseBlock weight w0 use axis 0; "
                                         r"its output channels are axis 3"):
        validate_qdq(_custom_op_with_dq_weight(axis=0))


def test_constants_to_initializers():
    model = constants_to_initializers(tiny_model(weight_as_constant=True))
    assert not any(n.op_type == "Constant" for n in model.graph.node)
    assert "w1" in {i.name for i in model.graph.initializer}
    onnx.checker.check_model(model)


def test_deploy_ranges_map_custom_op_outputs():
    """The deploy graph's custom-node output takes the range of the reference tensor its consumer reads."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorData, TensorsData

    def graph(nodes):
        return helper.make_model(helper.make_graph(nodes, "g", [], []))
    ref = graph([helper.make_node("Conv", ["x", "w"], ["blk_out"], name="/body.0/body/collect/Conv"),
                 helper.make_node("Relu", ["blk_out"], ["y"], name="/body.0/ca/Relu")])
    dep = graph([helper.make_node("SMSRSparseBlock", ["x", "m"], ["custom_out"], name="/body.0/body/SMSRSparseBlock",
                                  domain="smsr"),
                 helper.make_node("Relu", ["custom_out"], ["y"], name="/body.0/ca/Relu")])
    td = lambda v: TensorData(lowest=np.float32(-v), highest=np.float32(v))  # noqa: E731
    ranges = TensorsData(CalibrationMethod.MinMax, {"x": td(1.0), "blk_out": td(7.0), "y": td(5.0)})
    out = as_floats(deploy_ranges(ref, dep, ranges))
    assert out["custom_out"] == (-7.0, 7.0) and out["x"] == (-1.0, 1.0) and out["y"] == (-5.0, 5.0)


def test_report_contents(tmp_path, tiny_path):
    ranges = compute_ranges(tiny_path, _known_batches()[:2], "max", op_types=["Conv"])
    rep = build_report(scale=2, ranges=ranges, calibration={"folder": "f", "mode": "images", "images": 2,
                                                            "batches": 2, "seed": 0},
                       graphs={"reference": {"path": "q.onnx", "quantized_nodes": ["/head/Conv"],
                                             "excluded_nodes": ["/tail2/Conv"], "float_custom_nodes": []}},
                       accuracy={"fp32": {"psnr_y": 30.0, "ssim_y": 0.9, "mask_density": None},
                                 "int8": {"psnr_y": 29.9, "ssim_y": 0.89, "mask_density": None},
                                 "delta_psnr_y": -0.1, "data": "d", "notes": []}, percentile=None)
    js, md = write_report(rep, tmp_path / "report.json")
    loaded = json.loads(js.read_text())
    assert loaded["method"] == "max"
    assert loaded["ranges"]["lr"]["scale"] == pytest.approx(1000.0 / 127, rel=1e-5)
    text = md.read_text()
    assert "/head/Conv" in text and "/tail2/Conv" in text and "-0.100 dB" in text


# --- the official model -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def official_int8(onnx_graphs, set5_dir, tmp_path_factory):
    from calibration.pipeline import make_int8_graphs
    out = tmp_path_factory.mktemp("int8")
    return make_int8_graphs(onnx_graphs["reference"], onnx_graphs["deploy"], set5_dir / "LR_bicubic" / "X2", out,
                            2, "percentile", eval_data=None, log=lambda m: None)


def test_official_qdq_graphs_are_valid(official_int8):
    for path in (official_int8.reference, official_int8.deploy):
        model = onnx.load(str(path))
        _qdq_checks(model)
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["smsr.precision"] == "int8" and meta["smsr.scale"] == "2"
    ref = official_int8.report["graphs"]["reference"]
    dep = official_int8.report["graphs"]["deploy"]
    assert len(ref["quantized_nodes"]) > 40 and all("spa_mask" not in n for n in ref["quantized_nodes"])
    # the custom op is the INT8 variant (tests/test_calibration_int8.py checks it in detail): int8 weights as
    # initializers, none of its inputs out of a DequantizeLinear
    assert len(dep["int8_custom_nodes"]) == 5 and dep["float_custom_nodes"] == []
    model = onnx.load(str(official_int8.deploy))
    produced_by_dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    for node in model.graph.node:
        if node.op_type == "SMSRSparseBlock":
            assert not set(node.input) & produced_by_dq


def test_official_int8_accuracy_on_set5(official_int8, set5_dir):
    """INT8 Q/DQ reference graph on ONNX Runtime CPU: Set5 x2 PSNR_Y within 0.3 dB of FP32 (37.991)."""
    from engine.evaluate import evaluate, find_pairs, make_predictor, summarize
    predict, _ = make_predictor("ort", 2, None, str(official_int8.reference), None)
    summary = summarize(evaluate(predict, find_pairs(set5_dir, 2), 2))
    assert summary["psnr_y"] >= FP32_SET5_X2_PSNR - 0.3, summary
    assert summary["psnr_y"] <= FP32_SET5_X2_PSNR + 0.05, summary  # INT8 cannot beat FP32 by much: sanity

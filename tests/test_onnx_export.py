"""ONNX graphs vs the PyTorch model: structure, validity, exactness (FP32), FP16 quality, odd sizes, batch."""
from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from converters.export_onnx import validate  # noqa: E402
from helpers import missing_component  # noqa: E402

FP32_TOL = 1e-3  # 0..255 scale; accumulation-order differences are ~1e-4


def _inputs(set5_lr_images):
    rng = np.random.default_rng(0)
    cases = {name: img.transpose(2, 0, 1)[None].astype(np.float32) for name, img in set5_lr_images.items()}
    cases["odd_37x23"] = (rng.random((1, 3, 37, 23)) * 255).astype(np.float32)
    cases["empty_mask"] = np.full((1, 3, 30, 26), 128.0, np.float32)
    cases["full_mask_noise"] = (rng.random((1, 3, 26, 30)) * 255).astype(np.float32)
    crop = set5_lr_images["butterfly"][:41, :33].transpose(2, 0, 1).astype(np.float32)
    cases["batch2_odd"] = np.stack([crop, crop[:, ::-1, ::-1]])
    return cases


def _torch_run(model, x):
    with torch.no_grad():
        sr, masks = model.forward_with_masks(torch.from_numpy(np.ascontiguousarray(x)))
    return sr.numpy(), masks.numpy()


def _ort_session(path):
    from engine.backends.onnxruntime import OrtBackend
    from engine.errors import PluginLibraryError
    try:
        return OrtBackend(path, device="cpu", threads=2).session
    except PluginLibraryError as exc:
        missing_component(f"SMSRSparseBlock CPU op library: {exc}")


@pytest.mark.parametrize("kind", ["reference", "deploy", "reference_fp16", "deploy_fp16"])
def test_graph_is_valid_and_typed(onnx_graphs, kind):
    proto = onnx.load(str(onnx_graphs[kind]))
    validate(proto)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["smsr.scale"] == "2"
    assert meta["smsr.graph"] == kind.split("_")[0]
    assert meta["smsr.precision"] == ("fp16" if kind.endswith("fp16") else "fp32")
    elem = onnx.TensorProto.FLOAT16 if kind.endswith("fp16") else onnx.TensorProto.FLOAT
    assert proto.graph.input[0].type.tensor_type.elem_type == elem
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 3, "H", "W"]
    ops = Counter(n.op_type for n in proto.graph.node)
    if kind.startswith("deploy"):
        assert ops["SMSRSparseBlock"] == 5
        node = next(n for n in proto.graph.node if n.op_type == "SMSRSparseBlock")
        assert node.domain == "smsr" and len(node.input) == 8
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["dense_channels"] == [24, 9, 3, 0] and attrs["sparse_channels"] == [40, 55, 61, 64]
        assert attrs["plugin_version"] == b"2" and attrs["plugin_namespace"] == b""
    else:
        assert "SMSRSparseBlock" not in ops


def test_deploy_weights_are_dense_first_permutations(official_model, onnx_graphs):
    """w0 = the conv weight, output channels permuted dense-first, in the op's 3 x 3 x Cin x Cout layout."""
    proto = onnx.load(str(onnx_graphs["deploy"]))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    node = next(n for n in proto.graph.node if n.op_type == "SMSRSparseBlock")
    w0 = inits[node.input[2]]
    split = official_model.body[0].body.channel_splits()[0]
    oihw = official_model.body[0].body.body[0].weight.detach().numpy()[split.permutation]
    np.testing.assert_array_equal(w0, oihw.transpose(2, 3, 1, 0))
    # element [ky][kx][ci][co] = W[co][ci][ky][kx]
    assert w0[2, 0, 5, 7] == oihw[7, 5, 2, 0]


@pytest.mark.parametrize("kind", ["deploy", "deploy_fp16"])
def test_deploy_weight_inputs_have_the_op_layout_shapes(onnx_graphs, kind):
    """Every SMSRSparseBlock gets w_l as 3 x 3 x Cin_l x Cout_l and wc as 1 x 1 x sum(Cout_l) x C (plugin_version 2),
    with Cout_l / Cin_l from the node's own channel attributes."""
    proto = onnx.load(str(onnx_graphs[kind]))
    shapes = {i.name: tuple(i.dims) for i in proto.graph.initializer}
    nodes = [n for n in proto.graph.node if n.op_type == "SMSRSparseBlock"]
    assert len(nodes) == 5
    for node in nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["plugin_version"] == b"2"
        couts = [d + s for d, s in zip(attrs["dense_channels"], attrs["sparse_channels"])]
        cins = [64] + couts[:3]
        for l in range(4):
            assert shapes[node.input[2 + l]] == (3, 3, cins[l], couts[l]), (node.name, l)
        assert shapes[node.input[6]] == (1, 1, sum(couts), 64), node.name
        assert shapes[node.input[7]] == (64,), node.name


@pytest.mark.parametrize("kind", ["reference", "deploy"])
def test_fp32_graph_matches_pytorch(official_model, onnx_graphs, set5_lr_images, kind):
    sess = _ort_session(onnx_graphs[kind])
    for name, x in _inputs(set5_lr_images).items():
        want_sr, want_masks = _torch_run(official_model, x)
        got_sr, got_masks = sess.run(["sr", "masks"], {"lr": x})
        np.testing.assert_array_equal(got_masks, want_masks, err_msg=f"{kind}/{name}: masks differ")
        diff = np.abs(got_sr - want_sr).max()
        assert diff <= FP32_TOL, f"{kind}/{name}: max abs diff {diff:.2e} > {FP32_TOL}"
        if name == "empty_mask":
            assert got_masks.sum() == 0
        if name == "full_mask_noise":
            assert got_masks.mean() > 0.9


@pytest.mark.parametrize("kind", ["reference", "deploy"])
def test_psnr_equal_to_pytorch_and_fp16_close(onnx_graphs, set5_dir, official_weights, kind):
    from engine.evaluate import evaluate, find_pairs, make_predictor, summarize
    pairs = find_pairs(set5_dir, 2)
    torch_pred, _ = make_predictor("torch", 2, str(official_weights), None, 2)
    ref = summarize(evaluate(torch_pred, pairs, 2))["psnr_y"]
    _ort_session(onnx_graphs[kind])  # skip cleanly when the op library is missing
    fp32 = summarize(evaluate(make_predictor("ort", 2, None, str(onnx_graphs[kind]), 2)[0], pairs, 2))["psnr_y"]
    fp16 = summarize(evaluate(make_predictor("ort", 2, None, str(onnx_graphs[kind + "_fp16"]), 2)[0],
                              pairs, 2))["psnr_y"]
    assert abs(fp32 - ref) <= 0.002, f"{kind} FP32 PSNR {fp32:.4f} vs PyTorch {ref:.4f}"
    assert abs(fp16 - fp32) <= 0.05, f"{kind} FP16 PSNR {fp16:.4f} vs FP32 {fp32:.4f}"
    assert fp32 >= 37.985

"""Small ONNX graphs with one SMSRSparseBlock node (op contract: docs/DESIGN.md §2), for plugin tests.

Weights are initializers (constants), x and mask are graph inputs with dynamic N/H/W. Keyword arguments
break the node on purpose (wrong channel counts, a missing input, a bad mask shape) to test error reporting.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

# Official x2 model, block 0 (dense/sparse output channels per layer).
BLOCK0_DENSE = (24, 9, 3, 0)
BLOCK0_SPARSE = (40, 55, 61, 64)


def make_smb_model(
    dense=BLOCK0_DENSE,
    sparse=BLOCK0_SPARSE,
    channels: int = 64,
    dtype=np.float32,
    weight_dense=None,
    weight_sparse=None,
    drop_input: str | None = None,
    mask_channels: int = 1,
    seed: int = 0,
) -> onnx.ModelProto:
    """One-node model. weight_dense/weight_sparse: channel split used for the weights' shapes when it should
    disagree with the node's attributes; drop_input: name of an input left empty ("" in the node)."""
    rng = np.random.default_rng(seed)
    ok_attrs = len(dense) == 4 and len(sparse) == 4 and min(dense) >= 0 and min(sparse) >= 0
    wd = list(weight_dense if weight_dense is not None else dense if ok_attrs else BLOCK0_DENSE)
    ws = list(weight_sparse if weight_sparse is not None else sparse if ok_attrs else BLOCK0_SPARSE)
    elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    inits = []
    cin = channels
    for l in range(4):
        cout = wd[l] + ws[l]
        w = (rng.standard_normal((3, 3, cin, cout)) * 0.05).astype(dtype)  # plugin_version 2: 3 x 3 x Cin x Cout
        inits.append(onnx.numpy_helper.from_array(w, f"w{l}"))
        cin = cout
    k = sum(wd) + sum(ws)
    inits.append(onnx.numpy_helper.from_array((rng.standard_normal((1, 1, k, channels)) * 0.05).astype(dtype), "wc"))
    inits.append(onnx.numpy_helper.from_array(np.zeros(channels, dtype), "bc"))
    names = ["x", "mask", "w0", "w1", "w2", "w3", "wc", "bc"]
    node_inputs = ["" if n == drop_input else n for n in names]
    while node_inputs and node_inputs[-1] == "":  # trailing optional inputs are simply omitted
        node_inputs.pop()
    node = helper.make_node(
        "SMSRSparseBlock",
        node_inputs,
        ["y"],
        name="smb0",
        domain="smsr",
        dense_channels=list(dense),
        sparse_channels=list(sparse),
        plugin_version="2",
        plugin_namespace="",
    )
    graph = helper.make_graph(
        [node],
        "smb_single",
        [
            helper.make_tensor_value_info("x", elem, ["N", channels, "H", "W"]),
            helper.make_tensor_value_info("mask", elem, ["N", mask_channels, "H", "W"]),
        ],
        [helper.make_tensor_value_info("y", elem, ["N", channels, "H", "W"])],
        initializer=[t for t in inits if t.name != drop_input],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("smsr", 1)], ir_version=8
    )


# ------------------------------------------------------------------------------------------------ INT8 variant

INT8_SCALE_ATTRS = ("x_scale", "feature_scales", "weight_scales", "collect_scales")


def _int8_helpers():
    """calibration/int8_block.py (numpy only): the repository root on sys.path when run as a script or by path."""
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    from calibration import int8_block

    return int8_block


def make_smb_int8_model(
    dense=BLOCK0_DENSE,
    sparse=BLOCK0_SPARSE,
    channels: int = 64,
    dtype=np.float32,
    drop_attrs: tuple[str, ...] = (),
    scale_overrides: dict | None = None,
    float_x: bool = False,
    seed: int = 0,
) -> onnx.ModelProto:
    """The INT8 form of the op (int8 contract, issue 14): x (T) -> QuantizeLinear(x_scale, int8 zero point 0) ->
    SMSRSparseBlock(x int8, mask T, w0..w3 / wc int8 code initializers, bc T) -> y (T); T = float32 or float16.
    Scales come from calibration/int8_block.py: per-output-channel weight codes (quantize_per_channel) and the
    collect weights folded with the feature scales (fold_collect_weights). Breaking it on purpose: drop_attrs
    leaves scale attributes out, scale_overrides replaces attribute values, float_x feeds x without the
    QuantizeLinear (a float x with INT8 fields)."""
    q = _int8_helpers()
    rng = np.random.default_rng(seed)
    elem = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    out_channels = [d + s for d, s in zip(dense, sparse)]
    x_scale = 2.0 / 127  # block inputs of the official model span about +-2
    feature_scales = [0.05, 0.04, 0.03, 0.025]
    inits, weight_scales = [], []
    cin = channels
    for l, cout in enumerate(out_channels):
        codes, scales = q.quantize_per_channel(rng.standard_normal((3, 3, cin, cout)) * 0.05, axis=-1)
        inits.append(onnx.numpy_helper.from_array(codes, f"w{l}"))
        weight_scales.append(scales)
        cin = cout
    wc = rng.standard_normal((1, 1, sum(out_channels), channels)) * 0.05
    wc_codes, collect_scales = q.quantize_per_channel(q.fold_collect_weights(wc, feature_scales, out_channels), axis=-1)
    inits.append(onnx.numpy_helper.from_array(wc_codes, "wc"))
    inits.append(onnx.numpy_helper.from_array((rng.standard_normal(channels) * 0.1).astype(dtype), "bc"))
    # QuantizeLinear: scale of x's type (opset 19 allows float16), zero point int8 0 (symmetric).
    inits.append(onnx.numpy_helper.from_array(np.array(x_scale, dtype), "x_scale_t"))
    inits.append(onnx.numpy_helper.from_array(np.array(0, np.int8), "x_zero_point"))
    attrs = {
        "x_scale": float(np.float32(x_scale)),
        "feature_scales": [float(v) for v in np.float32(feature_scales)],
        "weight_scales": [float(v) for v in np.concatenate(weight_scales)],
        "collect_scales": [float(v) for v in collect_scales],
    }
    attrs.update(scale_overrides or {})
    for name in drop_attrs:
        attrs.pop(name)
    nodes = []
    if not float_x:
        nodes.append(helper.make_node("QuantizeLinear", ["x", "x_scale_t", "x_zero_point"], ["xq"], name="quant_x"))
    nodes.append(helper.make_node(
        "SMSRSparseBlock",
        ["x" if float_x else "xq", "mask", "w0", "w1", "w2", "w3", "wc", "bc"],
        ["y"],
        name="smb0",
        domain="smsr",
        dense_channels=list(dense),
        sparse_channels=list(sparse),
        plugin_version="2",
        plugin_namespace="",
        **attrs,
    ))
    graph = helper.make_graph(
        nodes,
        "smb_single_int8",
        [
            helper.make_tensor_value_info("x", elem, ["N", channels, "H", "W"]),
            helper.make_tensor_value_info("mask", elem, ["N", 1, "H", "W"]),
        ],
        [helper.make_tensor_value_info("y", elem, ["N", channels, "H", "W"])],
        initializer=inits,
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 19), helper.make_opsetid("smsr", 1)], ir_version=9
    )


def int8_attrs(model: onnx.ModelProto) -> dict:
    """The SMSRSparseBlock node's INT8 scale attributes (float32 values, as the plugin stores them)."""
    node = next(n for n in model.graph.node if n.op_type == "SMSRSparseBlock")
    out = {}
    for a in node.attribute:
        if a.name == "x_scale":
            out[a.name] = [np.float32(a.f)]
        elif a.name in INT8_SCALE_ATTRS:
            out[a.name] = list(np.float32(a.floats))
    return out

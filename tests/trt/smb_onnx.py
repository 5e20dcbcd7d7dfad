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

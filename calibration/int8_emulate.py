"""The INT8 SMSRSparseBlock contract in standard ONNX ops, so stock ONNX Runtime runs an INT8 deploy graph
(accuracy studies without the custom-op library; a cross-check of the CPU op).

Why float ops give the contract's integers: codes are integers with |a| <= 128, |w| <= 127, so every partial sum of
a layer (<= 9 * 64 * 128 * 127 ~ 9.4e6 for 64 channels) or of the collect conv (<= 256 * 127 * 127 ~ 4.1e6) is an
integer below 2**24, which float32 holds exactly in any summation order. A Conv on float-cast codes therefore
returns float32(acc) exactly; Mul, Round (half to even), Clip, Mul and Add are then the contract's epilogues, one
IEEE float32 operation each. Dense/sparse input channels are two convs with the other channels' weights zeroed.
ONNX Runtime's ConvMulFusion/ConvAddFusion would fold a constant Mul or Add that follows a Conv into its weights
and bias (other bits): a Clip to +-2**24 (no-op on these sums) sits between such a Conv and its scale.
Limited to channel counts that keep those bounds (checked) and float32 graphs.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .int8_graph import LAYERS, is_int8_block

EXACT_LIMIT = 1 << 24


def expand_int8_blocks(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of an INT8 deploy graph with every INT8 SMSRSparseBlock node replaced by standard ops."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    inits = {i.name: numpy_helper.to_array(i) for i in out.graph.initializer}
    nodes = []
    for node in out.graph.node:
        if is_int8_block(node):
            new_nodes, new_inits = _expand(node, inits)
            nodes += new_nodes
            out.graph.initializer.extend(new_inits)
        else:
            nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    used = {t for n in out.graph.node for t in n.input}
    keep = [i for i in out.graph.initializer if i.name in used]
    del out.graph.initializer[:]
    out.graph.initializer.extend(keep)
    if not any(n.domain == "smsr" for n in out.graph.node):
        keep_ops = [o for o in out.opset_import if o.domain != "smsr"]
        del out.opset_import[:]
        out.opset_import.extend(keep_ops)
    return out


def _expand(node: onnx.NodeProto, inits: dict[str, np.ndarray]):
    a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
    dense, sparse = list(a["dense_channels"]), list(a["sparse_channels"])
    cout = [d + s for d, s in zip(dense, sparse)]
    w8 = [inits[t].astype(np.float32) for t in node.input[2:7]]
    bc = inits[node.input[7]]
    if bc.dtype != np.float32:
        raise ValueError(f"{node.name}: the emulation handles float32 graphs only (bc is {bc.dtype})")
    p = f"{node.name}/int8emu"
    x, mask = node.input[0], node.input[1]
    nodes, new = [], []

    def const(name, arr):
        new.append(numpy_helper.from_array(np.array(arr, order="C"), f"{p}/{name}"))
        return f"{p}/{name}"

    def op(kind, ins, name, **attrs):
        nodes.append(helper.make_node(kind, ins, [f"{p}/{name}"], name=f"{p}/{name}", **attrs))
        return f"{p}/{name}"

    def unfused(t, name):
        return op("Clip", [t, const(f"{name}_nofuse_lo", np.float32(-EXACT_LIMIT)),
                           const(f"{name}_nofuse_hi", np.float32(EXACT_LIMIT))], f"{name}_nofuse")

    act = op("Cast", [x], "x_codes", to=TensorProto.FLOAT)
    w_scales = np.asarray(a["weight_scales"], np.float32)
    bounds = np.cumsum([0] + cout)
    s_in = np.float64(np.float32(a["x_scale"]))
    d_in = w8[0].shape[2]
    feats = []
    for l in range(LAYERS):
        w = w8[l]  # 3 x 3 x Cin x Cout codes
        if 9 * w.shape[2] * 128 * 127 >= EXACT_LIMIT:
            raise ValueError(f"{node.name}: {w.shape[2]} input channels exceed exact float32 sums")
        oihw = w.transpose(3, 2, 0, 1)
        parts = []
        if d_in > 0:
            wd = oihw.copy()
            wd[:, d_in:] = 0
            parts.append(op("Conv", [act, const(f"w{l}_dense", wd)], f"l{l}_dense", pads=[1, 1, 1, 1]))
        if d_in < w.shape[2]:
            ws = oihw.copy()
            ws[:, :d_in] = 0
            conv = op("Conv", [act, const(f"w{l}_sparse", ws)], f"l{l}_sparse_conv", pads=[1, 1, 1, 1])
            parts.append(op("Mul", [conv, mask], f"l{l}_sparse"))
        acc = parts[0] if len(parts) == 1 else op("Add", parts, f"l{l}_acc")
        if not sparse[l] and len(parts) == 1 and d_in > 0:  # the Conv's output would meet a constant Mul
            acc = unfused(acc, f"l{l}")
        if sparse[l]:  # sparse outputs are 0 at inactive pixels: keep = dense indicator + mask * sparse indicator
            ind = np.zeros((1, cout[l], 1, 1), np.float32)
            ind[:, dense[l]:] = 1
            keep = op("Add", [op("Mul", [mask, const(f"l{l}_sparse_ind", ind)], f"l{l}_keep_s"),
                              const(f"l{l}_dense_ind", 1 - ind)], f"l{l}_keep")
            acc = op("Mul", [acc, keep], f"l{l}_acc_masked")
        s_f = np.float64(np.float32(a["feature_scales"][l]))
        r = (s_in * w_scales[bounds[l]:bounds[l + 1]].astype(np.float64) / s_f).astype(np.float32)
        scaled = op("Mul", [acc, const(f"r{l}", r.reshape(1, -1, 1, 1))], f"l{l}_scaled")
        act = op("Clip", [op("Round", [scaled], f"l{l}_round"), const(f"l{l}_lo", np.float32(0)),
                          const(f"l{l}_hi", np.float32(127))], f"f{l}")
        feats.append(act)
        s_in, d_in = s_f, dense[l]
    cat = op("Concat", feats, "features", axis=1)
    wc = w8[4].transpose(3, 2, 0, 1)
    acc_c = unfused(op("Conv", [cat, const("wc", wc)], "collect"), "collect")
    s_c = np.asarray(a["collect_scales"], np.float32).reshape(1, -1, 1, 1)
    prod = op("Mul", [acc_c, const("collect_scales", s_c)], "collect_scaled")
    nodes.append(helper.make_node("Add", [prod, const("bc", bc.reshape(1, -1, 1, 1))], [node.output[0]],
                                  name=f"{p}/y"))
    return nodes, new

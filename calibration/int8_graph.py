"""INT8 SMSRSparseBlock nodes in a Q/DQ deploy graph: the converter side of the INT8 op contract (int8_block.py).

Each float SMSRSparseBlock node of a Q/DQ deploy graph becomes the INT8 variant of the same op:
- x: the output of a QuantizeLinear(x_float, x_scale, int8 0) node; the node quantizer already put on that tensor
  when there is one (its scale is then x_scale), else a new one with scale = calibrated range of the block input/127;
- w0..w3: int8 codes, per output channel (last axis) -> attribute weight_scales (layers concatenated);
- wc: the collect weights with the layer feature scales folded in, then quantized per output channel ->
  attribute collect_scales; feature_scales = calibrated ranges of the block's four layer ReLU outputs / 127;
- mask, bc, y keep the graph's float type.
The feature ranges are measured on the reference graph, whose SMB layers end in Relu nodes concatenated for the
collect conv (feature_tensors finds them by the collect conv's node name, which both graphs share).
validate_int8_blocks checks every INT8 node against the contract (validate_qdq calls it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper
from onnxruntime.quantization.calibrate import TensorsData

from .int8_block import QMAX, fold_collect_weights, quantize_per_channel
from .ranges import as_floats

OP_TYPE = "SMSRSparseBlock"
LAYERS = 4
INT8_ATTRS = ("x_scale", "feature_scales", "weight_scales", "collect_scales")
_OP_SUFFIX = re.compile(rf"{OP_TYPE}(_\d+)?$")


class Int8GraphError(ValueError):
    """The graph or the ranges cannot give (or do not form) a valid INT8 SMSRSparseBlock node."""


@dataclass(frozen=True)
class BlockScales:
    """What one converted node got (for the calibration report)."""
    node: str
    x_scale: float
    feature_scales: tuple[float, ...]
    new_quantize_node: bool  # False: x reuses the QuantizeLinear the Q/DQ pass had put on that tensor


def block_prefix(node_name: str) -> str:
    """'/body.0/body/SMSRSparseBlock' -> '/body.0/body/': the SMB module path, shared with the reference graph."""
    return _OP_SUFFIX.sub("", node_name)


def feature_tensors(reference: onnx.ModelProto) -> dict[str, list[str]]:
    """SMB module path -> the four layer-output (ReLU) tensor names of the reference graph, in layer order:
    the inputs of the Concat that feeds the SMB's collect conv."""
    producer = {o: n for n in reference.graph.node for o in n.output}
    out = {}
    for node in reference.graph.node:
        if node.op_type != "Conv" or not node.name.endswith("/collect/Conv"):
            continue
        cat = producer.get(node.input[0])
        if cat is None or cat.op_type != "Concat" or len(cat.input) != LAYERS:
            continue
        if not all(producer.get(t) is not None and producer[t].op_type == "Relu" for t in cat.input):
            continue
        out[node.name[: -len("collect/Conv")]] = list(cat.input)
    return out


def _attr(node: onnx.NodeProto, name: str):
    a = next((a for a in node.attribute if a.name == name), None)
    return None if a is None else helper.get_attribute_value(a)


def _amax(ranges: dict[str, tuple[float, float]], name: str, what: str) -> float:
    if name not in ranges:
        raise Int8GraphError(f"no calibrated range for {what} {name!r}; calibrate the reference graph with its SMB "
                             "layer outputs (calibration.pipeline does)")
    lo, hi = ranges[name]
    amax = max(abs(lo), abs(hi))
    if not np.isfinite(amax) or amax <= 0:
        raise Int8GraphError(f"calibrated range of {what} {name!r} is {lo}..{hi}; an INT8 scale needs a nonzero "
                             "finite range (more varied calibration images?)")
    return amax


def _scale_of(amax: float) -> np.float32:
    return np.float32(amax / QMAX)


def _replace_attr(node: onnx.NodeProto, name: str, value) -> None:
    keep = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(keep + [helper.make_attribute(name, value)])


def convert_blocks(proto: onnx.ModelProto, reference: onnx.ModelProto, ranges: TensorsData,
                   keep_float: tuple[str, ...] = ()) -> list[BlockScales]:
    """Every SMSRSparseBlock node of a Q/DQ deploy graph (in place) -> the INT8 variant; node names matching a
    `keep_float` regex stay float. Returns what each converted node got."""
    feats = feature_tensors(reference)
    rng = as_floats(ranges)
    inits = {i.name: i for i in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    pats = [re.compile(p) for p in keep_float]
    new_nodes: dict[int, list[onnx.NodeProto]] = {}
    done, quantized_x = [], {}
    for idx, node in enumerate(proto.graph.node):
        if node.op_type != OP_TYPE or any(p.search(node.name) for p in pats):
            continue
        if _attr(node, "x_scale") is not None:
            raise Int8GraphError(f"{node.name} is already an INT8 SMSRSparseBlock")
        prefix = block_prefix(node.name)
        if prefix not in feats:
            raise Int8GraphError(f"{node.name}: the reference graph has no SMB {prefix!r} (collect conv fed by a "
                                 f"Concat of {LAYERS} Relu outputs); use the reference graph of the same model")
        f_scales = [_scale_of(_amax(rng, t, "SMB layer output")) for t in feats[prefix]]
        x_float = _float_source(node.input[0], producer)
        q_out, x_scale = _existing_quantize(x_float, list(proto.graph.node)[:idx], inits)
        if q_out is None and x_float in quantized_x:
            q_out, x_scale = quantized_x[x_float]
        created = q_out is None
        if created:
            x_scale = _scale_of(_amax(rng, x_float, "SMSRSparseBlock input"))
            q_out, q_node, q_inits = _quantize_node(x_float, x_scale)
            new_nodes.setdefault(idx, []).append(q_node)
            proto.graph.initializer.extend(q_inits)
            quantized_x[x_float] = (q_out, x_scale)
        dense, sparse = list(_attr(node, "dense_channels")), list(_attr(node, "sparse_channels"))
        cout = [d + s for d, s in zip(dense, sparse)]
        w_codes, w_scales = [], []
        for l in range(LAYERS):
            w = _float_init(inits, node.input[2 + l], node.name)
            codes, s = quantize_per_channel(w, axis=-1)
            w_codes.append(codes)
            w_scales.append(s)
        wc = _float_init(inits, node.input[6], node.name)
        wc_codes, c_scales = quantize_per_channel(fold_collect_weights(wc, f_scales, cout), axis=-1)
        names = []
        for i, codes in enumerate(w_codes + [wc_codes]):
            name = f"{node.input[2 + i]}_int8"
            proto.graph.initializer.append(numpy_helper.from_array(codes, name))
            names.append(name)
        node.input[0] = q_out
        for i, name in enumerate(names):
            node.input[2 + i] = name
        _replace_attr(node, "x_scale", float(x_scale))
        _replace_attr(node, "feature_scales", [float(s) for s in f_scales])
        _replace_attr(node, "weight_scales", [float(v) for v in np.concatenate(w_scales)])
        _replace_attr(node, "collect_scales", [float(v) for v in c_scales])
        done.append(BlockScales(node.name, float(x_scale), tuple(float(s) for s in f_scales), created))
    if new_nodes:  # Q nodes go right before their (first) block: the graph stays topologically sorted
        order = []
        for idx, node in enumerate(proto.graph.node):
            order += new_nodes.get(idx, []) + [node]
        del proto.graph.node[:]
        proto.graph.node.extend(order)
    _drop_unused_initializers(proto)
    return done


def _float_source(name: str, producer) -> str:
    """The float tensor a block input stands for: through a DequantizeLinear, its QuantizeLinear's input."""
    dq = producer.get(name)
    if dq is not None and dq.op_type == "DequantizeLinear":
        q = producer.get(dq.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            return q.input[0]
    return name


def _existing_quantize(x_float: str, nodes, inits) -> tuple[str | None, np.float32 | None]:
    """A per-tensor int8 zero-point-0 QuantizeLinear on x_float among `nodes` (those before the block, so the
    graph stays sorted): (its output, its scale), else (None, None)."""
    for n in nodes:
        if n.op_type != "QuantizeLinear" or n.input[0] != x_float or len(n.input) < 3:
            continue
        if n.input[1] not in inits or n.input[2] not in inits:
            continue
        scale, zp = numpy_helper.to_array(inits[n.input[1]]), numpy_helper.to_array(inits[n.input[2]])
        if scale.size == 1 and zp.dtype == np.int8 and not np.any(zp):
            return n.output[0], np.float32(scale.reshape(-1)[0])
    return None, None


def _quantize_node(x_float: str, scale: np.float32):
    base = f"{x_float}_smsr_int8"
    s_name, zp_name, out = f"{base}_scale", f"{base}_zero_point", f"{base}_QuantizeLinear_Output"
    node = helper.make_node("QuantizeLinear", [x_float, s_name, zp_name], [out], name=f"{base}_QuantizeLinear")
    inits = [numpy_helper.from_array(np.array(scale, np.float32), s_name),
             numpy_helper.from_array(np.array(0, np.int8), zp_name)]
    return out, node, inits


def _float_init(inits, name: str, node: str) -> np.ndarray:
    if name not in inits:
        raise Int8GraphError(f"{node}: weight {name!r} is not an initializer (constant weights are needed to "
                             "quantize them)")
    a = numpy_helper.to_array(inits[name])
    if a.dtype.kind != "f":
        raise Int8GraphError(f"{node}: weight {name!r} is {a.dtype}, expected float")
    return a.astype(np.float32)


def _drop_unused_initializers(proto: onnx.ModelProto) -> None:
    used = {t for n in proto.graph.node for t in n.input} | {o.name for o in proto.graph.output}
    keep = [i for i in proto.graph.initializer if i.name in used]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep)


# --- validation -----------------------------------------------------------------------------------------------------
def is_int8_block(node: onnx.NodeProto) -> bool:
    return node.op_type == OP_TYPE and any(a.name in INT8_ATTRS for a in node.attribute)


def int8_block_names(proto: onnx.ModelProto) -> list[str]:
    return [n.name for n in proto.graph.node if is_int8_block(n)]


def validate_int8_blocks(proto: onnx.ModelProto) -> None:
    """Every INT8 SMSRSparseBlock (a node with any INT8 attribute, or whose x is an int8 QuantizeLinear output)
    against the contract. Raises Int8GraphError naming the node and the first violation."""
    inits = {i.name: i for i in proto.graph.initializer}
    producer = {o: n for n in proto.graph.node for o in n.output}
    for node in proto.graph.node:
        if node.op_type != OP_TYPE:
            continue
        q = producer.get(node.input[0])
        from_q = q is not None and q.op_type == "QuantizeLinear"
        if not is_int8_block(node):
            if from_q:
                raise Int8GraphError(f"{node.name}: x comes from QuantizeLinear {q.name} (int8) but the node has no "
                                     f"INT8 attributes ({', '.join(INT8_ATTRS)})")
            continue
        _validate_one(node, q if from_q else None, inits)


def _validate_one(node: onnx.NodeProto, q, inits) -> None:
    name = node.name
    missing = [a for a in INT8_ATTRS if _attr(node, a) is None]
    if missing:
        raise Int8GraphError(f"{name}: INT8 SMSRSparseBlock lacks attribute(s) {', '.join(missing)}")
    if q is None:
        raise Int8GraphError(f"{name}: x ({node.input[0]!r}) must be the output of a QuantizeLinear node (int8, "
                             "zero point 0) whose scale is the node's x_scale")
    if len(q.input) < 3 or q.input[1] not in inits or q.input[2] not in inits:
        raise Int8GraphError(f"{name}: QuantizeLinear {q.name} needs constant scale and zero point")
    scale, zp = numpy_helper.to_array(inits[q.input[1]]), numpy_helper.to_array(inits[q.input[2]])
    if scale.size != 1 or zp.size != 1:
        raise Int8GraphError(f"{name}: QuantizeLinear {q.name} must be per-tensor (one scale)")
    if zp.dtype != np.int8 or zp.reshape(-1)[0] != 0:
        raise Int8GraphError(f"{name}: QuantizeLinear {q.name} zero point must be int8 0, got {zp.dtype} "
                             f"{zp.reshape(-1)[0]}")
    x_scale = np.float32(_attr(node, "x_scale"))
    if np.float32(scale.reshape(-1)[0]) != x_scale:
        raise Int8GraphError(f"{name}: x_scale {float(x_scale)!r} differs from the scale "
                             f"{float(scale.reshape(-1)[0])!r} of QuantizeLinear {q.name} that makes x")
    dense, sparse = _attr(node, "dense_channels"), _attr(node, "sparse_channels")
    if dense is None or sparse is None or len(dense) != LAYERS or len(sparse) != LAYERS:
        raise Int8GraphError(f"{name}: dense_channels and sparse_channels need {LAYERS} values each")
    cout = [d + s for d, s in zip(dense, sparse)]
    arrays = []
    for i in range(2, 8):
        if i >= len(node.input) or node.input[i] not in inits:
            raise Int8GraphError(f"{name}: input {i} ({'w0 w1 w2 w3 wc bc'.split()[i - 2]}) must be an initializer")
        arrays.append(numpy_helper.to_array(inits[node.input[i]]))
    *ws, wc, bc = arrays
    c = ws[0].shape[2] if ws[0].ndim == 4 else -1
    want = [(3, 3, c if l == 0 else cout[l - 1], cout[l]) for l in range(LAYERS)] + [(1, 1, sum(cout), c)]
    for i, (a, shape) in enumerate(zip(ws + [wc], want)):
        label = f"w{i}" if i < LAYERS else "wc"
        if a.dtype != np.int8:
            raise Int8GraphError(f"{name}: {label} must be int8 codes, got {a.dtype}")
        if a.shape != shape:
            raise Int8GraphError(f"{name}: {label} has shape {a.shape}, expected {shape}")
        if np.any(a == -128):
            raise Int8GraphError(f"{name}: {label} holds -128; codes are symmetric in [-127, 127]")
    if bc.dtype not in (np.float32, np.float16) or bc.shape != (c,):
        raise Int8GraphError(f"{name}: bc must be float32/float16 of shape ({c},), got {bc.dtype} {bc.shape}")
    for attr, n in (("feature_scales", LAYERS), ("weight_scales", sum(cout)), ("collect_scales", c)):
        v = np.asarray(_attr(node, attr), np.float64).reshape(-1)
        if v.size != n:
            raise Int8GraphError(f"{name}: {attr} has {v.size} values, expected {n}")
        if not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise Int8GraphError(f"{name}: every {attr} value must be finite and > 0")
    if not (np.isfinite(x_scale) and x_scale > 0):
        raise Int8GraphError(f"{name}: x_scale must be finite and > 0")


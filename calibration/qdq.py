"""Explicit INT8 (Q/DQ) graphs for TensorRT and ONNX Runtime, made with onnxruntime.quantization.

What the library does: calibrated ranges -> QuantizeLinear/DequantizeLinear pairs around the chosen nodes
(QDQ format), per-channel weights. Settings are TensorRT's explicit-quantization rules: INT8 symmetric
activations and weights (zero point 0), per-tensor activations, per-channel weights, biases left in float
(TensorRT fuses float bias; it has no INT32 bias Q/DQ).

What we add by hand (the library lacks it):
- constants_to_initializers: the exporter emits the SMB's split conv weights as Constant nodes; ONNX Runtime's
  quantizer treats only initializers as weights (a Constant would get per-tensor activation quantization).
- the default exclusion policy (DEFAULT_EXCLUDE, why in its comment);
- deploy_ranges: one calibration (on the reference graph, which ONNX Runtime runs without our custom-op library)
  serves the deploy graph too: tensors the two graphs share keep their names, and the SMSRSparseBlock output gets
  the range of the reference graph's tensor at the same place (the collect conv output).
- the custom op: quantize_graph leaves it float (inputs out of DequantizeLinear nodes, float weights);
  int8_graph.convert_blocks then turns each node into the INT8 variant of the op contract (int8 x from a
  QuantizeLinear node, int8 weights, scales as attributes), which calibration.pipeline does by default
  (int8_blocks="float" keeps the float op). Weights of a float op that ever get Q/DQ: their output channels are
  the LAST axis (op layout, plugin_version 2: w_l 3 x 3 x Cin x Cout, wc 1 x 1 x K x C), so per-channel scales
  need axis 3, not Conv's 0; validate_qdq rejects anything else.
"""
from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

from .int8_graph import validate_int8_blocks

QUANT_OP_TYPES = ("Conv", "ConvTranspose")
CUSTOM_OP_TYPE = "SMSRSparseBlock"
CUSTOM_OP_WEIGHT_INPUTS = range(2, 7)  # w0..w3, wc
CUSTOM_OP_CHANNEL_AXIS = 3  # output channels are the last axis of its weights

# Node-name patterns kept in float by default, and why (measured on Set5 x2, see docs in the report):
# - /sub_mean, /add_mean: the mean shift on the 0..255 input/output; INT8 on the raw image range costs ~1 step
#   of 2 grey levels per pixel for no speed (3 channels, 1x1).
# - spa_mask: the spatial-mask branch ends in Greater(logit1, logit0); quantization noise flips mask pixels,
#   which changes which pixels get the sparse features (a discrete error, not noise). It is 16 channels wide.
# - /tail: the last conv writes the residual added to the bicubic image; its output error is the output error.
DEFAULT_EXCLUDE = (r"^/sub_mean/", r"^/add_mean/", r"/spa_mask/", r"^/tail/")


@dataclass
class QuantizeResult:
    path: Path
    quantized_nodes: list[str]
    excluded_nodes: list[str] = field(default_factory=list)
    float_custom_nodes: list[str] = field(default_factory=list)
    int8_custom_nodes: list[str] = field(default_factory=list)


def constants_to_initializers(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Constant nodes with a tensor value become initializers of the same name (in place; returns proto)."""
    keep = []
    for node in proto.graph.node:
        value = next((a for a in node.attribute if a.name == "value"), None)
        if node.op_type == "Constant" and value is not None and len(node.attribute) == 1:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value.t)
            tensor.name = node.output[0]
            proto.graph.initializer.append(tensor)
        else:
            keep.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(keep)
    return proto


def select_nodes(proto: onnx.ModelProto, op_types: Sequence[str] = QUANT_OP_TYPES,
                 exclude: Sequence[str] = DEFAULT_EXCLUDE) -> tuple[list[str], list[str]]:
    """(to quantize, excluded) node names among `op_types` nodes; `exclude` are regexes on node names."""
    pats = [re.compile(p) for p in exclude]
    quant, excl = [], []
    for node in proto.graph.node:
        if node.op_type in op_types:
            (excl if any(p.search(node.name) for p in pats) else quant).append(node.name)
    return quant, excl


def deploy_ranges(reference: onnx.ModelProto, deploy: onnx.ModelProto, ranges: TensorsData) -> TensorsData:
    """Ranges for the deploy graph from the reference graph's: shared tensor names as they are; a tensor only the
    deploy graph has gets the range of the reference tensor that its consumer (same node name in both graphs)
    reads at the same input position."""
    ref_nodes = {n.name: n for n in reference.graph.node}
    have = dict(ranges.items())
    extra: dict[str, TensorData] = {}
    for node in deploy.graph.node:
        ref = ref_nodes.get(node.name)
        if ref is None or ref.op_type != node.op_type:
            continue
        for i, name in enumerate(node.input):
            if name and name not in have and i < len(ref.input) and ref.input[i] in have:
                extra[name] = have[ref.input[i]]
    return TensorsData(ranges.calibration_method, {**have, **extra})


def quantize_graph(model_in: str | Path | onnx.ModelProto, model_out: str | Path, ranges: TensorsData,
                   op_types: Sequence[str] = QUANT_OP_TYPES, exclude: Sequence[str] = DEFAULT_EXCLUDE,
                   per_channel: bool = True) -> QuantizeResult:
    """Q/DQ graph of an FP32 model with precomputed ranges (no calibration run here)."""
    proto = onnx.load(str(model_in)) if not isinstance(model_in, onnx.ModelProto) else model_in
    proto = constants_to_initializers(proto)
    quant, excl = select_nodes(proto, op_types, exclude)
    if not quant:
        raise ValueError("no node to quantize (check op types and exclusion patterns)")
    # Only nodes whose float inputs all have a range can be quantized; say which lack one.
    init_names = {i.name for i in proto.graph.initializer}
    by_name = {n.name: n for n in proto.graph.node}
    missing = sorted({t for n in quant for t in by_name[n].input[:1] if t not in ranges and t not in init_names})
    if missing:
        raise ValueError(f"no calibrated range for tensor(s) {missing[:5]}; calibrate the same graph")
    meta = {p.key: p.value for p in proto.metadata_props}
    model_out = Path(model_out)
    model_out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smsr_qdq_") as tmp:
        src, cache = Path(tmp) / "in.onnx", Path(tmp) / "ranges.json"
        onnx.save(proto, str(src))
        save_tensors_data(ranges, cache)
        with _QuietLogging():  # "consider pre-processing" advice on the root logger
            quantize_static(
                str(src), str(model_out), calibration_data_reader=None, quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(op_types), nodes_to_quantize=quant, nodes_to_exclude=excl,
                per_channel=per_channel, reduce_range=False, activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8, calibrate_method=ranges.calibration_method,
                calibration_cache_path=str(cache),
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
    out = onnx.load(str(model_out))
    custom = [n.name for n in out.graph.node if n.op_type == CUSTOM_OP_TYPE]
    meta.update({"smsr.precision": "int8", "smsr.int8.quantized_nodes": str(len(quant))})
    if custom:  # until int8_graph.convert_blocks makes them INT8
        meta.update({"smsr.int8.blocks": "float", "smsr.int8.float_blocks": ",".join(custom)})
    del out.metadata_props[:]
    for k, v in meta.items():
        e = out.metadata_props.add()
        e.key, e.value = k, v
    out.doc_string = (proto.doc_string or "SMSR").replace("(fp32)", "(int8 Q/DQ)")
    validate_qdq(out)
    onnx.save(out, str(model_out))
    return QuantizeResult(model_out, quant, excl, custom)


class _QuietLogging:
    def __enter__(self):
        self.level = logging.root.level
        logging.root.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        logging.root.setLevel(self.level)


def validate_qdq(proto: onnx.ModelProto) -> None:
    """ONNX checker + shape inference, and the Q/DQ rules TensorRT needs: INT8, zero point 0, per-channel
    axis 0 for Conv weights, axis 3 for SMSRSparseBlock weights, and every INT8 SMSRSparseBlock node against the
    op contract (int8_graph.validate_int8_blocks). Raises ValueError naming the first violation."""
    onnx.checker.check_model(proto, full_check=False)
    onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    inits = {i.name: i for i in proto.graph.initializer}
    qdq = [n for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        raise ValueError("graph has no QuantizeLinear/DequantizeLinear node")
    for node in qdq:
        if len(node.input) < 3 or node.input[2] not in inits:
            raise ValueError(f"{node.name}: zero point must be a constant (TensorRT needs an explicit INT8 zero point)")
        zp = numpy_helper.to_array(inits[node.input[2]])
        if zp.dtype != np.int8 or np.any(zp != 0):
            raise ValueError(f"{node.name}: zero point must be int8 0 (symmetric), got {zp.dtype} {zp.ravel()[:4]}")
        scale = numpy_helper.to_array(inits[node.input[1]]) if node.input[1] in inits else None
        if scale is None or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            raise ValueError(f"{node.name}: scale must be a positive finite constant")
    _check_custom_op_weight_axes(proto, inits)
    validate_int8_blocks(proto)


def _check_custom_op_weight_axes(proto: onnx.ModelProto, inits) -> None:
    """A per-channel DequantizeLinear feeding an SMSRSparseBlock weight must scale its last axis (output channels)."""
    weight_inputs = {n.input[i] for n in proto.graph.node if n.op_type == CUSTOM_OP_TYPE
                     for i in CUSTOM_OP_WEIGHT_INPUTS if i < len(n.input)}
    for node in proto.graph.node:
        if node.op_type != "DequantizeLinear" or node.output[0] not in weight_inputs:
            continue
        if numpy_helper.to_array(inits[node.input[1]]).size <= 1:
            continue  # per-tensor: no axis
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if axis != CUSTOM_OP_CHANNEL_AXIS:
            raise ValueError(f"{node.name}: per-channel scales of {CUSTOM_OP_TYPE} weight {node.output[0]} use axis "
                             f"{axis}; its output channels are axis {CUSTOM_OP_CHANNEL_AXIS} (weights are "
                             f"3 x 3 x Cin x Cout, wc 1 x 1 x K x C)")

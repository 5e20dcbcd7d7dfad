"""FP32 -> FP16 ONNX conversion with explicit types (for strongly typed TensorRT builds).

Uses onnxconverter-common's converter and keeps FP16-unsafe spots in FP32:
- the channel-attention global average pool (a sum over H*W pixels overflows FP16 on large images).
Everything else fits FP16's range: the largest activation of the official x2 model (Set5, noise, black and white
inputs) is 5.5e3 (block 4's collect conv), 12x below FP16's maximum 65504.
Fix-up after the converter: it leaves the graph's own Cast(to=FLOAT) nodes (the spatial mask's
Greater -> Cast) targeting float32 while typing their outputs float16; they must produce float16.
"""
from __future__ import annotations

import warnings

import onnx
from onnxconverter_common import float16

# Reductions over the whole image: accumulate in FP32.
FP32_OP_TYPES = ["ReduceMean", "GlobalAveragePool"]
_CONVERTER_CAST_MARKERS = ("_input_cast", "_output_cast")


def convert_to_fp16(proto: onnx.ModelProto) -> onnx.ModelProto:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny weights flushed to FP16's range are expected
        out = float16.convert_float_to_float16(
            proto, keep_io_types=False, op_block_list=FP32_OP_TYPES + list(float16.DEFAULT_OP_BLOCK_LIST))
    for node in out.graph.node:
        if node.op_type == "Cast" and not any(m in node.name for m in _CONVERTER_CAST_MARKERS):
            for attr in node.attribute:
                if attr.name == "to" and attr.i == onnx.TensorProto.FLOAT:
                    attr.i = onnx.TensorProto.FLOAT16
    return out

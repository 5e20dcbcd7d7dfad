"""A tiny stand-in for the SMSR ONNX graphs, built with onnx.helper, so runtime tests need no weights.

Same I/O contract as the exported graphs: input "lr" N×3×H×W (RGB 0..255), outputs "sr" N×3×sH×sW (unclamped) and
"masks" N×5×H×W (0/1), metadata smsr.scale/graph/precision. sr = nearest upscale + a chain of three 3×3 convs
(ReLU between) and DepthToSpace: a receptive-field radius of 3 LR pixels, enough to make tiling seams visible when
the overlap is too small. masks = (3×3 conv > 0), radius 1.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RECEPTIVE_RADIUS = 3


def build_standin(path, scale: int = 2, fp16: bool = False, seed: int = 0, custom_op: bool = False,
                  with_masks: bool = True, metadata: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    dt = np.float16 if fp16 else np.float32
    et = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT

    def init(name, arr):
        return numpy_helper.from_array(np.asarray(arr, dt), name)

    inits = [
        init("w1", rng.normal(0, 0.05, (8, 3, 3, 3))), init("b1", rng.normal(0, 1, 8)),
        init("w2", rng.normal(0, 0.2, (8, 8, 3, 3))), init("b2", rng.normal(0, 1, 8)),
        init("w3", rng.normal(0, 0.3, (3 * scale * scale, 8, 3, 3))),
        init("wm", rng.normal(0, 0.05, (5, 3, 3, 3))), init("bm", rng.normal(0, 2, 5)),
        init("zero", 0.0),
        numpy_helper.from_array(np.array([1, 1, scale, scale], np.float32), "scales"),
    ]
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [
        helper.make_node("Conv", ["lr", "w1", "b1"], ["c1"], **conv),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], **conv),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"], **conv),
        helper.make_node("DepthToSpace", ["c3"], ["d2s"], blocksize=scale, mode="CRD"),
        helper.make_node("Resize", ["lr", "", "scales"], ["up"], mode="nearest"),
        helper.make_node("Add", ["up", "d2s"], ["sr"]),
    ]
    outputs = [helper.make_tensor_value_info("sr", et, ["N", 3, "SH", "SW"])]
    if with_masks:
        nodes += [
            helper.make_node("Conv", ["lr", "wm", "bm"], ["cm"], **conv),
            helper.make_node("Greater", ["cm", "zero"], ["gm"]),
            helper.make_node("Cast", ["gm"], ["masks"], to=et),
        ]
        outputs.append(helper.make_tensor_value_info("masks", et, ["N", 5, "H", "W"]))
    opsets = [helper.make_opsetid("", 17)]
    if custom_op:  # a node only our custom-op library could run (tests the "library missing" path)
        nodes.append(helper.make_node("SMSRSparseBlock", ["sr"], ["sr_custom"], domain="smsr"))
        outputs[0] = helper.make_tensor_value_info("sr_custom", et, ["N", 3, "SH", "SW"])
        opsets.append(helper.make_opsetid("smsr", 1))
    graph = helper.make_graph(nodes, "standin", [helper.make_tensor_value_info("lr", et, ["N", 3, "H", "W"])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, {"smsr.scale": str(scale), "smsr.graph": "deploy" if custom_op else "reference",
                                       "smsr.precision": "fp16" if fp16 else "fp32"})
    path = Path(path)
    onnx.save(model, str(path))
    return path


def reference_upscale(path, x: np.ndarray) -> np.ndarray:
    """Whole-image output of a stand-in model (ONNX Runtime CPU), N×3×H×W -> N×3×sH×sW float32."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    dtype = np.float16 if "float16" in sess.get_inputs()[0].type else np.float32
    return sess.run(["sr"], {"lr": x.astype(dtype)})[0].astype(np.float32)

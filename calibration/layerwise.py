"""Layer-wise INT8 debugging on ONNX Runtime CPU: where does the Q/DQ graph depart from the FP32 graph?

    python -m calibration.layerwise --float OUT/smsr_x2_reference.onnx --qdq OUT/smsr_x2_reference_int8.onnx \
        --data ../shared/data/Set5/LR_bicubic/X2 [--images 2] [--top 15]

Uses onnxruntime.quantization.qdq_loss_debug: both graphs are run with every activation as an output, and for each
quantized tensor it prints the SQNR (dB, higher is better) of
  qdq:   the tensor before vs after its own QuantizeLinear/DequantizeLinear pair (this tensor's rounding/clipping),
  model: the FP32 graph's tensor vs the Q/DQ graph's (the error accumulated up to here).
A tensor with a low `qdq` SQNR has a bad range (try --calib-method, or keep its layer in float with
build_engine.py --int8-keep-float REGEX); a sudden drop of `model` SQNR marks the layer that hurts.

Inside the INT8 SMSRSparseBlock nodes (one op, so ONNX Runtime shows no internal tensor):
    python -m calibration.layerwise --blocks --float OUT/smsr_x2_reference.onnx --deploy OUT/smsr_x2_deploy.onnx \
        --qdq OUT/smsr_x2_deploy_int8.onnx --data DIR
runs the FP32 reference graph for each INT8 block's float input and mask, then the block's INT8 formula
(int8_block.sparse_block_int8, the op's bit-exact reference) against the float block on the same input, and prints
per layer f_l (and the output y) the SQNR of the INT8 block vs the float block (`block dB`) and of quantizing the
float f_l alone with its feature scale (`range dB`, this tensor's rounding/clipping).
The same question on TensorRT (engine vs ONNX Runtime, every tensor marked) is the polygraphy recipe in
scripts/compare_trt_ort.sh.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from onnxruntime.quantization.qdq_loss_debug import (collect_activations, compute_activation_error,
                                                     create_activation_matching,
                                                     modify_model_output_intermediate_tensors)

from .data import ArrayReader, CalibrationConfig, calibration_batches


def layer_errors(float_model: str | Path, qdq_model: str | Path, batches) -> list[tuple[str, float, float | None]]:
    """[(tensor, qdq SQNR dB, float-vs-qdq SQNR dB or None)] in graph order of the Q/DQ model."""
    with tempfile.TemporaryDirectory(prefix="smsr_layerwise_") as tmp:
        aug_f, aug_q = Path(tmp) / "float.onnx", Path(tmp) / "qdq.onnx"
        modify_model_output_intermediate_tensors(str(float_model), str(aug_f))
        modify_model_output_intermediate_tensors(str(qdq_model), str(aug_q))
        float_act = collect_activations(str(aug_f), ArrayReader(batches), execution_providers=["CPUExecutionProvider"])
        qdq_act = collect_activations(str(aug_q), ArrayReader(batches), execution_providers=["CPUExecutionProvider"])
    errors = compute_activation_error(create_activation_matching(qdq_act, float_act))
    import onnx
    order = {}
    for i, node in enumerate(onnx.load(str(qdq_model), load_external_data=False).graph.node):
        for t in node.input:
            order.setdefault(t, i)
    rows = [(name, e["qdq_err"], e.get("xmodel_err")) for name, e in errors.items()]
    return sorted(rows, key=lambda r: order.get(r[0], 1 << 30))


def _sqnr(ref: np.ndarray, test: np.ndarray) -> float:
    noise = float(np.sum((np.asarray(ref, np.float64) - test) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(np.asarray(ref, np.float64) ** 2)) / noise)


def quantize_linear(x: np.ndarray, scale: float) -> np.ndarray:
    """ONNX QuantizeLinear to int8 (zero point 0): round half to even, saturate to [-128, 127]."""
    return np.clip(np.rint(np.asarray(x, np.float32) / np.float32(scale)), -128, 127).astype(np.int8)


def block_inputs(deploy_int8) -> dict[str, tuple]:
    """INT8 node name -> (node, float x tensor name, mask tensor name) of an INT8 deploy graph."""
    from .int8_graph import is_int8_block
    producer = {o: n for n in deploy_int8.graph.node for o in n.output}
    return {n.name: (n, producer[n.input[0]].input[0], n.input[1]) for n in deploy_int8.graph.node
            if is_int8_block(n)}


def block_layer_errors(reference_fp32, deploy_fp32, deploy_int8, batches) -> list[tuple[str, str, float, float]]:
    """[(node, 'f0'..'f3' | 'y', INT8-vs-float block SQNR dB, feature-range SQNR dB or nan)] over `batches`,
    each block fed the FP32 reference graph's input and mask (so errors do not accumulate across blocks)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    from .int8_block import Int8BlockScales, sparse_block_float, sparse_block_int8
    q8 = onnx.load(str(deploy_int8))
    f32_inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(deploy_fp32)).graph.initializer}
    q8_inits = {i.name: numpy_helper.to_array(i) for i in q8.graph.initializer}
    blocks = block_inputs(q8)
    ref = onnx.load(str(reference_fp32))
    wanted = sorted({t for _, x, m in blocks.values() for t in (x, m)})
    del ref.graph.output[:]
    ref.graph.output.extend(helper.make_empty_tensor_value_info(t) for t in wanted)
    sess = ort.InferenceSession(ref.SerializeToString(), providers=["CPUExecutionProvider"])
    sums: dict[tuple[str, str], list[float]] = {}
    for batch in batches:
        acts = dict(zip(wanted, sess.run(wanted, {"lr": batch})))
        for name, (node, x_name, m_name) in blocks.items():
            a = {at.name: helper.get_attribute_value(at) for at in node.attribute}
            dense, sparse = list(a["dense_channels"]), list(a["sparse_channels"])
            scales = Int8BlockScales(a["x_scale"], tuple(a["feature_scales"]), np.asarray(a["weight_scales"],
                                     np.float32), np.asarray(a["collect_scales"], np.float32))
            w8 = [q8_inits[t] for t in node.input[2:7]]
            wf = [f32_inits[t[: -len("_int8")]] for t in node.input[2:7]]
            bc = q8_inits[node.input[7]]
            x, m = acts[x_name], acts[m_name]
            y8, f8 = sparse_block_int8(quantize_linear(x, a["x_scale"]), m, w8[:4], w8[4], bc, dense, sparse, scales)
            yf, ff = sparse_block_float(x, m, wf[:4], wf[4], bc, dense, sparse)
            for l in range(4):
                s_f = scales.feature_scales[l]
                alone = np.clip(np.rint(ff[l] / s_f), 0, 127) * s_f
                sums.setdefault((name, f"f{l}"), []).append((_sqnr(ff[l], f8[l] * np.float64(s_f)),
                                                             _sqnr(ff[l], alone)))
            sums.setdefault((name, "y"), []).append((_sqnr(yf, y8), float("nan")))
    return [(n, t, float(np.mean([v[0] for v in vals])), float(np.mean([v[1] for v in vals])))
            for (n, t), vals in sums.items()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m calibration.layerwise", description=__doc__.splitlines()[0])
    ap.add_argument("--float", required=True, dest="float_model", help="FP32 graph (reference)")
    ap.add_argument("--qdq", required=True, help="its INT8 Q/DQ graph (with --blocks: the INT8 deploy graph)")
    ap.add_argument("--blocks", action="store_true",
                    help="the layers inside the INT8 SMSRSparseBlock nodes of --qdq (needs --deploy)")
    ap.add_argument("--deploy", help="with --blocks: the FP32 deploy graph (float weights)")
    ap.add_argument("--data", required=True, help="folder of LR images")
    ap.add_argument("--images", type=int, default=2, help="first N images (default 2)")
    ap.add_argument("--patch", type=int, default=64, help="LR patch size (0: whole images)")
    ap.add_argument("--top", type=int, default=0, help="also list the N tensors with the lowest model SQNR")
    args = ap.parse_args(argv)
    cfg = (CalibrationConfig(mode="images", max_images=args.images) if args.patch == 0 else
           CalibrationConfig(mode="patches", max_images=args.images, patch_size=args.patch, patches_per_image=4))
    batches = calibration_batches(args.data, cfg)
    if args.blocks:
        if not args.deploy:
            ap.error("--blocks needs --deploy (the FP32 deploy graph)")
        print(f"{'SMSRSparseBlock node':<34} {'tensor':>6} {'block dB':>9} {'range dB':>9}")
        for node, t, b, r in block_layer_errors(args.float_model, args.deploy, args.qdq, batches):
            print(f"{node:<34} {t:>6} {b:9.1f} {'-' if np.isnan(r) else f'{r:9.1f}':>9}")
        return 0
    rows = layer_errors(args.float_model, args.qdq, batches)
    print(f"{'tensor':<60} {'qdq dB':>8} {'model dB':>9}")
    for name, q, x in rows:
        print(f"{name[-60:]:<60} {q:8.1f} {'-' if x is None else f'{x:9.1f}'}")
    if args.top:
        print(f"\nlowest model SQNR ({args.top}):")
        for name, q, x in sorted((r for r in rows if r[2] is not None), key=lambda r: r[2])[: args.top]:
            print(f"  {x:6.1f} dB  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

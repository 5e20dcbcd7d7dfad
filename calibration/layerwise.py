"""Layer-wise INT8 debugging on ONNX Runtime CPU: where does the Q/DQ graph depart from the FP32 graph?

    python -m calibration.layerwise --float OUT/smsr_x2_reference.onnx --qdq OUT/smsr_x2_reference_int8.onnx \
        --data ../shared/data/Set5/LR_bicubic/X2 [--images 2] [--top 15]

Uses onnxruntime.quantization.qdq_loss_debug: both graphs are run with every activation as an output, and for each
quantized tensor it prints the SQNR (dB, higher is better) of
  qdq:   the tensor before vs after its own QuantizeLinear/DequantizeLinear pair (this tensor's rounding/clipping),
  model: the FP32 graph's tensor vs the Q/DQ graph's (the error accumulated up to here).
A tensor with a low `qdq` SQNR has a bad range (try --calib-method, or keep its layer in float with
build_engine.py --int8-keep-float REGEX); a sudden drop of `model` SQNR marks the layer that hurts.
The same question on TensorRT (engine vs ONNX Runtime, every tensor marked) is the polygraphy recipe in
scripts/compare_trt_ort.sh.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m calibration.layerwise", description=__doc__.splitlines()[0])
    ap.add_argument("--float", required=True, dest="float_model", help="FP32 graph (reference)")
    ap.add_argument("--qdq", required=True, help="its INT8 Q/DQ graph")
    ap.add_argument("--data", required=True, help="folder of LR images")
    ap.add_argument("--images", type=int, default=2, help="first N images (default 2)")
    ap.add_argument("--patch", type=int, default=64, help="LR patch size (0: whole images)")
    ap.add_argument("--top", type=int, default=0, help="also list the N tensors with the lowest model SQNR")
    args = ap.parse_args(argv)
    cfg = (CalibrationConfig(mode="images", max_images=args.images) if args.patch == 0 else
           CalibrationConfig(mode="patches", max_images=args.images, patch_size=args.patch, patches_per_image=4))
    rows = layer_errors(args.float_model, args.qdq, calibration_batches(args.data, cfg))
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

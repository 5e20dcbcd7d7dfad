"""INT8 accuracy on a benchmark set (Set5 x2): FP32, the INT8 reference graph, the INT8 deploy graph whose
SMSRSparseBlock nodes run INT8 (our CPU op, and its standard-ops form), and the older deploy graph whose op stays
float. One calibration folder for all (use images that are not the evaluation set: calibration.sample_images).

    python -m calibration.sample_images /tmp/calib_x2          # needs scikit-image (development only)
    python benchmarks/int8_accuracy.py --weights ../shared/weights/smsr_x2_official.pt \\
        --calib-data /tmp/calib_x2 --data ../shared/data/Set5 --out-dir /tmp/int8acc [--calib-method percentile]

Prints a Markdown table and writes OUT/int8_accuracy.json. ONNX Runtime CPU; the deploy graphs need the
custom-op library (build/).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibration.data import CalibrationConfig  # noqa: E402
from calibration.pipeline import evaluate_graph, make_int8_graphs  # noqa: E402

ROWS = [("fp32", "FP32 reference graph"), ("int8", "INT8 Q/DQ reference graph"),
        ("deploy_int8", "INT8 deploy graph, SMSRSparseBlock INT8 (CPU op)"),
        ("deploy_int8_standard_ops", "INT8 deploy graph, SMSRSparseBlock INT8 as standard ops"),
        ("deploy_int8_float_op", "INT8 deploy graph, SMSRSparseBlock float (--int8-blocks float)")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--calib-data", required=True)
    ap.add_argument("--data", required=True, help="benchmark folder (HR/, LR_bicubic/X<s>/)")
    ap.add_argument("--out-dir", required=True, type=Path)
    ap.add_argument("--calib-method", default="percentile", choices=("max", "percentile", "entropy"))
    ap.add_argument("--calib-percentile", type=float, default=99.999)
    ap.add_argument("--int8-keep-float", nargs="*", default=[])
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    from converters.export_onnx import export_all
    graphs = export_all(args.weights, args.scale, args.out_dir / "onnx", fp16=False, reuse=True)
    common = dict(method=args.calib_method, config=CalibrationConfig(), percentile=args.calib_percentile,
                  threads=args.threads, log=lambda m: print(m, flush=True), keep_float=tuple(args.int8_keep_float))
    art = make_int8_graphs(graphs["reference"], graphs["deploy"], args.calib_data, args.out_dir / "int8_blocks",
                           args.scale, eval_data=args.data, int8_blocks="int8", **common)
    acc = dict(art.report["accuracy"])
    old = make_int8_graphs(graphs["reference"], graphs["deploy"], args.calib_data, args.out_dir / "float_blocks",
                           args.scale, eval_data=None, int8_blocks="float", **common)
    acc["deploy_int8_float_op"] = evaluate_graph(old.deploy, Path(args.data), args.scale, args.threads)
    result = {"calibration": art.report["calibration_data"], "method": art.report["method"],
              "percentile": art.report["percentile"], "keep_float": args.int8_keep_float, "accuracy": acc}
    (args.out_dir / "int8_accuracy.json").write_text(json.dumps(result, indent=2) + "\n")
    fp32 = acc["fp32"]["psnr_y"]
    print(f"\ncalibration: {', '.join(art.report['calibration_data']['files'])} ({art.report['method']})")
    print("| graph | PSNR_Y (dB) | vs FP32 | SSIM_Y |\n|---|---|---|---|")
    for key, label in ROWS:
        s = acc.get(key)
        if s:
            print(f"| {label} | {s['psnr_y']:.3f} | {s['psnr_y'] - fp32:+.3f} | {s['ssim_y']:.4f} |")
    for note in acc.get("notes", []):
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

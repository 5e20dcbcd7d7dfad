"""Calibration images -> ranges -> INT8 Q/DQ reference and deploy graphs -> accuracy -> report (one call)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import onnx

from .data import CalibrationConfig, calibration_batches, list_images
from .int8_graph import BlockScales, convert_blocks, feature_tensors, int8_block_names
from .qdq import DEFAULT_EXCLUDE, QuantizeResult, deploy_ranges, quantize_graph, validate_qdq
from .ranges import DEFAULT_PERCENTILE, compute_ranges
from .report import build_report, write_report


INT8_BLOCK_MODES = ("int8", "float")


def int8_deploy_blocks(res: QuantizeResult, reference: onnx.ModelProto, ranges, keep_float: tuple[str, ...] = ()
                       ) -> list[BlockScales]:
    """The Q/DQ deploy graph at res.path with its SMSRSparseBlock nodes made INT8 (rewritten in place, checked);
    res's node lists and the graph metadata say which blocks run INT8."""
    proto = onnx.load(str(res.path))
    blocks = convert_blocks(proto, reference, ranges, keep_float)
    res.int8_custom_nodes = [b.node for b in blocks]
    res.float_custom_nodes = [n for n in res.float_custom_nodes if n not in res.int8_custom_nodes]
    meta = {p.key: p.value for p in proto.metadata_props}
    meta.update({"smsr.int8.blocks": "int8" if not res.float_custom_nodes else "mixed",
                 "smsr.int8.int8_blocks": ",".join(res.int8_custom_nodes),
                 "smsr.int8.float_blocks": ",".join(res.float_custom_nodes)})
    del proto.metadata_props[:]
    for k, v in meta.items():
        e = proto.metadata_props.add()
        e.key, e.value = k, v
    proto.doc_string = proto.doc_string.replace("(int8 Q/DQ)", "(int8 Q/DQ, INT8 SMSRSparseBlock nodes)")
    validate_qdq(proto)
    onnx.save(proto, str(res.path))
    return blocks


@dataclass
class Int8Artifacts:
    reference: Path
    deploy: Path | None
    report_json: Path
    report_md: Path
    report: dict


def find_eval_data(calib_dir: Path, scale: int) -> Path | None:
    """A benchmark root (HR/ + LR_bicubic/X{s}/) when the calibration folder is its LR_bicubic/X{s}."""
    calib_dir = Path(calib_dir).resolve()
    root = calib_dir.parent.parent
    if calib_dir.name.upper() == f"X{scale}" and calib_dir.parent.name == "LR_bicubic" and (root / "HR").is_dir():
        return root
    return None


def evaluate_graph(model: Path, data: Path, scale: int, threads: int | None) -> dict:
    """PSNR_Y/SSIM_Y summary (and per-image PSNR_Y) of an ONNX graph on a benchmark folder, ONNX Runtime CPU."""
    from engine.evaluate import evaluate, find_pairs, make_predictor, summarize
    predict, _ = make_predictor("ort", scale, None, str(model), threads)
    results = evaluate(predict, find_pairs(data, scale), scale)
    s = summarize(results)
    s["per_image"] = {r.name: round(r.psnr_y, 4) for r in results}
    return s


def measure_accuracy(reference_fp32: Path, int8: Path, deploy_int8: Path | None, data: Path, scale: int,
                     threads: int | None = None) -> dict:
    acc: dict = {"data": str(data), "notes": []}
    acc["fp32"] = evaluate_graph(reference_fp32, data, scale, threads)
    acc["int8"] = evaluate_graph(int8, data, scale, threads)
    acc["delta_psnr_y"] = acc["int8"]["psnr_y"] - acc["fp32"]["psnr_y"]
    if deploy_int8 is not None:
        try:
            acc["deploy_int8"] = evaluate_graph(deploy_int8, data, scale, threads)
        except Exception as exc:  # the deploy graph needs the CPU custom-op library on ONNX Runtime
            acc["notes"].append(f"deploy INT8 graph not evaluated: {type(exc).__name__}: {str(exc)[:300]}")
        proto = onnx.load(str(deploy_int8))
        if int8_block_names(proto):  # the same graph with its INT8 blocks as standard ops: stock ONNX Runtime
            import tempfile
            from .int8_emulate import expand_int8_blocks
            with tempfile.TemporaryDirectory(prefix="smsr_int8emu_") as tmp:
                path = Path(tmp) / "deploy_int8_standard_ops.onnx"
                onnx.save(expand_int8_blocks(proto), str(path))
                acc["deploy_int8_standard_ops"] = evaluate_graph(path, data, scale, threads)
    return acc


def make_int8_graphs(reference_fp32: str | Path, deploy_fp32: str | Path | None, calib_dir: str | Path,
                     out_dir: str | Path, scale: int, method: str = "percentile",
                     config: CalibrationConfig = CalibrationConfig(), percentile: float = DEFAULT_PERCENTILE,
                     eval_data: str | Path | None = None, threads: int | None = None,
                     log: Callable[[str], None] = print, keep_float: tuple[str, ...] = (),
                   int8_blocks: str = "int8") -> Int8Artifacts:
    """`keep_float`: node-name regexes kept in float in addition to DEFAULT_EXCLUDE (an SMSRSparseBlock node that
    matches one stays a float op). `int8_blocks`: "int8" (default) makes the deploy graph's SMSRSparseBlock nodes
    the INT8 variant of the op; "float" keeps the float op between DequantizeLinear outputs (the older graph)."""
    if int8_blocks not in INT8_BLOCK_MODES:
        raise ValueError(f"int8_blocks must be one of {INT8_BLOCK_MODES}, got {int8_blocks!r}")
    exclude = tuple(DEFAULT_EXCLUDE) + tuple(keep_float)
    reference_fp32 = Path(reference_fp32)
    out_dir = Path(out_dir)
    reference = onnx.load(str(reference_fp32))
    # the SMB layer outputs: the op's feature scales; the last layer's feeds no conv, so ask for all four
    features = [t for names in feature_tensors(reference).values() for t in names]
    files = list_images(calib_dir)[: config.max_images]
    batches = calibration_batches(calib_dir, config)
    log(f"calibration: {len(files)} images from {calib_dir} ({config.mode}, {len(batches)} batches), "
        f"method {method}")
    ranges = compute_ranges(reference_fp32, batches, method, percentile=percentile,
                            progress=lambda i, n: log(f"  calibration batch {i}/{n}") if i == n else None,
                            extra_tensors=features)
    ref_out = out_dir / f"smsr_x{scale}_reference_int8.onnx"
    results: dict[str, QuantizeResult] = {
        "reference": quantize_graph(reference_fp32, ref_out, ranges, exclude=exclude)}
    blocks: list[BlockScales] = []
    if deploy_fp32 is not None:
        dep = onnx.load(str(deploy_fp32))
        dr = deploy_ranges(reference, dep, ranges)
        res = quantize_graph(dep, out_dir / f"smsr_x{scale}_deploy_int8.onnx", dr, exclude=exclude)
        if int8_blocks == "int8":
            blocks = int8_deploy_blocks(res, reference, dr, tuple(keep_float))
        results["deploy"] = res
    for kind, res in results.items():
        log(f"  {kind} INT8 Q/DQ graph: {res.path} ({len(res.quantized_nodes)} INT8 convs, "
            f"{len(res.int8_custom_nodes)} INT8 SMSRSparseBlock nodes, "
            f"{len(res.excluded_nodes) + len(res.float_custom_nodes)} kept float)")
    accuracy = None
    if eval_data is not None:
        log(f"accuracy on {eval_data} (ONNX Runtime CPU) ...")
        accuracy = measure_accuracy(reference_fp32, ref_out, results.get("deploy") and results["deploy"].path,
                                    Path(eval_data), scale, threads)
        log(f"  PSNR_Y fp32 {accuracy['fp32']['psnr_y']:.3f} dB, int8 {accuracy['int8']['psnr_y']:.3f} dB "
            f"({accuracy['delta_psnr_y']:+.3f} dB)"
            + (f", deploy int8 {accuracy['deploy_int8']['psnr_y']:.3f} dB" if "deploy_int8" in accuracy else "")
            + (f", deploy int8 as standard ops {accuracy['deploy_int8_standard_ops']['psnr_y']:.3f} dB"
               if "deploy_int8_standard_ops" in accuracy else ""))
        for note in accuracy["notes"]:
            log(f"  note: {note}")
    calibration = {"folder": str(calib_dir), "mode": config.mode, "images": len(files),
                   "files": [f.name for f in files], "batches": len(batches), "seed": config.seed,
                   "patch_size": config.patch_size if config.mode == "patches" else None,
                   "samples": int(sum(b.shape[0] for b in batches))}
    graphs = {k: {"path": str(v.path), "quantized_nodes": v.quantized_nodes, "excluded_nodes": v.excluded_nodes,
                  "float_custom_nodes": v.float_custom_nodes, "int8_custom_nodes": v.int8_custom_nodes}
              for k, v in results.items()}
    report = build_report(scale=scale, ranges=ranges, calibration=calibration, graphs=graphs, accuracy=accuracy,
                          percentile=percentile, exclude=exclude, int8_blocks=int8_blocks,
                          block_scales=[b.__dict__ for b in blocks])
    js, md = write_report(report, out_dir / f"smsr_x{scale}_int8_calibration.json")
    return Int8Artifacts(ref_out, results.get("deploy") and results["deploy"].path, js, md, report)

"""Calibration report: what was calibrated with what, the ranges, which layers are INT8, and the accuracy.

Written as JSON (for tools and tests) and Markdown (for people) next to the Q/DQ graphs."""
from __future__ import annotations

import json
from pathlib import Path

from onnxruntime.quantization.calibrate import TensorsData

from .qdq import DEFAULT_EXCLUDE
from .ranges import as_floats, method_name

INT8_MAX = 127.0


def ranges_table(ranges: TensorsData) -> dict[str, dict[str, float]]:
    """tensor -> {min, max, amax, scale}; scale = amax / 127 (symmetric INT8, as the Q/DQ graph uses)."""
    table = {}
    for name, (lo, hi) in sorted(as_floats(ranges).items()):
        amax = max(abs(lo), abs(hi))
        table[name] = {"min": lo, "max": hi, "amax": amax, "scale": amax / INT8_MAX}
    return table


CUSTOM_OP_SCHEMES = {
    "int8": "SMSRSparseBlock runs INT8 inside the INT8 deploy graph (int8 x from a QuantizeLinear node, int8 "
            "per-channel weights, INT32 sums, requantized ReLU features, float output)",
    "float": "SMSRSparseBlock stays float (FP32) inside the INT8 deploy graph",
}


def build_report(*, scale: int, ranges: TensorsData, calibration: dict, graphs: dict, accuracy: dict | None,
                 percentile: float | None, exclude: tuple[str, ...] = DEFAULT_EXCLUDE, int8_blocks: str = "float",
                 block_scales: list[dict] | None = None) -> dict:
    """`int8_blocks`: "int8" or "float" (the deploy graph's SMSRSparseBlock variant); `block_scales`: per INT8
    node, its x_scale and feature_scales."""
    return {
        "scale": scale,
        "method": method_name(ranges),
        "percentile": percentile if method_name(ranges) == "percentile" else None,
        "calibration_data": calibration,
        "scheme": {"activations": "int8 symmetric per-tensor", "weights": "int8 symmetric per-channel (axis 0)",
                   "bias": "float (not quantized)", "format": "QDQ (QuantizeLinear/DequantizeLinear)",
                   "exclude_patterns": list(exclude),
                   "custom_op": CUSTOM_OP_SCHEMES[int8_blocks], "int8_blocks": int8_blocks},
        "graphs": graphs,
        "int8_block_scales": block_scales or [],
        "accuracy": accuracy,
        "ranges": ranges_table(ranges),
    }


def write_report(report: dict, json_path: str | Path) -> tuple[Path, Path]:
    json_path = Path(json_path)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path = json_path.with_suffix(".md")
    md_path.write_text(to_markdown(report))
    return json_path, md_path


def to_markdown(r: dict) -> str:
    cal = r["calibration_data"]
    lines = [f"# SMSR x{r['scale']} INT8 calibration report", "",
             f"- method: **{r['method']}**" + (f" ({r['percentile']} %)" if r.get("percentile") else ""),
             f"- data: {cal.get('folder')} — mode {cal.get('mode')}, {cal.get('images')} images, "
             f"{cal.get('batches')} batches, seed {cal.get('seed')}",
             f"- scheme: {r['scheme']['activations']}; weights {r['scheme']['weights']}; bias {r['scheme']['bias']}",
             f"- kept in float: {', '.join(r['scheme']['exclude_patterns'])}; {r['scheme']['custom_op']}", ""]
    acc = r.get("accuracy")
    if acc and acc.get("int8"):
        lines += ["## Accuracy (PSNR_Y / SSIM_Y, ONNX Runtime CPU)", "", "| graph | PSNR_Y | SSIM_Y | mask density |",
                  "|---|---|---|---|"]
        for key in ("fp32", "int8", "deploy_int8", "deploy_int8_standard_ops"):
            s = acc.get(key)
            if s:
                dens = "-" if s.get("mask_density") is None else f"{100 * s['mask_density']:.1f} %"
                lines.append(f"| {key} | {s['psnr_y']:.3f} | {s['ssim_y']:.4f} | {dens} |")
        if acc.get("delta_psnr_y") is not None:
            lines += ["", f"INT8 - FP32: **{acc['delta_psnr_y']:+.3f} dB** on {acc.get('data')}"]
        for note in acc.get("notes", []):
            lines.append(f"- {note}")
        lines.append("")
    lines += ["## Quantized layers", ""]
    for kind, g in r["graphs"].items():
        lines.append(f"- **{kind}** ({g['path']}): {len(g['quantized_nodes'])} INT8 nodes, "
                     f"{len(g['excluded_nodes'])} kept float, SMSRSparseBlock nodes INT8: "
                     f"{len(g.get('int8_custom_nodes', []))}, float: {len(g['float_custom_nodes'])}")
    for kind, g in r["graphs"].items():
        lines += ["", f"### {kind}: INT8", ""] + [f"- {n}" for n in g["quantized_nodes"]]
        lines += [f"- {n} (INT8 SMSRSparseBlock)" for n in g.get("int8_custom_nodes", [])]
        lines += ["", f"### {kind}: kept float", ""] + [f"- {n}" for n in g["excluded_nodes"] + g["float_custom_nodes"]]
    if r.get("int8_block_scales"):
        lines += ["", "## INT8 SMSRSparseBlock scales", "", "| node | x_scale | feature_scales | x Q node |",
                  "|---|---|---|---|"]
        for b in r["int8_block_scales"]:
            lines.append(f"| {b['node']} | {b['x_scale']:.4g} | {', '.join(f'{v:.4g}' for v in b['feature_scales'])}"
                         f" | {'added' if b['new_quantize_node'] else 'shared'} |")
    lines += ["", "## Activation ranges", "", "| tensor | min | max | scale |", "|---|---|---|---|"]
    for name, v in r["ranges"].items():
        lines.append(f"| {name} | {v['min']:.4g} | {v['max']:.4g} | {v['scale']:.4g} |")
    return "\n".join(lines) + "\n"

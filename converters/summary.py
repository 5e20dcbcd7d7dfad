"""Model summary: per-block channel split and, for an image, spatial-mask density and multiply-adds.

    python -m converters.summary --weights smsr_x2_official.pt --scale 2 [--image LR.png ...] [--json]

Multiply-add model (3x3 convs, per layer l with D/S = dense/sparse channels, HW pixels, P masked pixels):
  dense:  9 * Cout * Cin * HW
  sparse: 9 * (D_out * D_in * HW + (D_out * S_in + S_out * Cin) * P)
  (dense outputs from dense inputs everywhere; everything that touches a sparse channel only at masked pixels)
  collect 1x1: 64 * (sum D * HW + sum S * P). Head, mask branches, network collect and tail are dense in both.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from .model import SMSR, load_smsr
from .model.smsr import NUM_BLOCKS


def fixed_macs_per_pixel(model: SMSR) -> float:
    """Per-LR-pixel multiply-adds of everything outside the SMBs (same for dense and sparse)."""
    c = model.head[2].out_channels
    c4 = c // 4
    head = 9 * 3 * c + 9 * c * c
    mask_branch = 9 * c * c4 + (9 * c4 * c4 + 9 * c4 * 2) / 4  # conv at full res, conv + convT at half res
    ca = 2 * c * (c // 16) / 1e9  # per image, negligible
    collect = NUM_BLOCKS * c * c + 9 * c * c
    tail = 9 * c * 3 * model.scale ** 2
    return head + NUM_BLOCKS * (mask_branch + ca) + collect + tail


def block_macs(split_counts, channels: int, hw: int, active: int) -> tuple[float, float]:
    """(dense, sparse) multiply-adds of one SMB given [(D_l, S_l)] and the number of masked pixels."""
    dense = sparse = 0.0
    d_in, s_in = channels, 0
    for d_out, s_out in split_counts:
        c_in, c_out = d_in + s_in, d_out + s_out
        dense += 9 * c_out * c_in * hw
        sparse += 9 * (d_out * d_in * hw + (d_out * s_in + s_out * c_in) * active)
        d_in, s_in = d_out, s_out
    total_d = sum(d for d, _ in split_counts)
    total_s = sum(s for _, s in split_counts)
    dense += channels * (total_d + total_s) * hw
    sparse += channels * (total_d * hw + total_s * active)
    return dense, sparse


def summarize(model: SMSR, masks: np.ndarray | None = None) -> dict:
    """masks: 5 x H x W (one image) or None for the split alone."""
    splits = [[(len(s.dense), len(s.sparse)) for s in block] for block in model.channel_splits()]
    out = {"scale": model.scale, "blocks": []}
    if masks is None:
        out["blocks"] = [{"split": s} for s in splits]
        return out
    h, w = masks.shape[1:]
    hw = h * w
    fixed = fixed_macs_per_pixel(model) * hw
    total_dense = total_sparse = fixed
    for b, split in enumerate(splits):
        active = int(masks[b].sum())
        d, s = block_macs(split, model.head[2].out_channels, hw, active)
        total_dense += d
        total_sparse += s
        out["blocks"].append({"split": split, "mask_density": active / hw, "gmac_dense": d / 1e9,
                              "gmac_sparse": s / 1e9})
    out.update(lr_size=[w, h], gmac_dense=total_dense / 1e9, gmac_sparse=total_sparse / 1e9,
               mac_reduction=1 - total_sparse / total_dense, mask_density=float(masks.mean()))
    return out


class ImageInputError(ValueError):
    """An --image that cannot be used (missing, not an image, too small); the message names the file."""


def image_masks(model: SMSR, path: str) -> np.ndarray:
    import torch
    from engine.errors import ImageError
    from engine.image_io import read_rgb
    try:
        img = read_rgb(path).astype(np.float32)
    except ImageError as exc:
        raise ImageInputError(str(exc)) from None
    h, w = img.shape[:2]
    if h < 2 or w < 2:
        raise ImageInputError(f"{path}: image is {w}x{h}; SMSR needs at least 2x2 pixels")
    with torch.no_grad():
        _, masks = model.forward_with_masks(torch.from_numpy(img.transpose(2, 0, 1).copy())[None])
    return masks[0].numpy()


COLUMNS_HELP = ("block: sparse mask block 0-4 (the numbers of the --save-masks picture); split D/S per layer: of "
                "each of its 4 conv layers' output channels, D dense ones computed at every pixel and S sparse ones "
                "computed only where the block's spatial mask is on; mask: the fraction of pixels the mask "
                "selects; GMAC dense/sparse: multiply-adds of the block without / with the sparsity")


def format_summary(s: dict, name: str = "", legend: bool = True) -> str:
    lines = [f"SMSR x{s['scale']}" + (f" — {name} ({s['lr_size'][0]}x{s['lr_size'][1]} LR)" if name else "")]
    header = "block  split D/S per layer        "
    if "gmac_dense" in s:
        header += " mask   GMAC dense  GMAC sparse"
    lines.append(header)
    for i, b in enumerate(s["blocks"]):
        row = f"{i:>5}  " + " ".join(f"{d:>2}/{sp:<2}" for d, sp in b["split"]) + "    "
        if "gmac_dense" in b:
            row += f" {100 * b['mask_density']:4.0f}%  {b['gmac_dense']:10.3f}  {b['gmac_sparse']:11.3f}"
        lines.append(row)
    if "gmac_dense" in s:
        lines.append(f"whole network: {s['gmac_dense']:.3f} -> {s['gmac_sparse']:.3f} GMAC "
                     f"({100 * s['mac_reduction']:.0f} % fewer), mean mask density {100 * s['mask_density']:.0f} %")
    if legend:
        import textwrap
        lines += textwrap.wrap(COLUMNS_HELP, 100)
    return "\n".join(lines)


def main(argv: list[str] | None = None, prog: str = "python -m converters.summary") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0], epilog="columns: " + COLUMNS_HELP)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--scale", type=int, default=2, choices=(2, 3, 4))
    ap.add_argument("--image", nargs="*", default=[], help="LR images to measure mask density and MACs on")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from .model import CheckpointError
    try:
        model = load_smsr(args.weights, args.scale)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.image:
        s = summarize(model)
        print(json.dumps({"image": "", **s}) if args.json else format_summary(s))
        return 0
    rc = 0
    for path in args.image:  # a bad image is reported and skipped; the others are still summarised
        try:
            s = summarize(model, image_masks(model, path))
        except ImageInputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            rc = 2
            continue
        print(json.dumps({"image": path, **s}) if args.json else format_summary(s, path, legend=path == args.image[-1]),
              flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())

"""Roofline model of one SMSR sparse block: dense cuDNN-style block vs the smsr_kernels design.

    python tests/gpu/roofline.py [--weights W] [--set5 DIR]      (CPU only; prints Markdown tables)

Masks and channel splits come from the official x2 model run on Set5 x2 (the real per-block masks).
Two sparse designs are modelled, both counting exactly what such kernels execute (N padded to 16):
  - "pixel lists" (implemented in plugins/smsrSparseBlock/kernels/): active pixels (M=1) compute every output
    channel from every input channel, inactive pixels only dense outputs from dense inputs (nothing when a layer has
    no dense outputs); the collect reads only dense channels at inactive pixels. K = 9 x channels flattened,
    padded to 32 once per part.
  - "8x16 tiles" (the first version, rejected): the same at tile granularity (a tile is active if any pixel is),
    with separate dense/sparse K parts padded to 16 per tap.
DRAM bytes assume 3x3 halo re-reads and weights hit in L1/L2 (the gathers' L1/L2 traffic is listed separately).
Superseded for speed estimates by tests/gpu/perf_model.py (which reads the kernels' SASS: issue rate, latency,
occupancy); kept for the MAC/byte counts and the real-mask statistics (collect_masks) the model reuses.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TILE_H, TILE_W = 8, 16
C = 64
ELEM = 2  # FP16 bytes

# Peak numbers (dense, no structured sparsity). Orin: 85 INT8 TOPS dense = half of the 170 sparse TOPS of the GPU
# in the AGX Orin 64GB data sheet; FP16 = half of INT8. H100 SXM5 data sheet.
DEVICES = {
    "Jetson AGX Orin 64GB": {"fp16": 42.5e12, "int8": 85e12, "bw": 204.8e9},
    "H100 SXM5": {"fp16": 989.4e12, "int8": 1978.9e12, "bw": 3.35e12},
}


def pad16(v: int) -> int:
    return (v + 15) // 16 * 16


def pad32(v: int) -> int:
    return (v + 31) // 32 * 32


def tile_activity(mask: np.ndarray) -> float:
    """Fraction of pixels lying in tiles that contain at least one mask pixel."""
    h, w = mask.shape
    th, tw = -(-h // TILE_H), -(-w // TILE_W)
    padded = np.zeros((th * TILE_H, tw * TILE_W), bool)
    padded[:h, :w] = mask > 0
    tiles = padded.reshape(th, TILE_H, tw, TILE_W).any(axis=(1, 3))
    active_px = 0
    for ty, tx in zip(*np.nonzero(tiles)):
        active_px += min(TILE_H, h - ty * TILE_H) * min(TILE_W, w - tx * TILE_W)
    return active_px / (h * w)


def dense_block_kernels():
    """(MACs/px, bytes/px) per kernel of the dense block: 4 convs + concat-free 1x1 collect (as TensorRT fuses)."""
    convs = [(C * C * 9, 2 * C * ELEM)] * 4
    collect = (C * 4 * C, (4 * C + C) * ELEM)
    return convs + [collect]


def sparse_block_kernels(dense, sparse, d: float, a: float | None = None):
    """(executed MACs/px, DRAM bytes/px) per kernel at mask density d.

    a is None: pixel-list design (rows = pixels, active fraction d, one K part per row kind).
    a given: 8x16-tile design (active fraction a, separate dense/sparse K parts, each padded to 16).
    """
    tiles = a is not None
    act = a if tiles else d
    out = [(0.0, 2 + 4 + 4 * (not tiles))]  # classify: mask read, list writes (tile lists are negligible)
    for l in range(4):
        cin = C if l == 0 else dense[l - 1] + sparse[l - 1]
        din = C if l == 0 else dense[l - 1]
        sin = cin - din
        cout, dout = dense[l] + sparse[l], dense[l]
        inactive_work = dout > 0
        if tiles:  # separate dense/sparse parts, K per tap padded to 16
            mac = pad16(cout) * 9 * (pad16(din) * (din > 0) + pad16(sin) * (sin > 0)) * act
            if inactive_work:
                mac += pad16(dout) * 9 * pad16(din) * (din > 0) * (1 - act)
        else:  # one part per row kind, K = 9 * channels flattened and padded to 32 once
            mac = pad16(cout) * pad32(9 * cin) * act
            if inactive_work:
                mac += pad16(dout) * pad32(9 * din) * (1 - act)
        rd = din * ELEM * (act + (1 - act) * inactive_work) + sin * ELEM * d
        wr = cout * ELEM * act + dout * ELEM * (1 - act)
        out.append((mac, rd + wr + ELEM + 4 * (not tiles)))  # + mask, + row index
    sd, ss = sum(dense), sum(sparse)
    if tiles:
        k_active = sum(pad16(v) for v in dense if v) + sum(pad16(v) for v in sparse if v)
        k_inactive = sum(pad16(v) for v in dense if v)
    else:
        k_active = sum(pad32(x + y) for x, y in zip(dense, sparse))
        k_inactive = sum(pad32(v) for v in dense if v)
    mac = C * (k_active * act + k_inactive * (1 - act))
    byt = sd * ELEM + ss * ELEM * d + C * ELEM + ELEM + 4 * (not tiles)
    out.append((mac, byt))
    return out


def gather_bytes(dense, sparse, d: float) -> float:
    """L1/L2 -> SM bytes/px of the pixel-list gathers (every tap re-read; what an smem halo tile would save)."""
    tot = 0.0
    for l in range(4):
        cin = C if l == 0 else dense[l - 1] + sparse[l - 1]
        din = C if l == 0 else dense[l - 1]
        tot += 9 * ELEM * (cin * d + din * (1 - d) * (dense[l] > 0))
    return tot + ELEM * (sum(dense) + sum(sparse) * d)


def useful_macs(dense, sparse, d: float) -> float:
    """Algorithmic minimum per pixel: dense outputs everywhere (sparse inputs only at M=1), sparse outputs at M=1."""
    tot = 0.0
    for l in range(4):
        cin = C if l == 0 else dense[l - 1] + sparse[l - 1]
        din = C if l == 0 else dense[l - 1]
        tot += dense[l] * 9 * (din + (cin - din) * d) + sparse[l] * 9 * cin * d
    return tot + C * (sum(dense) + sum(sparse) * d)


def roofline(kernels, peak: float, bw: float, int8: bool = False) -> float:
    """Seconds per pixel: every kernel is bound by its own compute or memory time."""
    scale = 0.5 if int8 else 1.0  # INT8 halves the bytes
    return sum(max(2 * m / peak, b * scale / bw) for m, b in kernels)


def collect_masks(weights: str, set5: Path):
    import torch
    from PIL import Image
    from converters.model import load_smsr
    model = load_smsr(weights, 2)
    splits = [(list(map(len, (s.dense for s in b))), list(map(len, (s.sparse for s in b))))
              for b in model.channel_splits()]
    per_image = {}
    for path in sorted(set5.glob("*.png")):
        img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1)[None].copy()
        with torch.no_grad():
            fea = model.head(model.sub_mean(torch.from_numpy(img)))
            masks = []
            for blk in model.body:
                masks.append(blk.spatial_mask(fea)[0, 0].numpy())
                fea, _ = blk(fea)
        per_image[path.stem] = masks
    return splits, per_image


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(ROOT.parent / "shared/weights/smsr_x2_official.pt"))
    ap.add_argument("--set5", default=str(ROOT.parent / "shared/data/Set5/LR_bicubic/X2"))
    args = ap.parse_args(argv)
    splits, per_image = collect_masks(args.weights, Path(args.set5))

    print("### Per block, Set5 x2 (pixel-weighted mean over the 5 images)\n")
    print("| block | split D:S per layer | density d | 8x16-tile activity | dense MAC/px | pixel-list MAC/px "
          "| tile MAC/px | useful MAC/px | dense DRAM B/px | pixel-list DRAM B/px | tile DRAM B/px "
          "| pixel-list gather B/px (L1/L2) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    dense_k = dense_block_kernels()
    stats = []
    for b, (dense, sparse) in enumerate(splits):
        px = d_sum = a_sum = 0.0
        for masks in per_image.values():
            m = masks[b]
            n = m.size
            px += n
            d_sum += float((m > 0).mean()) * n
            a_sum += tile_activity(m) * n
        d, a = d_sum / px, a_sum / px
        sk = sparse_block_kernels(dense, sparse, d)
        tk = sparse_block_kernels(dense, sparse, d, a)
        stats.append((dense, sparse, d, a, sk, tk))
        print(f"| {b} | {' '.join(f'{x}:{y}' for x, y in zip(dense, sparse))} | {d:.3f} | {a:.3f} "
              f"| {sum(m for m, _ in dense_k):,.0f} | {sum(m for m, _ in sk):,.0f} | {sum(m for m, _ in tk):,.0f} "
              f"| {useful_macs(dense, sparse, d):,.0f} | {sum(x for _, x in dense_k):,.0f} "
              f"| {sum(x for _, x in sk):,.0f} | {sum(x for _, x in tk):,.0f} | {gather_bytes(dense, sparse, d):,.0f} |")

    pixels_720p = 1280 * 720
    print("\n### Roofline time of the 5 sparse blocks of one 1280x720 LR frame (per-pixel costs from Set5)\n")
    print("| device | precision | dense block x5 | pixel lists x5 (implemented) | speed-up | 8x16 tiles x5 | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for name, dev in DEVICES.items():
        for prec in ("fp16", "int8"):
            t_dense = 5 * roofline(dense_k, dev[prec], dev["bw"], prec == "int8") * pixels_720p
            t_sparse = sum(roofline(s[4], dev[prec], dev["bw"], prec == "int8") for s in stats) * pixels_720p
            t_tile = sum(roofline(s[5], dev[prec], dev["bw"], prec == "int8") for s in stats) * pixels_720p
            print(f"| {name} | {prec.upper()} | {t_dense * 1e3:.2f} ms | {t_sparse * 1e3:.2f} ms "
                  f"| {t_dense / t_sparse:.2f}x | {t_tile * 1e3:.2f} ms | {t_dense / t_tile:.2f}x |")

    print("\n### One block (block 0 split) at a uniform density, 1280x720, pixel-list design\n")
    print("| density | Orin FP16 dense | Orin FP16 pixel lists | speed-up | H100 FP16 dense | H100 FP16 pixel lists "
          "| speed-up |")
    print("|---|---|---|---|---|---|---|")
    dense0, sparse0 = splits[0]
    orin, h100 = DEVICES["Jetson AGX Orin 64GB"], DEVICES["H100 SXM5"]
    for d in (0.0, 0.05, 0.18, 0.37, 0.63, 0.9, 1.0):
        row = [f"{d:.2f}"]
        for dev in (orin, h100):
            t_dense = roofline(dense_k, dev["fp16"], dev["bw"]) * pixels_720p
            t_sp = roofline(sparse_block_kernels(dense0, sparse0, d), dev["fp16"], dev["bw"]) * pixels_720p
            row += [f"{t_dense * 1e3:.3f} ms", f"{t_sp * 1e3:.3f} ms", f"{t_dense / t_sp:.2f}x"]
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

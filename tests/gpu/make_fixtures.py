"""The 25 real-model block fixtures (5 Set5 x2 images x 5 blocks) with one model load, for tests/gpu/run.sh.

    python tests/gpu/make_fixtures.py --weights W --images DIR_OF_LR_PNGS --out DIR [--crop 64x64] [--ncu-image baby]

Same SMBF files as tests/fixtures/dump_block_fixture.py (one process per file would cost a PyTorch import each).
The model runs on a centre crop of each image (its own real masks): the native test's float64 reference is
single-threaded C++, and 25 full-size fixtures would take minutes of it. `--ncu-image` also writes block 0 of that
image uncropped as ncu_<image>_b0.smbf (the ncu step's input; not checked). CPU, float32: y_expected is PyTorch's.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "fixtures"))


def all_block_io(model, lr: np.ndarray) -> list:
    """dump_block_fixture.block_io for every block from one forward pass: [(x, mask, y)] per block."""
    import torch
    out = []
    with torch.no_grad():
        fea = model.head(model.sub_mean(torch.from_numpy(lr)))
        for smm in model.body:
            mask = smm.spatial_mask(fea)
            y = smm.body(fea, mask, "dense_masked")
            out.append((fea.numpy(), mask.numpy(), y.numpy()))
            fea = smm.ca(y) + fea  # SparseMaskModule.forward, reusing y
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--images", required=True, help="folder of LR x2 PNGs")
    ap.add_argument("--out", required=True)
    ap.add_argument("--blocks", default="0,1,2,3,4")
    ap.add_argument("--crop", default="64x64", help="HxW centre crop of each LR image ('' = whole image)")
    ap.add_argument("--ncu-image", default="", help="also write block 0 of this image uncropped")
    args = ap.parse_args(argv)
    from PIL import Image

    import dump_block_fixture
    from converters.model import load_smsr
    from dump_block_fixture import write_fixture
    images = sorted(Path(args.images).glob("*.png"))
    if not images:
        print(f"make_fixtures: no PNG images in {args.images}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_smsr(args.weights, 2)
    ch, cw = (int(v) for v in args.crop.lower().split("x")) if args.crop else (0, 0)
    one_block_io = dump_block_fixture.block_io
    for path in images:
        with Image.open(path) as im:
            img = np.asarray(im.convert("RGB"), dtype=np.float32)
        if path.stem == args.ncu_image:
            dump_block_fixture.block_io = one_block_io
            write_fixture(out / f"ncu_{path.stem}_b0.smbf", model, img.transpose(2, 0, 1)[None].copy(), 0)
        if ch:
            top, left = max(0, (img.shape[0] - ch) // 2), max(0, (img.shape[1] - cw) // 2)
            img = img[top:top + ch, left:left + cw]
        lr = img.transpose(2, 0, 1)[None].copy()
        # write_fixture (the file format's one writer) gets every block's I/O from this one pass
        cache = all_block_io(model, lr)
        dump_block_fixture.block_io = lambda _model, _lr, block: cache[block]
        dens = []
        for b in (int(v) for v in args.blocks.split(",")):
            info = write_fixture(out / f"{path.stem}_b{b}.bin", model, lr, b)
            dens.append(f"{info['density']:.2f}")
        print(f"fixtures {path.stem} {lr.shape[3]}x{lr.shape[2]}: mask density per block {' '.join(dens)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

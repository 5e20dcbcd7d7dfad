"""All 25 real-model block fixtures (5 Set5 x2 images x 5 blocks) with one model load, for tests/gpu/run.sh.

    python tests/gpu/make_fixtures.py --weights W --images DIR_OF_LR_PNGS --out DIR

Same SMBF files as tests/fixtures/dump_block_fixture.py (one process per file costs a PyTorch import each).
Runs on the CPU: the fixtures' y_expected is the float32 PyTorch block.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "fixtures"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--images", required=True, help="folder of LR x2 PNGs")
    ap.add_argument("--out", required=True)
    ap.add_argument("--blocks", default="0,1,2,3,4")
    args = ap.parse_args(argv)
    from PIL import Image

    from converters.model import load_smsr
    from dump_block_fixture import write_fixture
    images = sorted(Path(args.images).glob("*.png"))
    if not images:
        print(f"make_fixtures: no PNG images in {args.images}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_smsr(args.weights, 2)
    for path in images:
        with Image.open(path) as im:
            lr = np.asarray(im.convert("RGB"), dtype=np.float32).transpose(2, 0, 1)[None].copy()
        dens = []
        for b in (int(v) for v in args.blocks.split(",")):
            info = write_fixture(out / f"{path.stem}_b{b}.bin", model, lr, b)
            dens.append(f"{info['density']:.2f}")
        print(f"fixtures {path.stem} {lr.shape[3]}x{lr.shape[2]}: mask density per block {' '.join(dens)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

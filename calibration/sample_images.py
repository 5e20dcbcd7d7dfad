"""Calibration images that are not the evaluation images: the RGB sample photographs shipped inside the
scikit-image wheel, made into x<s> LR inputs by bicubic downscaling (PIL), written as PNGs to a folder.

    pip install scikit-image            # a development-time tool only; nothing at runtime needs it
    python -m calibration.sample_images OUT_DIR [--scale 2]

Calibrating on the evaluation images (Set5 LR) flatters INT8 accuracy; these photos share no image with Set5.
They are read from the wheel's data folder (no download).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

# skimage.data function -> output name. Natural RGB photographs only (no synthetic, microscope, medical or
# astronomical images, whose statistics differ from the photos SR models are evaluated on).
SAMPLES = {"astronaut": "astronaut", "chelsea": "chelsea", "coffee": "coffee", "rocket": "rocket",
           "stereo_motorcycle": "motorcycle"}


def _load(name: str) -> np.ndarray:
    import skimage.data
    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
        img = img[0]
    return np.asarray(img)[..., :3]


def make_lr(img: np.ndarray, scale: int) -> "Image.Image":
    """HR RGB uint8 -> LR: cropped to a multiple of `scale`, then PIL bicubic (antialiased) downscaling."""
    from PIL import Image
    h, w = (img.shape[0] // scale) * scale, (img.shape[1] // scale) * scale
    hr = Image.fromarray(np.ascontiguousarray(img[:h, :w]).astype(np.uint8), "RGB")
    return hr.resize((w // scale, h // scale), Image.BICUBIC)


def write_samples(out_dir: str | Path, scale: int = 2) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fn, name in SAMPLES.items():
        path = out_dir / f"{name}.png"
        make_lr(_load(fn), scale).save(path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m calibration.sample_images", description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", help="folder for the LR PNGs")
    ap.add_argument("--scale", type=int, choices=(2, 3, 4), default=2)
    args = ap.parse_args(argv)
    try:
        import skimage  # noqa: F401
    except ImportError:
        print("error: scikit-image is not installed (pip install scikit-image); it is only needed to make these "
              "calibration images", file=sys.stderr)
        return 2
    for p in write_samples(args.out_dir, args.scale):
        from PIL import Image
        with Image.open(p) as im:
            print(f"{p}  {im.width}x{im.height}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Image I/O and pre/post-processing around the network.

The network sees RGB floats on the 0..255 scale. Every supported input is brought to that form and the output is
written back in the input's kind:
    RGB / RGBA           -> RGB / RGBA (alpha upscaled separately, bicubic)
    L / LA / 1           -> L / LA (gray replicated to RGB for the network, BT.601 luma of the result)
    P (palette) / PA     -> RGB, or RGBA when the palette has transparency (a super-resolved image has colours the
                            palette lacks, so it is not re-quantised)
    16-bit gray/RGB/RGBA/gray+alpha PNG -> same, 16 bits (values /257 for the network, *257 back)
    CMYK / YCbCr         -> RGB
EXIF orientation is applied on load (and reset to 1 in the kept EXIF); the ICC profile is kept.
Outputs are rounded and clamped to the bit depth of the input. Writes are atomic (temp file + rename).
"""
from __future__ import annotations

import contextlib
import io
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from . import png16
from .atomic_write import atomic_write  # noqa: F401  (part of this module's API)
from .errors import (CorruptImageError, ImageNotFoundError, ImageTooLargeError, OutputError,
                     UnsupportedImageError)

# Pillow's own decompression-bomb threshold (~89.5 MP); --allow-large-images lifts it.
DEFAULT_MAX_PIXELS = 89_478_485
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pnm", ".tga"}
# Formats written as themselves; anything else (GIF, PPM, TGA, ...) is written as PNG.
_WRITABLE = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # BT.601, as in the evaluation


@dataclass
class ImageData:
    """A decoded image in network form plus what is needed to write the result back in the same kind."""

    rgb: np.ndarray  # H×W×3 float32, 0..255 scale (16-bit values divided by 257)
    alpha: np.ndarray | None  # H×W float32 in the native range (0..255 or 0..65535), or None
    bit_depth: int  # 8 or 16
    gray: bool  # written back as one channel (L / LA / I;16)
    format: str  # source format name from Pillow ("PNG", "JPEG", ...)
    source_mode: str
    icc_profile: bytes | None = None
    exif: bytes | None = None
    extra: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), like Pillow."""
        return self.rgb.shape[1], self.rgb.shape[0]

    @property
    def max_value(self) -> int:
        return 65535 if self.bit_depth == 16 else 255

    def out_mode(self) -> str:
        """Mode name of what `save_image` writes: L, LA, RGB, RGBA, I;16, LA;16, RGB;16, RGBA;16."""
        base = ("L" if self.gray else "RGB") + ("A" if self.alpha is not None else "")
        if self.bit_depth == 8:
            return base
        return "I;16" if base == "L" else base + ";16"


def _check_pixels(path, w: int, h: int, max_pixels: int | None) -> None:
    if max_pixels is not None and w * h > max_pixels:
        raise ImageTooLargeError(
            "%s: %d×%d = %.1f megapixels is above the limit of %.1f MP that guards against decompression bombs; "
            "pass --allow-large-images if you trust this file" % (path, w, h, w * h / 1e6, max_pixels / 1e6))


@contextlib.contextmanager
def _decoding(path: Path):
    """Turn whatever a decoder raises for a bad file into an ImageError subclass naming the file."""
    if not path.exists():
        raise ImageNotFoundError("%s: no such file" % path)
    if path.is_dir():
        raise UnsupportedImageError("%s: is a directory" % path)
    try:
        yield
    except (ImageTooLargeError, UnsupportedImageError):
        raise
    except UnidentifiedImageError:
        raise UnsupportedImageError("%s: not an image file Pillow can identify (corrupt or unsupported format)"
                                    % path) from None
    except png16.PNGError as e:
        raise CorruptImageError("%s: cannot decode 16-bit PNG: %s" % (path, e)) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as e:
        raise CorruptImageError("%s: cannot decode image (%s)" % (path, e)) from None


def load_image(path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ImageData:
    """Decode `path` into network form. Raises ImageError subclasses with a message naming the file."""
    path = Path(path)
    with _decoding(path):
        if png16.needs_png16(path):
            hdr = png16.read_header(path)
            _check_pixels(path, hdr.width, hdr.height, max_pixels)
            return _load_png16(path)
        with warnings.catch_warnings():
            # Our own limit replaces Pillow's (its warning/exception would otherwise fire first).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            old = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                with Image.open(path) as im:
                    _check_pixels(path, im.width, im.height, max_pixels)
                    im.load()
                    return _from_pillow(path, im)
            finally:
                Image.MAX_IMAGE_PIXELS = old


def read_rgb(path) -> np.ndarray:
    """H x W x 3 uint8 RGB pixels as stored (no orientation, 8 bits), for datasets: evaluation, calibration,
    summaries. Raises the same ImageError subclasses as load_image, naming the file."""
    path = Path(path)
    with _decoding(path), Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _from_pillow(path, im: Image.Image) -> ImageData:
    fmt = im.format or "PNG"
    icc = im.info.get("icc_profile")
    im = ImageOps.exif_transpose(im)  # applies and clears the orientation tag (keeps the other EXIF fields)
    exif = im.info.get("exif")
    mode = im.mode
    meta = dict(format=fmt, source_mode=mode, icc_profile=icc, exif=exif)
    if mode == "P":
        mode_to = "RGBA" if ("transparency" in im.info) else "RGB"
        im, mode = im.convert(mode_to), mode_to
    elif mode == "PA":
        im, mode = im.convert("RGBA"), "RGBA"
    elif mode == "1":
        im, mode = im.convert("L"), "L"
    elif mode in ("CMYK", "YCbCr"):
        im, mode = im.convert("RGB"), "RGB"
        if mode == "RGB" and meta["source_mode"] == "CMYK":
            meta["icc_profile"] = None  # a CMYK profile does not describe the converted RGB data
    elif mode in ("RGBa", "La"):  # premultiplied alpha
        im = im.convert(mode[0:-1] + "A")
        mode = im.mode
    if mode in ("RGB", "RGBA", "RGBX"):
        a = np.asarray(im)
        return ImageData(a[:, :, :3].astype(np.float32), a[:, :, 3].astype(np.float32) if mode == "RGBA" else None,
                         8, False, **meta)
    if mode in ("L", "LA"):
        a = np.asarray(im)
        g = (a if mode == "L" else a[:, :, 0]).astype(np.float32)
        return ImageData(np.repeat(g[:, :, None], 3, axis=2), a[:, :, 1].astype(np.float32) if mode == "LA" else None,
                         8, True, **meta)
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.int64)
        if mode == "I" and (a.size and (a.min() < 0 or a.max() > 65535)):
            raise UnsupportedImageError("%s: 32-bit integer image with values outside 0..65535" % path)
        g = (a.astype(np.float32) / 257.0)
        return ImageData(np.repeat(g[:, :, None], 3, axis=2), None, 16, True, **meta)
    raise UnsupportedImageError("%s: image mode %r is not supported (use RGB, RGBA, L, LA, P, or 16-bit PNG)"
                                % (path, mode))


_ORIENT = {  # EXIF orientation -> numpy transform of an H×W×C array
    2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, -1)[::-1, :],
    8: lambda a: np.rot90(a, 1),
}


def _load_png16(path) -> ImageData:
    img = png16.decode(path)
    px = img.pixels
    exif = img.exif
    if exif:
        ex = Image.Exif()
        ex.load(exif if exif.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + exif)
        orient = ex.get(0x0112)
        if orient in _ORIENT:
            px = np.ascontiguousarray(_ORIENT[orient](px))
            del ex[0x0112]
            exif = ex.tobytes()
    c = px.shape[2]
    color = px[:, :, :3] if c >= 3 else np.repeat(px[:, :, :1], 3, axis=2)
    alpha = px[:, :, c - 1].astype(np.float32) if c in (2, 4) else None
    return ImageData(color.astype(np.float32) / 257.0, alpha, 16, c < 3, "PNG", "RGB;16", img.icc_profile, exif)


# --- network form ---------------------------------------------------------------------------------------------------
def to_network(img: ImageData) -> np.ndarray:
    """3×H×W float32 (RGB, 0..255), contiguous."""
    return np.ascontiguousarray(img.rgb.transpose(2, 0, 1), dtype=np.float32)


def upscale_alpha(alpha: np.ndarray, scale: int, max_value: int) -> np.ndarray:
    """Bicubic upscaling of the alpha plane (float resize, then clamp to the valid range)."""
    h, w = alpha.shape
    im = Image.fromarray(alpha.astype(np.float32), mode="F").resize((w * scale, h * scale), Image.BICUBIC)
    return np.clip(np.asarray(im), 0, max_value)


def make_output(img: ImageData, sr: np.ndarray, scale: int) -> ImageData:
    """Wrap the network output (3×sH×sW float, 0..255, unclamped) as an ImageData of the input's kind."""
    rgb = np.asarray(sr, np.float32).transpose(1, 2, 0)
    alpha = upscale_alpha(img.alpha, scale, img.max_value) if img.alpha is not None else None
    return ImageData(rgb, alpha, img.bit_depth, img.gray, img.format, img.source_mode, img.icc_profile, img.exif)


def _quantize(x: np.ndarray, bit_depth: int) -> np.ndarray:
    maxv = 65535 if bit_depth == 16 else 255
    return np.clip(np.rint(x), 0, maxv).astype(np.uint16 if bit_depth == 16 else np.uint8)


def encode_arrays(img: ImageData) -> np.ndarray:
    """H×W×C integer array of what is written: colour (or gray) channels then alpha, in the output bit depth."""
    color = img.rgb * (257.0 if img.bit_depth == 16 else 1.0)
    if img.gray:
        color = (color @ _LUMA)[:, :, None]
    planes = [color] if img.alpha is None else [color, img.alpha[:, :, None]]
    return _quantize(np.concatenate(planes, axis=2), img.bit_depth)


def output_suffix(img: ImageData) -> str:
    """File suffix to write: the input's format when Pillow can write it in this mode, else .png."""
    if img.bit_depth == 16:
        return ".png"
    if img.format == "JPEG" and img.alpha is not None:
        return ".png"
    return _WRITABLE.get(img.format, ".png")


def _format_for(suffix: str) -> str:
    for fmt, suf in _WRITABLE.items():
        if suf == suffix.lower() or (fmt == "JPEG" and suffix.lower() == ".jpeg") or (
                fmt == "TIFF" and suffix.lower() == ".tiff"):
            return fmt
    raise OutputError("cannot write images with suffix %r (use .png, .jpg, .bmp, .tif or .webp)" % suffix)


def _encode_to(img: ImageData, f, fmt: str) -> None:
    px = encode_arrays(img)
    if img.bit_depth == 16 and px.shape[2] != 1:
        if fmt != "PNG":
            raise OutputError("16-bit colour or alpha images can only be written as PNG")
        png16.encode(png16.PNG16(px, img.icc_profile, _strip_exif_header(img.exif)), f)
        return
    if img.bit_depth == 16:
        if fmt not in ("PNG", "TIFF"):
            raise OutputError("16-bit images can only be written as PNG or TIFF")
        pil = Image.fromarray(px[:, :, 0].astype(np.uint16))  # mode I;16
    else:
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[px.shape[2]]
        if fmt == "JPEG" and mode in ("LA", "RGBA"):
            raise OutputError("JPEG cannot store an alpha channel; write .png instead")
        pil = Image.fromarray(px if px.shape[2] > 1 else px[:, :, 0], mode=mode)
    kw = {}
    if img.icc_profile and fmt in ("PNG", "JPEG", "TIFF", "WEBP"):
        kw["icc_profile"] = img.icc_profile
    if img.exif and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        kw["exif"] = img.exif
    if fmt == "JPEG":
        kw.update(quality=95)
    elif fmt == "WEBP":
        kw.update(quality=95)
    pil.save(f, format=fmt, **kw)


def _strip_exif_header(exif: bytes | None) -> bytes | None:
    if exif and exif.startswith(b"Exif\x00\x00"):
        return exif[6:]
    return exif


def check_writable_as(img: ImageData, path) -> None:
    """UsageError now (before inference) when `img`'s kind cannot be written to `path`'s format, e.g. alpha into a
    JPEG: the same encoder runs on a 2×2 image of the same kind."""
    from .errors import UsageError
    path = Path(path)
    probe = ImageData(np.zeros((2, 2, 3), np.float32), None if img.alpha is None else np.zeros((2, 2), np.float32),
                      img.bit_depth, img.gray, img.format, img.source_mode, img.icc_profile, img.exif)
    try:
        _encode_to(probe, io.BytesIO(), _format_for(path.suffix))
    except OutputError as e:
        raise UsageError("output %s: %s (choose another --format, or --format same)" % (path, e)) from None
    except (OSError, ValueError, KeyError) as e:  # Pillow: mode not supported by this format
        raise UsageError("output %s: a %s image cannot be written as %s (%s); choose another --format"
                         % (path, img.out_mode(), path.suffix, e)) from None


def save_image(img: ImageData, path) -> Path:
    """Write `img` to `path` (format from the suffix) atomically."""
    path = Path(path)
    fmt = _format_for(path.suffix)
    return atomic_write(path, lambda f: _encode_to(img, f, fmt))


def save_pil(im: Image.Image, path, **kw) -> Path:
    path = Path(path)
    fmt = _format_for(path.suffix)
    return atomic_write(path, lambda f: im.save(f, format=fmt, **kw))


def encode_bytes(img: ImageData, fmt: str = "PNG") -> bytes:
    """Encoded file contents (for tests and tools that do not want a file)."""
    b = io.BytesIO()
    _encode_to(img, b, fmt)
    return b.getvalue()

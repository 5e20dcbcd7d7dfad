"""16-bit PNG I/O for the colour types Pillow cannot keep at 16 bits, on top of pypng.

Pillow reads 16-bit grayscale PNGs as "I;16" but silently reduces 16-bit RGB, RGBA and gray+alpha PNGs to 8 bits
and cannot write them at all, so the runtime reads and writes those with pypng (module `png`: any bit depth,
every filter, Adam7 interlacing). This module only adapts it: numpy arrays in and out, pypng's exceptions turned
into PNGError, and the iCCP (ICC profile) and eXIf chunks, which pypng neither reads nor writes, carried over at
chunk level through pypng's own chunk reader/writer so the colour profile and EXIF survive.
"""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import png

PNG_SIGNATURE = png.signature


class PNGError(ValueError):
    """The file is not a PNG this module can decode (the message says why)."""


@dataclass
class PNGHeader:
    width: int
    height: int
    bit_depth: int
    color_type: int
    interlace: int


@dataclass
class PNG16:
    pixels: np.ndarray  # H×W×C uint16, C = 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA)
    icc_profile: bytes | None = None
    exif: bytes | None = None


def read_header(path) -> PNGHeader | None:
    """IHDR of a PNG file, or None when the file is not a PNG or its first chunk is unreadable (cheap: reads only
    that chunk; a damaged file then goes to Pillow, which reports the damage)."""
    with open(path, "rb") as f:
        try:
            ctype, body = png.Reader(file=f).chunk()
        except (EOFError, png.Error):
            return None
    if ctype != b"IHDR" or len(body) != 13:
        return None
    # pypng parses IHDR only inside a full decode; this is its fixed 13-byte layout (PNG spec §11.2.2).
    w, h, depth, color, _comp, _filt, interlace = struct.unpack(">IIBBBBB", body)
    return PNGHeader(w, h, depth, color, interlace)


def needs_png16(path) -> bool:
    """True for a 16-bit PNG with colour (or alpha) that Pillow would reduce to 8 bits."""
    hdr = read_header(path)
    return hdr is not None and hdr.bit_depth == 16 and hdr.color_type in (2, 4, 6)


def _ancillary(data: bytes) -> tuple[bytes | None, bytes | None]:
    """(ICC profile, EXIF) of a PNG file's bytes. Walking every chunk also checks every CRC and that the file is
    complete, so damage is reported here, by chunk, before decoding starts."""
    icc = exif = None
    try:
        for ctype, body in png.Reader(bytes=data).chunks():
            if ctype == b"iCCP" and icc is None:
                # iCCP = profile name, NUL, compression method (0 = zlib), zlib stream.
                _name, _, rest = body.partition(b"\x00")
                try:
                    icc = zlib.decompress(rest[1:])
                except zlib.error:
                    icc = None  # a broken profile is dropped, not fatal
            elif ctype == b"eXIf" and exif is None:
                exif = body
    except png.ChunkError as e:
        if "No more chunks" in str(e):
            raise PNGError("file ends before the IEND chunk (truncated)") from None
        raise PNGError(str(e) + (" (truncated file)" if "too short" in str(e) else "")) from None
    except png.Error as e:
        raise PNGError(str(e)) from None
    return icc, exif


def decode(path) -> PNG16:
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != PNG_SIGNATURE:
        raise PNGError("not a PNG file")
    icc, exif = _ancillary(data)
    # pypng decodes lazily: damaged IDAT data surfaces while the rows are taken, as pypng's, zlib's or (for data
    # shorter than the header promises) plain Python errors.
    damage = (png.Error, zlib.error, IndexError, ValueError, struct.error)
    try:
        w, h, rows, info = png.Reader(bytes=data).read()
    except damage as e:
        raise PNGError("corrupt PNG (%s)" % e) from None
    if info["bitdepth"] != 16 or "palette" in info:
        raise PNGError("only 16-bit gray/RGB/gray+alpha/RGBA PNGs are handled here (bit depth %d%s)"
                       % (info["bitdepth"], ", palette" if "palette" in info else ""))
    try:
        # Rows are array('H') of native-order values: one buffer copy each, no per-pixel Python.
        rows = [np.frombuffer(r, np.uint16) for r in rows]
    except damage as e:
        raise PNGError("corrupt image data (%s)" % (str(e) or type(e).__name__)) from None
    c = info["planes"]
    # pypng does not check the row count, and a short interlaced pass can leave rows of the wrong length.
    if len(rows) != h or any(r.size != w * c for r in rows):
        raise PNGError("image data does not hold %d rows of %d pixels (truncated or corrupt)" % (h, w))
    pixels = np.vstack(rows).reshape(h, w, c) if h else np.zeros((0, w, c), np.uint16)
    return PNG16(pixels, icc, exif)


def encode(img: PNG16, fileobj, compress_level: int = 6) -> None:
    """Write `img` as a (non-interlaced) 16-bit PNG with pypng; iCCP and eXIf are inserted right after IHDR."""
    px = np.asarray(img.pixels)
    if px.ndim == 2:
        px = px[:, :, None]
    h, w, c = px.shape
    if c not in (1, 2, 3, 4):
        raise PNGError("cannot write %d channels as PNG (1 to 4)" % c)
    writer = png.Writer(w, h, greyscale=c < 3, alpha=c in (2, 4), bitdepth=16, compression=compress_level)
    buf = io.BytesIO()
    # Python int lists: pypng packs each row with one struct.pack call.
    writer.write(buf, px.astype(np.uint16).reshape(h, w * c).tolist())
    extra = []
    if img.icc_profile:
        extra.append((b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(img.icc_profile)))
    if img.exif:
        extra.append((b"eXIf", bytes(img.exif)))
    if not extra:
        fileobj.write(buf.getvalue())
        return
    chunks = list(png.Reader(bytes=buf.getvalue()).chunks())
    png.write_chunks(fileobj, chunks[:1] + extra + chunks[1:])

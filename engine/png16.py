"""Minimal 16-bit PNG codec for the colour types Pillow cannot keep at 16 bits.

Pillow reads 16-bit grayscale PNGs as "I;16" but silently reduces 16-bit RGB, RGBA and gray+alpha PNGs to 8 bits
and cannot write them at all, so the runtime decodes and encodes those itself (zlib + PNG row filters, numpy).
Scope: bit depth 16, colour types 0 (gray), 2 (RGB), 4 (gray+alpha), 6 (RGBA), not interlaced; the iCCP and eXIf
chunks are read and written so the colour profile and EXIF survive. Everything else goes through Pillow.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


class PNGError(ValueError):
    """The file is not a PNG this codec can decode (the message says why)."""


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
    """IHDR of a PNG file, or None when the file is not a PNG (cheap: reads 33 bytes)."""
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 33 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    w, h, depth, ctype, _comp, _filt, interlace = struct.unpack(">IIBBBBB", head[16:29])
    return PNGHeader(w, h, depth, ctype, interlace)


def needs_png16(path) -> bool:
    """True for a 16-bit PNG with colour (or alpha) that Pillow would reduce to 8 bits."""
    hdr = read_header(path)
    return hdr is not None and hdr.bit_depth == 16 and hdr.color_type in (2, 4, 6)


def _chunks(data: bytes):
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise PNGError("truncated chunk %r" % ctype)
        crc = data[pos + 8 + length : pos + 12 + length]
        if len(crc) != 4 or struct.unpack(">I", crc)[0] != (zlib.crc32(ctype + body) & 0xFFFFFFFF):
            raise PNGError("bad CRC in chunk %r" % ctype)
        yield ctype, body
        pos += 12 + length
        if ctype == b"IEND":
            return
    raise PNGError("missing IEND chunk (truncated file)")


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo PNG row filtering. Sub and Up are vectorised; Average and Paeth depend on the previous
    pixel of the same row, so they run per pixel (slow for huge images, but rare and exact)."""
    if len(raw) != height * (stride + 1):
        raise PNGError("image data has %d bytes, expected %d" % (len(raw), height * (stride + 1)))
    rows = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for y in range(height):
        ftype = int(rows[y, 0])
        line = rows[y, 1:].astype(np.int32)
        if ftype == 0:
            cur = line
        elif ftype == 1:  # Sub: running sum per byte lane
            cur = np.cumsum(line.reshape(-1, bpp), axis=0).reshape(-1) & 0xFF
        elif ftype == 2:  # Up
            cur = (line + prev) & 0xFF
        elif ftype in (3, 4):
            cur = _unfilter_sequential(ftype, line.tolist(), prev.tolist(), bpp)
        else:
            raise PNGError("unknown filter type %d in row %d" % (ftype, y))
        out[y] = cur
        prev = np.asarray(cur, np.int32)
    return out


def _unfilter_sequential(ftype: int, line: list, prev: list, bpp: int) -> np.ndarray:
    cur = [0] * len(line)
    for i, v in enumerate(line):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        if ftype == 3:
            cur[i] = (v + ((a + b) >> 1)) & 0xFF
        else:
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
            cur[i] = (v + pred) & 0xFF
    return np.asarray(cur, np.int32)


def decode(path) -> PNG16:
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != PNG_SIGNATURE:
        raise PNGError("not a PNG file")
    hdr = None
    idat = []
    icc = exif = None
    for ctype, body in _chunks(data):
        if ctype == b"IHDR":
            w, h, depth, color, comp, filt, interlace = struct.unpack(">IIBBBBB", body)
            hdr = PNGHeader(w, h, depth, color, interlace)
            if comp != 0 or filt != 0:
                raise PNGError("unknown compression/filter method")
        elif ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"iCCP":
            name_end = body.find(b"\x00")
            try:
                icc = zlib.decompress(body[name_end + 2 :])
            except zlib.error:
                icc = None  # a broken profile is dropped, not fatal
        elif ctype == b"eXIf":
            exif = body
    if hdr is None or not idat:
        raise PNGError("missing IHDR or IDAT chunk")
    if hdr.bit_depth != 16 or hdr.color_type not in _CHANNELS:
        raise PNGError("only 16-bit gray/RGB/gray+alpha/RGBA PNGs are handled here")
    if hdr.interlace:
        raise PNGError("interlaced 16-bit PNGs are not supported (re-save without interlacing)")
    channels = _CHANNELS[hdr.color_type]
    bpp = 2 * channels
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as e:
        raise PNGError("corrupt image data (%s)" % e) from None
    flat = _unfilter(raw, hdr.height, hdr.width * bpp, bpp)
    pixels = flat.view(">u2").reshape(hdr.height, hdr.width, channels).astype(np.uint16)
    return PNG16(pixels, icc, exif)


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)


def encode(img: PNG16, fileobj, compress_level: int = 6) -> None:
    """Write `img` as a 16-bit PNG (Up filter on every row: simple, vectorised, compresses well)."""
    px = np.asarray(img.pixels)
    if px.ndim == 2:
        px = px[:, :, None]
    h, w, c = px.shape
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = px.astype(">u2").reshape(h, w * c).view(np.uint8)
    up = rows.copy()
    up[1:] = rows[1:] - rows[:-1]  # uint8 arithmetic wraps mod 256, as the filter wants
    filtered = np.concatenate([np.full((h, 1), 2 if h > 1 else 0, np.uint8), up], axis=1)
    filtered[0, 0] = 0  # first row has no row above: use filter None
    filtered[0, 1:] = rows[0]
    out = [PNG_SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0))]
    if img.icc_profile:
        out.append(_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(img.icc_profile)))
    if img.exif:
        out.append(_chunk(b"eXIf", img.exif))
    out.append(_chunk(b"IDAT", zlib.compress(filtered.tobytes(), compress_level)))
    out.append(_chunk(b"IEND", b""))
    fileobj.write(b"".join(out))

"""YUV <-> RGB with the stream's own matrix and range, in numpy (exact formulas we control and test).

Why not `frame.to_ndarray(format="rgb24")`: swscale then applies BT.601 limited range whatever the stream says,
the most common colour bug of video SR tools. Here the matrix and range come from the frame/stream tags; only
when a tag is missing is a default assumed (matrix: BT.709 for frames >= 1280 wide or >= 720 high, else BT.601,
as players do; range: limited for YUV, full for yuvj*/gray/RGB), and the output is tagged with what was used.
Primaries and transfer need no conversion (the network works on the source's R'G'B' values) and are passed on.

Bit depths: 8-bit sources give 8-bit RGB (exactly what the image path sees for an 8-bit RGB picture); 9..16-bit
sources give 16-bit RGB (the image path's 16-bit PNG semantics: network value = v / 257).
Chroma siting (4:2:0/4:2:2): horizontally co-sited with even luma columns, vertically centred (the H.264/HEVC
default "left"); upsampling is linear between chroma samples, downsampling the matching [1 2 1]/4 x [1 1]/2 filter.
"""
from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np

# AVColorSpace value -> (Kr, Kb)
_MATRICES = {
    1: ("bt709", 0.2126, 0.0722),
    4: ("fcc", 0.30, 0.11),
    5: ("bt470bg", 0.299, 0.114),
    6: ("smpte170m", 0.299, 0.114),
    7: ("smpte240m", 0.212, 0.087),
    9: ("bt2020nc", 0.2627, 0.0593),
    10: ("bt2020c", 0.2627, 0.0593),  # constant luminance decoded as NCL: a close approximation, noted
}
MATRIX_UNSPECIFIED = 2
MATRIX_RGB = 0
BT709, BT601 = 1, 6
RANGE_UNSPECIFIED, RANGE_LIMITED, RANGE_FULL = 0, 1, 2


@dataclass(frozen=True)
class ColourSpec:
    """What a stream's samples mean: matrix (AVColorSpace), range (AVColorRange), primaries, transfer."""

    matrix: int
    range: int
    primaries: int = 2
    transfer: int = 2
    assumed: str = ""  # human note on what was guessed for missing tags ("" = all tagged)

    @property
    def matrix_name(self) -> str:
        return _MATRICES.get(self.matrix, ("rgb" if self.matrix == 0 else "unknown",))[0]

    @property
    def range_name(self) -> str:
        return {RANGE_LIMITED: "limited", RANGE_FULL: "full"}.get(self.range, "unspecified")


def resolve(matrix: int, rng: int, primaries: int, transfer: int, width: int, height: int, pix_fmt: str,
            is_rgb: bool = False) -> ColourSpec:
    """Fill in missing tags the way players do and say what was assumed."""
    notes = []
    if is_rgb:
        return ColourSpec(MATRIX_RGB, RANGE_FULL, primaries, transfer)
    gray = pix_fmt.startswith("gray")
    if gray:
        matrix = matrix if matrix in _MATRICES else BT601  # no chroma: the matrix only names the luma weights
    elif matrix not in _MATRICES:
        hd = width >= 1280 or height >= 720
        if matrix not in (MATRIX_UNSPECIFIED, 3):  # 3 = reserved; anything else (YCgCo, ICtCp...) we do not do
            notes.append("matrix %d not supported" % matrix)
        matrix = BT709 if hd else BT601
        notes.append("matrix untagged, assumed %s (%s size)" % (_MATRICES[matrix][0], "HD" if hd else "SD"))
    if rng not in (RANGE_LIMITED, RANGE_FULL):
        full = pix_fmt.startswith("yuvj") or gray
        rng = RANGE_FULL if full else RANGE_LIMITED
        notes.append("range untagged, assumed %s" % ("full" if full else "limited"))
    return ColourSpec(matrix, rng, primaries, transfer, "; ".join(notes))


def _levels(bits: int, full: bool):
    """(luma offset, luma scale, chroma mid, chroma scale) for code values of `bits` bits."""
    if full:
        m = float((1 << bits) - 1)
        return 0.0, m, float(1 << (bits - 1)), m
    k = float(1 << (bits - 8))
    return 16.0 * k, 219.0 * k, 128.0 * k, 224.0 * k


def _coeffs(matrix: int):
    _, kr, kb = _MATRICES[matrix]
    return kr, 1.0 - kr - kb, kb


# --- chroma resampling ----------------------------------------------------------------------------------------------
def _up_h(c: np.ndarray, width: int) -> np.ndarray:
    """Co-sited horizontal upsampling x2: even columns copy, odd columns average their two neighbours."""
    out = np.empty(c.shape[:-1] + (width,), np.float32)
    out[..., 0::2] = c[..., :(width + 1) // 2]
    right = np.concatenate([c[..., 1:], c[..., -1:]], axis=-1)
    out[..., 1::2] = (0.5 * (c + right))[..., :width // 2]
    return out


def _up_v(c: np.ndarray, height: int) -> np.ndarray:
    """Centred vertical upsampling x2: luma row 2k+d sits at chroma k -1/4 (d=0) or k +1/4 (d=1)."""
    above = np.concatenate([c[:1], c[:-1]], axis=0)
    below = np.concatenate([c[1:], c[-1:]], axis=0)
    out = np.empty((height,) + c.shape[1:], np.float32)
    out[0::2] = (0.75 * c + 0.25 * above)[:(height + 1) // 2]
    out[1::2] = (0.75 * c + 0.25 * below)[:height // 2]
    return out


def _down_h(c: np.ndarray) -> np.ndarray:
    """[1 2 1]/4 at even columns (co-sited), edges replicated."""
    w = c.shape[-1]
    p = np.concatenate([c[..., :1], c, c[..., -1:], c[..., -1:]], axis=-1)
    n = (w + 1) // 2
    return 0.25 * p[..., 0:2 * n:2] + 0.5 * p[..., 1:2 * n + 1:2] + 0.25 * p[..., 2:2 * n + 2:2]


def _down_v(c: np.ndarray) -> np.ndarray:
    """Mean of rows 2k, 2k+1 (centred), last row replicated for odd heights."""
    if c.shape[0] % 2:
        c = np.concatenate([c, c[-1:]], axis=0)
    return 0.5 * (c[0::2] + c[1::2])


# --- plane access ---------------------------------------------------------------------------------------------------
def _plane(frame: av.VideoFrame, i: int, dtype) -> np.ndarray:
    p = frame.planes[i]
    item = np.dtype(dtype).itemsize
    a = np.frombuffer(p, dtype).reshape(p.height, p.line_size // item)
    return a[:, :p.width]


def _write_plane(frame: av.VideoFrame, i: int, values: np.ndarray) -> None:
    p = frame.planes[i]
    dtype = values.dtype
    a = np.frombuffer(p, dtype).reshape(p.height, p.line_size // dtype.itemsize)
    a[:, :p.width] = values


@dataclass(frozen=True)
class Layout:
    """A planar format we read and write natively."""

    kind: str  # "yuv" | "gray"
    bits: int
    sub_x: int  # log2 chroma subsampling
    sub_y: int


def layout_of(pix_fmt: str) -> Layout | None:
    fmt = av.VideoFormat(pix_fmt)
    comps = fmt.components
    if fmt.is_big_endian or fmt.has_palette or fmt.is_bayer or fmt.is_rgb or not (fmt.is_planar or len(comps) == 1):
        return None
    if any(c.is_alpha for c in comps):
        return None
    bits = comps[0].bits
    if bits > 16 or any(c.bits != bits for c in comps):
        return None
    if len(comps) == 1 and pix_fmt.startswith("gray"):
        return Layout("gray", bits, 0, 0)
    if len(comps) == 3 and pix_fmt.startswith("yuv") and [c.plane for c in comps] == [0, 1, 2]:
        w, h = 64, 64
        cw, ch = fmt.chroma_width(w), fmt.chroma_height(h)
        sx = {w: 0, w // 2: 1, w // 4: 2}.get(cw)
        sy = {h: 0, h // 2: 1, h // 4: 2}.get(ch)
        if sx is None or sy is None or sx > 1 or sy > 1:
            return None
        return Layout("yuv", bits, sx, sy)
    return None


def _dtype(bits: int):
    return np.uint8 if bits <= 8 else np.uint16


def decode_format(pix_fmt: str) -> tuple[str, bool]:
    """(pixel format to read frames in, is_rgb): native planar YUV/gray as is; RGB formats via swscale to
    rgb24/rgb48le (no matrix involved); other YUV layouts (nv12, p010, yuyv422, alpha...) via swscale to planar
    4:4:4 of enough bits (YUV to YUV keeps the samples' matrix)."""
    if layout_of(pix_fmt) is not None:
        return pix_fmt, False
    fmt = av.VideoFormat(pix_fmt)
    bits = max((c.bits for c in fmt.components), default=8)
    if fmt.is_rgb or pix_fmt.startswith(("gbr", "rgb", "bgr", "argb", "abgr", "0rgb", "0bgr", "x2")):
        return ("rgb24" if bits <= 8 else "rgb48le"), True
    if pix_fmt.startswith(("gray", "ya")):
        return ("gray" if bits <= 8 else "gray16le"), False
    return ("yuv444p" if bits <= 8 else "yuv444p16le"), False


def frame_to_rgb(frame: av.VideoFrame, spec: ColourSpec) -> np.ndarray:
    """H×W×3 RGB: uint8 for 8-bit sources, uint16 (0..65535) for deeper ones; gray frames give R=G=B."""
    fmt_name, is_rgb = decode_format(frame.format.name)
    if fmt_name != frame.format.name:
        frame = frame.reformat(format=fmt_name)
    if is_rgb:
        return frame.to_ndarray()
    lay = layout_of(fmt_name)
    dt = _dtype(lay.bits)
    full = spec.range == RANGE_FULL
    oy, sy, cm, sc = _levels(lay.bits, full)
    out_bits = 8 if lay.bits <= 8 else 16
    out_max = float((1 << out_bits) - 1)
    y = (_plane(frame, 0, dt).astype(np.float32) - oy) * (out_max / sy)
    if lay.kind == "gray":
        rgb = np.repeat(y[:, :, None], 3, axis=2)
    else:
        h, w = y.shape
        cb, cr = (_plane(frame, i, dt).astype(np.float32) for i in (1, 2))
        c = np.stack([cb, cr])
        c = (c - cm) * (out_max / sc)
        if lay.sub_y:
            c = _up_v(c.transpose(1, 0, 2), h).transpose(1, 0, 2)
        if lay.sub_x:
            c = _up_h(c, w)
        kr, kg, kb = _coeffs(spec.matrix)
        r = y + (2 * (1 - kr)) * c[1]
        b = y + (2 * (1 - kb)) * c[0]
        g = (y - kr * r - kb * b) * (1.0 / kg)
        rgb = np.stack([r, g, b], axis=2)
    return np.clip(np.rint(rgb), 0, out_max).astype(_dtype(out_bits))


def rgb_to_frame(rgb: np.ndarray, pix_fmt: str, spec: ColourSpec) -> av.VideoFrame:
    """H×W×3 uint8/uint16 RGB (uint16: 0..65535) -> a VideoFrame of `pix_fmt` (planar YUV/gray of any depth, or an
    RGB format), tagged with `spec`."""
    h, w, _ = rgb.shape
    in_max = 255.0 if rgb.dtype == np.uint8 else 65535.0
    lay = layout_of(pix_fmt)
    if lay is None:  # an RGB format: swscale packs it, no matrix
        src = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24" if rgb.dtype == np.uint8
                                         else "rgb48le")
        frame = src.reformat(format=pix_fmt)
    else:
        frame = av.VideoFrame(w, h, pix_fmt)
        oy, sy, cm, sc = _levels(lay.bits, spec.range == RANGE_FULL)
        vmax = float((1 << lay.bits) - 1)
        dt = _dtype(lay.bits)
        x = rgb.astype(np.float32) * (1.0 / in_max)
        kr, kg, kb = _coeffs(spec.matrix)
        yv = kr * x[:, :, 0] + kg * x[:, :, 1] + kb * x[:, :, 2]

        def q(v):
            return np.clip(np.rint(v), 0, vmax).astype(dt)

        _write_plane(frame, 0, q(yv * sy + oy))
        if lay.kind == "yuv":
            c = np.stack([(x[:, :, 2] - yv) * (0.5 / (1 - kb)), (x[:, :, 0] - yv) * (0.5 / (1 - kr))])
            if lay.sub_x:
                c = _down_h(c)
            if lay.sub_y:
                c = _down_v(c.transpose(1, 0, 2)).transpose(1, 0, 2)
            _write_plane(frame, 1, q(c[0] * sc + cm))
            _write_plane(frame, 2, q(c[1] * sc + cm))
    tag(frame, spec)
    return frame


def tag(obj, spec: ColourSpec) -> None:
    """Set colour tags on a frame or codec context."""
    if spec.matrix != MATRIX_RGB:
        obj.colorspace = spec.matrix
    obj.color_range = spec.range
    obj.color_primaries = spec.primaries
    obj.color_trc = spec.transfer

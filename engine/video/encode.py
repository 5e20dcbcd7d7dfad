"""Encoder choice and set-up: codec, pixel format (bit depth and chroma kept when the encoder can), quality options
and colour tags.

Defaults: libx264 (CRF 18, preset medium) for 8-bit sources, libx265 (CRF 20) for 10/12-bit sources (HEVC Main10/
Main12 are what players decode in hardware), libvpx-vp9 for .webm. Which encoders keep the source's depth is read
from the FFmpeg build at hand (`bit_depths`); in PyAV 18's wheel: libx264 8/10, libx265 8/10/12, ffv1 8..16
(lossless), libsvtav1 8/10, NVENC 8/10 (where the GPU and driver are present), libvpx-vp9 8 only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import av

from ..errors import BackendUnavailableError, OutputError, UsageError
from . import colour

KNOWN = ("libx264", "libx265", "libvpx-vp9", "ffv1", "h264_nvenc", "hevc_nvenc", "libsvtav1")


@dataclass
class EncodeSettings:
    codec: str | None = None
    crf: float | None = None
    bitrate: str | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    options: dict = field(default_factory=dict)


def _codec(name: str) -> av.codec.Codec:
    try:
        c = av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001  (UnknownCodecError and friends)
        raise UsageError("--codec %s: no such encoder in this FFmpeg build (try %s)"
                         % (name, ", ".join(n for n in KNOWN if has_encoder(n)))) from None
    if c.type != "video":
        raise UsageError("--codec %s is not a video encoder" % name)
    return c


def has_encoder(name: str) -> bool:
    try:
        return av.codec.Codec(name, "w").type == "video"
    except Exception:  # noqa: BLE001
        return False


def bit_depths(name: str) -> list[int]:
    """Bit depths this encoder takes in planar YUV/gray (what keeping a 10-bit source at 10 bits needs)."""
    out = set()
    for f in _codec(name).video_formats or []:
        lay = colour.layout_of(f.name)
        if lay is not None:
            out.add(lay.bits)
        elif f.name in ("p010le", "p016le", "p210le", "x2rgb10le"):
            out.add(10)
    return sorted(out)


def default_codec(suffix: str, src_bits: int) -> str:
    if suffix == ".webm":
        return "libvpx-vp9"
    return "libx265" if src_bits > 8 and has_encoder("libx265") else "libx264"


@dataclass
class PixelPlan:
    encoder_fmt: str  # what the encoder gets
    native_fmt: str  # what colour.rgb_to_frame writes (same, or converted to encoder_fmt by swscale, YUV->YUV)
    bits: int
    note: str = ""


def choose_pix_fmt(codec: str, src_layout: colour.Layout, gray: bool, out_w: int, out_h: int,
                   forced: str | None = None) -> PixelPlan:
    """Keep the source's bit depth and chroma layout where the encoder can; odd output sizes need no subsampling
    on that axis (4:2:0 planes cannot hold an odd size exactly)."""
    formats = [f.name for f in (_codec(codec).video_formats or [])]
    if forced:
        if formats and forced not in formats:
            raise UsageError("--pix-fmt %s: %s takes %s" % (forced, codec, ", ".join(formats)))
        lay = colour.layout_of(forced)
        return PixelPlan(forced, forced, lay.bits if lay else 8)
    cands = []
    for name in formats:
        if name.startswith("yuvj"):
            continue  # deprecated aliases: the range is a tag
        lay = colour.layout_of(name)
        if lay is None or (lay.sub_x and out_w % 2) or (lay.sub_y and out_h % 2):
            continue
        if (lay.kind == "gray") != gray and lay.kind == "gray":
            continue
        score = (lay.bits >= src_layout.bits, -abs(lay.bits - src_layout.bits), lay.kind == ("gray" if gray else "yuv"),
                 (lay.sub_x, lay.sub_y) == (src_layout.sub_x, src_layout.sub_y), -(lay.sub_x + lay.sub_y))
        cands.append((score, name, lay))
    if cands:
        cands.sort(key=lambda c: c[0], reverse=True)
        _, name, lay = cands[0]
        note = ""
        if lay.bits < src_layout.bits:
            note = ("%s in this FFmpeg build cannot encode %d bits: writing %d bits (use libx265 or ffv1 to keep "
                    "them)" % (codec, src_layout.bits, lay.bits))
        return PixelPlan(name, name, lay.bits, note)
    # Semi-planar / packed formats only (NVENC's nv12, p010le): write planar, let swscale repack (YUV -> YUV).
    for name, native, bits in (("p010le", "yuv420p16le", 10), ("nv12", "yuv420p", 8), ("yuv420p", "yuv420p", 8)):
        if name in formats and (src_layout.bits > 8 or bits == 8) and not (out_w % 2 or out_h % 2):
            return PixelPlan(name, native, bits)
    raise UsageError("%s cannot encode a %d×%d%s picture in any pixel format we write (%s); try --codec ffv1"
                     % (codec, out_w, out_h, " grey" if gray else "", ", ".join(formats)))


def open_video_stream(container, codec: str, width: int, height: int, time_base: Fraction, rate: Fraction,
                      plan: PixelPlan, spec: colour.ColourSpec, settings: EncodeSettings):
    """Add and configure the output video stream (opened on the first frame by PyAV)."""
    opts = dict(settings.options)
    rate = rate if rate and rate > 0 else Fraction(25)
    try:
        st = container.add_stream(codec, rate=rate)
    except ValueError as e:
        raise UsageError("--codec %s cannot be written to %s (%s)" % (codec, container.name, e)) from None
    ctx = st.codec_context
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = plan.encoder_fmt
    ctx.time_base = time_base  # the source's: timestamps pass through unchanged (VFR stays VFR)
    colour.tag(ctx, spec)
    crf = settings.crf
    if settings.bitrate:
        ctx.bit_rate = _bitrate(settings.bitrate)
    if codec in ("libx264", "libx265"):
        opts.setdefault("preset", settings.preset or "medium")
        if not settings.bitrate:
            opts.setdefault("crf", "%g" % (crf if crf is not None else (18 if codec == "libx264" else 20)))
        if codec == "libx265":
            opts.setdefault("x265-params", "log-level=error")
    elif codec == "libvpx-vp9":
        if not settings.bitrate:
            opts.setdefault("crf", "%g" % (crf if crf is not None else 32))
            opts.setdefault("b", "0")
        opts.setdefault("deadline", "good")
        opts.setdefault("cpu-used", settings.preset or "4")
        opts.setdefault("row-mt", "1")
    elif codec == "libsvtav1":
        opts.setdefault("preset", settings.preset or "8")
        if not settings.bitrate:
            opts.setdefault("crf", "%g" % (crf if crf is not None else 35))
    elif codec.endswith("_nvenc"):
        opts.setdefault("preset", settings.preset or "p4")
        if not settings.bitrate:
            opts.setdefault("rc", "vbr")
            opts.setdefault("cq", "%g" % (crf if crf is not None else 23))
    elif codec == "ffv1":
        opts.setdefault("level", "3")
        opts.setdefault("slicecrc", "1")
    elif settings.preset:
        opts.setdefault("preset", settings.preset)
    ctx.options = {k: str(v) for k, v in opts.items()}
    st.thread_type = "AUTO"
    return st


def open_encoder(stream) -> None:
    """Open the encoder now, so a missing GPU (NVENC) or a bad option fails before any work is done."""
    try:
        stream.codec_context.open()
    except av.error.FFmpegError as e:
        name = stream.codec_context.name
        msg = getattr(e, "strerror", None) or str(e)
        if name.endswith("_nvenc"):
            raise BackendUnavailableError("encoder %s cannot start here (%s): it needs an NVIDIA GPU and driver; "
                                          "use --codec libx264/libx265" % (name, msg)) from None
        raise OutputError("encoder %s rejected the settings (%s)" % (name, msg)) from None


def _bitrate(s: str) -> int:
    t = s.strip().lower()
    mult = {"k": 1e3, "m": 1e6, "g": 1e9}.get(t[-1:], 1)
    try:
        v = float(t[:-1] if mult != 1 else t) * mult
    except ValueError:
        raise UsageError("--bitrate %r: expected a number like 8M or 2500k" % s) from None
    if v <= 0:
        raise UsageError("--bitrate must be positive")
    return int(v)

"""Small synthetic videos for tests/test_video.py, written with PyAV (planes filled directly, so the stored
Y'CbCr codes are exactly the ones given), and a nearest-neighbour x2 "model" that makes colour checks exact."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import av

MS = Fraction(1, 1000)


def build_nearest(path, scale: int = 2) -> Path:
    """sr = nearest upscale of lr: output pixels are input pixels, so colour round trips can be checked exactly."""
    nodes = [helper.make_node("Resize", ["lr", "", "scales"], ["sr"], mode="nearest")]
    inits = [numpy_helper.from_array(np.array([1, 1, scale, scale], np.float32), "scales")]
    lr = helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["N", 3, "H", "W"])
    g = helper.make_graph(nodes, "nearest", [lr],
                          [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["N", 3, "SH", "SW"])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    helper.set_model_props(m, {"smsr.scale": str(scale), "smsr.graph": "reference", "smsr.precision": "fp32"})
    onnx.save(m, str(path))
    return Path(path)


def yuv_planes(i: int, w: int, h: int, bits: int = 8, sub=(1, 1), gray: bool = False, static_left: bool = False):
    """Frame i's planes: smooth gradients moving with i (static on the left half when static_left)."""
    k = 1 << (bits - 8)
    yy, xx = np.mgrid[0:h, 0:w]
    shift = np.where(xx < w // 2, 0, i) if static_left else i
    y = 16 * k + ((xx * 3 + yy * 2 + shift * 5) % 200) * k + (xx % 3 if bits > 8 else 0)
    planes = [y]
    if not gray:
        cw, ch = -(-w // (1 << sub[0])), -(-h // (1 << sub[1]))
        cy, cx = np.mgrid[0:ch, 0:cw]
        ci = np.where(cx * (1 << sub[0]) < w // 2, 0, i) if static_left else i
        planes.append(64 * k + ((cx * 5 + ci * 3) % 120) * k)
        planes.append(64 * k + ((cy * 7 + ci * 2) % 120) * k)
    return [p.astype(np.uint8 if bits == 8 else np.uint16) for p in planes]


def write_frame_planes(frame: av.VideoFrame, planes) -> None:
    for i, v in enumerate(planes):
        p = frame.planes[i]
        a = np.frombuffer(p, v.dtype).reshape(p.height, p.line_size // v.dtype.itemsize)
        a[:, :p.width] = v


def make_video(path, n: int = 10, w: int = 64, h: int = 48, pix_fmt: str = "yuv420p", codec: str = "ffv1",
               matrix: int | None = 1, rng: int | None = 1, primaries: int | None = 1, trc: int | None = 1,
               pts: list[int] | None = None, audio: bool = False, subtitles: bool = False, attachment: bool = False,
               planes_fn=None, static_left: bool = False) -> dict:
    """Write a test video; returns what was written (pts, audio packets) for comparisons."""
    pts = pts if pts is not None else [i * 40 for i in range(n)]
    fmt = av.VideoFormat(pix_fmt)
    bits = fmt.components[0].bits
    gray = len(fmt.components) == 1
    sub = (0 if fmt.chroma_width(64) == 64 else 1, 0 if fmt.chroma_height(64) == 64 else 1)
    out = av.open(str(path), "w")
    vs = out.add_stream(codec, rate=25)
    vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
    vs.codec_context.time_base = MS
    for attr, val in (("colorspace", matrix), ("color_range", rng), ("color_primaries", primaries),
                      ("color_trc", trc)):
        if val is not None:
            setattr(vs.codec_context, attr, val)
    if codec == "libx264":
        vs.codec_context.options = {"preset": "ultrafast", "crf": "20"}
    aus = out.add_stream("flac", rate=8000, layout="mono") if audio else None
    ss = out.add_mux_stream("subrip") if subtitles else None
    if attachment:
        out.add_attachment("font.ttf", "application/x-truetype-font", b"\x00\x01\x00\x00 not really a font")
    for i, p in enumerate(pts):
        fr = av.VideoFrame(w, h, pix_fmt)
        write_frame_planes(fr, planes_fn(i, w, h) if planes_fn else yuv_planes(i, w, h, bits, sub, gray, static_left))
        for attr, val in (("colorspace", matrix), ("color_range", rng)):
            if val is not None:
                setattr(fr, attr, val)
        fr.pts, fr.time_base = p, MS
        for pk in vs.encode(fr):
            out.mux(pk)
    for pk in vs.encode():
        out.mux(pk)
    if aus is not None:
        t = np.arange(int(8000 * (pts[-1] + 40) / 1000)) / 8000
        s = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)[None]
        af = av.AudioFrame.from_ndarray(s, format="s16", layout="mono")
        af.sample_rate, af.pts = 8000, 0
        for pk in aus.encode(af):
            out.mux(pk)
        for pk in aus.encode():
            out.mux(pk)
    if ss is not None:
        for k, t0 in enumerate((20, 200)):
            pk = av.Packet(("line %d" % k).encode())
            pk.stream, pk.pts, pk.dts, pk.duration, pk.time_base = ss, t0, t0, 100, MS
            out.mux(pk)
    out.close()
    return {"pts": pts}


def packets(path, kind: str) -> list[tuple[int, bytes]]:
    with av.open(str(path)) as c:
        st = [s for s in c.streams if s.type == kind]
        if not st:
            return []
        return [(p.pts, bytes(p)) for p in c.demux(st[0]) if p.size]


def video_info(path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        ctx = v.codec_context
        frames = list(c.decode(v))
        return {"pts": [f.pts * v.time_base / MS for f in frames], "n": len(frames), "w": ctx.width, "h": ctx.height,
                "pix_fmt": ctx.pix_fmt, "codec": ctx.name, "matrix": ctx.colorspace, "range": ctx.color_range,
                "primaries": ctx.color_primaries, "trc": ctx.color_trc,
                "types": sorted(s.type for s in c.streams), "frames": frames}


def planes_of(frame: av.VideoFrame) -> list[np.ndarray]:
    dt = np.uint8 if frame.format.components[0].bits <= 8 else np.uint16
    out = []
    for p in frame.planes:
        a = np.frombuffer(p, dt).reshape(p.height, p.line_size // np.dtype(dt).itemsize)
        out.append(a[:, :p.width].copy())
    return out

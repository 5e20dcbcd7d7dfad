"""Where SR frames go: a video file (encoded, copied streams remuxed) or raw frames on stdout.

File outputs are written under `<name>.partial<ext>` and renamed to the final name only when complete, so the
final name never holds a half-written file. After a stop (Ctrl-C) the partial file is closed properly (playable)
and carries a fingerprint of the input and settings in its metadata; `--resume` copies its video packets into a
new file, skips that many frames of the input (decoded, not upscaled), encodes the rest and copies the other
streams from the input again. The encoder's first resumed frame is a keyframe; its headers must equal the partial
file's (same encoder and settings), which is checked.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from pathlib import Path

import av

from ..errors import OutputError, UsageError
from ..image_io import IMAGE_SUFFIXES
from . import colour
from .encode import choose_pix_fmt, default_codec, open_encoder, open_video_stream
from .source import PacketIn

META_KEY = "SMSR_RESUME"


def partial_name(final: Path) -> Path:
    return final.with_name(final.stem + ".partial" + final.suffix)


def _source_layout(src) -> colour.Layout:
    fmt, is_rgb = colour.decode_format(src.frame_format)
    lay = colour.layout_of(fmt)
    if lay is None:  # RGB sources: encode 4:4:4 at their depth
        bits = 8 if fmt == "rgb24" else max(c.bits for c in av.VideoFormat(src.frame_format).components)
        return colour.Layout("yuv", bits, 0, 0)
    if fmt != src.frame_format:  # repacked (nv12, p010...): keep the original depth and subsampling
        f = av.VideoFormat(src.frame_format)
        bits = max(c.bits for c in f.components if not c.is_alpha)
        sx = 1 if f.chroma_width(64) == 32 else 0
        sy = 1 if f.chroma_height(64) == 32 else 0
        return colour.Layout(lay.kind, bits, sx, sy)
    return lay


class FileSink:
    def __init__(self, src, final: Path, scale: int, opts, log, fingerprint: dict):
        self.src, self.final, self.scale, self.opts, self.log = src, Path(final), scale, opts, log
        self.partial = partial_name(self.final)
        self.notes: list[str] = []
        self.frames = 0
        self.on_frame = lambda n: None
        self.container = None
        self.vstream = None
        self.stream_map: dict = {}
        self.pending: list = []
        self.old = None
        self.old_iter = None
        self.old_next = None
        self.last_dts = None
        self.codec = self.pix_fmt = ""
        self.out_size = (0, 0)
        self.final_name = str(self.final)
        if self.final.is_dir():
            raise UsageError("-o %s is a folder; give a file name or a folder for several inputs" % self.final)
        if self.final.suffix.lower() in IMAGE_SUFFIXES or not self.final.suffix:
            raise UsageError("-o %s: a video needs a video file name (.mkv, .mp4, .mov, .webm, ...), a folder or -"
                             % self.final)
        s = opts.settings
        fingerprint.update(source=os.path.abspath(src.spec) if not src.live else src.spec, scale=scale,
                           codec=s.codec, crf=s.crf, bitrate=s.bitrate, preset=s.preset, pix_fmt=s.pix_fmt,
                           audio=opts.copy_audio, subtitles=opts.copy_subtitles)
        if not src.live:
            fingerprint["size"] = os.path.getsize(src.spec)
        # Only a hash goes into the file: the final output keeps the tag, and should not carry the user's paths.
        self.fp = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()
        self.resume_frames = 0
        if opts.resume and self.partial.exists():
            self._read_partial()
            self.tmp = self.final.with_name(self.final.stem + ".partial.resuming" + self.final.suffix)
        else:
            if opts.resume:
                self._note("--resume: no %s to continue; starting from the beginning" % self.partial)
            elif self.partial.exists():
                self._note("overwriting the unfinished %s (use --resume to continue it instead)" % self.partial)
            self.tmp = self.partial

    def _note(self, s: str) -> None:
        self.notes.append(s)
        self.log("note: " + s)

    # --- resume ----------------------------------------------------------------------------------------------
    def _read_partial(self) -> None:
        try:
            c = av.open(str(self.partial), metadata_errors="ignore")
        except av.error.FFmpegError as e:
            raise UsageError("--resume: %s is not readable (%s); delete it or run without --resume"
                             % (self.partial, e)) from None
        try:
            meta = {k.upper(): v for k, v in c.metadata.items()}.get(META_KEY)
            if meta != self.fp:
                raise UsageError("--resume: %s was made from another input or with other settings; delete it or run "
                                 "without --resume" % self.partial)
            if not c.streams.video:
                raise UsageError("--resume: %s has no video stream; delete it" % self.partial)
            vs = c.streams.video[0]
            self.old_size = (vs.codec_context.width, vs.codec_context.height)
            self.old_extradata = vs.codec_context.extradata or b""
            n = 0
            for p in c.demux(vs):
                if p.size:
                    n += 1
        finally:
            c.close()
        self.resume_frames = n
        self.log("resuming %s: %d frames already done" % (self.partial, n))
        self.old = av.open(str(self.partial), metadata_errors="ignore")
        self.old_iter = self._old_packets(self.old.streams.video[0])
        self.old_next = next(self.old_iter, None)

    def _old_packets(self, vs):
        """The partial file's video packets, in the form an encoder gives them: Matroska/MP4 store H.264/HEVC
        length-prefixed, the muxer expects the encoder's Annex B (it converts them itself)."""
        bsf = None
        name = vs.codec_context.name
        if name in ("h264", "hevc"):
            from av.bitstream import BitStreamFilterContext
            bsf = BitStreamFilterContext(name + "_mp4toannexb", vs)
        for p in self.old.demux(vs):
            if bsf is not None:
                for q in bsf.filter(p if p.size else None):
                    yield q
            elif p.size:
                yield p

    def _drain_old(self, until: float | None = None) -> None:
        """Copy the partial file's video packets with a time up to `until` (seconds; None = all)."""
        while self.old_next is not None:
            p = self.old_next
            t = float(p.pts * p.time_base) if p.pts is not None else None
            if until is not None and t is not None and t > until:
                return
            self._mux(p, self.vstream, video=True)
            self.frames += 1
            self.old_next = next(self.old_iter, None)

    # --- output ----------------------------------------------------------------------------------------------
    def _open(self, first) -> None:
        src, s = self.src, self.opts.settings
        if first.rgb is not None:
            h, w = first.rgb.shape[:2]
        else:
            w, h = self.old_size
        lay = _source_layout(src)
        codec = s.codec or default_codec(self.final.suffix.lower(), lay.bits)
        plan = choose_pix_fmt(codec, lay, lay.kind == "gray", w, h, s.pix_fmt)
        if plan.note:
            self._note(plan.note)
        self.plan, self.codec, self.pix_fmt, self.out_size = plan, codec, plan.encoder_fmt, (w, h)
        if src.spec_colour.assumed:
            self._note("%s: %s; the output is tagged with it" % (src.spec, src.spec_colour.assumed))
        try:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
            self.container = av.open(str(self.tmp), "w")
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise OutputError("%s: cannot create output (%s)" % (self.tmp, e)) from None
        self.container.metadata[META_KEY] = self.fp
        self.vstream = open_video_stream(self.container, codec, w, h, src.time_base, src.rate, plan,
                                         src.spec_colour, s)
        supported = self.container.supported_codecs
        matroska = "matroska" in self.container.format.name
        for st in src.copy:
            name = st.codec_context.name if st.codec_context is not None else None
            if st.type == "attachment":
                if not matroska:
                    self._note("attachment stream #%d dropped: only Matroska (.mkv) stores attachments" % st.index)
                    continue
            elif name not in supported:
                self._note("%s stream #%d (%s) cannot be stored in %s: dropped (use .mkv to keep it)"
                           % (st.type, st.index, name, self.final.suffix))
                continue
            try:
                self.stream_map[st.index] = self.container.add_stream_from_template(st)
            except (ValueError, av.error.FFmpegError) as e:
                self._note("%s stream #%d (%s) dropped: %s" % (st.type, st.index, name, e))
        open_encoder(self.vstream)
        try:
            self.container.start_encoding()
        except av.error.FFmpegError as e:
            raise OutputError("%s: cannot write the header (%s)" % (self.tmp, e)) from None
        if self.old is not None and (w, h) != self.old_size:
            raise UsageError("--resume: %s is %dx%d, this run makes %dx%d; delete it or run without --resume"
                             % (self.partial, *self.old_size, w, h))
        for p in self.pending:
            self._write_packet(p)
        self.pending = []

    def _mux(self, pkt, ost, video=False) -> None:
        pkt.stream = ost
        if video and pkt.dts is not None:
            # Splicing a resumed encoder after the partial file's packets: its first DTS may not exceed the last
            # one written (B-frame delay). Matroska stores presentation times only, so nudging DTS is harmless.
            otb = ost.time_base
            d = pkt.dts * pkt.time_base / otb
            if self.last_dts is not None and d <= self.last_dts:
                nd = math.ceil((self.last_dts + 1) * otb / pkt.time_base)
                if pkt.pts is None or nd <= pkt.pts:
                    pkt.dts = nd
                    d = pkt.dts * pkt.time_base / otb
            self.last_dts = math.floor(d)
        try:
            self.container.mux(pkt)
        except av.error.FFmpegError as e:
            raise OutputError("%s: cannot write %s packet (%s)" % (self.tmp, ost.type, e)) from None

    def _write_packet(self, item: PacketIn) -> None:
        ost = self.stream_map.get(item.packet.stream.index)
        if ost is None:
            return
        if self.old_next is not None and item.packet.pts is not None:
            self._drain_old(float(item.packet.pts * item.packet.time_base))
        self._mux(item.packet, ost)

    def write(self, item) -> None:
        if isinstance(item, PacketIn):
            if self.container is None:
                self.pending.append(item)
            else:
                self._write_packet(item)
            return
        if self.container is None:
            self._open(item)
        if item.rgb is None:  # already in the partial file
            return
        self._drain_old()
        frame = colour.rgb_to_frame(item.rgb, self.plan.native_fmt, self.src.spec_colour)
        if self.plan.native_fmt != self.plan.encoder_fmt:
            frame = frame.reformat(format=self.plan.encoder_fmt)
        frame.pts = item.pts
        frame.time_base = self.src.time_base
        self._encode(frame)
        self.frames += 1
        self.on_frame(self.frames)

    def _encode(self, frame) -> None:
        try:
            packets = self.vstream.encode(frame)
        except av.error.FFmpegError as e:
            raise OutputError("encoder %s failed (%s)" % (self.codec, e)) from None
        for p in packets:
            self._mux(p, self.vstream, video=True)

    def finish(self, interrupted: bool) -> None:
        if self.container is None:
            self._close_old()  # no frame at all: nothing to write
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)
            self.final_name = "(nothing written)"
            return
        self._encode(None)
        self._drain_old()
        try:
            self.container.close()
        except (av.error.FFmpegError, OSError) as e:
            self._close_old()
            raise OutputError("%s: cannot finish writing (%s)" % (self.tmp, e)) from None
        self._close_old()
        if self.tmp != self.partial:
            self._check_splice()
        if interrupted:
            if self.tmp != self.partial:
                os.replace(self.tmp, self.partial)
            self.final_name = str(self.partial)
            return
        os.replace(self.tmp, self.final)
        if self.tmp != self.partial and self.partial.exists():
            os.unlink(self.partial)
        self.final_name = str(self.final)

    def _check_splice(self) -> None:
        """The partial file's packets need the new encoder's headers (as the muxer stored them) to be theirs."""
        try:
            with av.open(str(self.tmp)) as c:
                new = c.streams.video[0].codec_context.extradata or b""
        except av.error.FFmpegError as e:
            new = repr(e).encode()
        if new != self.old_extradata:
            os.unlink(self.tmp)
            raise UsageError("--resume: this encoder's stream headers differ from %s's (another encoder version?): "
                             "its frames cannot be continued; delete it or run without --resume" % self.partial)

    def _close_old(self) -> None:
        if self.old is not None:
            self.old.close()
            self.old = None

    def abort(self) -> None:
        """An error: close quietly and remove what this run wrote (a resumed run keeps its partial file)."""
        try:
            if self.container is not None:
                self.container.close()
        except Exception:  # noqa: BLE001
            pass
        self._close_old()
        try:
            os.unlink(self.tmp)
        except OSError:
            pass


class RawSink:
    """Raw frames on stdout (rgb24, or rgb48le for deep sources with raw_format auto): one frame after another,
    no header; the size and rate are printed on stderr."""

    resume_frames = 0

    def __init__(self, src, scale: int, raw_format: str, log, stream=None):
        self.src, self.scale, self.raw_format, self.log = src, scale, raw_format, log
        self.out = stream or sys.stdout.buffer
        self.frames = 0
        self.on_frame = lambda n: None
        self.notes: list[str] = []
        self.final_name = "-"
        self.codec = "rawvideo"
        self.pix_fmt = ""
        self.out_size = (0, 0)

    def write(self, item) -> None:
        if isinstance(item, PacketIn) or item.rgb is None:
            return
        rgb = item.rgb
        fmt = self.raw_format
        if fmt == "y4m":
            self._write(self._y4m(rgb))
            return
        if fmt == "auto":
            fmt = "rgb24" if rgb.dtype.itemsize == 1 else "rgb48le"
        if fmt == "rgb24" and rgb.dtype.itemsize == 2:
            rgb = ((rgb.astype("uint32") + 128) // 257).astype("uint8")
        elif fmt == "rgb48le" and rgb.dtype.itemsize == 1:
            rgb = rgb.astype("<u2") * 257
        if not self.frames:
            self.pix_fmt = fmt
            self.out_size = (rgb.shape[1], rgb.shape[0])
            self.log("stdout: raw %s frames, %dx%d, %.3f fps (e.g. | ffplay -f rawvideo -pixel_format %s "
                     "-video_size %dx%d -)" % (fmt, rgb.shape[1], rgb.shape[0], float(self.src.rate), fmt,
                                               rgb.shape[1], rgb.shape[0]))
        self._write(rgb.astype("<u2" if fmt == "rgb48le" else "u1", copy=False).tobytes())

    def _y4m(self, rgb) -> bytes:
        """YUV4MPEG2, 4:4:4 at the source's depth (8, or 10/12 bits as C444p10/C444p12) in the source's matrix and
        range (range in FFmpeg's XCOLORRANGE extension; Y4M has no matrix field)."""
        spec = self.src.spec_colour
        bits = 8 if rgb.dtype.itemsize == 1 else min(12, max(10, self.src.source_bits))
        pix = "yuv444p" if bits == 8 else "yuv444p%dle" % bits
        frame = colour.rgb_to_frame(rgb, pix, spec)
        head = b""
        if not self.frames:
            h, w = rgb.shape[:2]
            r = self.src.rate
            self.pix_fmt, self.out_size = "y4m " + pix, (w, h)
            head = ("YUV4MPEG2 W%d H%d F%d:%d Ip A1:1 C444%s XCOLORRANGE=%s\n"
                    % (w, h, r.numerator, r.denominator, "" if bits == 8 else "p%d" % bits,
                       "FULL" if spec.range == colour.RANGE_FULL else "LIMITED")).encode()
            self.log("stdout: YUV4MPEG2 %dx%d %s, %s matrix (e.g. | ffplay -)" % (w, h, pix, spec.matrix_name))
        dt = "u1" if bits == 8 else "<u2"
        planes = [colour._plane(frame, i, dt).tobytes() for i in range(3)]
        return head + b"FRAME\n" + b"".join(planes)

    def _write(self, data: bytes) -> None:
        try:
            self.out.write(data)
            self.out.flush()
        except (BrokenPipeError, OSError) as e:
            raise OutputError("stdout: cannot write frames (%s)" % (getattr(e, "strerror", None) or e)) from None
        self.frames += 1
        self.on_frame(self.frames)

    def finish(self, interrupted: bool) -> None:
        pass

    def abort(self) -> None:
        pass

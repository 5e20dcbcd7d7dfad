"""Open a video input with PyAV (a file, a V4L2 camera, an rtsp/http stream) and read it as a sequence of decoded
video frames (RGB, with their timestamps) and untouched packets of the streams that are copied to the output.

Frames come in presentation order with the stream's own timestamps (VFR stays VFR); a frame without a timestamp
(raw elementary streams) gets the previous one plus one frame interval. The frame count is only an estimate for
the progress bar (many containers do not store it). Display-matrix rotation is applied to the pixels, as FFmpeg's
command line does, so the output needs no rotation tag.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import av
import numpy as np

from ..errors import CorruptImageError, ImageNotFoundError, UnsupportedImageError
from . import colour
from .detect import is_device, is_url


class VideoInputError(CorruptImageError):
    """A video that cannot be read: corrupt, truncated, no video stream, unsupported codec (exit code 3)."""


@dataclass
class FrameIn:
    index: int
    pts: int  # in Source.time_base
    rgb: np.ndarray | None  # H×W×3 uint8/uint16 (None: skipped, e.g. already done in a resumed run)


@dataclass
class PacketIn:
    packet: av.Packet


COPY_TYPES = ("audio", "subtitle", "attachment")


class Source:
    def __init__(self, spec: str, copy_audio: bool = True, copy_subtitles: bool = True, timeout_s: float = 10.0,
                 input_options: dict | None = None):
        self.spec = spec
        self.live = is_url(spec) or is_device(spec)
        if not self.live and not os.path.exists(spec):
            raise ImageNotFoundError("%s: no such file" % spec)
        options = {}
        fmt = None
        if is_device(spec):
            fmt = "v4l2"
        if spec.lower().startswith("rtsp"):
            options["rtsp_transport"] = "tcp"  # UDP loses packets on busy links; TCP is what users expect to work
        options.update(input_options or {})  # e.g. a camera's video_size=1280x720, input_format=mjpeg
        try:
            self.container = av.open(spec, format=fmt, options=options, metadata_errors="ignore",
                                     timeout=timeout_s if self.live else None)
        except av.error.FileNotFoundError:
            raise ImageNotFoundError("%s: no such file or device" % spec) from None
        except av.error.FFmpegError as e:
            raise VideoInputError("%s: cannot open as video (%s)" % (spec, _msg(e))) from None
        c = self.container
        if not c.streams.video:
            c.close()
            raise VideoInputError("%s: has no video stream" % spec)
        self.stream = c.streams.best("video") or c.streams.video[0]
        self.stream.thread_type = "AUTO"
        ctx = self.stream.codec_context
        if ctx is None or not ctx.codec or not ctx.codec.name:
            c.close()
            raise VideoInputError("%s: video codec is not supported by this FFmpeg build" % spec)
        self.copy = [s for s in c.streams
                     if s is not self.stream and ((s.type == "audio" and copy_audio)
                                                  or (s.type in ("subtitle", "attachment") and copy_subtitles))]
        self.time_base: Fraction = self.stream.time_base or Fraction(1, 90000)
        self.rate: Fraction = self.stream.average_rate or self.stream.guessed_rate or Fraction(25)
        self.width, self.height = ctx.width, ctx.height
        self.pix_fmt = ctx.format.name if ctx.format else None
        self.spec_colour: colour.ColourSpec | None = None  # known after the first frame
        self.rotation = 0
        self.finished = False  # the whole input was read (not stopped early)

    # --- metadata --------------------------------------------------------------------------------------------
    @property
    def codec_name(self) -> str:
        return self.stream.codec_context.name

    def duration_s(self) -> float | None:
        if self.stream.duration and self.stream.time_base:
            return float(self.stream.duration * self.stream.time_base)
        if self.container.duration:
            return self.container.duration / 1e6
        return None

    def _video_duration_s(self) -> tuple[float | None, bool]:
        """(duration, is the video stream's own): the stream's duration, Matroska's per-track DURATION tag, or
        the container's."""
        if self.stream.duration and self.stream.time_base:
            return float(self.stream.duration * self.stream.time_base), True
        tag = {k.upper(): v for k, v in self.stream.metadata.items()}.get("DURATION")
        if tag:
            try:
                h, m, sec = tag.split(":")
                return int(h) * 3600 + int(m) * 60 + float(sec), True
            except ValueError:
                pass
        return (self.container.duration / 1e6 if self.container.duration else None), False

    def frame_count_estimate(self) -> int | None:
        if self.stream.frames:
            return int(self.stream.frames)
        d = self.duration_s()
        if d and self.rate:
            return max(1, int(round(d * float(self.rate))))
        return None

    def frame_step(self) -> int:
        """One frame interval in time_base units (for frames without timestamps)."""
        return max(1, int(round(1 / (self.rate * self.time_base))))

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:  # noqa: BLE001
            pass

    # --- reading ---------------------------------------------------------------------------------------------
    def items(self, stop=None, skip_frames: int = 0) -> Iterator[FrameIn | PacketIn]:
        """Decoded frames (as RGB) and packets of the copied streams, in file order. `stop` (threading.Event)
        ends the reading early; the first `skip_frames` frames are decoded but not converted."""
        streams = [self.stream] + [s for s in self.copy if s.type != "attachment"]
        index = 0
        last_pts = None
        step = self.frame_step()
        end_time = 0.0
        try:
            for pkt in self.container.demux(streams):
                if stop is not None and stop.is_set():
                    return
                if pkt.stream is not self.stream:
                    if pkt.size or pkt.pts is not None:
                        yield PacketIn(pkt)
                    continue
                for frame in self._decode(pkt):
                    pts = frame.pts
                    if pts is None:
                        pts = 0 if last_pts is None else last_pts + step
                    elif last_pts is not None and pts <= last_pts:
                        pts = last_pts + 1  # broken (repeated) timestamps: encoders need them increasing
                    last_pts = pts
                    end_time = float((pts + step) * self.time_base)
                    if self.spec_colour is None:
                        self._first_frame(frame)
                    rgb = self._to_rgb(frame) if index >= skip_frames else None
                    yield FrameIn(index, pts, rgb)
                    index += 1
                    if stop is not None and stop.is_set():
                        return
        except av.error.FFmpegError as e:
            raise VideoInputError("%s: cannot read video after %d frames (%s)" % (self.spec, index, _msg(e))) \
                from None
        self.finished = True
        if index == 0:
            raise VideoInputError("%s: no video frame could be decoded (corrupt or truncated file)" % self.spec)
        if not is_device(self.spec):  # files and network files with a duration (live streams have none)
            self._check_complete(index, end_time)

    def _decode(self, pkt):
        try:
            return pkt.decode()
        except av.error.InvalidDataError as e:
            raise VideoInputError("%s: corrupt video data (%s)" % (self.spec, _msg(e))) from None

    def _check_complete(self, frames: int, end_time: float) -> None:
        """A file cut short still has its header's duration: if the frames end well before it, the file is
        truncated (the encoder would otherwise silently write a shorter video)."""
        d, own = self._video_duration_s()
        start = float(self.stream.start_time * self.time_base) if self.stream.start_time else 0.0
        if d is None or d <= 0:
            return
        # The container's duration may include audio that outlasts the video: be lenient with it.
        tol = 3.0 / float(self.rate) + (0.05 if own else 1.0)
        if end_time - start < d - tol:
            raise VideoInputError("%s: truncated: the video ends after %d frames at %.2f s but the file says it lasts "
                                  "%.2f s" % (self.spec, frames, end_time - start, d))

    def _first_frame(self, frame: av.VideoFrame) -> None:
        self.spec_colour = self._resolve_colour(frame)
        self.rotation = int(round((frame.rotation or 0) / 90.0)) % 4
        self.frame_format = frame.format.name

    def _to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        try:
            rgb = colour.frame_to_rgb(frame, self.spec_colour)
        except (ValueError, av.error.FFmpegError) as e:
            raise UnsupportedImageError("%s: cannot convert %s frames to RGB (%s)"
                                        % (self.spec, frame.format.name, e)) from None
        if self.rotation:
            # frame.rotation is the display matrix's counter-clockwise angle: rotating the pixels by it is what
            # FFmpeg's autorotation shows (np.rot90 turns counter-clockwise for positive k).
            rgb = np.ascontiguousarray(np.rot90(rgb, self.rotation))
        return rgb

    def _resolve_colour(self, frame: av.VideoFrame) -> colour.ColourSpec:
        ctx = self.stream.codec_context
        fmt_name, is_rgb = colour.decode_format(frame.format.name)

        def pick(a, b, unspecified):
            return a if a not in (None, unspecified) else (b if b is not None else unspecified)
        return colour.resolve(pick(frame.colorspace, ctx.colorspace, 2), pick(frame.color_range, ctx.color_range, 0),
                              pick(frame.color_primaries, ctx.color_primaries, 2),
                              pick(frame.color_trc, ctx.color_trc, 2), frame.width, frame.height,
                              frame.format.name, is_rgb)

    @property
    def source_bits(self) -> int:
        fmt = self.stream.codec_context.format
        if fmt is None or not fmt.components:
            return 8
        return max(c.bits for c in fmt.components if not c.is_alpha)

    @property
    def is_gray(self) -> bool:
        fmt = self.stream.codec_context.format
        return fmt is not None and fmt.name.startswith(("gray", "ya"))


def _msg(e: Exception) -> str:
    s = getattr(e, "strerror", None) or str(e)
    return str(s).strip() or type(e).__name__

"""The video job: decode -> inference -> encode, in three threads joined by bounded queues (memory stays flat
whatever the length), or serially (`threaded=False`, for comparison and debugging).

- reader: demux + decode + YUV->RGB (source.Source.items); packets of copied streams travel along in file order;
- infer: frames batched to --batch (whole frames) or tiled (frames.FrameUpscaler), quantised like the image path;
- writer: RGB->YUV, encode, mux (sink.FileSink) or raw frames on stdout (sink.RawSink).
A stop event (Ctrl-C) ends the reading; the frames in flight are finished and the file is closed properly, so the
partial output is playable and `--resume` continues it. An error anywhere aborts all three and removes the output.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import EngineError
from .encode import EncodeSettings
from .frames import FrameUpscaler
from .progress import VideoProgress
from .sink import FileSink, RawSink
from .source import FrameIn, PacketIn, Source, VideoInputError

_END = object()


@dataclass
class VideoOptions:
    settings: EncodeSettings = field(default_factory=EncodeSettings)
    resume: bool = False
    reuse_static: bool = False
    copy_audio: bool = True
    copy_subtitles: bool = True
    raw_format: str = "auto"  # stdout: rgb24 | rgb48le | auto (the source's depth)
    threaded: bool = True
    queue_frames: int = 4  # frames in flight per queue, beyond the batch
    input_options: dict = field(default_factory=dict)  # FFmpeg demuxer options (cameras, streams)


@dataclass
class FrameOut:
    index: int
    pts: int
    rgb: np.ndarray | None  # H×W×3 uint8/uint16; None for frames a resumed run already has


@dataclass
class VideoResult:
    frames: int = 0  # frames in the output
    resumed_from: int = 0
    seconds: float = 0.0
    interrupted: bool = False  # a file stopped early: the partial output can be resumed
    stopped: bool = False  # stopped by the stop event / Ctrl-C (the normal end of a live stream)
    output: str = "-"
    in_size: tuple[int, int] = (0, 0)
    out_size: tuple[int, int] = (0, 0)
    codec: str = ""
    pix_fmt: str = ""
    tiles_run: int = 0
    tiles_reused: int = 0
    notes: list = field(default_factory=list)

    @property
    def fps(self) -> float:
        return (self.frames - self.resumed_from) / self.seconds if self.seconds > 0 else 0.0


def quantize(sr: np.ndarray, bits16: bool) -> np.ndarray:
    """3×H×W float (0..255) -> H×W×3 uint8, or uint16 (×257) for deep sources: the image path's rounding."""
    hwc = sr.transpose(1, 2, 0)
    if bits16:
        return np.clip(np.rint(hwc * 257.0), 0, 65535).astype(np.uint16)
    return np.clip(np.rint(hwc), 0, 255).astype(np.uint8)


def to_network(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float32)
    if rgb.dtype == np.uint16:
        x *= 1.0 / 257.0
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class _Infer:
    def __init__(self, fu: FrameUpscaler):
        self.fu = fu
        self.pending: list[FrameIn] = []

    def feed(self, item):
        if isinstance(item, PacketIn):
            return [item]
        if item.rgb is None:
            return self.flush() + [FrameOut(item.index, item.pts, None)]
        if self.pending and self.pending[0].rgb.shape != item.rgb.shape:
            out = self.flush()
        else:
            out = []
        self.pending.append(item)
        if len(self.pending) >= self.fu.batch:
            out += self.flush()
        return out

    def flush(self):
        if not self.pending:
            return []
        items, self.pending = self.pending, []
        srs = self.fu.process([to_network(f.rgb) for f in items])
        return [FrameOut(f.index, f.pts, quantize(sr, f.rgb.dtype == np.uint16)) for f, sr in zip(items, srs)]


def upscale_video(spec: str, output, fu: FrameUpscaler, opts: VideoOptions, log=None, progress_bar=None,
                  stop: threading.Event | None = None, fingerprint: dict | None = None,
                  quiet: bool = False) -> VideoResult:
    """Upscale the video `spec` to `output` (a Path, or None for raw frames on stdout)."""
    log = log or (lambda s: None)
    stop = stop or threading.Event()
    src = Source(spec, copy_audio=opts.copy_audio and output is not None,
                 copy_subtitles=opts.copy_subtitles and output is not None, input_options=opts.input_options)
    scale = fu.up.backend.scale
    res = VideoResult(output=str(output) if output is not None else "-", in_size=(src.width, src.height))
    try:
        if output is None:
            sink = RawSink(src, scale, opts.raw_format, log)
        else:
            sink = FileSink(src, output, scale, opts, log, dict(fingerprint or {}))
        skip = sink.resume_frames
        res.resumed_from = skip
        prog = VideoProgress(src.frame_count_estimate(), "video %s" % spec, bar=progress_bar,
                             log=None if quiet else log)
        prog.offset = skip
        sink.on_frame = prog.update
        infer = _Infer(fu)
        t0 = time.perf_counter()
        try:
            if opts.threaded:
                _run_threaded(src, infer, sink, stop, skip, opts, log)
            else:
                _run_serial(src, infer, sink, stop, skip)
        except VideoInputError as e:
            prog.close()
            if not (src.live and sink.frames and output is not None):
                sink.abort()
                raise
            # A live stream that fails mid-way: keep what was recorded (closed, playable) under the partial name.
            sink.finish(interrupted=True)
            raise VideoInputError("%s; the %d frames before it are in %s" % (e, sink.frames, sink.final_name)) \
                from None
        except BaseException:
            prog.close()
            sink.abort()
            raise
        prog.close()
        # Ctrl-C ends a camera or network stream normally; a file stopped early is unfinished (--resume).
        res.interrupted = stop.is_set() and not src.live and not src.finished
        res.stopped = stop.is_set()
        res.seconds = time.perf_counter() - t0
        sink.finish(interrupted=res.interrupted)
        res.frames = sink.frames
        res.output = sink.final_name
        res.out_size, res.codec, res.pix_fmt = sink.out_size, sink.codec, sink.pix_fmt
        res.tiles_run, res.tiles_reused = fu.tiles_run, fu.tiles_reused
        res.notes = sink.notes
        return res
    finally:
        src.close()


def _run_serial(src, infer, sink, stop, skip):
    try:
        for item in src.items(stop, skip):
            for o in infer.feed(item):
                sink.write(o)
    except KeyboardInterrupt:
        stop.set()
    for o in infer.flush():
        sink.write(o)


def _run_threaded(src, infer, sink, stop, skip, opts, log):
    depth = max(2, infer.fu.batch + opts.queue_frames)
    # Packets of copied streams share the queues with frames: at most 2×depth frames wait in each.
    q1: queue.Queue = queue.Queue(depth * 2)
    q2: queue.Queue = queue.Queue(depth * 2)
    abort = threading.Event()
    errors: list[BaseException] = []

    def put(q, item):
        while not abort.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def get(q):
        while not abort.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                pass
        return _END

    def guard(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # noqa: BLE001  (re-raised in the calling thread)
                errors.append(e)
                abort.set()
        return run

    @guard
    def reader():
        try:
            for item in src.items(stop, skip):
                if not put(q1, item):
                    return
        finally:
            put(q1, _END)

    @guard
    def inferer():
        while True:
            item = get(q1)
            if item is _END:
                break
            for o in infer.feed(item):
                if not put(q2, o):
                    return
        if not abort.is_set():
            for o in infer.flush():
                put(q2, o)
        put(q2, _END)

    @guard
    def writer():
        while True:
            item = get(q2)
            if item is _END:
                break
            sink.write(item)

    threads = [threading.Thread(target=f, name="video-" + f.__name__, daemon=True)
               for f in (reader, inferer, writer)]
    for t in threads:
        t.start()
    interrupts = 0
    while any(t.is_alive() for t in threads):
        try:
            for t in threads:
                t.join(0.2)
        except KeyboardInterrupt:
            interrupts += 1
            if interrupts == 1:
                log("stopping: finishing the frames in flight and closing the file (Ctrl-C again to abort)")
            stop.set()
            if interrupts > 1:
                abort.set()
    if abort.is_set() and not errors:
        raise KeyboardInterrupt
    if errors:
        # The first error is the cause; the others are the threads noticing it.
        raise errors[0]


__all__ = ["VideoOptions", "VideoResult", "upscale_video", "EngineError"]

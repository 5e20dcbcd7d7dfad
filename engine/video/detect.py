"""Is an `upscale` input a video? Decided without importing PyAV where the name says it (suffix, URL scheme,
V4L2 device); an existing file with another suffix that is not an image is probed with PyAV when installed."""
from __future__ import annotations

import os
from pathlib import Path

from ..image_io import IMAGE_SUFFIXES

VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts", ".mts", ".m2ts", ".flv", ".wmv", ".mpg",
                  ".mpeg", ".3gp", ".ogv", ".y4m", ".nut", ".h264", ".264", ".h265", ".265", ".hevc", ".ivf", ".mxf",
                  ".vob", ".dv"}
LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://", "udp://", "tcp://", "srt://",
                "rtp://")


def is_url(s: str) -> bool:
    return s.lower().startswith(LIVE_SCHEMES)


def is_device(s: str) -> bool:
    return s.startswith("/dev/video")


def is_video_input(s: str) -> bool:
    if is_url(s) or is_device(s):
        return True
    p = Path(s)
    suf = p.suffix.lower()
    if suf in VIDEO_SUFFIXES:
        return True
    if suf in IMAGE_SUFFIXES or not p.is_file():
        return False
    return _probe(s)


def _probe(path: str) -> bool:
    """A file with an unknown suffix is a video if FFmpeg finds a video stream with more than a still image."""
    try:
        import av
    except ImportError:
        return False
    try:
        with av.open(path, metadata_errors="ignore") as c:
            if c.format.name in ("image2", "png_pipe", "jpeg_pipe", "bmp_pipe", "webp_pipe", "tiff_pipe"):
                return False
            return bool(c.streams.video)
    except Exception:  # noqa: BLE001  (not readable by FFmpeg: leave it to the image path's error)
        return False


def output_for(source: str, out: Path, n_inputs: int) -> Path | None:
    """Output file for a video input: -o FILE.ext (one input), or a folder that receives <stem>.mkv; '-' = stdout."""
    if str(out) == "-":
        return None
    if n_inputs == 1 and not out.is_dir() and out.suffix and not str(out).endswith(os.sep):
        return out
    stem = Path(source.rstrip("/")).stem if not is_url(source) else "stream"
    if is_device(source):
        stem = Path(source).name
    return out / (stem + ".mkv")

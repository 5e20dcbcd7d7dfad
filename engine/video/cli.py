"""`upscale` for video inputs: the options (added to the upscale parser) and the run over the inputs.

engine/cli.py hands off here when an input is a video (detect.is_video_input); the backend, tiling and batching
options are the image path's own.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

from ..errors import BackendUnavailableError, EngineError, UsageError

VIDEO_EPILOG = """video: inputs are files FFmpeg reads, /dev/videoN (V4L2), rtsp:// or http(s):// streams; -o FILE
(.mkv recommended), a folder (<name>.mkv), or - for raw RGB frames on stdout. Audio, subtitles and attachments are
copied untouched; timestamps (VFR) and colour tags are kept; Ctrl-C leaves a playable <name>.partial.mkv that
--resume continues."""


def add_video_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("video (inputs that are videos, cameras or streams)")
    g.add_argument("--codec", help="video encoder: libx264 (default for 8-bit), libx265 (default for 10/12-bit), "
                                   "libvpx-vp9 (.webm), ffv1 (lossless), h264_nvenc/hevc_nvenc where present")
    g.add_argument("--crf", type=float, help="constant quality (x264 default 18, x265 20, vp9 32; NVENC: cq)")
    g.add_argument("--bitrate", help="target bitrate instead of --crf, e.g. 8M")
    g.add_argument("--preset", help="encoder speed preset (x264/x265: ultrafast..veryslow, default medium; "
                                    "NVENC p1..p7; vp9: cpu-used 0..8)")
    g.add_argument("--pix-fmt", help="encoder pixel format (default: the source's bit depth and chroma layout "
                                     "where the encoder has it)")
    g.add_argument("--resume", action="store_true", help="continue <output>.partial.<ext> left by an interrupted run")
    g.add_argument("--reuse-static-tiles", action="store_true",
                   help="with tiling: reuse a tile's output when its input is bit-identical to the previous "
                        "frame's (exact: same output as without)")
    g.add_argument("--no-audio", action="store_true", help="do not copy audio streams")
    g.add_argument("--no-subtitles", action="store_true", help="do not copy subtitle and attachment streams")
    g.add_argument("--raw-format", choices=("auto", "rgb24", "rgb48le", "y4m"), default="auto",
                   help="frame format for -o -: raw rgb24 (default; rgb48le for 10/12-bit sources) or y4m "
                        "(YUV4MPEG2 4:4:4 with size and rate, for ffmpeg/ffplay/mpv)")
    g.add_argument("--input-option", action="append", default=[], metavar="KEY=VALUE",
                   help="FFmpeg option for opening the input, repeatable (cameras: video_size=1280x720, "
                        "framerate=30, input_format=mjpeg; streams: rtsp_transport=udp)")
    g.add_argument("--serial", action="store_true", help=argparse.SUPPRESS)  # no threads (benchmarks, debugging)


def wants_video(inputs: list[str]) -> bool:
    from .detect import is_video_input
    flags = [is_video_input(s) for s in inputs]
    if any(flags) and not all(flags):
        raise UsageError("give videos and images in separate runs (videos: %s)"
                         % ", ".join(s for s, f in zip(inputs, flags) if f))
    return any(flags)


def run_video_cli(args, make_backend, mem_budget) -> int:
    """Upscale each video input; returns the exit code (first failure's code)."""
    err = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    info = (lambda s: None) if args.quiet else err
    try:
        import av  # noqa: F401
    except ImportError:
        raise BackendUnavailableError(
            "video input needs PyAV: pip install 'smsr-engine[video]' (or pip install av)") from None
    from ..pipeline import Upscaler
    from .detect import output_for
    from .encode import EncodeSettings
    from .frames import FrameUpscaler
    from .pipeline import VideoOptions, upscale_video

    out_arg: Path = args.output
    n = len(args.inputs)
    if str(out_arg) == "-" and n > 1:
        raise UsageError("-o - (raw frames on stdout) takes one input")
    if n > 1 and out_arg.exists() and not out_arg.is_dir():
        raise UsageError("-o %s must be a folder for %d inputs" % (out_arg, n))
    if args.resume and str(out_arg) == "-":
        raise UsageError("--resume needs a file output")
    if args.tile is not None and args.tile <= args.tile_overlap:
        raise UsageError("--tile %d must be larger than --tile-overlap %d" % (args.tile, args.tile_overlap))
    if getattr(args, "save_masks", False):
        info("note: --save-masks applies to images only; ignored for videos")
    if args.reuse_static_tiles and args.tile is None:
        info("note: --reuse-static-tiles works on tiles; without --tile frames are run whole (no reuse)")
    in_opts = {}
    for kv in args.input_option:
        if "=" not in kv:
            raise UsageError("--input-option %r: expected KEY=VALUE" % kv)
        k, v = kv.split("=", 1)
        in_opts[k.strip()] = v
    opts = VideoOptions(input_options=in_opts,
                        settings=EncodeSettings(args.codec, args.crf, args.bitrate, args.preset, args.pix_fmt),
                        resume=args.resume, reuse_static=args.reuse_static_tiles, copy_audio=not args.no_audio,
                        copy_subtitles=not args.no_subtitles, raw_format=args.raw_format, threaded=not args.serial)
    backend = make_backend(args, info)
    code = 0
    try:
        up = Upscaler(backend, tile=args.tile, overlap=args.tile_overlap, batch=args.batch,
                      mem_budget_bytes=mem_budget(args, backend), log=info)
        fp = dict(model=backend.describe(), tile=up.tile, overlap=up.overlap, batch=up.batch)
        for spec in args.inputs:
            dest = output_for(spec, out_arg, n)
            if dest is not None and os.path.abspath(dest) == os.path.abspath(spec):
                err("error: %s: output would overwrite the input; choose another -o" % spec)
                code = code or UsageError.exit_code
                continue
            fu = FrameUpscaler(up, reuse_static=args.reuse_static_tiles)
            t0 = time.perf_counter()
            try:
                res = upscale_video(spec, dest, fu, opts, log=info, progress_bar=args.progress,
                                    stop=threading.Event(), fingerprint=fp, quiet=args.quiet)
            except EngineError as e:
                msg = str(e)
                err("error: %s" % (msg if spec in msg else "%s: %s" % (spec, msg)))
                code = code or e.exit_code
                continue
            dt = time.perf_counter() - t0
            line = "upscaled video %s -> %s: %d frames, %dx%d -> %dx%d, %s %s, %.2f s, %.2f fps, backend %s" % (
                spec, res.output, res.frames, res.in_size[0], res.in_size[1], res.out_size[0], res.out_size[1],
                res.codec, res.pix_fmt, dt, res.fps, backend.name)
            if res.resumed_from:
                line += ", resumed after %d frames" % res.resumed_from
            if args.reuse_static_tiles and (res.tiles_run + res.tiles_reused):
                line += ", %d of %d tiles reused" % (res.tiles_reused, res.tiles_run + res.tiles_reused)
            dropped = [n for n in res.notes if "dropped" in n]
            if dropped:  # also under --quiet: the user asked for these streams
                line += "; " + "; ".join(dropped)
            if res.stopped and not res.interrupted:
                line += " (stopped by Ctrl-C)"
            if res.interrupted:
                line += "; INTERRUPTED: partial file kept, rerun with --resume to continue"
            print(line, file=sys.stderr if dest is None else sys.stdout, flush=True)
            if res.interrupted:
                return 130
    finally:
        backend.close()
    return code

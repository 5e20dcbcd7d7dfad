"""Command line: `python -m engine upscale ...` and `python -m engine bench ...`.

User errors print one line `error: ...` and exit with the code from engine/errors.py; never a traceback.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from pathlib import Path

import numpy as np

from .backends.base import BACKEND_CHOICES, create_backend
from .errors import BackendOutOfMemory, EngineError, ImageNotFoundError, OutOfMemoryError, OutputError, UsageError
from .image_io import (DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, check_writable_as, load_image, make_output,
                       output_suffix, save_image, save_pil, to_network)
from .pipeline import DEFAULT_OVERLAP, Upscaler
from .progress import Progress
from .video.cli import VIDEO_EPILOG, add_video_args, run_video_cli, wants_video

EPILOG = """exit codes: 0 ok, 2 usage, 3 bad input image, 4 model/engine error (wrong scale, built for another
TensorRT/GPU), 5 backend or plugin library unavailable, or the backend failed while running an input, 6 out of
memory, 7 cannot write output; with several inputs, the code of the first failure (the others are still processed).
tiling: tiles overlap by --tile-overlap LR pixels and are blended linearly; on Set5 x2 with --tile 64
--tile-overlap 16 the PSNR_Y differs from whole-image inference by at most 0.05 dB."""


def _positive(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError("expected an integer, got %r" % v) from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be >= 1, got %d" % n)
    return n


def _nonneg(v: str) -> int:
    try:
        n = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError("expected an integer, got %r" % v) from None
    if n < 0:
        raise argparse.ArgumentTypeError("must be >= 0, got %d" % n)
    return n


def _size(v: str) -> tuple[int, int]:
    """WIDTHxHEIGHT, like video tools (640x360 is landscape); returns (height, width)."""
    try:
        w, h = (int(p) for p in v.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("expected WIDTHxHEIGHT like 640x360, got %r" % v) from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError("size must be at least 1x1")
    return h, w


def _add_backend_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("backend")
    g.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                   help="auto: TensorRT if --engine runs here, else ONNX Runtime (a deploy graph on the CPU with our "
                        "sparse op; a reference graph on CUDA if present, else CPU), else PyTorch for .pt weights "
                        "(default: auto)")
    g.add_argument("--engine", type=Path, help="TensorRT engine; its manifest <engine>.json (written beside it by "
                                               "build-engine) is checked when present, a warning when missing")
    g.add_argument("--model", type=Path, help="ONNX model (ONNX Runtime) or .pt checkpoint (--backend torch); "
                                              "default without --engine: $SMSR_HOME/models/smsr_x<scale>_deploy.onnx "
                                              "(smsr export-onnx --install)")
    g.add_argument("--scale", type=int, choices=(2, 3, 4), help="expected scale; an error if the model differs")
    g.add_argument("--plugin", type=Path, help="TensorRT plugin library (default: from the engine manifest)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="for ort/torch backends; auto runs a deploy graph (SMSRSparseBlock nodes, a CPU-only op in "
                        "ONNX Runtime) on the CPU even when the CUDA provider is present")
    g.add_argument("--threads", type=_positive, help="CPU threads for ONNX Runtime (default: all cores)")


def build_parser(prog: str = "python -m engine") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="SMSR super-resolution runtime",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="{upscale,bench}")
    sub.required = True

    up = sub.add_parser("upscale", help="upscale images and videos", epilog=EPILOG + "\n" + VIDEO_EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    up.add_argument("inputs", nargs="+", metavar="INPUT",
                    help="image files, folders or glob patterns; or videos, /dev/videoN, rtsp:// or http(s):// streams")
    up.add_argument("-o", "--output", type=Path, required=True,
                    help="output folder (or a file name when there is one input)")
    _add_backend_args(up)
    g = up.add_argument_group("tiling and batching")
    g.add_argument("--tile", type=_positive, help="tile size in LR pixels (default: whole image unless it exceeds "
                                                   "the engine profile or the memory budget)")
    g.add_argument("--tile-overlap", type=_nonneg, default=DEFAULT_OVERLAP,
                   help="overlap between tiles in LR pixels (default: %d)" % DEFAULT_OVERLAP)
    g.add_argument("--batch", type=_positive, default=1, help="tiles per backend call (default: 1)")
    g.add_argument("--mem-budget", type=_positive, metavar="MiB",
                   help="tile when the estimated memory of one call exceeds this (default: half the RAM for CPU "
                        "backends)")
    o = up.add_argument_group("output")
    o.add_argument("--save-masks", action="store_true",
                   help="also write <name>_masks.png showing the SMSR spatial masks over the image")
    o.add_argument("--suffix", default="", help="added to output file names (default: none)")
    o.add_argument("--format", choices=("same", "png", "jpg", "webp", "bmp", "tif"), default="same",
                   help="output format (default: same as the input where possible, else png)")
    o.add_argument("--recursive", action="store_true", help="descend into sub-folders of folder inputs")
    o.add_argument("--allow-large-images", action="store_true",
                   help="lift the decompression-bomb limit (%d pixels)" % DEFAULT_MAX_PIXELS)
    o.add_argument("--max-pixels", type=_positive, default=DEFAULT_MAX_PIXELS, help=argparse.SUPPRESS)
    _add_ui_args(up)
    add_video_args(up)

    b = sub.add_parser("bench", help="measure latency and throughput on random input of a given size")
    _add_backend_args(b)
    b.add_argument("--size", type=_size, default=(256, 256), metavar="WIDTHxHEIGHT",
                   help="LR input size, width first like video tools: 640x360 is landscape (default: 256x256)")
    b.add_argument("--batch", type=_positive, default=1, help="images per call (default: 1)")
    b.add_argument("--iters", type=_positive, default=10, help="timed calls (default: 10)")
    b.add_argument("--warmup", type=_nonneg, default=2, help="untimed calls first (default: 2)")
    b.add_argument("--tile", type=_positive, help="bench the tiled pipeline with this tile size")
    b.add_argument("--tile-overlap", type=_nonneg, default=DEFAULT_OVERLAP)
    _add_ui_args(b)
    return parser


def _add_ui_args(p):
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="always draw the progress bar (default: a bar on a terminal, plain lines otherwise)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors and the summary line")


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def expand_inputs(inputs: list[str], recursive: bool = False) -> list[tuple[Path, Path, EngineError | None]]:
    """(file, path relative to its input root for naming, error) for each input; a missing file or a pattern that
    matches nothing becomes an entry with an error so it is reported with the others."""
    out: list[tuple[Path, Path, EngineError | None]] = []
    seen = set()

    def add(p: Path, rel: Path):
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            out.append((p, rel, None))

    for s in inputs:
        p = Path(s)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            files = sorted(f for f in it if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                           and not f.name.startswith("."))
            if not files:
                out.append((p, Path(p.name), ImageNotFoundError("%s: folder contains no images" % p)))
            for f in files:
                add(f, f.relative_to(p))
        elif p.exists():
            add(p, Path(p.name))
        elif _has_magic(s):
            files = sorted(Path(f) for f in glob.glob(s, recursive=True) if os.path.isfile(f))
            if not files:
                out.append((p, Path(p.name), ImageNotFoundError("%s: pattern matches no file" % s)))
            for f in files:
                add(f, Path(f.name))
        else:
            out.append((p, Path(p.name), ImageNotFoundError("%s: no such file or folder" % s)))
    return out


def _mem_budget(args, backend) -> int | None:
    if args.mem_budget:
        return args.mem_budget * (1 << 20)
    if backend.name.endswith("cpu"):
        try:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
        except (ValueError, OSError, AttributeError):
            return None
    return None


def _default_model(args, log) -> Path | None:
    """The cached deploy graph when neither --model nor --engine is given (ONNX Runtime backends only)."""
    if args.model is not None or args.engine is not None or args.backend not in ("auto", "ort", "ort-cpu", "ort-cuda"):
        return args.model
    from .home import FILL_HINT, default_model_path
    path = default_model_path(args.scale or 2)
    if not path.is_file():
        raise UsageError("no --model or --engine given and no default model at %s: %s" % (path, FILL_HINT))
    log("model: %s (default)" % path)
    return path


def _make_backend(args, log):
    return create_backend(args.backend, model=_default_model(args, log), engine=args.engine, scale=args.scale,
                          device=args.device, plugin=args.plugin, threads=args.threads, log=log)


def _check_output_folder(folder: Path) -> None:
    """Prove, before any (slow) inference, that the output folder can be created and takes files: its nearest
    existing ancestor must be a folder that accepts a (deleted at once) test file. Creates nothing."""
    import tempfile
    base = folder
    while not base.exists() and base.parent != base:
        base = base.parent
    if not base.is_dir():
        raise UsageError("cannot write into output folder %s: %s is not a folder" % (folder, base))
    try:
        with tempfile.TemporaryFile(dir=base, prefix=".smsr-write-test"):
            pass
    except OSError as e:
        raise UsageError("cannot write into output folder %s: %s" % (folder, e.strerror or e)) from None


def _show_progress(args) -> bool | None:
    return False if args.quiet else args.progress


def cmd_upscale(args) -> int:
    if wants_video(args.inputs):  # videos, cameras, streams: engine/video
        return run_video_cli(args, _make_backend, _mem_budget)
    err = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    info = (lambda s: None) if args.quiet else err
    entries = expand_inputs(args.inputs, args.recursive)
    out_arg: Path = args.output
    single_file = (len(entries) == 1 and not out_arg.is_dir()
                   and out_arg.suffix.lower() in IMAGE_SUFFIXES)
    if not single_file and out_arg.exists() and not out_arg.is_dir():
        raise UsageError("-o %s exists and is not a folder" % out_arg)
    if args.tile is not None and args.tile <= args.tile_overlap:
        raise UsageError("--tile %d must be larger than --tile-overlap %d" % (args.tile, args.tile_overlap))
    input_paths = {os.path.abspath(p) for p, _, _ in entries}
    if single_file and out_arg.suffix.lower() not in ("." + s for s in ("png", "jpg", "jpeg", "webp", "bmp", "tif",
                                                                         "tiff")):
        raise UsageError("-o %s: cannot write %s files (use .png, .jpg, .webp, .bmp or .tif)" % (out_arg,
                                                                                              out_arg.suffix))
    _check_output_folder(out_arg.parent if single_file else out_arg)

    backend = _make_backend(args, info)
    failures: list[tuple[Path, EngineError]] = []
    written: dict[str, Path] = {}
    n_ok, mp_in, mp_out = 0, 0.0, 0.0
    masks_note = False
    t0 = time.perf_counter()
    try:
        upscaler = Upscaler(backend, tile=args.tile, overlap=args.tile_overlap, batch=args.batch,
                            mem_budget_bytes=_mem_budget(args, backend), log=info)
        bar = Progress(len(entries), "images", enabled=_show_progress(args) if len(entries) > 1 else False)
        for i, (path, rel, pre_err) in enumerate(entries):
            try:
                if pre_err is not None:
                    raise pre_err
                img = load_image(path, None if args.allow_large_images else args.max_pixels)
                ext = output_suffix(img) if args.format == "same" else "." + args.format
                if single_file:
                    dest = out_arg
                else:
                    dest = out_arg / rel.parent / (rel.stem + args.suffix + ext)
                key = os.path.abspath(dest)
                if key in input_paths:
                    raise UsageError("%s: output %s would overwrite an input; choose another -o or --suffix"
                                     % (path, dest))
                if key in written:
                    raise OutputError("%s: output %s was already written for %s; use distinct names"
                                      % (path, dest, written[key]))
                check_writable_as(img, dest)  # e.g. alpha into a JPEG: said now, not after inference
                tile_bar = None
                if len(entries) == 1:
                    tile_bar = Progress(1, "tiles", enabled=_show_progress(args))
                want_masks = args.save_masks and backend.has_masks
                res = upscaler.upscale(to_network(img), want_masks=want_masks,
                                       on_tiles=(lambda d, t: tile_bar.update(d, t)) if tile_bar else None)
                if tile_bar:
                    tile_bar.close()
                save_image(make_output(img, res.sr, backend.scale), dest)
                written[key] = path
                if args.save_masks:
                    if res.masks is None:
                        if not masks_note:
                            info("note: backend %s gives no masks; --save-masks writes nothing" % backend.name)
                            masks_note = True
                    else:
                        from .masks_viz import render_masks
                        save_pil(render_masks(img.rgb, res.masks), dest.with_name(dest.stem + "_masks.png"))
                w, h = img.size
                n_ok += 1
                mp_in += w * h / 1e6
                mp_out += w * h * backend.scale ** 2 / 1e6
            except EngineError as e:  # this file failed (bad image, backend error, OOM): report it, go on
                bar.clear()
                msg = str(e)
                err("error: %s" % (msg if str(path) in msg else "%s: %s" % (path, msg)))
                failures.append((path, e))
            bar.update(i + 1, mp=mp_out)
        bar.close()
    finally:
        backend.close()
    dt = time.perf_counter() - t0
    line = "upscaled %d image%s (%.2f MP in, %.2f MP out) in %.2f s: %.2f MP/s out, backend %s" % (
        n_ok, "" if n_ok == 1 else "s", mp_in, mp_out, dt, mp_out / dt if dt > 0 else 0.0, backend.name)
    if failures:
        line += "; %d failed: %s" % (len(failures), ", ".join(str(p) for p, _ in failures))
    print(line, flush=True)
    return failures[0][1].exit_code if failures else 0


def cmd_bench(args) -> int:
    info = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    backend = _make_backend(args, info)
    try:
        h, w = args.size
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 255, (args.batch, 3, h, w)).astype(np.float32)
        if args.tile:
            up = Upscaler(backend, tile=args.tile, overlap=args.tile_overlap, batch=args.batch, log=info)
            call = lambda: [up.upscale(x[i]) for i in range(args.batch)]  # noqa: E731
        else:
            lim = backend.limits
            if lim.max_hw is not None and (h > lim.max_hw[0] or w > lim.max_hw[1]):
                raise UsageError("--size %dx%d is larger than the model/engine takes (%dx%d): use a smaller --size "
                                 "or --tile" % (w, h, lim.max_hw[1], lim.max_hw[0]))
            if lim.max_batch is not None and args.batch > lim.max_batch:
                raise UsageError("--batch %d is larger than the model/engine takes (%d)" % (args.batch, lim.max_batch))
            up = Upscaler(backend, log=info)
            call = lambda: up._run_padded(x, False)  # noqa: E731
        times = []
        steps = args.warmup + args.iters
        bar = Progress(steps, "bench (%d warm-up + %d timed calls)" % (args.warmup, args.iters),
                       enabled=_show_progress(args) if steps > 1 else False)
        try:
            for i in range(args.warmup):
                call()
                bar.update(i + 1)
            for i in range(args.iters):
                t = time.perf_counter()
                call()
                times.append(time.perf_counter() - t)
                bar.update(args.warmup + i + 1)
        except BackendOutOfMemory as e:  # bench runs whole inputs without tiling: no retry here
            raise OutOfMemoryError("out of memory running %d×3×%d×%d on %s (%s); try a smaller --size or --batch, "
                                   "or --tile" % (args.batch, h, w, backend.name, e)) from None
        finally:
            bar.close()
    finally:
        backend.close()
    ms = np.array(times) * 1e3
    ips = args.batch / (ms.mean() / 1e3)
    mp = ips * h * w * backend.scale ** 2 / 1e6
    print("bench: backend %s, input %d×3×%d×%d%s, %d iters: latency mean %.2f ms, p50 %.2f, p90 %.2f, min %.2f; "
          "%.2f images/s, %.2f MP/s out" % (backend.name, args.batch, h, w,
                                            ", tile %d" % args.tile if args.tile else "", args.iters, ms.mean(),
                                            np.percentile(ms, 50), np.percentile(ms, 90), ms.min(), ips, mp),
          flush=True)
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m engine") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        return cmd_upscale(args) if args.command == "upscale" else cmd_bench(args)
    except EngineError as e:
        print("error: %s" % e, file=sys.stderr, flush=True)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        return 130

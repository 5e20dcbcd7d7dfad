"""Video throughput, all in one run on one backend and frame size:
  1. inference alone (what `engine bench` measures: backend calls on frames of that size, batch as given);
  2. the serial loop: decode -> YUV->RGB -> infer -> RGB->YUV -> encode -> mux, one frame after another;
  3. the threaded pipeline (engine/video/pipeline.py): the same work in three threads with bounded queues.
Optionally 4. a static-camera clip tiled with and without --reuse-static-tiles (tiles actually run, time).
The clip is generated here (libx264, with an audio stream); the output codec is libx264 (preset veryfast).

    python benchmarks/bench_video.py --model out/onnx/smsr_x2_reference.onnx --size 160x90 --frames 24
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from engine.backends.base import create_backend  # noqa: E402
from engine.pipeline import Upscaler  # noqa: E402
from engine.video.encode import EncodeSettings  # noqa: E402
from engine.video.frames import FrameUpscaler  # noqa: E402
from engine.video.pipeline import VideoOptions, upscale_video  # noqa: E402
from video_util import make_video  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--size", default="160x90", help="LR frame WIDTHxHEIGHT")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, help="ONNX Runtime threads")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each variant (best is reported)")
    ap.add_argument("--static-tile", type=int, help="also measure --reuse-static-tiles with this tile size")
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.lower().split("x"))
    backend = create_backend("ort", model=a.model, device="cpu", threads=a.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_video_"))
    clip = tmp / "clip.mkv"
    make_video(clip, n=a.frames, w=w, h=h, codec="libx264", audio=True)
    up = Upscaler(backend, batch=a.batch)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (a.batch, 3, h, w)).astype(np.float32)
    up._run_padded(x, False)
    t = time.perf_counter()
    calls = max(1, a.frames // a.batch)
    for _ in range(calls):
        up._run_padded(x, False)
    infer_fps = calls * a.batch / (time.perf_counter() - t)

    def run(threaded: bool, fu=None) -> float:
        best = 0.0
        for _ in range(a.repeats):
            opts = VideoOptions(settings=EncodeSettings(preset="veryfast"), threaded=threaded)
            r = upscale_video(str(clip), tmp / "out.mkv", fu or FrameUpscaler(up), opts)
            assert r.frames == a.frames, r.frames
            best = max(best, r.fps)
        return best

    serial = run(False)
    threaded = run(True)
    print("backend %s, LR %dx%d -> %dx%d, %d frames, batch %d" % (backend.describe(), w, h, w * backend.scale,
                                                                h * backend.scale, a.frames, a.batch))
    print("inference only (engine bench): %.2f fps" % infer_fps)
    print("serial decode->infer->encode: %.2f fps (%.0f%% of inference only)" % (serial, 100 * serial / infer_fps))
    print("threaded pipeline:            %.2f fps (%.0f%% of inference only, %.2fx serial)"
          % (threaded, 100 * threaded / infer_fps, threaded / serial))
    if a.static_tile:
        still = tmp / "still.mkv"
        make_video(still, n=a.frames, w=w, h=h, codec="ffv1", static_left=True)
        clip = still
        tiled = Upscaler(backend, tile=a.static_tile, overlap=16, batch=a.batch)
        res = {}
        for reuse in (False, True):
            fu = FrameUpscaler(tiled, reuse_static=reuse)
            opts = VideoOptions(settings=EncodeSettings(preset="veryfast"))
            r = upscale_video(str(clip), tmp / ("s%d.mkv" % reuse), fu, opts)
            res[reuse] = (r.fps, fu.tiles_run, fu.tiles_reused)
        print("static-camera clip (left half still), tile %d: without reuse %.2f fps (%d tiles run); with "
              "--reuse-static-tiles %.2f fps (%d run, %d reused): %.2fx"
              % (a.static_tile, res[False][0], res[False][1], res[True][0], res[True][1], res[True][2],
                 res[True][0] / res[False][0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

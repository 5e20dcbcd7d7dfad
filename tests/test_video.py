"""Video inputs: streams, timestamps, colour, bit depth, odd sizes, grey, stop/resume, static-tile reuse, bad
inputs, raw stdout, network streams. Small synthetic videos (tests/video_util.py), the stand-in model and a
nearest-neighbour x2 model (exact colour checks) on ONNX Runtime CPU."""
from __future__ import annotations

import functools
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from helpers import strict

try:
    import av
except ImportError:  # the dev extra installs it: CI must not skip these tests
    if strict():
        raise
    pytest.skip("PyAV (the video extra) is not installed", allow_module_level=True)

from engine import image_io  # noqa: E402
from engine.backends.onnxruntime import OrtBackend  # noqa: E402
from engine.cli import main  # noqa: E402
from engine.pipeline import Upscaler  # noqa: E402
from engine.video import colour  # noqa: E402
from engine.video.frames import FrameUpscaler  # noqa: E402
from engine.video.pipeline import VideoOptions, quantize, to_network, upscale_video  # noqa: E402
from engine.video.source import Source  # noqa: E402
from standin_model import build_standin  # noqa: E402
from video_util import build_nearest, make_video, packets, planes_of, video_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VFR = [0, 40, 80, 200, 240, 260, 300, 500, 540, 600]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("m")
    return {"standin": build_standin(d / "standin.onnx"), "nearest": build_nearest(d / "nearest.onnx"),
            "standin3": build_standin(d / "standin3.onnx", scale=3)}


def cli(capsys, *args):
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:
        rc = e.code
    except BaseException as e:  # noqa: BLE001
        pytest.fail("the CLI let %s escape: %s" % (type(e).__name__, e))
    out, err = capsys.readouterr()
    if rc not in (0, 2):
        assert any(line.startswith("error: ") for line in err.splitlines()), err
    return rc, out, err


def raw_frames(*args, n_bytes_per_frame=None):
    r = subprocess.run([sys.executable, "-m", "engine", "upscale"] + [str(a) for a in args] + ["-o", "-"],
                       cwd=REPO, capture_output=True, timeout=120)
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr.decode()
    return r.stdout, r.stderr.decode()


def decoded_rgb(path) -> list[np.ndarray]:
    src = Source(str(path))
    try:
        return [f.rgb for f in src.items()]
    finally:
        src.close()


def test_file_to_file_keeps_streams_timestamps_and_tags(capsys, models, tmp_path):
    """VFR timestamps, audio/subtitle packets bit-identical, attachment kept, BT.709 limited tags kept."""
    inp = tmp_path / "in.mkv"
    make_video(inp, pts=VFR, codec="libx264", audio=True, subtitles=True, attachment=True)
    out = tmp_path / "out.mkv"
    rc, stdout, _ = cli(capsys, "upscale", inp, "-o", out, "--model", models["standin"], "--batch", "2")
    assert rc == 0, stdout
    assert "10 frames" in stdout and "64x48 -> 128x96" in stdout
    a, b = video_info(inp), video_info(out)
    assert b["n"] == a["n"] == 10 and b["pts"] == a["pts"] == VFR  # VFR stays VFR
    assert (b["w"], b["h"]) == (128, 96) and b["codec"] == "h264" and b["pix_fmt"] == "yuv420p"
    assert (b["matrix"], b["range"], b["primaries"], b["trc"]) == (1, 1, 1, 1)
    assert b["types"] == ["attachment", "audio", "subtitle", "video"]
    assert packets(out, "audio") == packets(inp, "audio") and len(packets(inp, "audio")) > 3
    assert packets(out, "subtitle") == packets(inp, "subtitle")
    assert not (tmp_path / "out.partial.mkv").exists()


def test_raw_stdout_frames_equal_the_image_path(capsys, models, tmp_path):
    """Each SR frame equals `upscale` of the same RGB frame saved as a PNG; threaded == serial."""
    inp = tmp_path / "in.mkv"
    make_video(inp, n=6, w=30, h=22)
    data, err = raw_frames(inp, "--model", models["standin"], "--batch", "2")
    assert "raw rgb24 frames, 60x44" in err
    frames = np.frombuffer(data, np.uint8).reshape(-1, 44, 60, 3)
    assert len(frames) == 6
    rgbs = decoded_rgb(inp)
    for i in (0, 5):
        png = tmp_path / ("f%d.png" % i)
        image_io.save_image(image_io.ImageData(rgbs[i].astype(np.float32), None, 8, False, "PNG", "RGB"), png)
        rc, _, _ = cli(capsys, "upscale", png, "-o", tmp_path / ("sr%d.png" % i), "--model", models["standin"])
        assert rc == 0
        want = np.asarray(image_io.load_image(tmp_path / ("sr%d.png" % i)).rgb, np.uint8)
        np.testing.assert_array_equal(frames[i], want)
    serial, _ = raw_frames(inp, "--model", models["standin"], "--batch", "2", "--serial")
    assert serial == data


# Y'CbCr codes of pure red (255, 0, 0), computed by hand from the standards' Kr/Kb (limited range, 8 bits):
# BT.601: Y = 16 + 219*0.299 = 81.5, Cb = 128 - 112*0.299/0.886 = 90.2, Cr = 240; BT.709: 62.9, 102.0, 240.
RED_CODES = {6: (81, 90, 240), 1: (63, 102, 240)}


@pytest.mark.parametrize("matrix", [6, 1])
def test_matrix_from_the_tags(models, tmp_path, matrix):
    """A BT.601- and a BT.709-tagged red decode to red (each with its own matrix), and the output's codes equal the
    input's: the wrong matrix would give (233, 0, 2) for the 709 codes and (255, 14, 0)-ish for the 601 ones.
    Tolerance: 1 RGB level (8-bit rounding of the integer codes) and 1 code on the way back."""
    y, cb, cr = RED_CODES[matrix]
    inp = tmp_path / "red.mkv"

    def planes(i, w, h):
        return [np.full((h, w), v, np.uint8) for v in (y, cb, cr)]
    make_video(inp, n=3, w=16, h=12, pix_fmt="yuv444p", matrix=matrix, planes_fn=planes)
    rgb = decoded_rgb(inp)[0]
    assert np.abs(rgb.astype(int) - [255, 0, 0]).max() <= 1
    wrong = colour.frame_to_rgb(video_info(inp)["frames"][0], colour.ColourSpec(7 - matrix if matrix == 6 else 6, 1))
    assert np.abs(wrong.astype(int) - [255, 0, 0]).max() >= 10  # the matrix matters for this colour
    out = tmp_path / "out.mkv"
    assert main(["upscale", str(inp), "-o", str(out), "--model", str(models["nearest"]), "--codec", "ffv1", "-q"]) == 0
    info = video_info(out)
    assert info["matrix"] == matrix and info["range"] == 1 and info["pix_fmt"] == "yuv444p"
    for p, want in zip(planes_of(info["frames"][0]), (y, cb, cr)):
        assert np.abs(p.astype(int) - want).max() <= 1


def test_full_range_and_untagged(models, tmp_path):
    """Full range decodes with full-range levels; an untagged SD file is assumed BT.601 limited and tagged so."""
    inp = tmp_path / "full.mkv"

    def planes(i, w, h):  # BT.709 full range white-ish grey 200: Y = 200, Cb = Cr = 128
        return [np.full((h, w), v, np.uint8) for v in (200, 128, 128)]
    make_video(inp, n=2, w=16, h=12, pix_fmt="yuv444p", rng=2, planes_fn=planes)
    assert np.abs(decoded_rgb(inp)[0].astype(int) - 200).max() <= 1  # limited would give (200-16)*255/219 = 214
    un = tmp_path / "untagged.mkv"
    make_video(un, n=2, w=16, h=12, matrix=None, rng=None, primaries=None, trc=None)
    out = tmp_path / "o.mkv"
    assert main(["upscale", str(un), "-o", str(out), "--model", str(models["nearest"]), "-q"]) == 0
    info = video_info(out)
    assert (info["matrix"], info["range"]) == (6, 1)


@pytest.mark.parametrize("codec,pix_fmt,bits", [(None, "yuv420p10le", 10), ("libx264", "yuv420p10le", 10),
                                                ("ffv1", "yuv420p10le", 10), ("libvpx-vp9", "yuv420p", 8)])
def test_10bit_kept_where_the_encoder_can(models, tmp_path, codec, pix_fmt, bits):
    inp = tmp_path / "in10.mkv"

    def planes(i, w, h):  # a fine luma ramp (steps of 1 code in 10 bits), neutral chroma: no clipping in RGB
        yy, xx = np.mgrid[0:h, 0:w]
        y = (100 + xx * 7 + yy * 3 + i).astype(np.uint16)
        return [y, np.full((h // 2, w // 2), 512, np.uint16), np.full((h // 2, w // 2), 512, np.uint16)]
    make_video(inp, n=4, w=32, h=24, pix_fmt="yuv420p10le", planes_fn=planes)
    out = tmp_path / ("o.webm" if codec == "libvpx-vp9" else "o.mkv")
    args = ["upscale", str(inp), "-o", str(out), "--model", str(models["nearest"]), "-q"]
    assert main(args + (["--codec", codec] if codec else [])) == 0
    info = video_info(out)
    assert info["pix_fmt"] == pix_fmt and info["n"] == 4
    if codec is None:
        assert info["codec"] == "hevc"  # the 10-bit default
    if codec == "ffv1":  # lossless: the 10-bit codes survive (nearest x2 model), not just 8 bits of them
        y_in = planes_of(video_info(inp)["frames"][1])[0].astype(int)
        y_out = planes_of(info["frames"][1])[0].astype(int)[::2, ::2]
        assert np.abs(y_out - y_in).max() <= 1 and (y_in % 4 != 0).any()


def test_odd_sizes_and_grey(models, tmp_path):
    g = tmp_path / "gray.mkv"
    make_video(g, n=3, w=63, h=47, pix_fmt="gray", matrix=None, rng=None, primaries=None, trc=None)
    out = tmp_path / "g.mkv"
    # ffv1: FFmpeg's H.264 decoder reports a monochrome stream as yuvj420p, ffv1 keeps "gray" visible
    assert main(["upscale", str(g), "-o", str(out), "--model", str(models["standin"]), "-q", "--codec", "ffv1"]) == 0
    info = video_info(out)
    assert (info["w"], info["h"], info["pix_fmt"], info["n"]) == (126, 94, "gray", 3)
    odd = tmp_path / "odd.mkv"
    make_video(odd, n=3, w=21, h=15, pix_fmt="yuv420p")
    out3 = tmp_path / "o3.mkv"  # x3 of an odd size is odd: 4:2:0 cannot hold it, 4:4:4 is chosen
    assert main(["upscale", str(odd), "-o", str(out3), "--model", str(models["standin3"]), "-q"]) == 0
    info = video_info(out3)
    assert (info["w"], info["h"], info["pix_fmt"], info["n"]) == (63, 45, "yuv444p", 3)


class _StopAfter(FrameUpscaler):
    def __init__(self, up, stop, after):
        super().__init__(up)
        self.stop, self.after, self.seen = stop, after, 0

    def process(self, frames):
        self.seen += len(frames)
        if self.seen >= self.after:
            self.stop.set()  # what Ctrl-C does
        return super().process(frames)


@pytest.mark.parametrize("threaded,codec", [(True, "ffv1"), (False, "ffv1"), (True, "libx264")])
def test_stop_leaves_playable_partial_and_resume_completes(models, tmp_path, threaded, codec):
    inp = tmp_path / "in.mkv"
    make_video(inp, n=16, w=32, h=24, pts=[i * 40 + (i % 3) * 7 for i in range(16)], audio=True)
    backend = OrtBackend(models["standin"], device="cpu")
    opts = VideoOptions(threaded=threaded)
    opts.settings.codec = codec  # ffv1 is lossless: the resumed file can be compared with an uninterrupted run
    out = tmp_path / "out.mkv"
    ref = tmp_path / "ref.mkv"
    up = Upscaler(backend)
    upscale_video(str(inp), ref, FrameUpscaler(up), opts)
    stop = threading.Event()
    res = upscale_video(str(inp), out, _StopAfter(up, stop, 5), opts, stop=stop)
    assert res.interrupted and not out.exists()
    partial = tmp_path / "out.partial.mkv"
    done = video_info(partial)  # playable: decodes, frames in order
    done_planes = [planes_of(f) for f in done["frames"]]
    assert 5 <= done["n"] < 16 and done["pts"] == video_info(inp)["pts"][:done["n"]]
    opts.resume = True
    res = upscale_video(str(inp), out, FrameUpscaler(up), opts)
    assert res.resumed_from == done["n"] and not res.interrupted
    assert out.exists() and not partial.exists()
    a, b = video_info(ref), video_info(out)
    assert b["pts"] == a["pts"] and b["n"] == 16
    for pa, fb in zip(done_planes, b["frames"]):  # the partial's frames are in the result unchanged
        for x, y in zip(pa, planes_of(fb)):
            np.testing.assert_array_equal(x, y)
    for fa, fb in zip(a["frames"] if codec == "ffv1" else [], b["frames"]):
        for pa, pb in zip(planes_of(fa), planes_of(fb)):
            np.testing.assert_array_equal(pa, pb)
    assert packets(out, "audio") == packets(inp, "audio")
    # A partial file from other settings is refused.
    res = upscale_video(str(inp), out, _StopAfter(up, threading.Event(), 0), opts)  # nothing to resume: full run
    assert res.resumed_from == 0 and video_info(out)["n"] == 16


def test_resume_refuses_other_settings(capsys, models, tmp_path):
    inp = tmp_path / "in.mkv"
    make_video(inp, n=4, w=16, h=12)
    out = tmp_path / "o.mkv"
    (tmp_path / "o.partial.mkv").write_bytes(Path(inp).read_bytes())  # not ours: no fingerprint
    rc, _, err = cli(capsys, "upscale", inp, "-o", out, "--model", models["standin"], "--resume")
    assert rc == 2 and "another input or with other settings" in err


@pytest.mark.parametrize("batch", [1, 3])
def test_static_tile_reuse_is_exact(models, tmp_path, batch):
    inp = tmp_path / "static.mkv"
    make_video(inp, n=6, w=64, h=40, pix_fmt="yuv444p", static_left=True)
    common = [inp, "--model", models["standin"], "--tile", "16", "--tile-overlap", "8", "--batch", batch]
    plain, _ = raw_frames(*common)
    reused, err = raw_frames(*common, "--reuse-static-tiles")
    assert reused == plain
    assert "tiles reused" in err
    n_reused, n_all = (int(v) for v in err.split("tiles reused")[0].rsplit(",", 1)[1].split(" of "))
    assert n_reused >= n_all // 4  # the static left half after the first frame


def test_bad_inputs(capsys, models, tmp_path):
    good = tmp_path / "good.mkv"
    make_video(good, n=20, w=64, h=48, codec="libx264", audio=True)
    data = good.read_bytes()
    cases = {"junk.mkv": b"this is not a video" * 20, "truncated.mkv": data[: int(len(data) * 0.6)]}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        out = tmp_path / ("o_" + name)
        rc, _, err = cli(capsys, "upscale", tmp_path / name, "-o", out, "--model", models["standin"])
        assert rc == 3, err
        assert name in err
        assert not out.exists() and not (tmp_path / ("o_" + name.replace(".mkv", ".partial.mkv"))).exists()
    audio_only = tmp_path / "audio.mka"
    with av.open(str(audio_only), "w", format="matroska") as c:
        s = c.add_stream("flac", rate=8000, layout="mono")
        f = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        f.sample_rate, f.pts = 8000, 0
        for p in list(s.encode(f)) + list(s.encode()):
            c.mux(p)
    rc, _, err = cli(capsys, "upscale", str(audio_only) + "", "-o", tmp_path / "x.mkv", "--model", models["standin"])
    assert rc in (2, 3)  # .mka is not a video suffix: probed; an audio-only file is no video
    rc, _, err = cli(capsys, "upscale", good, "-o", tmp_path / "x.mkv", "--model", models["standin"],
                     "--codec", "nosuchcodec")
    assert rc == 2 and "nosuchcodec" in err
    png = tmp_path / "a.png"
    image_io.save_image(image_io.ImageData(np.zeros((4, 4, 3), np.float32), None, 8, False, "PNG", "RGB"), png)
    rc, _, err = cli(capsys, "upscale", good, png, "-o", tmp_path / "mix", "--model", models["standin"])
    assert rc == 2 and "separate runs" in err


def test_no_frame_count_no_timestamps(models, tmp_path):
    """A raw H.264 elementary stream: no frame count, no duration, no timestamps."""
    mkv = tmp_path / "a.mkv"
    make_video(mkv, n=8, w=32, h=24, codec="libx264")
    es = tmp_path / "a.h264"
    with av.open(str(mkv)) as c, av.open(str(es), "w", format="h264") as o:
        vs = c.streams.video[0]
        ost = o.add_stream_from_template(vs)
        for p in c.demux(vs):
            if p.size:
                p.stream = ost
                o.mux(p)
    src = Source(str(es))
    assert src.frame_count_estimate() is None or src.frame_count_estimate() > 0
    src.close()
    out = tmp_path / "o.mkv"
    assert main(["upscale", str(es), "-o", str(out), "--model", str(models["standin"]), "-q"]) == 0
    assert video_info(out)["n"] == 8


def test_http_stream(capsys, models, tmp_path):
    """A network source (http://, served from this process) is read like a file; one that stops early keeps the
    frames it gave under the partial name and exits 3."""
    inp = tmp_path / "net.mkv"
    make_video(inp, n=5, w=32, h=24, audio=True)
    cut = tmp_path / "cut.mkv"
    make_video(cut, n=30, w=32, h=24, codec="libx264")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size * 2 // 3])
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = "http://127.0.0.1:%d/net.mkv" % srv.server_address[1]
        out = tmp_path / "o.mkv"
        assert main(["upscale", url, "-o", str(out), "--model", str(models["standin"]), "-q"]) == 0
        rc, _, err = cli(capsys, "upscale", url.replace("net.mkv", "cut.mkv"), "-o", tmp_path / "c.mkv",
                         "--model", models["standin"])
        assert rc == 3 and "truncated" in err and "c.partial.mkv" in err, err
        assert not (tmp_path / "c.mkv").exists() and 5 < video_info(tmp_path / "c.partial.mkv")["n"] < 30
    finally:
        srv.shutdown()
    assert video_info(out)["n"] == 5 and packets(out, "audio") == packets(inp, "audio")


def test_folder_output(capsys, models, tmp_path):
    for name in ("a.mp4", "b.mkv"):
        make_video(tmp_path / name, n=3, w=16, h=12, codec="libx264", audio=True)
    rc, stdout, _ = cli(capsys, "upscale", tmp_path / "a.mp4", tmp_path / "b.mkv", "-o", tmp_path / "out",
                        "--model", models["standin"], "--crf", "30", "--preset", "ultrafast")
    assert rc == 0 and stdout.count("upscaled video") == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mkv", "b.mkv"]
    assert video_info(tmp_path / "out" / "a.mkv")["n"] == 3


def test_quantize_matches_image_path():
    rng = np.random.default_rng(0)
    sr = rng.uniform(-10, 270, (3, 5, 7)).astype(np.float32)
    img = image_io.make_output(image_io.ImageData(np.zeros((5, 7, 3), np.float32), None, 8, False, "PNG", "RGB"),
                               sr, 1)
    np.testing.assert_array_equal(quantize(sr, False), image_io.encode_arrays(img))
    img16 = image_io.ImageData(img.rgb, None, 16, False, "PNG", "RGB;16")
    np.testing.assert_array_equal(quantize(sr, True), image_io.encode_arrays(img16))
    x = rng.integers(0, 65536, (4, 4, 3)).astype(np.uint16)
    np.testing.assert_allclose(to_network(x), x.transpose(2, 0, 1) / 257.0, rtol=1e-6)


def test_rotation_is_applied_to_the_pixels(monkeypatch, models, tmp_path):
    """PyAV cannot write a display matrix, so the rotation read from the frame is forced here: a frame that
    players show turned 90° counter-clockwise (frame.rotation = 90) is upscaled turned, with swapped sizes."""
    inp = tmp_path / "r.mkv"
    make_video(inp, n=2, w=32, h=24)
    plain = decoded_rgb(inp)
    orig = Source._first_frame

    def first(self, frame):
        orig(self, frame)
        self.rotation = 1  # what frame.rotation == 90 gives
    monkeypatch.setattr(Source, "_first_frame", first)
    turned = decoded_rgb(inp)
    np.testing.assert_array_equal(turned[0], np.rot90(plain[0], 1))
    out = tmp_path / "o.mkv"
    assert main(["upscale", str(inp), "-o", str(out), "--model", str(models["nearest"]), "-q"]) == 0
    info = video_info(out)
    assert (info["w"], info["h"], info["n"]) == (48, 64, 2)


def test_y4m_on_stdout(models, tmp_path):
    """-o - --raw-format y4m: a YUV4MPEG2 stream (size, rate, 10-bit 4:4:4 for a 10-bit source) FFmpeg reads; its
    frames decode back to the raw RGB frames within 1 level of 16-bit/1023 rounding (4:4:4, no chroma filter)."""
    inp = tmp_path / "in10.mkv"
    make_video(inp, n=3, w=16, h=12, pix_fmt="yuv420p10le")
    y4m, _ = raw_frames(inp, "--model", models["nearest"], "--raw-format", "y4m")
    raw, _ = raw_frames(inp, "--model", models["nearest"])
    (tmp_path / "o.y4m").write_bytes(y4m)
    rgb = np.frombuffer(raw, "<u2").reshape(3, 24, 32, 3).astype(int)
    info = video_info(tmp_path / "o.y4m")
    assert (info["n"], info["w"], info["h"], info["pix_fmt"]) == (3, 32, 24, "yuv444p10le")
    back = colour.frame_to_rgb(info["frames"][2], colour.ColourSpec(1, 1)).astype(int)
    assert np.abs(back - rgb[2]).max() <= 3 * 65535 // 876  # a few 10-bit luma steps on the 16-bit scale

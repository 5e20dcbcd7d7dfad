"""Image I/O: every supported mode round-trips with the right size, mode and bit depth; EXIF, ICC, clamping,
16-bit PNG I/O through pypng (checked against Pillow and an independent filter + Adam7 encoder in this file),
errors, atomic writes."""
from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms

from engine import image_io, png16
from engine.errors import CorruptImageError, ImageNotFoundError, ImageTooLargeError, OutputError, \
    UnsupportedImageError
from engine.image_io import load_image, make_output, save_image, to_network

RNG = np.random.default_rng(7)


def nearest_x2(img):
    """Stand-in for the network: nearest ×2 on the network form (so exact values can be checked)."""
    x = to_network(img)
    assert x.shape == (3, img.size[1], img.size[0]) and x.dtype == np.float32
    return make_output(img, x.repeat(2, 1).repeat(2, 2), 2)


def _u8(h, w, c):
    return RNG.integers(0, 256, (h, w, c) if c > 1 else (h, w), dtype=np.uint8)


def _write_png16(path, px: np.ndarray, **meta):
    with open(path, "wb") as f:
        png16.encode(png16.PNG16(px, **meta), f)


CASES = {
    # name: (make file, expected Pillow mode of the output, output bit depth)
    "RGB": (lambda p: Image.fromarray(_u8(9, 13, 3), "RGB").save(p), "RGB", 8),
    "RGBA": (lambda p: Image.fromarray(_u8(9, 13, 4), "RGBA").save(p), "RGBA", 8),
    "L": (lambda p: Image.fromarray(_u8(9, 13, 1), "L").save(p), "L", 8),
    "LA": (lambda p: Image.fromarray(_u8(9, 13, 2), "LA").save(p), "LA", 8),
    "1": (lambda p: Image.fromarray(_u8(9, 13, 1) > 128).save(p), "L", 8),
    "P": (lambda p: Image.fromarray(_u8(9, 13, 3), "RGB").quantize(16).save(p), "RGB", 8),
    "P+transparency": (lambda p: Image.fromarray(_u8(9, 13, 3), "RGB").quantize(16).save(p, transparency=3),
                       "RGBA", 8),
    "I;16": (lambda p: Image.fromarray(RNG.integers(0, 65536, (9, 13), dtype=np.uint16)).save(p), "I;16", 16),
    "RGB16": (lambda p: _write_png16(p, RNG.integers(0, 65536, (9, 13, 3), dtype=np.uint16)), "RGB;16", 16),
    "RGBA16": (lambda p: _write_png16(p, RNG.integers(0, 65536, (9, 13, 4), dtype=np.uint16)), "RGBA;16", 16),
    "LA16": (lambda p: _write_png16(p, RNG.integers(0, 65536, (9, 13, 2), dtype=np.uint16)), "LA;16", 16),
}


def _read_back(path):
    """(mode name like image_io.ImageData.out_mode, H×W×C integer array) of a written file, decoded independently
    of load_image where Pillow can (8-bit and 16-bit gray)."""
    if png16.needs_png16(path):
        px = png16.decode(path).pixels
        return {3: "RGB;16", 4: "RGBA;16", 2: "LA;16"}[px.shape[2]], px
    im = Image.open(path)
    a = np.asarray(im)
    return im.mode, a if a.ndim == 3 else a[:, :, None]


@pytest.mark.parametrize("case", list(CASES))
def test_mode_round_trip(tmp_path, case):
    make, want_mode, depth = CASES[case]
    src = tmp_path / "in.png"
    make(src)
    img = load_image(src)
    assert img.bit_depth == depth
    out = nearest_x2(img)
    assert out.out_mode() == want_mode
    dst = save_image(out, tmp_path / "out.png")
    mode, px = _read_back(dst)
    assert mode == want_mode
    w, h = Image.open(src).size
    assert px.shape[:2] == (2 * h, 2 * w)
    assert px.dtype == (np.uint16 if depth == 16 else np.uint8)
    # Colour/gray values: nearest ×2 of the decoded input, exactly (no loss through /257 and *257).
    ref = load_image(src)
    maxv = 65535 if depth == 16 else 255
    col = np.rint(ref.rgb * (257 if depth == 16 else 1))
    col = col[:, :, :1] if ref.gray else col
    np.testing.assert_array_equal(px[:, :, :col.shape[2]], col.repeat(2, 0).repeat(2, 1).astype(px.dtype))
    if ref.alpha is not None:
        # Alpha is upscaled on its own, bicubic (compare with Pillow's bicubic of the alpha plane).
        want = Image.fromarray(ref.alpha.astype(np.float32), "F").resize((2 * w, 2 * h), Image.BICUBIC)
        want = np.clip(np.rint(np.asarray(want)), 0, maxv)
        np.testing.assert_array_equal(px[:, :, -1], want.astype(px.dtype))


def test_output_is_clamped_and_rounded(tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(src)
    img = load_image(src)
    sr = np.array([-10.0, 12.49, 12.51, 300.0], np.float32).reshape(1, 2, 2).repeat(3, 0)
    out = make_output(img, sr, 1)
    px = np.asarray(Image.open(save_image(out, tmp_path / "o.png")))
    np.testing.assert_array_equal(px[:, :, 0], [[0, 12], [13, 255]])
    img.bit_depth = 16  # same values on the 16-bit scale: ×257, clamp to 65535
    out16 = make_output(img, sr, 1)
    np.testing.assert_array_equal(image_io.encode_arrays(out16)[:, :, 0], [[0, 3210], [3215, 65535]])


def test_exif_orientation_applied_and_reset(tmp_path):
    a = _u8(6, 10, 3)
    ex = Image.Exif()
    ex[0x0112] = 6  # rotate 90° clockwise to display
    ex[0x010F] = "TestMaker"
    src = tmp_path / "rot.jpg"
    Image.fromarray(a).save(src, quality=100, exif=ex.tobytes())
    img = load_image(src)
    assert img.size == (6, 10)  # width and height swapped by the orientation
    out = save_image(nearest_x2(img), tmp_path / "rot_out.jpg")
    im = Image.open(out)
    assert im.size == (12, 20)
    assert im.getexif().get(0x0112, 1) == 1  # no second rotation by viewers
    assert im.getexif().get(0x010F) == "TestMaker"  # other EXIF fields kept


def test_exif_orientation_png16(tmp_path):
    px = RNG.integers(0, 65536, (4, 7, 3), dtype=np.uint16)
    ex = Image.Exif()
    ex[0x0112] = 8
    src = tmp_path / "r16.png"
    _write_png16(src, px, exif=ex.tobytes()[6:])
    img = load_image(src)
    assert img.size == (4, 7)
    np.testing.assert_allclose(img.rgb * 257, np.rot90(px, 1), atol=0.01)


def test_icc_profile_kept(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "icc.png"
    Image.fromarray(_u8(5, 5, 3)).save(src, icc_profile=icc)
    out = save_image(nearest_x2(load_image(src)), tmp_path / "icc_out.png")
    assert Image.open(out).info.get("icc_profile") == icc
    src16 = tmp_path / "icc16.png"
    _write_png16(src16, RNG.integers(0, 65536, (3, 3, 3), dtype=np.uint16), icc_profile=icc)
    out16 = save_image(nearest_x2(load_image(src16)), tmp_path / "icc16_out.png")
    assert png16.decode(out16).icc_profile == icc


def test_jpeg_keeps_format(tmp_path):
    src = tmp_path / "a.jpg"
    Image.fromarray(_u8(8, 8, 3)).save(src)
    img = load_image(src)
    assert image_io.output_suffix(img) == ".jpg"
    assert Image.open(save_image(nearest_x2(img), tmp_path / "b.jpg")).format == "JPEG"


# --- 16-bit PNG I/O (engine.png16 over pypng) ---------------------------------------------------------------------
def _filter_row(ftype, row, prev, bpp):
    """PNG spec filters (encoder side), byte by byte: independent of the decoder."""
    out = bytearray(len(row))
    for i in range(len(row)):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if ftype == 0:
            pred = 0
        elif ftype == 1:
            pred = a
        elif ftype == 2:
            pred = b
        elif ftype == 3:
            pred = (a + b) // 2
        else:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        out[i] = (row[i] - pred) & 0xFF
    return bytes(out)


def _filtered(px):
    """Filtered scanlines of an H×W×C uint16 image (or one Adam7 pass), filter type cycling 0..4 by row."""
    h, w, c = px.shape
    rows = px.astype(">u2").reshape(h, w * c).view(np.uint8)
    raw, prev = b"", bytes(w * c * 2)
    for y in range(h):
        f = y % 5
        raw += bytes([f]) + _filter_row(f, bytes(rows[y]), prev, 2 * c)
        prev = bytes(rows[y])
    return raw


# Adam7 passes as (x0, y0, dx, dy), PNG spec §8.2.
_ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def _adam7_raw(px):
    """Interlaced image data: each non-empty pass filtered on its own (empty passes have no bytes at all)."""
    passes = [px[y0::dy, x0::dx] for x0, y0, dx, dy in _ADAM7]
    return b"".join(_filtered(p) for p in passes if p.size)


def _chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)


def _png16_bytes(w, h, c, raw, interlace=0, idat=None):
    """A 16-bit PNG file around `raw` (filtered scanlines); `idat` replaces the compressed stream if given."""
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    return (png16.PNG_SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, interlace))
            + _chunk(b"IDAT", zlib.compress(raw) if idat is None else idat) + _chunk(b"IEND", b""))


def _png_all_filters(path, px):
    h, w, c = px.shape
    path.write_bytes(_png16_bytes(w, h, c, _filtered(px)))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png16_decoder_all_filters(tmp_path, channels):
    px = RNG.integers(0, 65536, (11, 7, channels), dtype=np.uint16)
    p = tmp_path / "f.png"
    _png_all_filters(p, px)
    np.testing.assert_array_equal(png16.decode(p).pixels, px)
    # Pillow reads the same file (reduced to 8 bits for colour): our high bytes must agree with it.
    pil = np.asarray(Image.open(p))
    if channels == 1:
        np.testing.assert_array_equal(pil, px[:, :, 0])
    elif channels == 3:
        np.testing.assert_array_equal(pil, (px >> 8).astype(np.uint8))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png16_interlaced(tmp_path, channels):
    # 13×11: some Adam7 passes are partial or empty.
    px = RNG.integers(0, 65536, (11, 13, channels), dtype=np.uint16)
    p = tmp_path / "adam7.png"
    p.write_bytes(_png16_bytes(13, 11, channels, _adam7_raw(px), interlace=1))
    assert png16.read_header(p).interlace == 1
    np.testing.assert_array_equal(png16.decode(p).pixels, px)
    pil = np.asarray(Image.open(p))  # Pillow agrees on the file (gray exactly, colour in its high bytes)
    if channels == 1:
        np.testing.assert_array_equal(pil, px[:, :, 0])
    elif channels == 3:
        np.testing.assert_array_equal(pil, (px >> 8).astype(np.uint8))
    img = load_image(p)  # and the runtime path keeps all 16 bits
    assert img.bit_depth == 16
    col = px[:, :, :3] if channels >= 3 else px[:, :, :1].repeat(3, axis=2)
    np.testing.assert_array_equal(np.rint(img.rgb * 257), col)
    if channels in (2, 4):
        np.testing.assert_array_equal(img.alpha, px[:, :, -1])


def test_png16_encoder_readable_by_pillow(tmp_path):
    px = RNG.integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    ex = Image.Exif()
    ex[0x010F] = "TestMaker"
    p = tmp_path / "e.png"
    with open(p, "wb") as f:
        png16.encode(png16.PNG16(px, icc_profile=icc, exif=ex.tobytes()[6:]), f)
    im = Image.open(p)
    np.testing.assert_array_equal(np.asarray(im), (px >> 8).astype(np.uint8))
    assert im.info.get("icc_profile") == icc  # our iCCP and eXIf chunks are valid for another reader
    assert im.getexif().get(0x010F) == "TestMaker"


def _damaged_png16(kind):
    px = RNG.integers(0, 65536, (8, 8, 3), dtype=np.uint16)
    raw = _filtered(px)
    good = _png16_bytes(8, 8, 3, raw)
    if kind == "crc":
        data = bytearray(good)
        data[60] ^= 0xFF  # inside IDAT
        return bytes(data)
    if kind == "truncated":
        return good[:len(good) // 2]
    if kind == "no IEND":
        return good[:-12]
    if kind == "bad zlib":
        return _png16_bytes(8, 8, 3, raw, idat=b"\x78\x9c" + bytes(range(40)))
    if kind == "rows missing":
        return _png16_bytes(8, 8, 3, raw[:len(raw) * 5 // 8])
    if kind == "bad filter type":
        return _png16_bytes(8, 8, 3, b"\x07" + raw[1:])
    if kind == "interlaced, data short":
        return _png16_bytes(8, 8, 3, _adam7_raw(px)[:-40], interlace=1)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["crc", "truncated", "no IEND", "bad zlib", "rows missing", "bad filter type",
                                  "interlaced, data short"])
def test_png16_damage_is_corrupt_image_error(tmp_path, kind):
    p = tmp_path / "bad16.png"
    p.write_bytes(_damaged_png16(kind))
    with pytest.raises(png16.PNGError):
        png16.decode(p)
    with pytest.raises(CorruptImageError, match="bad16.png: cannot decode 16-bit PNG: .+"):
        load_image(p)


# --- errors ------------------------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(ImageNotFoundError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_corrupt_files(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(_u8(32, 32, 3)).save(good)
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CorruptImageError, match="trunc.png"):
        load_image(trunc)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(UnsupportedImageError, match="junk.png"):
        load_image(junk)
    p16 = tmp_path / "bad16.png"
    _write_png16(p16, RNG.integers(0, 65536, (8, 8, 3), dtype=np.uint16))
    data = bytearray(p16.read_bytes())
    data[60] ^= 0xFF  # inside IDAT: CRC mismatch
    p16.write_bytes(bytes(data))
    with pytest.raises(CorruptImageError, match="bad16.png"):
        load_image(p16)


def test_unsupported_mode(tmp_path):
    p = tmp_path / "f.tif"
    Image.fromarray(RNG.normal(size=(4, 4)).astype(np.float32), "F").save(p)
    with pytest.raises(UnsupportedImageError, match="mode 'F'"):
        load_image(p)


def test_decompression_bomb_guard(tmp_path):
    p = tmp_path / "big.png"
    Image.new("1", (4000, 3000)).save(p)  # 12 MP, a few kB on disk
    with pytest.raises(ImageTooLargeError, match="--allow-large-images"):
        load_image(p, max_pixels=10_000_000)
    assert load_image(p, max_pixels=None).size == (4000, 3000)


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    src = tmp_path / "in.png"
    Image.fromarray(_u8(4, 4, 3)).save(src)
    out = nearest_x2(load_image(src))

    def broken(img, f, fmt):
        f.write(b"partial data")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(image_io, "_encode_to", broken)
    with pytest.raises(OutputError, match="No space left"):
        save_image(out, tmp_path / "o" / "out.png")
    assert os.listdir(tmp_path / "o") == []


def test_write_alpha_to_jpeg_is_refused(tmp_path):
    src = tmp_path / "a.png"
    Image.fromarray(_u8(4, 4, 4), "RGBA").save(src)
    with pytest.raises(OutputError, match="alpha"):
        save_image(nearest_x2(load_image(src)), tmp_path / "a.jpg")
    assert not (tmp_path / "a.jpg").exists()


def test_encode_bytes_png():
    img = image_io.ImageData(np.zeros((2, 3, 3), np.float32), None, 8, False, "PNG", "RGB")
    assert Image.open(io.BytesIO(image_io.encode_bytes(img))).size == (3, 2)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillow(orientation):
    """The numpy transforms used for 16-bit PNGs agree with Pillow's exif_transpose for all 8 orientations."""
    from PIL import ImageOps

    from engine.image_io import _ORIENT
    a = np.random.default_rng(orientation).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "PNG", exif=exif.tobytes())
    buf.seek(0)
    with Image.open(buf) as loaded:
        expected = np.asarray(ImageOps.exif_transpose(loaded))
    got = _ORIENT.get(orientation, lambda x: x)(a)
    np.testing.assert_array_equal(got, expected)

"""imageio.py: every kind of input the encoder accepts, and the ones it refuses."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import nncodec
from nncodec.errors import ImageTooLargeError, InputError
from nncodec.imageio import load_image


@pytest.fixture(scope="module")
def rgb(make_image):
    return make_image(24, 16, 3, seed=4)


@pytest.fixture(scope="module")
def grey(make_image):
    return make_image(24, 16, 1, seed=5)


# ---------------------------------------------------------------------------
# Arrays.


def test_uint8_rgb_array(rgb):
    out = load_image(rgb)
    assert out.dtype == np.uint8 and out.shape == (16, 24, 3)
    np.testing.assert_array_equal(out, rgb)


def test_uint8_grey_array(grey):
    out = load_image(grey)
    assert out.shape == (16, 24)
    np.testing.assert_array_equal(out, grey)
    np.testing.assert_array_equal(load_image(grey[:, :, None]), grey)


def test_uint8_rgba_array_drops_alpha(rgb):
    alpha = np.zeros((16, 24, 1), np.uint8)
    out = load_image(np.concatenate([rgb, alpha], axis=2))
    np.testing.assert_array_equal(out, rgb)


def test_non_contiguous_array(rgb):
    view = rgb[::2, ::-1]
    out = load_image(view)
    np.testing.assert_array_equal(out, view)
    assert out.flags.c_contiguous


def test_uint16_array_is_scaled():
    a = np.array([[0, 1, 128, 257], [32768, 65279, 65535, 1000]], np.uint16)
    out = load_image(a)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.floor(a * 255.0 / 65535.0 + 0.5).astype(np.uint8))
    assert out[1, 2] == 255 and out[0, 0] == 0 and out[0, 3] == 1


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 5), np.uint8),
                                 np.zeros((2, 4, 4, 3), np.uint8), np.zeros(7, np.uint8),
                                 np.zeros((4, 4), np.float64), np.zeros((4, 4, 3), np.int32),
                                 np.zeros((0, 5), np.uint8), np.zeros((5, 0, 3), np.uint8)])
def test_bad_arrays_raise(bad):
    with pytest.raises(InputError):
        load_image(bad)


def test_too_wide_array_raises():
    a = np.broadcast_to(np.zeros(1, np.uint8), (1, 65537))
    with pytest.raises(ImageTooLargeError):
        load_image(a)


# ---------------------------------------------------------------------------
# Files and PIL images.


def test_png_path_str_pathlib_and_bytes(tmp_path, rgb):
    p = tmp_path / "img.png"
    Image.fromarray(rgb).save(p)
    for src in (p, str(p), p.read_bytes(), bytearray(p.read_bytes())):
        np.testing.assert_array_equal(load_image(src), rgb)


def test_pil_images(rgb, grey):
    np.testing.assert_array_equal(load_image(Image.fromarray(rgb)), rgb)
    np.testing.assert_array_equal(load_image(Image.fromarray(grey)), grey)
    rgba = Image.fromarray(rgb).convert("RGBA")
    np.testing.assert_array_equal(load_image(rgba), rgb)
    one_bit = Image.fromarray(grey).convert("1")
    out = load_image(one_bit)
    assert out.shape == (16, 24) and set(np.unique(out)) <= {0, 255}


def test_16bit_png(tmp_path):
    a = (np.arange(16 * 24).reshape(16, 24) * 171 % 65536).astype(np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(a).save(p)
    assert Image.open(p).mode.startswith("I")
    out = load_image(p)
    assert out.shape == (16, 24) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.floor(a * 255.0 / 65535.0 + 0.5).astype(np.uint8))


def test_dark_16bit_png_is_not_read_as_8bit(tmp_path):
    """A 16-bit image whose samples are all small is still scaled by 255/65535."""
    a = (np.arange(16 * 24).reshape(16, 24) % 200).astype(np.uint16)
    p = tmp_path / "dark.png"
    Image.fromarray(a).save(p)
    out = load_image(p)
    assert out.max() <= 1


def test_palette_png(tmp_path, rgb):
    p = tmp_path / "pal.png"
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(p)
    assert Image.open(p).mode == "P"
    out = load_image(p)
    assert out.shape == (16, 24, 3)
    np.testing.assert_array_equal(out, np.asarray(pal.convert("RGB")))


def test_palette_png_with_transparency(tmp_path, rgb):
    p = tmp_path / "palt.png"
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    pal.save(p, transparency=0)
    out = load_image(p)
    np.testing.assert_array_equal(out, np.asarray(pal.convert("RGB")))


def test_rgba_png_keeps_colour_under_alpha(tmp_path, rgb):
    alpha = np.zeros((16, 24), np.uint8)
    alpha[:, 12:] = 255
    im = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    p = tmp_path / "rgba.png"
    im.save(p)
    np.testing.assert_array_equal(load_image(p), rgb)


def test_la_png(tmp_path, grey):
    im = Image.fromarray(np.dstack([grey, np.full_like(grey, 128)]), "LA")
    p = tmp_path / "la.png"
    im.save(p)
    out = load_image(p)
    assert out.shape == (16, 24)
    np.testing.assert_array_equal(out, grey)


def test_cmyk_jpeg(tmp_path):
    cmyk = np.zeros((16, 24, 4), np.uint8)
    cmyk[:, :12] = (0, 255, 255, 0)  # red
    cmyk[:, 12:] = (255, 0, 255, 0)  # green
    p = tmp_path / "cmyk.jpg"
    Image.fromarray(cmyk, "CMYK").save(p, quality=95)
    assert Image.open(p).mode == "CMYK"
    out = load_image(p)
    assert out.shape == (16, 24, 3)
    np.testing.assert_array_equal(out, np.asarray(Image.open(p).convert("RGB")))
    r, g, b = out[8, 3].astype(int)
    assert r > 200 and g < 60 and b < 60
    r, g, b = out[8, 20].astype(int)
    assert g > 200 and r < 60 and b < 60


def _exif_jpeg(path, arr, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, exif=exif, quality=95)


def test_jpeg_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((16, 24, 3), np.uint8)
    arr[:, :6] = (255, 255, 255)  # white band on the left
    p = tmp_path / "rot.jpg"
    _exif_jpeg(p, arr, 6)
    out = load_image(p)
    # Orientation 6: the viewer rotates 90 degrees clockwise; left edge -> top.
    assert out.shape == (24, 16, 3)
    assert out[:4].mean() > 200 and out[8:].mean() < 30


def test_encoded_size_is_rotated_size(tmp_path, rgb):
    p = tmp_path / "rot.jpg"
    _exif_jpeg(p, rgb, 6)
    data = nncodec.encode(p, budget=150, preset="fast")
    info = nncodec.info(data)
    assert (info["width"], info["height"]) == (16, 24)
    assert nncodec.decode(data).shape == (24, 16, 3)


def test_broken_exif_does_not_stop_loading(tmp_path, rgb):
    p = tmp_path / "badexif.jpg"
    exif = Image.Exif()
    exif[0x0112] = 99  # not a valid orientation
    Image.fromarray(rgb).save(p, exif=exif)
    assert load_image(p).shape == (16, 24, 3)


# ---------------------------------------------------------------------------
# Unreadable inputs.


def test_missing_file(tmp_path):
    p = tmp_path / "nope.png"
    with pytest.raises(InputError) as e:
        load_image(p)
    assert str(p) in str(e.value)
    with pytest.raises(InputError):
        nncodec.encode(str(p), budget=100)


def test_text_file(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("this is not an image\n")
    with pytest.raises(InputError) as e:
        load_image(p)
    assert str(p) in str(e.value)


def test_directory(tmp_path):
    with pytest.raises(InputError) as e:
        load_image(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_truncated_png(tmp_path, rgb):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    p = tmp_path / "cut.png"
    p.write_bytes(buf.getvalue()[:60])
    with pytest.raises(InputError) as e:
        load_image(p)
    assert str(p) in str(e.value)


def test_garbage_bytes():
    with pytest.raises(InputError, match="<bytes>"):
        load_image(b"definitely not an image")


def test_unsupported_type():
    with pytest.raises((InputError, TypeError)):
        load_image(12345)


# ---------------------------------------------------------------------------
# Sizes: empty, 1x1, and images too large to encode.


def _png_declaring(width, height):
    """A 4x4 PNG whose header (IHDR, CRC fixed) claims ``width x height``."""
    import struct
    import zlib

    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    b = bytearray(buf.getvalue())
    assert b[12:16] == b"IHDR"
    b[16:24] = struct.pack(">II", width, height)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    return bytes(b)


@pytest.mark.parametrize("size", [(20000, 20000),  # Pillow refuses to open it (bomb error)
                                  (10000, 9000),  # Pillow warns (bomb warning)
                                  (9000, 8000),  # above 2^26, below Pillow's limits
                                  (70000, 1)])  # too wide, few pixels
def test_huge_image_file_is_refused_before_decoding(tmp_path, size):
    """The header is enough: the pixel data (4x4 here) is never decoded."""
    import warnings

    p = tmp_path / "huge.png"
    p.write_bytes(_png_declaring(*size))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageTooLargeError) as e:
            load_image(p)
        with pytest.raises(ImageTooLargeError):
            load_image(p.read_bytes())
        with pytest.raises(ImageTooLargeError):
            nncodec.encode(p, budget=100)
    assert not caught, [str(w.message) for w in caught]  # the library never warns or prints
    assert "65536" in str(e.value) and str(1 << 26) in str(e.value)


def test_largest_side_is_accepted_from_the_header(tmp_path):
    """65536 pixels a side passes the size check (the truncated data then fails to read)."""
    p = tmp_path / "wide.png"
    p.write_bytes(_png_declaring(65536, 1))
    with pytest.raises(InputError) as e:
        load_image(p)
    assert not isinstance(e.value, ImageTooLargeError) and str(p) in str(e.value)


@pytest.mark.parametrize("size", [(0, 0), (5, 0), (0, 3)])
def test_empty_pil_image(size):
    im = Image.new("RGB", size)
    with pytest.raises(InputError, match="empty"):
        load_image(im)
    with pytest.raises(InputError, match="empty"):
        nncodec.encode(im.convert("L"), budget=100)


def test_one_pixel_png_file(tmp_path):
    p = tmp_path / "one.png"
    Image.new("RGB", (1, 1), (200, 30, 90)).save(p)
    np.testing.assert_array_equal(load_image(p), [[[200, 30, 90]]])
    data = nncodec.encode(p, budget=40, preset="fast")
    assert len(data) <= 40
    out = nncodec.decode(data)
    assert out.shape == (1, 1, 3)
    assert np.abs(out.astype(int) - [200, 30, 90]).max() <= 8

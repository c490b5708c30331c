"""nncodec.pillow: Image.open / draft / thumbnail / save of .nni files through Pillow."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageCms, UnidentifiedImageError

import nncodec
import nncodec.pillow
from nncodec import decoder, format as fmt


@pytest.fixture
def rgb_file(tmp_path, encoded_rgb):
    p = tmp_path / "rgb.nni"
    p.write_bytes(encoded_rgb.data)
    return p


@pytest.fixture
def render_sizes(monkeypatch):
    """Records the size of every render the decoder makes."""
    sizes = []
    real = decoder.decode

    def spy(data, size=None, **kw):
        sizes.append(tuple(size) if size is not None else None)
        return real(data, size, **kw)

    monkeypatch.setattr(decoder, "decode", spy)
    return sizes


def test_import_is_light():
    """Importing the plugin (or registering it) loads neither numba nor the codec."""
    code = ("import sys, nncodec, nncodec.pillow; nncodec.register_pillow(); "
            "print(' '.join(sorted(m for m in sys.modules "
            "if m.split('.')[0] == 'numba' or m.startswith('nncodec.'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    loaded = set(r.stdout.split())
    assert "nncodec.pillow" in loaded
    assert not loaded & {"numba", "nncodec.field", "nncodec.format", "nncodec.decoder",
                         "nncodec.encoder", "nncodec.train"}, loaded


def test_magic_matches_format():
    assert nncodec.pillow.MAGIC == fmt.MAGIC
    assert Image.registered_extensions()[".nni"] == "NNI"


def test_open_reads_header_and_load_renders(rgb_file, encoded_rgb, render_sizes):
    with Image.open(rgb_file) as im:
        assert (im.format, im.size, im.mode) == ("NNI", (64, 48), "RGB")
        assert render_sizes == []  # nothing rendered by open
        pixels = np.asarray(im)  # loads
    assert render_sizes == [(64, 48)]
    np.testing.assert_array_equal(pixels, nncodec.decode(encoded_rgb.data))


def test_open_grey_from_bytes(encoded_grey):
    with Image.open(io.BytesIO(encoded_grey.data)) as im:
        assert (im.size, im.mode) == ((48, 32), "L")
        np.testing.assert_array_equal(np.asarray(im), nncodec.decode(encoded_grey.data))


@pytest.mark.parametrize("request_size,expected", [
    ((16, 12), (16, 12)),      # same aspect ratio
    ((20, 5), (20, 15)),       # width decides: covers 20x5, keeps 4:3
    ((6, 30), (40, 30)),       # height decides
])
def test_draft_renders_at_reduced_size(rgb_file, encoded_rgb, render_sizes, request_size,
                                       expected):
    with Image.open(rgb_file) as im:
        assert im.draft("RGB", request_size) == ("RGB", (0, 0) + expected)
        assert im.size == expected
        pixels = np.asarray(im)
    assert render_sizes == [expected]
    np.testing.assert_array_equal(pixels, nncodec.decode(encoded_rgb.data, expected))


def test_draft_never_enlarges_and_not_after_load(rgb_file):
    with Image.open(rgb_file) as im:
        assert im.draft("RGB", (100, 100)) is None and im.size == (64, 48)
        im.load()
        assert im.draft("RGB", (8, 6)) is None and im.size == (64, 48)


def test_thumbnail_renders_small(rgb_file, render_sizes):
    with Image.open(rgb_file) as im:
        im.thumbnail((8, 6))
        assert im.size == (8, 6)
    # Pillow asks draft for twice the size (reducing_gap=2), then resizes.
    assert render_sizes == [(16, 12)]


def _variants(data: bytes) -> dict[str, bytes]:
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x01
    newer = bytearray(data)
    newer[4] = fmt.FORMAT_VERSION + 1
    return {"corrupted": bytes(flipped), "truncated": data[:12], "magic only": fmt.MAGIC,
            "newer version": bytes(newer), "not nni": b"plain bytes, no image format " + data[6:]}


@pytest.mark.parametrize("case", ["corrupted", "truncated", "magic only", "newer version",
                                  "not nni"])
def test_invalid_files_are_unidentified(tmp_path, encoded_rgb, case):
    p = tmp_path / "bad.nni"
    p.write_bytes(_variants(encoded_rgb.data)[case])
    with pytest.raises(UnidentifiedImageError):
        Image.open(p)


def test_save_matches_encode(tmp_path, encoded_grey):
    out = tmp_path / "g.nni"
    Image.fromarray(encoded_grey.image).save(out, budget=encoded_grey.budget, preset="fast")
    assert out.read_bytes() == encoded_grey.data


def test_save_errors_leave_no_file(tmp_path, grey_image):
    out = tmp_path / "x.nni"
    with pytest.raises(ValueError, match="budget"):
        Image.fromarray(grey_image).save(out)
    assert not out.exists()
    with pytest.raises(nncodec.BudgetError):
        Image.fromarray(grey_image).save(out, budget="10")
    assert not out.exists()


def test_save_and_open_metadata(tmp_path, make_image):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "nncodec test"
    src = Image.fromarray(make_image(24, 16, 3, seed=9))
    out = tmp_path / "m.nni"
    src.save(out, budget="1k", preset="fast", icc_profile=icc, exif=exif)
    data = out.read_bytes()
    assert len(data) <= 1024
    assert nncodec.info(data)["metadata_keys"] == ["exif", "icc"]
    with Image.open(out) as im:
        assert im.info["icc_profile"] == icc
        assert im.getexif()[0x010F] == "nncodec test"
        # Pillow carries the profile on to other formats.
        buf = io.BytesIO()
        im.save(buf, format="PNG")
    assert Image.open(buf).info["icc_profile"] == icc

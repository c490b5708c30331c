"""metadata.py: ICC / Exif in the metadata section, counted in the budget, written back."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
import zstandard
from PIL import Image, ImageCms

import nncodec
from nncodec import format as fmt
from nncodec import metadata
from nncodec.cli import main
from nncodec.encoder import encode_stats
from nncodec.errors import BudgetError, FormatError, InputError

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
LAB = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()


def exif_with(orientation: int | None = None, make: str = "nncodec test") -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = make
    if orientation is not None:
        exif[0x0112] = orientation
    return exif


def zstd(raw: bytes, **kw) -> bytes:
    return zstandard.ZstdCompressor(**kw).compress(raw)


# ---------------------------------------------------------------------------
# The section's content: zstandard frame of a msgpack map.


def test_pack_layout_and_roundtrip():
    exif = exif_with().tobytes()
    content = metadata.pack({"icc": SRGB, "exif": exif})
    raw = zstandard.ZstdDecompressor().decompress(content)
    # Keys sorted, values bin, Exif without its APP1 prefix.
    assert list(msgpack.unpackb(raw, raw=True)) == [b"exif", b"icc"]
    assert raw[:6] == b"\x82\xa4exif" and raw[6] == 0xC4  # fixmap 2, fixstr 4, bin 8
    meta = metadata.unpack(content)
    assert meta == {"exif": exif[len(metadata.EXIF_PREFIX):], "icc": SRGB}
    assert meta["exif"][:4] in (b"II*\x00", b"MM\x00*")
    assert zstandard.get_frame_parameters(content).content_size == len(raw)
    assert len(content) < len(SRGB)  # compressed


def test_pack_nothing_and_bad_input():
    assert metadata.pack(None) == metadata.pack({}) == metadata.pack({"icc": b""}) == b""
    assert metadata.unpack(b"") == {}
    with pytest.raises(InputError, match="xmp"):
        metadata.pack({"xmp": b"<x/>"})
    with pytest.raises(InputError, match="bytes"):
        metadata.pack({"icc": "text"})


@pytest.mark.parametrize("content", [
    b"not zstd at all",
    zstd(msgpack.packb({"icc": b"x"})) + b"extra",                 # bytes after the frame
    zstd(msgpack.packb([1, 2])),                                   # not a map
    zstd(msgpack.packb({1: b"x"})),                                # non-string key
    zstd(msgpack.packb({"icc": b"x"}) + b"\x01"),                  # bytes after the map
    zstd(b"\x00" * (metadata.MAX_DECOMPRESSED + 1), level=1),      # too large
    zstd(b"\x00" * (metadata.MAX_DECOMPRESSED + 1), level=1, write_content_size=False),
])
def test_unpack_rejects(content):
    with pytest.raises(FormatError, match="metadata"):
        metadata.unpack(content)


def test_unpack_keeps_unknown_keys_and_accepts_checksums():
    content = zstd(msgpack.packb({"later": 7, "icc": b"p"}, use_bin_type=True),
                   write_checksum=True, write_content_size=False)
    assert metadata.unpack(content) == {"later": 7, "icc": b"p"}


# ---------------------------------------------------------------------------
# Metadata of input images.


def test_from_image_resets_orientation_and_keeps_profile(tmp_path, make_image):
    p = tmp_path / "in.jpg"
    Image.fromarray(make_image(16, 8, 3)).save(p, icc_profile=SRGB, exif=exif_with(6))
    meta = nncodec.image_metadata(p)
    assert meta["icc"] == SRGB
    exif = Image.Exif()
    exif.load(meta["exif"])
    assert exif[0x0112] == 1 and exif[0x010F] == "nncodec test"
    assert nncodec.image_metadata(make_image(16, 8, 3)) == {}


def test_from_image_drops_profile_of_another_colour_space(tmp_path, make_image):
    rgb = Image.fromarray(make_image(16, 8, 3))
    rgb.info["icc_profile"] = LAB
    assert "icc" not in nncodec.image_metadata(rgb)
    grey = Image.fromarray(make_image(16, 8, 1))
    grey.info["icc_profile"] = SRGB
    assert "icc" not in nncodec.image_metadata(grey)
    rgb.info["icc_profile"] = SRGB
    assert nncodec.image_metadata(rgb)["icc"] == SRGB


# ---------------------------------------------------------------------------
# Metadata in the budget.


def test_metadata_count_in_budget(grey_image):
    meta = {"icc": SRGB}
    size = len(metadata.pack(meta))
    data = nncodec.encode(grey_image, budget=size + 250, preset="fast", metadata=meta)
    assert len(data) <= size + 250
    c = fmt.unpack(data)
    assert len(c.metadata) == size and c.fields["has_metadata"] == 1
    assert nncodec.read_metadata(data) == {"icc": SRGB}
    info = nncodec.info(data)
    assert info["metadata_keys"] == ["icc"] and info["metadata_bytes"] == size
    assert nncodec.decode(data).shape == grey_image.shape


def test_model_is_sized_by_what_metadata_leave(grey_image):
    packed = metadata.pack({"icc": SRGB})
    with_meta = encode_stats(grey_image, budget=len(packed) + 250, metadata=packed, steps=50)[1]
    rest = encode_stats(grey_image, budget=250, steps=50)[1]
    whole = encode_stats(grey_image, budget=len(packed) + 250, steps=50)[1]
    assert with_meta.spec == rest.spec
    assert whole.spec != rest.spec  # the budgets are far enough apart to matter


def test_metadata_larger_than_budget_is_a_clear_error(grey_image):
    size = len(metadata.pack({"icc": SRGB}))
    with pytest.raises(BudgetError, match=f"metadata alone take {size} bytes") as e:
        nncodec.encode(grey_image, budget=size - 10, preset="fast", metadata={"icc": SRGB})
    assert e.value.minimum > size
    with pytest.raises(BudgetError, match=f"{size} of them metadata"):
        nncodec.encode(grey_image, budget=size + 5, preset="fast", metadata={"icc": SRGB})


def test_info_without_and_with_unreadable_metadata(encoded_grey):
    assert nncodec.info(encoded_grey.data)["metadata_keys"] == []
    c = fmt.unpack(encoded_grey.data)
    bad = fmt.pack(c.spec, c.weight_steps, c.bias_steps, c.payload, b"junk", c.rice)
    info = nncodec.info(bad)
    assert info["metadata_keys"] is None and "zstandard" in info["metadata_error"]
    # Decoding ignores the metadata.
    np.testing.assert_array_equal(nncodec.decode(bad), nncodec.decode(encoded_grey.data))
    with pytest.raises(FormatError):
        nncodec.read_metadata(bad)


# ---------------------------------------------------------------------------
# Command line: --keep-metadata, decode writes them back, info lists them.


@pytest.fixture(scope="module")
def kept(tmp_path_factory, make_image):
    """A JPEG with an ICC profile and rotated Exif, encoded with --keep-metadata."""
    d = tmp_path_factory.mktemp("meta")
    src = d / "in.jpg"
    Image.fromarray(make_image(24, 16, 3, seed=5)).save(src, quality=95, icc_profile=SRGB,
                                                         exif=exif_with(6))
    out = d / "in.nni"
    assert main(["encode", str(src), "-o", str(out), "-b", "1k", "--preset", "fast",
                 "--keep-metadata", "-q"]) == 0
    return out


def test_cli_info_lists_metadata(kept, capsys):
    assert main(["info", str(kept)]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert lines["metadata_keys"] == "exif icc"
    # Orientation applied to the pixels: 24x16 rotated by 90 degrees.
    assert (lines["width"], lines["height"]) == ("16", "24")


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp"])
def test_cli_decode_writes_metadata_back(kept, tmp_path, ext):
    out = tmp_path / ("out" + ext)
    assert main(["decode", str(kept), "-o", str(out), "-q"]) == 0
    with Image.open(out) as im:
        assert im.info.get("icc_profile") == SRGB
        exif = im.getexif()
        assert exif[0x010F] == "nncodec test" and exif[0x0112] == 1


def test_cli_decode_without_metadata_writes_none(encoded_rgb, tmp_path):
    src = tmp_path / "plain.nni"
    src.write_bytes(encoded_rgb.data)
    out = tmp_path / "plain.png"
    assert main(["decode", str(src), "-o", str(out), "-q"]) == 0
    with Image.open(out) as im:
        assert "icc_profile" not in im.info and len(im.getexif()) == 0


def test_cli_metadata_over_budget(tmp_path, make_image, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(make_image(24, 16, 3)).save(src, icc_profile=SRGB)
    out = tmp_path / "o.nni"
    assert main(["encode", str(src), "-o", str(out), "-b", "100", "--keep-metadata"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("nncodec: error:") and "metadata" in err and "\n" not in err
    assert not out.exists()

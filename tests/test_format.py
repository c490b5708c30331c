"""format.py: the .nni container: packing, parsing, and rejection of bad files."""

from __future__ import annotations

import re
import zlib

import numpy as np
import pytest

import nncodec
from nncodec import format as fmt
from nncodec.errors import (ChecksumError, FormatError, NniError, TruncatedError, VersionError)
from nncodec.field import ModelSpec


def spec(**kw):
    base = dict(width=64, height=48, channels=3, n_levels=3, first_level=0, n_fourier=0,
                n_hidden=2, hidden_width=16)
    base.update(kw)
    return ModelSpec(**base)


def with_crc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


def handmade(fields: list[tuple[int, int]], rest: bytes = b"",
             version: int = fmt.FORMAT_VERSION) -> bytes:
    """A file written from the documented layout: magic, version, MSB-first bit fields."""
    acc, nbits = 0, 0
    for bits, value in fields:
        acc = (acc << bits) | value
        nbits += bits
    pad = -nbits % 8
    head = (acc << pad).to_bytes((nbits + pad) // 8, "big")
    return with_crc(b"\x89NNI" + bytes([version]) + head + rest)


def header_values(s: ModelSpec, has_metadata=0, steps=None, rice=None,
                  version=fmt.FORMAT_VERSION):
    """(bits, value) of every header field in documented order (format
    ``version``; ``rice`` holds the (weight, bias) Rice parameters per layer)."""
    out = [(16, s.width - 1), (16, s.height - 1), (1, int(s.channels == 3)), (2, s.kernel),
           (2, s.activation), (2, s.stencil), (3, s.n_levels), (3, s.first_level),
           (3, s.n_chroma), (4, s.n_fourier), (2, s.n_hidden), (6, s.hidden_width - 1),
           (1, has_metadata)]
    n = s.n_hidden + 1
    for (w, b), (wr, br) in zip(steps or [(0, 0)] * n, rice or [(0, 0)] * n):
        out += [(6, w), (6, b)]
        if version >= 3:
            out += [(3, wr), (3, br)]
    return out


# ---------------------------------------------------------------------------
# Round trips.


ROUNDTRIP_SPECS = [
    spec(),
    spec(width=1, height=1, channels=1, n_levels=0, n_hidden=0, hidden_width=1),
    spec(width=65536, height=1024),  # largest width field
    spec(width=1024, height=65536),
    spec(n_levels=7, first_level=1),
    spec(n_levels=1, first_level=7),
    spec(n_fourier=15, n_levels=0),
    spec(n_hidden=3, hidden_width=64),
    spec(n_hidden=0, hidden_width=1, channels=1),
    spec(stencil=1),
    spec(stencil=1, n_levels=7, first_level=1, n_fourier=15, n_hidden=3, hidden_width=64),
    spec(stencil=1, n_hidden=1, channels=1),
    spec(stencil=2, n_chroma=2),
    spec(stencil=2, n_levels=0),
    spec(n_chroma=3),
    spec(n_levels=7, first_level=1, n_chroma=7, stencil=1),
    spec(n_levels=2, n_chroma=1, channels=1),
]


@pytest.mark.parametrize("k", range(len(ROUNDTRIP_SPECS)))
def test_pack_unpack_roundtrip(k):
    s = ROUNDTRIP_SPECS[k]
    n = s.n_hidden + 1
    ws = [(7 * i + k) % 64 for i in range(n)]
    bs = [63 - (5 * i + k) % 64 for i in range(n)]
    rice = [(3 * i + k) % 8 for i in range(2 * n)]
    payload = bytes(range(k, k + 37))
    data = fmt.pack(s, ws, bs, payload, rice=rice)
    c = fmt.unpack(data)
    assert c.spec == s
    assert c.weight_steps == ws and c.bias_steps == bs and c.rice == rice
    assert c.payload == payload and c.metadata == b""
    f = c.fields
    assert f["width_minus_1"] == s.width - 1 and f["height_minus_1"] == s.height - 1
    assert f["colour"] == (1 if s.channels == 3 else 0)
    assert f["kernel"] == s.kernel and f["activation"] == s.activation
    assert f["stencil"] == s.stencil
    assert f["n_levels"] == s.n_levels and f["first_level"] == s.first_level
    assert f["n_chroma"] == s.n_chroma
    assert f["n_fourier"] == s.n_fourier and f["n_hidden"] == s.n_hidden
    assert f["hidden_width_minus_1"] == s.hidden_width - 1
    assert f["has_metadata"] == 0 and f["payload_bytes"] == len(payload)
    for i in range(n):
        assert f[f"weight_step[{i}]"] == ws[i] and f[f"bias_step[{i}]"] == bs[i]
        assert f[f"weight_rice[{i}]"] == rice[2 * i] and f[f"bias_rice[{i}]"] == rice[2 * i + 1]
    assert len(data) == fmt.header_bytes(n) + len(payload) + fmt.CRC_BYTES


@pytest.mark.parametrize("k", range(len(ROUNDTRIP_SPECS)))
def test_pack_matches_documented_layout(k):
    s = ROUNDTRIP_SPECS[k]
    n = s.n_hidden + 1
    steps = [(i + 1, 60 - i) for i in range(n)]
    rice = [(i % 8, 7 - i % 8) for i in range(n)]
    payload = b"\x01\x02\xfe"
    got = fmt.pack(s, [w for w, _ in steps], [b for _, b in steps], payload,
                   rice=[r for pair in rice for r in pair])
    assert got == handmade(header_values(s, 0, steps, rice), payload)


@pytest.mark.parametrize("version", [1, 2])
def test_earlier_versions_parse_without_rice_fields(version):
    """Headers of versions 1 and 2 have no Rice fields: the layer fields are
    the two steps, and the parsed Rice parameters are zeros."""
    s = spec()
    steps = [(5, 9), (6, 10), (7, 11)]
    c = fmt.unpack(handmade(header_values(s, 0, steps, version=version), b"\x07", version))
    assert c.version == version and c.spec == s and c.payload == b"\x07"
    assert c.weight_steps == [5, 6, 7] and c.bias_steps == [9, 10, 11]
    assert c.rice == [0] * 6 and "weight_rice[0]" not in c.fields
    assert fmt.header_bytes(3, version) == 5 + (61 + 12 * 3 + 7) // 8


@pytest.mark.parametrize("size", [1, 127, 128, 300, 20000])
def test_metadata_roundtrip(size):
    meta = bytes((i * 7 + 3) % 256 for i in range(size))
    data = fmt.pack(spec(), [1, 2, 3], [4, 5, 6], b"payload!", meta)
    c = fmt.unpack(data)
    assert c.metadata == meta and c.payload == b"payload!"
    assert c.fields["has_metadata"] == 1 and c.fields["metadata_bytes"] == size
    # LEB128 length right after the header.
    n = fmt.header_bytes(3)
    length, shift, pos = 0, 0, n
    while True:
        length |= (data[pos] & 0x7F) << shift
        shift += 7
        pos += 1
        if not data[pos - 1] & 0x80:
            break
    assert length == size and data[pos: pos + size] == meta


def test_header_bytes():
    for n in range(1, 5):
        bits = 16 + 16 + 1 + 2 + 2 + 2 + 3 + 3 + 3 + 4 + 2 + 6 + 1 + (6 + 6 + 3 + 3) * n
        assert bits == 61 + 18 * n
        assert fmt.header_bits(n) == bits
        assert fmt.header_bytes(n) == 5 + (bits + 7) // 8
        assert fmt.header_bits(n, 2) == 61 + 12 * n
    assert [fmt.header_bytes(n) - 5 for n in range(1, 5)] == [10, 13, 15, 17]
    assert [fmt.header_bytes(n, 2) - 5 for n in range(1, 5)] == [10, 11, 13, 14]
    assert fmt.STEP_TABLE[0] == 1.0 and fmt.STEP_TABLE[4] == 0.5
    assert all(a > b for a, b in zip(fmt.STEP_TABLE, fmt.STEP_TABLE[1:]))


# ---------------------------------------------------------------------------
# Writing invalid headers.


OUT_OF_RANGE = [
    (dict(width=0), None, "width_minus_1"),
    (dict(width=65537), None, "width_minus_1"),
    (dict(height=0), None, "height_minus_1"),
    (dict(height=70000), None, "height_minus_1"),
    (dict(kernel=1), None, "kernel"),
    (dict(activation=2), None, "activation"),
    (dict(stencil=4), None, "stencil"),
    (dict(n_levels=8), None, "n_levels"),
    (dict(n_levels=-1), None, "n_levels"),
    (dict(first_level=8, n_levels=0), None, "first_level"),
    (dict(n_chroma=8), None, "n_chroma"),
    (dict(n_chroma=4), None, "n_chroma"),  # more than n_levels = 3
    (dict(n_fourier=16), None, "n_fourier"),
    (dict(n_hidden=4), None, "n_hidden"),
    (dict(hidden_width=0), None, "hidden_width_minus_1"),
    (dict(hidden_width=65), None, "hidden_width_minus_1"),
    (dict(), ([64, 0, 0], [0, 0, 0]), "weight_step[0]"),
    (dict(), ([0, 0, 0], [0, 0, -1]), "bias_step[2]"),
    (dict(), ([0, 0, 0], [0, 99, 0]), "bias_step[1]"),
]


@pytest.mark.parametrize("kw,steps,name", OUT_OF_RANGE)
def test_pack_out_of_range_field_raises(kw, steps, name):
    s = spec(**kw)
    n = s.n_hidden + 1
    ws, bs = steps or ([0] * n, [0] * n)
    with pytest.raises(FormatError, match=re.escape(name)):
        fmt.pack(s, ws, bs, b"")


def test_pack_wrong_number_of_steps():
    with pytest.raises(ValueError):
        fmt.pack(spec(), [0, 0], [0, 0, 0], b"")


@pytest.mark.parametrize("kw", [dict(first_level=5, n_levels=4),
                                dict(width=65536, height=65536),
                                dict(channels=2),
                                dict(n_levels=2, n_chroma=3)],
                         ids=["levels_past_8", "too_many_pixels", "two_channels",
                              "chroma_past_levels"])
def test_pack_refuses_what_unpack_cannot_represent(kw):
    """pack must not write a file that unpack rejects or reads back differently."""
    s = spec(**kw)
    try:
        data = fmt.pack(s, [0, 0, 0], [0, 0, 0], b"")
    except FormatError:
        return
    c = fmt.unpack(data)  # raises FormatError for the first two cases and the last
    assert c.spec == s


# ---------------------------------------------------------------------------
# Reading invalid files.


def test_unpack_rejects_constraint_violations():
    bad_levels = handmade(header_values(spec(first_level=5, n_levels=4)))
    with pytest.raises(FormatError, match="first_level"):
        fmt.unpack(bad_levels)
    chroma = handmade(header_values(spec(n_levels=2, n_chroma=3)))
    with pytest.raises(FormatError, match="n_chroma"):
        fmt.unpack(chroma)
    fmt.unpack(handmade(header_values(spec(n_levels=3, n_chroma=3))))  # n_chroma == n_levels
    huge = handmade(header_values(spec(width=65536, height=65536)))
    with pytest.raises(FormatError, match="65536x65536"):
        fmt.unpack(huge)
    kernel = handmade(header_values(spec(kernel=2)))
    with pytest.raises(FormatError, match="kernel"):
        fmt.unpack(kernel)
    pad = handmade(header_values(spec(), steps=[(0, 0)] * 3) + [(1, 1)])  # nonzero padding
    with pytest.raises(FormatError, match="padding"):
        fmt.unpack(pad)


def test_unpack_metadata_errors():
    fields = header_values(spec(), has_metadata=1)
    with pytest.raises(TruncatedError):
        fmt.unpack(handmade(fields, b"\x0a" + b"abc"))  # declares 10 bytes, 3 present
    with pytest.raises(TruncatedError):
        fmt.unpack(handmade(fields, b""))  # no length byte at all
    with pytest.raises(FormatError):
        fmt.unpack(handmade(fields, b"\xff" * 8 + b"\x01"))  # overlong LEB128


def test_bad_magic():
    good = fmt.pack(spec(), [0, 0, 0], [0, 0, 0], b"xyz")
    for bad in (b"\x89PNG\r\n\x1a\n" + good[8:], b"NNI" + good, b"", b"\x89NN", b"hello"):
        with pytest.raises(FormatError, match="magic"):
            fmt.unpack(bad)
        with pytest.raises(FormatError):
            nncodec.info(bad)
        assert not nncodec.check(bad)
    assert nncodec.check(good)
    with pytest.raises(FormatError):
        fmt.unpack("not bytes")


def test_accepts_bytearray_and_memoryview():
    good = fmt.pack(spec(), [1, 2, 3], [4, 5, 6], b"xyz")
    for d in (bytearray(good), memoryview(good)):
        c = fmt.unpack(d)
        assert c.payload == b"xyz" and c.weight_steps == [1, 2, 3]


@pytest.mark.parametrize("recompute_crc", [False, True])
def test_next_version_raises_version_error(encoded_rgb, recompute_crc):
    data = bytearray(encoded_rgb.data)
    data[4] = fmt.FORMAT_VERSION + 1
    if recompute_crc:
        data = bytearray(with_crc(bytes(data[:-4])))
    for fn in (fmt.unpack, nncodec.info, nncodec.decode):
        with pytest.raises(VersionError) as e:
            fn(bytes(data))
        assert f"version {fmt.FORMAT_VERSION + 1}" in str(e.value)


def test_version_0_raises_version_error(encoded_rgb):
    data = bytearray(encoded_rgb.data)
    data[4] = 0
    with pytest.raises(VersionError) as e:
        nncodec.decode(with_crc(bytes(data[:-4])))
    assert "version 0" in str(e.value) and "reads versions 1 to 5" in str(e.value)


@pytest.mark.parametrize("stencil, since", [(2, 4), (3, 5)])
def test_later_stencils_need_their_version(stencil, since):
    """Stencil 2 is defined from version 4, stencil 3 from version 5: an
    earlier file with one is invalid, and the message names the field and
    both versions."""
    s = spec(stencil=stencil)
    for version in range(1, since):
        data = handmade(header_values(s, version=version), version=version)
        with pytest.raises(FormatError, match=f"stencil = {stencil} needs format version "
                                              f"{since}; the file is version {version}"):
            fmt.unpack(data)
        for st in (0, 1):  # the first stencils stay valid in every version
            c = fmt.unpack(handmade(header_values(spec(stencil=st), version=version),
                                    version=version))
            assert c.spec.stencil == st and c.version == version
    for version in range(since, fmt.FORMAT_VERSION + 1):
        c = fmt.unpack(handmade(header_values(s, version=version), version=version))
        assert c.spec.stencil == stencil and c.version == version


def test_every_readable_version_is_listed():
    assert fmt.READ_VERSIONS == tuple(range(1, fmt.FORMAT_VERSION + 1))
    from nncodec import entropy

    assert sorted(entropy.ADAPTATION) == list(fmt.READ_VERSIONS)


@pytest.mark.parametrize("version", [6, 7, 255])
def test_future_version_names_needed_and_supported_versions(encoded_rgb, tmp_path, capsys,
                                                            version):
    """A file from a later format: the message says what it needs and what this build reads."""
    from nncodec.cli import main

    data = bytearray(encoded_rgb.data)
    data[4] = version
    data = with_crc(bytes(data[:-4]))
    for fn in (fmt.unpack, nncodec.info, nncodec.decode):
        with pytest.raises(VersionError) as e:
            fn(data)
        msg = str(e.value)
        assert f"format version {version}" in msg
        assert "reads versions 1 to 5" in msg
    src = tmp_path / "future.nni"
    src.write_bytes(data)
    for args in (["info", str(src)], ["decode", str(src), "-o", str(tmp_path / "o.png")]):
        assert main(args) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines == [f"nncodec: error: {msg}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["future.nni"]


def test_every_prefix_raises(encoded_rgb):
    data = encoded_rgb.data
    assert len(data) > 30
    for n in range(len(data)):
        for fn in (nncodec.info, nncodec.decode):
            with pytest.raises(NniError):
                fn(data[:n])
    # The truncated-and-checked ones are a FormatError subclass too.
    with pytest.raises((ChecksumError, TruncatedError)):
        fmt.unpack(data[:-1])


def test_every_single_bit_flip_raises(encoded_rgb):
    data = encoded_rgb.data
    kinds = set()
    for pos in range(len(data) * 8):
        b = bytearray(data)
        b[pos // 8] ^= 1 << (pos % 8)
        b = bytes(b)
        with pytest.raises(NniError) as e:
            nncodec.info(b)
        kinds.add(type(e.value))
        with pytest.raises(NniError):
            nncodec.decode(b)
    assert ChecksumError in kinds and VersionError in kinds


def test_trailing_garbage_raises(encoded_rgb):
    with pytest.raises(ChecksumError):
        nncodec.decode(encoded_rgb.data + b"\x00")


def test_info_of_encoded_file(encoded_rgb):
    d = nncodec.info(encoded_rgb.data)
    s = encoded_rgb.stats.spec
    assert d["width"] == 64 and d["height"] == 48 and d["channels"] == 3
    assert d["format_version"] == fmt.FORMAT_VERSION
    assert d["file_bytes"] == len(encoded_rgb.data)
    assert d["n_levels"] == s.n_levels and d["parameters"] == s.n_params
    assert d["latents"] == s.n_latents
    assert d["bpp"] == pytest.approx(len(encoded_rgb.data) * 8 / (64 * 48), abs=1e-4)
    c = fmt.unpack(encoded_rgb.data)
    assert d["payload_bytes"] == len(c.payload)
    assert len(encoded_rgb.data) == fmt.header_bytes(s.n_hidden + 1) + len(c.payload) + 4
    assert d["grids"] == " ".join(f"{w}x{h}" for h, w in s.level_dims())


def test_decoder_rejects_impossible_payload():
    """A file with a valid header and CRC whose payload holds an over-long escape."""
    from nncodec.entropy import EG_MAX_PREFIX, encode_payload

    s = spec(width=4, height=4, n_levels=1, n_hidden=0, hidden_width=1)
    wq = np.zeros(s.n_params, np.int64)
    wq[0] = 1 << (EG_MAX_PREFIX + 4)
    payload = encode_payload(wq, s.group_sizes(), np.zeros(s.n_latents, np.int64),
                             s.level_dims())
    data = fmt.pack(s, [0], [0], payload)
    with pytest.raises(FormatError):
        nncodec.decode(data)

"""The normative spec (spec/*.md) and the code must agree.

These tests parse the markdown, so they fail when either side changes alone:
edit ``nncodec.format`` and ``spec/nni-format.md`` together.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from nncodec import format as fmt

SPEC = Path(__file__).resolve().parents[1] / "spec"
FORMAT_MD = SPEC / "nni-format.md"
DECODING_MD = SPEC / "decoding.md"

FIELD_COLUMNS = ["field", "bits", "range", "meaning"]


# ---------------------------------------------------------------------------
# Markdown helpers.


def _cells(line: str) -> list[str]:
    line = line.strip()
    assert line.startswith("|") and line.endswith("|"), line
    return [c.strip() for c in line[1:-1].split("|")]


def _tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every markdown table of ``text`` as ``(header cells, body rows)``."""
    out = []
    lines = text.splitlines()
    n = 0
    while n < len(lines):
        if lines[n].lstrip().startswith("|") and n + 1 < len(lines) and re.fullmatch(
                r"\s*\|(\s*:?-+:?\s*\|)+\s*", lines[n + 1]):
            head = _cells(lines[n])
            rows = []
            n += 2
            while n < len(lines) and lines[n].lstrip().startswith("|"):
                rows.append(_cells(lines[n]))
                n += 1
            out.append((head, rows))
        else:
            n += 1
    return out


def _tables_with(text: str, columns: list[str]) -> list[list[list[str]]]:
    return [rows for head, rows in _tables(text) if [h.lower() for h in head] == columns]


def _code(cell: str) -> str:
    return cell.strip().strip("`").strip()


def _fenced(text: str, info: str) -> list[str]:
    """Bodies of the fenced code blocks whose info string is ``info``."""
    return re.findall(rf"^```{re.escape(info)}[ \t]*\n(.*?)^```", text, re.M | re.S)


def parse_field_tables(text: str) -> list[list[tuple[str, int, int, int]]]:
    """``(name, bits, lo, hi)`` rows of each ``| field | bits | range | meaning |`` table."""
    tables = []
    for rows in _tables_with(text, FIELD_COLUMNS):
        parsed = []
        for row in rows:
            assert len(row) == 4, f"field table row needs 4 cells: {row}"
            name, bits, rng, meaning = row
            m = re.fullmatch(r"(-?\d+)\s*\.\.\s*(-?\d+)", _code(rng))
            assert m, f"range must read lo..hi, got {rng!r}"
            assert meaning, f"field {name} has no meaning"
            parsed.append((_code(name), int(_code(bits)), int(m.group(1)), int(m.group(2))))
        tables.append(parsed)
    return tables


def _as_rows(fields) -> list[tuple[str, int, int, int]]:
    return [(f.name, f.bits, f.lo, f.hi) for f in fields]


@pytest.fixture(scope="module")
def format_md() -> str:
    return FORMAT_MD.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def constants(format_md) -> dict[str, str]:
    tables = _tables_with(format_md, ["constant", "value", "meaning"])
    assert len(tables) == 1, "spec/nni-format.md needs one | constant | value | meaning | table"
    return {_code(r[0]): _code(r[1]) for r in tables[0]}


# ---------------------------------------------------------------------------
# Field tables and constants.


def test_exactly_two_field_tables(format_md):
    assert len(parse_field_tables(format_md)) == 2


def test_header_table_matches_code(format_md):
    assert parse_field_tables(format_md)[0] == _as_rows(fmt.HEADER_FIELDS)


def test_layer_table_matches_code(format_md):
    assert parse_field_tables(format_md)[1] == _as_rows(fmt.LAYER_FIELDS)


def test_table_check_detects_a_change(format_md):
    # Guard against a parser that silently matches anything.
    changed = format_md.replace("| `n_levels` | 3 | 0..7 |", "| `n_levels` | 4 | 0..15 |")
    assert changed != format_md
    assert parse_field_tables(changed)[0] != _as_rows(fmt.HEADER_FIELDS)
    dropped = format_md.replace("| `bias_step` | 6 | 0..63 |", "| `bias_stepp` | 6 | 0..63 |")
    assert parse_field_tables(dropped)[1] != _as_rows(fmt.LAYER_FIELDS)


def test_magic_matches_code(constants, format_md):
    magic = bytes(int(b, 16) for b in constants["MAGIC"].split())
    assert magic == fmt.MAGIC
    layout = _tables_with(format_md, ["offset", "size", "content"])[0]
    assert layout[0][0] == "0" and constants["MAGIC"] in layout[0][2]


def test_format_version_matches_code(constants, format_md):
    assert int(constants["FORMAT_VERSION"]) == fmt.FORMAT_VERSION
    assert re.search(r"^# The `\.nni` container, format version (\d+)$", format_md, re.M).group(1) \
        == str(fmt.FORMAT_VERSION)
    assert f"format version, `{fmt.FORMAT_VERSION:02x}`" in format_md


def test_other_constants_match_code(constants):
    assert int(constants["CRC_BYTES"]) == fmt.CRC_BYTES
    assert int(constants["MAX_CODED_PIXELS"]) == fmt.MAX_CODED_PIXELS


def test_header_size_formula(format_md):
    n_header = sum(f.bits for f in fmt.HEADER_FIELDS)
    n_layer = sum(f.bits for f in fmt.LAYER_FIELDS)
    assert f"`nbits` = {n_header} + {n_layer} * (`n_hidden` + 1)" in format_md
    for n_hidden, hb in zip(range(4), re.search(
            r"`hb` = (\d+), (\d+), (\d+), (\d+) bytes", format_md).groups()):
        assert fmt.header_bytes(n_hidden + 1) == 5 + int(hb)


def test_step_table(format_md):
    assert len(fmt.STEP_TABLE) == 64
    rows = _tables_with(format_md, ["`i mod 4`", "`s` (float32 bits)", "value"])
    assert len(rows) == 1
    for r, (i, bits, _) in enumerate(rows[0]):
        assert int(_code(i)) == r
        assert struct.pack(">f", np.float32(fmt.STEP_TABLE[r])).hex().upper() == _code(bits)
    for i in range(64):
        assert np.float32(fmt.STEP_TABLE[i]) == np.float32(fmt.STEP_TABLE[i % 4]) * np.float32(
            2.0 ** -(i // 4))


# ---------------------------------------------------------------------------
# The worked example.


@pytest.fixture(scope="module")
def example(format_md) -> bytes:
    blocks = _fenced(format_md, "hexdump")
    assert len(blocks) == 1
    data = bytearray()
    for line in blocks[0].splitlines():
        if line.strip():
            off, *hexbytes = line.split()
            assert int(off, 16) == len(data), f"bad offset in hex dump line {line!r}"
            data += bytes(int(b, 16) for b in hexbytes)
    return bytes(data)


def test_example_container(example, format_md):
    assert example[:4] == fmt.MAGIC and example[4] == fmt.FORMAT_VERSION
    assert zlib.crc32(example[:-4]) == int.from_bytes(example[-4:], "little")
    assert f"CRC-32 = `0x{zlib.crc32(example[:-4]):08X}`" in format_md
    c = fmt.unpack(example)
    rows = _tables_with(format_md, ["bit offset", "field", "raw bits", "value"])
    assert len(rows) == 1
    bits = "".join(f"{b:08b}" for b in example[5:])
    expected_offset = 0
    names = []
    for off, name, raw, value in rows[0]:
        name, raw = _code(name), _code(raw)
        assert int(off) == expected_offset, name
        assert bits[expected_offset: expected_offset + len(raw)] == raw, name
        expected_offset += len(raw)
        if name == "padding":
            assert set(raw) <= {"0"} and expected_offset % 8 == 0
            continue
        names.append(name)
        assert int(raw, 2) == int(value) == c.fields[name], name
    n_layers = c.spec.n_hidden + 1
    assert names == [f.name for f in fmt.HEADER_FIELDS] + [
        f"{f.name}[{k}]" for k in range(n_layers) for f in fmt.LAYER_FIELDS]
    assert expected_offset == (fmt.header_bytes(n_layers) - 5) * 8
    assert f"payload, {len(c.payload)} bytes" in format_md


def test_example_integers(example, format_md):
    from nncodec.entropy import decode_payload

    c = fmt.unpack(example)
    spec = c.spec
    wq, lat, err, consumed = decode_payload(c.payload, spec.group_sizes(), spec.level_dims())
    assert err == 0
    values = {}
    for block in _fenced(format_md, "values"):
        for line in block.splitlines():
            if ":" in line:
                key, rest = line.split(":", 1)
                values[key.strip()] = rest.strip()
    # Parameters, group after group.
    p = 0
    for k, (o, i) in enumerate(spec.layer_shapes()):
        for key, n in ((f"W{k}", o * i), (f"b{k}", o)):
            assert [int(v) for v in values[key].split()] == wq[p: p + n].tolist(), key
            p += n
    assert p == wq.size
    # Latents: grids given in full ("a b / c d") or by their nonzero entries.
    grids = []
    off = 0
    for h, w in spec.level_dims():
        grids.append(lat[off: off + h * w].reshape(h, w))
        off += h * w
    for lev, q in enumerate(grids):
        if f"Q{lev}" in values:
            rows = [[int(v) for v in r.split()] for r in values[f"Q{lev}"].split("/")]
            assert rows == q.tolist(), f"Q{lev}"
        else:
            key = f"Q{lev} nonzero (row, col, value)"
            triples = [tuple(map(int, t)) for t in re.findall(
                r"\((-?\d+),\s*(-?\d+),\s*(-?\d+)\)", values[key])]
            nz = [(i, j, int(q[i, j])) for i, j in zip(*np.nonzero(q))]
            assert triples == nz, key
    assert f"The decoder reads {consumed} bytes" in format_md


def test_decoding_trace_constants():
    """Constants quoted in spec/decoding.md equal the entropy coder's."""
    from nncodec import entropy as e

    text = DECODING_MD.read_text(encoding="utf-8")
    assert (e.PROB_BITS, e.RATE_FAST, e.RATE_SLOW, e.TOP) == (15, 4, 7, 1 << 24)
    assert f"`RATE_FAST` = {e.RATE_FAST}, `RATE_SLOW` = {e.RATE_SLOW}" in text
    assert f"WCTX = {e.WCTX} " in text and f"LCTX = {e.LCTX} " in text
    assert f"L_ZERO = {e.L_ZERO} " in text and f"L_SIGN = {e.L_SIGN} " in text
    assert f"L_MAG  = {e.L_MAG} " in text
    assert f"WEIGHT_UNARY = {e.WEIGHT_UNARY}" in text and f"LAT_UNARY = {e.LAT_UNARY}" in text
    assert f"EG_MAX_PREFIX = {e.EG_MAX_PREFIX}" in text

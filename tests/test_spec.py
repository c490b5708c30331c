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
# The range decoder of spec/decoding.md section 3, written from the text (no
# nncodec code), recording every bin for the trace of appendix B.


class SpecDecoder:
    """Decode a payload as decoding.md sections 3.1-3.7 say, one bin at a time."""

    def __init__(self, payload: bytes, version: int = 2):
        self.payload = payload
        # Section 3.2: initial count and target rates by format version.
        self.count0, self.rate_fast, self.rate_slow = {1: (255, 4, 7), 2: (0, 3, 7),
                                                       3: (0, 3, 7), 4: (0, 3, 7),
                                                       5: (0, 3, 7)}[version]
        self.version = version
        self.pos = 0
        self.reads = 0  # calls of next_byte
        self.code = 0
        self.range = 0xFFFFFFFF
        for _ in range(4):
            self.code = (self.code << 8) | self.next_byte()
        self.P = {}  # context -> [fast, slow, count]
        self.trace = []  # (what, ctx, p, bound, bit, range after, code after)

    def next_byte(self) -> int:
        b = self.payload[self.pos] if self.pos < len(self.payload) else 0
        self.pos += 1
        self.reads += 1
        return b

    def normalize(self):
        while self.range < 1 << 24:
            self.range <<= 8
            self.code = ((self.code << 8) | self.next_byte()) & 0xFFFFFFFF

    def bit(self, c: int, what: str) -> int:
        fast, slow, n = self.P.setdefault(c, [16384, 16384, self.count0])
        p = (fast + slow) >> 1
        bound = (self.range >> 15) * p
        w = (n + 1).bit_length()
        rf, rs = min(w, self.rate_fast), min(w, self.rate_slow)
        n = min(n + 1, 255)
        if self.code < bound:
            self.range = bound
            self.P[c] = [fast + ((32768 - fast) >> rf), slow + ((32768 - slow) >> rs), n]
            bit = 0
        else:
            self.code -= bound
            self.range -= bound
            self.P[c] = [fast - (fast >> rf), slow - (slow >> rs), n]
            bit = 1
        self.normalize()
        self.trace.append((what, c, p, bound, bit, self.range, self.code))
        return bit

    def bypass(self, what: str) -> int:
        half = self.range >> 1
        if self.code < half:
            self.range = half
            bit = 0
        else:
            self.code -= half
            self.range -= half
            bit = 1
        self.normalize()
        self.trace.append((what, None, None, half, bit, self.range, self.code))
        return bit

    def eg0(self) -> int:
        n = 0
        while self.bypass("escape prefix (bypass)") == 1:
            n += 1
            assert n <= 24, "impossible value"
        v = 1
        for _ in range(n):
            v = (v << 1) | self.bypass("escape suffix (bypass)")
        return v - 1

    def param(self, B: int, k: int) -> int:
        if self.bit(B, "zero flag") == 0:
            return 0
        neg = self.bypass("sign (bypass)")
        if self.version >= 3:  # section 3.5: Rice code of m - 1 with parameter k
            h = 0
            while h < 8 and self.bit(B + 1 + h, f"bin {h + 1}") == 1:
                h += 1
            if h == 8:
                h = 8 + self.eg0()
            for _ in range(k):
                h = (h << 1) | self.bypass("low bit (bypass)")
            m = h + 1
            return -m if neg else m
        m = 1
        while m <= 8 and self.bit(B + m, f"bin {m}") == 1:
            m += 1
        if m == 9:
            m = 9 + self.eg0()
        return -m if neg else m

    def latents(self, B: int, Q, par_grid, rows: int, cols: int):
        def at(i, j):
            return Q[i][j] if 0 <= i < rows and 0 <= j < cols else 0

        def sg(x):
            return 0 if x == 0 else 1 if x > 0 else 2

        for i in range(rows):
            for j in range(cols):
                a, b, c, d = at(i, j - 1), at(i - 1, j), at(i - 1, j - 1), at(i - 1, j + 1)
                s = 2 * min(abs(a), 3) + 2 * min(abs(b), 3) + min(abs(c), 3) + min(abs(d), 3)
                zc = 0 if s == 0 else 1 if s <= 2 else 2 if s <= 5 else 3
                mc = 0 if s == 0 else 1 if s <= 4 else 2
                par = 1 if par_grid is not None and par_grid[i >> 1][j >> 1] != 0 else 0
                if self.bit(B + 2 * zc + par, "zero flag") == 0:
                    continue
                neg = self.bit(B + 8 + 3 * sg(a) + sg(b), "sign")
                m = 1
                while m <= 14 and self.bit(B + 17 + 3 * (m - 1) + mc, f"bin {m}") == 1:
                    m += 1
                if m == 15:
                    m = 15 + self.eg0()
                Q[i][j] = -m if neg else m

    def decode(self, group_sizes, level_dims, rice=None):
        """Section 3.7; returns (parameters, grids in coding order as lists of rows).
        ``rice``: the Rice parameter of each group (version 3)."""
        G = len(group_sizes)
        rice = rice or [0] * G
        params = [self.param(9 * g, rice[g]) for g in range(G) for _ in range(group_sizes[g])]
        NG = len(level_dims)
        grids = [None] * NG
        for lev in range(NG - 1, -1, -1):
            rows, cols = level_dims[lev]
            parent = lev + 1 < NG and tuple(level_dims[lev + 1]) == (-(-rows // 2),
                                                                      -(-cols // 2))
            grids[lev] = [[0] * cols for _ in range(rows)]
            self.latents(9 * G + 59 * lev, grids[lev], grids[lev + 1] if parent else None,
                         rows, cols)
        return params, grids


def trace_rows(trace) -> list[list[str]]:
    """Appendix B's table cells (after ``#``) for the recorded bins."""
    rows = []
    for what, c, p, bound, bit, rng, code in trace:
        bypass = c is None
        rows.append([what, "-" if bypass else str(c), "-" if bypass else str(p),
                     f"`{bound:08X}`" + (" (half)" if bypass else ""), str(bit),
                     f"`{rng:08X}`", f"`{code:08X}`"])
    return rows


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


def test_metadata_keys_match_code(format_md):
    """Section 4's key table and reference-writer constants follow nncodec.metadata."""
    from nncodec import metadata

    tables = _tables_with(format_md, ["key", "type", "content"])
    assert len(tables) == 1
    assert [_code(r[0]) for r in tables[0]] == list(metadata.KEYS) == sorted(metadata.KEYS)
    assert all(_code(r[1]) == "bin" for r in tables[0])
    assert f"zstandard level {metadata.ZSTD_LEVEL}," in format_md
    assert f"larger than {metadata.MAX_DECOMPRESSED >> 20} MiB" in format_md


def test_header_size_formula(format_md):
    n_header = sum(f.bits for f in fmt.HEADER_FIELDS)
    n_layer = sum(f.bits for f in fmt.LAYER_FIELDS)
    assert f"`nbits` = {n_header} + {n_layer} * (`n_hidden` + 1)" in format_md
    assert f"These {n_header} bits are followed" in format_md
    for n_hidden, hb in zip(range(4), re.search(
            r"`hb` = (\d+), (\d+), (\d+), (\d+) bytes", format_md).groups()):
        assert fmt.header_bytes(n_hidden + 1) == 5 + int(hb)
        assert fmt.header_bits(n_hidden + 1) == n_header + n_layer * (n_hidden + 1)
    # Padding after the last layer field, by NH (it repeats with period 4).
    pad = [-fmt.header_bits(nh + 1) % 8 for nh in range(4)]
    assert all(-fmt.header_bits(nh + 1) % 8 == pad[nh % 4] for nh in range(8))
    m = re.search(r"complete the last header\s+byte \((\d+), (\d+), (\d+), (\d+) bits for "
                  r"`NH` = 0, 1, 2, 3; in versions 1 and 2, (\d+) bits if\s+`NH` is even, "
                  r"(\d+) if odd\)", format_md)
    assert m and [int(m.group(i)) for i in range(1, 5)] == pad
    assert [int(m.group(5)), int(m.group(6))] == [-fmt.header_bits(1, 2) % 8,
                                                  -fmt.header_bits(2, 2) % 8]


def test_stencil_table_matches_code():
    """decoding.md section 2 lists every stencil: the grids it samples at
    five points (and their order), the others at the point, and the first
    format version that has it."""
    from nncodec import field

    text = DECODING_MD.read_text(encoding="utf-8")
    assert "a grid at the point has the one\npoint (0, 0); a grid at five points has (0, 0), " \
        "(0, -1), (0, 1), (-1, 0),\n(1, 0)" in text
    assert field.POINT == ((0, 0),)
    assert field.PLUS == ((0, 0), (0, -1), (0, 1), (-1, 0), (1, 0))
    tables = _tables_with(text, ["stencil", "grids at five points", "the other grids",
                                 "from format version"])
    assert len(tables) == 1
    rows = {int(k): (plus, rest, int(v)) for k, plus, rest, v in tables[0]}
    assert sorted(rows) == sorted(field.STENCILS)
    for k, (plus, rest, since) in rows.items():
        if plus == "every grid":
            want = set(range(21))
        elif plus == "none":
            want = set()
        else:
            want = {int(g) for g in re.findall(r"grid (\d+)", plus)}
            assert want, plus
        assert (rest == "none") == (want == set(range(21)))
        for g in range(21):
            assert field.grid_points(k, g) == (field.PLUS if g in want else field.POINT)
        assert since == fmt.STENCIL_SINCE.get(k, 1)
        spec = field.ModelSpec(8, 8, 3, 3, 0, 2, 1, 4, stencil=k, n_chroma=2)
        assert spec.n_inputs == 7 + 4 * len(want & set(range(7))) + 4 * 2
    # The header field admits exactly the defined stencils.
    (stencil,) = [f for f in fmt.HEADER_FIELDS if f.name == "stencil"]
    assert (stencil.lo, stencil.hi) == (min(rows), max(rows))
    assert "d_0 = NS + 4M" in text and "NS  = S_0 + S_1 + ... + S_(NG-1)" in text


def test_grid_exponents_example():
    """decoding.md section 2's example of the grid order is the code's."""
    from nncodec import field

    text = " ".join(DECODING_MD.read_text(encoding="utf-8").split())
    m = re.search(r"For example `L` = (\d+), `F` = (\d+), `NC` = (\d+) gives `NG` = (\d+) "
                  r"grids with `k` = ([\d |]+)\.", text)
    L, F, NC, NG = (int(m.group(i)) for i in range(1, 5))
    spec = field.ModelSpec(640, 480, 3, L, F, 0, 1, 4, n_chroma=NC)
    assert spec.n_grids == NG
    assert spec.grid_levels() == [int(v) for v in m.group(5).replace("|", " ").split()]
    # The formula of section 2.
    assert spec.grid_levels() == [F + g if g < L else F + L - NC + (g - L) % NC
                                  for g in range(L + 2 * NC)]


SPEC_DECODER_LAYOUTS = [
    ([24, 4, 16, 4, 12, 3], [(20, 27), (10, 14), (5, 7), (3, 4)]),
    ([12, 4, 6, 3], [(16, 21), (8, 11), (4, 6), (8, 11), (4, 6), (8, 11), (4, 6)]),  # NC = 2
    ([3], [(2, 3), (1, 2), (1, 1), (1, 1), (1, 1), (1, 1), (1, 1)]),  # 1x1 grids: see 3.6
    ([0, 3], []),
]


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("k", range(len(SPEC_DECODER_LAYOUTS)))
def test_spec_decoder_matches_code(k, version):
    """Section 3, followed literally, decodes what the reference encoder wrote,
    in every format version (1 and 2 differ in the adaptation of section 3.2,
    3 in the parameters' code of section 3.5)."""
    from nncodec.entropy import choose_rice, decode_payload, encode_payload

    groups, dims = SPEC_DECODER_LAYOUTS[k]
    rng = np.random.default_rng(k)
    n_lat = sum(h * w for h, w in dims)
    wq = np.round(rng.laplace(0.0, 4.0, sum(groups))).astype(np.int64)
    wq[:2] = [40, -3000]  # escapes
    lat = np.round(rng.laplace(0.0, 0.8, n_lat)).astype(np.int64)
    lat[rng.random(n_lat) < 0.4] = 0
    if n_lat:
        lat[0] = -25  # a latent escape
    rice = choose_rice(wq, groups) if version >= 3 else None
    if rice is not None:
        rice[0] = 7  # the largest parameter, whatever fits best
    payload = encode_payload(wq, groups, lat, dims, version, rice)
    dec = SpecDecoder(payload, version)
    params, grids = dec.decode(groups, dims, rice)
    assert params == wq.tolist()
    flat = [v for g in grids for row in g for v in row]
    assert flat == lat.tolist()
    _, _, err, consumed = decode_payload(payload, groups, dims, version, rice)
    assert err == 0 and dec.reads == consumed
    if dims:  # the versions code differently: another one cannot decode it
        wrong = SpecDecoder(payload, {1: 2, 2: 1, 3: 2}[version])
        try:
            other = wrong.decode(groups, dims)
        except AssertionError:
            other = None  # an impossible escape
        assert other != (params, grids)


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
    wq, lat, err, consumed = decode_payload(c.payload, spec.group_sizes(), spec.level_dims(),
                                            c.version, c.rice)
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


def _example_image() -> np.ndarray:
    """The source of the worked example: pixel (x, y) = 8 (x + y) + 4, 16x16 grey."""
    y, x = np.mgrid[0:16, 0:16]
    return ((x + y) * 8 + 4).astype(np.uint8)


def test_example_render(example, format_md):
    """The quoted rendered rows, PSNR and 4x4 row are the decoder's (within 1)."""
    import naive
    import nncodec
    from nncodec.decoder import parse

    out = nncodec.decode(example)
    c, theta, lat = parse(example)
    ref = naive.render(c.spec, theta, lat, c.spec.width, c.spec.height)[:, :, 0]
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    blocks = _fenced(format_md, "render")
    assert len(blocks) == 1
    rows = re.findall(r"^row\s+(\d+):((?:\s+\d+)+)\s*$", blocks[0], re.M)
    assert len(rows) >= 3
    for r, vals in rows:
        quoted = np.array([int(v) for v in vals.split()])
        assert quoted.size == c.spec.width
        assert np.abs(quoted - out[int(r)].astype(int)).max() <= 1, f"row {r}"
        assert np.abs(quoted - ref[int(r)].astype(int)).max() <= 1, f"row {r}"
    psnr = float(re.search(r"\(PSNR (\d+\.\d+) dB against the source\.\)", format_md).group(1))
    assert psnr == pytest.approx(naive.psnr(out, _example_image()), abs=0.006)
    m = re.search(r"At `size=\(4, 4\)`, `sx = sy = 4`.*?row 0 is `([\d ]+)`", format_md, re.S)
    small = nncodec.decode(example, (4, 4))
    quoted = np.array([int(v) for v in m.group(1).split()])
    assert np.abs(quoted - small[0].astype(int)).max() <= 1
    small_ref = naive.render(c.spec, theta, lat, 4, 4)[0, :, 0]
    assert np.abs(quoted - small_ref.astype(int)).max() <= 1


def test_example_derived_model(example, format_md):
    c = fmt.unpack(example)
    s = c.spec
    text = " ".join(format_md.split())  # the paragraph is wrapped
    grids = ", ".join(f"{w}x{h}" for h, w in s.level_dims())
    assert f"`NC` = {s.n_chroma}" in text
    assert f"{s.n_grids} grids (`F` = {s.first_level}) of {grids} cells = {s.n_latents} latents" \
        in text
    from nncodec.field import grid_points

    S = len(grid_points(s.stencil, 0))
    assert all(len(grid_points(s.stencil, g)) == S for g in range(s.n_grids))  # stencil 1
    assert f"stencil {s.stencil} samples each grid at `S_l` = {S} points" in text
    dims = " -> ".join(str(d) for d in [s.n_inputs] + [s.hidden_width] * s.n_hidden
                       + [s.channels])
    assert f"{s.n_grids} * {S} = {s.n_inputs} inputs: {dims} with ReLU" in text
    sizes = s.group_sizes()
    assert f"{s.n_params} parameters in {len(sizes)} groups of " + ", ".join(map(str, sizes)) \
        in text
    assert f"{len(sizes)} * 9 = {9 * len(sizes)} weight contexts + {s.n_grids} * 59 = " \
        f"{59 * s.n_grids} latent contexts" in text


def test_example_trace(example):
    """Appendix B of decoding.md: a decoder written from section 3 retraces the
    example bin by bin, and decodes the same integers as the reference."""
    from nncodec.entropy import decode_payload

    text = DECODING_MD.read_text(encoding="utf-8")
    flat = " ".join(text.split())  # sentences may be rewrapped
    c = fmt.unpack(example)
    start = len(example) - 4 - len(c.payload)
    head = " ".join(f"{b:02x}" for b in c.payload[:5])
    dec = SpecDecoder(c.payload, c.version)
    assert (f"Payload starts at byte {start}: `{head} ...`; `init()` gives "
            f"`code = 0x{dec.code:08X}`, `range = 0xFFFFFFFF`.") in flat
    params, grids = dec.decode(c.spec.group_sizes(), c.spec.level_dims(), c.rice)
    wq, lat, err, consumed = decode_payload(c.payload, c.spec.group_sizes(),
                                            c.spec.level_dims(), c.version, c.rice)
    assert err == 0 and params == wq.tolist()
    assert np.concatenate([np.ravel(g) for g in grids]).tolist() == lat.tolist()
    assert dec.reads == consumed
    rows = _tables_with(text, ["#", "what", "ctx", "p", "bound", "bit", "range after",
                               "code after"])
    assert len(rows) == 1 and len(rows[0]) >= 20
    want = trace_rows(dec.trace)
    for n, row in enumerate(rows[0]):
        assert row[0] == str(n)
        assert row[1:] == want[n], f"trace row {n}"
    assert (f"the decoder has called `next_byte` {consumed} times "
            f"(payload length {len(c.payload)})") in flat


def test_decoding_trace_constants():
    """Constants quoted in spec/decoding.md equal the entropy coder's."""
    from nncodec import entropy as e

    text = DECODING_MD.read_text(encoding="utf-8")
    assert (e.PROB_BITS, e.RATE_FAST, e.RATE_SLOW, e.TOP) == (15, 3, 7, 1 << 24)
    assert e.ADAPTATION == {1: (255, 4, 7), 2: (0, 3, 7), 3: (0, 3, 7), 4: (0, 3, 7),
                            5: (0, 3, 7)}
    assert e.COUNT_MAX == 255
    flat = " ".join(text.split())
    assert ("| 1 | 255 | 4 | 7 |" in text and
            f"| 2, 3, 4, 5 | 0 | {e.RATE_FAST} | {e.RATE_SLOW} |" in text)
    assert f"`RICE_MAX` = {e.RICE_MAX}" in text
    assert f"`COUNT_MAX` = {e.COUNT_MAX}" in flat
    assert f"WCTX = {e.WCTX} " in text and f"LCTX = {e.LCTX} " in text
    assert f"L_ZERO = {e.L_ZERO} " in text and f"L_SIGN = {e.L_SIGN} " in text
    assert f"L_MAG  = {e.L_MAG} " in text
    assert f"WEIGHT_UNARY = {e.WEIGHT_UNARY}" in text and f"LAT_UNARY = {e.LAT_UNARY}" in text
    assert f"EG_MAX_PREFIX = {e.EG_MAX_PREFIX}" in text

"""Decoder fuzzing: mutate valid ``.nni`` files and check that decoding fails only on purpose.

Shared by ``tests/test_fuzz.py`` (about 2,000 seeded cases on every test run)
and ``benchmarks/fuzz.py`` (long runs). Case ``i`` of seed ``s`` draws from its
own generator ``numpy.random.default_rng([s, i])``, so :func:`make_case`
rebuilds any case alone from its index.

Corpus (:func:`make_corpus`): small valid files. 48x32 synthetic images
encoded at 150-400 bytes (colour, grey, colour with a metadata section, the
coordinate-MLP model), a 1x1 image, hand-built files for header variants the
encoder may not write at these sizes (stencils 1, 2 and 3, no hidden layer, three hidden
layers, no grids), and ``samples/*.nni``.

Mutations (:data:`MUTATORS`, one to three per case): bit flips, byte changes,
truncation, appended, inserted and deleted bytes, splices of two corpus files,
header fields set to extreme values (one field at a time, every field at its
minimum or maximum, values outside the documented range that the bits can
hold, coded sizes at and beyond the decoder's limits), a metadata length up to
2^42 and overlong length fields, and a random, saturated or empty payload
behind a valid header.

CRC modes. A random change almost always fails the CRC-32 check, which only
exercises the first bytes of the parser. So in three cases out of four the
mutation is applied to the file without its checksum and a correct CRC-32 is
appended (mode ``"fixed"``): those bytes reach the header parser, the metadata
reader, the range decoder and the renderer. The other cases mutate the whole
file (mode ``"raw"``).

Checks (:func:`check_case`) on ``nncodec.info``, ``nncodec.decode`` and, in
process through ``cli.main``, ``nncodec info`` and ``nncodec decode``:

* nothing but an ``nncodec.NniError`` escapes (the CLI returns 0, or 1 with
  a one-line ``nncodec: error:`` message, and leaves no output or temporary
  file behind on failure);
* the API and the CLI agree, and a successful decode has the shape and type
  that ``info`` and the requested size imply;
* every call stays within :data:`CPU_LIMIT` and :data:`WALL_LIMIT` seconds;
* on cases selected by the caller, the peak of memory traced by
  ``tracemalloc`` during ``nncodec.decode`` stays within :func:`memory_bound`.

Every decode passes ``max_pixels=cap`` (default :data:`FUZZ_MAX_PIXELS`), the
cap an application decoding untrusted files would set. It bounds the frame
``max(W, W') x max(H, H')`` of the coded and output sizes, hence the latents
decoded and the samples rendered (fewer than 4 per frame pixel). It is large
enough for the samples (384x256) to decode at their coded size.

Time. Every call must use at most :data:`CPU_LIMIT` seconds of CPU time (all
threads of the process, ``time.process_time``: unlike the wall clock it does
not depend on what else the machine runs) and return within
:data:`WALL_LIMIT` seconds. Files from the corpus decode in milliseconds; the
slowest decode the cap admits is the largest model a header can declare
(three hidden layers of 64 units, 21 grids sampled at 5 points, 15 Fourier
frequencies) rendering a 362x362 image at 361x361, i.e. 2x2 samples for each
of 2^17 pixels: 4.8 s of CPU on the 2-core machine of ``benchmarks/README.md``.
The limit admits that with some margin and still catches a loop over
untrusted sizes or a stuck decoder; the wall-clock limit only catches hangs.

Memory. NumPy reports every array buffer to ``tracemalloc``, so the traced
peak covers every allocation whose size the decoder derives from the file (the
latent and parameter arrays, the interpolation tables, the output); it does
not see the few KiB of per-row scratch that numba kernels allocate
internally, which do not depend on the file. :func:`memory_bound` allows what
a decode within the cap legitimately needs and nothing that scales with the
payload or with values the cap does not bound:

* 64 bytes per pixel of the cap: at most 4 latents per frame pixel (7 grids
  plus two extra sets on the coarsest levels), each decoded as int64 and
  converted to float32, and 3 bytes of output;
* 3 KiB per coded or output row and column (``W + W' + H + H'``): the
  interpolation tables hold, per sample row and column, 4 taps of an int32
  index and a float32 weight for up to 3 stencil shifts and 21 grids, and
  ``ceil`` rounding adds up to 6 latents per coded row and column;
* 8 MiB for everything of fixed size (at most ~20,000 parameters, header
  parsing, Python objects).
"""

from __future__ import annotations

import contextlib
import io
import os
import time
import tracemalloc
import traceback
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import nncodec
from nncodec import format as fmt
from nncodec.cli import main as cli_main
from nncodec.field import ModelSpec

ROOT = Path(__file__).resolve().parent.parent
#: CPU seconds (all threads) any one call (API or CLI) may take; see the module docstring.
CPU_LIMIT = 8.0
#: Wall-clock seconds any one call may take: a hang, whatever the machine's load.
WALL_LIMIT = 60.0
#: Output and coded pixel cap of every fuzzed decode.
FUZZ_MAX_PIXELS = 1 << 17
MEM_BASE = 8 << 20
MEM_PER_PIXEL = 64
MEM_PER_LINE = 3 << 10


def memory_bound(cap: int, lines: int) -> int:
    """Bytes a decode may allocate: see the module docstring."""
    return MEM_BASE + MEM_PER_PIXEL * cap + MEM_PER_LINE * lines


def with_crc(body: bytes) -> bytes:
    """``body`` followed by its CRC-32, little-endian, as the container stores it."""
    return bytes(body) + zlib.crc32(body).to_bytes(fmt.CRC_BYTES, "little")


# ---------------------------------------------------------------------------
# Corpus.


def _synthetic(width: int, height: int, channels: int, seed: int) -> np.ndarray:
    """A smooth gradient with a disc and mild noise (uint8 HxW or HxWx3)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = (x + 0.5) / width, (y + 0.5) / height
    img = np.stack([40 + 170 * u, 60 + 150 * v, 200 - 120 * u * v], axis=-1)
    img[(x - 0.6 * width) ** 2 + (y - 0.4 * height) ** 2 < (0.22 * height) ** 2] = (230, 200, 40)
    img += rng.normal(0.0, 2.0, img.shape)
    if channels == 1:
        img = img @ np.array([0.299, 0.587, 0.114])
    return np.floor(np.clip(img, 0, 255) + 0.5).astype(np.uint8)


def _handmade(spec: ModelSpec, seed: int, metadata: bytes = b"") -> bytes:
    """A valid file with random small parameters and latents (no training)."""
    from nncodec.entropy import encode_payload

    rng = np.random.default_rng(seed)
    n = spec.n_hidden + 1
    ws = [int(v) for v in rng.integers(10, 20, n)]
    bs = [int(v) for v in rng.integers(8, 16, n)]
    wq = rng.integers(-6, 7, spec.n_params).astype(np.int64)
    lat = rng.integers(-3, 4, spec.n_latents).astype(np.int64)
    payload = encode_payload(wq, spec.group_sizes(), lat, spec.level_dims())
    return fmt.pack(spec, ws, bs, payload, metadata)


def make_corpus(encoded: bool = True) -> list[tuple[str, bytes]]:
    """Valid ``.nni`` files to mutate, as ``(name, bytes)``; deterministic.

    ``encoded=False`` skips the files that need training (a few seconds).
    """
    import msgpack
    import zstandard

    meta = zstandard.ZstdCompressor().compress(msgpack.packb({"title": "fuzz", "n": 7}))
    out = []
    if encoded:
        from nncodec.encoder import encode_stats

        jobs = [("rgb-400b", _synthetic(48, 32, 3, 1), 400, {}),
                ("grey-150b", _synthetic(48, 32, 1, 2), 150, {}),
                ("rgb-meta-250b", _synthetic(48, 32, 3, 3), 250, {"metadata": meta}),
                ("rgb-mlp-200b", _synthetic(48, 32, 3, 4), 200, {"model": "mlp"}),
                ("rgb-1x1-30b", np.array([[[200, 30, 90]]], np.uint8), 30, {})]
        for name, img, budget, kw in jobs:
            data, _ = encode_stats(img, budget=budget, preset="fast", steps=150, **kw)
            out.append((name, data))
    specs = [
        ("hand-stencil1", ModelSpec(11, 7, 3, 3, 0, 1, 1, 5, stencil=1, n_chroma=2), b""),
        ("hand-stencil2", ModelSpec(10, 9, 3, 3, 0, 0, 1, 4, stencil=2, n_chroma=1), b""),
        ("hand-stencil3", ModelSpec(12, 10, 3, 3, 0, 0, 1, 4, stencil=3, n_chroma=1), b""),
        ("hand-grey-3hidden", ModelSpec(9, 13, 1, 2, 1, 2, 3, 6), b""),
        ("hand-nogrids", ModelSpec(16, 16, 3, 0, 0, 4, 0, 1), b""),
        ("hand-meta", ModelSpec(20, 5, 3, 4, 0, 0, 2, 4, n_chroma=1), meta),
    ]
    for k, (name, spec, md) in enumerate(specs):
        out.append((name, _handmade(spec, 100 + k, md)))
    for p in sorted((ROOT / "samples").glob("*.nni")):
        out.append((p.name, p.read_bytes()))
    return out


# ---------------------------------------------------------------------------
# Header bit fields.


def header_layout(n_layers: int) -> list[tuple[str, int, fmt.Field]]:
    """``(name, bit offset from byte 5, Field)`` of every header field."""
    out, pos = [], 0
    for f in fmt.HEADER_FIELDS:
        out.append((f.name, pos, f))
        pos += f.bits
    for k in range(n_layers):
        for f in fmt.LAYER_FIELDS:
            out.append((f"{f.name}[{k}]", pos, f))
            pos += f.bits
    return out


_HEAD = len(fmt.MAGIC) + 1  # byte where the bit fields start


def get_bits(data: bytes, pos: int, n: int) -> int | None:
    """Field of ``n`` bits at header bit ``pos``, or None if the data is too short."""
    start, end = _HEAD * 8 + pos, _HEAD * 8 + pos + n
    if end > len(data) * 8:
        return None
    chunk = int.from_bytes(data[start // 8: (end + 7) // 8], "big")
    return (chunk >> (-end % 8)) & ((1 << n) - 1)


def set_bits(data: bytearray, pos: int, n: int, value: int) -> None:
    """Write ``value`` into the ``n``-bit field at header bit ``pos`` (if the data holds it)."""
    start, end = _HEAD * 8 + pos, _HEAD * 8 + pos + n
    if end > len(data) * 8:
        return
    first, last = start // 8, (end + 7) // 8
    shift = -end % 8
    chunk = int.from_bytes(data[first:last], "big")
    mask = ((1 << n) - 1) << shift
    chunk = (chunk & ~mask) | ((value << shift) & mask)
    data[first:last] = chunk.to_bytes(last - first, "big")


_N_HIDDEN = next(pos for name, pos, _ in header_layout(1) if name == "n_hidden")


def _layout_of(data: bytes):
    """Header layout for the number of layers that ``data`` declares."""
    hidden = get_bits(data, _N_HIDDEN, 2)
    return header_layout((hidden or 0) + 1)


# ---------------------------------------------------------------------------
# Mutators: ``fn(rng, data, corpus) -> bytes``. ``data`` is the file without
# its CRC in "fixed" mode and the whole file in "raw" mode.

INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)


def flip_bits(rng, data, corpus):
    b = bytearray(data)
    if not b:
        return bytes(b)
    # Half the time aim at the magic, version and header, where a flip matters most.
    span = min(len(b), 20) if rng.random() < 0.5 else len(b)
    for _ in range(int(rng.integers(1, 9))):
        pos = int(rng.integers(0, span * 8))
        b[pos // 8] ^= 1 << (pos % 8)
    return bytes(b)


def set_bytes(rng, data, corpus):
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        if not b:
            break
        i = int(rng.integers(0, len(b)))
        b[i] = int(rng.choice(INTERESTING_BYTES)) if rng.random() < 0.5 else int(rng.integers(256))
    return bytes(b)


def truncate(rng, data, corpus):
    return data[: int(rng.integers(0, len(data) + 1))]


def append_bytes(rng, data, corpus):
    return data + rng.bytes(int(rng.integers(1, 65)))


def insert_bytes(rng, data, corpus):
    i = int(rng.integers(0, len(data) + 1))
    return data[:i] + rng.bytes(int(rng.integers(1, 17))) + data[i:]


def delete_bytes(rng, data, corpus):
    if not data:
        return data
    i = int(rng.integers(0, len(data)))
    return data[:i] + data[i + int(rng.integers(1, 17)):]


def splice(rng, data, corpus):
    other = corpus[int(rng.integers(len(corpus)))][1][: -fmt.CRC_BYTES]
    i = int(rng.integers(0, len(data) + 1))
    j = int(rng.integers(0, len(other) + 1))
    return data[:i] + other[j:]


def header_field(rng, data, corpus):
    """One to three header fields set to an extreme or random value the bits can hold."""
    b = bytearray(data)
    layout = _layout_of(data)
    for _ in range(int(rng.integers(1, 4))):
        name, pos, f = layout[int(rng.integers(len(layout)))]
        top = (1 << f.bits) - 1
        choices = (f.lo, f.hi, 0, top, f.hi + 1 if f.hi < top else top, int(rng.integers(top + 1)))
        set_bits(b, pos, f.bits, int(choices[int(rng.integers(len(choices)))]))
    return bytes(b)


def header_extremes(rng, data, corpus):
    """Every field of the header at its minimum or maximum (range or bits), or a mix."""
    b = bytearray(data)
    how = int(rng.integers(4))
    for name, pos, f in _layout_of(data):
        top = (1 << f.bits) - 1
        pick = how if how < 3 else int(rng.integers(3))
        set_bits(b, pos, f.bits, (f.lo, f.hi, top)[pick])
    return bytes(b)


#: Coded sizes at and around the decoder's limits (width, height).
EXTREME_SIZES = ((65536, 65536), (65536, 1024), (65536, 1025), (1024, 65536), (65536, 1),
                 (1, 65536), (65536, 2), (2, 65536), (1, 1), (362, 362), (363, 362),
                 (8192, 8192), (48, 2731), (2731, 48))


def header_size(rng, data, corpus):
    """Width and height set to one of :data:`EXTREME_SIZES`."""
    b = bytearray(data)
    w, h = EXTREME_SIZES[int(rng.integers(len(EXTREME_SIZES)))]
    set_bits(b, 0, 16, w - 1)
    set_bits(b, 16, 16, h - 1)
    return bytes(b)


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n >> 7 else 0))
        n >>= 7
        if not n:
            return bytes(out)


def metadata_length(rng, data, corpus):
    """Turn on the metadata flag and put a huge, exact or overlong length after the header."""
    b = bytearray(data)
    layout = _layout_of(data)
    set_bits(b, next(pos for name, pos, _ in layout if name == "has_metadata"), 1, 1)
    end = _HEAD + (layout[-1][1] + layout[-1][2].bits + 7) // 8
    rest = len(b) - end
    choice = int(rng.integers(6))
    if choice == 0:
        length = _leb128(int(rng.choice([127, 1 << 14, (1 << 21) + 5, (1 << 35) - 1, 1 << 41,
                                         (1 << 42) - 1])))
    elif choice == 1:
        length = _leb128(max(0, rest + int(rng.integers(-2, 3))))
    elif choice == 2:
        length = b"\xff" * int(rng.integers(5, 9)) + b"\x01"  # overlong
    elif choice == 3:
        length = b"\x80" * int(rng.integers(1, 7)) + b"\x00"  # zero, padded
    elif choice == 4:
        length = b"\xff" * int(rng.integers(1, 7))  # ends inside the length
    else:
        length = _leb128(int(rng.integers(0, 64)))
    return bytes(b[:end]) + length + bytes(b[end:])


def payload(rng, data, corpus):
    """Keep the header (and metadata) of a valid file; replace the payload."""
    try:
        c = fmt.unpack(with_crc(data))
    except nncodec.NniError:
        return data
    start = len(data) - c.fields["payload_bytes"]
    kind = int(rng.integers(4))
    n = int(rng.integers(0, 800))
    new = (rng.bytes(n), b"\xff" * n, b"", bytes([int(rng.integers(256))]) * n)[kind]
    return data[:start] + new


MUTATORS = {f.__name__: f for f in (flip_bits, set_bytes, truncate, append_bytes, insert_bytes,
                                    delete_bytes, splice, header_field, header_extremes,
                                    header_size, metadata_length, payload)}
#: Relative frequency of each mutator.
WEIGHTS = {"flip_bits": 3, "set_bytes": 3, "truncate": 1, "append_bytes": 1, "insert_bytes": 1,
           "delete_bytes": 1, "splice": 1, "header_field": 4, "header_extremes": 1,
           "header_size": 1, "metadata_length": 1, "payload": 3}
SCALES = (0.01, 0.3, 0.5, 1.7, 2.0, 4.0, 100.0)


@dataclass
class Case:
    """One fuzz input and how to decode it."""

    index: int
    source: str
    mode: str  # "fixed" (CRC recomputed) or "raw"
    mutators: list
    data: bytes
    size: tuple | None = None
    scale: float | None = None


def make_case(seed: int, index: int, corpus) -> Case:
    """Case ``index`` of ``seed``: a corpus file, one to three mutations, a CRC mode, a size."""
    rng = np.random.default_rng([seed, index])
    name, data = corpus[int(rng.integers(len(corpus)))]
    mode = "fixed" if rng.random() < 0.75 else "raw"
    names = list(WEIGHTS)
    p = np.array([WEIGHTS[n] for n in names], np.float64)
    chosen = [names[int(i)] for i in rng.choice(len(names), int(rng.integers(1, 4)), p=p / p.sum())]
    body = data[: -fmt.CRC_BYTES] if mode == "fixed" else data
    for m in chosen:
        body = MUTATORS[m](rng, body, corpus)
    out = with_crc(body) if mode == "fixed" else body
    case = Case(index, name, mode, chosen, out)
    r = rng.random()
    if r < 0.15:
        case.size = (int(rng.integers(1, 300)), int(rng.integers(1, 300)))
    elif r < 0.3:
        case.scale = float(SCALES[int(rng.integers(len(SCALES)))])
    return case


# ---------------------------------------------------------------------------
# Checks.


@dataclass
class Result:
    """What happened to one case."""

    decoded: bool = False
    error: str | None = None  # NniError class name of a refused decode
    message: str | None = None  # and its message
    seconds: float = 0.0  # wall-clock seconds of the slowest call
    cpu_seconds: float = 0.0  # CPU seconds of the most expensive call
    peak: int | None = None  # traced bytes during decode, when measured
    failures: list = field(default_factory=list)


def _call(fn, result: Result, what: str):
    """Run ``fn()``; return ``(value, NniError or None)``; record anything else."""
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        value, err = fn(), None
    except nncodec.NniError as e:
        value, err = None, e
    except BaseException as e:  # noqa: BLE001 - SystemExit and the like are failures too
        value, err = None, e
        tb = traceback.format_exception(type(e), e, e.__traceback__)
        result.failures.append({"call": what, "kind": "exception",
                                "detail": f"{type(e).__name__}: {e}",
                                "traceback": "".join(tb[-6:])})
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    result.seconds = max(result.seconds, wall)
    result.cpu_seconds = max(result.cpu_seconds, cpu)
    if cpu > CPU_LIMIT or wall > WALL_LIMIT:
        result.failures.append({"call": what, "kind": "slow",
                                "detail": f"{cpu:.2f} s CPU, {wall:.2f} s wall"})
    return value, err


def _cli(args) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(args)
    return rc, err.getvalue()


def check_case(case: Case, workdir: Path, *, cap: int = FUZZ_MAX_PIXELS, trace: bool = False,
               cli: bool = True) -> Result:
    """Decode ``case`` every way; return a :class:`Result` whose ``failures`` lists violations."""
    res = Result()
    fail = res.failures
    data = case.data
    info, info_err = _call(lambda: nncodec.info(data), res, "info")
    if trace:
        tracemalloc.start()
    try:
        out, dec_err = _call(lambda: nncodec.decode(data, case.size, scale=case.scale,
                                                    max_pixels=cap), res, "decode")
    finally:
        if trace:
            res.peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    res.decoded = out is not None
    if dec_err is not None:
        res.error, res.message = type(dec_err).__name__, str(dec_err)
    if out is not None:
        if info is None:
            fail.append({"call": "decode", "kind": "inconsistent",
                         "detail": "decode succeeded where info failed"})
        else:
            w, h = info["width"], info["height"]
            if case.size is not None:
                w, h = case.size
            elif case.scale is not None:
                w = max(1, round(info["width"] * case.scale))
                h = max(1, round(info["height"] * case.scale))
            want = (h, w) if info["channels"] == 1 else (h, w, 3)
            if out.dtype != np.uint8 or out.shape != want:
                fail.append({"call": "decode", "kind": "inconsistent",
                             "detail": f"got {out.dtype}{out.shape}, want uint8{want}"})
    if trace and res.peak is not None:
        lines = 0
        if info is not None:
            lines = info["width"] + info["height"]
            if out is not None:
                lines += out.shape[0] + out.shape[1]
            elif case.size is not None:
                lines += sum(case.size)
        bound = memory_bound(cap, lines)
        if res.peak > bound:
            fail.append({"call": "decode", "kind": "memory",
                         "detail": f"peak {res.peak} bytes > bound {bound}"})
    if not cli:
        return res

    src = workdir / "case.nni"
    src.write_bytes(data)
    rc_info = _call(lambda: _cli(["info", str(src)]), res, "cli info")[0]
    if rc_info is not None:
        rc, err = rc_info
        if rc != (0 if info is not None else 1):
            fail.append({"call": "cli info", "kind": "inconsistent",
                         "detail": f"exit status {rc} but the API {'succeeded' if info else 'failed'}"})
        if rc != 0 and not _one_error_line(err):
            fail.append({"call": "cli info", "kind": "message", "detail": err[-500:]})
    dst = workdir / "out.png"
    args = ["decode", str(src), "-o", str(dst), "--max-pixels", str(cap), "-q"]
    if case.size is not None:
        args += ["--size", f"{case.size[0]}x{case.size[1]}"]
    elif case.scale is not None:
        args += ["--scale", repr(case.scale)]
    rc_dec = _call(lambda: _cli(args), res, "cli decode")[0]
    if rc_dec is not None:
        rc, err = rc_dec
        if rc != (0 if out is not None else 1):
            fail.append({"call": "cli decode", "kind": "inconsistent",
                         "detail": f"exit status {rc} but the API "
                                   f"{'succeeded' if out is not None else 'failed'}"})
        if rc != 0 and not _one_error_line(err):
            fail.append({"call": "cli decode", "kind": "message", "detail": err[-500:]})
        if rc != 0 and dst.exists():
            fail.append({"call": "cli decode", "kind": "leftover",
                         "detail": "a failed decode wrote its output"})
    left = sorted(set(os.listdir(workdir)) - {"case.nni", "out.png"})
    if left:
        fail.append({"call": "cli decode", "kind": "leftover", "detail": f"files left: {left}"})
        for name in left:
            (workdir / name).unlink()
    if dst.exists():
        dst.unlink()
    return res


def _one_error_line(err: str) -> bool:
    lines = err.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith("nncodec: error: ")


def describe(case: Case, res: Result) -> dict:
    """A JSON-ready record of a failed case (with the input, hex-encoded)."""
    return {"index": case.index, "source": case.source, "mode": case.mode,
            "mutators": case.mutators, "size": case.size, "scale": case.scale,
            "failures": res.failures, "data_hex": case.data.hex()}


def warm_up(corpus) -> None:
    """Decode every corpus file once so that kernel loading is not timed."""
    for _, data in corpus:
        nncodec.decode(data)
        nncodec.decode(data, (7, 5))

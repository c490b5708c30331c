"""The ``.nni`` container: one field table drives packing, unpacking and ``info``.

Layout (all normative; ``spec/nni-format.md`` mirrors this module and a test
checks that the two agree)::

    magic      4 bytes   89 4E 4E 49  ("\\x89NNI")
    version    1 byte    FORMAT_VERSION
    header     bit-packed fields of HEADER_FIELDS, MSB first, then for each
               layer the fields of LAYER_FIELDS, zero-padded to a byte
    metadata   only if has_metadata: LEB128 length, then that many bytes
               (zstandard-compressed msgpack map)
    payload    range-coder stream (entropy.py) up to the checksum
    crc32      4 bytes, little-endian CRC-32 (ISO-HDLC, as zlib) of every
               byte before it

No floats on the wire: quantization steps are indices into ``STEP_TABLE``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field as dc_field

from .errors import ChecksumError, FormatError, TruncatedError, VersionError
from .field import ModelSpec

MAGIC = b"\x89NNI"
FORMAT_VERSION = 5
#: Versions this decoder reads. Version 2 changed only the adaptation of the
#: coder's probabilities (entropy.ADAPTATION); version 3 codes the network
#: parameters with Rice codes whose parameters are layer fields (entropy.py);
#: version 4 adds stencil 2 (field.STENCILS) and is otherwise version 3;
#: version 5 adds stencil 3 and is otherwise version 4.
READ_VERSIONS = (1, 2, 3, 4, 5)
#: First format version of each stencil after the first two.
STENCIL_SINCE = {2: 4, 3: 5}
CRC_BYTES = 4
#: Largest coded image a decoder accepts (width * height).
MAX_CODED_PIXELS = 1 << 26


@dataclass(frozen=True)
class Field:
    name: str
    bits: int
    lo: int
    hi: int
    doc: str
    since: int = 1  # first format version whose header holds the field


HEADER_FIELDS = (
    Field("width_minus_1", 16, 0, 65535, "coded image width minus 1"),
    Field("height_minus_1", 16, 0, 65535, "coded image height minus 1"),
    Field("colour", 1, 0, 1, "0: grey, 1 channel; 1: colour, 3 channels (YCoCg)"),
    Field("kernel", 2, 0, 0, "latent interpolation kernel; 0: cubic B-spline"),
    Field("activation", 2, 0, 0, "hidden-layer activation; 0: ReLU"),
    Field("stencil", 2, 0, 3, "grid sampling stencil; 0: every grid at the point; 1: every "
          "grid at the point and its 4 neighbours at 1 coded pixel; 2: the first grid at those "
          "5 points, the others at the point; 3: the second grid at those 5 points, the others "
          "at the point"),
    Field("n_levels", 3, 0, 7, "number of latent grids L"),
    Field("first_level", 3, 0, 7, "grid l is downsampled by 2^(first_level + l)"),
    Field("n_chroma", 3, 0, 7, "coarsest levels carrying two extra grids; at most n_levels"),
    Field("n_fourier", 4, 0, 15, "Fourier frequencies per axis M"),
    Field("n_hidden", 2, 0, 3, "number of hidden layers"),
    Field("hidden_width_minus_1", 6, 0, 63, "units per hidden layer minus 1"),
    Field("has_metadata", 1, 0, 1, "1: a metadata section follows the header"),
)

#: Repeated once per linear layer (n_hidden + 1 times), first layer first;
#: a field appears from format version ``since`` on.
LAYER_FIELDS = (
    Field("weight_step", 6, 0, 63, "weight quantization step index into STEP_TABLE"),
    Field("bias_step", 6, 0, 63, "bias quantization step index into STEP_TABLE"),
    Field("weight_rice", 3, 0, 7, "Rice parameter of the weights' magnitudes", since=3),
    Field("bias_rice", 3, 0, 7, "Rice parameter of the biases' magnitudes", since=3),
)


def layer_fields(version: int = FORMAT_VERSION) -> tuple:
    """The fields of LAYER_FIELDS that a header of ``version`` holds."""
    return tuple(f for f in LAYER_FIELDS if f.since <= version)

#: Quantization step of index i: 2 ** (-i / 4).
STEP_TABLE = tuple(2.0 ** (-i / 4.0) for i in range(64))


def header_bits(n_layers: int, version: int = FORMAT_VERSION) -> int:
    return (sum(f.bits for f in HEADER_FIELDS)
            + n_layers * sum(f.bits for f in layer_fields(version)))


def header_bytes(n_layers: int, version: int = FORMAT_VERSION) -> int:
    """Bytes of magic, version and header for a model with ``n_layers`` layers."""
    return len(MAGIC) + 1 + (header_bits(n_layers, version) + 7) // 8


@dataclass
class Container:
    """A parsed ``.nni`` file."""

    spec: ModelSpec
    weight_steps: list[int]
    bias_steps: list[int]
    metadata: bytes
    payload: bytes
    fields: dict
    version: int = FORMAT_VERSION
    #: Rice parameter of each parameter group (a layer's weights, then its
    #: biases, layer after layer); zeros before version 3.
    rice: list[int] = dc_field(default_factory=list)


def spec_to_fields(spec: ModelSpec, has_metadata: bool) -> dict:
    return {
        "width_minus_1": spec.width - 1,
        "height_minus_1": spec.height - 1,
        "colour": 1 if spec.channels == 3 else 0,
        "kernel": spec.kernel,
        "activation": spec.activation,
        "stencil": spec.stencil,
        "n_levels": spec.n_levels,
        "first_level": spec.first_level,
        "n_chroma": spec.n_chroma,
        "n_fourier": spec.n_fourier,
        "n_hidden": spec.n_hidden,
        "hidden_width_minus_1": spec.hidden_width - 1,
        "has_metadata": int(has_metadata),
    }


def fields_to_spec(f: dict) -> ModelSpec:
    return ModelSpec(
        width=f["width_minus_1"] + 1,
        height=f["height_minus_1"] + 1,
        channels=3 if f["colour"] else 1,
        n_levels=f["n_levels"],
        first_level=f["first_level"],
        n_fourier=f["n_fourier"],
        n_chroma=f["n_chroma"],
        n_hidden=f["n_hidden"],
        hidden_width=f["hidden_width_minus_1"] + 1,
        kernel=f["kernel"],
        activation=f["activation"],
        stencil=f["stencil"],
    )


def _check(field: Field, value: int, label: str) -> None:
    if not field.lo <= value <= field.hi:
        raise FormatError(
            f"header field {label} = {value} is outside the allowed range {field.lo}..{field.hi}")


def validate_spec(spec: ModelSpec) -> None:
    """Check the constraints between header fields; raise FormatError."""
    if spec.channels not in (1, 3):
        raise FormatError(f"channels = {spec.channels} is not 1 (grey) or 3 (colour)")
    if spec.first_level + spec.n_levels > 8:
        raise FormatError(
            f"header fields first_level + n_levels = {spec.first_level + spec.n_levels} "
            "exceed 8")
    if spec.n_chroma > spec.n_levels:
        raise FormatError(
            f"header field n_chroma = {spec.n_chroma} exceeds n_levels = {spec.n_levels}")
    if spec.width * spec.height > MAX_CODED_PIXELS:
        raise FormatError(
            f"coded size {spec.width}x{spec.height} exceeds the decoder limit of "
            f"{MAX_CODED_PIXELS} pixels")


def _leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pack(spec: ModelSpec, weight_steps, bias_steps, payload: bytes, metadata: bytes = b"",
         rice=None) -> bytes:
    """Assemble a complete ``.nni`` file (format FORMAT_VERSION).

    ``rice`` holds the Rice parameter of every parameter group (see
    :attr:`Container.rice`); zeros if None.
    """
    validate_spec(spec)
    n_layers = spec.n_hidden + 1
    if len(weight_steps) != n_layers or len(bias_steps) != n_layers:
        raise ValueError("one weight and one bias step per layer are required")
    rice = [0] * (2 * n_layers) if rice is None else list(rice)
    if len(rice) != 2 * n_layers:
        raise ValueError("one Rice parameter per parameter group is required")
    values = [(f, spec_to_fields(spec, bool(metadata))[f.name], f.name) for f in HEADER_FIELDS]
    per_layer = {"weight_step": weight_steps, "bias_step": bias_steps,
                 "weight_rice": rice[0::2], "bias_rice": rice[1::2]}
    for k in range(n_layers):
        for f in layer_fields():
            values.append((f, int(per_layer[f.name][k]), f"{f.name}[{k}]"))
    acc = 0
    nbits = 0
    for field, v, label in values:
        _check(field, v, label)
        acc = (acc << field.bits) | v
        nbits += field.bits
    pad = (-nbits) % 8
    head = (acc << pad).to_bytes((nbits + pad) // 8, "big")
    body = MAGIC + bytes([FORMAT_VERSION]) + head
    if metadata:
        body += _leb128(len(metadata)) + metadata
    body += payload
    return body + zlib.crc32(body).to_bytes(CRC_BYTES, "little")


class _BitReader:
    def __init__(self, data: bytes, start: int):
        self.data = data
        self.pos = start * 8

    def read(self, n: int) -> int:
        end = self.pos + n
        if end > len(self.data) * 8:
            raise TruncatedError("file ends inside the header")
        first, last = self.pos // 8, (end + 7) // 8
        chunk = int.from_bytes(self.data[first:last], "big")
        chunk >>= (last * 8 - end)
        self.pos = end
        return chunk & ((1 << n) - 1)


def unpack(data: bytes) -> Container:
    """Parse and validate a ``.nni`` file (no entropy decoding)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FormatError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise FormatError("not an .nni file (bad magic bytes)")
    if len(data) < len(MAGIC) + 1 + CRC_BYTES:
        raise TruncatedError(f"file is truncated ({len(data)} bytes)")
    version = data[len(MAGIC)]
    if version not in READ_VERSIONS:
        readable = f"versions {READ_VERSIONS[0]} to {READ_VERSIONS[-1]}"
        if version > FORMAT_VERSION:
            raise VersionError(
                f"file needs an nncodec decoder for format version {version}; "
                f"this one reads {readable}")
        raise VersionError(f"invalid format version {version}; this decoder reads {readable}")
    body, crc = data[:-CRC_BYTES], int.from_bytes(data[-CRC_BYTES:], "little")
    if zlib.crc32(body) != crc:
        raise ChecksumError("checksum mismatch: the file is corrupted or truncated")
    reader = _BitReader(body, len(MAGIC) + 1)
    fields = {}
    for f in HEADER_FIELDS:
        fields[f.name] = v = reader.read(f.bits)
        _check(f, v, f.name)
    n_layers = fields["n_hidden"] + 1
    per_layer = {f.name: [] for f in LAYER_FIELDS}
    for k in range(n_layers):
        for f in layer_fields(version):
            fields[f"{f.name}[{k}]"] = v = reader.read(f.bits)
            _check(f, v, f"{f.name}[{k}]")
            per_layer[f.name].append(v)
    wsteps, bsteps = per_layer["weight_step"], per_layer["bias_step"]
    rice = [0] * (2 * n_layers)
    if per_layer["weight_rice"]:
        rice[0::2], rice[1::2] = per_layer["weight_rice"], per_layer["bias_rice"]
    pad = (-reader.pos) % 8
    if reader.read(pad) if pad else 0:
        raise FormatError("header padding bits are not zero")
    since = STENCIL_SINCE.get(fields["stencil"], 1)
    if version < since:
        raise FormatError(f"header field stencil = {fields['stencil']} needs format version "
                          f"{since}; the file is version {version}")
    spec = fields_to_spec(fields)
    validate_spec(spec)
    pos = reader.pos // 8
    metadata = b""
    if fields["has_metadata"]:
        length, shift = 0, 0
        while True:
            if pos >= len(body):
                raise TruncatedError("file ends inside the metadata length")
            b = body[pos]
            pos += 1
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
            if shift > 35:
                raise FormatError("metadata length field is too long")
        if pos + length > len(body):
            raise TruncatedError(
                f"metadata section declares {length} bytes but only {len(body) - pos} remain")
        metadata = body[pos: pos + length]
        pos += length
        fields["metadata_bytes"] = length
    fields["payload_bytes"] = len(body) - pos
    return Container(spec, wsteps, bsteps, metadata, body[pos:], fields, version, rice)

"""The metadata section of an ``.nni`` file: ICC profile and Exif.

Layout (normative: ``spec/nni-format.md`` section 4): the section's content
is one zstandard frame whose decompressed data is one msgpack map from str
keys to values. Format versions 1 and 2 define two keys, both ``bin``:

* ``"icc"``: an ICC colour profile, the complete profile;
* ``"exif"``: Exif data as a TIFF structure (starting ``II*\\0`` or
  ``MM\\0*``), without the ``Exif\\0\\0`` prefix of JPEG's APP1 segment.

Decoding never depends on the metadata. The section counts in the byte
budget like everything else in the file.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Mapping

from .errors import FormatError, InputError, os_error_message
from .imageio import coded_channels

log = logging.getLogger("nncodec")

#: Keys defined by format version 1, in the order the reference writer
#: stores them (sorted), with what each holds.
KEYS = {
    "exif": "Exif data: a TIFF structure (II*\\0 or MM\\0*), without the Exif\\0\\0 prefix",
    "icc": "ICC colour profile, complete",
}
#: zstandard compression level of the reference writer.
ZSTD_LEVEL = 19
#: Largest decompressed map the reference reader accepts.
MAX_DECOMPRESSED = 16 << 20
#: Exif's APP1 prefix, which Pillow keeps in ``Image.info["exif"]``.
EXIF_PREFIX = b"Exif\x00\x00"
_ORIENTATION = 0x0112


def pack(meta: Mapping[str, bytes] | None) -> bytes:
    """The metadata section content for ``meta`` (``b""`` when there is nothing to store).

    Keys must be among :data:`KEYS` and values bytes; empty values are left
    out. The result is deterministic for a given zstandard library version.
    """
    if not meta:
        return b""
    if not isinstance(meta, Mapping):
        raise InputError(f"metadata must be a dict of bytes, got {type(meta).__name__}")
    clean = {}
    for key in sorted(meta):
        value = meta[key]
        if key not in KEYS:
            raise InputError(f"unknown metadata key {key!r}: use {', '.join(sorted(KEYS))}")
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise InputError(f"metadata {key!r} must be bytes, got {type(value).__name__}")
        value = bytes(value)
        if key == "exif" and value.startswith(EXIF_PREFIX):
            value = value[len(EXIF_PREFIX):]
        if value:
            clean[key] = value
    if not clean:
        return b""
    import msgpack
    import zstandard

    raw = msgpack.packb(clean, use_bin_type=True)
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=False,
                                    write_content_size=True, write_dict_id=False)
    return cctx.compress(raw)


def unpack(content: bytes) -> dict:
    """The map stored in a metadata section's content; ``{}`` for no content.

    Raises:
        FormatError: the content is not a zstandard frame holding a msgpack
            map with str keys, or it decompresses to more than
            :data:`MAX_DECOMPRESSED` bytes.
    """
    if not content:
        return {}
    import msgpack
    import zstandard

    content = bytes(content)
    try:
        frame = zstandard.get_frame_parameters(content)
        if frame.content_size != zstandard.CONTENTSIZE_UNKNOWN \
                and frame.content_size > MAX_DECOMPRESSED:
            raise FormatError(
                f"metadata section decompresses to more than {MAX_DECOMPRESSED} bytes")
        if frame.dict_id:
            raise FormatError("metadata section needs a zstandard dictionary")
        raw = zstandard.ZstdDecompressor().decompress(
            content, max_output_size=MAX_DECOMPRESSED, allow_extra_data=False)
    except zstandard.ZstdError as e:
        raise FormatError(f"metadata section is not one valid zstandard frame: {e}") from None
    try:
        meta = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        raise FormatError(f"metadata section is not a msgpack map: {e}") from None
    if not isinstance(meta, dict) or not all(isinstance(k, str) for k in meta):
        raise FormatError("metadata section is not a msgpack map with string keys")
    return meta


def read(data: bytes) -> dict:
    """The metadata map of an ``.nni`` file (checked as by the decoder)."""
    from . import format as fmt

    return unpack(fmt.unpack(data).metadata)


def _icc_colour_space(icc: bytes) -> bytes:
    """The data colour space signature of an ICC profile (header bytes 16..19)."""
    return icc[16:20] if len(icc) >= 20 else b""


def from_pil(im, channels: int | None = None) -> dict:
    """ICC profile and Exif of a PIL image, as they apply to the coded image.

    The encoder applies the Exif orientation to the pixels, so the stored
    Exif says orientation 1 (upright). A profile whose colour space is not
    the coded one (grey for ``channels`` = 1, RGB for 3, e.g. a CMYK
    profile of an image coded as RGB) is dropped with a log message.
    """
    meta = {}
    icc = im.info.get("icc_profile")
    if icc:
        want = {1: b"GRAY", 3: b"RGB "}.get(channels)
        space = _icc_colour_space(icc)
        if want is not None and space != want:
            log.info("dropping the ICC profile: its colour space %r is not the coded %r",
                     space.decode("latin-1"), want.decode("latin-1"))
        else:
            meta["icc"] = bytes(icc)
    try:
        exif = im.getexif()
        if len(exif):
            if exif.get(_ORIENTATION, 1) != 1:
                exif[_ORIENTATION] = 1
            raw = exif.tobytes()
            meta["exif"] = raw[len(EXIF_PREFIX):] if raw.startswith(EXIF_PREFIX) else raw
    except Exception as e:  # a broken Exif block is dropped, not fatal
        log.info("dropping unreadable Exif data: %s", e)
    return meta


def from_image(image) -> dict:
    """ICC profile and Exif of an image file (path or bytes) or PIL image.

    Arrays carry no metadata: the result is ``{}``.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, np.ndarray):
        return {}
    if isinstance(image, Image.Image):
        return from_pil(image, coded_channels(image.mode))
    try:
        src = io.BytesIO(bytes(image)) if isinstance(image, (bytes, bytearray)) \
            else os.fspath(image)
        with Image.open(src) as im:
            return from_pil(im, coded_channels(im.mode))
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise InputError(os_error_message(e, image)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        name = "<bytes>" if isinstance(image, (bytes, bytearray)) else image
        reason = "unknown image format" if isinstance(e, UnidentifiedImageError) else e
        raise InputError(f"cannot read image {name}: {reason}") from None


def pil_save_options(meta: Mapping, image_format: str) -> dict:
    """Keyword arguments of ``PIL.Image.save`` that write ``meta`` back.

    Only formats whose Pillow writer takes ``icc_profile`` and ``exif``
    (PNG, JPEG, WebP, AVIF, TIFF) get them; for others the result is empty.
    """
    if image_format not in ("PNG", "JPEG", "WEBP", "AVIF", "TIFF"):
        return {}
    opts = {}
    if isinstance(meta.get("icc"), bytes) and meta["icc"]:
        opts["icc_profile"] = meta["icc"]
    if isinstance(meta.get("exif"), bytes) and meta["exif"]:
        opts["exif"] = EXIF_PREFIX + meta["exif"]
    return opts

"""nncodec: images stored as tiny neural networks; decode at any size.

Public API::

    data = nncodec.encode(image, budget="2kb")      # bytes, len(data) <= budget
    pixels = nncodec.decode(data)                   # uint8 HxWx3 (HxW for grey)
    bigger = nncodec.decode(data, (1536, 1024))     # any size (width, height)
    nncodec.info(data)                              # header fields
    nncodec.register_pillow()                       # Image.open("x.nni") works

Heavy modules (numba kernels) load on first use, so ``import nncodec`` is cheap.
"""

from __future__ import annotations

from .errors import (BudgetError, ChecksumError, FormatError, ImageTooLargeError, InputError,
                     NniError, TruncatedError, VersionError)
from .progress import TrainingProgress

__version__ = "0.17.0"

__all__ = [
    "encode", "decode", "info", "check", "read_metadata", "image_metadata", "register_pillow",
    "NniError", "FormatError", "TruncatedError",
    "ChecksumError", "VersionError", "ImageTooLargeError", "BudgetError", "InputError",
    "TrainingProgress", "__version__",
]


def encode(image, /, *, budget, preset="default", seed=0, model="grid", progress=None,
           metadata=None):
    """Encode an image into ``.nni`` bytes no larger than ``budget``.

    Args:
        image: a path, a PIL image, or a uint8 array (HxWx3 or HxW).
        budget: bytes as an int or a string like ``"2kb"`` (1 k = 1024 bytes).
        preset: ``"fast"``, ``"default"`` or ``"slow"`` (time against quality;
            ``"slow"`` trains as ``"default"`` from ``seed`` and ``seed + 1``
            and keeps the better file, in about twice the time).
        seed: random seed; the same image, budget, preset and seed give the
            same bytes.
        model: ``"grid"`` (latent grids + MLP) or ``"mlp"`` (the plain
            coordinate MLP with Fourier features).
        progress: optional callable ``progress(step, total, info)``, called
            every 25 training steps; ``info`` is a :class:`TrainingProgress`
            (stage, PSNR estimate, estimated bytes, ``render()`` of the
            current model), also readable as a dict.
        metadata: optional dict with keys ``"icc"`` (ICC profile) and
            ``"exif"`` (Exif bytes) to store in the file, e.g.
            ``image_metadata(path)``. They count in the budget: the model
            gets what they leave.
    Raises:
        BudgetError: the budget is too small; ``.minimum`` holds the smallest
            budget that works.
        InputError: the image cannot be read or used.
    """
    from .encoder import encode_stats
    from .metadata import pack

    data, _ = encode_stats(image, budget=budget, preset=preset, seed=seed, model=model,
                           progress=progress, metadata=pack(metadata))
    return data


def decode(data, /, size=None, *, scale=None, max_pixels=...):
    """Decode ``.nni`` bytes to a uint8 array (HxWx3, or HxW for grey).

    Args:
        data: the file's bytes.
        size: ``(width, height)`` of the output, as in Pillow; default: the
            coded size. Larger sizes upscale, smaller ones integrate over each
            output pixel's footprint.
        scale: a positive scale factor instead of ``size``.
        max_pixels: cap on the pixels of the output and of the frame
            ``max(W, W') x max(H, H')`` that holds it and the coded image
            (default 89,478,485, as Pillow's ``MAX_IMAGE_PIXELS``); ``None``
            removes the cap. Over it: ``ImageTooLargeError``.
    """
    from . import decoder

    kw = {} if max_pixels is ... else {"max_pixels": max_pixels}
    return decoder.decode(data, size, scale=scale, **kw)


def info(data, /) -> dict:
    """Return the header fields of ``.nni`` bytes as a dict."""
    from . import decoder

    return decoder.info(data)


def read_metadata(data, /) -> dict:
    """The metadata stored in ``.nni`` bytes: ``{"icc": bytes, "exif": bytes}``, or fewer keys.

    Raises FormatError if the file or its metadata section is invalid.
    """
    from .metadata import read

    return read(data)


def image_metadata(image, /) -> dict:
    """ICC profile and Exif of an image (path, bytes or PIL image) to pass to :func:`encode`.

    The Exif orientation is set to 1, since the encoder stores the pixels
    upright; an ICC profile of another colour space than the coded one
    (RGB or grey) is left out.
    """
    from .metadata import from_image

    return from_image(image)


def register_pillow() -> None:
    """Register the ``.nni`` plugin with Pillow (as ``import nncodec.pillow`` does)."""
    from .pillow import register

    register()


def check(data, /) -> bool:
    """Return True if ``data`` starts with the ``.nni`` magic bytes."""
    from .format import MAGIC

    return bytes(data[: len(MAGIC)]) == MAGIC

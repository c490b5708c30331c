"""Decoder: parse, entropy decode, render at any size. Imports no encoder code."""

from __future__ import annotations

import math

import numpy as np

from . import format as fmt
from .entropy import decode_payload
from .errors import FormatError, ImageTooLargeError, InputError
from .field import ModelSpec, render

#: Default pixel cap of a decode, as Pillow's ``Image.MAX_IMAGE_PIXELS``.
#: Pass ``max_pixels=None`` to lift it. See :func:`decode`.
MAX_OUTPUT_PIXELS = 89_478_485


def param_steps(spec: ModelSpec, ws, bs) -> np.ndarray:
    """Quantization step of every network parameter, float64[P].

    Parameters come layer by layer, weights then biases; a layer's weights
    use ``STEP_TABLE[ws[k]]`` and its biases ``STEP_TABLE[bs[k]]``.
    """
    steps = []
    for k, (o, i) in enumerate(spec.layer_shapes()):
        steps += [np.full(o * i, fmt.STEP_TABLE[ws[k]]), np.full(o, fmt.STEP_TABLE[bs[k]])]
    return np.concatenate(steps) if steps else np.zeros(0)


def dequantize(spec: ModelSpec, q: np.ndarray, ws, bs) -> np.ndarray:
    """Network parameters from their integers and per-layer step indices."""
    return (q * param_steps(spec, ws, bs).astype(np.float32)).astype(np.float32)


def parse_ints(data):
    """Return ``(container, wq int64[P], latents int64[N])``: the coded integers."""
    c = fmt.unpack(data)
    spec = c.spec
    # Bytes past the end of the payload read as zero: the encoder strips
    # trailing zero bytes, so ``consumed`` may exceed the payload length.
    wq, lat, err, _ = decode_payload(c.payload, spec.group_sizes(), spec.level_dims(),
                                     c.version, c.rice)
    if err:
        raise FormatError("payload holds an impossible value (corrupted file)")
    return c, wq, lat


def parse(data):
    """Return ``(container, theta float32[P], latents float32[N])``."""
    c, wq, lat = parse_ints(data)
    return c, dequantize(c.spec, wq, c.weight_steps, c.bias_steps), lat.astype(np.float32)


def output_size(spec: ModelSpec, size=None, scale=None) -> tuple[int, int]:
    """Resolve ``size=(w, h)`` or ``scale`` into an output size."""
    if size is not None and scale is not None:
        raise InputError("give either size or scale, not both")
    if size is not None:
        try:
            w, h = (int(v) for v in size)
        except (TypeError, ValueError):
            raise InputError(f"size must be (width, height), got {size!r}") from None
        if w < 1 or h < 1:
            raise InputError(f"output size must be positive, got {w}x{h}")
        return w, h
    if scale is not None:
        try:
            s = float(scale)
        except (TypeError, ValueError):
            raise InputError(f"scale must be a positive number, got {scale!r}") from None
        if not math.isfinite(s) or s <= 0:
            raise InputError(f"scale must be a positive number, got {scale!r}")
        w = max(1, int(round(spec.width * s)))
        h = max(1, int(round(spec.height * s)))
        if w > 1 << 20 or h > 1 << 20:
            raise ImageTooLargeError(f"scale {s} gives an output of {w}x{h} pixels")
        return w, h
    return spec.width, spec.height


def decode(data, size=None, *, scale=None, max_pixels=MAX_OUTPUT_PIXELS) -> np.ndarray:
    """Decode an ``.nni`` file to uint8 ``HxWx3`` (or ``HxW`` for grey).

    Args:
        data: the file's bytes.
        size: output ``(width, height)``; default the coded size.
        scale: output scale factor instead of ``size`` (any positive real).
        max_pixels: refuse a decode whose frame ``max(W, W') x max(H, H')``
            has more pixels than this (None: no cap), for a coded ``W x H``
            decoded at ``W' x H'``; at the coded size or larger the frame is
            the output. The frame bounds the work and memory of a decode: a
            render takes fewer than 4 samples per frame pixel and there are
            at most about 4 latents per coded pixel, so a small file
            declaring a huge coded size cannot make even a thumbnail
            expensive.
    Raises:
        ImageTooLargeError: over the cap (checked before entropy decoding).
    """
    c = fmt.unpack(data)
    w, h = output_size(c.spec, size, scale)
    if max_pixels is not None:
        fw, fh = max(w, c.spec.width), max(h, c.spec.height)
        if fw * fh > max_pixels:
            if (fw, fh) == (w, h):
                what = f"output of {w}x{h} = {w * h} pixels"
            else:
                what = (f"decoding the {c.spec.width}x{c.spec.height} coded image at {w}x{h} "
                        f"spans {fw}x{fh} = {fw * fh} pixels, which")
            raise ImageTooLargeError(
                f"{what} exceeds the cap of {max_pixels} "
                "(pass max_pixels=None, or --max-pixels 0 on the command line, to allow it)")
    c, theta, lat = parse(data)
    out = render(c.spec, theta, lat, w, h)
    return out[:, :, 0] if c.spec.channels == 1 else out


def info(data) -> dict:
    """Header fields of an ``.nni`` file, plus derived facts.

    ``metadata_keys`` lists the keys of the metadata section (sorted, empty
    without one); it is None, and ``metadata_error`` says why, when the
    section cannot be read (decoding does not depend on it).
    """
    from .metadata import unpack as unpack_metadata

    c = fmt.unpack(data)
    d = {"format_version": c.version, "file_bytes": len(data)}
    d.update(c.fields)
    try:
        d["metadata_keys"] = sorted(unpack_metadata(c.metadata))
    except FormatError as e:
        d["metadata_keys"], d["metadata_error"] = None, str(e)
    s = c.spec
    d.update(width=s.width, height=s.height, channels=s.channels,
             grids=" ".join(f"{w}x{h}" for h, w in s.level_dims()) or "none",
             mlp=" -> ".join([str(s.n_inputs)] + [str(s.hidden_width)] * s.n_hidden + [str(s.channels)]),
             parameters=s.n_params, latents=s.n_latents,
             bpp=round(len(data) * 8.0 / (s.width * s.height), 5))
    return d

"""Turn what a user passes (path, PIL image, array) into a uint8 array.

Input policy (documented in the README):

* grey (``L``, ``1``, ``I;16``, ``I``, ``F``) is coded as one channel;
* every other mode is converted to RGB: palette images through their palette,
  CMYK and YCbCr through Pillow's conversion, and the alpha channel of RGBA / LA
  / PA images is discarded (the colour stored under it is coded as is);
* 16-bit and 32-bit samples are scaled to 8 bits (``round(v * 255 / max)``
  for the mode's nominal maximum);
* EXIF orientation is applied, so the coded image looks as viewers show it;
* at most 65,536 pixels a side and 2^26 in all (``ImageTooLargeError``),
  checked from a file's header before its pixels are decoded; an empty image,
  a missing or unreadable file or one Pillow cannot decode is an
  ``InputError`` naming the file.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np

from .errors import ImageTooLargeError, InputError, os_error_message

#: Largest input image the encoder accepts (width * height), and per side.
MAX_INPUT_PIXELS = 1 << 26
MAX_SIDE = 65536

#: PIL modes coded as one grey channel (every other mode is coded as RGB).
GREY_MODES = frozenset({"L", "1", "LA", "La", "I;16", "I;16B", "I;16L", "I;16N", "I", "F"})


def coded_channels(mode: str) -> int:
    """Channels the encoder codes for a PIL image of ``mode``: 1 or 3."""
    return 1 if mode in GREY_MODES else 3


def _from_pil(im) -> np.ndarray:
    from PIL import ImageOps

    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block must not stop the encode
        pass
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        a = np.asarray(im, dtype=np.float64) * (255.0 / 65535.0)
        return np.floor(a + 0.5).astype(np.uint8)
    if mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode == "I" and a.max(initial=0) > 255 else 255.0
        if mode == "F":
            top = 1.0 if a.max(initial=0) <= 1.0 else 255.0
        a = np.clip(a * (255.0 / top), 0, 255)
        return np.floor(a + 0.5).astype(np.uint8)
    if mode in ("L", "1", "LA", "La"):
        return np.asarray(im.convert("L"), dtype=np.uint8)
    if mode in ("P", "PA"):
        im = im.convert("RGBA")
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_image(image) -> np.ndarray:
    """Return uint8[H, W] (grey) or uint8[H, W, 3] from a path, bytes, PIL image or array."""
    if isinstance(image, np.ndarray):
        a = image
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        if a.ndim == 3 and a.shape[2] == 4:
            a = a[:, :, :3]
        if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
            raise InputError(f"image array must be HxW or HxWx3 (or HxWx4), got shape {a.shape}")
        if a.dtype == np.uint16:
            a = np.floor(a.astype(np.float64) * (255.0 / 65535.0) + 0.5).astype(np.uint8)
        elif a.dtype != np.uint8:
            raise InputError(f"image array must be uint8 or uint16, got {a.dtype}")
        out = np.ascontiguousarray(a)
    else:
        from PIL import Image, UnidentifiedImageError

        if isinstance(image, Image.Image):
            im = image
        else:
            name = "<bytes>" if isinstance(image, (bytes, bytearray)) else image
            try:
                if isinstance(image, (bytes, bytearray)):
                    src = io.BytesIO(image)
                else:
                    src = os.fspath(image)
                # Our limit is below Pillow's bomb warning: check the size
                # from the header ourselves, before any pixel is decoded.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                    with Image.open(src) as opened:
                        _check_size(*opened.size)
                        opened.load()
                        im = opened.copy()
            except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
                raise InputError(os_error_message(e, image)) from None
            except Image.DecompressionBombError:
                raise ImageTooLargeError(
                    f"input image {name} is larger than the encoder accepts "
                    f"({MAX_SIDE} pixels a side, {MAX_INPUT_PIXELS} pixels in all)") from None
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
                if isinstance(e, ImageTooLargeError):
                    raise
                reason = "unknown image format" if isinstance(e, UnidentifiedImageError) else e
                raise InputError(f"cannot read image {name}: {reason}") from None
        out = _from_pil(im)
    h, w = out.shape[:2]
    if h < 1 or w < 1:
        raise InputError(f"image is empty ({w}x{h})")
    _check_size(w, h)
    return out


def _check_size(w: int, h: int) -> None:
    if w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_INPUT_PIXELS:
        raise ImageTooLargeError(
            f"input image is {w}x{h}; the encoder accepts at most {MAX_SIDE} pixels a side "
            f"and {MAX_INPUT_PIXELS} pixels in all")

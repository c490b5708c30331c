"""Turn what a user passes (path, PIL image, array) into a uint8 array.

Input policy (documented in the README):

* grey (``L``, ``1``, ``I;16``, ``I``, ``F``) is coded as one channel;
* every other mode is converted to RGB: palette images through their palette,
  CMYK and YCbCr through Pillow's conversion, and the alpha channel of RGBA / LA
  / PA images is discarded (the colour stored under it is coded as is);
* 16-bit and 32-bit samples are scaled to 8 bits (``round(v * 255 / max)``
  for the mode's nominal maximum);
* EXIF orientation is applied, so the coded image looks as viewers show it.
"""

from __future__ import annotations

import io
import os

import numpy as np

from .errors import ImageTooLargeError, InputError, os_error_message

#: Largest input image the encoder accepts (width * height).
MAX_INPUT_PIXELS = 1 << 26
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
            try:
                if isinstance(image, (bytes, bytearray)):
                    src = io.BytesIO(image)
                else:
                    src = os.fspath(image)
                with Image.open(src) as opened:
                    if opened.size[0] * opened.size[1] > MAX_INPUT_PIXELS:
                        raise ImageTooLargeError(
                            f"input image is {opened.size[0]}x{opened.size[1]}, more than "
                            f"the encoder limit of {MAX_INPUT_PIXELS} pixels")
                    opened.load()
                    im = opened.copy()
            except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
                raise InputError(os_error_message(e, image)) from None
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
                if isinstance(e, ImageTooLargeError):
                    raise
                name = "<bytes>" if isinstance(image, (bytes, bytearray)) else image
                reason = "unknown image format" if isinstance(e, UnidentifiedImageError) else e
                raise InputError(f"cannot read image {name}: {reason}") from None
        out = _from_pil(im)
    h, w = out.shape[:2]
    if h < 1 or w < 1:
        raise InputError(f"image is empty ({w}x{h})")
    if w > 65536 or h > 65536 or w * h > MAX_INPUT_PIXELS:
        raise ImageTooLargeError(
            f"input image is {w}x{h}; the encoder accepts at most 65536 pixels a side "
            f"and {MAX_INPUT_PIXELS} pixels in all")
    return out

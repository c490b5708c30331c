"""Pillow plugin: ``import nncodec.pillow`` and Pillow opens and saves ``.nni`` files.

::

    import nncodec.pillow
    from PIL import Image

    im = Image.open("photo.nni")       # reads and checks the file, renders nothing
    im.thumbnail((256, 256))           # renders at the reduced size (draft)
    im.save("photo.png")
    Image.open("photo.png").save("again.nni", budget="4kb")

``Image.open`` checks the container (magic, version, CRC, header) and sets
``size`` and ``mode`` (``"RGB"`` or ``"L"``) and, when the file stores them,
``info["icc_profile"]`` and ``info["exif"]``; the pixels are rendered by
``load()``. ``draft(mode, size)`` (and so ``thumbnail()``) makes ``load()``
render at the smallest size with the same aspect ratio that covers ``size``:
the codec renders any size directly. Invalid files make ``Image.open``
raise ``PIL.UnidentifiedImageError``.

``save`` takes ``budget`` (required: an int or a string such as ``"4kb"``),
and optionally ``preset``, ``seed``, ``model``, ``progress`` as
:func:`nncodec.encode`, and ``icc_profile`` / ``exif`` bytes to store, or
``keep_metadata=True`` to store the image's own (all counted in the budget).

Importing this module imports neither numba nor the codec: they load when a
file is opened or saved.
"""

from __future__ import annotations

from PIL import Image, ImageFile

FORMAT = "NNI"
EXTENSION = ".nni"
MAGIC = b"\x89NNI"  # nncodec.format.MAGIC; checked equal by the tests


def _tile(extents: tuple[int, int, int, int]):
    """A one-tile list entry (Pillow >= 11 has a named tuple for it)."""
    make = getattr(ImageFile, "_Tile", None)
    args = (FORMAT, extents, 0, None)
    return make(*args) if make is not None else args


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == MAGIC


class NniImageFile(ImageFile.ImageFile):
    """An ``.nni`` file opened by Pillow."""

    format = FORMAT
    format_description = "nncodec neural image"

    def _open(self) -> None:
        from . import format as fmt
        from .errors import NniError
        from .metadata import EXIF_PREFIX, unpack

        data = self.fp.read()
        try:
            container = fmt.unpack(data)
        except NniError as e:
            # SyntaxError tells Pillow "not this format": Image.open then
            # raises UnidentifiedImageError.
            raise SyntaxError(f"not a valid .nni file: {e}") from None
        spec = container.spec
        self._coded_size = (spec.width, spec.height)
        self._size = self._coded_size
        self._mode = "RGB" if spec.channels == 3 else "L"
        try:
            meta = unpack(container.metadata)
        except NniError:
            meta = {}  # metadata never stop an image from opening
        if isinstance(meta.get("icc"), bytes):
            self.info["icc_profile"] = meta["icc"]
        if isinstance(meta.get("exif"), bytes):
            self.info["exif"] = EXIF_PREFIX + meta["exif"]
        self.tile = [_tile((0, 0) + self.size)]

    def draft(self, mode, size):
        """Render at the smallest size that keeps the aspect ratio and covers ``size``.

        Never enlarges; ``mode`` is ignored (the file's mode is kept). Returns
        ``(mode, box)`` as Pillow's ``Image.draft`` does, or None if nothing
        changed or the image is already loaded.
        """
        if len(self.tile) != 1 or not size:
            return None
        w0, h0 = self._coded_size
        rw, rh = max(1, int(size[0])), max(1, int(size[1]))
        if rw * h0 >= rh * w0:  # width decides: w = rw, h = ceil(h0 * rw / w0)
            w, h = rw, -(-h0 * rw // w0)
        else:
            w, h = -(-w0 * rh // h0), rh
        if w >= w0 or h >= h0:
            w, h = w0, h0
        if (w, h) == self.size:
            return None
        self._size = (w, h)
        self.tile = [_tile((0, 0, w, h))]
        return self.mode, (0, 0, w, h)


class NniDecoder(ImageFile.PyDecoder):
    """Renders an ``.nni`` file at the size of its tile."""

    _pulls_fd = True

    def decode(self, buffer):
        from . import decoder
        from .errors import NniError

        assert self.fd is not None and self.state.xsize > 0
        self.fd.seek(0)
        try:
            out = decoder.decode(self.fd.read(), (self.state.xsize, self.state.ysize),
                                 max_pixels=None)
        except NniError as e:
            raise OSError(f"cannot decode .nni file: {e}") from e
        self.set_as_raw(out.tobytes(), "RGB" if out.ndim == 3 else "L")
        return -1, 0


def _save(im: Image.Image, fp, filename) -> None:
    from . import encode

    info = im.encoderinfo
    if info.get("budget") is None:
        raise ValueError("saving an .nni file needs a budget: im.save(path, budget='4kb')")
    meta = {}
    if info.get("keep_metadata"):
        from .metadata import from_pil
        from .imageio import coded_channels

        meta = from_pil(im, coded_channels(im.mode))
    if info.get("icc_profile"):
        meta["icc"] = info["icc_profile"]
    if info.get("exif"):
        exif = info["exif"]
        meta["exif"] = exif.tobytes() if isinstance(exif, Image.Exif) else exif
    opts = {k: info[k] for k in ("preset", "seed", "model", "progress") if k in info}
    fp.write(encode(im, budget=info["budget"], metadata=meta, **opts))


def register() -> None:
    """Register the plugin with Pillow (idempotent)."""
    Image.register_open(FORMAT, NniImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_extension(FORMAT, EXTENSION)
    Image.register_decoder(FORMAT, NniDecoder)


register()

"""Training animations: frames of the model as it trains, as animated WebP / GIF or PNGs.

A :class:`FrameRecorder` is a progress callback (or is called from one): it
renders the live model through :meth:`TrainingProgress.render`, which never
touches the training state, so recording does not change the encoded bytes.
The last frame is the decoded file itself.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from .errors import InputError

#: Animation formats by file extension (Pillow writers with ``save_all``).
FORMATS = {".webp": "WEBP", ".gif": "GIF"}
#: At most this many training frames (plus the final decoded frame).
MAX_FRAMES = 60
#: Frames of larger images are rendered smaller, longest side this many pixels.
MAX_SIDE = 1024
#: Display time of each training frame and of the final frame, milliseconds.
FRAME_MS = 100
FINAL_MS = 1500


def animation_format(path: str | os.PathLike) -> str:
    """Pillow format name for an animation path; InputError for other extensions."""
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise InputError(f"cannot write an animation to {os.fspath(path)!r}: "
                         f"use a {' or '.join(FORMATS)} file")
    return FORMATS[ext]


def frame_size(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """``(width, height)`` scaled down so that the longest side is at most ``max_side``."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    return max(1, round(width * max_side / longest)), max(1, round(height * max_side / longest))


class FrameRecorder:
    """Collects rendered frames during training, at most ``max_frames`` of them."""

    def __init__(self, max_frames: int = MAX_FRAMES, max_side: int = MAX_SIDE):
        self.max_frames = max_frames
        self.max_side = max_side
        self.frames = []  # (label, uint8 array)
        self.size = None
        self._next = 0

    def __call__(self, info) -> None:
        """Record a frame from a :class:`~nncodec.progress.TrainingProgress` if one is due."""
        if info.step < self._next:
            return
        if self.size is None:
            self.size = frame_size(*info.size, self.max_side)
        every = max(1, -(-info.total // self.max_frames))
        self._next = info.step + every
        self.frames.append((f"step{info.step:06d}", info.render(self.size)))

    def finish(self, data: bytes) -> None:
        """Add the decoded ``.nni`` file as the last frame."""
        from .decoder import decode, output_size
        from .format import unpack

        if self.size is None:
            spec = unpack(data).spec
            self.size = frame_size(*output_size(spec), self.max_side)
        self.frames.append(("final", decode(data, self.size, max_pixels=None)))

    def animation(self, image_format: str) -> bytes:
        """The frames as one animated image of ``image_format`` (``"WEBP"`` or ``"GIF"``)."""
        from PIL import Image

        if not self.frames:
            raise InputError("no frames were recorded")
        images = [Image.fromarray(a) for _, a in self.frames]
        durations = [FRAME_MS] * (len(images) - 1) + [FINAL_MS]
        opts = {"quality": 90} if image_format == "WEBP" else {}
        buf = io.BytesIO()
        images[0].save(buf, format=image_format, save_all=True, append_images=images[1:],
                       duration=durations, loop=0, **opts)
        return buf.getvalue()

    def pngs(self) -> list[tuple[str, bytes]]:
        """``(file name, PNG bytes)`` of every frame, in order."""
        from PIL import Image

        out = []
        for k, (label, a) in enumerate(self.frames):
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, format="PNG")
            out.append((f"frame{k:04d}-{label}.png", buf.getvalue()))
        return out

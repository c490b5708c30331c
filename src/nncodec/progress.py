"""What the encoder reports while it trains: :class:`TrainingProgress`.

``nncodec.encode(..., progress=fn)`` calls ``fn(step, total, info)`` every
few training steps, with ``info`` a :class:`TrainingProgress`. This module
imports no numba code; :meth:`TrainingProgress.render` loads the renderer on
first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: Training stages: uniform noise on the latents, then straight-through rounding.
STAGES = ("noise", "ste")


@dataclass(frozen=True)
class TrainingProgress(Mapping):
    """One progress report of the training loop.

    Attributes:
        step: training steps done (1-based).
        total: training steps in all.
        stage: ``"noise"`` (noisy latents) or ``"ste"`` (hard rounding, the
            last part of training).
        psnr: PSNR estimate in dB of the model on this step's training pixels.
        bytes: coded size in bytes of the current model, header and metadata
            included (the final file is never larger than the budget).
        lam: the rate-distortion multiplier the rate controller has reached.

    It also reads as a mapping (``info["psnr"]``, ``dict(info)``), with the
    key ``"lambda"`` for :attr:`lam`. :meth:`render` is valid only during the
    callback: the model keeps training afterwards.
    """

    step: int
    total: int
    stage: str
    psnr: float
    bytes: int
    lam: float
    #: (spec, theta, latents, width, height) of the live model.
    state: tuple = field(default=(), repr=False, compare=False)

    _KEYS = ("step", "total", "stage", "psnr", "bytes", "lambda")

    @property
    def size(self) -> tuple[int, int]:
        """Coded ``(width, height)`` of the image being trained."""
        if not self.state:
            raise ValueError("this progress report carries no model")
        return self.state[3], self.state[4]

    def render(self, size: tuple[int, int] | None = None):
        """Render the current model (latents rounded), uint8 HxWx3 or HxW.

        Args:
            size: output ``(width, height)``; default the coded size. Any size
                works, as for :func:`nncodec.decode`.
        """
        if not self.state:
            raise ValueError("this progress report carries no model to render")
        import numpy as np

        from .field import render

        spec, theta, lat, w, h = self.state
        if size is not None:
            w, h = (int(v) for v in size)
        out = render(spec, theta, np.floor(lat + 0.5).astype(np.float32), w, h)
        return out[:, :, 0] if spec.channels == 1 else out

    def __getitem__(self, key: str):
        if key not in self._KEYS:
            raise KeyError(key)
        return self.lam if key == "lambda" else getattr(self, key)

    def __iter__(self):
        return iter(self._KEYS)

    def __len__(self) -> int:
        return len(self._KEYS)

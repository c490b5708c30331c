"""Rendering at other sizes agrees with the 1x decode: upscales box back, shrinks don't alias.

The field is sampled at output pixel centres. Rendered at xs, the s x s samples of an
output block sit symmetrically around the centre of the coded pixel they subdivide, so
their mean is close to the 1x sample (not equal: the field is not linear, so the mean of
the samples around a point is not its value at the point, most of all at sharp edges).
Shrunk by an integer factor k, each output pixel averages a k x k grid of samples that
falls exactly on the coded pixel centres, so the result is the box average of the
(unrounded) 1x render.

Tolerances were measured on four small encoded images (the ``encoded_rgb`` and
``encoded_grey`` fixtures, a 96x72 RGB image at 1,500 bytes and a noise-free 60x36 RGB
image at 400 bytes, all with the fast preset; remeasured with 0.11's on the three that the
tests use), against two deliberately broken renderers
(``_corner_sampling``, ``_point_sampling``) to show the checks can fail:

=====================  =====================  =====================  ====================
check                  correct renderer       broken renderer        tolerance
=====================  =====================  =====================  ====================
xs boxed back, s=2,3   MAD 0.40-0.79,         corners: MAD 1.18-2.45 MAD < 1.0,
                       PSNR 39.4-50.6 dB      PSNR 30.8-37.9 dB      PSNR > 38.5 dB
1/4 size vs box of 1x  MAD 0.23-0.27,         point sampling: MAD    MAD < 0.5,
                       PSNR 58.2-59.1 dB,     2.5-4.3, PSNR          PSNR > 50 dB
                       max 0.75               28.5-34.5 dB
=====================  =====================  =====================  ====================

(MAD: mean absolute difference in 8-bit levels over all pixels and channels; PSNR
between the two renders, peak 255.) The maximum difference of an upscale boxed back is
not bounded usefully: it reaches 22-27 levels at the sharp disc edges of the test images,
where the field changes by tens of levels within a quarter pixel.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import nncodec
from nncodec import field
from nncodec.encoder import encode_stats

# Tolerances; see the module docstring for the measurements behind them.
UP_MAD = 1.0
UP_PSNR = 38.5
DOWN_MAD = 0.5
DOWN_PSNR = 50.0


def box(a: np.ndarray, s: int) -> np.ndarray:
    """Mean over s x s blocks (float64); HxW or HxWxC, sides multiples of s."""
    a = a.astype(np.float64)
    h, w = a.shape[:2]
    return a.reshape(h // s, s, w // s, s, *a.shape[2:]).mean(axis=(1, 3))


def compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean absolute difference, PSNR in dB with peak 255) between two renders."""
    d = a.astype(np.float64) - b.astype(np.float64)
    mse = float(np.mean(d * d))
    return float(np.mean(np.abs(d))), (100.0 if mse == 0 else 10 * math.log10(255.0**2 / mse))


@pytest.fixture(scope="module")
def encoded_flat(make_image):
    """A noise-free 60x36 RGB image at 400 bytes (fast preset): sharp edges, flat areas."""
    data, _ = encode_stats(make_image(60, 36, 3, seed=3, noise=0.0), budget=400, preset="fast")
    return data


@pytest.fixture(params=["rgb", "grey", "flat"])
def coded(request, encoded_rgb, encoded_grey, encoded_flat):
    return {"rgb": encoded_rgb.data, "grey": encoded_grey.data, "flat": encoded_flat}[request.param]


def upscale_boxed_back(data: bytes, s: int):
    """(MAD, PSNR) of the xs render box-averaged by s against the 1x render."""
    one = nncodec.decode(data)
    h, w = one.shape[:2]
    up = nncodec.decode(data, (w * s, h * s))
    assert up.shape[:2] == (h * s, w * s)
    return compare(box(up, s), one)


def shrink_vs_box(data: bytes, k: int = 4):
    """(MAD, PSNR) of the 1/k render against the box average of the 1x render."""
    one = nncodec.decode(data)
    h, w = one.shape[:2]
    small = nncodec.decode(data, (w // k, h // k))
    return compare(small, box(one[: h // k * k, : w // k * k], k))


@pytest.mark.parametrize("s", [2, 3])
def test_upscale_boxed_back_matches_1x(coded, s):
    """Rendering at xs and averaging s x s blocks gives back the 1x render.

    Measured MAD 0.40-0.79 and PSNR 39.4-50.6 dB; sampling pixel corners instead of
    centres gives MAD >= 1.18 and PSNR <= 37.9 dB (``test_checks_catch_corner_sampling``).
    The lowest PSNR, 39.4 dB, is the noise-free image at x3 with the 1,000-step ``fast``
    of 0.11, whose sharper edges differ more between the x3 mean and the 1x sample (the
    800-step ``fast`` gave 41.8 and up).
    """
    mad, p = upscale_boxed_back(coded, s)
    assert mad < UP_MAD, f"mean abs diff {mad:.3f}"
    assert p > UP_PSNR, f"PSNR {p:.2f} dB"


def test_shrink_is_box_average_of_1x(coded):
    """A 1/4 render equals the box average of the 1x render up to rounding.

    Both average the same samples (the coded pixel centres); they differ only by where
    the rounding (and clipping) to 8 bits happens, so the difference is about a quarter
    of a level on average. Measured MAD 0.23-0.27, PSNR 58.2-59.1 dB; one sample per
    output pixel (aliasing) gives MAD >= 2.5, PSNR <= 34.5 dB.
    """
    mad, p = shrink_vs_box(coded)
    assert mad < DOWN_MAD, f"mean abs diff {mad:.3f}"
    assert p > DOWN_PSNR, f"PSNR {p:.2f} dB"


# ---------------------------------------------------------------------------
# The checks above can fail: two broken renderers, patched into field.py.


def _corner_sampling(monkeypatch):
    """Make rendering sample the top-left corner of each output (sub)pixel, not its centre."""
    taps = field.axis_taps

    def corner(n_out, n_coded, level, grid_len, sub=1, shift=0.0):
        return taps(n_out, n_coded, level, grid_len, sub, shift - 0.5 * n_coded / (n_out * sub))

    monkeypatch.setattr(field, "axis_taps", corner)


def _point_sampling(monkeypatch):
    """Make a smaller render take one sample per output pixel (no supersampling)."""
    monkeypatch.setattr(field, "supersampling", lambda spec, w, h: (1, 1))


def test_checks_catch_corner_sampling(encoded_rgb, monkeypatch):
    _corner_sampling(monkeypatch)
    for s in (2, 3):
        mad, p = upscale_boxed_back(encoded_rgb.data, s)
        assert mad >= UP_MAD and p <= UP_PSNR, (s, mad, p)


def test_checks_catch_point_sampling(encoded_rgb, monkeypatch):
    _point_sampling(monkeypatch)
    mad, p = shrink_vs_box(encoded_rgb.data)
    assert mad >= DOWN_MAD and p <= DOWN_PSNR, (mad, p)

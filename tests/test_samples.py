"""Golden decoder tests: every shipped sample keeps decoding to its stored PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nncodec

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

# (file, output size or None for 1x, stored render)
CASES = [
    ("kodim23-1kb.nni", None, "kodim23-1kb.decoded.png"),
    ("kodim23-1kb.nni", 2.0, "kodim23-1kb.x2.png"),
    ("kodim03-grey-400b.nni", None, "kodim03-grey-400b.decoded.png"),
]


@pytest.mark.parametrize("nni,scale,png", CASES)
def test_sample_decodes_to_stored_png(nni, scale, png):
    data = (SAMPLES / nni).read_bytes()
    out = nncodec.decode(data, scale=scale)
    with Image.open(SAMPLES / png) as im:
        ref = np.asarray(im)
    assert out.shape == ref.shape
    # Rendering is float: allow 1 LSB on a few samples across platforms.
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert diff.max() <= 1
    assert np.count_nonzero(diff) <= max(1, diff.size // 1000)


@pytest.mark.parametrize("nni,source,budget", [
    ("kodim23-1kb.nni", "kodim23-384x256.png", 1024),
    ("kodim03-grey-400b.nni", "kodim03-grey-192x128.png", 400),
])
def test_sample_within_budget_and_close_to_source(nni, source, budget):
    data = (SAMPLES / nni).read_bytes()
    assert len(data) <= budget
    with Image.open(SAMPLES / source) as im:
        src = np.asarray(im).astype(float)
    out = nncodec.decode(data).astype(float)
    psnr = 10 * np.log10(255.0 ** 2 / np.mean((out - src) ** 2))
    assert psnr > 20.0

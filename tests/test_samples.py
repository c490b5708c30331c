"""Golden decoder tests: every shipped sample keeps decoding to its stored PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nncodec

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
VECTORS = Path(__file__).resolve().parent / "vectors"

# (file, output size or None for 1x, stored render). The samples are files of
# the current format version; tests/vectors keeps files of earlier versions,
# which every later decoder must go on decoding the same way.
CASES = [
    (SAMPLES / "kodim23-1kb.nni", None, SAMPLES / "kodim23-1kb.decoded.png"),
    (SAMPLES / "kodim23-1kb.nni", 2.0, SAMPLES / "kodim23-1kb.x2.png"),
    (SAMPLES / "kodim03-grey-400b.nni", None, SAMPLES / "kodim03-grey-400b.decoded.png"),
    (SAMPLES / "kodim03-grey-1kb.nni", None, SAMPLES / "kodim03-grey-1kb.decoded.png"),
    (VECTORS / "v4-kodim23-1kb.nni", None, VECTORS / "v4-kodim23-1kb.decoded.png"),
    (VECTORS / "v4-kodim23-1kb.nni", 2.0, VECTORS / "v4-kodim23-1kb.x2.png"),
    (VECTORS / "v4-kodim03-grey-400b.nni", None, VECTORS / "v4-kodim03-grey-400b.decoded.png"),
    (VECTORS / "v3-kodim23-1kb.nni", None, VECTORS / "v3-kodim23-1kb.decoded.png"),
    (VECTORS / "v3-kodim23-1kb.nni", 2.0, VECTORS / "v3-kodim23-1kb.x2.png"),
    (VECTORS / "v3-kodim03-grey-400b.nni", None, VECTORS / "v3-kodim03-grey-400b.decoded.png"),
    (VECTORS / "v2-kodim23-1kb.nni", None, VECTORS / "v2-kodim23-1kb.decoded.png"),
    (VECTORS / "v2-kodim23-1kb.nni", 2.0, VECTORS / "v2-kodim23-1kb.x2.png"),
    (VECTORS / "v2-kodim03-grey-400b.nni", None, VECTORS / "v2-kodim03-grey-400b.decoded.png"),
    (VECTORS / "v1-kodim23-1kb.nni", None, VECTORS / "v1-kodim23-1kb.decoded.png"),
    (VECTORS / "v1-kodim03-grey-400b.nni", None, VECTORS / "v1-kodim03-grey-400b.decoded.png"),
]


@pytest.mark.parametrize("nni,scale,png", CASES, ids=lambda v: getattr(v, "name", str(v)))
def test_sample_decodes_to_stored_png(nni, scale, png):
    data = nni.read_bytes()
    out = nncodec.decode(data, scale=scale)
    with Image.open(png) as im:
        ref = np.asarray(im)
    assert out.shape == ref.shape
    # Rendering is float: allow 1 LSB on a few samples across platforms.
    diff = np.abs(out.astype(int) - ref.astype(int))
    assert diff.max() <= 1
    assert np.count_nonzero(diff) <= max(1, diff.size // 1000)


def test_vectors_cover_every_readable_version():
    from nncodec import format as fmt

    versions = {nncodec.info(p.read_bytes())["format_version"]
                for p, _, _ in CASES}
    assert versions == set(fmt.READ_VERSIONS)
    assert {nncodec.info(p.read_bytes())["format_version"]
            for p in SAMPLES.glob("*.nni")} == {fmt.FORMAT_VERSION}
    # Every stencil the encoder picks is in some file (stencil 1, which it
    # never picks, is spec/nni-format.md's worked example, tests/test_spec.py).
    from nncodec import encoder

    picked = {encoder.PLAIN_STENCIL, encoder.DEFAULT_STENCIL, encoder.FULL_GRID_STENCIL}
    assert picked <= {nncodec.info(p.read_bytes())["stencil"] for p, _, _ in CASES}


@pytest.mark.parametrize("nni,source,budget", [
    (SAMPLES / "kodim23-1kb.nni", "kodim23-384x256.png", 1024),
    (SAMPLES / "kodim03-grey-400b.nni", "kodim03-grey-192x128.png", 400),
    (SAMPLES / "kodim03-grey-1kb.nni", "kodim03-grey-192x128.png", 1024),
    (VECTORS / "v4-kodim23-1kb.nni", "kodim23-384x256.png", 1024),
    (VECTORS / "v4-kodim03-grey-400b.nni", "kodim03-grey-192x128.png", 400),
    (VECTORS / "v3-kodim23-1kb.nni", "kodim23-384x256.png", 1024),
    (VECTORS / "v3-kodim03-grey-400b.nni", "kodim03-grey-192x128.png", 400),
    (VECTORS / "v2-kodim23-1kb.nni", "kodim23-384x256.png", 1024),
    (VECTORS / "v2-kodim03-grey-400b.nni", "kodim03-grey-192x128.png", 400),
    (VECTORS / "v1-kodim23-1kb.nni", "kodim23-384x256.png", 1024),
    (VECTORS / "v1-kodim03-grey-400b.nni", "kodim03-grey-192x128.png", 400),
], ids=lambda v: getattr(v, "name", str(v)))
def test_sample_within_budget_and_close_to_source(nni, source, budget):
    data = nni.read_bytes()
    assert len(data) <= budget
    with Image.open(SAMPLES / source) as im:
        src = np.asarray(im).astype(float)
    out = nncodec.decode(data).astype(float)
    psnr = 10 * np.log10(255.0 ** 2 / np.mean((out - src) ** 2))
    assert psnr > 20.0

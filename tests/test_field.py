"""field.py: taps, ModelSpec geometry, and rendering against the naive reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

import naive
from nncodec import field
from nncodec.field import ModelSpec


def random_params(spec: ModelSpec, seed: int):
    """Random parameters giving colours that mostly stay inside [0, 1]."""
    rng = np.random.default_rng(seed)
    parts = []
    shapes = spec.layer_shapes()
    for k, (o, i) in enumerate(shapes):
        last = k == len(shapes) - 1
        parts.append(rng.normal(0.0, (0.35 if last else 1.0) / math.sqrt(max(i, 1)), o * i))
        parts.append(rng.uniform(0.3, 0.6, o) if last else rng.normal(0.0, 0.2, o))
    theta = np.concatenate(parts).astype(np.float32)
    lat = rng.normal(0.0, 1.5, spec.n_latents).astype(np.float32)
    return theta, lat


# (spec, out_w, out_h): grey / colour, several levels, first_level > 0,
# Fourier features, up- and downscaling, odd sizes.
CASES = [
    (ModelSpec(13, 9, 1, 1, 0, 0, 0, 1), 13, 9),
    (ModelSpec(13, 9, 3, 3, 0, 0, 1, 5), 13, 9),
    (ModelSpec(17, 11, 3, 3, 1, 2, 2, 6), 17, 11),
    (ModelSpec(17, 11, 3, 2, 1, 1, 1, 4), 31, 23),  # upscale, non-integer
    (ModelSpec(12, 10, 1, 2, 0, 3, 2, 4), 36, 30),  # upscale x3, grey
    (ModelSpec(24, 16, 3, 3, 0, 1, 2, 5), 12, 8),  # downscale x2: 2x2 samples
    (ModelSpec(24, 16, 3, 2, 0, 0, 1, 6), 7, 5),  # downscale, 4x4 samples
    (ModelSpec(23, 15, 1, 4, 0, 2, 1, 3), 10, 4),  # downscale, 3x4 samples, grey
    (ModelSpec(1, 1, 3, 1, 0, 0, 1, 3), 5, 3),  # 1x1 coded image
    (ModelSpec(2, 23, 3, 3, 0, 1, 1, 4), 3, 11),  # thin strip, mixed scaling
    (ModelSpec(19, 7, 3, 0, 0, 4, 2, 8), 19, 7),  # no grids: coordinate MLP
    (ModelSpec(40, 3, 3, 3, 2, 0, 3, 4), 20, 6),  # first_level 2, 3 hidden
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_render_matches_naive(case):
    spec, out_w, out_h = CASES[case]
    theta, lat = random_params(spec, seed=case)
    got = field.render(spec, theta, lat, out_w, out_h)
    want = naive.render(spec, theta, lat, out_w, out_h)
    assert got.shape == (out_h, out_w, spec.channels)
    assert got.dtype == np.uint8
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1, f"max abs diff {diff.max()}"
    # The case must exercise something: not a flat or fully clipped image.
    assert np.ptp(want) > 5


@pytest.mark.parametrize("band_rows", [1, 2, 3, 5])
def test_render_bands_do_not_change_result(band_rows):
    spec = ModelSpec(15, 13, 3, 3, 0, 1, 1, 5)
    theta, lat = random_params(spec, seed=7)
    whole = field.render(spec, theta, lat, 15, 13)
    for w, h in ((15, 13), (7, 6), (22, 17)):
        ref = field.render(spec, theta, lat, w, h, band_rows=1000)
        np.testing.assert_array_equal(field.render(spec, theta, lat, w, h, band_rows=band_rows),
                                      ref)
    np.testing.assert_array_equal(field.render(spec, theta, lat, 15, 13, band_rows=band_rows),
                                  whole)


def test_render_kernel_direct_matches_naive():
    """Call the ``_render`` kernel with hand-built tables (supersampled 2x3)."""
    spec = ModelSpec(12, 9, 3, 2, 0, 1, 1, 4)
    theta, lat = random_params(spec, seed=11)
    out_w, out_h = 6, 3
    sx, sy = field.supersampling(spec, out_w, out_h)
    assert (sx, sy) == (2, 3)
    taps = field.make_taps(spec, out_w, out_h, sx, sy)
    offsets, dims = field.level_table(spec)
    out = np.zeros((out_h, out_w, 3), np.uint8)
    field._render(lat, offsets, dims, taps.ri, taps.rw, taps.ci, taps.cw, taps.fr, taps.fc,
                  theta, field.layer_table(spec), 3, sy, sx, out)
    want = naive.render(spec, theta, lat, out_w, out_h)
    assert np.abs(out.astype(int) - want.astype(int)).max() <= 1


def test_render_clips_to_valid_range():
    spec = ModelSpec(6, 5, 3, 0, 0, 0, 0, 1)
    # No inputs: the colour is the output bias. Y=2 (white, clipped), Co=Cg=0.
    theta = np.array([2.0, 0.0, 0.0], np.float32)
    out = field.render(spec, theta, np.zeros(0, np.float32), 6, 5)
    assert (out == 255).all()
    theta = np.array([-1.0, 0.0, 0.0], np.float32)
    assert (field.render(spec, theta, np.zeros(0, np.float32), 6, 5) == 0).all()
    theta = np.array([0.5, 0.25, 0.0], np.float32)  # R = .75, G = .5, B = .25
    out = field.render(spec, theta, np.zeros(0, np.float32), 3, 2)
    np.testing.assert_array_equal(out[1, 2], [191, 128, 64])


# ---------------------------------------------------------------------------
# Taps.


TAP_CASES = [(10, 10, 0, 10, 1), (10, 10, 1, 5, 1), (7, 10, 2, 3, 2), (31, 10, 0, 10, 1),
             (3, 40, 3, 5, 4), (5, 1, 0, 1, 1), (64, 64, 6, 1, 1), (9, 23, 1, 12, 3)]


@pytest.mark.parametrize("n_out,n_coded,level,grid_len,sub", TAP_CASES)
def test_axis_taps_partition_of_unity(n_out, n_coded, level, grid_len, sub):
    idx, w = field.axis_taps(n_out, n_coded, level, grid_len, sub)
    assert idx.shape == w.shape == (n_out * sub, 4)
    assert idx.dtype == np.int32 and w.dtype == np.float32
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    assert (w >= 0).all()
    assert idx.min() >= 0 and idx.max() <= grid_len - 1


@pytest.mark.parametrize("n_out,n_coded,level,grid_len,sub", TAP_CASES)
def test_axis_taps_match_bspline_definition(n_out, n_coded, level, grid_len, sub):
    """Taps applied to a random grid line equal the B-spline sampled at each u."""
    rng = np.random.default_rng(level * 100 + n_out)
    line = rng.normal(size=grid_len)
    idx, w = field.axis_taps(n_out, n_coded, level, grid_len, sub)
    n = n_out * sub
    for s in range(n):
        u = (s + 0.5) * n_coded / n
        want = naive.sample_line(line, u / 2 ** level - 0.5)
        got = float(np.dot(w[s].astype(np.float64), line[idx[s]]))
        assert got == pytest.approx(want, abs=1e-6)


def test_bspline_interpolates_constant_and_linear_exactly():
    """The cubic B-spline reproduces affine functions away from the edges."""
    idx, w = field.axis_taps(40, 40, 1, 20, 1)
    line = 3.0 + 0.5 * np.arange(20)
    vals = (w.astype(np.float64) * line[idx]).sum(axis=1)
    u = np.arange(40) + 0.5
    g = u / 2 - 0.5
    inner = (g >= 1) & (g <= 18)
    np.testing.assert_allclose(vals[inner], 3.0 + 0.5 * g[inner], atol=1e-5)


def test_fourier_table():
    t = field.fourier_table(6, 12, 3, sub=2)
    assert t.shape == (12, 6)
    u = (np.arange(12) + 0.5) * 12 / 12
    for m in range(3):
        np.testing.assert_allclose(t[:, 2 * m], np.sin(np.pi * 2 ** m * u / 12), atol=1e-6)
        np.testing.assert_allclose(t[:, 2 * m + 1], np.cos(np.pi * 2 ** m * u / 12), atol=1e-6)
    assert field.fourier_table(5, 5, 0).shape == (5, 0)


# ---------------------------------------------------------------------------
# ModelSpec geometry.


@pytest.mark.parametrize("w,h,levels,first", [(100, 37, 4, 1), (64, 48, 7, 0), (1, 1, 3, 0),
                                              (3, 200, 7, 0), (65, 33, 2, 5)])
def test_level_dims(w, h, levels, first):
    spec = ModelSpec(w, h, 3, levels, first, 0, 1, 4)
    want = [(math.ceil(h / 2 ** k), math.ceil(w / 2 ** k)) for k in range(first, first + levels)]
    assert spec.level_dims() == want
    assert spec.n_latents == sum(r * c for r, c in want)
    offsets, dims = field.level_table(spec)
    assert offsets[0] == 0 and offsets[-1] == spec.n_latents
    assert [tuple(d) for d in dims.tolist()] == want


def test_level_dims_example():
    spec = ModelSpec(100, 37, 3, 4, 1, 0, 0, 1)
    assert spec.level_dims() == [(19, 50), (10, 25), (5, 13), (3, 7)]


@pytest.mark.parametrize("levels,fourier,hidden,width,channels",
                         [(3, 0, 2, 16, 3), (0, 6, 3, 5, 3), (2, 1, 0, 7, 1), (7, 15, 1, 64, 1)])
def test_layer_shapes(levels, fourier, hidden, width, channels):
    spec = ModelSpec(10, 10, channels, levels, 0, fourier, hidden, width)
    nin = levels + 4 * fourier
    assert spec.n_inputs == nin
    dims = [nin] + [width] * hidden + [channels]
    want = [(dims[k + 1], dims[k]) for k in range(hidden + 1)]
    assert spec.layer_shapes() == want
    assert field.layer_table(spec).tolist() == [list(s) for s in want]
    assert spec.group_sizes() == [x for o, i in want for x in (o * i, o)]
    assert spec.n_params == sum(o * i + o for o, i in want)


def test_layer_shapes_example():
    spec = ModelSpec(10, 10, 3, 6, 0, 0, 2, 16)
    assert spec.layer_shapes() == [(16, 6), (16, 16), (3, 16)]
    assert spec.n_params == 16 * 6 + 16 + 16 * 16 + 16 + 3 * 16 + 3


@pytest.mark.parametrize("coded,out,want", [((64, 48), (64, 48), (1, 1)),
                                            ((64, 48), (128, 96), (1, 1)),
                                            ((64, 48), (32, 24), (2, 2)),
                                            ((64, 48), (10, 7), (7, 7)),
                                            ((64, 48), (65, 47), (1, 2))])
def test_supersampling(coded, out, want):
    spec = ModelSpec(coded[0], coded[1], 3, 1, 0, 0, 0, 1)
    assert field.supersampling(spec, *out) == want

"""field.py: taps, ModelSpec geometry, and rendering against the naive reference."""

from __future__ import annotations

import dataclasses
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
    (ModelSpec(17, 11, 3, 3, 1, 1, 1, 5, n_chroma=2), 17, 11),  # extra grids
    (ModelSpec(24, 16, 3, 4, 0, 0, 1, 6, n_chroma=4), 7, 5),  # extra grids at every level
    (ModelSpec(12, 10, 1, 2, 0, 0, 2, 4, n_chroma=1), 30, 25),  # grey with extra grids
]


STENCIL_IDS = sorted(naive.STENCILS)


def test_stencils_match_definition():
    """field's stencils are the documented table (naive.STENCILS, written from the spec)."""
    assert sorted(field.STENCILS) == STENCIL_IDS == [0, 1, 2, 3]
    for k in STENCIL_IDS:
        for g in range(12):
            assert [tuple(p) for p in field.grid_points(k, g)] == naive.STENCILS[k](g)
        spec = ModelSpec(9, 9, 3, 4, 0, 1, 1, 4, stencil=k, n_chroma=2)
        assert spec.grid_features() == naive.grid_features(spec)


@pytest.mark.parametrize("stencil", STENCIL_IDS)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_render_matches_naive(case, stencil):
    spec, out_w, out_h = CASES[case]
    spec = dataclasses.replace(spec, stencil=stencil)
    theta, lat = random_params(spec, seed=case)
    got = field.render(spec, theta, lat, out_w, out_h)
    want = naive.render(spec, theta, lat, out_w, out_h)
    assert got.shape == (out_h, out_w, spec.channels)
    assert got.dtype == np.uint8
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1, f"max abs diff {diff.max()}"
    # The case must exercise something: not a flat or fully clipped image.
    assert np.ptp(want) > 5


@pytest.mark.parametrize("stencil", STENCIL_IDS)
@pytest.mark.parametrize("band_rows", [1, 2, 3, 5])
def test_render_bands_do_not_change_result(band_rows, stencil):
    spec = ModelSpec(15, 13, 3, 3, 0, 1, 1, 5, stencil=stencil)
    theta, lat = random_params(spec, seed=7)
    whole = field.render(spec, theta, lat, 15, 13)
    for w, h in ((15, 13), (7, 6), (22, 17)):
        ref = field.render(spec, theta, lat, w, h, band_rows=1000)
        np.testing.assert_array_equal(field.render(spec, theta, lat, w, h, band_rows=band_rows),
                                      ref)
    np.testing.assert_array_equal(field.render(spec, theta, lat, 15, 13, band_rows=band_rows),
                                  whole)


@pytest.mark.parametrize("stencil", STENCIL_IDS)
def test_render_kernel_direct_matches_naive(stencil):
    """Call the ``_render`` kernel with hand-built tables (supersampled 2x3)."""
    spec = ModelSpec(12, 9, 3, 2, 0, 1, 1, 4, stencil=stencil)
    theta, lat = random_params(spec, seed=11)
    out_w, out_h = 6, 3
    sx, sy = field.supersampling(spec, out_w, out_h)
    assert (sx, sy) == (2, 3)
    taps = field.make_taps(spec, out_w, out_h, sx, sy)
    offsets, dims = field.level_table(spec)
    out = np.zeros((out_h, out_w, 3), np.uint8)
    C, coff = field.column_pass(lat, offsets, dims, taps)
    field._render(C, coff, out_w * sx, taps.ri, taps.rw, taps.fr, taps.fc, taps.ft, theta,
                  field.layer_table(spec), 3, sy, sx, out)
    want = naive.render(spec, theta, lat, out_w, out_h)
    assert np.abs(out.astype(int) - want.astype(int)).max() <= 1
    assert np.ptp(want) > 5


# (spec, out_w, out_h, sx, sy): coded size, upscaled, supersampled, 1x1, no grids.
FEATURE_CASES = [
    (ModelSpec(13, 9, 3, 3, 0, 2, 1, 4), 13, 9, 1, 1),
    (ModelSpec(17, 11, 1, 2, 1, 1, 1, 4), 31, 23, 1, 1),
    (ModelSpec(24, 16, 3, 3, 0, 0, 1, 4), 7, 5, 4, 4),
    (ModelSpec(1, 1, 3, 2, 0, 1, 1, 4), 3, 2, 1, 1),
    (ModelSpec(40, 3, 3, 3, 2, 0, 1, 4), 20, 6, 2, 1),
    (ModelSpec(9, 7, 3, 0, 0, 3, 1, 4), 9, 7, 1, 1),
    (ModelSpec(19, 13, 3, 3, 0, 1, 1, 4, n_chroma=2), 10, 7, 2, 2),
]


@pytest.mark.parametrize("stencil", STENCIL_IDS)
@pytest.mark.parametrize("case", range(len(FEATURE_CASES)))
def test_features_block_matches_naive(case, stencil):
    """Every feature of every sample, in order: the grids in coding order,
    each at its stencil points; the 4 M Fourier features follow."""
    spec, out_w, out_h, sx, sy = FEATURE_CASES[case]
    spec = dataclasses.replace(spec, stencil=stencil)
    n_grids = spec.n_levels + 2 * spec.n_chroma
    n_points = sum(len(naive.STENCILS[stencil](g)) for g in range(n_grids))
    assert spec.n_inputs == naive.n_inputs(spec) == n_points + 4 * spec.n_fourier
    _, lat = random_params(spec, seed=40 + case)
    taps = field.make_taps(spec, out_w, out_h, sx, sy)
    offsets, dims = field.level_table(spec)
    grids = naive.split_latents(spec, lat)
    C, coff = field.column_pass(lat, offsets, dims, taps)
    nr, nc = out_h * sy, out_w * sx
    samples = [(r, c) for r in range(nr) for c in range(nc)]
    for b0 in range(0, len(samples), field.BLOCK):
        chunk = samples[b0: b0 + field.BLOCK]
        rows = np.zeros(field.BLOCK, np.int64)
        cols = np.zeros(field.BLOCK, np.int64)
        rows[:len(chunk)] = [r for r, _ in chunk]
        cols[:len(chunk)] = [c for _, c in chunk]
        X = np.full((spec.n_inputs, field.BLOCK), np.nan, np.float32)
        field._features_block(C, coff, nc, taps.ri, taps.rw, taps.fr, taps.fc, taps.ft, rows,
                              cols, len(chunk), X)
        for b, (r, c) in enumerate(chunk):
            u = (c + 0.5) * spec.width / nc
            v = (r + 0.5) * spec.height / nr
            want = naive.features(spec, grids, u, v)
            np.testing.assert_allclose(X[:, b], want, rtol=1e-5, atol=1e-5)
        assert np.isnan(X[:, len(chunk):]).all()  # lanes past nb are not written


@pytest.mark.parametrize("stencil", [1, 2])
def test_stencil_centre_features_equal_stencil_0(stencil):
    """With zero weights on the neighbour features, stencils 1 and 2 render as
    stencil 0 (bit for bit: the same sums in the same order)."""
    s0 = ModelSpec(17, 11, 3, 3, 0, 1, 2, 5, n_chroma=1)
    s1 = dataclasses.replace(s0, stencil=stencil)
    theta0, lat = random_params(s0, seed=3)
    G = s0.n_grids
    w0 = theta0[: 5 * s0.n_inputs].reshape(5, s0.n_inputs)
    w1 = np.zeros((5, s1.n_inputs), np.float32)
    feats = s1.grid_features()
    centres = [f for f, (g, dy, dx) in enumerate(feats) if (dy, dx) == (0, 0)]
    assert len(centres) == G and len(feats) > G
    w1[:, centres] = w0[:, :G]
    w1[:, len(feats):] = w0[:, G:]  # Fourier features
    theta1 = np.concatenate([w1.ravel(), theta0[5 * s0.n_inputs:]])
    assert theta1.size == s1.n_params
    for size in ((17, 11), (6, 4), (40, 25)):
        a = field.render(s0, theta0, lat, *size)
        np.testing.assert_array_equal(field.render(s1, theta1, lat, *size), a)
        assert np.ptp(a) > 5


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


SHIFTS = [-1.0, 1.0, -2.5, 0.25, 3.0]


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("n_out,n_coded,level,grid_len,sub", TAP_CASES)
def test_axis_taps_shifted_match_bspline_definition(n_out, n_coded, level, grid_len, sub, shift):
    """``shift`` (coded pixels) moves every sample; positions past the ends clamp."""
    rng = np.random.default_rng(level * 100 + n_out + 7)
    line = rng.normal(size=grid_len)
    idx, w = field.axis_taps(n_out, n_coded, level, grid_len, sub, shift)
    assert idx.shape == w.shape == (n_out * sub, 4)
    assert idx.dtype == np.int32 and w.dtype == np.float32
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    assert (w >= 0).all() and idx.min() >= 0 and idx.max() <= grid_len - 1
    n = n_out * sub
    for s in range(n):
        u = (s + 0.5) * n_coded / n + shift
        want = naive.sample_line(line, u / 2 ** level - 0.5)
        got = float(np.dot(w[s].astype(np.float64), line[idx[s]]))
        assert got == pytest.approx(want, abs=1e-6)


def test_axis_taps_shift_zero_is_default():
    a = field.axis_taps(9, 23, 1, 12, 3)
    b = field.axis_taps(9, 23, 1, 12, 3, 0.0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("stencil", STENCIL_IDS)
def test_make_taps_layout(stencil):
    """One axis table per distinct shift, in sorted order; ``ft`` indexes them
    and names each feature's grid."""
    spec = ModelSpec(23, 15, 3, 3, 1, 2, 1, 4, stencil=stencil, n_chroma=2)
    out_w, out_h, sx, sy = 10, 4, 3, 4
    taps = field.make_taps(spec, out_w, out_h, sx, sy)
    feats = naive.grid_features(spec)
    shifts = sorted({d for _, dy, dx in feats for d in (dy, dx)})
    T, L = len(shifts), spec.n_levels + 2 * spec.n_chroma
    assert T == {0: 1, 1: 3, 2: 3, 3: 3}[stencil]
    assert taps.ri.shape == taps.rw.shape == (T, L, out_h * sy, 4)
    assert taps.ci.shape == taps.cw.shape == (T, L, out_w * sx, 4)
    assert taps.ri.dtype == taps.ci.dtype == np.int32
    assert taps.rw.dtype == taps.cw.dtype == np.float32
    assert taps.ft.shape == (len(feats), 3) and taps.ft.dtype == np.int64
    assert taps.fr.shape == (out_h * sy, 4) and taps.fc.shape == (out_w * sx, 4)
    levels, dims = naive.grid_exponents(spec), naive.level_dims(spec)
    for f, (g, dy, dx) in enumerate(feats):
        tr, tc = taps.ft[f, 1], taps.ft[f, 2]
        assert taps.ft[f, 0] == g and shifts[tr] == dy and shifts[tc] == dx
        (hk, wk), k = dims[g], levels[g]
        ri, rw = field.axis_taps(out_h, spec.height, k, hk, sy, dy)
        ci, cw = field.axis_taps(out_w, spec.width, k, wk, sx, dx)
        np.testing.assert_array_equal(taps.ri[tr, g], ri)
        np.testing.assert_array_equal(taps.rw[tr, g], rw)
        np.testing.assert_array_equal(taps.ci[tc, g], ci)
        np.testing.assert_array_equal(taps.cw[tc, g], cw)
    if stencil == 1:
        assert taps.ft[:5].tolist() == [[0, 1, 1], [0, 1, 0], [0, 1, 2], [0, 0, 1], [0, 2, 1]]
    if stencil == 2:
        assert taps.ft.tolist() == ([[0, 1, 1], [0, 1, 0], [0, 1, 2], [0, 0, 1], [0, 2, 1]]
                                    + [[g, 1, 1] for g in range(1, L)])
    if stencil == 3:
        assert taps.ft.tolist() == ([[0, 1, 1], [1, 1, 1], [1, 1, 0], [1, 1, 2], [1, 0, 1],
                                     [1, 2, 1]] + [[g, 1, 1] for g in range(2, L)])


def test_column_pass_skips_unread_pairs():
    """Stencil 2 reads the shifted columns of the finest grid only: the other
    (shift, grid) pairs are not computed, and the rest equals stencil 1's."""
    s1 = ModelSpec(23, 15, 3, 3, 0, 1, 1, 4, stencil=1, n_chroma=1)
    s2 = dataclasses.replace(s1, stencil=2)
    _, lat = random_params(s1, seed=5)
    offsets, dims = field.level_table(s1)
    C1, coff1 = field.column_pass(lat, offsets, dims, field.make_taps(s1, 23, 15))
    C2, coff2 = field.column_pass(lat, offsets, dims, field.make_taps(s2, 23, 15))
    used = coff2 >= 0
    assert used.tolist() == [[True, False, False, False, False]] + [[True] * 5] + \
        [[True, False, False, False, False]]
    assert (coff1 >= 0).all() and C2.size < C1.size
    for t, g in zip(*np.nonzero(used)):
        n = int(dims[g, 0]) * 23
        np.testing.assert_array_equal(C2[coff2[t, g]: coff2[t, g] + n],
                                      C1[coff1[t, g]: coff1[t, g] + n])


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


@pytest.mark.parametrize("w,h,levels,first,chroma", [
    (100, 37, 4, 1, 0), (64, 48, 7, 0, 0), (1, 1, 3, 0, 0), (3, 200, 7, 0, 0), (65, 33, 2, 5, 0),
    (100, 37, 4, 1, 2), (64, 48, 7, 0, 3), (1, 1, 3, 0, 3), (65, 33, 2, 5, 1), (9, 9, 1, 0, 1)])
def test_level_dims(w, h, levels, first, chroma):
    """Main grids k = first .. first + levels - 1, then two extra channels of
    the ``chroma`` coarsest levels, each finest first."""
    spec = ModelSpec(w, h, 3, levels, first, 0, 1, 4, n_chroma=chroma)
    main = list(range(first, first + levels))
    ks = main + main[levels - chroma:] * 2
    want = [(math.ceil(h / 2 ** k), math.ceil(w / 2 ** k)) for k in ks]
    assert spec.n_grids == len(ks) == levels + 2 * chroma
    assert spec.grid_levels() == ks == naive.grid_exponents(spec)
    assert spec.level_dims() == want == naive.level_dims(spec)
    assert spec.n_latents == sum(r * c for r, c in want)
    offsets, dims = field.level_table(spec)
    assert offsets[0] == 0 and offsets[-1] == spec.n_latents
    assert [tuple(d) for d in dims.tolist()] == want


def test_level_dims_example():
    spec = ModelSpec(100, 37, 3, 4, 1, 0, 0, 1)
    assert spec.n_chroma == 0  # the default
    assert spec.level_dims() == [(19, 50), (10, 25), (5, 13), (3, 7)]
    spec = ModelSpec(100, 37, 3, 4, 1, 0, 0, 1, n_chroma=2)
    assert spec.level_dims() == [(19, 50), (10, 25), (5, 13), (3, 7), (5, 13), (3, 7), (5, 13),
                                 (3, 7)]
    assert spec.n_inputs == 8 and spec.n_latents == 950 + 250 + 65 + 21 + 2 * (65 + 21)


@pytest.mark.parametrize("stencil,S,S0", [(0, 1, 1), (1, 5, 5), (2, 1, 5)])
@pytest.mark.parametrize("levels,chroma,fourier,hidden,width,channels",
                         [(3, 0, 0, 2, 16, 3), (0, 0, 6, 3, 5, 3), (2, 0, 1, 0, 7, 1),
                          (7, 0, 15, 1, 64, 1), (3, 2, 0, 2, 16, 3), (7, 7, 2, 1, 8, 3)])
def test_layer_shapes(levels, chroma, fourier, hidden, width, channels, stencil, S, S0):
    """S points on every grid but the first, which has S0 (stencil 2: the
    finest grid sampled at five points)."""
    spec = ModelSpec(10, 10, channels, levels, 0, fourier, hidden, width, stencil=stencil,
                     n_chroma=chroma)
    n_grids = levels + 2 * chroma
    nin = (S0 + (n_grids - 1) * S if n_grids else 0) + 4 * fourier
    assert spec.n_inputs == nin
    dims = [nin] + [width] * hidden + [channels]
    want = [(dims[k + 1], dims[k]) for k in range(hidden + 1)]
    assert spec.layer_shapes() == want
    assert field.layer_table(spec).tolist() == [list(s) for s in want]
    assert spec.group_sizes() == [x for o, i in want for x in (o * i, o)]
    assert spec.n_params == sum(o * i + o for o, i in want)


def test_layer_shapes_example():
    spec = ModelSpec(10, 10, 3, 6, 0, 0, 2, 16)
    assert spec.stencil == 0  # the default
    assert spec.layer_shapes() == [(16, 6), (16, 16), (3, 16)]
    assert spec.n_params == 16 * 6 + 16 + 16 * 16 + 16 + 3 * 16 + 3
    spec = ModelSpec(10, 10, 3, 6, 0, 2, 2, 16, stencil=1)  # 6 grids x 5 points + 8 Fourier
    assert spec.layer_shapes() == [(16, 38), (16, 16), (3, 16)]
    spec = ModelSpec(10, 10, 3, 6, 0, 2, 2, 16, stencil=2)  # 5 + 5 x 1 points + 8 Fourier
    assert spec.layer_shapes() == [(16, 18), (16, 16), (3, 16)]


@pytest.mark.parametrize("coded,out,want", [((64, 48), (64, 48), (1, 1)),
                                            ((64, 48), (128, 96), (1, 1)),
                                            ((64, 48), (32, 24), (2, 2)),
                                            ((64, 48), (10, 7), (7, 7)),
                                            ((64, 48), (65, 47), (1, 2))])
def test_supersampling(coded, out, want):
    spec = ModelSpec(coded[0], coded[1], 3, 1, 0, 0, 0, 1)
    assert field.supersampling(spec, *out) == want

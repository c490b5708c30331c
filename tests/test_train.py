"""train.py: every backward pass against finite differences, the rate proxy, Adam.

The numba kernels are generic over dtypes, so most checks run them on float64
arrays: central differences with a small step are then accurate to ~1e-9.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import naive
from nncodec import entropy, field, train
from nncodec._jit import TILE
from nncodec.field import ModelSpec

# ---------------------------------------------------------------------------
# Helpers.
#
# The forward / backward kernels compute in float32 (as the encoder runs them).
# Their gradients are compared with central differences of a float64 NumPy
# reference loss built from the same taps; that reference is itself checked
# against the pixel-by-pixel naive loss.


class GradProblem:
    """A tiny spec with random float32 parameters, latents and target."""

    def __init__(self, spec: ModelSpec, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.spec = spec
        H, W, C = spec.height, spec.width, spec.channels
        self.taps = field.make_taps(spec, W, H)
        self.offsets, self.dims = field.level_table(spec)
        self.layers = field.layer_table(spec)
        parts = []
        for o, i in spec.layer_shapes():
            parts += [rng.normal(0.0, 1.0 / math.sqrt(max(i, 1)), o * i), rng.normal(0, 0.3, o)]
        self.theta = np.concatenate(parts).astype(np.float32)
        self.lat = rng.normal(0.0, 1.0, spec.n_latents).astype(np.float32)
        self.target = rng.uniform(0.0, 1.0, (H * W, C)).astype(np.float32)
        self.all = np.arange(W * H, dtype=np.int64)
        self.feats = naive.grid_features(spec)  # (grid, dy, dx) of each grid feature
        self.n_grids = len(naive.grid_exponents(spec))
        self.n_grid_features = len(self.feats)

    def run(self, sel=None):
        """Run the kernel; return (gbuf, loss, dfeat)."""
        sel = self.all if sel is None else sel
        ntiles = (sel.size + TILE - 1) // TILE
        gbuf = np.zeros((ntiles, self.theta.size))
        lbuf = np.zeros(ntiles)
        dfeat = np.full((self.n_grid_features, sel.size), np.nan, np.float32)
        t = self.taps
        C, coff = field.column_pass(self.lat, self.offsets, self.dims, t)
        train._mlp_grad(C, coff, t.ri, t.rw, t.fr, t.fc, t.ft, self.theta, self.layers,
                        self.spec.channels, self.target, sel, self.spec.width, gbuf, lbuf, dfeat,
                        train.worker_bounds(ntiles, 1, 0.0), *train.NO_RATE)
        return gbuf, lbuf.sum() / (sel.size * self.spec.channels), dfeat

    # float64 reference ---------------------------------------------------

    def features(self, lat, sel):
        """float64[n, n_inputs]: features of the selected pixels, from the taps.

        Grid feature ``f`` (grid ``lev``, :func:`naive.grid_features`) uses the
        row tables of shift index ``ft[f, 1]`` and the column tables of
        ``ft[f, 2]``.
        """
        t = self.taps
        r, c = np.divmod(sel, self.spec.width)
        cols = []
        for f, (lev, _, _) in enumerate(self.feats):
            assert t.ft[f, 0] == lev
            wk, off = int(self.dims[lev, 1]), int(self.offsets[lev])
            tr, tc = t.ft[f, 1], t.ft[f, 2]
            v = np.zeros(sel.size)
            for a in range(4):
                for b in range(4):
                    v += (t.rw[tr, lev, r, a].astype(np.float64) * t.cw[tc, lev, c, b]
                          * lat[off + t.ri[tr, lev, r, a] * wk + t.ci[tc, lev, c, b]])
            cols.append(v[:, None])
        cols += [t.fc[c].astype(np.float64), t.fr[r].astype(np.float64)]
        return np.concatenate(cols, axis=1)

    def loss_from_features(self, theta, F, sel):
        h = F.T
        layers = naive.unpack_theta(self.spec, theta)
        for k, (w, b) in enumerate(layers):
            h = w @ h + b[:, None]
            if k + 1 < len(layers):
                h = np.maximum(h, 0.0)
        out = h if self.spec.channels == 1 else naive.ycocg_to_rgb(h)
        err = out.T - self.target[sel].astype(np.float64)
        return float(np.sum(err ** 2)) / (sel.size * self.spec.channels)

    def ref_loss(self, theta=None, lat=None, sel=None):
        theta = np.asarray(self.theta if theta is None else theta, np.float64)
        lat = np.asarray(self.lat if lat is None else lat, np.float64)
        sel = self.all if sel is None else sel
        return self.loss_from_features(theta, self.features(lat, sel), sel)

    def theta_loss(self, sel=None):
        """``theta -> reference loss`` at the current latents (features computed once)."""
        sel = self.all if sel is None else sel
        F = self.features(np.asarray(self.lat, np.float64), sel)
        return lambda theta: self.loss_from_features(np.asarray(theta, np.float64), F, sel)


def central_diff(f, x, indices, eps=1e-6):
    x = np.asarray(x, dtype=np.float64)
    out = np.empty(len(indices))
    for k, i in enumerate(indices):
        xp = x.copy()
        xp[i] += eps
        xm = x.copy()
        xm[i] -= eps
        out[k] = (f(xp) - f(xm)) / (2 * eps)
    return out


def assert_grad_close(got, want, rtol=2e-3):
    """float32 kernels: relative agreement, with an absolute floor at the gradient scale."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    scale = np.abs(want).max()
    assert scale > 1e-4, "degenerate test: the gradient is zero"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-4 * scale)


_GRAD_SPECS = [
    ModelSpec(7, 5, 3, 2, 0, 1, 2, 4),
    ModelSpec(6, 7, 1, 3, 0, 0, 1, 5),
    ModelSpec(9, 4, 3, 1, 1, 2, 0, 1),  # no hidden layer
    ModelSpec(8, 6, 3, 0, 0, 2, 3, 3),  # no grids, three hidden layers
    ModelSpec(23, 6, 3, 2, 0, 0, 1, 17),  # > BLOCK pixels, odd block tail
    ModelSpec(9, 7, 3, 3, 0, 1, 1, 4, n_chroma=2),  # extra grids
]
STENCIL_IDS = sorted(naive.STENCILS)
#: Every spec with every stencil: (index into _GRAD_SPECS, stencil).
GRAD_CASES = [(k, st) for k in range(len(_GRAD_SPECS)) for st in STENCIL_IDS]


def grad_spec(k: int, stencil: int) -> ModelSpec:
    return dataclasses.replace(_GRAD_SPECS[k], stencil=stencil)


def _cases(ks):
    return pytest.mark.parametrize("k,stencil", [(k, st) for k, st in GRAD_CASES if k in ks])


# ---------------------------------------------------------------------------
# _mlp_grad.


@_cases(range(6))
def test_reference_loss_matches_naive(k, stencil):
    pb = GradProblem(grad_spec(k, stencil), seed=k)
    sel = np.arange(0, pb.spec.width * pb.spec.height, 2, dtype=np.int64)
    want = naive.pixel_loss(pb.spec, pb.theta, pb.lat, pb.target, sel)
    assert pb.ref_loss(sel=sel) == pytest.approx(want, rel=1e-6)


@_cases(range(6))
def test_mlp_grad_loss_matches_reference(k, stencil):
    pb = GradProblem(grad_spec(k, stencil), seed=k)
    sel = np.arange(0, pb.spec.width * pb.spec.height, 2, dtype=np.int64)
    _, loss, _ = pb.run(sel=sel)
    assert loss == pytest.approx(pb.ref_loss(sel=sel), rel=1e-5)


@_cases(range(6))
def test_mlp_grad_parameters_vs_finite_differences(k, stencil):
    pb = GradProblem(grad_spec(k, stencil), seed=10 + k)
    gbuf, _, _ = pb.run()
    fd = central_diff(pb.theta_loss(), pb.theta, range(pb.theta.size))
    assert_grad_close(gbuf.sum(axis=0), fd)


@pytest.mark.parametrize("stencil", STENCIL_IDS)
def test_mlp_grad_subset_selection_vs_finite_differences(stencil):
    pb = GradProblem(grad_spec(0, stencil), seed=3)
    sel = np.array([0, 4, 5, 11, 23, 34], dtype=np.int64)
    gbuf, _, _ = pb.run(sel=sel)
    fd = central_diff(pb.theta_loss(sel), pb.theta, range(pb.theta.size))
    assert_grad_close(gbuf.sum(axis=0), fd)


@pytest.mark.parametrize("stencil", STENCIL_IDS)
def test_mlp_grad_several_tiles_vs_finite_differences(stencil):
    spec = ModelSpec(72, 64, 3, 2, 2, 0, 1, 3, stencil=stencil)  # 4608 pixels: two tiles
    pb = GradProblem(spec, seed=5)
    gbuf, loss, _ = pb.run()
    assert gbuf.shape[0] == 2
    assert np.abs(gbuf[0]).max() > 0 and np.abs(gbuf[1]).max() > 0
    assert loss == pytest.approx(pb.ref_loss(), rel=1e-5)
    fd = central_diff(pb.theta_loss(), pb.theta, range(pb.theta.size))
    assert_grad_close(gbuf.sum(axis=0), fd)
    # Tile 0 holds the gradient of the first TILE pixels (same 1/n scaling).
    n = spec.width * spec.height
    first = pb.run(sel=np.arange(TILE, dtype=np.int64))[0].sum(axis=0) * TILE / n
    np.testing.assert_allclose(gbuf[0], first, rtol=1e-5, atol=1e-9)


@_cases([0, 1, 4, 5])
def test_mlp_grad_feature_gradient_vs_finite_differences(k, stencil):
    """dfeat[f, s] == d loss / d (grid feature f at pixel sel[s])."""
    pb = GradProblem(grad_spec(k, stencil), seed=30 + k)
    n = pb.spec.width * pb.spec.height
    sel = np.arange(1, n, 3, dtype=np.int64)
    _, _, dfeat = pb.run(sel=sel)
    assert dfeat.shape == (pb.n_grid_features, sel.size)
    F = pb.features(pb.lat.astype(np.float64), sel)
    th = pb.theta.astype(np.float64)
    LS = pb.n_grid_features
    fd = central_diff(lambda f: pb.loss_from_features(th, f.reshape(F.shape), sel), F.ravel(),
                      [s * F.shape[1] + f for f in range(LS) for s in range(sel.size)])
    assert_grad_close(dfeat.ravel(), fd)


@_cases([0, 1, 2, 4, 5])
def test_latent_gradient_chain_vs_finite_differences(k, stencil):
    """_mlp_grad's dfeat back-projected by latent_grad == d loss / d latents,
    over all pixels and over a selection with empty rows and gaps."""
    pb = GradProblem(grad_spec(k, stencil), seed=20 + k)
    n = pb.spec.width * pb.spec.height
    rng = np.random.default_rng(k)
    subset = np.flatnonzero(rng.random(n) < 0.4).astype(np.int64)
    subset = subset[subset // pb.spec.width != 1]  # row 1 has no selected pixel
    for sel in (pb.all, subset):
        _, _, dfeat = pb.run(sel=sel)
        glat = np.full(pb.lat.size, np.nan)  # latent_grad overwrites its output
        train.latent_grad(dfeat, sel, pb.taps, pb.offsets, pb.dims, pb.spec.width, glat)
        fd = central_diff(lambda la: pb.ref_loss(lat=la, sel=sel), pb.lat, range(pb.lat.size))
        assert_grad_close(glat, fd)


# ---------------------------------------------------------------------------
# latent_grad is the transpose of sampling.


def sampling_matrix(spec: ModelSpec, taps, f: int) -> np.ndarray:
    """A[p, cell] such that grid feature ``f`` is A @ grid (float64), grid
    ``taps.ft[f, 0]``."""
    lev, tr, tc = taps.ft[f]
    hk, wk = spec.level_dims()[lev]
    H, W = spec.height, spec.width
    R = np.zeros((H, hk))
    C = np.zeros((W, wk))
    for a in range(4):
        np.add.at(R, (np.arange(H), taps.ri[tr, lev, :, a]),
                  taps.rw[tr, lev, :, a].astype(np.float64))
        np.add.at(C, (np.arange(W), taps.ci[tc, lev, :, a]),
                  taps.cw[tc, lev, :, a].astype(np.float64))
    return np.kron(R, C)


_SAMPLING_SPECS = [ModelSpec(13, 9, 3, 3, 0, 0, 1, 2), ModelSpec(20, 7, 1, 4, 1, 0, 1, 2),
                   ModelSpec(5, 5, 3, 2, 2, 0, 1, 2), ModelSpec(33, 2, 3, 6, 0, 0, 1, 2),
                   ModelSpec(14, 10, 3, 3, 0, 0, 1, 2, n_chroma=2)]
SAMPLING_CASES = [(k, st) for k in range(len(_SAMPLING_SPECS)) for st in STENCIL_IDS]


@pytest.mark.parametrize("k,stencil", SAMPLING_CASES)
def test_sampling_matrix_matches_naive_bspline(k, stencil):
    """Grid l at stencil point (dy, dx) is the B-spline at (c + 0.5 + dx, r + 0.5 + dy)."""
    spec = dataclasses.replace(_SAMPLING_SPECS[k], stencil=stencil)
    taps = field.make_taps(spec, spec.width, spec.height)
    rng = np.random.default_rng(k)
    grids = [rng.normal(size=hk_wk) for hk_wk in naive.level_dims(spec)]
    exps = naive.grid_exponents(spec)
    for fi, (lev, dy, dx) in enumerate(naive.grid_features(spec)):
        grid = grids[lev]
        f = 2 ** exps[lev]
        got = (sampling_matrix(spec, taps, fi) @ grid.ravel()).reshape(spec.height, spec.width)
        for r in range(spec.height):
            for c in range(spec.width):
                want = naive.sample_grid(grid, (r + 0.5 + dy) / f - 0.5, (c + 0.5 + dx) / f - 0.5)
                assert got[r, c] == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("k,stencil", SAMPLING_CASES)
def test_latent_grad_is_transpose_of_sampling(k, stencil):
    spec = dataclasses.replace(_SAMPLING_SPECS[k], stencil=stencil)
    H, W = spec.height, spec.width
    feats = naive.grid_features(spec)
    taps = field.make_taps(spec, W, H)
    offsets, dims = field.level_table(spec)
    rng = np.random.default_rng(100 + k)
    n_grids = len(naive.grid_exponents(spec))
    g = rng.normal(size=(len(feats), H * W)).astype(np.float32)
    g[:, rng.random(H * W) < 0.2] = 0.0  # the kernels skip zeros: exercise that path
    g[rng.random(g.shape) < 0.1] = 0.0
    out = np.full(spec.n_latents, np.nan)  # latent_grad zeroes its output itself
    every = np.arange(H * W, dtype=np.int64)
    train.latent_grad(g, every, taps, offsets, dims, W, out)
    # Calling again on a dirty buffer gives the same result (no accumulation).
    again = np.full(spec.n_latents, 7.0)
    train.latent_grad(g, every, taps, offsets, dims, W, again)
    np.testing.assert_array_equal(again, out)
    for lev in range(n_grids):
        part = out[offsets[lev]:offsets[lev + 1]]
        want = sum(sampling_matrix(spec, taps, f).T @ g[f].astype(np.float64)
                   for f, (grid, _, _) in enumerate(feats) if grid == lev)
        np.testing.assert_allclose(part, want, rtol=1e-5, atol=1e-5)
    # <A^T g, x> == <g, A x>, with A x the grid features of the naive field.
    x = rng.normal(size=spec.n_latents)
    grids = naive.split_latents(spec, x)
    lhs = float(out @ x)
    rhs = 0.0
    for r in range(H):
        for c in range(W):
            feats = naive.features(spec, grids, c + 0.5, r + 0.5)
            assert feats.size == g.shape[0]  # no Fourier features in these specs
            rhs += float(g[:, r * W + c].astype(np.float64) @ feats)
    assert lhs == pytest.approx(rhs, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("k,stencil", SAMPLING_CASES)
def test_latent_grad_of_a_row_subset_is_the_transpose_over_those_pixels(k, stencil):
    """Training selects row segments, so most image rows have no selected
    pixel: the kernels skip those rows, and the result is still the
    transpose of sampling restricted to the selected pixels."""
    spec = dataclasses.replace(_SAMPLING_SPECS[k], stencil=stencil)
    H, W = spec.height, spec.width
    feats = naive.grid_features(spec)
    taps = field.make_taps(spec, W, H)
    offsets, dims = field.level_table(spec)
    rng = np.random.default_rng(200 + k)
    rows = sorted(rng.choice(H, size=max(1, H // 3), replace=False))
    sel = np.array([r * W + c for r in rows for c in range(W // 3, W)], np.int64)
    n_grids = len(naive.grid_exponents(spec))
    g = rng.normal(size=(len(feats), sel.size)).astype(np.float32)
    out = np.full(spec.n_latents, np.nan)
    train.latent_grad(g, sel, taps, offsets, dims, W, out)
    for lev in range(n_grids):
        want = sum(sampling_matrix(spec, taps, f)[sel].T @ g[f].astype(np.float64)
                   for f, (grid, _, _) in enumerate(feats) if grid == lev)
        np.testing.assert_allclose(out[offsets[lev]:offsets[lev + 1]], want, rtol=1e-5, atol=1e-5)


def latent_grad_in_order(dfeat, sel, taps, offsets, dims, W, H, n):
    """latent_grad as its docstrings define it, in plain Python: every sum in
    the order stated there (float32 products of the row taps, added to float64
    sums tap by tap in pixel order; then the column taps)."""
    ft = taps.ft
    out = np.zeros(n)
    rows = {}
    for f, (lev, tr, tc) in enumerate(ft):
        wk = dims[lev, 1]
        for k, p in enumerate(sel):
            y, x = divmod(int(p), W)
            row = rows.setdefault((f, y), np.zeros(wk))
            d = dfeat[f, k]
            if d != 0.0:
                for t in range(4):
                    row[taps.ci[tc, lev, x, t]] += float(taps.cw[tc, lev, x, t] * d)
    for lev in range(dims.shape[0]):
        hk, wk = dims[lev]
        for a in range(hk):
            dst = np.zeros(wk)
            for f, (flev, tr, _) in enumerate(ft):
                if flev != lev:
                    continue
                for y in range(H):
                    if (f, y) not in rows:
                        continue
                    for t in range(4):
                        if taps.ri[tr, lev, y, t] == a:
                            dst += np.float64(taps.rw[tr, lev, y, t]) * rows[f, y]
            out[offsets[lev] + a * wk: offsets[lev] + (a + 1) * wk] = dst
    return out


@pytest.mark.parametrize("k,stencil", SAMPLING_CASES)
def test_latent_grad_adds_in_the_stated_order(k, stencil):
    """The row pass keeps a pixel's four sums in registers and slides them
    along the row; the result is the one of adding into memory tap by tap,
    bit for bit (so training does not depend on that choice). Rows with
    several segments, gaps, single pixels and both edges."""
    spec = dataclasses.replace(_SAMPLING_SPECS[k], stencil=stencil)
    H, W = spec.height, spec.width
    taps = field.make_taps(spec, W, H)
    offsets, dims = field.level_table(spec)
    rng = np.random.default_rng(300 + k)
    keep = rng.random((H, W)) < 0.6
    keep[:, 0] = keep[:, -1] = True  # the clamped taps at both edges
    keep[rng.random(H) < 0.25] = False  # rows without pixels
    sel = np.flatnonzero(keep.ravel()).astype(np.int64)
    # Float32 products add exactly in float64 unless their magnitudes differ
    # widely: spread them, so that another order would round differently.
    g = rng.normal(size=(taps.ft.shape[0], sel.size)) * 2.0 ** rng.integers(-40, 40, (1, sel.size))
    g = g.astype(np.float32)
    g[rng.random(g.shape) < 0.1] = 0.0
    out = np.full(spec.n_latents, np.nan)
    train.latent_grad(g, sel, taps, offsets, dims, W, out)
    want = latent_grad_in_order(g, sel, taps, offsets, dims, W, H, spec.n_latents)
    np.testing.assert_array_equal(out, want)


# ---------------------------------------------------------------------------
# Rate proxy: the coder's cost tables and their interpolation.


def rate_problem(seed, chroma=0, scale=0.9):
    """With chroma = 2 the grids are k = 0 1 2 | 1 2 | 1 2: grids 3 and 5 follow
    a grid that is not their child, so they are nobody's parent."""
    spec = ModelSpec(13, 10, 3, 3, 0, 0, 1, 2, n_chroma=chroma)
    rng = np.random.default_rng(seed)
    y = rng.laplace(0.0, scale, spec.n_latents)
    y[rng.random(y.size) < 0.3] *= 0.2  # many rounded zeros
    q = np.floor(y + 0.5).astype(np.int64)
    offsets, dims = field.level_table(spec)
    return spec, q, offsets, dims


def walk(q, offsets, dims):
    table = np.full((q.size, 3), np.nan)
    tail = train._rate_table(q, offsets, dims, table)
    return table, tail


def no_chain(n):
    """The gradient arguments of ``_table_rate`` for a call that wants the bits:
    a zero gradient in NOISE mode."""
    return np.zeros(n), train.NOISE, np.empty(0, np.float32), np.empty(0, np.float32)


@pytest.mark.parametrize("chroma", [0, 2])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_rate_table_matches_naive(seed, chroma):
    """Every latent's costs of q - 1, q, q + 1 under the contexts in force, as
    the naive walk computes them, and the free tail of grid 0 (seed 3 reaches
    the escape beyond the unary part)."""
    spec, q, offsets, dims = rate_problem(seed, chroma, scale=[0.9, 3.0, 0.3, 12.0][seed])
    if seed == 3:
        assert (abs(q) > entropy.LAT_UNARY + 1).any()
    table, tail = walk(q, offsets, dims)
    ref, ref_tail = naive.rate_table(spec, q)
    np.testing.assert_array_equal(table, ref)
    assert tail == ref_tail
    assert (table > 0).all()


@pytest.mark.parametrize("scale", [0.05, 0.4, 2.0, 40.0])
def test_rate_table_at_integers_is_the_coded_size(scale):
    """At the walked latents the model's bits are what the range coder writes
    (up to the coder's final bytes), also with escapes beyond the unary part."""
    spec = ModelSpec(45, 29, 3, 4, 0, 0, 1, 2, n_chroma=2)
    offsets, dims = field.level_table(spec)
    rng = np.random.default_rng(int(scale * 100))
    q = np.round(rng.laplace(0.0, scale, spec.n_latents)).astype(np.int64)
    table, tail = walk(q, offsets, dims)
    bits = train._table_rate(q.astype(np.float32), q.astype(np.float64), table, 0.0,
                             *no_chain(q.size)) - tail
    coded = len(entropy.encode_payload(np.zeros(0, np.int64), [], q, spec.level_dims()))
    assert bits == pytest.approx(table[:, 1].sum() - tail, rel=1e-12)
    assert coded - 6 <= bits / 8 <= coded + 1


@pytest.mark.parametrize("stale", [False, True])
def test_table_rate_interpolates_the_costs_and_its_gradient_is_the_slope(stale):
    """Between integers the charge is linear: the costs at q - 1, q and q + 1
    joined by lines, extended beyond with the edge slopes (tables a few steps
    old); the gradient is the slope, so the cost of floor(y) + 1 minus that of
    floor(y) inside the table's range."""
    _, q, offsets, dims = rate_problem(4, 2)
    table, _ = walk(q, offsets, dims)
    rng = np.random.default_rng(7)
    width = 2.4 if stale else 0.98
    y = q + rng.uniform(-width, width, q.size)
    w = 0.37
    grate = np.zeros(q.size)
    total = train._table_rate(y, q.astype(np.float64), table, w, grate, train.NOISE,
                              np.empty(0, np.float32), np.empty(0, np.float32))
    x = y - q
    lo = np.where(x < 0, table[:, 0], table[:, 1])
    hi = np.where(x < 0, table[:, 1], table[:, 2])
    slope = hi - lo
    assert total == pytest.approx(np.sum(table[:, 1] + x * slope), rel=1e-12)
    np.testing.assert_allclose(grate, w * slope, rtol=0, atol=0)
    fd = central_diff(lambda v: train._table_rate(v, q.astype(np.float64), table, 0.0,
                                                  *no_chain(q.size)),
                      y, range(0, q.size, 5), eps=1e-4)
    np.testing.assert_allclose(grate[::5], w * fd, rtol=1e-6, atol=1e-6)
    # A zero that would become a one costs more than it saves: pulled to 0.
    n = int(np.flatnonzero((q == 0) & (x > 0))[0])
    assert grate[n] > 0


def test_table_rate_adds_its_gradient_through_the_soft_rounding():
    """The rate's gradient goes into the distortion's: added as it is (NOISE,
    HARD: straight through), or by the chain rule of the soft rounding (SOFT:
    the synthesis saw s(s(y) + u), the rate s(y) + u)."""
    _, q, offsets, dims = rate_problem(5, 2)
    table, _ = walk(q, offsets, dims)
    rng = np.random.default_rng(8)
    y = (q + rng.uniform(-0.9, 0.9, q.size)).astype(np.float32)
    w = 0.21
    grate = np.zeros(q.size)
    ref = train._table_rate(y, q.astype(np.float64), table, w, grate, train.NOISE,
                            np.empty(0, np.float32), np.empty(0, np.float32))
    gsyn = rng.normal(size=q.size)
    dyhat = rng.uniform(0.1, 3.0, q.size).astype(np.float32)
    dys = rng.uniform(0.1, 3.0, q.size).astype(np.float32)
    for mode, want in ((train.NOISE, gsyn + grate), (train.HARD, gsyn + grate),
                       (train.SOFT, (gsyn * dyhat + grate) * dys)):
        glat = gsyn.copy()
        total = train._table_rate(y, q.astype(np.float64), table, w, glat, mode, dyhat, dys)
        assert total == ref
        np.testing.assert_array_equal(glat, want)


@pytest.mark.parametrize("nb", [1, 7, 8, 9, 31, 63, 64])
def test_dots4_are_four_independent_dot_products(nb):
    """The synthesis kernel's weight-gradient dot products: each of the four
    sums is its pair's dot product over the first ``nb`` samples (to float32
    rounding), and depends on that pair alone: swapping the arguments swaps
    the results bit for bit, so the colour layer's three outputs (the last
    slot repeated) get the same sums as four distinct outputs would."""
    rng = np.random.default_rng(nb)
    d = rng.normal(size=(4, field.BLOCK)).astype(np.float32)
    x = rng.normal(size=field.BLOCK).astype(np.float32)
    d[:, nb:] = np.nan  # never read
    got = train._dots4(d[0], d[1], d[2], d[3], x, nb)
    want = d[:, :nb].astype(np.float64) @ x[:nb].astype(np.float64)
    scale = np.abs(d[:, :nb] * x[:nb]).sum(axis=1)
    assert np.all(np.abs(np.array(got, np.float64) - want) <= 1e-6 * scale + 1e-30)
    swapped = train._dots4(d[3], d[2], d[1], d[0], x, nb)
    assert [np.float32(v) for v in swapped] == [np.float32(v) for v in got[::-1]]
    repeated = train._dots4(d[0], d[1], d[2], d[2], x, nb)
    assert repeated[:3] == got[:3] and repeated[3] == got[2]


# ---------------------------------------------------------------------------
# Adam.


def test_adam_kernel_matches_numpy():
    rng = np.random.default_rng(0)
    n = 50
    p = rng.normal(size=n)
    m = np.zeros(n)
    v = np.zeros(n)
    p_ref, m_ref, v_ref = p.copy(), m.copy(), v.copy()
    for t in (1, 2, 3):
        g = rng.normal(size=n) * 10.0 ** rng.uniform(-3, 1, n)
        train._adam(p, g, m, v, 0.01, 0.9, 0.999, 1e-8, t)
        p_ref, m_ref, v_ref = naive.adam_step(p_ref, g, m_ref, v_ref, 0.01, 0.9, 0.999, 1e-8, t)
        np.testing.assert_allclose(p, p_ref, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(m, m_ref, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(v, v_ref, rtol=1e-12, atol=1e-18)


def test_adam_class_float32_parameters():
    rng = np.random.default_rng(1)
    p = rng.normal(size=20).astype(np.float32)
    opt = train.Adam(p.size)
    ref = p.astype(np.float64)
    m = np.zeros(20)
    v = np.zeros(20)
    for t in range(1, 4):
        g = rng.normal(size=20)
        opt.step(p, g, 1e-2)
        ref, m, v = naive.adam_step(ref, g, m, v, 1e-2, 0.9, 0.999, 1e-8, t)
        assert opt.t == t
        np.testing.assert_allclose(p, ref, rtol=1e-5, atol=1e-6)
    # First step of Adam moves every parameter by about lr against its gradient sign.
    p = np.zeros(5, np.float32)
    train.Adam(5).step(p, np.array([3.0, -2.0, 1e-3, -1e-3, 5.0]), 0.1)
    np.testing.assert_allclose(p, [-0.1, 0.1, -0.1, 0.1, -0.1], rtol=1e-4)


# ---------------------------------------------------------------------------
# Thread count does not change results.


_THREAD_SCRIPT = textwrap.dedent("""
    import hashlib
    import numba
    import numpy as np
    from nncodec import encoder, field, train
    from nncodec._jit import TILE
    from nncodec.encoder import encode_stats

    # The gradient below runs stencil 1 (every grid at five points), the encode
    # stencil 2 (five points on the finest grid only; the default in 0.14).
    encoder.DEFAULT_STENCIL = 2

    sha = lambda b: hashlib.sha256(b).hexdigest()[:32]
    print("threads", numba.get_num_threads())

    # Parameter gradient over a selection spanning three tiles.
    spec = field.ModelSpec(96, 96, 3, 3, 0, 1, 2, 8, stencil=1, n_chroma=2)
    rng = np.random.default_rng(0)
    taps = field.make_taps(spec, 96, 96)
    offsets, dims = field.level_table(spec)
    theta = rng.normal(0, 0.5, spec.n_params).astype(np.float32)
    lat = rng.normal(0, 1, spec.n_latents).astype(np.float32)
    target = rng.uniform(0, 1, (96 * 96, 3)).astype(np.float32)
    sel = np.arange(96 * 96, dtype=np.int64)
    nt = (sel.size + TILE - 1) // TILE
    gbuf = np.zeros((nt, theta.size)); lbuf = np.zeros(nt)
    dfeat = np.zeros((7 * 5, sel.size), np.float32)
    C, coff = field.column_pass(lat, offsets, dims, taps)
    train._mlp_grad(C, coff, taps.ri, taps.rw, taps.fr, taps.fc, taps.ft, theta,
                    field.layer_table(spec), 3, target, sel, 96, gbuf, lbuf, dfeat,
                    train.worker_bounds(nt, numba.get_num_threads(), 1.0), *train.NO_RATE)
    glat = np.zeros(lat.size)
    train.latent_grad(dfeat, sel, taps, offsets, dims, 96, glat)
    print("tiles", nt)
    print("grad", sha(gbuf.sum(axis=0).tobytes()), sha(lbuf.tobytes()), sha(glat.tobytes()))

    # A short encode of an image large enough for two tiles per step.
    y, x = np.mgrid[0:192, 0:192]
    img = np.stack([x, y, (x + y) // 2], -1).astype(np.uint8)
    img[40:90, 50:120] = (200, 30, 60)
    data, st = encode_stats(img, budget=400, preset="fast", steps=30)
    assert st.spec.stencil == 2
    print("file", len(data), sha(data))
""")


def _run_threads(n):
    env = dict(os.environ, NUMBA_NUM_THREADS=str(n))
    r = subprocess.run([sys.executable, "-c", _THREAD_SCRIPT], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_results_do_not_depend_on_thread_count():
    one = _run_threads(1)
    two = _run_threads(2)
    assert one[0] == "threads 1" and two[0] == "threads 2"
    assert one[1] == "tiles 3"
    assert one[1:] == two[1:]


def test_mlp_grad_outputs_do_not_depend_on_the_worker_split():
    """However the tiles are split between workers, with or without the rate
    walk on worker 0, the kernel writes the same gradients, and the walk
    writes what :func:`train._rate_table` computes on its own."""
    spec = ModelSpec(96, 96, 3, 3, 0, 1, 2, 8, stencil=1, n_chroma=2)  # 9216 pixels: 3 tiles
    pb = GradProblem(spec, seed=3)
    sel = np.arange(spec.width * spec.height, dtype=np.int64)
    nt = (sel.size + TILE - 1) // TILE
    assert nt == 3
    q = np.round(pb.lat).astype(np.int64)
    t = pb.taps
    C, coff = field.column_pass(pb.lat, pb.offsets, pb.dims, t)

    def run(bounds, with_rate):
        gbuf = np.zeros((nt, pb.theta.size))
        lbuf = np.zeros(nt)
        dfeat = np.full((pb.n_grid_features, sel.size), np.nan, np.float32)
        rate = train.NO_RATE
        if with_rate:
            rate = (q, pb.offsets, pb.dims, np.zeros((q.size, 3)), np.zeros(1))
        train._mlp_grad(C, coff, t.ri, t.rw, t.fr, t.fc, t.ft, pb.theta, pb.layers, 3,
                        pb.target, sel, spec.width, gbuf, lbuf, dfeat,
                        np.array(bounds, np.int64), *rate)
        return gbuf, lbuf, dfeat, rate[3], rate[4][0]

    ref = run([0, 3], False)
    assert np.isfinite(ref[2]).all()
    table, tail = walk(q, pb.offsets, pb.dims)
    for bounds in ([0, 3], [0, 0, 3], [0, 3, 3], [0, 1, 2, 3], [0, 0, 1, 1, 3]):
        for with_rate in (False, True):
            out = run(bounds, with_rate)
            for a, b in zip(out[:3], ref[:3]):
                assert np.array_equal(a, b), (bounds, with_rate)
            if with_rate:
                assert np.array_equal(out[3], table) and out[4] == tail


@pytest.mark.parametrize("ntiles, workers, rate",
                         [(6, 2, 3.6), (12, 2, 3.6), (12, 4, 3.5), (1, 2, 3.0), (0, 2, 1.0),
                          (5, 1, 9.0), (7, 3, 0.0), (3, 2, 40.0)])
def test_worker_bounds_cover_every_tile_once_with_the_least_busiest_load(ntiles, workers, rate):
    b = train.worker_bounds(ntiles, workers, rate)
    assert b.dtype == np.int64 and len(b) == workers + 1
    assert b[0] == 0 and b[-1] == ntiles and (np.diff(b) >= 0).all()
    load = np.diff(b).astype(float)
    load[0] += rate
    # Brute force over every split of the tiles into `workers` runs.
    best = math.inf
    for cuts in itertools.combinations_with_replacement(range(ntiles + 1), workers - 1):
        parts = np.diff([0, *cuts, ntiles]).astype(float)
        parts[0] += rate
        best = min(best, parts.max())
    assert load.max() == best


# ---------------------------------------------------------------------------
# Rate from the coder's adaptive probabilities.


def test_shared_walk_costs_equal_three_value_bits_calls():
    """The rate walk's one pass along the shared bins gives, for every value
    v, the costs of v - 1, v and v + 1 bit-identical to three separate walks,
    in every context class, across the unary part and into the escape, and
    leaves the contexts unchanged."""
    rng = np.random.default_rng(3)
    table = np.zeros((1, 3))
    for trial in range(20):
        probs = _random_probs(rng)
        before = probs.copy()
        zc, sctx, mc = int(rng.integers(8)), int(rng.integers(9)), int(rng.integers(3))
        for v in range(-entropy.LAT_UNARY - 40, entropy.LAT_UNARY + 40):
            if v == 0:
                train._zero_costs(probs, zc, sctx, mc, table, 0)
            else:
                train._nonzero_costs(probs, zc, sctx, mc, v, table, 0)
            want = [train._value_bits(probs, zc, sctx, mc, v + d) for d in (-1, 0, 1)]
            assert table[0].tolist() == want, v
        np.testing.assert_array_equal(probs, before)


def _random_probs(rng):
    probs = entropy.new_probs(entropy.LCTX)
    probs[:, :2] = rng.integers(1, entropy.PROB_ONE, (entropy.LCTX, 2))
    probs[:, 2] = rng.integers(0, entropy.COUNT_MAX + 1, entropy.LCTX)
    return probs


@pytest.mark.parametrize("v", [-20, -3, -1, 0, 1, 14, 15, 40])
def test_adapt_value_adapts_as_the_coder_does(v):
    """The rate model's adaptation along a value leaves the contexts as the
    range coder leaves them after coding it (a 1x1 grid: all classes 0)."""
    probs = _random_probs(np.random.default_rng(v + 100))
    coded = probs.copy()
    out = np.zeros(64, np.uint8)
    dims, offsets = entropy._layout([(1, 1)])
    entropy._encode_all(np.zeros(0, np.int64), np.zeros(0, np.int64), np.array([v]), offsets,
                        dims, out, coded, np.zeros(0, np.int64))
    train._adapt_value(probs, 0, 0, 0, v)
    np.testing.assert_array_equal(probs, coded)

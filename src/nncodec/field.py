"""The continuous image field and its rendering (decoder side).

A coded image is a function ``f(u, v) -> colour`` on the continuous frame
``[0, W] x [0, H]`` (units of coded pixels, origin at the top-left corner of
the top-left pixel). It is built from:

1. ``L`` latent grids; grid ``l`` has ``ceil(H / 2**k) x ceil(W / 2**k)``
   cells with ``k = first_level + l``, the centre of cell ``(i, j)`` sitting at
   ``((j + 0.5) * 2**k, (i + 0.5) * 2**k)``. Each grid is sampled with the
   uniform cubic B-spline (C2-continuous, positive weights) and the clamped
   ("replicate") edge rule;
2. optional Fourier features ``sin/cos(pi * 2**m * u / W)`` (same for ``v``);
3. a pointwise MLP (ReLU hidden layers, linear output) mapping the features to
   YCoCg colour (or grey) in ``[0, 1]`` units, converted to RGB.

Rendering samples the field at the centres of the output pixels; when the
output is smaller than the coded image each output pixel averages an
``sy x sx`` grid of samples over its footprint (no aliasing).

The exact equations are normative and written out in ``spec/decoding.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._jit import njit, pjit, prange

KERNEL_BSPLINE = 0
ACT_RELU = 0

#: Sampling points: offsets (dy, dx) in coded pixels at which a grid is
#: sampled around the point, in feature order. PLUS gives the MLP a
#: continuous analogue of a 3x3 "plus" convolution over the upsampled grid
#: (local derivatives), yet the field stays a function of the continuous
#: coordinate.
POINT = ((0, 0),)
PLUS = ((0, 0), (0, -1), (0, 1), (-1, 0), (1, 0))

#: Sampling stencils: stencil -> the grids (in coding order, the finest main
#: grids first) sampled at PLUS; the others are sampled at POINT. None: every
#: grid. Stencil 2 adds the neighbours where they pay when the finest grid is
#: coarser than the pixels: on that grid, whose cells are closest to the
#: pixels. Stencil 3, where the finest grid is the pixels' own (1:1) and its
#: neighbours are worth less than their weights: on the next grid (1:2).
STENCILS = {0: (), 1: None, 2: (0,), 3: (1,)}


def grid_points(stencil: int, grid: int) -> tuple:
    """Sampling points of grid ``grid`` (coding order) under ``stencil``."""
    grids = STENCILS[stencil]
    return PLUS if grids is None or grid in grids else POINT


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of one coded image; everything the header carries."""

    width: int
    height: int
    channels: int  # 1 (grey) or 3 (colour, YCoCg)
    n_levels: int  # number of latent grids, 0..7
    first_level: int  # grid l has downsampling factor 2**(first_level + l)
    n_fourier: int  # Fourier frequencies per axis, 0..15
    n_hidden: int  # hidden layers, 0..3
    hidden_width: int  # units per hidden layer, 1..64
    kernel: int = KERNEL_BSPLINE
    activation: int = ACT_RELU
    stencil: int = 0  # key of STENCILS: where the grids are sampled
    n_chroma: int = 0  # coarsest levels that carry two extra grids

    def grid_levels(self) -> list[int]:
        """Downsampling exponent k of every grid, in coding order.

        First the main grids, one per level, finest first; then, for each of
        two extra channels, one grid for each of the ``n_chroma`` coarsest
        levels, finest first. Extra channels give the MLP low-resolution
        inputs of its own, as chroma planes do in classical codecs.
        """
        main = [self.first_level + lev for lev in range(self.n_levels)]
        extra = main[len(main) - self.n_chroma:] if self.n_chroma else []
        return main + extra + extra

    @property
    def n_grids(self) -> int:
        return self.n_levels + 2 * self.n_chroma

    def grid_features(self) -> list[tuple[int, int, int]]:
        """``(grid, dy, dx)`` of each grid feature, in input order: grids in
        coding order, each at its sampling points (:func:`grid_points`)."""
        return [(g, dy, dx) for g in range(self.n_grids)
                for dy, dx in grid_points(self.stencil, g)]

    @property
    def n_inputs(self) -> int:
        return len(self.grid_features()) + 4 * self.n_fourier

    def level_dims(self) -> list[tuple[int, int]]:
        """Return ``(rows, cols)`` of each latent grid, in coding order."""
        out = []
        for k in self.grid_levels():
            f = 1 << k
            out.append((-(-self.height // f), -(-self.width // f)))
        return out

    def layer_shapes(self) -> list[tuple[int, int]]:
        """Return ``(out, in)`` of each linear layer."""
        dims = [self.n_inputs] + [self.hidden_width] * self.n_hidden + [self.channels]
        return [(dims[i + 1], dims[i]) for i in range(len(dims) - 1)]

    def group_sizes(self) -> list[int]:
        """Sizes of the parameter groups: each layer's weights, then biases."""
        out = []
        for o, i in self.layer_shapes():
            out += [o * i, o]
        return out

    @property
    def n_params(self) -> int:
        return sum(self.group_sizes())

    @property
    def n_latents(self) -> int:
        return sum(h * w for h, w in self.level_dims())


# ---------------------------------------------------------------------------
# Sampling positions and interpolation taps.


def axis_taps(n_out: int, n_coded: int, level: int, grid_len: int, sub: int = 1,
              shift: float = 0.0):
    """Cubic B-spline taps of one grid along one axis.

    Sample ``s`` (of ``n_out * sub``) lies at ``u = (s + 0.5) * n_coded /
    (n_out * sub) + shift`` coded pixels. Returns ``(idx int32[n, 4], w
    float32[n, 4])``.
    """
    n = n_out * sub
    u = (np.arange(n, dtype=np.float64) + 0.5) * (n_coded / n) + shift
    g = u / float(1 << level) - 0.5
    i0 = np.floor(g)
    t = g - i0
    t2 = t * t
    t3 = t2 * t
    w = np.empty((n, 4), dtype=np.float64)
    w[:, 0] = (1.0 - t) ** 3 / 6.0
    w[:, 1] = (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0
    w[:, 2] = (-3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0) / 6.0
    w[:, 3] = t3 / 6.0
    idx = i0[:, None].astype(np.int64) + np.arange(-1, 3)[None, :]
    np.clip(idx, 0, grid_len - 1, out=idx)
    return idx.astype(np.int32), w.astype(np.float32)


def fourier_table(n_out: int, n_coded: int, n_freq: int, sub: int = 1) -> np.ndarray:
    """Return float32[n, 2 * n_freq]: sin, cos of ``pi * 2**m * u / n_coded``."""
    n = n_out * sub
    t = (np.arange(n, dtype=np.float64) + 0.5) / n  # u / n_coded
    out = np.empty((n, 2 * max(n_freq, 0)), dtype=np.float64)
    for m in range(n_freq):
        a = math.pi * (1 << m) * t
        out[:, 2 * m] = np.sin(a)
        out[:, 2 * m + 1] = np.cos(a)
    return out.astype(np.float32)


@dataclass
class Taps:
    """Interpolation taps and Fourier tables for one sampling grid.

    Axis tables have one entry per shift in ``shifts`` (every offset that
    some sampling point uses); grid feature ``f`` is grid ``ft[f, 0]`` with
    the row tables of shift index ``ft[f, 1]`` and the column tables of
    ``ft[f, 2]``.
    """

    ri: np.ndarray  # int32[T, L, rows, 4]
    rw: np.ndarray  # float32[T, L, rows, 4]
    ci: np.ndarray  # int32[T, L, cols, 4]
    cw: np.ndarray  # float32[T, L, cols, 4]
    fr: np.ndarray  # float32[rows, 2M]
    fc: np.ndarray  # float32[cols, 2M]
    ft: np.ndarray  # int64[F, 3]


def make_taps(spec: ModelSpec, out_w: int, out_h: int, sx: int = 1, sy: int = 1) -> Taps:
    """Build taps for rendering ``out_w x out_h`` with ``sx x sy`` supersampling."""
    L = spec.n_grids
    feats = spec.grid_features()
    shifts = sorted({d for _, dy, dx in feats for d in (dy, dx)} | {0})
    ft = np.array([[g, shifts.index(dy), shifts.index(dx)] for g, dy, dx in feats],
                  np.int64).reshape(-1, 3)
    T = len(shifts)
    rows, cols = out_h * sy, out_w * sx
    ri = np.zeros((T, L, rows, 4), np.int32)
    rw = np.zeros((T, L, rows, 4), np.float32)
    ci = np.zeros((T, L, cols, 4), np.int32)
    cw = np.zeros((T, L, cols, 4), np.float32)
    # A grid's dims follow from its level, so grids of one level (the extra
    # chroma grids) share their taps: (shift, level) -> (row, column) taps.
    # Only the (shift, grid) pairs that some feature reads are filled.
    taps = {}
    dims, levels = spec.level_dims(), spec.grid_levels()
    for g, dy, dx in feats:
        for d in (dy, dx):
            k = levels[g]
            if (d, k) not in taps:
                hk, wk = dims[g]
                taps[d, k] = (axis_taps(out_h, spec.height, k, hk, sy, d),
                              axis_taps(out_w, spec.width, k, wk, sx, d))
        t = shifts.index(dy)
        ri[t, g], rw[t, g] = taps[dy, levels[g]][0]
        t = shifts.index(dx)
        ci[t, g], cw[t, g] = taps[dx, levels[g]][1]
    fr = fourier_table(out_h, spec.height, spec.n_fourier, sy)
    fc = fourier_table(out_w, spec.width, spec.n_fourier, sx)
    return Taps(ri, rw, ci, cw, fr, fc, ft)


def layer_table(spec: ModelSpec) -> np.ndarray:
    """Return int64[n_layers, 2] of (out, in) for the kernels."""
    return np.asarray(spec.layer_shapes(), dtype=np.int64).reshape(-1, 2)


def level_table(spec: ModelSpec):
    """Return ``(offsets int64[L+1], dims int64[L, 2])`` of the flat latents."""
    dims = np.asarray(spec.level_dims(), dtype=np.int64).reshape(-1, 2)
    offsets = np.zeros(len(dims) + 1, dtype=np.int64)
    np.cumsum(dims[:, 0] * dims[:, 1], out=offsets[1:])
    return offsets, dims


# ---------------------------------------------------------------------------
# Kernels shared by rendering and training. They work on blocks of up to BLOCK
# samples at a time, laid out (unit, lane), so that the inner loops run over
# the lanes. The lane loops run to a count known only at run time (``nb``):
# with a constant trip count LLVM unrolls them into scalar code, with a
# run-time count it vectorizes them (several times faster). Lanes never mix
# and every lane sums its terms in the same order, so a sample's value does
# not depend on its block, its lane or the vector width.

BLOCK = 64


def column_pass(lat: np.ndarray, offsets: np.ndarray, dims: np.ndarray, taps: "Taps"):
    """Return ``(C, coff)``: every grid row interpolated at every sample column.

    ``C`` is float32, grid ``lev`` for column shift ``tc`` starting at
    ``coff[tc, lev]`` as an ``H_lev x ncols`` block (see :func:`_column_pass`);
    ``coff`` is -1 for the pairs that no feature reads (not computed).
    """
    T, L, ncols = taps.cw.shape[0], dims.shape[0], taps.cw.shape[2]
    coff = np.full((T, L), -1, np.int64)
    read = {(int(tc), int(lev)) for lev, _, tc in taps.ft}
    pos = 0
    for t in range(T):
        for lev in range(L):
            if (t, lev) in read:
                coff[t, lev] = pos
                pos += int(dims[lev, 0]) * ncols
    C = np.empty(pos, np.float32)
    if pos:
        _column_pass(lat, offsets, dims, taps.ci, taps.cw, coff, C)
    return C, coff


@njit
def _rows_before(dims):
    """int64[L + 1]: grid rows before grid ``lev`` (prefix sums of the heights).

    Parallel passes over "one job per grid row" number the rows of all grids
    consecutively; ``_job_row`` maps a job back to its (grid, row).
    """
    L = dims.shape[0]
    rows_before = np.zeros(L + 1, np.int64)
    for lev in range(L):
        rows_before[lev + 1] = rows_before[lev] + dims[lev, 0]
    return rows_before


@njit
def _job_row(rows_before, job):
    """(grid, row in that grid) of job ``job`` (see :func:`_rows_before`)."""
    lev = 0
    while rows_before[lev + 1] <= job:
        lev += 1
    return lev, job - rows_before[lev]


@pjit
def _column_pass(lat, offsets, dims, ci, cw, coff, C):
    """Interpolate every grid row along x at every sample column.

    ``C[coff[tc, lev] + i * ncols + x] = sum_t cw[tc, lev, x, t] *
    lat[grid lev, row i, column ci[tc, lev, x, t]]``, summed from 0 in
    ascending ``t``: exactly the inner sum of the separable B-spline, so
    features taken from ``C`` equal the direct 4 x 4 evaluation bit for bit.
    One parallel iteration per (shift, grid, row); pairs with ``coff[tc, lev]
    < 0`` are skipped.
    """
    T = cw.shape[0]
    ncols = cw.shape[2]
    rows_before = _rows_before(dims)
    R = rows_before[-1]
    for job in prange(T * R):
        tc = job // R
        lev, i = _job_row(rows_before, job - tc * R)
        if coff[tc, lev] < 0:
            continue
        base = offsets[lev] + i * dims[lev, 1]
        row = lat[base: base + dims[lev, 1]]
        cix = ci[tc, lev]
        cwx = cw[tc, lev]
        out = C[coff[tc, lev] + i * ncols: coff[tc, lev] + (i + 1) * ncols]
        for x in range(ncols):
            s = np.float32(0.0)
            for t in range(4):
                s += cwx[x, t] * row[cix[x, t]]
            out[x] = s


@njit
def _features_block(C, coff, ncols, ri, rw, fr, fc, ft, rows, cols, nb, X):
    """Write the features of samples (rows[b], cols[b]), b < nb, into X[:, b].

    ``C`` is the column pass of the grids (:func:`_column_pass`); feature
    ``f`` is grid ``ft[f, 0]`` at row shift ``ft[f, 1]`` and column shift
    ``ft[f, 2]`` (:class:`Taps`): ``sum_a rw[a] * C[row ri[a], column c]``,
    summed from 0 in ascending ``a``. The Fourier features follow the ``F``
    grid features.
    """
    F = ft.shape[0]
    m2 = fr.shape[1]
    for b in range(nb):
        r = rows[b]
        c = cols[b]
        for f in range(F):
            lev = ft[f, 0]
            tr = ft[f, 1]
            base = coff[ft[f, 2], lev] + c
            v = np.float32(0.0)
            for a in range(4):
                v += rw[tr, lev, r, a] * C[base + ri[tr, lev, r, a] * ncols]
            X[f, b] = v
        for m in range(m2):
            X[F + m, b] = fc[c, m]
            X[F + m2 + m, b] = fr[r, m]


@njit
def _mlp_forward_block(theta, layers, H, Z, nb):
    """Run the MLP on lanes ``b < nb`` of ``H[0]``.

    ``H[k]`` (float32[maxw, BLOCK]) receives layer k's input, ``Z[k]`` its
    pre-activation output; the network output is ``Z[n_layers - 1]``. Hidden
    layers use ReLU; the last layer is linear:
    ``Z[k] = W_k @ H[k] + b_k``, ``H[k+1] = max(Z[k], 0)``, each output summed
    as ``((b + w_0 h_0) + w_1 h_1) + ...`` (products rounded, no fused
    multiply-add).
    """
    nl = layers.shape[0]
    p = 0
    for k in range(nl):
        no = layers[k, 0]
        ni = layers[k, 1]
        bb = p + no * ni
        # Four outputs per pass over the inputs, and four inputs per pass
        # over the lanes: each input row is loaded once for four sums and
        # each sum is loaded and stored once per four terms. Every sum still
        # adds its terms one at a time in ascending input order.
        o = 0
        while o + 4 <= no:
            z0, z1, z2, z3 = Z[k, o], Z[k, o + 1], Z[k, o + 2], Z[k, o + 3]
            c0, c1, c2, c3 = theta[bb + o], theta[bb + o + 1], theta[bb + o + 2], theta[bb + o + 3]
            for b in range(nb):
                z0[b] = c0
                z1[b] = c1
                z2[b] = c2
                z3[b] = c3
            row = p + o * ni
            i = 0
            while i + 4 <= ni:
                r0, r1, r2, r3 = row + i, row + ni + i, row + 2 * ni + i, row + 3 * ni + i
                a0, a1, a2, a3 = theta[r0], theta[r0 + 1], theta[r0 + 2], theta[r0 + 3]
                b0, b1, b2, b3 = theta[r1], theta[r1 + 1], theta[r1 + 2], theta[r1 + 3]
                d0, d1, d2, d3 = theta[r2], theta[r2 + 1], theta[r2 + 2], theta[r2 + 3]
                e0, e1, e2, e3 = theta[r3], theta[r3 + 1], theta[r3 + 2], theta[r3 + 3]
                h0, h1, h2, h3 = H[k, i], H[k, i + 1], H[k, i + 2], H[k, i + 3]
                for b in range(nb):
                    x0, x1, x2, x3 = h0[b], h1[b], h2[b], h3[b]
                    z0[b] = z0[b] + a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3
                    z1[b] = z1[b] + b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3
                    z2[b] = z2[b] + d0 * x0 + d1 * x1 + d2 * x2 + d3 * x3
                    z3[b] = z3[b] + e0 * x0 + e1 * x1 + e2 * x2 + e3 * x3
                i += 4
            while i < ni:
                w0 = theta[row + i]
                w1 = theta[row + ni + i]
                w2 = theta[row + 2 * ni + i]
                w3 = theta[row + 3 * ni + i]
                h = H[k, i]
                for b in range(nb):
                    hb = h[b]
                    z0[b] += w0 * hb
                    z1[b] += w1 * hb
                    z2[b] += w2 * hb
                    z3[b] += w3 * hb
                i += 1
            o += 4
        while o < no:
            z = Z[k, o]
            bias = theta[bb + o]
            for b in range(nb):
                z[b] = bias
            row = p + o * ni
            i = 0
            while i + 4 <= ni:
                r0 = row + i
                a0, a1, a2, a3 = theta[r0], theta[r0 + 1], theta[r0 + 2], theta[r0 + 3]
                h0, h1, h2, h3 = H[k, i], H[k, i + 1], H[k, i + 2], H[k, i + 3]
                for b in range(nb):
                    z[b] = z[b] + a0 * h0[b] + a1 * h1[b] + a2 * h2[b] + a3 * h3[b]
                i += 4
            while i < ni:
                w = theta[row + i]
                h = H[k, i]
                for b in range(nb):
                    z[b] += w * h[b]
                i += 1
            o += 1
        if k + 1 < nl:
            for o in range(no):
                z = Z[k, o]
                hn = H[k + 1, o]
                for b in range(nb):
                    v = z[b]
                    hn[b] = v if v > 0.0 else np.float32(0.0)
        p = bb + no


@njit
def _to_rgb(y, channels, b, out):
    """Lane b of YCoCg (or grey) output ``y`` in [0,1] units to RGB, unclipped."""
    if channels == 1:
        out[0] = y[0, b]
    else:
        Y = y[0, b]
        Co = y[1, b]
        Cg = y[2, b]
        out[0] = Y + Co - Cg
        out[1] = Y + Cg
        out[2] = Y - Co - Cg


@njit
def _max_width(layers):
    maxw = 1
    for k in range(layers.shape[0]):
        maxw = max(maxw, layers[k, 0], layers[k, 1])
    return maxw


@njit
def _row_features(C, coff, ncols, ri, rw, fr, fc, ft, r, c0, nb, X):
    """Features of samples ``(r, c0 + b)``, ``b < nb``, into ``X[:, b]``.

    The same sums, in the same order, as :func:`_features_block`; for samples
    on one row at consecutive columns the taps are shared by all lanes, so the
    loops over lanes read ``C`` contiguously and vectorize.
    """
    F = ft.shape[0]
    m2 = fr.shape[1]
    for f in range(F):
        lev = ft[f, 0]
        tr = ft[f, 1]
        base = coff[ft[f, 2], lev] + c0
        x = X[f]
        for b in range(nb):
            x[b] = 0.0
        for a in range(4):
            w = rw[tr, lev, r, a]
            src = base + ri[tr, lev, r, a] * ncols
            for b in range(nb):
                x[b] += w * C[src + b]
    for m in range(m2):
        xc = X[F + m]
        xr = X[F + m2 + m]
        f = fr[r, m]
        for b in range(nb):
            xc[b] = fc[c0 + b, m]
            xr[b] = f


@njit
def _accumulate_row(y, channels, sx, c0, nb, acc):
    """Add the RGB colours of lanes ``b < nb`` (samples at columns ``c0 + b``)
    to ``acc[ch, (c0 + b) // sx]``; RGB computed in float32."""
    if sx == 1:
        if channels == 1:
            g = acc[0, c0:c0 + nb]
            y0 = y[0]
            for b in range(nb):
                g[b] += y0[b]
        else:
            r_ = acc[0, c0:c0 + nb]
            g_ = acc[1, c0:c0 + nb]
            b_ = acc[2, c0:c0 + nb]
            Y = y[0]
            Co = y[1]
            Cg = y[2]
            for b in range(nb):
                r_[b] += Y[b] + Co[b] - Cg[b]
                g_[b] += Y[b] + Cg[b]
                b_[b] += Y[b] - Co[b] - Cg[b]
    else:
        rgb = np.zeros(3, np.float32)
        for b in range(nb):
            _to_rgb(y, channels, b, rgb)
            j = (c0 + b) // sx
            for ch in range(channels):
                acc[ch, j] += rgb[ch]


@njit
def _store_row(acc, inv, out_row):
    """Average, clip to [0, 1] and round one output row: ``floor(v * 255 + 0.5)``."""
    for ch in range(acc.shape[0]):
        for j in range(acc.shape[1]):
            v = acc[ch, j] * inv
            v = 0.0 if v < 0.0 else (1.0 if v > 1.0 else v)
            out_row[j, ch] = np.uint8(math.floor(v * 255.0 + 0.5))


@pjit
def _render(C, coff, ncols, ri, rw, fr, fc, ft, theta, layers, channels, sy, sx, out):
    """Render ``out`` (uint8[H', W', C]) from supersampled taps.

    Output pixel (i, j) averages the colours of samples (i*sy + a, j*sx + b),
    a < sy, b < sx, then clips to [0, 1] and rounds: ``floor(v * 255 + 0.5)``.
    Colours are converted to RGB in float32 and averaged in float64, in the
    order above (sample row by sample row, left to right).

    A row of samples is fed to the MLP in blocks of BLOCK lanes. When an
    output row has fewer than BLOCK samples (narrow images), groups of output
    rows share the blocks instead, so that the lanes are full. Lanes never mix,
    so the result does not depend on the grouping.
    """
    H = out.shape[0]
    W = out.shape[1]
    nl = layers.shape[0]
    maxw = _max_width(layers)
    ncols = W * sx
    per_row = sy * ncols  # samples per output row
    G = max(1, BLOCK // per_row)  # output rows per group
    inv = 1.0 / (sy * sx)
    for g in prange((H + G - 1) // G):
        i0 = g * G
        ng = min(H, i0 + G) - i0
        Hb = np.zeros((nl + 1, maxw, BLOCK), np.float32)
        Zb = np.zeros((nl, maxw, BLOCK), np.float32)
        acc = np.zeros((ng, channels, W))
        if G == 1:
            for a in range(sy):
                for c0 in range(0, ncols, BLOCK):
                    nb = min(BLOCK, ncols - c0)
                    _row_features(C, coff, ncols, ri, rw, fr, fc, ft, i0 * sy + a, c0, nb,
                                  Hb[0])
                    _mlp_forward_block(theta, layers, Hb, Zb, nb)
                    _accumulate_row(Zb[nl - 1], channels, sx, c0, nb, acc[0])
        else:
            rows = np.empty(BLOCK, np.int64)
            cols = np.empty(BLOCK, np.int64)
            rgb = np.zeros(3, np.float32)
            n = ng * per_row
            for s0 in range(0, n, BLOCK):
                nb = min(BLOCK, n - s0)
                for b in range(nb):
                    r = (s0 + b) // ncols  # sample row from the group's first
                    rows[b] = i0 * sy + r
                    cols[b] = s0 + b - r * ncols
                _features_block(C, coff, ncols, ri, rw, fr, fc, ft, rows, cols, nb, Hb[0])
                _mlp_forward_block(theta, layers, Hb, Zb, nb)
                for b in range(nb):
                    _to_rgb(Zb[nl - 1], channels, b, rgb)
                    ii = (rows[b] - i0 * sy) // sy
                    j = cols[b] // sx
                    for ch in range(channels):
                        acc[ii, ch, j] += rgb[ch]
        for ii in range(ng):
            _store_row(acc[ii], inv, out[i0 + ii])


def supersampling(spec: ModelSpec, out_w: int, out_h: int) -> tuple[int, int]:
    """Samples per output pixel along x and y: ``ceil(coded / out)``, at least 1."""
    sx = max(1, -(-spec.width // out_w))
    sy = max(1, -(-spec.height // out_h))
    return sx, sy


def render(spec: ModelSpec, theta: np.ndarray, lat: np.ndarray, out_w: int, out_h: int,
           band_rows: int = 256) -> np.ndarray:
    """Render the field at ``out_w x out_h``; returns uint8[H, W, C].

    Rows are rendered in bands so that temporary memory (the taps) stays
    proportional to the band, not to the output.
    """
    sx, sy = supersampling(spec, out_w, out_h)
    out = np.empty((out_h, out_w, spec.channels), dtype=np.uint8)
    offsets, dims = level_table(spec)
    layers = layer_table(spec)
    theta = np.ascontiguousarray(theta, dtype=np.float32)
    lat = np.ascontiguousarray(lat, dtype=np.float32)
    full = make_taps(spec, out_w, out_h, sx, sy)
    C, coff = column_pass(lat, offsets, dims, full)
    ncols = out_w * sx
    for r0 in range(0, out_h, band_rows):
        r1 = min(out_h, r0 + band_rows)
        s0, s1 = r0 * sy, r1 * sy
        band = np.ascontiguousarray
        _render(C, coff, ncols, band(full.ri[:, :, s0:s1]), band(full.rw[:, :, s0:s1]),
                band(full.fr[s0:s1]), full.fc, full.ft, theta, layers, spec.channels, sy, sx,
                out[r0:r1])
    return out

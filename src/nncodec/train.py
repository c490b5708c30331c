"""Training kernels (encoder side): forward, backward, rate proxy, Adam.

Shapes and dtypes:
    lat      float32[N]       all latent grids, flat, finest level first
    theta    float32[P]       MLP parameters, layer by layer, weights (out, in)
                              row-major then biases
    target   float32[H*W, C]  image in [0, 1]
    sel      int64[n]         indices (y * W + x) of the pixels of this step

Parallelism: :func:`_mlp_grad` runs over fixed tiles of ``TILE`` samples,
each with its own gradient row, summed in tile order, and its first worker
also runs the serial rate walk; the latent gradient is a gather (each output
cell sums its own contributions in a fixed order); the per-latent work of a
step (noise, soft rounding, rate lookup, Adam) is elementwise, and the noise
and the pixel samples are counter-based (a hash of the draw's key and an
index). Results do not depend on the number of threads nor on how the tiles
are split between them.

The rate proxy is the range coder's own cost (see "Rate from the coder
itself" below), taken at the latents plus uniform noise (Balle et al., ICLR
2018) or at their soft rounding plus noise (Agustsson and Theis 2020, as in
C3), then straight-through rounding (as in COIN++ / Cool-chic).
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import TILE, njit, njit_reassoc, pjit, prange
from .entropy import (_NEG_LOG2, L_MAG, L_SIGN, L_ZERO, LAT_UNARY, LCTX, PROB_ONE, _adapt,
                      _bit_cost, _eg0_bits, _is_parent, _mag_class, _neigh, _zero_class,
                      new_probs)
from .field import (BLOCK, _features_block, _job_row, _max_width, _mlp_forward_block,
                    _row_features, _rows_before, _to_rgb)

LN2 = math.log(2.0)
#: The coder's context state at the start of a grid, in the format version
#: the encoder writes (a constant of the kernels, copied per grid).
_FRESH_PROBS = new_probs(LCTX)


@njit_reassoc
def _dots4(d0, d1, d2, d3, x, nb):
    """``sum(dk[:nb] * x[:nb])`` for k = 0..3, float32, in an order LLVM
    picks for its vector registers (``reassoc``: the one kernel code that
    lets it reorder a sum; the same on every run of one build)."""
    s0 = np.float32(0.0)
    s1 = np.float32(0.0)
    s2 = np.float32(0.0)
    s3 = np.float32(0.0)
    for b in range(nb):
        xb = x[b]
        s0 += d0[b] * xb
        s1 += d1[b] * xb
        s2 += d2[b] * xb
        s3 += d3[b] * xb
    return s0, s1, s2, s3


@njit
def _mlp_tile(t, C, coff, ri, rw, fr, fc, ft, theta, layers, channels, target, sel, width,
              gbuf, lbuf, dfeat):
    """Forward and backward over tile ``t`` (``TILE`` selected pixels).

    ``C, coff`` are the column pass of the grids (:func:`field.column_pass`).
    Writes the tile's parameter gradient to ``gbuf[t]`` (float64[P]), its
    squared-error sum to ``lbuf[t]`` and the gradient of the loss (sum of
    squared RGB errors / (n * C)) w.r.t. each grid feature of each of its
    pixels to ``dfeat[f, s]`` (float32[F, n]), for grid feature ``f`` of
    pixel ``sel[s]`` (``ft``: see :class:`field.Taps`).

    A parameter's gradient is a dot product over each block's samples
    (:func:`_dots4`, in vector registers; a bias's against ones), and the
    blocks' sums are added in order in float64. Per-sample partial sums,
    loaded and stored at every block, made this kernel 1.4 times slower.
    """
    n = sel.shape[0]
    nl = layers.shape[0]
    P = theta.shape[0]
    F = ft.shape[0]
    ncols = fc.shape[0]
    maxw = _max_width(layers)
    scale = np.float32(2.0 / (n * channels))
    Hb = np.zeros((nl + 1, maxw, BLOCK), np.float32)
    Zb = np.zeros((nl, maxw, BLOCK), np.float32)
    dZ = np.zeros((maxw, BLOCK), np.float32)
    dH = np.zeros((maxw, BLOCK), np.float32)
    G = gbuf[t]  # the tile's gradient, summed in place
    G[:] = 0.0
    ones = np.ones(BLOCK, np.float32)
    rows = np.empty(BLOCK, np.int64)
    cols = np.empty(BLOCK, np.int64)
    rgb = np.zeros(3, np.float32)
    loss = 0.0
    end = min(n, (t + 1) * TILE)
    s0 = t * TILE
    while s0 < end:
        nb = _run_length(sel, s0, end, width)
        if nb >= MIN_RUN:
            # A run of consecutive pixels on one row: the row taps are shared.
            r0 = sel[s0] // width
            _row_features(C, coff, ncols, ri, rw, fr, fc, ft, r0, sel[s0] - r0 * width, nb,
                          Hb[0])
        else:
            nb = min(BLOCK, end - s0)
            for b in range(nb):
                p = sel[s0 + b]
                rows[b] = p // width
                cols[b] = p - rows[b] * width
            _features_block(C, coff, ncols, ri, rw, fr, fc, ft, rows, cols, nb, Hb[0])
        _mlp_forward_block(theta, layers, Hb, Zb, nb)
        # d loss / d output (YCoCg): transpose of the colour transform.
        for b in range(nb):
            p = sel[s0 + b]
            _to_rgb(Zb[nl - 1], channels, b, rgb)
            if channels == 1:
                e = rgb[0] - target[p, 0]
                loss += e * e
                dZ[0, b] = scale * e
            else:
                e0 = rgb[0] - target[p, 0]
                e1 = rgb[1] - target[p, 1]
                e2 = rgb[2] - target[p, 2]
                loss += e0 * e0 + e1 * e1 + e2 * e2
                dZ[0, b] = scale * (e0 + e1 + e2)
                dZ[1, b] = scale * (e0 - e2)
                dZ[2, b] = scale * (-e0 + e1 - e2)
        # Backward through the layers, last to first.
        pend = P
        for k in range(nl - 1, -1, -1):
            no = layers[k, 0]
            ni = layers[k, 1]
            bb = pend - no
            wb = bb - no * ni
            for i in range(ni):
                dh = dH[i]
                for b in range(nb):
                    dh[b] = 0.0
            # Four outputs per pass over the inputs, four inputs per pass over
            # the lanes: each output's gradient is loaded once for four inputs
            # and each input's gradient loaded and stored once per four terms,
            # still added in ascending output order.
            o = 0
            while o + 4 <= no:
                dz0, dz1, dz2, dz3 = dZ[o], dZ[o + 1], dZ[o + 2], dZ[o + 3]
                u0, u1, u2, u3 = _dots4(dz0, dz1, dz2, dz3, ones, nb)
                G[bb + o] += u0
                G[bb + o + 1] += u1
                G[bb + o + 2] += u2
                G[bb + o + 3] += u3
                r0 = wb + o * ni
                r1, r2, r3 = r0 + ni, r0 + 2 * ni, r0 + 3 * ni
                for i in range(ni):
                    u0, u1, u2, u3 = _dots4(dz0, dz1, dz2, dz3, Hb[k, i], nb)
                    G[r0 + i] += u0
                    G[r1 + i] += u1
                    G[r2 + i] += u2
                    G[r3 + i] += u3
                i = 0
                while i + 4 <= ni:
                    a0, a1, a2, a3 = theta[r0 + i], theta[r1 + i], theta[r2 + i], theta[r3 + i]
                    b0, b1, b2, b3 = (theta[r0 + i + 1], theta[r1 + i + 1], theta[r2 + i + 1],
                                      theta[r3 + i + 1])
                    c0, c1, c2, c3 = (theta[r0 + i + 2], theta[r1 + i + 2], theta[r2 + i + 2],
                                      theta[r3 + i + 2])
                    e0, e1, e2, e3 = (theta[r0 + i + 3], theta[r1 + i + 3], theta[r2 + i + 3],
                                      theta[r3 + i + 3])
                    dh0, dh1, dh2, dh3 = dH[i], dH[i + 1], dH[i + 2], dH[i + 3]
                    for b in range(nb):
                        x0, x1, x2, x3 = dz0[b], dz1[b], dz2[b], dz3[b]
                        dh0[b] = dh0[b] + x0 * a0 + x1 * a1 + x2 * a2 + x3 * a3
                        dh1[b] = dh1[b] + x0 * b0 + x1 * b1 + x2 * b2 + x3 * b3
                        dh2[b] = dh2[b] + x0 * c0 + x1 * c1 + x2 * c2 + x3 * c3
                        dh3[b] = dh3[b] + x0 * e0 + x1 * e1 + x2 * e2 + x3 * e3
                    i += 4
                while i < ni:
                    w0, w1, w2, w3 = theta[r0 + i], theta[r1 + i], theta[r2 + i], theta[r3 + i]
                    dh = dH[i]
                    for b in range(nb):
                        dh[b] = dh[b] + dz0[b] * w0 + dz1[b] * w1 + dz2[b] * w2 + dz3[b] * w3
                    i += 1
                o += 4
            rem = no - o
            if rem > 0:
                # The last one to three outputs (the colour layer): their dot
                # products in one call per input, each input's terms added
                # in ascending output order.
                dza = dZ[o]
                dzb = dZ[o + 1] if rem > 1 else dza
                dzc = dZ[o + 2] if rem > 2 else dzb
                u0, u1, u2, u3 = _dots4(dza, dzb, dzc, dzc, ones, nb)
                G[bb + o] += u0
                if rem > 1:
                    G[bb + o + 1] += u1
                if rem > 2:
                    G[bb + o + 2] += u2
                row = wb + o * ni
                for i in range(ni):
                    u0, u1, u2, u3 = _dots4(dza, dzb, dzc, dzc, Hb[k, i], nb)
                    G[row + i] += u0
                    if rem > 1:
                        G[row + ni + i] += u1
                    if rem > 2:
                        G[row + 2 * ni + i] += u2
                    dh = dH[i]
                    for j in range(rem):
                        w = theta[row + j * ni + i]
                        dz = dZ[o + j]
                        for b in range(nb):
                            dh[b] += dz[b] * w
            if k > 0:
                for i in range(ni):
                    dz = dZ[i]
                    dh = dH[i]
                    z = Zb[k - 1, i]
                    for b in range(nb):
                        dz[b] = dh[b] if z[b] > 0.0 else np.float32(0.0)
            pend = wb
        for f in range(F):
            for b in range(nb):
                dfeat[f, s0 + b] = dH[f, b]
        s0 += nb
    lbuf[t] = loss


#: Shortest run of consecutive pixels that :func:`_mlp_tile` takes as one block
#: (shorter runs are gathered, up to BLOCK samples at a time).
MIN_RUN = 8


@njit
def _run_length(sel, s0, end, width):
    """Length (up to BLOCK) of the run of consecutive pixels on one row that
    starts at ``sel[s0]``, within ``sel[s0:end]``."""
    lim = min(BLOCK, end - s0)
    row_end = (sel[s0] // width + 1) * width
    k = 1
    while k < lim and sel[s0 + k] == sel[s0] + k and sel[s0 + k] < row_end:
        k += 1
    return k


@pjit
def _mlp_grad(C, coff, ri, rw, fr, fc, ft, theta, layers, channels, target, sel, width,
              gbuf, lbuf, dfeat, bounds, q, offsets, dims, table, tail):
    """Forward and backward over the selected pixels, and the rate walk.

    One parallel iteration per worker: worker ``k`` runs the tiles
    ``bounds[k]:bounds[k + 1]`` (see :func:`_mlp_tile`); worker 0 first runs
    the serial walk :func:`_rate_table` over the integer latents ``q``
    (into ``table`` and ``tail[0]``), unless ``table`` is empty. Every tile
    and the walk write their own outputs, so the results do not depend on
    ``bounds``, which only balances the workers' time.
    """
    for k in prange(bounds.shape[0] - 1):
        if k == 0 and table.shape[0]:
            tail[0] = _rate_table(q, offsets, dims, table)
        for t in range(bounds[k], bounds[k + 1]):
            _mlp_tile(t, C, coff, ri, rw, fr, fc, ft, theta, layers, channels, target, sel,
                      width, gbuf, lbuf, dfeat)


#: The rate arguments of :func:`_mlp_grad` that skip the rate walk.
NO_RATE = (np.empty(0, np.int64), np.zeros(1, np.int64), np.zeros((0, 2), np.int64),
           np.zeros((0, 3), np.float32), np.zeros(1, np.float64))


def worker_bounds(ntiles: int, workers: int, rate_tiles: float) -> np.ndarray:
    """Tile ranges of the workers when worker 0 also does ``rate_tiles`` tiles' work.

    Worker 0 gets the number of tiles that makes the busiest worker's load
    smallest; the others share the rest evenly.
    """
    if workers <= 1:
        return np.array([0, ntiles], np.int64)
    others = workers - 1

    def load(k):
        return max(rate_tiles + k, -(-(ntiles - k) // others))

    first = min(range(ntiles + 1), key=load)
    rest = ntiles - first
    return np.array([0] + [first + rest * k // others for k in range(workers)], np.int64)


@njit
def _row_starts(sel, width, height):
    """starts[y] = index of the first selected pixel in row >= y (sel ascending)."""
    starts = np.empty(height + 1, np.int64)
    s = 0
    n = sel.shape[0]
    for y in range(height + 1):
        lim = y * width
        while s < n and sel[s] < lim:
            s += 1
        starts[y] = s
    return starts


@njit
def _store4(row, c, a0, a1, a2, a3):
    """``row[c:c + 4] = a0, a1, a2, a3``: the window of :func:`_grid_grad_rows`."""
    row[c] = a0
    row[c + 1] = a1
    row[c + 2] = a2
    row[c + 3] = a3


@pjit
def _grid_grad_rows(dfeat, sel, starts, ci, cw, ft, dims, width, toff, tmp):
    """Row pass of the back-projection, every grid feature at once.

    For grid feature ``f`` (grid ``lev = ft[f, 0]``, column shift
    ``tc = ft[f, 2]``) and image row ``y``:
    ``tmp[toff[f] + y * wk + b] = sum cw[tc, lev, x, t] * dfeat[f, k]`` over the
    selected pixels ``sel[k] = (y, x)`` of the row (``sel[starts[y]:starts[y+1]]``,
    in order) and ``t`` with ``ci[tc, lev, x, t] == b``, each sum taken in
    that order (pixels ascending, then taps). One parallel iteration per
    (row, feature), row-major: the workers' equal shares of the jobs then
    hold the same mix of wide (fine) and narrow grids. Rows without
    selected pixels are left as they are: :func:`_grid_grad_cols` skips
    them.

    A pixel's four taps are consecutive columns ``c, c + 1, c + 2, c + 3``
    but at the grid's edges (clamped), and ``c`` never decreases along the
    row, so the four sums a pixel adds to are held in registers and slide
    along with ``c`` (stored when they leave the window, loaded when they
    enter it): the same additions in the same order as adding into the row
    in memory, without a chain of stores and loads through one address.
    """
    F = ft.shape[0]
    H = starts.shape[0] - 1
    for job in prange(F * H):
        y = job // F
        f = job - y * F
        k0 = starts[y]
        k1 = starts[y + 1]
        if k0 == k1:
            continue
        lev = ft[f, 0]
        tc = ft[f, 2]
        wk = dims[lev, 1]
        base = y * width
        row = tmp[toff[f] + y * wk: toff[f] + (y + 1) * wk]
        for b in range(wk):
            row[b] = 0.0
        cix = ci[tc, lev]
        cwx = cw[tc, lev]
        dk = dfeat[f]
        c = -1  # first column of the window; -1: no window
        a0 = a1 = a2 = a3 = 0.0
        for k in range(k0, k1):
            x = sel[k] - base
            c0 = cix[x, 0]
            d = dk[k]
            if cix[x, 3] == c0 + 3:
                if c0 != c:
                    if c >= 0 and c0 == c + 1:
                        row[c] = a0
                        a0 = a1
                        a1 = a2
                        a2 = a3
                        a3 = row[c0 + 3]
                    else:
                        if c >= 0:
                            _store4(row, c, a0, a1, a2, a3)
                        a0 = row[c0]
                        a1 = row[c0 + 1]
                        a2 = row[c0 + 2]
                        a3 = row[c0 + 3]
                    c = c0
                if d != 0.0:
                    a0 += cwx[x, 0] * d
                    a1 += cwx[x, 1] * d
                    a2 += cwx[x, 2] * d
                    a3 += cwx[x, 3] * d
            else:  # taps clamped at an edge: add in memory
                if c >= 0:
                    _store4(row, c, a0, a1, a2, a3)
                    c = -1
                if d != 0.0:
                    for t in range(4):
                        row[cix[x, t]] += cwx[x, t] * d
        if c >= 0:
            _store4(row, c, a0, a1, a2, a3)


@pjit
def _grid_grad_cols(tmp, toff, ri, rw, ft, dims, offsets, starts, out):
    """Column pass: ``out[grid lev][a, b] = sum rw[tr, lev, y, t] * tmp_f[y, b]``.

    Summed over the grid's features ``f`` (those with ``ft[f, 0] == lev``,
    row shift ``tr = ft[f, 1]``) in ascending order, then the rows ``y`` and
    taps ``t`` with ``ri[tr, lev, y, t] == a``, all ascending. One parallel
    iteration per grid row ``(lev, a)``; it adds whole rows of ``tmp`` (a
    vectorized loop). The rows reaching ``a`` are a contiguous range, as
    ``ri`` grows with ``y``: its first row is found by bisection. Image rows
    without selected pixels (``starts[y] == starts[y + 1]``) are zero and
    skipped: adding their zeros would not change a sum (the taps' weights
    are not negative, so no term is -0.0).
    """
    F = ft.shape[0]
    H = ri.shape[2]
    rows_before = _rows_before(dims)
    for job in prange(rows_before[-1]):
        lev, a = _job_row(rows_before, job)
        wk = dims[lev, 1]
        dst = out[offsets[lev] + a * wk: offsets[lev] + (a + 1) * wk]
        for b in range(wk):
            dst[b] = 0.0
        for f in range(F):
            if ft[f, 0] != lev:
                continue
            tr = ft[f, 1]
            # First row whose taps reach a (ri is non-decreasing in y).
            y0 = 0
            y1 = H
            while y0 < y1:
                m = (y0 + y1) >> 1
                if ri[tr, lev, m, 3] < a:
                    y0 = m + 1
                else:
                    y1 = m
            y = y0
            while y < H and ri[tr, lev, y, 0] <= a:
                if starts[y] == starts[y + 1]:
                    y += 1
                    continue
                src = tmp[toff[f] + y * wk: toff[f] + (y + 1) * wk]
                for t in range(4):
                    if ri[tr, lev, y, t] == a:
                        w = np.float64(rw[tr, lev, y, t])
                        for b in range(wk):
                            dst[b] += w * src[b]
                y += 1


def latent_grad(dfeat, sel, taps, offsets, dims, width, out):
    """Back-project per-sample feature gradients onto the grids (into ``out``).

    ``dfeat[f, s]`` is the gradient for grid feature ``f`` at pixel ``sel[s]``
    (``sel`` ascending). The transpose of the separable sampling, as two
    gathers (rows, then columns), each output written by one loop iteration
    in a fixed order.
    """
    height = taps.ri.shape[2]
    ft = taps.ft
    starts = _row_starts(sel, width, height)
    F = ft.shape[0]
    toff = np.zeros(F + 1, np.int64)
    toff[1:] = np.cumsum(dims[ft[:, 0], 1] * height)
    tmp = np.empty(int(toff[-1]), np.float64)
    if F:
        _grid_grad_rows(dfeat, sel, starts, taps.ci, taps.cw, ft, dims, width, toff, tmp)
        _grid_grad_cols(tmp, toff, taps.ri, taps.rw, ft, dims, offsets, starts, out)
    else:
        out[:] = 0.0


# ---------------------------------------------------------------------------
# Rate from the coder itself ("adaptive" model).
#
# The range coder codes each latent as binary decisions (zero flag, sign,
# unary magnitude, exp-Golomb escape in bypass bits) with adaptive
# probabilities in contexts taken from already coded neighbours and the
# parent (entropy.py); every grid has its own contexts, starting at 1/2.
# This model replays that adaptation over the rounded latents ``q``
# (:func:`_rate_table`) and records what each latent's value and its two
# neighbours would cost with the probabilities in force when the coder
# reaches it: at ``y = q`` the total is the coded size of the latents (up to
# the coder's final bytes; the zeros that end the stream are free and are
# not counted in the total). A non-integer ``y`` is charged by linear
# interpolation between the integers around it (:func:`_table_rate`), which
# gives the gradient. The walk is serial; the trainer repeats it every few
# steps (encoder.RATE_WALK_EVERY) and looks costs up in between.


@njit
def _value_bits(probs, zc, sctx, mc, v):
    """Bits of integer ``v`` in the given contexts (``probs`` unchanged)."""
    if v == 0:
        return _bit_cost(probs, L_ZERO + zc, 0)
    bits = _bit_cost(probs, L_ZERO + zc, 1) + _bit_cost(probs, L_SIGN + sctx, 1 if v < 0 else 0)
    m = abs(v)
    k = 1
    while k <= LAT_UNARY:
        more = 1 if m > k else 0
        bits += _bit_cost(probs, L_MAG + (k - 1) * 3 + mc, more)
        if more == 0:
            break
        k += 1
    if m > LAT_UNARY:
        bits += _escape_bits(m)
    return bits


@njit
def _escape_bits(m):
    """Bypass bits of the exp-Golomb escape of magnitude ``m > LAT_UNARY``."""
    return _eg0_bits(m - LAT_UNARY - 1)


@njit
def _mag_bit(probs, k, mc, more):
    """Bits of unary magnitude bin ``k`` (from 1) saying ``more`` (1) or stop (0)."""
    ctx = L_MAG + (k - 1) * 3 + mc
    p0 = (probs[ctx, 0] + probs[ctx, 1]) >> 1
    return _NEG_LOG2[p0 if more == 0 else PROB_ONE - p0]


@njit
def _zero_costs(probs, zc, sctx, mc, table, n):
    """``table[n] = _value_bits`` of -1, 0 and 1, summed as it sums them:
    the three share the zero flag's and the sign's probabilities and the
    first magnitude bin."""
    pz = (probs[L_ZERO + zc, 0] + probs[L_ZERO + zc, 1]) >> 1
    ps = (probs[L_SIGN + sctx, 0] + probs[L_SIGN + sctx, 1]) >> 1
    nz = _NEG_LOG2[PROB_ONE - pz]
    stop = _mag_bit(probs, 1, mc, 0)
    table[n, 0] = (nz + _NEG_LOG2[PROB_ONE - ps]) + stop
    table[n, 1] = _NEG_LOG2[pz]
    table[n, 2] = (nz + _NEG_LOG2[ps]) + stop


@njit
def _nonzero_costs(probs, zc, sctx, mc, v, table, n):
    """``table[n] = _value_bits`` of ``v - 1, v, v + 1`` for ``v != 0``.

    One walk along the shared prefix of "more" bins gives magnitudes
    ``|v| - 1``, ``|v|`` and ``|v| + 1``; each total is summed in the order
    :func:`_value_bits` sums it, so the costs are identical to three calls.
    """
    pz = (probs[L_ZERO + zc, 0] + probs[L_ZERO + zc, 1]) >> 1
    ps = (probs[L_SIGN + sctx, 0] + probs[L_SIGN + sctx, 1]) >> 1
    m = abs(v)
    neg = v < 0
    acc = _NEG_LOG2[PROB_ONE - pz] + _NEG_LOG2[PROB_ONE - ps if neg else ps]
    if m == 1:
        lo = _NEG_LOG2[pz]  # the value 0
    else:
        k = 1
        while k < m - 1 and k <= LAT_UNARY:
            acc += _mag_bit(probs, k, mc, 1)
            k += 1
        if m - 1 <= LAT_UNARY:
            lo = acc + _mag_bit(probs, m - 1, mc, 0)
            acc += _mag_bit(probs, m - 1, mc, 1)
        else:
            lo = acc + _escape_bits(m - 1)
    if m <= LAT_UNARY:
        mid = acc + _mag_bit(probs, m, mc, 0)
        acc += _mag_bit(probs, m, mc, 1)
    else:
        mid = acc + _escape_bits(m)
    if m + 1 <= LAT_UNARY:
        hi = acc + _mag_bit(probs, m + 1, mc, 0)
    else:
        hi = acc + _escape_bits(m + 1)
    table[n, 0] = hi if neg else lo
    table[n, 1] = mid
    table[n, 2] = lo if neg else hi


@njit
def _adapt_value(probs, zc, sctx, mc, v):
    """Adapt ``probs`` along the bins of ``v``, as coding it would."""
    if v == 0:
        _adapt(probs, L_ZERO + zc, 0)
        return
    _adapt(probs, L_ZERO + zc, 1)
    _adapt(probs, L_SIGN + sctx, 1 if v < 0 else 0)
    m = abs(v)
    k = 1
    while k <= LAT_UNARY:
        more = 1 if m > k else 0
        _adapt(probs, L_MAG + (k - 1) * 3 + mc, more)
        if more == 0:
            break
        k += 1


@njit
def _rate_table(q, offsets, dims, table):
    """Costs of every latent's value and its two neighbours along ``q``.

    Replays the coder's adaptation over the integer latents ``q`` (grid
    after grid, each from fresh contexts, in raster order, with the coder's
    contexts) and writes, for latent ``n``, the bits that ``q[n] - 1``,
    ``q[n]`` and ``q[n] + 1`` would cost with the probabilities in force when
    the coder reaches it, into ``table[n, 0:3]``. Returns the bits of the
    trailing zeros of grid 0 (coded last, they cost no bytes), so that
    ``table[:, 1].sum() - tail`` is the coded size of ``q``'s latents.
    """
    L = dims.shape[0]
    tail = 0.0
    for lev in range(L):
        hk = dims[lev, 0]
        wk = dims[lev, 1]
        off = offsets[lev]
        qg = q[off: off + hk * wk].reshape((hk, wk))
        has_parent = _is_parent(dims, lev)
        qp = qg
        if has_parent:
            qp = q[offsets[lev + 1]: offsets[lev + 1] + dims[lev + 1, 0] * dims[lev + 1, 1]
                   ].reshape((dims[lev + 1, 0], dims[lev + 1, 1]))
        probs = _FRESH_PROBS.copy()
        t = 0.0
        for i in range(hk):
            for j in range(wk):
                s, sctx = _neigh(qg, i, j, hk, wk)
                pnz = 0
                if has_parent and qp[i >> 1, j >> 1] != 0:
                    pnz = 1
                zc = _zero_class(s) * 2 + pnz
                mc = _mag_class(s)
                n = off + i * wk + j
                v = qg[i, j]
                if v == 0:  # most latents: one context moves
                    _zero_costs(probs, zc, sctx, mc, table, n)
                    t += table[n, 1]
                    _adapt(probs, L_ZERO + zc, 0)
                else:
                    _nonzero_costs(probs, zc, sctx, mc, v, table, n)
                    t = 0.0
                    _adapt_value(probs, zc, sctx, mc, v)
        if lev == 0:
            tail = t
    return tail


RATE_CHUNK = 4096


@pjit
def _table_rate(y, qc, table, weight, glat, mode, dyhat, dys):
    """Bits of ``y`` from the cost tables of :func:`_rate_table`, and their
    gradient added to ``glat``.

    Latent ``n`` costs the piecewise linear interpolation of
    ``table[n, k + 1]`` at ``qc[n] + k``, k = -1, 0, 1 (extrapolated with the
    edge slopes), at ``y[n]``; its rate gradient ``g = weight *`` the slope
    there: the cost of the integer above ``y`` minus that of the one below,
    while ``y`` lies within one of ``qc``. ``glat[n]`` (the distortion's
    gradient) becomes ``glat[n] + g``, or in SOFT mode, through the soft
    rounding, ``(glat[n] * dyhat[n] + g) * dys[n]`` (the chain rule of
    :func:`latent_inputs`; ``dyhat`` and ``dys`` are read in SOFT mode only).
    One pass for both, as they touch the same latents. Returns the total,
    summed in fixed chunks.
    """
    n = y.shape[0]
    nch = (n + RATE_CHUNK - 1) // RATE_CHUNK
    part = np.zeros(nch, np.float64)
    for c in prange(nch):
        acc = 0.0
        for i in range(c * RATE_CHUNK, min(n, (c + 1) * RATE_CHUNK)):
            x = np.float64(y[i]) - qc[i]
            t0 = np.float64(table[i, 0])
            t1 = np.float64(table[i, 1])
            t2 = np.float64(table[i, 2])
            # Both slopes, then a select: a branch on the sign of x, which is
            # random, would be mispredicted half the time.
            d = t1 - t0 if x < 0.0 else t2 - t1
            acc += t1 + x * d
            g = weight * d
            if mode == SOFT:
                glat[i] = (glat[i] * dyhat[i] + g) * dys[i]
            else:
                glat[i] += g
        part[c] = acc
    total = 0.0
    for c in range(nch):
        total += part[c]
    return total


# ---------------------------------------------------------------------------
# Per-step latent inputs and updates: elementwise, one parallel pass each.

#: Modes of :func:`latent_inputs`.
NOISE, SOFT, HARD = 0, 1, 2

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


@njit
def _mix64(z):
    """The SplitMix64 output function (Steele, Lea and Flood 2014), on a uint64."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


#: Streams of counter-based random numbers of a training run.
STREAM_NOISE, STREAM_SAMPLE = 0x6E6E636F, 0x73616D70


def noise_key(seed: int, counter: int, stream: int = STREAM_NOISE) -> np.uint64:
    """Key of the ``counter``-th draw from ``stream`` of a training run seeded ``seed``."""
    run = int(_mix64(np.uint64((seed * _GOLDEN + stream) & _M64)))
    return np.uint64(_mix64(np.uint64((run + counter * _GOLDEN) & _M64)))


@njit
def _counter_bits(key, i):
    """Top 24 bits of SplitMix64 of ``key + (i + 1) * golden``, as a uint64:
    value ``i`` of the counter-based draw ``key``."""
    return _mix64(key + np.uint64(i + 1) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)


@njit
def _uniform(key, i):
    """Noise value ``i`` of draw ``key``: uniform on [-1/2, 1/2), 24 bits, float32.

    SplitMix64 of ``key + (i + 1) * golden``: a counter-based generator, so
    every value is a function of its index and a parallel loop draws the
    same noise whatever the number of threads.
    """
    return np.float32(np.int64(_counter_bits(key, i))) * np.float32(2.0 ** -24) - np.float32(0.5)


@pjit
def _fill_uniform(key, out):
    for i in prange(out.shape[0]):
        out[i] = _uniform(key, i)


#: Width of the row segments that :func:`sample_segments` draws: one block of
#: the synthesis kernel. On 8 Kodak crops (384x256) at 1 and 4 KiB, segments
#: against one random pixel per 8 consecutive ones (the same share of the
#: pixels): -0.08 and +0.01 dB (noise), encode time x0.66 and x0.92.
SEGMENT = 64


@pjit
def _fill_segments(key, band, h, w, out):
    """Rows of the segments and their pixels: see :func:`sample_segments`."""
    nstrips = (w + SEGMENT - 1) // SEGMENT
    nbands = (h + band - 1) // band
    for bi in prange(nbands):
        top = bi * band
        bh = min(band, h - top)
        pos = bi * w
        # Each strip's row, then the strips in row order (ascending pixels).
        rows = np.empty(nstrips, np.int64)
        for si in range(nstrips):
            rows[si] = top + np.int64((_counter_bits(key, bi * nstrips + si) * np.uint64(bh))
                                      >> np.uint64(24))
        for r in range(top, top + bh):
            for si in range(nstrips):
                if rows[si] == r:
                    c1 = min(w, (si + 1) * SEGMENT)
                    for c in range(si * SEGMENT, c1):
                        out[pos] = r * w + c
                        pos += 1


def sample_segments(key, h: int, w: int, band: int) -> np.ndarray:
    """Pixels of one random row segment in each tile of ``band`` rows by SEGMENT columns.

    The image is cut into bands of ``band`` rows and strips of SEGMENT
    columns; in each tile, one row (drawn from the top 24 bits of SplitMix64
    of ``key + (i + 1) * golden``, ``i`` the tile's index, bands outer) gives
    its segment of up to SEGMENT consecutive pixels. Returns their indices
    ``y * w + x``, ascending: ``w`` pixels per band, one in ``band`` of the
    image, in runs that the synthesis kernel takes as vectorized row blocks.
    """
    out = np.empty(w * (-(-h // band)), np.int64)
    _fill_segments(np.uint64(key), np.int64(band), np.int64(h), np.int64(w), out)
    return out


def uniform_noise(key, n: int) -> np.ndarray:
    """The noise :func:`latent_inputs` draws with ``key``, float32[n]."""
    out = np.empty(n, np.float32)
    _fill_uniform(np.uint64(key), out)
    return out


#: tanh(x) ~ x P(x^2) / Q(x^2) for |x| <= TANH_CLAMP (that value beyond): a
#: rational fit of degrees 13 / 6 (weighted least squares towards minimax,
#: fitted for nncodec), error under 1e-8 up to |x| = 8 in float64 and 4e-8
#: beyond (float32's spacing near 1 is 6e-8). Coefficients by ascending
#: power of x^2.
TANH_P = (0.9999999689731859, 0.13079209119738852, 0.003098704955314632,
          1.1102349728342316e-05, -2.0031684235285416e-08, 5.193711109722944e-11,
          -8.293921204488195e-14)
TANH_Q = (1.0, 0.464125293858926, 0.024473963561282258, 0.0002538674706527954)
TANH_CLAMP = 9.0


@njit
def tanh(x):
    """tanh of a float64, in float64 arithmetic: within 1e-8 of the true
    value up to |x| = 8 (soft rounding takes it at |x| <= 5), 4e-8 beyond,
    odd and within [-1, 1]. Two polynomials and one division, so loops of
    it vectorize (a libm call per value would not)."""
    xc = min(max(x, -TANH_CLAMP), TANH_CLAMP)
    z = xc * xc
    p = (((((TANH_P[6] * z + TANH_P[5]) * z + TANH_P[4]) * z + TANH_P[3]) * z + TANH_P[2]) * z
         + TANH_P[1]) * z + TANH_P[0]
    q = ((TANH_Q[3] * z + TANH_Q[2]) * z + TANH_Q[1]) * z + TANH_Q[0]
    return min(max(xc * p / q, -1.0), 1.0)


def latent_inputs(lat, key, mode: int, alpha: float = 0.0):
    """What one training step feeds the synthesis and the rate, per latent.

    ``u`` is uniform noise in [-1/2, 1/2) drawn with ``key`` (see
    :func:`uniform_noise`). Returns ``(yhat, yrate, dyhat, dys)``, float32.
    NOISE: the synthesis and the rate see y + u. SOFT: the rate sees
    s(y) + u and the synthesis s(s(y) + u), with ``dys`` = s'(y) and
    ``dyhat`` = s'(s(y) + u), where s is soft rounding (Agustsson and Theis
    2020; ``alpha`` > 0): s(y) = m + 1/2 + k tanh(alpha r), s'(y) = alpha k
    (1 - tanh(alpha r)^2), m = floor(y), r = y - m - 1/2, k = 1 / (2
    tanh(alpha / 2)). HARD: the synthesis sees round(y) (halves up), the
    rate y + u. ``dyhat`` and ``dys`` are set in SOFT mode only.

    One parallel elementwise pass, float32 but the tanh (:func:`tanh`, in
    float64).
    """
    n = lat.shape[0]
    key = np.uint64(key)
    yhat, yrate, dyhat, dys = (np.empty(n, np.float32) for _ in range(4))
    if mode != SOFT:
        _noisy_or_rounded(lat, key, mode == HARD, yhat, yrate)
        return yhat, yrate, dyhat, dys
    k = 0.5 / tanh(0.5 * alpha)
    _soft_rounded(lat, key, np.float32(alpha), np.float32(k), np.float32(alpha * k),
                  yhat, yrate, dyhat, dys)
    return yhat, yrate, dyhat, dys


@pjit
def rounded(lat):
    """round(y) of each latent, halves up, int64."""
    q = np.empty(lat.shape[0], np.int64)
    half = np.float32(0.5)
    for i in prange(lat.shape[0]):
        q[i] = np.int64(np.floor(lat[i] + half))
    return q


@pjit
def _noisy_or_rounded(lat, key, hard, yhat, yrate):
    half = np.float32(0.5)
    for i in prange(lat.shape[0]):
        y = lat[i]
        yn = y + _uniform(key, i)
        yrate[i] = yn
        yhat[i] = np.floor(y + half) if hard else yn


@njit
def _soft_round(y, a, k, ak):
    """s(y) and s'(y) of :func:`latent_inputs` in float32 (the tanh in float64)."""
    m = np.floor(y)
    t = np.float32(tanh(np.float64(a * (y - m - np.float32(0.5)))))
    return m + np.float32(0.5) + k * t, ak * (np.float32(1.0) - t * t)


@pjit
def _soft_rounded(lat, key, a, k, ak, yhat, yrate, dyhat, dys):
    for i in prange(lat.shape[0]):
        s, ds = _soft_round(lat[i], a, k, ak)
        dys[i] = ds
        yn = s + _uniform(key, i)
        yrate[i] = yn
        sh, dsh = _soft_round(yn, a, k, ak)
        yhat[i] = sh
        dyhat[i] = dsh


@njit
def squared_error(a, b):
    """Sum of squared differences of two flat integer arrays, as an exact int64.

    Integer addition is associative, so the loop vectorizes and the sum is
    the same in any order (an image's sum stays far below 2**63).
    """
    acc = np.int64(0)
    for i in range(a.shape[0]):
        d = np.int64(a[i]) - np.int64(b[i])
        acc += d * d
    return acc


@pjit
def _adam(p, g, m, v, lr, b1, b2, eps, t):
    """One Adam step in place (Kingma & Ba 2015), bias-corrected."""
    c1 = 1.0 - b1 ** t
    c2 = 1.0 - b2 ** t
    for i in prange(p.shape[0]):
        gi = g[i]
        m[i] = b1 * m[i] + (1.0 - b1) * gi
        v[i] = b2 * v[i] + (1.0 - b2) * gi * gi
        p[i] -= lr * (m[i] / c1) / (math.sqrt(v[i] / c2) + eps)


class Adam:
    """Adam state for one flat parameter array."""

    def __init__(self, n: int, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
        self.m = np.zeros(n, np.float64)
        self.v = np.zeros(n, np.float64)
        self.b1, self.b2, self.eps = b1, b2, eps
        self.t = 0

    def step(self, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        self.t += 1
        _adam(p, g, self.m, self.v, lr, self.b1, self.b2, self.eps, self.t)

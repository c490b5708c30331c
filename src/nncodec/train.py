"""Training kernels (encoder side): forward, backward, rate proxy, Adam.

Shapes and dtypes:
    lat      float32[N]       all latent grids, flat, finest level first
    theta    float32[P]       MLP parameters, layer by layer, weights (out, in)
                              row-major then biases
    target   float32[H*W, C]  image in [0, 1]
    sel      int64[n]         indices (y * W + x) of the pixels of this step

Parallelism: :func:`_mlp_grad` runs over fixed tiles of ``TILE`` pixels, each
with its own gradient row, summed in tile order; the latent gradient is a
gather (each output cell sums its own contributions in a fixed order). Results
do not depend on the number of threads.

The rate proxy is the Laplace model of Balle et al. (ICLR 2018) with additive
uniform noise as quantization proxy, then straight-through rounding (as in
COIN++ / Cool-chic); its scale depends on the same causal context class as
the range coder's zero flag, so the proxy follows what the coder exploits.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import TILE, njit, pjit, prange
from .entropy import _is_parent, _neigh, _zero_class
from .field import BLOCK, _features_block, _max_width, _mlp_forward_block, _to_rgb

LN2 = math.log(2.0)
N_RATE_CTX = 8


@pjit
def _mlp_grad(C, coff, ri, rw, fr, fc, st, theta, layers, channels, target, sel, width,
              gbuf, lbuf, dfeat):
    """Forward and backward over the selected pixels.

    ``C, coff`` are the column pass of the grids (:func:`field.column_pass`).
    Writes per-tile parameter gradients to ``gbuf[t]`` (float64[T, P]), per-tile
    squared-error sums to ``lbuf[t]`` and the gradient of the loss
    (sum of squared RGB errors / (n * C)) w.r.t. each grid feature of each
    selected pixel to ``dfeat[f, s]`` (float32[L * S, n]), for grid feature
    ``f`` of pixel ``sel[s]``.

    Inside a tile, parameter gradients are accumulated per lane (one partial
    sum per lane and parameter, so the lane loops vectorize without
    reassociating a sum) and the lanes are added in order at the tile's end.
    """
    n = sel.shape[0]
    ntiles = (n + TILE - 1) // TILE
    nl = layers.shape[0]
    P = theta.shape[0]
    LS = coff.shape[1] * st.shape[0]
    ncols = fc.shape[0]
    maxw = _max_width(layers)
    scale = np.float32(2.0 / (n * channels))
    for t in prange(ntiles):
        Hb = np.zeros((nl + 1, maxw, BLOCK), np.float32)
        Zb = np.zeros((nl, maxw, BLOCK), np.float32)
        dZ = np.zeros((maxw, BLOCK), np.float32)
        dH = np.zeros((maxw, BLOCK), np.float32)
        G = np.zeros((P, BLOCK), np.float32)
        rows = np.empty(BLOCK, np.int64)
        cols = np.empty(BLOCK, np.int64)
        rgb = np.zeros(3, np.float32)
        loss = 0.0
        end = min(n, (t + 1) * TILE)
        for s0 in range(t * TILE, end, BLOCK):
            nb = min(BLOCK, end - s0)
            for b in range(nb):
                p = sel[s0 + b]
                rows[b] = p // width
                cols[b] = p - rows[b] * width
            _features_block(C, coff, ncols, ri, rw, fr, fc, st, rows, cols, nb, Hb[0])
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
                for o in range(no):
                    dz = dZ[o]
                    gb = G[bb + o]
                    for b in range(nb):
                        gb[b] += dz[b]
                    row = wb + o * ni
                    for i in range(ni):
                        w = theta[row + i]
                        h = Hb[k, i]
                        gw = G[row + i]
                        dh = dH[i]
                        for b in range(nb):
                            gw[b] += dz[b] * h[b]
                            dh[b] += dz[b] * w
                if k > 0:
                    for i in range(ni):
                        dz = dZ[i]
                        dh = dH[i]
                        z = Zb[k - 1, i]
                        for b in range(nb):
                            dz[b] = dh[b] if z[b] > 0.0 else np.float32(0.0)
                pend = wb
            for f in range(LS):
                for b in range(nb):
                    dfeat[f, s0 + b] = dH[f, b]
        g = gbuf[t]
        for j in range(P):
            acc = 0.0
            for b in range(BLOCK):
                acc += G[j, b]
            g[j] = acc
        lbuf[t] = loss


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


@pjit
def _grid_grad_rows(dfeat_f, sel, starts, ci, cw, width, wk, tmp):
    """tmp[y, b] = sum over selected pixels (y, x) of cw[x, t] * dfeat[s], ci[x, t] == b.

    Row ``y``'s pixels are ``sel[starts[y]:starts[y + 1]]``, taken in order.
    """
    H = tmp.shape[0]
    for y in prange(H):
        for b in range(wk):
            tmp[y, b] = 0.0
        base = y * width
        for s in range(starts[y], starts[y + 1]):
            d = dfeat_f[s]
            if d != 0.0:
                x = sel[s] - base
                for t in range(4):
                    tmp[y, ci[x, t]] += cw[x, t] * d


@pjit
def _grid_grad_cols(tmp, ri, rw, hk, out):
    """out[a, b] += sum_y rw[y, t] * tmp[y, b] over (y, t) with ri[y, t] == a.

    Each grid row ``a`` is one parallel iteration; it visits the rows ``y``
    that reach it (a contiguous range, as ``ri`` grows with ``y``) in
    ascending ``(y, t)`` and adds whole rows of ``tmp`` (a vectorized loop).
    """
    H = tmp.shape[0]
    wk = tmp.shape[1]
    lo = np.full(hk, H, np.int64)
    hi = np.full(hk, -1, np.int64)
    for y in range(H):
        for t in range(4):
            a = ri[y, t]
            lo[a] = min(lo[a], y)
            hi[a] = max(hi[a], y)
    for a in prange(hk):
        dst = out[a * wk:(a + 1) * wk]
        for y in range(lo[a], hi[a] + 1):
            src = tmp[y]
            for t in range(4):
                if ri[y, t] == a:
                    w = np.float64(rw[y, t])
                    for b in range(wk):
                        dst[b] += w * src[b]


def latent_grad(dfeat, sel, taps, offsets, dims, width, out):
    """Back-project per-sample feature gradients onto the grids (into ``out``).

    ``dfeat[f, s]`` is the gradient for grid feature ``f`` at pixel ``sel[s]``
    (``sel`` ascending). The transpose of the separable sampling, as two
    gathers (rows, then columns), each output written by one loop iteration
    in a fixed order.
    """
    height = taps.ri.shape[2]
    S = taps.st.shape[0]
    starts = _row_starts(sel, width, height)
    out[:] = 0.0
    for lev in range(dims.shape[0]):
        hk, wk = int(dims[lev, 0]), int(dims[lev, 1])
        tmp = np.empty((height, wk), dtype=np.float64)
        for s in range(S):
            tr, tc = int(taps.st[s, 0]), int(taps.st[s, 1])
            _grid_grad_rows(dfeat[lev * S + s], sel, starts, taps.ci[tc, lev],
                            taps.cw[tc, lev], width, wk, tmp)
            _grid_grad_cols(tmp, taps.ri[tr, lev], taps.rw[tr, lev], hk,
                            out[offsets[lev]:offsets[lev + 1]])


@njit
def _laplace_bits(y, b):
    """Bits of the integer interval around ``y`` under Laplace(0, b).

    Returns (bits, d bits / d y, d bits / d log b).
    """
    ay = abs(y)
    if ay >= 0.5:
        e1 = math.exp(-1.0 / b)
        bits = (ay - 0.5) / (b * LN2) - math.log2(0.5 * (1.0 - e1))
        dy = (1.0 if y > 0 else -1.0) / (b * LN2)
        db = -(ay - 0.5) / (b * b * LN2) + (e1 / (b * b)) / ((1.0 - e1) * LN2)
        return bits, dy, db * b
    ea = math.exp(-(0.5 + y) / b)
    eb = math.exp(-(0.5 - y) / b)
    P = 1.0 - 0.5 * ea - 0.5 * eb
    if P < 1e-12:
        P = 1e-12
    bits = -math.log2(P)
    dPdy = 0.5 / b * ea - 0.5 / b * eb
    dPdb = -0.5 * ea * (0.5 + y) / (b * b) - 0.5 * eb * (0.5 - y) / (b * b)
    return bits, -dPdy / (P * LN2), -dPdb / (P * LN2) * b


@njit
def _rate(yhat, offsets, dims, logb, glat, glogb, weight):
    """Rate proxy over all latents; adds ``weight * d bits`` into the grads.

    ``yhat`` float32[N] are the (noisy or rounded) latents. The context class
    of each latent is computed from its rounded causal neighbours and parent,
    as the coder does, and selects the Laplace scale ``exp(logb[l, class])``.
    Returns total bits.
    """
    L = dims.shape[0]
    total = 0.0
    for lev in range(L - 1, -1, -1):
        hk = dims[lev, 0]
        wk = dims[lev, 1]
        off = offsets[lev]
        q = np.empty((hk, wk), dtype=np.int64)
        for n in range(hk * wk):
            q[n // wk, n % wk] = np.int64(math.floor(yhat[off + n] + 0.5))
        has_parent = _is_parent(dims, lev)
        pw = dims[lev + 1, 1] if has_parent else 1
        poff = offsets[lev + 1] if has_parent else 0
        for i in range(hk):
            for j in range(wk):
                s, sctx = _neigh(q, i, j, hk, wk)
                pnz = 0
                if has_parent:
                    pv = yhat[poff + (i >> 1) * pw + (j >> 1)]
                    if abs(pv) >= 0.5:
                        pnz = 1
                cls = _zero_class(s) * 2 + pnz
                b = math.exp(logb[lev, cls])
                n = off + i * wk + j
                bits, dy, dlb = _laplace_bits(yhat[n], b)
                total += bits
                glat[n] += weight * dy
                glogb[lev, cls] += weight * dlb
    return total


@njit
def _adam(p, g, m, v, lr, b1, b2, eps, t):
    """One Adam step in place (Kingma & Ba 2015), bias-corrected."""
    c1 = 1.0 - b1 ** t
    c2 = 1.0 - b2 ** t
    for i in range(p.shape[0]):
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

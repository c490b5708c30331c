"""Slow, obviously correct references for the numba kernels.

Everything here is written from the definitions in the docstrings of
``nncodec.field`` and ``nncodec.train`` (and the layouts they document), one
pixel / one value at a time, in float64, without reusing any nncodec code.
"""

from __future__ import annotations

import math

import numpy as np

# ---------------------------------------------------------------------------
# Cubic B-spline sampling.


def bspline3(x: float) -> float:
    """The uniform cubic B-spline kernel (support [-2, 2], integrates to 1)."""
    ax = abs(x)
    if ax < 1.0:
        return 2.0 / 3.0 - ax * ax + 0.5 * ax ** 3
    if ax < 2.0:
        return (2.0 - ax) ** 3 / 6.0
    return 0.0


def sample_grid(grid: np.ndarray, gy: float, gx: float) -> float:
    """Value of a 2-D grid at continuous cell coordinates ``(gy, gx)``.

    Cell ``(i, j)`` sits at coordinates ``(i, j)``; the grid is extended by
    replicating its edge cells ("clamped" edges).
    """
    rows, cols = grid.shape
    total = 0.0
    for m in range(math.floor(gy) - 2, math.floor(gy) + 3):
        wy = bspline3(gy - m)
        if wy == 0.0:
            continue
        mm = min(max(m, 0), rows - 1)
        for n in range(math.floor(gx) - 2, math.floor(gx) + 3):
            wx = bspline3(gx - n)
            if wx == 0.0:
                continue
            nn = min(max(n, 0), cols - 1)
            total += wy * wx * float(grid[mm, nn])
    return total


def sample_line(line: np.ndarray, g: float) -> float:
    """1-D version of :func:`sample_grid`."""
    return sample_grid(np.asarray(line, dtype=np.float64)[None, :], 0.0, g)


# ---------------------------------------------------------------------------
# The field.


def grid_exponents(spec) -> list[int]:
    """Downsampling exponent ``k`` of every grid, in coding (= feature) order.

    The ``n_levels`` main grids ``k = first_level + l``, finest first; then two
    extra channels, each with one grid for each of the ``n_chroma`` coarsest
    main levels, finest first.
    """
    main = [spec.first_level + lev for lev in range(spec.n_levels)]
    extra = main[spec.n_levels - spec.n_chroma:] if spec.n_chroma else []
    return main + extra + extra


def level_dims(spec) -> list[tuple[int, int]]:
    """``(rows, cols)`` of each latent grid: ``ceil(H / 2**k) x ceil(W / 2**k)``."""
    out = []
    for k in grid_exponents(spec):
        f = 2 ** k
        out.append((math.ceil(spec.height / f), math.ceil(spec.width / f)))
    return out


def split_latents(spec, lat) -> list[np.ndarray]:
    """The flat latents (grids in coding order, each in raster order) as 2-D grids."""
    grids, p = [], 0
    lat = np.asarray(lat, dtype=np.float64)
    for rows, cols in level_dims(spec):
        grids.append(lat[p: p + rows * cols].reshape(rows, cols))
        p += rows * cols
    assert p == lat.size
    return grids


#: Sampling points, from the definition: the offsets ``(dy, dx)``, in coded
#: pixels, at which a grid is sampled around the point, in feature order.
POINT = [(0, 0)]
PLUS = [(0, 0), (0, -1), (0, 1), (-1, 0), (1, 0)]  # the point, left, right, up, down

#: Sampling stencils, from the definition: stencil -> the points of grid l
#: (coding order). 0: every grid at the point; 1: every grid at PLUS; 2: the
#: first (finest) grid at PLUS, the others at the point; 3: the second grid at
#: PLUS, the others at the point.
STENCILS = {
    0: lambda l: POINT,
    1: lambda l: PLUS,
    2: lambda l: PLUS if l == 0 else POINT,
    3: lambda l: PLUS if l == 1 else POINT,
}


def grid_features(spec) -> list[tuple[int, int, int]]:
    """``(l, dy, dx)`` of every grid feature, in input order."""
    return [(l, dy, dx) for l in range(len(grid_exponents(spec)))
            for dy, dx in STENCILS[spec.stencil](l)]


def n_inputs(spec) -> int:
    """Grid features (every grid at its stencil points), then 4 M Fourier features."""
    return len(grid_features(spec)) + 4 * spec.n_fourier


def features(spec, grids, u: float, v: float) -> np.ndarray:
    """Feature vector at the point ``(u, v)`` of the coded frame ``[0, W] x [0, H]``.

    Grid values first: grid ``l`` (in coding order) sampled at ``(u + dx, v + dy)``
    for each of its stencil offsets ``(dy, dx)`` in turn (the order of
    :func:`grid_features`); shifted points may leave the frame (the clamped
    edges extend the grid). Then ``sin, cos`` of ``pi * 2**m * u / W``
    for m = 0..M-1 (interleaved), then the same for ``v / H``; the Fourier
    features are taken at the point itself.
    """
    x = []
    ks = grid_exponents(spec)
    for l, dy, dx in grid_features(spec):
        f = 2.0 ** ks[l]
        x.append(sample_grid(grids[l], (v + dy) / f - 0.5, (u + dx) / f - 0.5))
    for t in (u / spec.width, v / spec.height):
        for m in range(spec.n_fourier):
            a = math.pi * 2 ** m * t
            x += [math.sin(a), math.cos(a)]
    return np.asarray(x, dtype=np.float64)


def unpack_theta(spec, theta) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(W (out, in), b (out,)), ...]`` from the flat parameter vector."""
    theta = np.asarray(theta, dtype=np.float64)
    dims = [n_inputs(spec)] + [spec.hidden_width] * spec.n_hidden + [spec.channels]
    out, p = [], 0
    for k in range(len(dims) - 1):
        no, ni = dims[k + 1], dims[k]
        w = theta[p: p + no * ni].reshape(no, ni)
        p += no * ni
        b = theta[p: p + no]
        p += no
        out.append((w, b))
    assert p == theta.size
    return out


def mlp_forward(layers, x) -> np.ndarray:
    """ReLU hidden layers, linear output layer."""
    h = np.asarray(x, dtype=np.float64)
    for k, (w, b) in enumerate(layers):
        h = w @ h + b
        if k + 1 < len(layers):
            h = np.maximum(h, 0.0)
    return h


def rgb_to_ycocg(rgb) -> np.ndarray:
    r, g, b = rgb
    return np.array([r / 4 + g / 2 + b / 4, r / 2 - b / 2, -r / 4 + g / 2 - b / 4])


def ycocg_to_rgb(ycc) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycocg` (lifting form)."""
    y, co, cg = ycc
    tmp = y - cg
    return np.array([tmp + co, y + cg, tmp - co])


def field_colour(spec, grids, layers, u: float, v: float) -> np.ndarray:
    """Unclipped colour (RGB or grey, [0, 1] units) of the field at ``(u, v)``."""
    y = mlp_forward(layers, features(spec, grids, u, v))
    return y[:1].copy() if spec.channels == 1 else ycocg_to_rgb(y)


def render(spec, theta, lat, out_w: int, out_h: int) -> np.ndarray:
    """Render ``out_w x out_h``; returns uint8[out_h, out_w, channels].

    Each output pixel averages ``sy x sx`` point samples spread uniformly over
    its footprint, ``sx = max(1, ceil(W / out_w))`` (likewise ``sy``); one
    sample (the pixel centre) when upscaling. The average is clipped to
    [0, 1] and rounded half up to 8 bits.
    """
    grids = split_latents(spec, lat)
    layers = unpack_theta(spec, theta)
    sx = max(1, math.ceil(spec.width / out_w))
    sy = max(1, math.ceil(spec.height / out_h))
    out = np.zeros((out_h, out_w, spec.channels), dtype=np.uint8)
    for i in range(out_h):
        for j in range(out_w):
            acc = np.zeros(spec.channels)
            for a in range(sy):
                v = (i * sy + a + 0.5) * spec.height / (out_h * sy)
                for b in range(sx):
                    u = (j * sx + b + 0.5) * spec.width / (out_w * sx)
                    acc += field_colour(spec, grids, layers, u, v)
            val = np.clip(acc / (sx * sy), 0.0, 1.0)
            out[i, j] = np.floor(val * 255.0 + 0.5)
    return out


def pixel_loss(spec, theta, lat, target, sel) -> float:
    """Training loss at coded pixel centres: sum of squared RGB errors / (n * C)."""
    grids = split_latents(spec, lat)
    layers = unpack_theta(spec, theta)
    total = 0.0
    for p in sel:
        r, c = divmod(int(p), spec.width)
        col = field_colour(spec, grids, layers, c + 0.5, r + 0.5)
        total += float(np.sum((col - np.asarray(target[p], dtype=np.float64)) ** 2))
    return total / (len(sel) * spec.channels)


# ---------------------------------------------------------------------------
# Rate model.


def rate_context(q: np.ndarray, i: int, j: int, parent_nonzero: bool) -> int:
    """Context class of latent (i, j) from its rounded causal neighbours.

    activity s = 2|left| + 2|top| + |top-left| + |top-right|, each clamped
    to 3 (missing neighbours are 0); zero class 0 if s == 0, 1 if s <= 2, 2 if
    s <= 5, else 3; class = zero class * 2 + (parent nonzero).
    """
    rows, cols = q.shape

    def at(a, b):
        return min(abs(int(q[a, b])), 3) if 0 <= a < rows and 0 <= b < cols else 0

    s = 2 * at(i, j - 1) + 2 * at(i - 1, j) + at(i - 1, j - 1) + at(i - 1, j + 1)
    zc = 0 if s == 0 else 1 if s <= 2 else 2 if s <= 5 else 3
    return zc * 2 + int(parent_nonzero)


def has_parent(grids, lev) -> bool:
    """Grid ``lev + 1`` is the parent of grid ``lev`` if it exists and has
    ``ceil(rows / 2) x ceil(cols / 2)`` cells (the next coarser level)."""
    if lev + 1 >= len(grids):
        return False
    rows, cols = grids[lev].shape
    return grids[lev + 1].shape == (math.ceil(rows / 2), math.ceil(cols / 2))


def rate_table(spec, q):
    """The rate model's cost tables, latent by latent, as the coder walks.

    Grid by grid, from fresh contexts, in raster order: the bits of
    ``v - 1``, ``v``, ``v + 1`` (``v`` the latent's integer) with the
    contexts in force, then adapt them along ``v``. Returns ``(table
    float[N, 3], tail)``, ``tail`` the bits of grid 0's trailing zeros.
    """
    from nncodec import entropy, train

    grids = split_latents(spec, np.asarray(q, dtype=np.int64))
    rows = []
    tail = 0.0
    for lev, g in enumerate(grids):
        probs = entropy.new_probs(entropy.LCTX)
        run = 0.0
        h, w = g.shape
        for i in range(h):
            for j in range(w):
                def at(a, b):
                    return int(g[a, b]) if 0 <= a < h and 0 <= b < w else 0

                act = (2 * min(abs(at(i, j - 1)), 3) + 2 * min(abs(at(i - 1, j)), 3)
                       + min(abs(at(i - 1, j - 1)), 3) + min(abs(at(i - 1, j + 1)), 3))
                pnz = has_parent(grids, lev) and grids[lev + 1][i // 2, j // 2] != 0
                zc = rate_context(g, i, j, pnz)
                mc = 0 if act == 0 else 1 if act <= 4 else 2

                def sg(x):
                    return 0 if x == 0 else 1 if x > 0 else 2

                sctx = 3 * sg(at(i, j - 1)) + sg(at(i - 1, j))
                v = int(g[i, j])
                rows.append([train._value_bits(probs, zc, sctx, mc, v + d) for d in (-1, 0, 1)])
                run = 0.0 if v else run + rows[-1][1]
                train._adapt_value(probs, zc, sctx, mc, v)
        if lev == 0:
            tail = run
    return np.array(rows, dtype=np.float64).reshape(-1, 3), tail


# ---------------------------------------------------------------------------
# Misc.


def adam_step(p, g, m, v, lr, b1, b2, eps, t):
    """NumPy Adam (Kingma & Ba 2015, bias-corrected); returns new (p, m, v)."""
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    mhat = m / (1 - b1 ** t)
    vhat = v / (1 - b2 ** t)
    return p - lr * mhat / (np.sqrt(vhat) + eps), m, v


def soft_round(y, alpha: float):
    """Soft rounding (Agustsson and Theis 2020) of an array, and its derivative:
    s(y) = m + 1/2 + tanh(alpha r) / (2 tanh(alpha / 2)), m = floor(y),
    r = y - m - 1/2."""
    y = np.asarray(y, np.float64)
    m = np.floor(y)
    t = np.tanh(alpha * (y - m - 0.5))
    k = 0.5 / math.tanh(0.5 * alpha)
    return m + 0.5 + k * t, alpha * k * (1.0 - t * t)


def splitmix64(z: int) -> int:
    """SplitMix64's output function (Steele, Lea and Flood 2014)."""
    m = 2 ** 64
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 % m
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB % m
    return z ^ (z >> 31)


def psnr(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)

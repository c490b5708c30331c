"""Estimate what greedy rate-distortion optimized quantization of the latents buys.

An encoder-only idea (no format change), measured on finished files before
building it into the encoder. The script reads one ``.nni`` file's coded
integers and network, rebuilds every pixel's grid features at 1x (each
grid's B-spline sampling as dense matrices), and visits every latent of the
grids with level <= ``--max-level``, zeros included, in the coder's order.
For each it tries -1 and +1: the exact change of the squared error of the
float field (the MLP and YCoCg -> RGB with clamping, over the latent's
support) plus ``lambda`` times the change of its bits from the coder's cost
table (``train._rate_table``; the effect on its neighbours' contexts is
ignored). A step that lowers ``D + lambda R`` is taken at once and the
features and errors on its support updated. ``lambda`` is ``--lambda``
times 0.73 * MSE / bpp of the file (0.73 = 3.17 ln(10) / 10: the lambda at
which D + lambda R stays level along a curve of 3.17 dB per unit of ln(size),
about the default encoder's near 8 KiB). After each pass the file is re-coded and
rendered by nncodec itself: the printed sizes and PSNRs are real.

Because the passes move the size, a result is judged by the "equivalent"
gain: the PSNR change minus ``--slope`` times the change of ln(size), i.e.
what is left after paying for the bytes at the rate-distortion curve's going
price. The default, 3.14 dB, is the Kodak mean slope of the 0.11 default
between 4 and 16 KiB (``benchmarks/results/rd-v0.11-kodak-all.json``); single
images range from about 2 to 4, so pass the image's own.

Used for the README's "Tried and not adopted" entry (numba only; the sweep is
naive, one MLP evaluation per pixel and trial, about 75 s a pass for a
768x512 8 KiB file on one core):

    nncodec encode kodim23.png -o k23-8k.nni --budget 8k
    python benchmarks/latent_rdoq_estimate.py k23-8k.nni ../shared/datasets/kodak/kodim23.png
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from conv_stage_estimate import dense_sampling  # noqa: E402
from rd import import_nncodec  # noqa: E402

LAMBDA_SLOPE = 0.73


def support(m: np.ndarray):
    """CSR of the columns of ``m``: for each grid cell, the pixels it reaches and their weights."""
    ptr, idx, wt = [0], [], []
    for g in range(m.shape[1]):
        nz = np.nonzero(m[:, g])[0]
        idx.extend(nz)
        wt.extend(m[nz, g])
        ptr.append(len(idx))
    return np.array(ptr, np.int64), np.array(idx, np.int64), np.array(wt, np.float64)


def padded(rows, dtype) -> np.ndarray:
    out = np.zeros((len(rows), max(len(r) for r in rows)), dtype)
    for k, r in enumerate(rows):
        out[k, :len(r)] = r
    return out


@njit
def _mlp(x, theta, layers, out, h0, h1):
    p = 0
    cur, nxt = h0, h1
    for i in range(x.shape[0]):
        cur[i] = x[i]
    nl = layers.shape[0]
    for k in range(nl):
        no, ni = layers[k, 0], layers[k, 1]
        bias = p + no * ni
        for o in range(no):
            s = theta[bias + o]
            for i in range(ni):
                s += theta[p + o * ni + i] * cur[i]
            if k + 1 < nl:
                nxt[o] = s if s > 0.0 else 0.0
            else:
                out[o] = s
        p = bias + no
        cur, nxt = nxt, cur


@njit
def _pixel_error(y, t):
    r = min(1.0, max(0.0, y[0] + y[1] - y[2]))
    g = min(1.0, max(0.0, y[0] + y[2]))
    b = min(1.0, max(0.0, y[0] - y[1] - y[2]))
    return (r - t[0]) ** 2 + (g - t[1]) ** 2 + (b - t[2]) ** 2


@njit
def _errors(X, theta, layers, target, err):
    out, h0, h1 = np.zeros(3), np.zeros(64), np.zeros(64)
    for r in range(X.shape[0]):
        for c in range(X.shape[1]):
            _mlp(X[r, c], theta, layers, out, h0, h1)
            err[r, c] = _pixel_error(out, target[r, c])


@njit
def _sweep(X, err, theta, layers, target, q, offsets, dims, rptr, ridx, rwt, cptr, cidx, cwt,
           table, lam_sse, active):
    """One greedy pass over the active grids; returns the number of latents changed."""
    F = X.shape[2]
    out, h0, h1, x = np.zeros(3), np.zeros(64), np.zeros(64), np.zeros(F)
    changed = 0
    for lev in range(dims.shape[0]):
        if not active[lev]:
            continue
        wk = dims[lev, 1]
        for i in range(dims[lev, 0]):
            for j in range(wk):
                n = offsets[lev] + i * wk + j
                best, best_s = 0.0, 0
                for s in (-1, 1):
                    dbits = table[n, 1 + s] - table[n, 1]
                    dd = 0.0
                    for a in range(rptr[lev, i], rptr[lev, i + 1]):
                        r = ridx[lev, a]
                        for b in range(cptr[lev, j], cptr[lev, j + 1]):
                            c = cidx[lev, b]
                            for f in range(F):
                                x[f] = X[r, c, f]
                            x[lev] += s * rwt[lev, a] * cwt[lev, b]
                            _mlp(x, theta, layers, out, h0, h1)
                            dd += _pixel_error(out, target[r, c]) - err[r, c]
                    cost = dd + lam_sse * dbits
                    if cost < best:
                        best, best_s = cost, s
                if best_s == 0:
                    continue
                q[n] += best_s
                changed += 1
                for a in range(rptr[lev, i], rptr[lev, i + 1]):
                    r = ridx[lev, a]
                    for b in range(cptr[lev, j], cptr[lev, j + 1]):
                        c = cidx[lev, b]
                        X[r, c, lev] += best_s * rwt[lev, a] * cwt[lev, b]
                        _mlp(X[r, c], theta, layers, out, h0, h1)
                        err[r, c] = _pixel_error(out, target[r, c])
    return changed


def features(spec, latq):
    """Every pixel's grid values at 1x, float64[H, W, L], and each grid's row and column supports.

    The supports are ``(ptr, idx, wt)`` arrays padded over the grids: cell
    ``i`` of grid ``l`` reaches rows ``idx[l, ptr[l, i]:ptr[l, i + 1]]``.
    """
    from nncodec import field

    H, W = spec.height, spec.width
    offsets, _ = field.level_table(spec)
    X = np.zeros((H, W, len(spec.grid_levels())))
    rows, cols = [], []
    for lev, ((hk, wk), k) in enumerate(zip(spec.level_dims(), spec.grid_levels())):
        mr, mc = dense_sampling(H, k, hk, np.float64), dense_sampling(W, k, wk, np.float64)
        grid = latq[offsets[lev]:offsets[lev + 1]].reshape(hk, wk).astype(np.float64)
        X[:, :, lev] = mr @ grid @ mc.T
        rows.append(support(mr))
        cols.append(support(mc))
    kinds = (np.int64, np.int64, np.float64)
    return (X, tuple(padded([s[t] for s in rows], d) for t, d in enumerate(kinds)),
            tuple(padded([s[t] for s in cols], d) for t, d in enumerate(kinds)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("nni")
    ap.add_argument("image", help="the source the file was coded from")
    ap.add_argument("--lambda", dest="lam", default="1",
                    help="factors of 0.73 MSE/bpp, comma-separated")
    ap.add_argument("--passes", type=int, default=1)
    ap.add_argument("--max-level", type=int, default=99, help="only grids with level <= this")
    ap.add_argument("--slope", type=float, default=3.14, help="dB per unit of ln(size)")
    args = ap.parse_args(argv)

    import_nncodec()
    from nncodec import decoder, field
    from nncodec.encoder import _file, _psnr
    from nncodec.imageio import load_image
    from nncodec.train import _rate_table

    data = Path(args.nni).read_bytes()
    c, wq, latq = decoder.parse_ints(data)
    spec = c.spec
    if spec.n_fourier or spec.stencil or spec.channels != 3:
        sys.exit("only colour files without Fourier features or stencils")
    theta = decoder.dequantize(spec, wq, c.weight_steps, c.bias_steps).astype(np.float64)
    img = load_image(args.image)
    H, W = img.shape[:2]
    if (W, H) != (spec.width, spec.height):
        sys.exit(f"the image is {W}x{H}, the file codes {spec.width}x{spec.height}")
    target = img.astype(np.float64) / 255.0
    offsets, dims = field.level_table(spec)
    layers = field.layer_table(spec)
    levels = spec.grid_levels()
    X, rows, cols = features(spec, latq)
    err = np.zeros((H, W))
    _errors(X, theta, layers, target, err)
    p0 = _psnr(decoder.decode(data), img)
    mse01 = 10 ** (-p0 / 10)
    lam0 = LAMBDA_SLOPE * mse01 / (len(data) * 8 / (H * W))
    print(f"{args.nni}: {len(data)} B, {p0:.3f} dB; float field MSE {err.sum() / (3 * H * W):.4e} "
          f"(decoder {mse01:.4e}); lambda0 {lam0:.3e}")
    active = np.array([k <= args.max_level for k in levels])
    for factor in (float(f) for f in args.lam.split(",")):
        q, Xc, errc = latq.copy(), X.copy(), err.copy()
        lam_sse = 3.0 * factor * lam0  # D is SSE / (3HW), R is bits / (HW)
        t0 = time.time()
        for it in range(args.passes):
            table = np.zeros((len(q), 3))
            _rate_table(q, offsets, dims, table)
            n = _sweep(Xc, errc, theta, layers, target, q, offsets, dims, *rows, *cols, table,
                       lam_sse, active)
            coded = _file(spec, wq, list(c.weight_steps), list(c.bias_steps), q, c.metadata)
            out = field.render(spec, theta.astype(np.float32), q.astype(np.float32), W, H)
            p = _psnr(out.reshape(img.shape), img) - p0
            dr = len(coded) / len(data) - 1
            eq = p - args.slope * math.log1p(dr)
            print(f"  lambda x{factor} pass {it + 1}: {n} latents changed, {len(coded)} B "
                  f"({100 * dr:+.2f}%), {p0 + p:.3f} dB ({p:+.3f}), equivalent {eq:+.3f} dB, "
                  f"{time.time() - t0:.0f} s", flush=True)
            if n == 0:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())

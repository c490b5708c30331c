"""Estimate what richer contexts for the latents' binary decisions would save.

An offline measurement on finished files, made before changing the format.
The script reads the coded latents of ``.nni`` files and computes their
ideal code length (the sum of -log2 p over every binary decision, with the
coder's own probability adaptation, ``entropy._adapt``) under the format's
contexts and under variants of them: more classes of the causal activity, the
co-located coarser latent's magnitude or its 3x3 neighbourhood instead of
"nonzero", the already coded grids of the same size (their whole 3x3
neighbourhood is known), two more causal neighbours, the parent's sign for the
sign, more magnitude classes, and other adaptation rates. The format's scheme,
``current``, reproduces the range coder's latent bytes (tests check it within
a few bytes), so a variant's difference to it is what the same latents would
cost under that variant. Results are in percent of the whole file.

The latents were trained against the format's contexts (training sees the
coder's costs), so a variant is judged on latents shaped for another code; a
variant that helps only a little here might help a little more if trained
with. A loss of several percent would not turn into a gain.

``--mix`` estimates the other way to use more of what the decoder knows:
instead of splitting the contexts further (each split dilutes the counts),
the zero flags' probabilities of several context models are mixed in the
logistic domain with weights that adapt online, as context-mixing
compressors do (a float estimate; a format would need an integer mixer). The
inputs are the fast and slow probabilities of the format's zero-flag context,
then of a rich context (activity over six causal neighbours, the parent's
3x3 neighbourhood, the same-size grids coded before), then of the pattern of
nonzero causal neighbours with the parent; one weight set per format
context. Zero flags are 51-80% of the latent bytes.

Used for the README's "Tried and not adopted" entry (numba; a second a file):

    nncodec encode kodim23.png -o k23-8k.nni --budget 8k
    python benchmarks/latent_context_estimate.py k23-8k.nni k01-8k.nni ...
    python benchmarks/latent_context_estimate.py --rates k23-8k.nni k01-8k.nni ...
    python benchmarks/latent_context_estimate.py --mix k23-8k.nni k01-8k.nni ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from numba import njit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from rd import import_nncodec  # noqa: E402

import_nncodec()

from nncodec import decoder  # noqa: E402
from nncodec.entropy import (LAT_UNARY, PROB_ONE, _adapt, _bit_cost, _eg0_bits,  # noqa: E402
                             new_probs)


@njit
def walk_cost(lat, zc, sc, mc, pz, ps, pm):
    """Bits of the latents in the coder's order: zero flag, sign, unary magnitude, escape.

    ``zc``, ``sc``, ``mc`` hold each latent's zero-flag, sign and magnitude
    context; magnitude bin k of class m is context ``m * LAT_UNARY + k - 1``.
    Returns float64[3]: the bits of the zero flags, the signs, the magnitudes.
    """
    bits = np.zeros(3)
    for n in range(lat.shape[0]):
        v = lat[n]
        nz = 1 if v != 0 else 0
        bits[0] += _bit_cost(pz, zc[n], nz)
        _adapt(pz, zc[n], nz)
        if nz == 0:
            continue
        neg = 1 if v < 0 else 0
        bits[1] += _bit_cost(ps, sc[n], neg)
        _adapt(ps, sc[n], neg)
        m = abs(v)
        k = 1
        while k <= LAT_UNARY:
            more = 1 if m > k else 0
            c = mc[n] * LAT_UNARY + k - 1
            bits[2] += _bit_cost(pm, c, more)
            _adapt(pm, c, more)
            if more == 0:
                break
            k += 1
        if m > LAT_UNARY:
            bits[2] += _eg0_bits(m - LAT_UNARY - 1)
    return bits


@njit
def _stretch(p):
    p = min(max(p, 1e-4), 1.0 - 1e-4)
    return np.log(p / (1.0 - p))


@njit
def mix_zero_bits(nz, ctxs, wsel, probs, lr):
    """Ideal bits of the zero flags ``nz`` (1: nonzero) in the coder's order.

    ``ctxs[n, m]`` is latent n's context in model m, whose adaptive state is
    ``probs[m]`` (the coder's, ``new_probs``; updated in place). Returns
    (bits of model 0 alone, as the coder codes them; bits of the logistic
    mix of every model's fast and slow probability and a bias, with weight
    set ``wsel[n]`` adapted at rate ``lr`` after each flag).
    """
    n_models = ctxs.shape[1]
    nin = 2 * n_models + 1
    w = np.zeros((wsel.max() + 1, nin))
    w[:, 0] = 0.5  # start as the coder's average of its two rates, roughly
    w[:, 1] = 0.5
    x = np.empty(nin)
    base = 0.0
    mixed = 0.0
    for n in range(nz.shape[0]):
        bit = nz[n]
        base += _bit_cost(probs[0], ctxs[n, 0], bit)
        for m in range(n_models):
            c = ctxs[n, m]
            x[2 * m] = _stretch(probs[m, c, 0] / PROB_ONE)
            x[2 * m + 1] = _stretch(probs[m, c, 1] / PROB_ONE)
        x[nin - 1] = 0.3
        s = wsel[n]
        dot = 0.0
        for i in range(nin):
            dot += w[s, i] * x[i]
        p0 = min(max(1.0 / (1.0 + np.exp(-dot)), 1.0 / 4096), 1.0 - 1.0 / 4096)
        mixed -= np.log2(p0 if bit == 0 else 1.0 - p0)
        err = (1.0 if bit == 0 else 0.0) - p0
        for i in range(nin):
            w[s, i] += lr * err * x[i]
        for m in range(n_models):
            _adapt(probs[m], ctxs[n, m], bit)
    return base, mixed


#: Mixer learning rate of ``--mix`` (0.002 and 0.01 differ by under 0.1% of a file).
MIX_LR = 0.002
MIX_MODELS = ("rates of the format's context", "+ rich context", "+ nonzero pattern")


def mix_estimate(grids, feats=None, lr=MIX_LR) -> np.ndarray:
    """Zero-flag bits: [format's contexts, then the mix of the first 1, 2, 3 models]."""
    if feats is None:
        feats = features(grids)
    nzs, cs = [], []
    for lev in range(len(grids) - 1, -1, -1):  # the coder's order
        f, q = feats[lev], grids[lev]
        z = bucket(f["s"], (0, 2, 5)) * 2 + (f["par"] != 0)
        far = f["s"] + _clamp3(f["a2"]) + _clamp3(f["b2"])
        rich = ((bucket(far, (0, 1, 3, 6)) * 4 + bucket(f["par3"], (0, 1, 3))) * 4
                + bucket(f["co"], (0, 1, 3)))
        pattern = ((f["a"] != 0) + 2 * (f["b"] != 0) + 4 * (f["c"] != 0) + 8 * (f["d"] != 0)) * 2 \
            + (f["par"] != 0)
        nzs.append((q != 0).ravel())
        cs.append(np.stack([z.ravel() + lev * 8, rich.ravel() + lev * 80,
                            pattern.ravel() + lev * 32], 1))
    nz = np.concatenate(nzs).astype(np.int64)
    ctxs = np.concatenate(cs).astype(np.int64)
    out = np.zeros(4)
    for k in range(1, 4):
        c = np.ascontiguousarray(ctxs[:, :k])
        probs = np.stack([new_probs(80 * len(grids))] * k)
        out[0], out[k] = mix_zero_bits(nz, c, c[:, 0].copy(), probs, lr)
    return out


def read_grids(data: bytes):
    """The coded latent grids of a file (int64, finest first)."""
    c, _, lat = decoder.parse_ints(data)
    grids, off = [], 0
    for h, w in c.spec.level_dims():
        grids.append(lat[off:off + h * w].reshape(h, w).astype(np.int64))
        off += h * w
    return grids


def shifted(q: np.ndarray, di: int, dj: int) -> np.ndarray:
    """``q[i + di, j + dj]``, zero outside the grid."""
    h, w = q.shape
    out = np.zeros_like(q)
    i0, i1 = max(0, -di), min(h, h - di)
    j0, j1 = max(0, -dj), min(w, w - dj)
    if i1 > i0 and j1 > j0:
        out[i0:i1, j0:j1] = q[i0 + di:i1 + di, j0 + dj:j1 + dj]
    return out


def _clamp3(x):
    return np.minimum(np.abs(x), 3)


def _sign3(x):
    return np.where(x == 0, 0, np.where(x > 0, 1, 2))


def _sum3x3(g):
    """Sum of the clamped magnitudes over each cell's 3x3 neighbourhood."""
    return sum(_clamp3(shifted(g, di, dj)) for di in (-1, 0, 1) for dj in (-1, 0, 1))


def bucket(x, edges):
    """0 for x <= edges[0], 1 for x <= edges[1], ..., len(edges) above the last."""
    return np.searchsorted(np.asarray(edges), x, side="left")


def features(grids):
    """Per grid, the planes a context can use (all known to the decoder at that latent)."""
    out = []
    for lev, q in enumerate(grids):
        h, w = q.shape
        f = {"a": shifted(q, 0, -1), "b": shifted(q, -1, 0), "c": shifted(q, -1, -1),
             "d": shifted(q, -1, 1), "a2": shifted(q, 0, -2), "b2": shifted(q, -2, 0)}
        f["s"] = 2 * _clamp3(f["a"]) + 2 * _clamp3(f["b"]) + _clamp3(f["c"]) + _clamp3(f["d"])
        # The next grid is this one's parent if it has half the size (the coder's rule).
        if lev + 1 < len(grids) and grids[lev + 1].shape == ((h + 1) // 2, (w + 1) // 2):
            p = grids[lev + 1]
            p3 = _sum3x3(p)
            f["par"] = np.repeat(np.repeat(p, 2, 0), 2, 1)[:h, :w]
            f["par3"] = np.repeat(np.repeat(p3, 2, 0), 2, 1)[:h, :w]
        else:
            f["par"] = np.zeros_like(q)
            f["par3"] = np.zeros_like(q)
        # Grids of the same size coded before this one (higher index): whole 3x3 known.
        f["co"] = np.zeros_like(q)
        for other in grids[lev + 1:]:
            if other.shape == q.shape:
                f["co"] = f["co"] + _sum3x3(other)
        out.append(f)
    return out


def scheme(zedges=(0, 2, 5), parent="nonzero", same_size=None, medges=(0, 4),
           sign="left-top", far=False):
    """A context scheme: per grid, (zero ctx, sign ctx, mag class, n_zero, n_sign, n_mag).

    The defaults are the format's contexts (``spec/decoding.md``): activity
    s = 2|a| + 2|b| + |c| + |d| (each clamped to 3) in 4 zero-flag classes
    times "parent nonzero", the signs of left and top, 3 magnitude classes.
    """
    def contexts(f):
        s = f["s"]
        if far:
            s = s + _clamp3(f["a2"]) + _clamp3(f["b2"])
        if parent == "nonzero":
            pc, npc = (f["par"] != 0).astype(np.int64), 2
        elif parent == "magnitude":
            pc, npc = np.minimum(np.abs(f["par"]), 2), 3
        elif parent == "3x3":
            pc, npc = bucket(f["par3"], (0, 1, 3)), 4
        else:  # "nonzero+3x3"
            pc, npc = (f["par"] != 0) * 3 + bucket(f["par3"], (0, 2)), 6
        if same_size is None:
            cc, ncc = np.zeros_like(s), 1
        else:
            cc, ncc = bucket(f["co"], same_size), len(same_size) + 1
        nz = (len(zedges) + 1) * npc * ncc
        z = (bucket(s, zedges) * npc + pc) * ncc + cc
        sc, ns = _sign3(f["a"]) * 3 + _sign3(f["b"]), 9
        if sign == "left-top-parent":
            sc, ns = sc * 3 + _sign3(f["par"]), 27
        return z, sc, bucket(f["s"], medges), nz, ns, len(medges) + 1
    return contexts


SCHEMES = {
    "current": scheme(),
    "activity6": scheme(zedges=(0, 1, 2, 4, 6, 9)),
    "parent-magnitude": scheme(parent="magnitude"),
    "parent-3x3": scheme(parent="3x3"),
    "parent-nonzero+3x3": scheme(parent="nonzero+3x3"),
    "same-size-grids": scheme(same_size=(0, 2, 5)),
    "two-more-neighbours": scheme(far=True, zedges=(0, 2, 5, 8)),
    "sign-parent": scheme(sign="left-top-parent"),
    "magnitude4": scheme(medges=(0, 2, 5, 9)),
    "all-of-them": scheme(zedges=(0, 1, 2, 4, 6, 9), parent="nonzero+3x3", same_size=(0, 2, 5),
                          medges=(0, 2, 5, 9)),
}


def latent_bits(grids, contexts, rates=None, feats=None) -> np.ndarray:
    """Bits (zero flags, signs, magnitudes) of ``grids`` under a scheme, contexts per grid.

    ``rates``: (fast, slow) adaptation shifts instead of the format's;
    ``feats``: ``features(grids)``, if already computed.
    """
    if feats is None:
        feats = features(grids)
    lat, zc, sc, mc = [], [], [], []
    nz = ns = nm = 0
    for lev in range(len(grids) - 1, -1, -1):  # the coder's order: coarsest grid first
        z, s, m, dz, ds, dm = contexts(feats[lev])
        lat.append(grids[lev].ravel())
        zc.append(z.ravel() + nz)
        sc.append(s.ravel() + ns)
        mc.append(m.ravel() + nm)
        nz, ns, nm = nz + dz, ns + ds, nm + dm
    probs = [new_probs(nz), new_probs(ns), new_probs(nm * LAT_UNARY)]
    if rates is not None:
        for p in probs:
            p[:, 3], p[:, 4] = rates
    cat = [np.concatenate(x).astype(np.int64) for x in (lat, zc, sc, mc)]
    return walk_cost(*cat, *probs)


RATES = [(2, 6), (2, 7), (3, 6), (3, 7), (3, 8), (4, 7), (4, 8), (5, 8)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", help=".nni files")
    ap.add_argument("--rates", action="store_true",
                    help="compare adaptation rates (fast, slow shifts) instead of schemes")
    ap.add_argument("--mix", action="store_true",
                    help="mix several context models' zero-flag probabilities instead")
    args = ap.parse_args(argv)
    if args.mix:
        return _main_mix(args.files)
    names = [f"rates {a},{b}" for a, b in RATES] if args.rates else list(SCHEMES)
    table = np.zeros((len(args.files), len(names)))
    for i, path in enumerate(args.files):
        data = Path(path).read_bytes()
        grids = read_grids(data)
        feats = features(grids)
        bits = latent_bits(grids, SCHEMES["current"], feats=feats)
        base = bits.sum() / 8
        if not args.rates:
            print(f"{Path(path).name}: {len(data)} bytes, latents {base:.0f} (zero flags "
                  f"{bits[0] / 8:.0f}, signs {bits[1] / 8:.0f}, magnitudes {bits[2] / 8:.0f})")
        for k, name in enumerate(names):
            if args.rates:
                b = latent_bits(grids, SCHEMES["current"], RATES[k], feats)
            else:
                b = latent_bits(grids, SCHEMES[name], feats=feats)
            table[i, k] = 100 * (b.sum() / 8 - base) / len(data)
    print("change of the file size, percent (negative = smaller):")
    print("scheme".ljust(22) + " ".join(Path(p).name[:9].rjust(9) for p in args.files) + "      mean")
    for k, name in enumerate(names):
        print(name.ljust(22) + " ".join(f"{x:+9.2f}" for x in table[:, k]) + f" {table[:, k].mean():+9.2f}")
    return 0


def _main_mix(files) -> int:
    table = np.zeros((len(files), len(MIX_MODELS)))
    for i, path in enumerate(files):
        data = Path(path).read_bytes()
        bits = mix_estimate(read_grids(data))
        print(f"{Path(path).name}: {len(data)} bytes, zero flags {bits[0] / 8:.0f}")
        table[i] = 100 * (bits[1:] - bits[0]) / 8 / len(data)
    print("zero flags mixed: change of the file size, percent (negative = smaller):")
    print("models".ljust(32) + " ".join(Path(p).name[:9].rjust(9) for p in files) + "      mean")
    for k, name in enumerate(MIX_MODELS):
        print(name.ljust(32) + " ".join(f"{x:+9.2f}" for x in table[:, k])
              + f" {table[:, k].mean():+9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

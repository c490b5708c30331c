"""Where a training step's time goes: the step's kernels, each timed alone.

Builds the encoder's trainer for one image and budget, runs a few training
steps, then times each kernel of a step on that step's inputs, called again
and again: the latents' noise and soft rounding (``latent_inputs``), the
grids' column pass, the synthesis forward and backward (``_mlp_grad``, one
worker, without the rate walk), the back-projection of the features'
gradients onto the grids (``latent_grad``), the rate walk (``_rate_table``,
every 4th step), the rate lookup (``_table_rate``) and the latents' Adam step.
Prints the median and the minimum CPU time of each (``time.process_time``:
less sensitive than wall time to the other load of a shared machine).

To compare two versions, run it with each on the path, alternating, on a
quiet machine with one thread:

    NUMBA_NUM_THREADS=1 python benchmarks/kernels_time.py kodim04 --budget 16k --runs 40
    NUMBA_NUM_THREADS=1 PYTHONPATH=OTHER/src python benchmarks/kernels_time.py kodim04 --budget 16k --runs 40

Images are names in ``--images`` (without ``.png``) or paths to ``.png``
files, loaded as RGB.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from baselines import image_path, load_image, parse_budget  # noqa: E402
from rd import import_nncodec  # noqa: E402


def kernel_calls(img: np.ndarray, budget: int, warm_steps: int) -> dict:
    """The kernels of one training step as argument-less calls, by name."""
    import numba

    from nncodec import encoder, field, train

    h, w = img.shape[:2]
    spec = encoder.choose_spec(w, h, img.shape[2], budget)
    tr = encoder.Trainer(spec, img, 0)
    for _ in range(warm_steps):
        tr.step(tr.sample(1 / 8), 0.005, False, 1e-2, 1e-3, None, 3.0)
    sel = tr.sample(1 / 8)
    n = tr.lat.size
    inputs = train.latent_inputs(tr.lat, tr.next_noise_key(), train.SOFT, 3.0)
    yhat, yrate, dyhat, dys = inputs[:4]
    # 0.17 rounds the latents for the walk apart; 0.16 returned them fifth.
    q = train.rounded(tr.lat) if hasattr(train, "rounded") else inputs[4]
    args, ntiles = tr._synthesis_args(tr.theta, yhat, sel)
    bounds = train.worker_bounds(ntiles, numba.get_num_threads(), 0.0)
    train._mlp_grad(*args, bounds, *encoder.NO_RATE)
    dfeat = args[-1]
    glat = np.empty(n, np.float64)
    table = np.empty((n, 3), tr._table.dtype)
    qc = q.astype(tr._table_q.dtype)
    train._rate_table(q, tr.offsets, tr.dims, table)
    opt = train.Adam(n)
    lat = tr.lat.copy()

    def table_rate():
        train._table_rate(yrate, qc, table, 1e-5, glat, train.SOFT, dyhat, dys)

    return {
        "latent_inputs": lambda: train.latent_inputs(tr.lat, 12345, train.SOFT, 3.0),
        "column_pass": lambda: field.column_pass(yhat, tr.offsets, tr.dims, tr.taps),
        "mlp_grad": lambda: train._mlp_grad(*args, bounds, *encoder.NO_RATE),
        "latent_grad": lambda: train.latent_grad(dfeat, sel, tr.taps, tr.offsets, tr.dims,
                                                 tr.w, glat),
        "rate_walk": lambda: train._rate_table(q, tr.offsets, tr.dims, table),
        "table_rate": table_rate,
        "adam_latents": lambda: opt.step(lat, glat, 1e-3),
    }


def time_calls(calls: dict, runs: int) -> dict:
    """Median and minimum CPU seconds of each call over ``runs`` (after one untimed call)."""
    out = {}
    for name, fn in calls.items():
        fn()
        ts = []
        for _ in range(runs):
            t = time.process_time()
            fn()
            ts.append(time.process_time() - t)
        out[name] = (float(np.median(ts)), float(min(ts)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("image", help="name in --images (without .png) or a .png path")
    ap.add_argument("--images", default=str(HERE.parent.parent / "shared" / "datasets" / "kodak"))
    ap.add_argument("--budget", default="16k")
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--warm-steps", type=int, default=10,
                    help="training steps before the timed inputs are taken")
    args = ap.parse_args(argv)
    nncodec = import_nncodec()

    path = image_path(args.image, args.images)
    img = load_image(path)
    budget = parse_budget(args.budget)
    res = time_calls(kernel_calls(img, budget, args.warm_steps), args.runs)
    print(f"nncodec {nncodec.__version__} ({Path(nncodec.__file__).parent}), {path.name}, "
          f"{budget} bytes, {args.runs} runs, CPU ms")
    for name, (med, lo) in res.items():
        print(f"  {name:14s} median {1000 * med:8.2f}  min {1000 * lo:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

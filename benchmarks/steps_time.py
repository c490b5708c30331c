"""What do more training steps, another sampling stencil or another finest
grid cost? Time whole encodes of one image at two step counts of a preset,
with two stencils or with two thresholds of the 1:1 finest grid, alternating,
in one process.

Alternating the two settings run by run puts both under the same machine
load, so their ratio is what the change costs even where the machine's speed
moves between runs. Prints one line per encode (seconds, PSNR, bytes, a hash
of the file) and the medians and their ratio.

    python benchmarks/steps_time.py kodim23 --budget 8k --preset default --steps 2400,3600 --runs 3
    python benchmarks/steps_time.py kodim23 --budget 8k --stencils 0,2 --runs 3
    python benchmarks/steps_time.py kodim01 --budget 16k --full-grid 0.25,1 --runs 2

``--stencils`` sets the stencil the encoder picks at every rate
(``rd_stencil.patch``), with the preset's own step count. ``--full-grid``
sets the bits per pixel from which every image's finest grid is 1:1
(``rd_full_grid.patch``; stencil 2 below it).

Images are names in ``--images`` (without ``.png``) or paths; the first
encode of a tiny image compiles the kernels outside the timings.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import baselines as B  # noqa: E402
from rd import import_nncodec  # noqa: E402
from rd_full_grid import patch as force_full_grid  # noqa: E402
from rd_stencil import patch as force_stencil  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name")
    ap.add_argument("--images", default=str(REPO.parent / "shared" / "datasets" / "kodak"))
    ap.add_argument("--budget", default="8k")
    ap.add_argument("--preset", default="default")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--steps", help="two step counts, e.g. 2400,3600")
    what.add_argument("--stencils", help="two sampling stencils, e.g. 0,2")
    what.add_argument("--full-grid", help="two thresholds of the 1:1 finest grid in bpp, e.g. 0.25,1")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    kind = float if args.full_grid else int
    values = [kind(v) for v in (args.steps or args.stencils or args.full_grid).split(",")]
    if len(values) != 2 or min(values) < (1 if args.steps else 0) or args.runs < 1:
        ap.error("--steps takes two positive counts, --stencils two stencils, --full-grid two "
                 "thresholds, --runs at least 1")
    import_nncodec()  # the installed package, else the repo's src/
    import numpy as np
    from nncodec import encoder
    path = B.image_path(args.name, args.images)
    img = B.load_image(path)
    encoder.encode_stats(np.zeros((16, 16, 3), np.uint8), budget=200, preset="fast", steps=2)

    def name(v):
        return (f"{v} steps" if args.steps else f"stencil {v}" if args.stencils
                else f"1:1 from {v} bpp")

    times = {v: [] for v in values}
    for run in range(args.runs):
        for v in values:
            kw = {}
            if args.steps:
                kw["steps"] = v
            elif args.stencils:
                force_stencil(v, None)
            else:
                force_full_grid(bpp=v)
            t0 = time.perf_counter()
            data, st = encoder.encode_stats(img, budget=args.budget, preset=args.preset, **kw)
            times[v].append(time.perf_counter() - t0)
            print(f"{path.stem} {name(v)}, run {run + 1}: {times[v][-1]:.1f} s, {st.psnr:.2f} dB, "
                  f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:12]}", flush=True)
    a, b = (statistics.median(times[v]) for v in values)
    print(f"median {name(values[0])} {a:.1f} s, {name(values[1])} {b:.1f} s: x{b / a:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

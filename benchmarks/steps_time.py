"""What do more training steps cost? Time whole encodes of one image at two
step counts of a preset, alternating, in one process.

Alternating the two counts run by run puts both under the same machine load,
so their ratio is what the steps cost even where the machine's speed moves
between runs. Prints one line per encode (seconds, PSNR, bytes, a hash of the
file) and the medians and their ratio.

    python benchmarks/steps_time.py kodim23 --budget 8k --preset default --steps 2400,3600 --runs 3

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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name")
    ap.add_argument("--images", default=str(REPO.parent / "shared" / "datasets" / "kodak"))
    ap.add_argument("--budget", default="8k")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--steps", required=True, help="two step counts, e.g. 2400,3600")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    counts = [int(v) for v in args.steps.split(",")]
    if len(counts) != 2 or min(counts) < 1 or args.runs < 1:
        ap.error("--steps takes two positive counts and --runs at least 1")
    import_nncodec()  # the installed package, else the repo's src/
    import numpy as np
    from nncodec import encoder
    path = B.image_path(args.name, args.images)
    img = B.load_image(path)
    encoder.encode_stats(np.zeros((16, 16, 3), np.uint8), budget=200, preset="fast", steps=2)
    times = {n: [] for n in counts}
    for run in range(args.runs):
        for n in counts:
            t0 = time.perf_counter()
            data, st = encoder.encode_stats(img, budget=args.budget, preset=args.preset, steps=n)
            times[n].append(time.perf_counter() - t0)
            print(f"{path.stem} {n} steps, run {run + 1}: {times[n][-1]:.1f} s, {st.psnr:.2f} dB, "
                  f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:12]}", flush=True)
    a, b = (statistics.median(times[n]) for n in counts)
    print(f"median {counts[0]} steps {a:.1f} s, {counts[1]} steps {b:.1f} s: x{b / a:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does the lambda training starts from matter? Encode each image, then encode
it again starting from the lambda the first encode ended with.

The rule (``encoder._initial_lambda``) gives every image the same lambda at a
given bits per pixel; the controller then moves it. If starting where the
controller ends were better, a per-image first lambda would pay. Prints one
line per image: the rule's lambda, the final one, both PSNRs and the
difference, and the mean difference.

    NUMBA_NUM_THREADS=1 python benchmarks/lambda_start.py --budget 8k kodim03 kodim23

Images are names in ``--images`` (without ``.png``) or paths.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import baselines as B  # noqa: E402
from rd import import_nncodec  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="+")
    ap.add_argument("--images", default=str(REPO.parent / "shared" / "datasets" / "kodak"))
    ap.add_argument("--budget", default="8k")
    ap.add_argument("--preset", default="default")
    args = ap.parse_args(argv)
    import_nncodec()  # the installed package, else the repo's src/
    from nncodec import encoder
    budget = encoder.parse_budget(args.budget)
    rule = encoder._initial_lambda
    diffs = []
    try:
        for name in args.names:
            path = B.image_path(name, args.images)
            img = B.load_image(path)
            h, w = img.shape[:2]
            encoder._initial_lambda = rule
            _, first = encoder.encode_stats(img, budget=budget, preset=args.preset)
            encoder._initial_lambda = lambda bpp, lam=first.lam: lam
            _, second = encoder.encode_stats(img, budget=budget, preset=args.preset)
            diffs.append(second.psnr - first.psnr)
            print(f"{path.stem}: rule lambda {rule(budget * 8.0 / (h * w)):.5f}, final "
                  f"{first.lam:.5f}; {first.psnr:.2f} dB, from the final lambda "
                  f"{second.psnr:.2f} dB ({diffs[-1]:+.2f})", flush=True)
    finally:
        encoder._initial_lambda = rule
    print(f"mean {statistics.mean(diffs):+.3f} dB over {len(diffs)} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())

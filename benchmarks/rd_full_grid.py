"""`rd.py` with the bits per pixel from which the finest grid is 1:1 replaced.

``--from BPP`` makes every image, busy or not, get the 1:1 finest grid from
BPP on (``encoder.FULL_GRID_BPP`` and ``BUSY_FULL_GRID_BPP``), and the 1:2
grid sampled at five points (stencil 2) below it. The encoder's own rule
moves the threshold with the image's detail (``encoder.full_grid_bpp``);
these runs measured it (``rd.py`` records each image's ``detail_psnr`` and
finest grid). Every other argument goes to ``rd.py``. The README's runs:

    python benchmarks/rd_full_grid.py --from 1 --codecs nncodec --budgets 16k --tag half16-kodak
    python benchmarks/rd_full_grid.py --from 0.25 --codecs nncodec --budgets 32k \\
        --images DIR --tag full32-busy-kodak
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import rd  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    ap.add_argument("--from", dest="bpp", type=float, required=True,
                    help="bits per pixel from which every image's finest grid is 1:1")
    args, rest = ap.parse_known_args(argv)
    if not args.bpp > 0:
        ap.error("--from takes a positive number of bits per pixel")
    rd.import_nncodec()
    from nncodec import encoder

    encoder.FULL_GRID_BPP = encoder.BUSY_FULL_GRID_BPP = args.bpp
    return rd.main(rest)


if __name__ == "__main__":
    sys.exit(main())

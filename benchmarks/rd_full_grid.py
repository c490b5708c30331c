"""`rd.py` with the encoder's choice of the finest grid replaced.

``--from BPP`` makes every image, busy or not, get the 1:1 finest grid from
BPP on (``encoder.FULL_GRID_BPP`` set to BPP, ``BUSY_BPP_SCALE`` to 1), and
the 1:2 grid sampled at five points (stencil 2) below it, down to
``HALF_GRID_BPP``. ``--shift N`` makes the finest grid N levels coarser
(negative: finer) than the encoder picks, everything else as picked (the
coarsest grid, the hidden units, the chroma grids, the stencil). The
encoder's own rule moves its thresholds with the image's detail
(``encoder.finest_level``); these runs measured it (``rd.py`` records each
image's ``detail_psnr`` and finest grid). Every other argument goes to
``rd.py``. Examples of the README's runs (``DIR`` a folder of the images it
names; all the commands are in ``benchmarks/README.md``):

    python benchmarks/rd_full_grid.py --from 1 --codecs nncodec --budgets 16k --tag half16-kodak
    python benchmarks/rd_full_grid.py --shift 1 --codecs nncodec --budgets 4k \\
        --images DIR --tag coarse4k-busy-kodak
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import rd  # noqa: E402


def patch(bpp: float | None = None, shift: int | None = None) -> None:
    """Make every image's finest grid 1:1 from ``bpp`` bits per pixel on (1:2
    with stencil 2 below), or ``shift`` levels coarser than the encoder picks."""
    rd.import_nncodec()
    from nncodec import encoder

    if bpp is not None:
        encoder.FULL_GRID_BPP, encoder.BUSY_BPP_SCALE = bpp, 1.0
    if shift is None:
        return
    choose = encoder.choose_spec

    def shifted(*a, **k):
        spec = choose(*a, **k)
        first = spec.first_level + shift
        if not spec.n_levels or not 0 <= first < spec.first_level + spec.n_levels:
            return spec
        return dataclasses.replace(spec, first_level=first, n_levels=spec.n_levels - shift)

    encoder.choose_spec = shifted


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--from", dest="bpp", type=float,
                      help="bits per pixel from which every image's finest grid is 1:1")
    what.add_argument("--shift", type=int,
                      help="make the finest grid this many levels coarser than the encoder's")
    args, rest = ap.parse_known_args(argv)
    if args.bpp is None and args.shift is None:
        if "-h" in rest or "--help" in rest:
            ap.print_help()
            print("\nEvery other argument goes to rd.py:\n")
            return rd.main(["--help"])
        ap.error("one of the arguments --from --shift is required")
    if args.bpp is not None and not args.bpp > 0:
        ap.error("--from takes a positive number of bits per pixel")
    patch(args.bpp, args.shift)
    return rd.main(rest)


if __name__ == "__main__":
    sys.exit(main())

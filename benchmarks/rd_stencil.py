"""`rd.py` with the grid model's sampling stencil 1, optionally on the finest grids only.

Stencil 1 (a format option the encoder does not choose) feeds the MLP every
grid sampled at the point and one coded pixel left, right, up and down.
``--finest K`` keeps the four neighbours of the first K grids (the finest
main grids) and holds the first-layer weights of every other grid's
neighbours at zero, at initialisation and after every training step: an
estimate of a stencil on the finest grids only, made before stencil 2 (the
neighbours on the finest grid alone, the default since 0.14) was built. The
estimate pays the full stencil's time and the zero weights' bits, which
stencil 2 does not. ``--stencil N`` runs stencil N at every rate instead
(the encoder picks stencil 2 from 0.03 bpp up to where the finest grid is
1:1, stencil 3 from there on); ``--stencil auto`` keeps the encoder's choice.
``--points box`` samples the grids the stencil names at the 3x3 box of nine
points (the four diagonal neighbours added; a scratch patch of
``field.PLUS``, in the encoder and the decoder of this process, since the
format has no value for it). Every other argument goes to ``rd.py``. The
README's runs:

    python benchmarks/rd_stencil.py --codecs nncodec --budgets 8k --limit 12 --tag stencil1-8k-kodak
    python benchmarks/rd_stencil.py --finest 1 --codecs nncodec --budgets 8k --limit 12 \\
        --tag stencil1-finest-8k-kodak
    python benchmarks/rd_stencil.py --stencil 2 --codecs nncodec --budgets 2k --limit 12 \\
        --tag stencil2-2k12-kodak
    python benchmarks/rd_stencil.py --stencil auto --points box --codecs nncodec --budgets 8k \\
        --tag box-8k-kodak
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import rd  # noqa: E402


#: The 3x3 box: PLUS's five points, then the four diagonal neighbours.
BOX = ((0, 0), (0, -1), (0, 1), (-1, 0), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1))


def patch(stencil: int | None, finest: int | None, points: str = "plus") -> None:
    """Make `choose_spec` pick ``stencil`` at every rate (None: its own
    choice), sample at the ``points`` (``plus`` or ``box``) and, with
    ``finest``, mask the other grids' neighbour weights in training."""
    rd.import_nncodec()
    from nncodec import encoder, field

    if points == "box":
        field.PLUS = BOX
    if stencil is not None:
        encoder.DEFAULT_STENCIL = encoder.FULL_GRID_STENCIL = encoder.PLAIN_STENCIL = stencil
    if finest is None:
        return
    init, step = encoder.Trainer.__init__, encoder.Trainer.step

    def mask(tr) -> None:
        spec = tr.spec
        o, i = spec.layer_shapes()[0]
        w0 = tr.theta[:o * i].reshape(o, i)  # a view: one column per input
        cols = [f for f, (g, dy, dx) in enumerate(spec.grid_features())
                if g >= finest and (dy, dx) != (0, 0)]
        w0[:, cols] = 0.0

    def masked_init(self, *a, **k):
        init(self, *a, **k)
        mask(self)

    def masked_step(self, *a, **k):
        out = step(self, *a, **k)
        mask(self)
        return out

    encoder.Trainer.__init__ = masked_init
    encoder.Trainer.step = masked_step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    ap.add_argument("--stencil", default="1",
                    help="the stencil at every rate (default 1), or auto: the encoder's own")
    ap.add_argument("--points", choices=("plus", "box"), default="plus",
                    help="the points of a grid the stencil names (default plus: five)")
    ap.add_argument("--finest", type=int, default=None,
                    help="keep the neighbours on the first K grids only (stencil 1)")
    args, rest = ap.parse_known_args(argv)
    stencil = None if args.stencil == "auto" else int(args.stencil)
    if args.finest is not None and (args.finest < 1 or stencil != 1):
        ap.error("--finest takes a grid count of at least 1, with stencil 1")
    patch(stencil, args.finest, args.points)
    return rd.main(rest)


if __name__ == "__main__":
    sys.exit(main())

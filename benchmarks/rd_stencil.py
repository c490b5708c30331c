"""`rd.py` with the grid model's sampling stencil 1, optionally on the finest grids only.

Stencil 1 (a format option, off by default) feeds the MLP every grid sampled
at the point and one coded pixel left, right, up and down. ``--finest K``
keeps the four neighbours of the first K grids (the finest main grids) and
holds the first-layer weights of every other grid's neighbours at zero, at
initialisation and after every training step: an estimate of a stencil on
the finest grids only, before building it. The estimate pays the full
stencil's time and the zero weights' bits, which a format with the
neighbours on the finest grid alone would not. Every other argument goes to
``rd.py``. The README's "Tried" entry:

    python benchmarks/rd_stencil.py --codecs nncodec --budgets 8k --limit 12 --tag stencil1-8k-kodak
    python benchmarks/rd_stencil.py --finest 1 --codecs nncodec --budgets 8k --limit 12 \\
        --tag stencil1-finest-8k-kodak
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import rd  # noqa: E402


def patch(finest: int | None) -> None:
    """Make `choose_spec` pick stencil 1 and, with ``finest``, mask the
    other grids' neighbour weights in training."""
    rd.import_nncodec()
    from nncodec import encoder, field

    encoder.DEFAULT_STENCIL = 1
    if finest is None:
        return
    init, step = encoder.Trainer.__init__, encoder.Trainer.step

    def mask(tr) -> None:
        spec = tr.spec
        s = len(field.STENCILS[spec.stencil])
        o, i = spec.layer_shapes()[0]
        w0 = tr.theta[:o * i].reshape(o, i)  # a view: inputs f = grid * S + point
        for g in range(finest, spec.n_grids):
            w0[:, g * s + 1:(g + 1) * s] = 0.0

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
    ap.add_argument("--finest", type=int, default=None,
                    help="keep the neighbours on the first K grids only")
    args, rest = ap.parse_known_args(argv)
    if args.finest is not None and args.finest < 1:
        ap.error("--finest takes a grid count of at least 1")
    patch(args.finest)
    return rd.main(rest)


if __name__ == "__main__":
    sys.exit(main())

"""Estimate what a 3x3 convolution stage after the field would buy, before building it.

A throwaway model of the decoder at 1x in PyTorch (not a dependency of
nncodec: ``pip install torch`` beside it to run this). It rebuilds one
``.nni`` file's field from its coded latents and network (the B-spline
sampling of every grid as dense matrices, the MLP, YCoCg to RGB; the first
line printed checks it against the real decoder) and trains, with full-image
Adam steps on the MSE to the source image:

- ``mlp``: the MLP alone, latents fixed (``--qat``: through its own
  quantization with the file's weight steps);
- ``joint``: the MLP and a stage ``x + conv3x3(relu(conv3x3(x)))`` on the RGB
  field (3 -> H -> 3 channels, edges replicated), latents fixed;
- ``post``: the stage alone, on the fixed field;
- ``--latents``: the latents trained too (rounded, straight-through), with no
  rate term: their rate is unconstrained, so that is not a codec's result.

The stage's worth is ``joint`` minus ``mlp``, before its parameters are paid
for. Used for the README's "Tried and not adopted" entry:

    python benchmarks/conv_stage_estimate.py kodim19-8k.nni ../shared/datasets/kodak/kodim19.png --mode mlp
    python benchmarks/conv_stage_estimate.py kodim19-8k.nni ../shared/datasets/kodak/kodim19.png --mode joint
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import baselines as B  # noqa: E402
from rd import import_nncodec  # noqa: E402


def dense_sampling(n: int, level: int, grid_len: int, dtype=np.float32) -> np.ndarray:
    """dtype[n, grid_len]: the B-spline taps of one axis at 1x as a matrix
    (summed in float64)."""
    from nncodec.field import axis_taps

    idx, w = axis_taps(n, n, level, grid_len)
    m = np.zeros((n, grid_len), np.float64)
    for t in range(4):
        np.add.at(m, (np.arange(n), idx[:, t]), w[:, t])
    return m.astype(dtype)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("nni")
    ap.add_argument("image", help="the source the file was coded from")
    ap.add_argument("--mode", choices=("mlp", "joint", "post"), default="joint")
    ap.add_argument("--qat", action="store_true", help="train the MLP through its quantization")
    ap.add_argument("--latents", action="store_true", help="train the latents too (no rate)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--hidden", type=int, default=4, help="channels inside the stage")
    ap.add_argument("--lr", type=float, default=2e-3)
    args = ap.parse_args(argv)
    import torch
    import torch.nn.functional as F

    import_nncodec()
    from nncodec import format as fmt
    from nncodec.decoder import decode, parse

    torch.manual_seed(0)
    data = Path(args.nni).read_bytes()
    c, theta, lat = parse(data)
    spec = c.spec
    if spec.n_fourier or spec.stencil or spec.channels != 3:
        sys.exit("only colour files without Fourier features or stencils")
    W, H = spec.width, spec.height
    grids, off = [], 0
    for (hk, wk), k in zip(spec.level_dims(), spec.grid_levels()):
        g = torch.tensor(lat[off:off + hk * wk].reshape(hk, wk))
        off += hk * wk
        grids.append((torch.tensor(dense_sampling(H, k, hk)), g.requires_grad_(args.latents),
                      torch.tensor(dense_sampling(W, k, wk))))
    fixed = torch.stack([r @ g @ cc.T for r, g, cc in grids]).reshape(len(grids), -1).detach()
    layers, p = [], 0
    for k, (o, i) in enumerate(spec.layer_shapes()):
        w = torch.tensor(theta[p:p + o * i].reshape(o, i))
        b = torch.tensor(theta[p + o * i:p + o * i + o])
        p += o * i + o
        steps = (fmt.STEP_TABLE[c.weight_steps[k]], fmt.STEP_TABLE[c.bias_steps[k]])
        layers.append((w.requires_grad_(args.mode != "post"), b.requires_grad_(args.mode != "post"),
                       steps))
    ref = torch.tensor(B.load_image(Path(args.image)).astype(np.float32) / 255.0).permute(2, 0, 1)

    def q(t, s, hard):
        r = torch.round(t / s) * s
        return r.detach() if hard else t + (r - t).detach()

    def field(quantized=False):
        if args.latents:
            x = torch.stack([r @ q(g, 1.0, False) @ cc.T for r, g, cc in grids])
            x = x.reshape(len(grids), -1)
        else:
            x = fixed
        for k, (w, b, (sw, sb)) in enumerate(layers):
            if quantized or args.qat:
                w, b = q(w, sw, quantized), q(b, sb, quantized)
            x = w @ x + b[:, None]
            if k + 1 < len(layers):
                x = torch.relu(x)
        y, co, cg = x
        return torch.stack([y + co - cg, y + cg, y - co - cg]).reshape(3, H, W)

    stage = []
    if args.mode in ("joint", "post"):
        stage = [(torch.randn(args.hidden, 3, 3, 3) * 0.1).requires_grad_(),
                 torch.zeros(args.hidden).requires_grad_(),
                 torch.zeros(3, args.hidden, 3, 3).requires_grad_(),  # starts as the identity
                 torch.zeros(3).requires_grad_()]

    def render(quantized=False):
        x = field(quantized)
        if not stage:
            return x
        k1, b1, k2, b2 = stage
        h = torch.relu(F.conv2d(F.pad(x[None], (1, 1, 1, 1), mode="replicate"), k1, b1))
        return x + F.conv2d(F.pad(h, (1, 1, 1, 1), mode="replicate"), k2, b2)[0]

    def psnr(x):
        mse = float(((torch.clamp(torch.round(x * 255), 0, 255) - ref * 255) ** 2).mean())
        return 10 * math.log10(255 ** 2 / mse)

    with torch.no_grad():
        start = psnr(render())
        dec = decode(data).astype(np.float32) / 255
        print(f"model {start:.3f} dB, decoder {psnr(torch.tensor(dec).permute(2, 0, 1)):.3f} dB")
    params = [t for w, b, _ in layers for t in (w, b) if t.requires_grad] + stage
    groups = [{"params": params, "base": args.lr}]
    if args.latents:
        groups.append({"params": [g for _, g, _ in grids], "base": 5 * args.lr})
    opt = torch.optim.Adam([dict(g, lr=g["base"]) for g in groups])
    t0 = time.perf_counter()
    for s in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = g["base"] * 0.5 * (1 + math.cos(math.pi * s / args.steps))
        opt.zero_grad()
        ((render() - ref) ** 2).mean().backward()
        opt.step()
    with torch.no_grad():
        end, endq = psnr(render()), psnr(render(quantized=True))
    n_stage = sum(t.numel() for t in stage)
    print(f"{Path(args.nni).name} {args.mode}{' qat' if args.qat else ''}"
          f"{' latents' if args.latents else ''}: {start:.3f} -> {end:.3f} dB ({end - start:+.3f}), "
          f"network requantized {endq:.3f} ({endq - start:+.3f}), stage parameters {n_stage}, "
          f"{args.steps} steps in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How does encode time grow with the image? Whole `nncodec encode` runs of one
image resized by integer factors.

The image is resized with Lanczos (Pillow) to each factor times its size and
written to a temporary PNG; each (factor, budget, preset) is encoded once by
the command line in a fresh process (kernels cached), both threads, one run at
a time. Prints one line per encode with the seconds the CLI reports, the PSNR,
the bytes and bpp. The README's "Larger images" table:

    python benchmarks/large_images.py kodim23 --runs "1:8k:default,2:2k:default,2:8k:default,2:8k:fast,4:8k:default,4:8k:fast"

Images are names in ``--images`` (without ``.png``) or paths.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import baselines as B  # noqa: E402

_LINE = re.compile(r"(\d+) bytes \(budget \d+\), ([\d.]+) bpp, ([\d.]+) dB PSNR, ([\d.]+) s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name")
    ap.add_argument("--images", default=str(REPO.parent / "shared" / "datasets" / "kodak"))
    ap.add_argument("--runs", required=True,
                    help="comma list of FACTOR:BUDGET:PRESET, e.g. 2:8k:default,4:8k:fast")
    args = ap.parse_args(argv)
    from PIL import Image
    runs = []
    for item in args.runs.split(","):
        parts = item.strip().split(":")
        if len(parts) != 3 or not parts[0].isdigit() or int(parts[0]) < 1:
            ap.error(f"bad run {item!r}: expected FACTOR:BUDGET:PRESET with FACTOR >= 1")
        runs.append((int(parts[0]), parts[1], parts[2]))
    path = B.image_path(args.name, args.images)
    src = Image.open(path).convert("RGB")
    with tempfile.TemporaryDirectory() as tmp:
        for factor, budget, preset in runs:
            size = (src.width * factor, src.height * factor)
            png = Path(tmp) / f"{path.stem}-x{factor}.png"
            if not png.exists():
                (src if factor == 1 else src.resize(size, Image.LANCZOS)).save(png)
            out = Path(tmp) / "out.nni"
            proc = subprocess.run([sys.executable, "-m", "nncodec", "encode", str(png), "-o", str(out),
                                   "--budget", budget, "--preset", preset],
                                  capture_output=True, text=True)
            m = _LINE.search(proc.stdout + proc.stderr)
            if proc.returncode or not m:
                print(f"{size[0]}x{size[1]} {budget} {preset}: failed\n{proc.stderr}", file=sys.stderr)
                return 1
            nbytes, bpp, psnr, secs = m.groups()
            print(f"{size[0]}x{size[1]} {budget} {preset}: {float(secs):.1f} s, {float(psnr):.2f} dB, "
                  f"{int(nbytes)} bytes, {float(bpp):.4f} bpp", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

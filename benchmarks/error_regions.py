"""Where a file's error lies, against a classical codec at the same byte cap.

For an ``.nni`` file and its source image, and for the classical codec's
best result in at most the file's own size (``baselines.best_under_cap``,
downscaling allowed): the RGB PSNR, the mean squared error of each YCoCg channel (the
colour space nncodec codes in), and the squared error summed over three
classes of pixels by the local gradient of the source's luma (the flattest
half, the middle 40%, the steepest 10%), as a share of the total and as a
ratio to the other codec's. Used for the README's note on what the 16 KiB
files lose to AVIF (a few seconds an image):

    nncodec encode kodim03.png -o kodim03-16k.nni --budget 16k
    python benchmarks/error_regions.py kodim03.png kodim03-16k.nni
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import baselines as B  # noqa: E402
from rd import import_nncodec  # noqa: E402

#: Quantiles of the luma gradient that split the pixels into classes.
EDGES = (0.5, 0.9)
CLASSES = ("flattest 50%", "middle 40%", "steepest 10%")


def ycocg(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 RGB (any numeric type) as float64 YCoCg (Y = (R + 2G + B) / 4)."""
    a = rgb.astype(np.float64)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    return np.stack([(r + 2 * g + b) / 4, (r - b) / 2, (2 * g - r - b) / 4], -1)


def luma_gradient(img: np.ndarray) -> np.ndarray:
    """|dY/dy| + |dY/dx| of the image's luma (central differences)."""
    gy, gx = np.gradient(ycocg(img)[..., 0])
    return np.abs(gy) + np.abs(gx)


def error_regions(img: np.ndarray, rec: np.ndarray, classes: np.ndarray) -> dict:
    """Errors of ``rec`` against ``img`` (HxWx3): PSNR, YCoCg MSEs, SSE per class.

    ``classes`` holds each pixel's class (0, 1, 2). SSE is over the three RGB
    channels, divided by 3 (so that the classes sum to H * W * the RGB MSE).
    """
    d = rec.astype(np.float64) - img.astype(np.float64)
    mse = float(np.mean(d * d))
    e = ycocg(rec) - ycocg(img)
    sse = (d * d).sum(-1) / 3
    return {"psnr": 10 * np.log10(255.0 ** 2 / mse) if mse > 0 else float("inf"),
            "mse_ycocg": [float(np.mean(e[..., c] ** 2)) for c in range(3)],
            "sse": [float(sse[classes == k].sum()) for k in range(len(CLASSES))]}


def classify(img: np.ndarray, edges=EDGES) -> np.ndarray:
    """Each pixel's class by its luma gradient: 0 up to the first quantile, ..."""
    g = luma_gradient(img)
    return np.searchsorted(np.quantile(g, edges), g, side="left")


def baseline(img: np.ndarray, codec: str, cap: int) -> np.ndarray:
    """The codec's best reconstruction under ``cap`` bytes (as baselines.py measures)."""
    r = B.best_under_cap(img, codec, cap)
    if r["psnr"] is None:
        raise SystemExit(f"{codec} has no file of at most {cap} bytes")
    h, w = img.shape[:2]
    pil = Image.fromarray(img, "RGB")
    small = pil if (r["width"], r["height"]) == (w, h) else pil.resize(
        (r["width"], r["height"]), Image.LANCZOS)
    return B._reconstruct(B._encode(small, codec, r["quality"]), (w, h))


def report(name: str, res: dict, other: dict | None = None) -> str:
    tot = sum(res["sse"])
    y, co, cg = res["mse_ycocg"]
    parts = []
    for k, label in enumerate(CLASSES):
        part = f"{label} {res['sse'][k] / tot:.2f}"
        if other is not None:
            part += f" (x{res['sse'][k] / other['sse'][k]:.2f})"
        parts.append(part)
    return (f"{name}: {res['psnr']:.2f} dB; MSE Y {y:.2f} Co {co:.2f} Cg {cg:.2f}; "
            f"share of the squared error: {', '.join(parts)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("image", help="the source image")
    ap.add_argument("file", help="its .nni file")
    ap.add_argument("--codec", default="avif", choices=B.CODECS)
    args = ap.parse_args(argv)
    nncodec = import_nncodec()
    img = B.load_image(args.image)
    data = Path(args.file).read_bytes()
    ours = nncodec.decode(data)
    if ours.ndim == 2 or ours.shape != img.shape:
        raise SystemExit("the file and the image differ in size or colour")
    classes = classify(img)
    theirs = error_regions(img, baseline(img, args.codec, len(data)), classes)
    print(f"{Path(args.image).name}, {len(data)} bytes")
    print(report("nncodec", error_regions(img, ours, classes), theirs) + " (x: against "
          + args.codec + ")")
    print(report(args.codec, theirs))
    return 0


if __name__ == "__main__":
    sys.exit(main())

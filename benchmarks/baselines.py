"""Classical codecs from Pillow, each given its best RGB PSNR under a byte cap.

For every codec (JPEG, WebP, AVIF, JPEG 2000) and byte cap, ``best_under_cap``
tries a list of downscale factors. At each scale it resizes the image with
Lanczos, searches the codec's quality parameter for the largest file that fits
the cap, decodes it, Lanczos-upscales back to the original size and measures
RGB PSNR against the original. The best PSNR over scales wins. This is what a
user with a hard byte budget would do, and it is the bar nncodec has to beat.

Encoder settings (all encoded into memory; the byte count is ``len`` of the
encoded bytes, headers and containers included):

- JPEG: ``quality`` 1..95, ``optimize=True`` (optimal Huffman tables, free
  bytes), Pillow's default 4:2:0 chroma subsampling, baseline (not
  progressive).
- WebP: lossy, ``quality`` 0..100, ``method=6`` (slowest, best).
- AVIF: libavif with the aom encoder, ``quality`` 0..100 (Pillow 13 accepts
  integers 0..100 and maps them to quantizers), ``speed=4`` (Pillow accepts
  0..10, default 6; 4 is a common "slow, good" setting and costs about 2x the
  time of the default), 4:2:0 subsampling (Pillow's default), ``max_threads=1``
  so a run stays on one core.
- JPEG 2000: OpenJPEG via ``quality_mode="rates"`` with a single layer whose
  compression ratio is searched (continuous, log-bisection) so the file lands
  just under the cap; irreversible 9/7 wavelet with the colour transform
  (``irreversible=True, mct=1``), raw codestream (``no_jp2=True``, no JP2
  box overhead), number of resolution levels limited for small images.

Run as a script to compute (and cache) results for a folder of images; see
``main`` and ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

CODECS = ("jpeg", "webp", "avif", "jpeg2000")

# Downscale factors tried, largest first.
SCALES = (1.0, 0.85, 0.7, 0.6, 0.5, 0.42, 0.35, 0.3, 0.25, 0.2, 0.15, 0.125)

# Stop trying smaller scales after this many consecutive scales below the best.
PATIENCE = 2

AVIF_SPEED = 4
WEBP_METHOD = 6
MAX_PSNR = 100.0

IMAGE_EXTS = (".png", ".ppm", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".webp")


# --------------------------------------------------------------------------- metrics


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Return RGB PSNR in dB between two uint8 arrays (mean over all channels), capped at 100."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    if mse <= 0.0:
        return MAX_PSNR
    return float(min(MAX_PSNR, 10.0 * math.log10(255.0**2 / mse)))


# --------------------------------------------------------------------------- budgets


def parse_budget(text: str | int) -> int:
    """Parse a byte budget: 2048, "2048", "2k", "2kb", "2KiB", "1.5k" (1k = 1024 bytes)."""
    if isinstance(text, int):
        return text
    s = str(text).strip().lower().replace(" ", "")
    mult = 1
    for suffix, m in (("kib", 1024), ("kb", 1024), ("k", 1024), ("mib", 1 << 20), ("mb", 1 << 20),
                      ("m", 1 << 20), ("b", 1)):
        if s.endswith(suffix):
            s = s[: -len(suffix)]
            mult = m
            break
    try:
        value = float(s)
    except ValueError:
        raise ValueError(f"bad budget {text!r}: expected e.g. 2048, 2k, 2kb, 2KiB") from None
    nbytes = int(round(value * mult))
    if nbytes <= 0:
        raise ValueError(f"bad budget {text!r}: must be positive")
    return nbytes


def parse_budgets(text: str) -> list[int]:
    """Parse a comma-separated list of budgets."""
    return [parse_budget(t) for t in text.split(",") if t.strip()]


def budget_label(nbytes: int) -> str:
    """Return a short label such as "2KiB" or "1500B"."""
    if nbytes % 1024 == 0:
        return f"{nbytes // 1024}KiB"
    return f"{nbytes}B"


# --------------------------------------------------------------------------- codecs


def _encode(im: Image.Image, codec: str, param) -> bytes:
    """Encode a PIL RGB image with one codec at one quality parameter; return the bytes."""
    buf = io.BytesIO()
    if codec == "jpeg":
        im.save(buf, format="JPEG", quality=int(param), optimize=True)
    elif codec == "webp":
        im.save(buf, format="WEBP", quality=int(param), method=WEBP_METHOD)
    elif codec == "avif":
        im.save(buf, format="AVIF", quality=int(param), speed=AVIF_SPEED, max_threads=1)
    elif codec == "jpeg2000":
        w, h = im.size
        # OpenJPEG needs each of the (num_resolutions - 1) halvings to leave >= 1 pixel;
        # keep the lowest band at least ~4 pixels.
        nres = max(1, min(6, int(math.floor(math.log2(max(1, min(w, h))))) - 1))
        im.save(buf, format="JPEG2000", quality_mode="rates", quality_layers=[float(param)],
                irreversible=True, mct=1, no_jp2=True, num_resolutions=nres)
    else:
        raise ValueError(f"unknown codec {codec!r}; expected one of {CODECS}")
    return buf.getvalue()


def _decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im.convert("RGB")


def _search_int(enc, lo: int, hi: int, cap: int):
    """Return (param, data) for the largest integer param in [lo, hi] whose encoding fits cap.

    Assumes the encoded size grows with the parameter (true up to small noise for all
    codecs here). Returns (None, None) if even ``lo`` does not fit.
    """
    data = enc(lo)
    if len(data) > cap:
        return None, None
    best = (lo, data)
    data = enc(hi)
    if len(data) <= cap:
        return hi, data
    lo_ok, hi_bad = lo, hi
    while hi_bad - lo_ok > 1:
        mid = (lo_ok + hi_bad) // 2
        data = enc(mid)
        if len(data) <= cap:
            lo_ok, best = mid, (mid, data)
        else:
            hi_bad = mid
    return best


def _search_ratio(enc, raw_bytes: int, cap: int, iters: int = 14):
    """Return (ratio, data) for the smallest JPEG 2000 compression ratio whose file fits cap.

    Brackets the answer around raw_bytes / cap by steps of 1.5x, then log-bisects.
    Returns (None, None) if no ratio up to ~130x that start fits.
    """
    step = 1.5
    r = max(1.0, raw_bytes / cap)
    data = enc(r)
    if len(data) <= cap:
        best = (r, data)
        # Walk down until a ratio does not fit (or we reach ratio 1, i.e. no rate limit).
        while True:
            if best[0] <= 1.0:
                return best
            r = max(1.0, best[0] / step)
            data = enc(r)
            if len(data) > cap:
                lo, hi = r, best[0]
                break
            best = (r, data)
    else:
        best = None
        for _ in range(12):
            lo, r = r, r * step
            data = enc(r)
            if len(data) <= cap:
                best = (r, data)
                hi = r
                break
        if best is None:
            return None, None
    for _ in range(iters):
        if hi / lo < 1.002:
            break
        mid = math.sqrt(lo * hi)
        data = enc(mid)
        if len(data) <= cap:
            hi, best = mid, (mid, data)
        else:
            lo = mid
    return best


def _fit_scale(img_pil: Image.Image, codec: str, cap: int, scale: float):
    """Encode at one scale with the best parameter that fits cap.

    Returns (param, data, small_size, at_max) or None when nothing fits. ``at_max`` is
    True when the highest quality already fits (so smaller scales cannot help).
    """
    w, h = img_pil.size
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    small = img_pil if (sw, sh) == (w, h) else img_pil.resize((sw, sh), Image.LANCZOS)

    def enc(p):
        return _encode(small, codec, p)

    if codec == "jpeg":
        lo, hi = 1, 95
    elif codec in ("webp", "avif"):
        lo, hi = 0, 100
    elif codec == "jpeg2000":
        param, data = _search_ratio(enc, sw * sh * 3, cap)
        if data is None:
            return None
        return param, data, (sw, sh), param <= 1.0
    else:
        raise ValueError(f"unknown codec {codec!r}; expected one of {CODECS}")
    param, data = _search_int(enc, lo, hi, cap)
    if data is None:
        return None
    return param, data, (sw, sh), param == hi


def _reconstruct(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """Decode and Lanczos-upscale back to ``size`` (W, H); return HxWx3 uint8."""
    rec = _decode(data)
    if rec.size != size:
        rec = rec.resize(size, Image.LANCZOS)
    return np.asarray(rec, dtype=np.uint8)


def best_under_cap(img: np.ndarray, codec: str, cap_bytes: int, scales=SCALES,
                   patience: int = PATIENCE, timing: bool = False) -> dict:
    """Return the codec's best RGB PSNR with a file of at most ``cap_bytes`` bytes.

    ``img`` is HxWx3 uint8. Tries each scale in ``scales`` (largest first), searches
    the quality parameter for the largest file that fits, decodes, Lanczos-upscales to
    the original size and measures PSNR. Stops going smaller once ``patience``
    consecutive scales fall below the best so far. Returns a dict with codec, bytes,
    bpp (bytes*8 per pixel of the original), psnr, scale, quality (JPEG 2000: the
    compression ratio), search_s; psnr and bytes are None if nothing fits. With
    ``timing=True`` also encode_s / decode_s of the chosen setting (resize included).
    """
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; expected one of {CODECS}")
    img = np.ascontiguousarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected HxWx3 uint8 image, got {img.shape} {img.dtype}")
    h, w = img.shape[:2]
    pil = Image.fromarray(img, "RGB")
    t0 = time.perf_counter()
    best = None
    below = 0
    tried = []
    for s in scales:
        fit = _fit_scale(pil, codec, cap_bytes, s)
        if fit is None:
            tried.append({"scale": s, "psnr": None})
            if best is not None:
                # Smaller scales only get here when a codec's fixed overhead beats the
                # cap; count it as a drop.
                below += 1
                if below >= patience:
                    break
            continue
        param, data, small_size, at_max = fit
        rec = _reconstruct(data, (w, h))
        p = psnr(img, rec)
        tried.append({"scale": s, "psnr": round(p, 4)})
        if best is None or p > best["psnr"]:
            best = {"psnr": p, "bytes": len(data), "scale": s, "quality": param,
                    "size": small_size, "data": data}
            below = 0
        else:
            below += 1
            if below >= patience:
                break
        if at_max:
            # Highest quality already fits at this scale: smaller scales lose detail.
            break
    search_s = time.perf_counter() - t0
    out = {"codec": codec, "budget": int(cap_bytes), "bytes": None, "bpp": None, "psnr": None,
           "scale": None, "quality": None, "search_s": round(search_s, 3), "tried": tried}
    if best is None:
        return out
    q = best["quality"]
    out.update({
        "bytes": best["bytes"],
        "bpp": best["bytes"] * 8.0 / (h * w),
        "psnr": best["psnr"],
        "scale": best["scale"],
        "quality": round(float(q), 4) if codec == "jpeg2000" else int(q),
        "width": best["size"][0],
        "height": best["size"][1],
    })
    if timing:
        t0 = time.perf_counter()
        small = pil if best["size"] == (w, h) else pil.resize(best["size"], Image.LANCZOS)
        data = _encode(small, codec, q)
        out["encode_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        _reconstruct(data, (w, h))
        out["decode_s"] = time.perf_counter() - t0
    return out


# --------------------------------------------------------------------------- I/O helpers


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Load an image file as HxWx3 uint8 RGB."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def image_path(name: str, folder: str | os.PathLike) -> Path:
    """``name`` as a path if it ends in ``.png``, else ``folder/name.png`` (``kodim23``)."""
    return Path(name) if name.endswith(".png") else Path(folder) / f"{name}.png"


def list_images(folder: str | os.PathLike, limit: int | None = None) -> list[Path]:
    """Return the image files in ``folder``, sorted by name, optionally the first ``limit``."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    return files[:limit] if limit else files


def machine_info() -> dict:
    """Describe the machine and library versions for a results file."""
    import PIL
    from PIL import features

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "libjpeg": features.version("jpg"),
        "libwebp": features.version("webp"),
        "libavif": features.version("avif"),
        "openjpeg": features.version("jpg_2000"),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        import numba

        info["numba"] = numba.__version__
    except ImportError:
        info["numba"] = None
    try:
        from PIL import _avif

        info["avif_codecs"] = _avif.codec_versions()
    except Exception:  # noqa: BLE001 - informational only
        pass
    return info


def baseline_settings() -> dict:
    """Describe the search so a cached results file says how it was made."""
    return {"scales": list(SCALES), "patience": PATIENCE, "avif_speed": AVIF_SPEED,
            "avif_subsampling": "4:2:0", "webp_method": WEBP_METHOD,
            "jpeg": "quality 1..95, optimize=True, 4:2:0",
            "jpeg2000": "rates mode, single layer, irreversible, mct=1, raw codestream",
            "resize": "Lanczos down before encoding, Lanczos up after decoding"}


def shard(files: list, spec: str | None, ap) -> list:
    """The files of shard ``spec`` ("K/N": every N-th file from the K-th); ``ap.error`` if malformed."""
    if not spec:
        return files
    try:
        k, n = (int(v) for v in spec.split("/"))
        assert 0 <= k < n
    except (ValueError, AssertionError):
        ap.error(f"--shard must look like 0/2, got {spec!r}")
    return files[k::n]


def merge_docs(paths, tag: str) -> tuple[dict, list[dict]]:
    """Read result JSON files (shards of one run, or runs of other settings).

    Returns ``(doc, docs)``: ``doc`` has the last file's header, ``tag``, the
    sources, the union of images, of their folders and of codecs, the
    results and whether every run completed. A later file's record replaces
    an earlier one for the same image, codec and budget, so a new run at some
    budgets can be merged over an older report (say so where the report is
    quoted).
    """
    docs = [json.loads(Path(p).read_text()) for p in paths]
    doc = dict(docs[-1])
    doc["tag"] = tag
    doc["merged_from"] = [str(p) for p in paths]
    doc["images"] = sorted({name for d in docs for name in d["images"]})
    # Every run's image folder, in order (a run over a subset names its own).
    dirs = list(dict.fromkeys(d["images_dir"] for d in docs if d.get("images_dir")))
    if dirs:
        doc["images_dir"] = ", ".join(dirs)
    if any("codecs" in d for d in docs):
        # Every codec of every file, in the order they first appear.
        doc["codecs"] = list(dict.fromkeys(c for d in docs for c in d.get("codecs", ())))
    results = {}
    for d in docs:
        for r in d["results"]:
            key = (r["image"], r["codec"], int(r["budget"]))
            results.pop(key, None)  # the later record takes the later place
            results[key] = r
    doc["results"] = list(results.values())
    doc["complete"] = all(d.get("complete") for d in docs)
    doc["elapsed_s"] = max(d.get("elapsed_s", 0) for d in docs)
    return doc, docs


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write JSON to ``path`` via a temporary file, so a kill never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def load_cache(path: str | os.PathLike | None) -> dict:
    """Return {(image, codec, budget): result} from a results JSON, or {} if absent."""
    if not path or not Path(path).exists():
        return {}
    with open(path) as f:
        doc = json.load(f)
    return {(r["image"], r["codec"], int(r["budget"])): r for r in doc.get("results", [])}


def summarize(results: list[dict], codecs, budgets) -> dict:
    """Return {(codec, budget): {"psnr", "bpp", "bytes", "n", "missing"}} means over images."""
    out = {}
    for c in codecs:
        for b in budgets:
            rows = [r for r in results if r["codec"] == c and int(r["budget"]) == b]
            ok = [r for r in rows if r.get("psnr") is not None]
            out[(c, b)] = {
                "psnr": float(np.mean([r["psnr"] for r in ok])) if ok else None,
                "bpp": float(np.mean([r["bpp"] for r in ok])) if ok else None,
                "bytes": float(np.mean([r["bytes"] for r in ok])) if ok else None,
                "n": len(ok),
                "missing": len(rows) - len(ok),
            }
    return out


# --------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    """Compute baseline results for a folder of images, caching per image/codec/budget."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True, help="folder of images (e.g. ../shared/datasets/kodak)")
    ap.add_argument("--budgets", default="1k,2k,4k,8k,16k", help="comma list, 1k = 1024 bytes")
    ap.add_argument("--codecs", default=",".join(CODECS), help="comma list of " + ",".join(CODECS))
    ap.add_argument("--out", default="benchmarks/results/baselines-kodak.json")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images")
    ap.add_argument("--recompute", action="store_true", help="ignore cached entries in --out")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)

    budgets = parse_budgets(args.budgets)
    codecs = [c.strip().lower() for c in args.codecs.split(",") if c.strip()]
    for c in codecs:
        if c not in CODECS:
            ap.error(f"unknown codec {c!r}; expected one of {CODECS}")
    files = list_images(args.images, args.limit)

    cache = {} if args.recompute else load_cache(args.out)
    doc_images = sorted({k[0] for k in cache} | {p.name for p in files})
    doc_budgets = sorted({k[2] for k in cache} | set(budgets))
    t_start = time.perf_counter()

    def dump():
        results = sorted(cache.values(), key=lambda r: (r["image"], r["codec"], int(r["budget"])))
        write_json_atomic(args.out, {
            "machine": machine_info(),
            "settings": baseline_settings(),
            "images": doc_images,
            "budgets": doc_budgets,
            "results": results,
        })

    for path in files:
        img = None
        changed = False
        for codec in codecs:
            for b in budgets:
                key = (path.name, codec, b)
                if key in cache:
                    continue
                if img is None:
                    img = load_image(path)
                r = best_under_cap(img, codec, b, timing=True)
                r = {"image": path.name, **r, "within_budget": r["bytes"] is not None and r["bytes"] <= b}
                cache[key] = r
                changed = True
                if not args.quiet:
                    ps = "  n/a" if r["psnr"] is None else f"{r['psnr']:.2f}"
                    print(f"{path.name} {codec:8s} {budget_label(b):>7s} psnr={ps} bytes={r['bytes']} "
                          f"scale={r['scale']} q={r['quality']} ({r['search_s']:.1f}s, "
                          f"total {time.perf_counter() - t_start:.0f}s)", flush=True)
        if changed:
            dump()  # after each image, so a killed run keeps what it did
    dump()

    summ = summarize(list(cache.values()), codecs, budgets)
    print("\nmean over images: PSNR dB / bpp")
    print("budget   " + "".join(f"{c:>18s}" for c in codecs))
    for b in budgets:
        cells = []
        for c in codecs:
            s = summ[(c, b)]
            cells.append("n/a" if s["psnr"] is None else f"{s['psnr']:.2f} / {s['bpp']:.4f}")
        print(f"{budget_label(b):8s} " + "".join(f"{x:>18s}" for x in cells))
    print(f"wrote {args.out} ({time.perf_counter() - t_start:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

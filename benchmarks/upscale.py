"""Upscaling benchmark: nncodec rendered at a larger size against interpolating its 1x decode.

For each image and scale factor s (default 2 and 4):

1. box-downscale the original by s (exact mean over s x s blocks in float, rounded to
   uint8; an image whose sides are not multiples of s is first cropped to multiples of s,
   from the top-left);
2. encode the small image with ``nncodec.encode(small, budget=B)``, B = floor(w * h *
   bpp / 8) bytes for the small image's w x h (default 1 bpp);
3. decode it at 1x (``nncodec.decode(data)``) and at xs (``nncodec.decode(data,
   size=(W, H))``, the field evaluated on the finer grid);
4. measure RGB PSNR against the original for: nncodec xs; nearest, bilinear, bicubic and
   Lanczos (Pillow ``Image.resize``) applied to the decoded 1x; and Lanczos applied to the
   uncoded small image (a reference: what interpolation does with no coding loss).

Each record also has the 1x PSNR (decoded against the small image), the bytes, the
encode seconds and the xs decode seconds.

Writes into --out-dir, after every image (a killed run keeps what it did; rerunning the
same command resumes, skipping the (image, scale) entries already in the JSON unless
--recompute):
  upscale-<tag>.json      machine block, settings, one record per (image, scale)
  upscale-<tag>.md        mean PSNR per method and scale; nncodec minus Lanczos-from-decoded,
                          with the number of images where nncodec wins; a per-image table
  upscale-<tag>-crop.png  one image (--crop-image, default kodim23) at the largest scale:
                          a crop of the original, Lanczos from the decoded 1x and nncodec
  upscale-<tag>-crop.nni  the file the crop was rendered from

Example:
  NUMBA_NUM_THREADS=1 PYTHONPATH=src python benchmarks/upscale.py --tag dev --limit 2
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import baselines as B  # noqa: E402
from rd import import_nncodec  # noqa: E402

#: Methods in report order: key -> label.
METHODS = {
    "nncodec": "nncodec, field rendered at xs",
    "nearest": "nearest, from decoded 1x",
    "bilinear": "bilinear, from decoded 1x",
    "bicubic": "bicubic, from decoded 1x",
    "lanczos": "Lanczos, from decoded 1x",
    "lanczos_uncoded": "Lanczos, from uncoded small (reference)",
}
#: Pillow filters of the interpolation methods.
FILTERS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
           "lanczos": Image.LANCZOS}
CROP_SIZE = 192  # output pixels a side of the crop picture
CROP_STEP = 16  # search stride of the crop window


# --------------------------------------------------------------------------- pieces


def box_downscale(img: np.ndarray, s: int) -> np.ndarray:
    """Mean over s x s blocks in float64, rounded half up to uint8. Sides must divide by s."""
    h, w = img.shape[:2]
    if h % s or w % s:
        raise ValueError(f"{w}x{h} is not divisible by {s}")
    m = img.astype(np.float64).reshape(h // s, s, w // s, s, -1).mean(axis=(1, 3))
    return np.floor(m + 0.5).clip(0, 255).astype(np.uint8).reshape((h // s, w // s) + img.shape[2:])


def crop_to_multiple(img: np.ndarray, s: int) -> np.ndarray:
    """The top-left part of ``img`` whose sides are multiples of ``s``."""
    h, w = img.shape[:2]
    return img[: h - h % s, : w - w % s]


def budget_for(w: int, h: int, bpp: float) -> int:
    """Bytes for ``bpp`` bits per pixel of a w x h image, rounded down."""
    return int(math.floor(w * h * bpp / 8.0 + 1e-9))


def resize(img: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """Pillow ``Image.resize`` of a uint8 RGB array to ``size`` (W, H) with one filter."""
    return np.asarray(Image.fromarray(img, "RGB").resize(size, FILTERS[method]), dtype=np.uint8)


def run_one(nncodec, img: np.ndarray, s: int, bpp: float, preset: str | None,
            keep: bool = False) -> dict:
    """Benchmark one image at one scale; return a record (without the image name).

    With ``keep=True`` the record also holds ``"_data"`` (the .nni bytes), ``"_up"`` (the
    nncodec xs render) and ``"_lanczos"`` (Lanczos xs of the decoded 1x), for the crop
    picture; they are not written to the JSON.
    """
    img = crop_to_multiple(img, s)
    H, W = img.shape[:2]
    small = box_downscale(img, s)
    h, w = small.shape[:2]
    budget = budget_for(w, h, bpp)
    rec = {"scale": s, "width": W, "height": H, "small_width": w, "small_height": h,
           "bpp_target": bpp, "budget": budget, "preset": preset, "bytes": None, "bpp": None,
           "encode_s": None, "decode_xs_s": None, "psnr_1x": None,
           "psnr": {m: None for m in METHODS}}
    try:
        kwargs = {"budget": budget}
        if preset is not None:
            kwargs["preset"] = preset
        t0 = time.perf_counter()
        data = bytes(nncodec.encode(small, **kwargs))
        rec["encode_s"] = round(time.perf_counter() - t0, 3)
        rec["bytes"] = len(data)
        rec["bpp"] = len(data) * 8.0 / (w * h)
        rec["within_budget"] = len(data) <= budget
        dec = np.asarray(nncodec.decode(data))
        t0 = time.perf_counter()
        up = np.asarray(nncodec.decode(data, size=(W, H)))
        rec["decode_xs_s"] = round(time.perf_counter() - t0, 4)
        if dec.shape != small.shape or up.shape != img.shape:
            raise ValueError(f"decode gave {dec.shape} and {up.shape}, "
                             f"expected {small.shape} and {img.shape}")
        rec["psnr_1x"] = B.psnr(small, dec)
        rec["psnr"]["nncodec"] = B.psnr(img, up)
        outs = {}
        for m in FILTERS:
            outs[m] = resize(dec, (W, H), m)
            rec["psnr"][m] = B.psnr(img, outs[m])
        rec["psnr"]["lanczos_uncoded"] = B.psnr(img, resize(small, (W, H), "lanczos"))
        if keep:
            rec["_data"], rec["_up"], rec["_lanczos"] = data, up, outs["lanczos"]
    except Exception as exc:  # noqa: BLE001 - record and keep benchmarking
        rec["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    return rec


# --------------------------------------------------------------------------- crop picture


def detail_window(img: np.ndarray, size: int, step: int = CROP_STEP) -> tuple[int, int]:
    """Top-left (x, y) of the ``size`` x ``size`` window with the most gradient energy.

    Chosen from the original alone, so the crop does not favour any method.
    """
    g = img.astype(np.float64).mean(axis=2)
    e = np.zeros_like(g)
    e[:, 1:] += np.abs(np.diff(g, axis=1))
    e[1:, :] += np.abs(np.diff(g, axis=0))
    ii = np.pad(e.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    H, W = g.shape
    size = min(size, H, W)
    best, best_xy = -1.0, (0, 0)
    for y in range(0, H - size + 1, step):
        for x in range(0, W - size + 1, step):
            v = ii[y + size, x + size] - ii[y, x + size] - ii[y + size, x] + ii[y, x]
            if v > best:
                best, best_xy = v, (x, y)
    return best_xy


def crop_picture(panels: list[tuple[str, np.ndarray]], xy: tuple[int, int], size: int,
                 zoom: int = 1) -> Image.Image:
    """Side-by-side crops ``[y:y+size, x:x+size]`` of each panel, labelled above each.

    ``zoom`` enlarges every crop by pixel replication (nearest) for viewing.
    """
    x, y = xy
    font = ImageFont.load_default()
    pad, label_h = 6, 34
    side = size * zoom
    pic = Image.new("RGB", (len(panels) * (side + pad) + pad, side + label_h + pad), "white")
    draw = ImageDraw.Draw(pic)
    for k, (label, arr) in enumerate(panels):
        crop = Image.fromarray(np.ascontiguousarray(arr[y:y + size, x:x + size]), "RGB")
        if zoom != 1:
            crop = crop.resize((side, side), Image.NEAREST)
        x0 = pad + k * (side + pad)
        pic.paste(crop, (x0, label_h))
        draw.multiline_text((x0, 3), label, fill="black", font=font, spacing=2)
    return pic


def write_crop(path: Path, name: str, img: np.ndarray, rec: dict, size: int = CROP_SIZE,
               zoom: int = 1, xy: tuple[int, int] | None = None) -> dict:
    """Write the crop picture of one record (made with ``keep=True``); return its facts."""
    s = rec["scale"]
    img = crop_to_multiple(img, s)
    size = min(size, *img.shape[:2])
    if xy is None:
        xy = detail_window(img, size)
    p = rec["psnr"]
    panels = [
        (f"original {name}\n{img.shape[1]}x{img.shape[0]}", img),
        (f"Lanczos x{s} of decoded 1x\n{p['lanczos']:.2f} dB", rec["_lanczos"]),
        (f"nncodec x{s} ({rec['bytes']} B)\n{p['nncodec']:.2f} dB", rec["_up"]),
    ]
    pic = crop_picture(panels, xy, size, zoom)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pic.save(tmp, format="PNG", optimize=True)
    tmp.replace(path)
    nni = path.with_suffix(".nni")
    nni.write_bytes(rec["_data"])
    return {"image": name, "scale": s, "x": int(xy[0]), "y": int(xy[1]), "size": size,
            "zoom": zoom, "png": path.name, "nni": nni.name}


# --------------------------------------------------------------------------- reports


def _fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def summarize(results: list[dict], scales) -> dict:
    """Per scale: mean PSNR per method, nncodec minus Lanczos-from-decoded, wins, times."""
    out = {}
    for s in scales:
        rows = [r for r in results if r["scale"] == s and r["psnr"].get("nncodec") is not None]
        d = {"n": len(rows), "mean": {}, "errors": sum(1 for r in results
                                                     if r["scale"] == s and r.get("error"))}
        for m in METHODS:
            v = [r["psnr"][m] for r in rows if r["psnr"].get(m) is not None]
            d["mean"][m] = float(np.mean(v)) if v else None
        diffs = [r["psnr"]["nncodec"] - r["psnr"]["lanczos"] for r in rows]
        d["gain"] = float(np.mean(diffs)) if diffs else None
        d["gain_min"] = float(min(diffs)) if diffs else None
        d["gain_max"] = float(max(diffs)) if diffs else None
        d["wins"] = sum(1 for x in diffs if x > 0)
        best_interp = [r["psnr"]["nncodec"] - max(r["psnr"][m] for m in FILTERS) for r in rows]
        d["wins_all_interp"] = sum(1 for x in best_interp if x > 0)
        d["gap_uncoded"] = (float(np.mean([r["psnr"]["nncodec"] - r["psnr"]["lanczos_uncoded"]
                                           for r in rows])) if rows else None)
        d["psnr_1x"] = float(np.mean([r["psnr_1x"] for r in rows])) if rows else None
        d["bytes"] = float(np.mean([r["bytes"] for r in rows])) if rows else None
        d["bpp"] = float(np.mean([r["bpp"] for r in rows])) if rows else None
        d["within_budget"] = sum(1 for r in rows if r.get("within_budget"))
        enc = [r["encode_s"] for r in rows if r.get("encode_s") is not None]
        dec = [r["decode_xs_s"] for r in rows if r.get("decode_xs_s") is not None]
        d["encode_s_median"] = statistics.median(enc) if enc else None
        d["encode_s_total"] = float(sum(enc))
        d["decode_xs_s_median"] = statistics.median(dec) if dec else None
        out[s] = d
    return out


def results_table(summ: dict, scales) -> list[str]:
    """The mean-PSNR table (methods as rows, scales as columns) as markdown lines."""
    lines = ["| method | " + " | ".join(f"x{s}" for s in scales) + " |",
             "|---|" + "---|" * len(scales)]
    for m, label in METHODS.items():
        lines.append(f"| {label} | " + " | ".join(_fmt(summ[s]["mean"][m], ".2f")
                                                for s in scales) + " |")
    lines.append("| **nncodec minus Lanczos from decoded 1x** | "
                 + " | ".join(_fmt(summ[s]["gain"], "+.2f") for s in scales) + " |")
    lines.append("| images where nncodec beats Lanczos from decoded 1x | "
                 + " | ".join(f"{summ[s]['wins']}/{summ[s]['n']}" for s in scales) + " |")
    return lines


def write_markdown(path: Path, doc: dict) -> None:
    """Write the summary and per-image tables."""
    results, scales = doc["results"], doc["scales"]
    summ = summarize(results, scales)
    m = doc["machine"]
    done = sorted({r["image"] for r in results})
    lines = [f"# Upscaling benchmark `{doc['tag']}`", ""]
    lines.append(
        f"{len(done)}/{len(doc['images'])} images from `{doc['images_dir']}`. Each original is "
        f"box-downscaled by s, the small image is encoded at {doc['bpp']:g} bpp of its own pixels "
        f"(budget floor(w h {doc['bpp']:g} / 8) bytes), then brought back to the original size; "
        f"RGB PSNR against the original, mean over images. nncodec preset: "
        f"`{doc.get('preset') or 'default'}`.")
    lines.append(f"Machine: {m['platform']}, {m['cpu_count']} CPUs, Python {m['python']}, "
                 f"numpy {m['numpy']}, Pillow {m['pillow']}, numba {m.get('numba')}, "
                 f"nncodec {m.get('nncodec')}; {m['date']}.")
    lines.append("")
    lines += results_table(summ, scales)
    lines.append("")
    for s in scales:
        d = summ[s]
        if not d["n"]:
            continue
        lines.append(
            f"- x{s}: small images {d['bytes']:.0f} bytes on average ({d['bpp']:.3f} bpp), "
            f"{d['within_budget']}/{d['n']} within budget, 1x PSNR {d['psnr_1x']:.2f} dB; nncodec "
            f"minus Lanczos from decoded 1x {d['gain']:+.2f} dB (per image {d['gain_min']:+.2f} to "
            f"{d['gain_max']:+.2f}), beats every interpolation of the decoded 1x on "
            f"{d['wins_all_interp']}/{d['n']}; minus Lanczos of the uncoded small image "
            f"{d['gap_uncoded']:+.2f} dB. Encode median {d['encode_s_median']:.1f} s "
            f"(total {d['encode_s_total'] / 60:.1f} min), xs decode median "
            f"{1e3 * d['decode_xs_s_median']:.0f} ms."
            + (f" Errors: {d['errors']}." if d["errors"] else ""))
    if doc.get("crop"):
        c = doc["crop"]
        lines.append(f"- Crop picture `{c['png']}`: {c['image']} x{c['scale']}, "
                     f"{c['size']}x{c['size']} output pixels at ({c['x']}, {c['y']})"
                     + (f", shown x{c['zoom']}" if c.get("zoom", 1) != 1 else "") + ".")
    lines += ["", "## Per image", ""]
    cols = []
    for s in scales:
        cols += [f"x{s} bytes", f"x{s} 1x dB", f"x{s} nncodec", f"x{s} Lanczos", f"x{s} diff",
                 f"x{s} uncoded", f"x{s} enc s"]
    lines += ["| image | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    index = {(r["image"], r["scale"]): r for r in results}
    for name in done:
        cells = []
        for s in scales:
            r = index.get((name, s))
            if r is None or r["psnr"].get("nncodec") is None:
                cells += ["n/a"] * 7
                continue
            p = r["psnr"]
            cells += [str(r["bytes"]), f"{r['psnr_1x']:.2f}", f"{p['nncodec']:.2f}",
                      f"{p['lanczos']:.2f}", f"{p['nncodec'] - p['lanczos']:+.2f}",
                      f"{p['lanczos_uncoded']:.2f}", _fmt(r["encode_s"], ".1f")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    path.write_text("\n".join(lines))


# --------------------------------------------------------------------------- driver


def load_results(path: Path) -> dict:
    """{(image, scale): record} from an upscale JSON, or {} if it does not exist."""
    if not path.exists():
        return {}
    doc = json.loads(path.read_text())
    return {(r["image"], int(r["scale"])): r for r in doc.get("results", [])}


def _public(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if not k.startswith("_")}


def run_benchmark(files, *, scales=(2, 4), bpp: float = 1.0, preset: str | None = None,
                  out_dir="benchmarks/results", tag: str = "dev", recompute: bool = False,
                  crop_image: str | None = "kodim23", crop_zoom: int = 1, images_dir=None,
                  nncodec=None, log=print) -> dict:
    """Run the benchmark over ``files`` and write upscale-<tag>.json/.md (and the crop).

    Records already in the JSON for the same (image, scale), bpp and preset are kept
    unless ``recompute``. The crop picture is made from the largest scale of the image
    whose stem is ``crop_image`` (re-encoded if its record came from the cache and the
    picture is missing). Returns the document written.
    """
    if nncodec is None:
        nncodec = import_nncodec()
    scales = sorted({int(s) for s in scales})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"upscale-{tag}.json", out_dir / f"upscale-{tag}.md"
    crop_path = out_dir / f"upscale-{tag}-crop.png"
    old = {} if recompute else load_results(json_path)
    old_doc = json.loads(json_path.read_text()) if (json_path.exists() and not recompute) else {}
    cache = {k: r for k, r in old.items()
             if r.get("bpp_target") == bpp and r.get("preset") == preset and not r.get("error")}
    machine = B.machine_info()
    machine["nncodec"] = getattr(nncodec, "__version__", None)
    machine["nncodec_path"] = str(Path(nncodec.__file__).resolve().parent)
    files = [Path(p) for p in files]
    doc = {"tag": tag, "machine": machine,
           "images_dir": str(images_dir if images_dir is not None else
                             (files[0].parent if files else "")),
           "images": [p.name for p in files], "scales": scales, "bpp": bpp, "preset": preset,
           "method_labels": METHODS, "crop": old_doc.get("crop"), "results": []}
    crop_scale = max(scales)
    t_start = time.perf_counter()
    for i, path in enumerate(files):
        img = None
        want_crop = crop_image is not None and path.stem == crop_image
        for s in scales:
            key = (path.name, s)
            need_pic = want_crop and s == crop_scale and (not crop_path.exists() or key not in cache)
            if key in cache and not need_pic:
                doc["results"].append(cache[key])
                continue
            if img is None:
                img = B.load_image(path)
            rec = {"image": path.name, **run_one(nncodec, img, s, bpp, preset, keep=need_pic)}
            if need_pic and rec.get("_data") is not None:
                doc["crop"] = write_crop(crop_path, path.stem, img, rec, zoom=crop_zoom)
            rec = _public(rec)
            doc["results"].append(rec)
            p = rec["psnr"]
            log(f"[{i + 1}/{len(files)}] {path.name} x{s}: {rec['bytes']} B, 1x "
                f"{_fmt(rec['psnr_1x'], '.2f')} dB, nncodec {_fmt(p['nncodec'], '.2f')}, "
                f"Lanczos {_fmt(p['lanczos'], '.2f')}, uncoded Lanczos "
                f"{_fmt(p['lanczos_uncoded'], '.2f')}, enc {_fmt(rec['encode_s'], '.1f')} s "
                f"(total {time.perf_counter() - t_start:.0f} s)")
        doc["complete"] = i + 1 == len(files)
        doc["elapsed_s"] = round(time.perf_counter() - t_start, 1)
        B.write_json_atomic(json_path, doc)
        write_markdown(md_path, doc)
    if not files:
        B.write_json_atomic(json_path, doc)
        write_markdown(md_path, doc)
    return doc


def merge(paths, tag: str, out_dir: Path) -> dict:
    """Combine upscale-*.json files (e.g. shards of one run) into upscale-<tag>.json/.md."""
    doc, docs = B.merge_docs(paths, tag)
    doc["scales"] = sorted({s for d in docs for s in d["scales"]})
    doc["results"].sort(key=lambda r: (r["image"], r["scale"]))
    doc["crop"] = next((d["crop"] for d in docs if d.get("crop")), None)
    out_dir.mkdir(parents=True, exist_ok=True)
    B.write_json_atomic(out_dir / f"upscale-{tag}.json", doc)
    write_markdown(out_dir / f"upscale-{tag}.md", doc)
    return doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Upscaling benchmark: nncodec at xs against "
                                             "interpolating its 1x decode")
    ap.add_argument("--images", default=str(REPO.parent / "shared" / "datasets" / "kodak"))
    ap.add_argument("--scales", default="2,4", help="comma list of integer factors")
    ap.add_argument("--bpp", type=float, default=1.0, help="budget in bits per small-image pixel")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images")
    ap.add_argument("--preset", default=None, help="passed to nncodec.encode(preset=...)")
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    ap.add_argument("--tag", default=None, help="output name upscale-<tag>.*; default: date-time")
    ap.add_argument("--recompute", action="store_true", help="ignore results already in the JSON")
    ap.add_argument("--crop-image", default="kodim23",
                    help="stem of the image for the crop picture ('' for none)")
    ap.add_argument("--crop-zoom", type=int, default=1, help="enlarge the crops by this factor")
    ap.add_argument("--shard", default=None,
                    help="I/N: only images I, I+N, ... (0-based); combine with --merge")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="combine several runs (shards) into upscale-<tag>.*")
    args = ap.parse_args(argv)
    tag = args.tag or time.strftime("%Y%m%d-%H%M%S")
    if args.merge:
        doc = merge(args.merge, tag, Path(args.out_dir))
        print((Path(args.out_dir) / f"upscale-{tag}.md").read_text())
        return 0 if doc["results"] else 1
    try:
        scales = [int(v) for v in args.scales.split(",") if v.strip()]
        assert scales and all(s >= 1 for s in scales)
    except (ValueError, AssertionError):
        ap.error(f"--scales must be positive integers like 2,4, got {args.scales!r}")
    if not (args.bpp > 0):
        ap.error("--bpp must be positive")
    files = B.shard(B.list_images(args.images, args.limit), args.shard, ap)
    run_benchmark(files, scales=scales, bpp=args.bpp, preset=args.preset, out_dir=args.out_dir,
                  tag=tag, recompute=args.recompute, crop_image=args.crop_image or None,
                  crop_zoom=args.crop_zoom, images_dir=args.images,
                  log=lambda m: print(m, flush=True))
    md = Path(args.out_dir) / f"upscale-{tag}.md"
    print(md.read_text().split("## Per image")[0])
    print(f"wrote {md.with_suffix('.json')}, {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

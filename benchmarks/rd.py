"""Rate-distortion benchmark: nncodec against classical codecs at byte budgets.

For each image and byte budget, nncodec encodes with ``nncodec.encoder.encode_stats``
and decodes with ``nncodec.decode(data)``; the classical codecs (JPEG, WebP, AVIF,
JPEG 2000) get their best RGB PSNR under the same cap, downscaling allowed (see
``baselines.py``), or are read from a baselines cache JSON.

Writes into --out-dir, after every image (so a killed run leaves partial results):
  rd-<tag>.json  one record per image, codec and budget (one schema for all codecs;
                 nncodec's add how training ended, see run_nncodec)
  rd-<tag>.md    mean PSNR / bpp per budget and codec, nncodec per-image table
  rd-<tag>.png   RD plot: mean PSNR against mean bpp, one line per codec

Example:
  python benchmarks/rd.py --images ../shared/datasets/kodak --budgets 2k,8k \\
      --baselines-cache benchmarks/results/baselines-kodak.json --tag dev
"""

from __future__ import annotations

import argparse
import importlib
import math
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import baselines as B  # noqa: E402

ALL_CODECS = ("nncodec",) + B.CODECS
DECODE_REPEATS = 3


# --------------------------------------------------------------------------- nncodec


def import_nncodec():
    """Import nncodec, falling back to the repo's src/ when it is not installed."""
    try:
        import nncodec
    except ImportError:
        src = REPO / "src"
        if str(src) not in sys.path:
            sys.path.insert(0, str(src))
        import nncodec  # raises ImportError again if it really is missing
    return nncodec


def run_nncodec(nncodec, img: np.ndarray, budget: int, preset: str | None, seed: int = 0) -> dict:
    """Encode and decode one image with nncodec; return a result record (without image name)."""
    h, w = img.shape[:2]
    rec = {"codec": "nncodec", "budget": budget, "bytes": None, "bpp": None, "psnr": None,
           "encode_s": None, "decode_s": None, "within_budget": False}
    if preset is not None:
        rec["preset"] = preset
    kwargs = {"budget": budget}
    if preset is not None:
        kwargs["preset"] = preset
    if seed:
        rec["seed"] = kwargs["seed"] = seed
    try:
        t0 = time.perf_counter()
        data, stats = importlib.import_module("nncodec.encoder").encode_stats(img, **kwargs)
        rec["encode_s"] = time.perf_counter() - t0
        # How busy the image is, and the finest grid the encoder chose for it.
        rec["detail"] = stats.detail
        rec["first_level"] = stats.spec.first_level
        # Size when training ended, recovery rounds run, size of the state
        # fitted to the budget, and training's own PSNR estimate.
        rec["end_bytes"], rec["rounds"] = stats.end_bytes, stats.rounds
        rec["trained_bytes"] = stats.trained_bytes
        rec["est_psnr"] = stats.est_psnr if math.isfinite(stats.est_psnr) else None
        data = bytes(data)
        rec["bytes"] = len(data)
        rec["bpp"] = len(data) * 8.0 / (h * w)
        rec["within_budget"] = len(data) <= budget
        out = nncodec.decode(data)  # warm-up (also the output we score)
        times = []
        for _ in range(DECODE_REPEATS):
            t0 = time.perf_counter()
            nncodec.decode(data)
            times.append(time.perf_counter() - t0)
        rec["decode_s"] = statistics.median(times)
        out = np.asarray(out)
        if out.shape != img.shape or out.dtype != np.uint8:
            raise ValueError(f"decode returned {out.shape} {out.dtype}, expected {img.shape} uint8")
        rec["psnr"] = B.psnr(img, out)
    except Exception as exc:  # noqa: BLE001 - record and keep benchmarking
        rec["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    return rec


def run_baseline(img: np.ndarray, codec: str, budget: int, cache: dict, name: str) -> dict:
    """Return a baseline record, from the cache when it has one."""
    hit = cache.get((name, codec, budget))
    if hit is not None:
        rec = {k: v for k, v in hit.items() if k not in ("image", "tried")}
        rec["cached"] = True
    else:
        rec = B.best_under_cap(img, codec, budget, timing=True)
        rec.pop("tried", None)
        rec["cached"] = False
    rec.setdefault("encode_s", None)
    rec.setdefault("decode_s", None)
    rec["within_budget"] = rec.get("bytes") is not None and rec["bytes"] <= budget
    return rec


# --------------------------------------------------------------------------- reports


def bd_rate(rate_ref, psnr_ref, rate_test, psnr_test) -> float | None:
    """Bjontegaard delta rate (per cent) of test against ref.

    Fits log(rate) as a cubic in PSNR for each curve (4 or more points; a
    lower degree with fewer), integrates both over their common PSNR range
    and returns the mean rate difference: negative means test needs fewer
    bits for the same PSNR. None without an overlap.
    """
    pr, pt = np.asarray(psnr_ref, float), np.asarray(psnr_test, float)
    lr, lt = np.log(np.asarray(rate_ref, float)), np.log(np.asarray(rate_test, float))
    deg = min(3, len(pr) - 1, len(pt) - 1)
    if deg < 1:
        return None
    lo, hi = max(pr.min(), pt.min()), min(pr.max(), pt.max())
    if hi <= lo:
        return None
    cr, ct = np.polyfit(pr, lr, deg), np.polyfit(pt, lt, deg)
    ir, it = np.polyint(cr), np.polyint(ct)
    avg = ((np.polyval(it, hi) - np.polyval(it, lo)) - (np.polyval(ir, hi) - np.polyval(ir, lo)))
    return float((math.exp(avg / (hi - lo)) - 1.0) * 100.0)


def _fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def write_markdown(path: Path, doc: dict, codecs: list[str]) -> None:
    """Write the mean table and the nncodec per-image table."""
    results, budgets, images = doc["results"], doc["budgets"], doc["images"]
    done = sorted({r["image"] for r in results})
    summ = B.summarize(results, codecs, budgets)
    m = doc["machine"]
    lines = [f"# RD benchmark `{doc['tag']}`", ""]
    lines.append(f"{len(done)}/{len(images)} images from `{doc['images_dir']}`, "
                 f"budgets {', '.join(B.budget_label(b) for b in budgets)}; "
                 f"RGB PSNR and bpp are means over images.")
    if doc.get("preset"):
        lines.append(f"nncodec preset: `{doc['preset']}`.")
    lines.append(f"Machine: {m['platform']}, {m['cpu_count']} CPUs, Python {m['python']}, "
                 f"numpy {m['numpy']}, Pillow {m['pillow']}, numba {m.get('numba')}; {m['date']}.")
    lines.append("")
    head = "| budget | " + " | ".join(f"{c} PSNR | {c} bpp" for c in codecs) + " |"
    lines += [head, "|" + "---|" * (1 + 2 * len(codecs))]
    for b in budgets:
        cells = []
        for c in codecs:
            s = summ[(c, b)]
            p = _fmt(s["psnr"], ".2f")
            if s["missing"]:
                p += f" ({s['missing']} n/a)"
            cells += [p, _fmt(s["bpp"], ".4f")]
        lines.append(f"| {B.budget_label(b)} | " + " | ".join(cells) + " |")
    lines.append("")
    if "nncodec" in codecs and len(budgets) >= 2:
        curve = {c: [(summ[(c, b)]["bpp"], summ[(c, b)]["psnr"]) for b in budgets
                     if summ[(c, b)]["psnr"] is not None] for c in codecs}
        bd = []
        for c in codecs:
            if c == "nncodec" or len(curve[c]) < 2 or len(curve["nncodec"]) < 2:
                continue
            v = bd_rate(*zip(*curve[c]), *zip(*curve["nncodec"]))
            if v is not None:
                bd.append(f"{c} {v:+.1f}%")
        if bd:
            lines.append("BD-rate of nncodec (mean curves; negative = fewer bytes for the same "
                         "PSNR): " + ", ".join(bd) + ".")
            lines.append("")

    if "nncodec" in codecs:
        nn = [r for r in results if r["codec"] == "nncodec"]
        ok = sum(1 for r in nn if r.get("within_budget"))
        per_b = ", ".join(
            f"{B.budget_label(b)}: {sum(1 for r in nn if r['budget'] == b and r.get('within_budget'))}"
            f"/{sum(1 for r in nn if r['budget'] == b)}" for b in budgets)
        lines.append(f"nncodec files within budget: **{ok}/{len(nn)}** ({per_b}).")
        errs = [r for r in nn if r.get("error")]
        if errs:
            lines.append(f"nncodec errors: {len(errs)} (first: {errs[0]['image']} "
                         f"{B.budget_label(errs[0]['budget'])}: {errs[0]['error']}).")
        for b in budgets:
            rb = [r for r in nn if r["budget"] == b]
            enc = [r["encode_s"] for r in rb if r.get("encode_s") is not None]
            dec = [r["decode_s"] for r in rb if r.get("decode_s") is not None]
            if enc:
                lines.append(f"nncodec {B.budget_label(b)}: median encode {statistics.median(enc):.2f} s, "
                             f"median decode {1e3 * statistics.median(dec):.1f} ms"
                             if dec else f"nncodec {B.budget_label(b)}: median encode "
                             f"{statistics.median(enc):.2f} s")
        lines += ["", "## nncodec per image", ""]
        ref = next((c for c in ("avif", "webp", "jpeg2000", "jpeg") if c in codecs), None)
        cols = []
        for b in budgets:
            lab = B.budget_label(b)
            cols += [f"{lab} PSNR", f"{lab} bytes", f"{lab} enc s", f"{lab} dec ms"]
            if ref:
                cols.append(f"{lab} vs {ref} dB")
        lines += ["| image | " + " | ".join(cols) + " |", "|" + "---|" * (1 + len(cols))]
        index = {(r["image"], r["codec"], r["budget"]): r for r in results}
        for name in done:
            cells = []
            for b in budgets:
                r = index.get((name, "nncodec", b), {})
                ok_mark = "" if r.get("within_budget", True) else " (over!)"
                cells += [_fmt(r.get("psnr"), ".2f"), f"{r.get('bytes')}{ok_mark}",
                          _fmt(r.get("encode_s"), ".2f"),
                          _fmt(None if r.get("decode_s") is None else 1e3 * r["decode_s"], ".1f")]
                if ref:
                    rr = index.get((name, ref, b), {})
                    d = None
                    if r.get("psnr") is not None and rr.get("psnr") is not None:
                        d = r["psnr"] - rr["psnr"]
                    cells.append(_fmt(d, "+.2f"))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    path.write_text("\n".join(lines))


def write_plot(path: Path, doc: dict, codecs: list[str]) -> None:
    """Draw mean PSNR against mean bpp, one line per codec."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summ = B.summarize(doc["results"], codecs, doc["budgets"])
    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    for c in codecs:
        pts = [(summ[(c, b)]["bpp"], summ[(c, b)]["psnr"]) for b in doc["budgets"]
               if summ[(c, b)]["psnr"] is not None]
        if not pts:
            continue
        xs, ys = zip(*sorted(pts))
        style = dict(lw=2.5, marker="o") if c == "nncodec" else dict(lw=1.5, marker=".", ls="--")
        ax.plot(xs, ys, label=c, **style)
    n = len({r["image"] for r in doc["results"]})
    ax.set_xlabel("bits per pixel (mean)")
    ax.set_ylabel("RGB PSNR, dB (mean)")
    ax.set_title(f"RD {doc['tag']}: {n} images, budgets "
                 + ", ".join(B.budget_label(b) for b in doc["budgets"]))
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------- CLI


def merge(paths, tag: str, out_dir: Path) -> int:
    """Combine rd-*.json files (shards of one run, or runs at other budgets) into one report."""
    doc, docs = B.merge_docs(paths, tag)
    doc["budgets"] = sorted({b for d in docs for b in d["budgets"]})
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = (out_dir / f"rd-{tag}.{ext}" for ext in ("json", "md", "png"))
    B.write_json_atomic(json_path, doc)
    write_markdown(md_path, doc, doc["codecs"])
    write_plot(png_path, doc, doc["codecs"])
    print(md_path.read_text())
    return 0


def main(argv=None) -> int:
    """Run the RD benchmark and write rd-<tag>.json/.md/.png."""
    ap = argparse.ArgumentParser(description="RD benchmark: nncodec vs classical codecs at byte budgets")
    ap.add_argument("--images", default=str(REPO.parent / "shared" / "datasets" / "kodak"))
    ap.add_argument("--budgets", default="2k,8k", help="comma list: 2048, 2k, 2kb, 2KiB (1k = 1024 B)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images")
    ap.add_argument("--codecs", default=",".join(ALL_CODECS), help="comma list of " + ",".join(ALL_CODECS))
    ap.add_argument("--baselines-cache", default=None,
                    help="results JSON from baselines.py; entries found there are reused")
    ap.add_argument("--out-dir", default=str(HERE / "results"))
    ap.add_argument("--tag", default=None, help="output name rd-<tag>.*; default: date-time")
    ap.add_argument("--preset", default=None, help="passed to nncodec.encode(preset=...)")
    ap.add_argument("--seed", type=int, default=0, help="passed to nncodec.encode(seed=...)")
    ap.add_argument("--shard", default=None,
                    help="I/N: run only images I, I+N, I+2N, ... (0-based), e.g. one process "
                         "per core with NUMBA_NUM_THREADS=1; combine with --merge")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="combine the results of several runs (shards) into rd-<tag>.*")
    args = ap.parse_args(argv)
    try:  # the plot is written after every image: fail now, not after the first
        import matplotlib  # noqa: F401
    except ImportError:
        ap.error("the RD plot needs matplotlib: pip install -e '.[bench]'")
    if args.merge:
        return merge(args.merge, args.tag or time.strftime("%Y%m%d-%H%M%S"), Path(args.out_dir))

    budgets = B.parse_budgets(args.budgets)
    codecs = [c.strip().lower() for c in args.codecs.split(",") if c.strip()]
    for c in codecs:
        if c not in ALL_CODECS:
            ap.error(f"unknown codec {c!r}; expected some of {','.join(ALL_CODECS)}")
    nncodec = None
    if "nncodec" in codecs:
        try:
            nncodec = import_nncodec()
        except ImportError as exc:
            print(f"error: nncodec requested but cannot be imported: {exc}", file=sys.stderr)
            return 2
    files = B.shard(B.list_images(args.images, args.limit), args.shard, ap)
    cache = B.load_cache(args.baselines_cache)
    tag = args.tag or time.strftime("%Y%m%d-%H%M%S")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = (out_dir / f"rd-{tag}.{ext}" for ext in ("json", "md", "png"))

    machine = B.machine_info()
    if nncodec is not None:
        machine["nncodec"] = getattr(nncodec, "__version__", None)
    doc = {"tag": tag, "machine": machine, "images_dir": str(args.images),
           "images": [p.name for p in files], "budgets": budgets, "codecs": codecs,
           "preset": args.preset, "seed": args.seed, "baselines_cache": args.baselines_cache,
           "baseline_settings": B.baseline_settings(), "results": []}
    t_start = time.perf_counter()
    for i, path in enumerate(files):
        img = B.load_image(path)
        for codec in codecs:
            for b in budgets:
                if codec == "nncodec":
                    rec = run_nncodec(nncodec, img, b, args.preset, args.seed)
                else:
                    rec = run_baseline(img, codec, b, cache, path.name)
                rec = {"image": path.name, **rec}
                doc["results"].append(rec)
                enc = rec.get("encode_s")
                print(f"[{i + 1}/{len(files)}] {path.name} {codec:8s} {B.budget_label(b):>7s} "
                      f"psnr={_fmt(rec.get('psnr'), '.2f')} bytes={rec.get('bytes')} "
                      f"bpp={_fmt(rec.get('bpp'), '.4f')} enc={_fmt(enc, '.2f')}s"
                      f"{'' if rec['within_budget'] else '  OVER BUDGET / NO FIT'}"
                      f"{' (cached)' if rec.get('cached') else ''}", flush=True)
        doc["elapsed_s"] = round(time.perf_counter() - t_start, 2)
        doc["complete"] = i + 1 == len(files)
        B.write_json_atomic(json_path, doc)
        write_markdown(md_path, doc, codecs)
        write_plot(png_path, doc, codecs)
    print(md_path.read_text())
    print(f"wrote {json_path}, {md_path}, {png_path} ({time.perf_counter() - t_start:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

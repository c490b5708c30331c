"""What keeping the better of several whole encodes buys: the ``slow`` preset.

``slow`` runs ``default``'s encode from the seed and the next one and keeps
the file that decodes with the lower error. Its result on an image is thus
the better of two ``default`` encodes with those seeds, which ``rd.py --seed``
makes: this script reads such reports (the first one is the baseline; every
report must hold the same images and budgets) and prints, per budget, the
mean PSNR of the first run and of the best per image, the gain, how many
images a later run won, and the best against AVIF from the reports' AVIF
records. ``--out`` writes the best records as an rd-*.json report (nncodec
records replaced, with the index of the run kept in ``run`` and the sum of the
runs' encode times in ``encode_s``; the other codecs' records at those
budgets kept), which ``rd.py --merge`` renders.

    python benchmarks/best_of_runs.py benchmarks/results/rd-v0.11-kodak-all.json \\
        benchmarks/results/rd-seed1-2k8k-kodak.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import baselines as B  # noqa: E402


def nncodec_records(doc: dict) -> dict:
    return {(r["image"], int(r["budget"])): r for r in doc["results"]
            if r["codec"] == "nncodec" and r.get("psnr") is not None and r["within_budget"]}


def best_of(runs: list[dict]) -> tuple[dict, dict]:
    """``(best, won)``: per (image, budget) in every run's records (see
    :func:`nncodec_records`), the highest-PSNR one, and the run it came from."""
    keys = set(runs[0])
    for r in runs[1:]:
        keys &= set(r)
    best, won = {}, {}
    for key in sorted(keys):
        k = max(range(len(runs)), key=lambda i: (runs[i][key]["psnr"], -i))
        best[key], won[key] = runs[k][key], k
    return best, won


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+", help="rd-*.json of runs with different seeds")
    ap.add_argument("--out", default=None, help="write the best records as an rd-*.json report")
    args = ap.parse_args(argv)
    if len(args.reports) < 2:
        ap.error("give at least two reports")
    docs = [json.loads(Path(p).read_text()) for p in args.reports]
    runs = [nncodec_records(d) for d in docs]
    best, won = best_of(runs)
    if not best:
        sys.exit("the reports have no image and budget in common")
    first = runs[0]
    avif = {(r["image"], int(r["budget"])): r["psnr"] for d in docs for r in d["results"]
            if r["codec"] == "avif" and r.get("psnr") is not None}
    print("| budget | images | first run | best | gain | later run won | best - AVIF |")
    print("|---|---|---|---|---|---|---|")
    for b in sorted({k[1] for k in best}):
        keys = [k for k in best if k[1] == b]
        p0 = statistics.fmean(first[k]["psnr"] for k in keys)
        pb = statistics.fmean(best[k]["psnr"] for k in keys)
        wins = sum(won[k] > 0 for k in keys)
        vs = "n/a"
        if all(k in avif for k in keys):
            vs = f"{pb - statistics.fmean(avif[k] for k in keys):+.2f}"
        print(f"| {B.budget_label(b)} | {len(keys)} | {p0:.2f} | {pb:.2f} | {pb - p0:+.3f} | "
              f"{wins} | {vs} |")
    if args.out:
        doc = dict(docs[0])
        doc["merged_from"] = list(args.reports)
        budgets = {k[1] for k in best}
        doc["results"] = [r for r in docs[0]["results"]
                          if r["codec"] != "nncodec" and int(r["budget"]) in budgets]
        # What `slow` would spend: every run's encode.
        doc["results"] += [dict(best[k], run=won[k], encode_s=sum(r[k]["encode_s"] for r in runs))
                           for k in sorted(best)]
        doc["budgets"] = sorted(budgets)
        doc["tag"] = Path(args.out).stem.removeprefix("rd-")
        B.write_json_atomic(args.out, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())

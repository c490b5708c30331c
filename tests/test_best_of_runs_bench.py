"""benchmarks/best_of_runs.py: the better of several seeds' records per image and budget."""

from __future__ import annotations

import json


def _doc(psnrs, budget=2048, avif=None):
    res = [{"image": f"im{i}.png", "codec": "nncodec", "budget": budget, "bytes": budget - 1,
            "psnr": p, "within_budget": True, "encode_s": 10.0 + i} for i, p in enumerate(psnrs)]
    if avif is not None:
        res += [{"image": f"im{i}.png", "codec": "avif", "budget": budget, "psnr": a,
                 "within_budget": True} for i, a in enumerate(avif)]
    return {"tag": "t", "images": [f"im{i}.png" for i in range(len(psnrs))],
            "budgets": [budget], "codecs": ["nncodec"], "results": res}


def test_best_of_keeps_the_highest_psnr_and_the_first_on_ties(load_benchmark):
    bo = load_benchmark("best_of_runs")
    runs = [bo.nncodec_records(_doc(p)) for p in ([20.0, 30.0, 25.0], [21.0, 29.0, 25.0])]
    best, won = bo.best_of(runs)
    assert [best[(f"im{i}.png", 2048)]["psnr"] for i in range(3)] == [21.0, 30.0, 25.0]
    assert [won[(f"im{i}.png", 2048)] for i in range(3)] == [1, 0, 0]


def test_main_reports_the_gain_and_writes_a_report(load_benchmark, tmp_path, capsys):
    bo = load_benchmark("best_of_runs")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_doc([20.0, 30.0], avif=[20.5, 29.0])))
    b.write_text(json.dumps(_doc([21.0, 29.0])))
    out = tmp_path / "rd-best.json"
    assert bo.main([str(a), str(b), "--out", str(out)]) == 0
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith("| 2KiB")][0]
    # first run 25.0, best 25.5, AVIF 24.75
    assert line.split(" | ")[1:] == ["2", "25.00", "25.50", "+0.500", "1", "+0.75 |"]
    doc = json.loads(out.read_text())
    nn = sorted((r["image"], r["psnr"], r["run"], r["encode_s"]) for r in doc["results"]
                if r["codec"] == "nncodec")
    assert nn == [("im0.png", 21.0, 1, 20.0), ("im1.png", 30.0, 0, 22.0)]
    assert sum(r["codec"] == "avif" for r in doc["results"]) == 2

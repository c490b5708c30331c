"""benchmarks/rd.py: the Bjontegaard delta rate of the report."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def rd(load_benchmark):
    return load_benchmark("rd")


RATES = np.array([0.04, 0.08, 0.16, 0.32, 0.64])
PSNRS = np.array([23.0, 25.1, 27.3, 29.6, 32.0])


def test_bd_rate_of_a_curve_against_itself_is_zero(rd):
    assert rd.bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_bd_rate_of_a_scaled_curve_is_the_scale(rd, factor):
    """Same PSNR at ``factor`` times the rate: BD-rate is ``factor - 1``."""
    assert rd.bd_rate(RATES, PSNRS, factor * RATES, PSNRS) == pytest.approx(
        100 * (factor - 1), abs=1e-6)


def test_bd_rate_of_a_better_curve_is_negative_and_antisymmetric(rd):
    better = PSNRS + 0.5
    fwd = rd.bd_rate(RATES, PSNRS, RATES, better)
    back = rd.bd_rate(RATES, better, RATES, PSNRS)
    assert fwd < -5.0
    # Savings of x% one way are 1 / (1 - x) - 1 the other way.
    assert (1 + fwd / 100) * (1 + back / 100) == pytest.approx(1.0, rel=0.02)


def test_bd_rate_without_overlap_is_none(rd):
    assert rd.bd_rate(RATES, PSNRS, RATES, PSNRS + 20.0) is None
    assert rd.bd_rate(RATES[:1], PSNRS[:1], RATES[:1], PSNRS[:1]) is None


def test_merge_keeps_the_later_record_of_an_image_codec_and_budget(rd, tmp_path):
    """A newer run at one budget merged over an older report replaces that
    budget's records and keeps the others, and the other codecs."""
    import json

    def rec(image, codec, budget, psnr):
        return {"image": image, "codec": codec, "budget": budget, "psnr": psnr}

    old = {"tag": "old", "images": ["a.png", "b.png"], "images_dir": "/all", "budgets": [2048, 16384],
           "codecs": ["nncodec", "avif"], "complete": True,
           "results": [rec("a.png", "nncodec", 2048, 24.0), rec("a.png", "nncodec", 16384, 29.0),
                       rec("b.png", "nncodec", 16384, 30.0), rec("a.png", "avif", 16384, 31.0)]}
    # The newer run has nncodec alone: the report keeps both codecs.
    new = {"tag": "new", "images": ["a.png"], "images_dir": "/some", "budgets": [16384],
           "codecs": ["nncodec"],
           "complete": True, "results": [rec("a.png", "nncodec", 16384, 29.8)]}
    paths = []
    for name, d in (("old", old), ("new", new)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(d))
    doc, _ = rd.B.merge_docs(paths, "merged")
    got = {(r["image"], r["codec"], r["budget"]): r["psnr"] for r in doc["results"]}
    assert got == {("a.png", "nncodec", 2048): 24.0, ("a.png", "nncodec", 16384): 29.8,
                   ("b.png", "nncodec", 16384): 30.0, ("a.png", "avif", 16384): 31.0}
    assert doc["tag"] == "merged" and doc["images"] == ["a.png", "b.png"]
    assert doc["codecs"] == ["nncodec", "avif"]
    assert doc["merged_from"] == [str(p) for p in paths]
    # The report names every run's folder, not only the last one's.
    assert doc["images_dir"] == "/all, /some"
    assert rd.B.merge_docs(paths[:1] * 2, "same")[0]["images_dir"] == "/all"


def test_without_matplotlib_the_run_stops_before_any_encode(rd, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import raises ImportError
    with pytest.raises(SystemExit):
        rd.main(["--codecs", "jpeg", "--limit", "1", "--out-dir", str(tmp_path), "--tag", "x"])
    assert "matplotlib" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())

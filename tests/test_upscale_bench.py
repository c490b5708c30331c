"""benchmarks/upscale.py on two tiny synthetic images: files written, all methods, finite PSNRs."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from PIL import Image

import nncodec
import nncodec.encoder


@pytest.fixture(scope="module")
def upscale(load_benchmark):
    return load_benchmark("upscale")


@pytest.fixture
def few_steps(monkeypatch):
    """The fast preset with 150 training steps, to keep the test short."""
    fast = nncodec.encoder.PRESETS["fast"]
    monkeypatch.setitem(nncodec.encoder.PRESETS, "fast", dataclasses.replace(fast, steps=150))


def test_box_downscale_is_rounded_block_mean(upscale):
    img = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3) * 2
    small = upscale.box_downscale(img, 2)
    assert small.shape == (2, 3, 3) and small.dtype == np.uint8
    want = np.floor(img.astype(float).reshape(2, 2, 3, 2, 3).mean(axis=(1, 3)) + 0.5)
    np.testing.assert_array_equal(small, want)
    with pytest.raises(ValueError):
        upscale.box_downscale(img, 4)
    assert upscale.budget_for(384, 256, 1.0) == 12288
    assert upscale.budget_for(33, 21, 1.0) == 86  # floor(693 / 8)


def test_benchmark_writes_reports(upscale, make_image, few_steps, tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(make_image(64, 48, seed=4)).save(imgs / "a.png")
    Image.fromarray(make_image(48, 64, seed=5, noise=0.0)).save(imgs / "b.png")
    files = sorted(imgs.iterdir())
    out = tmp_path / "out"
    logged = []
    doc = upscale.run_benchmark(files, scales=[2], bpp=2.0, preset="fast", out_dir=out,
                                tag="t", crop_image="a", log=logged.append)

    saved = json.loads((out / "upscale-t.json").read_text())
    assert saved["results"] == json.loads(json.dumps(doc["results"]))
    assert "machine" in saved and saved["complete"] and saved["scales"] == [2]
    assert len(saved["results"]) == 2 and len(logged) == 2
    for r in saved["results"]:
        assert r["scale"] == 2 and (r["small_width"], r["small_height"]) in ((32, 24), (24, 32))
        assert r["budget"] == 192 and 0 < r["bytes"] <= 192 and r["within_budget"]
        assert set(r["psnr"]) == set(upscale.METHODS)
        assert all(math.isfinite(v) and 5 < v < 100 for v in r["psnr"].values()), r["psnr"]
        assert math.isfinite(r["psnr_1x"]) and r["encode_s"] > 0 and "error" not in r

    md = (out / "upscale-t.md").read_text()
    for label in upscale.METHODS.values():
        assert label in md
    assert "nncodec minus Lanczos from decoded 1x" in md and "/2 |" in md

    pic = out / "upscale-t-crop.png"
    assert saved["crop"]["image"] == "a" and pic.stat().st_size < 300_000
    with Image.open(pic) as im:
        assert im.width > 3 * 48 and im.height > 48
    data = (out / "upscale-t-crop.nni").read_bytes()
    assert nncodec.decode(data).shape == (24, 32, 3)

    # A second run resumes from the JSON: nothing is encoded again.
    again = []
    doc2 = upscale.run_benchmark(files, scales=[2], bpp=2.0, preset="fast", out_dir=out,
                                 tag="t", crop_image="a", log=again.append)
    assert again == [] and doc2["results"] == saved["results"]

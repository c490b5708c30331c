"""benchmarks/steps_time.py: alternating encodes at two step counts."""

from __future__ import annotations

import pytest
from PIL import Image

from nncodec import encoder


def spy_encodes(monkeypatch, record) -> list:
    """Wrap ``encoder.encode_stats``: the returned list gets ``record(kw, stats)``
    of every encode, in order."""
    seen = []
    encode_stats = encoder.encode_stats

    def spy(image, **kw):
        data, st = encode_stats(image, **kw)
        seen.append(record(kw, st))
        return data, st

    monkeypatch.setattr(encoder, "encode_stats", spy)
    return seen


def test_alternates_the_two_step_counts(load_benchmark, make_image, tmp_path, monkeypatch,
                                        capsys):
    bench = load_benchmark("steps_time")
    path = tmp_path / "tiny.png"
    Image.fromarray(make_image(48, 32, 3)).save(path)
    seen = spy_encodes(monkeypatch, lambda kw, st: kw["steps"])
    assert bench.main([str(path), "--preset", "fast", "--budget", "400", "--steps", "20,30",
                       "--runs", "2"]) == 0
    assert seen == [2, 20, 30, 20, 30]  # the warm-up, then alternating
    out = capsys.readouterr().out
    assert out.count("tiny 20 steps") == 2 and out.count("tiny 30 steps") == 2
    assert "median 20 steps" in out and "30 steps" in out


def test_alternates_two_stencils(load_benchmark, make_image, tmp_path, monkeypatch, capsys):
    bench = load_benchmark("steps_time")
    path = tmp_path / "tiny.png"
    Image.fromarray(make_image(48, 32, 3)).save(path)
    monkeypatch.setattr(encoder, "DEFAULT_STENCIL", encoder.DEFAULT_STENCIL)
    monkeypatch.setattr(encoder, "FULL_GRID_STENCIL", encoder.FULL_GRID_STENCIL)
    monkeypatch.setattr(encoder, "PLAIN_STENCIL", encoder.PLAIN_STENCIL)
    seen = spy_encodes(monkeypatch, lambda kw, st: (kw.get("steps"), st.spec.stencil))
    assert bench.main([str(path), "--preset", "fast", "--budget", "400", "--stencils", "0,2",
                       "--runs", "1"]) == 0
    assert seen[1:] == [(None, 0), (None, 2)]  # after the warm-up, the preset's steps
    out = capsys.readouterr().out
    assert "tiny stencil 0, run 1" in out and "median stencil 0" in out and "stencil 2" in out


def test_rejects_a_bad_steps_list(load_benchmark):
    bench = load_benchmark("steps_time")
    with pytest.raises(SystemExit):
        bench.main(["x.png", "--steps", "2400"])
    with pytest.raises(SystemExit):
        bench.main(["x.png", "--stencils", "0,2", "--steps", "1,2"])


def test_alternates_two_full_grid_thresholds(load_benchmark, make_image, tmp_path, monkeypatch,
                                             capsys):
    bench = load_benchmark("steps_time")
    path = tmp_path / "tiny.png"
    Image.fromarray(make_image(96, 64, 3)).save(path)
    monkeypatch.setattr(encoder, "FULL_GRID_BPP", encoder.FULL_GRID_BPP)
    monkeypatch.setattr(encoder, "BUSY_BPP_SCALE", encoder.BUSY_BPP_SCALE)
    seen = spy_encodes(monkeypatch, lambda kw, st: st.spec.first_level)
    # 384 bytes for 96 x 64 pixels: 0.5 bpp, a 1:1 finest grid from 0.25 bpp
    # on, 1:2 with the threshold at 1 bpp.
    assert bench.main([str(path), "--preset", "fast", "--budget", "384", "--full-grid", "0.25,1",
                       "--runs", "1"]) == 0
    assert seen[1:] == [0, 1]
    out = capsys.readouterr().out
    assert "tiny 1:1 from 0.25 bpp, run 1" in out and "1:1 from 1.0 bpp" in out

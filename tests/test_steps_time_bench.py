"""benchmarks/steps_time.py: alternating encodes at two step counts."""

from __future__ import annotations

import pytest
from PIL import Image

from nncodec import encoder


def test_alternates_the_two_step_counts(load_benchmark, make_image, tmp_path, monkeypatch,
                                        capsys):
    bench = load_benchmark("steps_time")
    path = tmp_path / "tiny.png"
    Image.fromarray(make_image(48, 32, 3)).save(path)
    seen = []
    encode_stats = encoder.encode_stats

    def spy(image, **kw):
        seen.append(kw["steps"])
        return encode_stats(image, **kw)

    monkeypatch.setattr(encoder, "encode_stats", spy)
    assert bench.main([str(path), "--preset", "fast", "--budget", "400", "--steps", "20,30",
                       "--runs", "2"]) == 0
    assert seen == [2, 20, 30, 20, 30]  # the warm-up, then alternating
    out = capsys.readouterr().out
    assert out.count("tiny 20 steps") == 2 and out.count("tiny 30 steps") == 2
    assert "median 20 steps" in out and "30 steps" in out


def test_rejects_a_bad_steps_list(load_benchmark):
    bench = load_benchmark("steps_time")
    with pytest.raises(SystemExit):
        bench.main(["x.png", "--steps", "2400"])

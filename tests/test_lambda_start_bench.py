"""benchmarks/lambda_start.py: the second encode starts where the first ended."""

from __future__ import annotations

from PIL import Image

from nncodec import encoder


def test_second_encode_starts_from_the_first_ones_final_lambda(load_benchmark, make_image,
                                                               tmp_path, monkeypatch, capsys):
    ls = load_benchmark("lambda_start")
    path = tmp_path / "tiny.png"
    Image.fromarray(make_image(48, 32, 3)).save(path)
    rule = encoder._initial_lambda
    starts, finals = [], []
    encode_stats = encoder.encode_stats

    def spy(image, **kw):
        starts.append(encoder._initial_lambda(0.5))
        data, st = encode_stats(image, steps=60, **kw)
        finals.append(st.lam)
        return data, st

    monkeypatch.setattr(encoder, "encode_stats", spy)
    assert ls.main([str(path), "--preset", "fast", "--budget", "400"]) == 0
    assert len(starts) == 2
    assert starts[0] == rule(0.5)
    assert starts[1] == finals[0] and finals[0] != rule(0.5)
    assert encoder._initial_lambda is rule  # restored
    out = capsys.readouterr().out
    assert "tiny: rule lambda" in out and f"final {finals[0]:.5f}" in out
    assert "mean" in out and "over 1 images" in out

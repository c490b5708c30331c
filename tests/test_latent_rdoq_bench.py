"""benchmarks/latent_rdoq_estimate.py: its model of the field and its greedy pass."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from nncodec import decoder, encoder, field


@pytest.fixture(scope="module")
def encoded_rgb(rgb_image):
    """``rgb_image`` at 600 bytes (fast preset) with every grid at the point:
    the estimate models files without stencils (0.11's), and from 0.16 the
    encoder samples the 1:2 grid at five points at this rate."""
    saved = encoder.FULL_GRID_STENCIL
    encoder.FULL_GRID_STENCIL = encoder.PLAIN_STENCIL
    try:
        data, stats = encoder.encode_stats(rgb_image, budget=600, preset="fast", seed=0)
    finally:
        encoder.FULL_GRID_STENCIL = saved
    assert stats.spec.first_level == 0 and stats.spec.stencil == 0
    return SimpleNamespace(image=rgb_image, data=data, stats=stats, budget=600)


def _model(rq, data):
    c, wq, latq = decoder.parse_ints(data)
    spec = c.spec
    theta = decoder.dequantize(spec, wq, c.weight_steps, c.bias_steps).astype(np.float64)
    return spec, theta, latq


def _errors(rq, spec, theta, X, target):
    err = np.zeros(X.shape[:2])
    rq._errors(X, theta, field.layer_table(spec), target, err)
    return err


def test_features_reproduce_the_decoded_image(load_benchmark, encoded_rgb):
    rq = load_benchmark("latent_rdoq_estimate")
    spec, theta, latq = _model(rq, encoded_rgb.data)
    assert not spec.n_fourier and not spec.stencil
    X, _, _ = rq.features(spec, latq)
    decoded = decoder.decode(encoded_rgb.data).astype(np.float64) / 255.0
    err = _errors(rq, spec, theta, X, decoded)
    # Only the decoder's rounding to 8 bits separates the float field from it.
    assert err.max() <= 3 * (0.5 / 255.0) ** 2 + 1e-12


def test_a_pass_lowers_the_error_and_keeps_features_in_step(load_benchmark, encoded_rgb):
    rq = load_benchmark("latent_rdoq_estimate")
    spec, theta, latq = _model(rq, encoded_rgb.data)
    target = encoded_rgb.image.astype(np.float64) / 255.0
    X, rows, cols = rq.features(spec, latq)
    err = _errors(rq, spec, theta, X, target)
    before = err.sum()
    offsets, dims = field.level_table(spec)
    table = np.zeros((len(latq), 3))
    q = latq.copy()
    active = np.ones(len(dims), bool)
    # lambda 0: only the error counts, so every step taken lowers it.
    n = rq._sweep(X, err, theta, field.layer_table(spec), target, q, offsets, dims, *rows, *cols,
                  table, 0.0, active)
    assert n > 0 and np.count_nonzero(q != latq) == n
    assert err.sum() < before
    fresh, _, _ = rq.features(spec, q)
    np.testing.assert_allclose(X, fresh, atol=1e-9)
    np.testing.assert_allclose(err, _errors(rq, spec, theta, fresh, target), atol=1e-12)


def test_main_recodes_and_reports(load_benchmark, encoded_rgb, tmp_path, capsys):
    rq = load_benchmark("latent_rdoq_estimate")
    nni, png = tmp_path / "a.nni", tmp_path / "a.png"
    nni.write_bytes(encoded_rgb.data)
    Image.fromarray(encoded_rgb.image).save(png)
    assert rq.main([str(nni), str(png), "--lambda", "1,4"]) == 0
    out = capsys.readouterr().out
    assert f"{len(encoded_rgb.data)} B" in out
    assert "lambda x1.0 pass 1:" in out and "lambda x4.0 pass 1:" in out

"""benchmarks/latent_context_estimate.py: its model of the latent coder and its report."""

from __future__ import annotations

import numpy as np

from nncodec import decoder, entropy


def _coded_latent_bytes(data: bytes) -> int:
    """Bytes the range coder writes for the file's latents alone, from fresh contexts.

    (Re-coding the whole payload with and without the latents would not do:
    the coder strips trailing zero bytes, which all-zero latents leave.)
    """
    c, _, lat = decoder.parse_ints(data)
    dims, offsets = entropy._layout(c.spec.level_dims())
    out = np.zeros(64 + 4 * lat.size, np.uint8)
    st = np.zeros(5, np.int64)
    entropy._enc_init(st)
    probs = entropy.new_probs(dims.shape[0] * entropy.LCTX, c.version)
    entropy._code_latents_enc(st, out, probs, lat.astype(np.int64), offsets, dims, 0)
    entropy._enc_flush(st, out)
    return int(st[4])


def test_current_scheme_reproduces_the_coder(load_benchmark, encoded_rgb):
    ce = load_benchmark("latent_context_estimate")
    grids = ce.read_grids(encoded_rgb.data)
    assert sum(np.count_nonzero(g) for g in grids) > 50
    coded = _coded_latent_bytes(encoded_rgb.data)
    est = ce.latent_bits(grids, ce.SCHEMES["current"]).sum() / 8
    # The ideal code length and the coder's bytes (a flush of up to 5 bytes).
    assert 0 <= coded - est <= 6, (coded, est)
    # A variant really is another code of the same latents.
    assert ce.latent_bits(grids, ce.SCHEMES["all-of-them"]).sum() != est * 8


def test_the_format_rates_are_the_default(load_benchmark, encoded_rgb):
    ce = load_benchmark("latent_context_estimate")
    grids = ce.read_grids(encoded_rgb.data)
    cur = ce.SCHEMES["current"]
    same = ce.latent_bits(grids, cur, (entropy.RATE_FAST, entropy.RATE_SLOW))
    np.testing.assert_array_equal(same, ce.latent_bits(grids, cur))
    assert ce.latent_bits(grids, cur, (5, 9)).sum() != same.sum()


def test_bucket_edges_are_inclusive(load_benchmark):
    ce = load_benchmark("latent_context_estimate")
    np.testing.assert_array_equal(ce.bucket(np.array([0, 1, 2, 3, 5, 6]), (0, 2, 5)),
                                  [0, 1, 1, 2, 2, 3])


def test_main_prints_a_row_per_scheme(load_benchmark, encoded_rgb, tmp_path, capsys):
    ce = load_benchmark("latent_context_estimate")
    path = tmp_path / "a.nni"
    path.write_bytes(encoded_rgb.data)
    assert ce.main([str(path)]) == 0
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.split() and ln.split()[0] in ce.SCHEMES]
    assert [r.split()[0] for r in rows] == list(ce.SCHEMES)
    assert rows[0].split()[1:] == ["+0.00", "+0.00"]
    assert ce.main(["--rates", str(path)]) == 0
    assert "rates 3,7" in capsys.readouterr().out


def test_mix_estimate_base_is_the_coders_zero_flags(load_benchmark, encoded_rgb):
    ce = load_benchmark("latent_context_estimate")
    grids = ce.read_grids(encoded_rgb.data)
    bits = ce.mix_estimate(grids)
    zero_flags = ce.latent_bits(grids, ce.SCHEMES["current"])[0]
    assert bits[0] == zero_flags
    # Each mix is another code of the same flags, of the same order of size.
    assert np.all(bits[1:] != bits[0])
    assert np.all(np.abs(bits[1:] / bits[0] - 1) < 0.2), bits


def test_mixer_learns_a_model_that_predicts_the_flags(load_benchmark):
    ce = load_benchmark("latent_context_estimate")
    rng = np.random.default_rng(0)
    n = 20000
    # Model 0 knows nothing (one context); model 1's context is the flag's
    # own source: a mixer that adapts must code the flags in far fewer bits
    # than model 0 alone, and one that does not adapt (lr 0) may not.
    src = rng.integers(0, 2, n)
    nz = (rng.random(n) < np.where(src == 1, 0.9, 0.02)).astype(np.int64)
    ctxs = np.stack([np.zeros(n, np.int64), src], 1)
    fresh = lambda: np.stack([entropy.new_probs(2)] * 2)  # noqa: E731
    base, mixed = ce.mix_zero_bits(nz, ctxs, np.zeros(n, np.int64), fresh(), 0.002)
    _, frozen = ce.mix_zero_bits(nz, ctxs, np.zeros(n, np.int64), fresh(), 0.0)
    assert mixed < 0.6 * base, (mixed, base)
    assert frozen > 0.9 * base, (frozen, base)


def test_main_mix_prints_a_row_per_model_set(load_benchmark, encoded_rgb, tmp_path, capsys):
    ce = load_benchmark("latent_context_estimate")
    path = tmp_path / "a.nni"
    path.write_bytes(encoded_rgb.data)
    assert ce.main(["--mix", str(path)]) == 0
    out = capsys.readouterr().out
    assert sum(ln.startswith(name) for ln in out.splitlines() for name in ce.MIX_MODELS) == 3

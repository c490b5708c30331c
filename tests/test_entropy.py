"""entropy.py: range coder round trips, escapes, robustness to corrupted input."""

from __future__ import annotations

import numpy as np
import pytest

from nncodec import entropy
from nncodec.entropy import EG_MAX_PREFIX, LAT_UNARY, WEIGHT_UNARY, decode_payload, encode_payload


def laplace_ints(rng, n, scale):
    return np.round(rng.laplace(0.0, scale, n)).astype(np.int64)


def roundtrip(wq, groups, lat, dims):
    data = encode_payload(wq, groups, lat, dims)
    assert isinstance(data, bytes)
    wq2, lat2, err, consumed = decode_payload(data, groups, dims)
    assert err == 0
    np.testing.assert_array_equal(wq2, wq)
    np.testing.assert_array_equal(lat2, lat)
    assert wq2.dtype == np.int64 and lat2.dtype == np.int64
    assert consumed >= len(data)
    return data


LAYOUTS = {
    "multi": ([24, 4, 16, 4, 12, 3], [(20, 27), (10, 14), (5, 7), (3, 4)]),
    "single_level": ([6, 2, 6, 3], [(9, 13)]),
    "no_grids": ([24, 6, 36, 6, 18, 3], []),
    "no_weights": ([], [(12, 10), (6, 5)]),
    "empty_groups": ([0, 3], [(4, 4), (2, 2)]),
    "one_by_one": ([3], [(1, 1)]),
    # Main grids, then two extra channels of the two coarsest levels: grids 3
    # and 5 follow a grid that is not their child.
    "extra_grids": ([12, 4, 6, 3], [(20, 27), (10, 14), (5, 7), (10, 14), (5, 7), (10, 14),
                                    (5, 7)]),
    "tiny_extra_grids": ([3], [(1, 1), (1, 1), (1, 1)]),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("scale", [0.3, 1.5, 6.0])
def test_roundtrip_laplace(layout, scale):
    groups, dims = LAYOUTS[layout]
    rng = np.random.default_rng(int(scale * 10) + len(layout))
    n_lat = sum(h * w for h, w in dims)
    wq = laplace_ints(rng, sum(groups), scale * 3)
    lat = laplace_ints(rng, n_lat, scale)
    roundtrip(wq, groups, lat, dims)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_roundtrip_all_zeros(layout):
    groups, dims = LAYOUTS[layout]
    n_lat = sum(h * w for h, w in dims)
    roundtrip(np.zeros(sum(groups), np.int64), groups, np.zeros(n_lat, np.int64), dims)


def test_roundtrip_everything_empty():
    data = encode_payload(np.zeros(0, np.int64), [], np.zeros(0, np.int64), [])
    wq, lat, err, _ = decode_payload(data, [], [])
    assert err == 0 and wq.size == 0 and lat.size == 0


def test_roundtrip_escape_boundaries():
    """Values around the switch from unary bins to the exp-Golomb escape."""
    edges = set()
    for u in (WEIGHT_UNARY, LAT_UNARY):
        for d in range(-2, 4):
            edges |= {u + d, -(u + d)}
    edges |= {0, 1, -1, 100, -100, 1000, 4097, -65536, 1 << 20, -(1 << 20), 1 << 24, -(1 << 24)}
    vals = np.array(sorted(edges), dtype=np.int64)
    n = vals.size
    rng = np.random.default_rng(0)
    wq = rng.permutation(np.tile(vals, 2))
    dims = [(3, n), (2, (n + 1) // 2)]  # a valid pyramid: each parent covers 2x2 cells
    lat = rng.permutation(np.tile(vals, 5))[: 3 * n + 2 * ((n + 1) // 2)]
    roundtrip(wq, [n, n], lat, dims)


def test_roundtrip_huge_values_in_context():
    """Large magnitudes next to small ones (escapes inside neighbourhood contexts)."""
    rng = np.random.default_rng(1)
    dims = [(20, 40), (10, 20), (5, 10), (3, 5)]
    lat = laplace_ints(rng, sum(h * w for h, w in dims), 1.0)
    spikes = rng.choice(lat.size, 60, replace=False)
    lat[spikes] = rng.integers(-(1 << 24), 1 << 24, 60)
    wq = laplace_ints(rng, 50, 2.0)
    wq[::7] = rng.integers(-(1 << 24), 1 << 24, wq[::7].size)
    roundtrip(wq, [40, 10], lat, dims)


def test_value_beyond_escape_limit_reports_error():
    """The decoder refuses escape prefixes longer than EG_MAX_PREFIX (a corrupted file)."""
    big = 1 << (EG_MAX_PREFIX + 6)
    for wq, lat in ((np.array([big], np.int64), np.zeros(4, np.int64)),
                    (np.zeros(1, np.int64), np.array([0, -big, 0, 0], np.int64))):
        data = encode_payload(wq, [1], lat, [(2, 2)])
        _, _, err, _ = decode_payload(data, [1], [(2, 2)])
        assert err == entropy.ERR_OVERFLOW


def test_encoding_is_deterministic_and_prefix_free_of_padding():
    rng = np.random.default_rng(2)
    wq = laplace_ints(rng, 40, 3.0)
    lat = laplace_ints(rng, 12 * 9 + 6 * 5, 0.8)
    dims = [(12, 9), (6, 5)]
    a = encode_payload(wq, [40], lat, dims)
    b = encode_payload(wq.copy(), [40], lat.copy(), dims)
    assert a == b
    assert not a.endswith(b"\x00")  # trailing zeros are stripped (they read back as 0)
    # Changing one value changes the stream.
    lat2 = lat.copy()
    lat2[17] += 1
    assert encode_payload(wq, [40], lat2, dims) != a


def test_all_zero_latents_compress():
    lat = np.zeros(10000, np.int64)
    data = roundtrip(np.zeros(0, np.int64), [], lat, [(100, 100)])
    assert len(data) < 20


def test_size_close_to_empirical_entropy():
    """i.i.d. Laplace latents code to within ~10% of their empirical entropy."""
    rng = np.random.default_rng(3)
    lat = laplace_ints(rng, 64 * 64, 2.0)
    data = roundtrip(np.zeros(0, np.int64), [], lat, [(64, 64)])
    _, counts = np.unique(lat, return_counts=True)
    p = counts / counts.sum()
    entropy_bytes = float(-(counts * np.log2(p)).sum()) / 8
    assert len(data) < 1.1 * entropy_bytes + 16
    assert len(data) > 0.9 * entropy_bytes


def test_contexts_exploit_structure():
    """Sparse clustered latents code smaller than the same values shuffled."""
    rng = np.random.default_rng(4)
    grid = np.zeros((64, 64), np.int64)
    grid[10:30, 20:50] = laplace_ints(rng, 20 * 30, 3.0).reshape(20, 30)
    clustered = encode_payload(np.zeros(0, np.int64), [], grid.ravel(), [(64, 64)])
    shuffled = encode_payload(np.zeros(0, np.int64), [], rng.permutation(grid.ravel()),
                              [(64, 64)])
    assert len(clustered) < 0.9 * len(shuffled)


# ---------------------------------------------------------------------------
# Robustness: corrupted or random input never raises.


def _valid_stream():
    rng = np.random.default_rng(5)
    groups, dims = LAYOUTS["multi"]
    wq = laplace_ints(rng, sum(groups), 4.0)
    lat = laplace_ints(rng, sum(h * w for h, w in dims), 1.0)
    return encode_payload(wq, groups, lat, dims), groups, dims


def _check_decode(data, groups, dims):
    wq, lat, err, consumed = decode_payload(data, groups, dims)
    assert wq.shape == (sum(groups),)
    assert lat.shape == (sum(h * w for h, w in dims),)
    assert err in (entropy.OK, entropy.ERR_OVERFLOW)
    assert consumed >= 0
    # Whatever comes out stays inside what the escape code can express.
    limit = (1 << (EG_MAX_PREFIX + 1)) + max(WEIGHT_UNARY, LAT_UNARY) + 1
    assert np.abs(wq).max(initial=0) <= limit and np.abs(lat).max(initial=0) <= limit


def test_random_bytes_never_raise():
    rng = np.random.default_rng(6)
    groups, dims = LAYOUTS["multi"]
    for n in list(range(0, 12)) + [50, 300, 2000]:
        for _ in range(3):
            _check_decode(rng.integers(0, 256, n, dtype=np.uint8).tobytes(), groups, dims)
    _check_decode(b"\xff" * 500, groups, dims)  # all-ones: long escapes everywhere


def test_corrupted_stream_never_raises():
    data, groups, dims = _valid_stream()
    rng = np.random.default_rng(7)
    for pos in rng.choice(len(data) * 8, min(200, len(data) * 8), replace=False):
        b = bytearray(data)
        b[pos // 8] ^= 1 << (pos % 8)
        _check_decode(bytes(b), groups, dims)
    for cut in range(0, len(data), max(1, len(data) // 40)):
        _check_decode(data[:cut], groups, dims)


def test_decode_reads_missing_bytes_as_zero():
    data, groups, dims = _valid_stream()
    wq, lat, err, _ = decode_payload(data, groups, dims)
    wq2, lat2, err2, _ = decode_payload(data + b"\x00" * 8, groups, dims)
    assert err == err2 == 0
    np.testing.assert_array_equal(wq, wq2)
    np.testing.assert_array_equal(lat, lat2)


def test_new_probs_is_the_documented_start_state():
    """Every context starts at probability 1/2 with its version's count and
    target rates (decoding.md section 3.2)."""
    from nncodec import entropy as e

    for version, (count0, fast, slow) in e.ADAPTATION.items():
        a = e.new_probs(13, version)
        assert a.shape == (13, 5) and a.dtype == np.int64
        assert (a == [e.PROB_ONE // 2, e.PROB_ONE // 2, count0, fast, slow]).all()

"""Decoder fuzzing: 2,000 seeded mutations of valid files must fail only on purpose.

The engine (corpus, mutations, checks, bounds) is ``tests/fuzzing.py``; its
docstring explains the CRC fix-up and the time and memory bounds.
``benchmarks/fuzz.py`` runs the same cases at length. The CLI is checked on
every 4th case and memory traced on every 10th, to keep this file under a
minute on a 2-core machine.
"""

from __future__ import annotations

import zlib
from collections import Counter

import numpy as np
import pytest

import fuzzing
import nncodec
from nncodec import format as fmt

SEED = 7
N_CASES = 2000


@pytest.fixture(scope="module")
def corpus():
    files = fuzzing.make_corpus()
    fuzzing.warm_up(files)
    return files


def test_corpus_files_are_valid(corpus):
    names = [name for name, _ in corpus]
    assert len(set(names)) == len(names) >= 10
    assert "kodim23-1kb.nni" in names and "kodim03-grey-400b.nni" in names
    seen = Counter()
    for name, data in corpus:
        info = nncodec.info(data)
        out = nncodec.decode(data, max_pixels=fuzzing.FUZZ_MAX_PIXELS)
        assert out.shape[:2] == (info["height"], info["width"])
        seen["metadata"] += info["has_metadata"]
        seen[f"stencil {info['stencil']}"] += 1
        seen["grey"] += info["channels"] == 1
        seen["no grids"] += info["n_levels"] == 0
        seen[f"{info['n_hidden']} hidden"] += 1
    for key in ("metadata", "stencil 1", "stencil 2", "stencil 3", "grey", "no grids", "0 hidden",
                "1 hidden", "2 hidden", "3 hidden"):
        assert seen[key] > 0, key
    encoded = dict(corpus)
    for name in ("rgb-400b", "grey-150b", "rgb-meta-250b", "rgb-mlp-200b"):
        assert 100 <= len(encoded[name]) <= 400


def test_cases_are_reproducible_and_crc_fixed(corpus):
    for i in range(200):
        a = fuzzing.make_case(SEED, i, corpus)
        b = fuzzing.make_case(SEED, i, corpus)
        assert a.data == b.data and a.mutators == b.mutators and a.size == b.size
        if a.mode == "fixed":
            body, crc = a.data[:-4], a.data[-4:]
            assert zlib.crc32(body).to_bytes(4, "little") == crc
    assert fuzzing.make_case(SEED, 0, corpus).data != fuzzing.make_case(SEED + 1, 0, corpus).data


def test_header_bit_helpers_follow_the_spec(corpus):
    data = bytearray(dict(corpus)["rgb-400b"])
    info = nncodec.info(bytes(data))
    for name, pos, f in fuzzing.header_layout(info["n_hidden"] + 1):
        assert fuzzing.get_bits(data, pos, f.bits) == info[name], name
    fuzzing.set_bits(data, 0, 16, 65535)
    fuzzing.set_bits(data, 16, 16, 0)
    info2 = nncodec.info(fuzzing.with_crc(bytes(data[:-4])))
    assert (info2["width"], info2["height"]) == (65536, 1)
    assert {k: v for k, v in info2.items() if "minus_1" not in k and k not in (
        "width", "height", "bpp", "grids", "latents")} == {
        k: v for k, v in info.items() if "minus_1" not in k and k not in (
            "width", "height", "bpp", "grids", "latents")}


def test_check_case_reports_violations(corpus, tmp_path, monkeypatch):
    """The harness itself: an unexpected exception, a slow call, excess memory, a bad CLI."""
    good = fuzzing.Case(0, "rgb-400b", "fixed", [], dict(corpus)["rgb-400b"])
    assert fuzzing.check_case(good, tmp_path, trace=True).failures == []

    def crash(*a, **k):
        raise IndexError("index 7 is out of bounds")

    with monkeypatch.context() as m:
        m.setattr(nncodec, "decode", crash)
        res = fuzzing.check_case(good, tmp_path, cli=False)
    assert [(f["call"], f["kind"]) for f in res.failures] == [("decode", "exception")]
    assert "IndexError" in res.failures[0]["detail"]

    real_decode = nncodec.decode

    def hog(*a, **k):
        blob = np.ones(64 << 20, np.uint8)  # 64 MiB, more than the bound
        return real_decode(*a, **k) if blob.any() else None

    with monkeypatch.context() as m:
        m.setattr(nncodec, "decode", hog)
        res = fuzzing.check_case(good, tmp_path, trace=True, cli=False)
    assert [f["kind"] for f in res.failures] == ["memory"]

    def spin(*a, **k):
        t = __import__("time").process_time()
        while __import__("time").process_time() - t < 0.3:
            pass
        return real_decode(*a, **k)

    with monkeypatch.context() as m:
        m.setattr(nncodec, "decode", spin)
        m.setattr(fuzzing, "CPU_LIMIT", 0.2)
        res = fuzzing.check_case(good, tmp_path, cli=False)
    assert [(f["call"], f["kind"]) for f in res.failures] == [("decode", "slow")]

    def wrong_shape(*a, **k):
        return real_decode(*a, **k)[:-1]

    with monkeypatch.context() as m:
        m.setattr(nncodec, "decode", wrong_shape)
        res = fuzzing.check_case(good, tmp_path, cli=False)
    assert [f["kind"] for f in res.failures] == ["inconsistent"]

    # The CLI disagreeing with the API (here: the API refuses, the CLI does not).
    with monkeypatch.context() as m:
        m.setattr(nncodec, "info", crash)
        res = fuzzing.check_case(good, tmp_path)
    kinds = sorted((f["call"], f["kind"]) for f in res.failures)
    assert kinds == [("cli info", "inconsistent"), ("decode", "inconsistent"),
                     ("info", "exception")]


def test_fuzz_decoder(corpus, tmp_path):
    failures, outcomes, mutators = [], Counter(), Counter()
    peaks = []
    for i in range(N_CASES):
        case = fuzzing.make_case(SEED, i, corpus)
        res = fuzzing.check_case(case, tmp_path, trace=i % 10 == 0, cli=i % 4 == 0)
        if res.failures:
            failures.append(fuzzing.describe(case, res))
        outcomes["decoded" if res.decoded else res.error] += 1
        outcomes[f"{case.mode} {'decoded' if res.decoded else 'refused'}"] += 1
        mutators.update(case.mutators)
        if res.peak is not None:
            peaks.append(res.peak)
    report = [{k: f[k] for k in ("index", "source", "mode", "mutators", "failures")}
              for f in failures[:5]]
    assert not failures, f"{len(failures)} failing cases, first ones: {report}"
    # The cases reach every stage: refusals of every kind, and decodes of
    # mutated files, most of them behind a recomputed checksum.
    for err in ("ChecksumError", "FormatError", "TruncatedError", "VersionError",
                "ImageTooLargeError"):
        assert outcomes[err] >= 5, (err, outcomes)
    assert outcomes["decoded"] >= N_CASES // 5, outcomes
    assert outcomes["fixed decoded"] > 10 * outcomes["raw decoded"], outcomes
    assert set(mutators) == set(fuzzing.MUTATORS)
    assert len(peaks) == N_CASES // 10 and max(peaks) > 0


def test_payload_overflow_is_a_format_error():
    """A saturated payload behind a valid header: every escape is as long as allowed."""
    from nncodec.field import ModelSpec

    spec = ModelSpec(8, 8, 3, 2, 0, 1, 1, 4)
    data = fmt.pack(spec, [0, 0], [0, 0], b"\xff" * 200)
    with pytest.raises(nncodec.FormatError, match="impossible value"):
        nncodec.decode(data)
    assert nncodec.info(data)["payload_bytes"] == 200

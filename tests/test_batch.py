"""batch.py and encode a.png b.png -o DIR/: process pool, Dask, failures, summary."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

from nncodec import batch, encoder
from nncodec.cli import main
from nncodec.encoder import encode_stats
from nncodec.errors import InputError


@pytest.fixture
def quick(monkeypatch):
    """The fast preset trains 60 steps (in this process only)."""
    monkeypatch.setitem(encoder.PRESETS, "fast",
                        encoder.Preset(steps=60, sample_fraction=1 / 8, ste_fraction=0.15))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, make_image):
    """Two small images, a file that is not an image, and a missing file."""
    d = tmp_path_factory.mktemp("batch")
    Image.fromarray(make_image(32, 24, 3, seed=11)).save(d / "a.png")
    Image.fromarray(make_image(24, 16, 1, seed=12)).save(d / "b.jpg")
    (d / "c.png").write_bytes(b"not an image")
    return d


def expected(path, steps=60) -> bytes:
    return encode_stats(str(path), budget=250, preset="fast", steps=steps)[0]


def test_cli_batch_reports_failures_and_goes_on(tmp_path, inputs, capsys, quick):
    out = tmp_path / "out"
    args = [str(inputs / n) for n in ("a.png", "c.png", "missing.png", "b.jpg")]
    assert main(["encode", *args, "-o", f"{out}/", "-b", "250", "--preset", "fast"]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.nni", "b.nni"]
    assert (out / "a.nni").read_bytes() == expected(inputs / "a.png")
    assert (out / "b.nni").read_bytes() == expected(inputs / "b.jpg")
    err = capsys.readouterr().err.splitlines()
    errors = [line for line in err if line.startswith("nncodec: error:")]
    assert len(errors) == 2
    assert any("c.png" in e and "unknown image format" in e for e in errors)
    assert any("missing.png" in e and "no such file" in e for e in errors)
    table = {line.split()[0]: line for line in err if not line.startswith("nncodec")}
    assert table[args[0]].split()[1:3] == [str(len((out / "a.nni").read_bytes())), "250"]
    assert "failed:" in table[args[1]] and "failed:" in table[args[2]]
    assert err[-1].startswith("4 files: 2 encoded, 2 failed;")


def test_cli_batch_quiet_prints_only_errors(tmp_path, inputs, capsys, quick):
    out = tmp_path / "out"
    args = [str(inputs / "a.png"), str(inputs / "c.png")]
    assert main(["encode", *args, "-o", f"{out}/", "-b", "250", "--preset", "fast", "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nncodec: error:") and "c.png" in err[0]


def test_cli_batch_all_good_exit_zero(tmp_path, inputs, capsys, quick):
    out = tmp_path / "existing"
    out.mkdir()
    assert main(["encode", str(inputs / "a.png"), "-o", str(out), "-b", "250", "--preset",
                 "fast"]) == 0
    assert (out / "a.nni").exists()
    assert capsys.readouterr().err.splitlines()[-1].startswith("1 files: 1 encoded, 0 failed;")


@pytest.mark.parametrize("args,word", [
    (["a.png", "b.jpg", "-o", "one.nni"], "output directory"),
    (["a.png", "-", "-o", "out/"], "stdin"),
    (["a.png", "b.jpg", "-o", "out/", "--video", "t.webp"], "--video"),
    (["a.png", "-o", "x.nni", "--jobs", "2"], "directory"),
    (["a.png", "sub/a.png", "-o", "out/"], "both"),
])
def test_cli_batch_usage_errors(tmp_path, monkeypatch, capsys, args, word):
    monkeypatch.chdir(tmp_path)
    assert main(["encode", *args, "-b", "250"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("nncodec: error:") and word in err and "\n" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "one.nni").exists()


def test_output_paths():
    assert batch.output_paths(["x/a.png", "b.tiff"], "o") == [Path("o/a.nni"), Path("o/b.nni")]
    with pytest.raises(InputError, match="x/a.png and y/a.jpg"):
        batch.output_paths(["x/a.png", "y/a.jpg"], "o")


def test_process_pool_gives_the_same_bytes(tmp_path, inputs):
    """Two spawned workers; a bad file fails alone; results come back in input order."""
    seen = []
    names = ["a.png", "c.png", "b.jpg"]
    results = batch.encode_files([inputs / n for n in names], tmp_path, budget=250,
                                 preset="fast", jobs=2, steps=40, on_result=seen.append)
    assert [r.input for r in results] == [str(inputs / n) for n in names]
    assert sorted(r.input for r in seen) == sorted(r.input for r in results)
    assert [r.ok for r in results] == [True, False, True]
    assert "unknown image format" in results[1].error
    for r, n in zip(results, names):
        if r.ok:
            data = (tmp_path / (n.split(".")[0] + ".nni")).read_bytes()
            ref, st = encode_stats(str(inputs / n), budget=250, preset="fast", steps=40)
            assert data == ref and r.bytes == len(data) == st.bytes
            assert r.psnr == pytest.approx(st.psnr) and r.seconds > 0


def test_dask_cluster(tmp_path, inputs, capsys, quick):
    """The CLI's --scheduler on a one-worker in-process cluster."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        out = tmp_path / "out"
        args = [str(inputs / n) for n in ("a.png", "c.png", "b.jpg")]
        rc = main(["encode", *args, "-o", f"{out}/", "-b", "250", "--preset", "fast",
                   "--scheduler", cluster.scheduler_address])
    assert rc == 1
    assert (out / "a.nni").read_bytes() == expected(inputs / "a.png")
    assert (out / "b.nni").read_bytes() == expected(inputs / "b.jpg")
    assert not (out / "c.nni").exists()
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("3 files: 2 encoded, 1 failed;")


def test_scheduler_without_dask(tmp_path, inputs, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails
    assert main(["encode", str(inputs / "a.png"), "-o", f"{tmp_path}/out/", "-b", "250",
                 "--scheduler", "tcp://127.0.0.1:8786"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("nncodec: error:") and "nncodec[dask]" in err and "\n" not in err
    assert not (tmp_path / "out").exists()

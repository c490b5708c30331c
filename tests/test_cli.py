"""cli.py: encode / decode / info in process, errors, stdin/stdout, module entry point."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import nncodec
from nncodec.cli import main
from nncodec import format as fmt


class FakeStream:
    """Stands in for sys.stdin / sys.stdout: text methods plus a binary ``.buffer``."""

    def __init__(self, data: bytes = b""):
        self.buffer = io.BytesIO(data)
        self.text = io.StringIO()

    def write(self, s):
        return self.text.write(s)

    def flush(self):
        pass

    def read(self):
        return self.buffer.read().decode()


@pytest.fixture(scope="module")
def png(tmp_path_factory, make_image):
    p = tmp_path_factory.mktemp("cli") / "in.png"
    Image.fromarray(make_image(40, 30, 3, seed=6)).save(p)
    return p


@pytest.fixture
def nni(tmp_path, encoded_rgb):
    p = tmp_path / "img.nni"
    p.write_bytes(encoded_rgb.data)
    return p


def error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected a one-line error, got:\n{err}"
    assert lines[0].startswith("nncodec: error:"), lines[0]
    return lines[0]


def leftovers(directory) -> list[str]:
    return sorted(os.listdir(directory))


# ---------------------------------------------------------------------------
# encode


def test_encode(tmp_path, png, capsys):
    out = tmp_path / "out.nni"
    rc = main(["encode", str(png), "-o", str(out), "--budget", "300", "--preset", "fast"])
    assert rc == 0
    data = out.read_bytes()
    assert 0 < len(data) <= 300 and nncodec.check(data)
    info = nncodec.info(data)
    assert (info["width"], info["height"]) == (40, 30)
    err = capsys.readouterr().err
    assert str(out) in err and "bytes" in err
    assert leftovers(tmp_path) == ["out.nni"]


def test_encode_quiet_seed_and_model(tmp_path, png, capsys):
    a, b = tmp_path / "a.nni", tmp_path / "b.nni"
    for path in (a, b):
        assert main(["encode", str(png), "-o", str(path), "-b", "0.25k", "--preset", "fast",
                     "--seed", "3", "--model", "mlp", "-q"]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert len(a.read_bytes()) <= 256
    assert nncodec.info(a.read_bytes())["n_levels"] == 0
    assert capsys.readouterr().err == ""


def test_encode_stdin_to_stdout(png, monkeypatch, capsys):
    stdin = FakeStream(png.read_bytes())
    stdout = FakeStream()
    monkeypatch.setattr(sys, "stdin", stdin)
    monkeypatch.setattr(sys, "stdout", stdout)
    rc = main(["encode", "-", "-o", "-", "-b", "200", "--preset", "fast"])
    assert rc == 0
    data = stdout.buffer.getvalue()
    assert nncodec.check(data) and len(data) <= 200
    assert nncodec.decode(data).shape == (30, 40, 3)
    assert stdout.text.getvalue() == ""  # nothing but the file on stdout
    assert "<stdout>" in capsys.readouterr().err


@pytest.mark.parametrize("budget", ["abc", "0", "-5", "5", "inf"])
def test_encode_bad_budget(tmp_path, png, capsys, budget):
    out = tmp_path / "out.nni"
    rc = main(["encode", str(png), "-o", str(out), "-b", budget, "--preset", "fast"])
    assert rc != 0
    error_line(capsys.readouterr().err)
    assert leftovers(tmp_path) == []


def test_encode_missing_input(tmp_path, capsys):
    out = tmp_path / "out.nni"
    missing = tmp_path / "missing.png"
    assert main(["encode", str(missing), "-o", str(out), "-b", "100"]) == 1
    line = error_line(capsys.readouterr().err)
    assert str(missing) in line
    assert leftovers(tmp_path) == []


def test_encode_not_an_image(tmp_path, capsys):
    txt = tmp_path / "a.txt"
    txt.write_text("hello")
    assert main(["encode", str(txt), "-o", str(tmp_path / "o.nni"), "-b", "100"]) == 1
    error_line(capsys.readouterr().err)
    assert leftovers(tmp_path) == ["a.txt"]


def test_failed_encode_keeps_existing_output(tmp_path, png, capsys):
    out = tmp_path / "out.nni"
    out.write_bytes(b"previous content")
    assert main(["encode", str(png), "-o", str(out), "-b", "5", "--preset", "fast"]) == 1
    assert "too small" in error_line(capsys.readouterr().err)
    assert out.read_bytes() == b"previous content"
    assert leftovers(tmp_path) == ["out.nni"]


@pytest.mark.parametrize("command", ["encode", "decode"])
@pytest.mark.parametrize("failing", ["write", "fsync", "replace"])
def test_write_failure_keeps_existing_output(tmp_path, png, nni, monkeypatch, capsys, command,
                                             failing):
    """A failure while writing (disk full here) leaves the old file and no temporary file."""
    import errno

    out = tmp_path / ("out.nni" if command == "encode" else "out.png")
    out.write_bytes(b"previous content")
    before = leftovers(tmp_path)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if failing == "write":
        class FullFile(io.FileIO):
            def write(self, data):
                super().write(data[: len(data) // 2])  # half written, then the disk is full
                disk_full()

        monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullFile(fd, "wb"))
    else:
        monkeypatch.setattr(os, failing, disk_full)
    args = (["encode", str(png), "-o", str(out), "-b", "100", "--preset", "fast", "-q"]
            if command == "encode" else ["decode", str(nni), "-o", str(out), "-q"])
    assert main(args) == 1
    line = error_line(capsys.readouterr().err)
    assert str(out) in line and "No space left" in line
    assert out.read_bytes() == b"previous content"
    assert leftovers(tmp_path) == before


def test_interrupted_write_keeps_existing_output(tmp_path, nni, monkeypatch, capsys):
    out = tmp_path / "out.png"
    out.write_bytes(b"previous content")
    before = leftovers(tmp_path)

    def interrupt(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    assert main(["decode", str(nni), "-o", str(out), "-q"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert out.read_bytes() == b"previous content"
    assert leftovers(tmp_path) == before


# ---------------------------------------------------------------------------
# decode


def test_decode_png(tmp_path, nni, capsys):
    out = tmp_path / "out.png"
    assert main(["decode", str(nni), "-o", str(out)]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (64, 48) and im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), nncodec.decode(nni.read_bytes()))
    assert "64x48" in capsys.readouterr().err


def test_decode_scale(tmp_path, nni):
    out = tmp_path / "big.png"
    assert main(["decode", str(nni), "-o", str(out), "--scale", "2", "-q"]) == 0
    with Image.open(out) as im:
        assert im.size == (128, 96)
        np.testing.assert_array_equal(np.asarray(im),
                                      nncodec.decode(nni.read_bytes(), scale=2))


def test_decode_size_jpeg(tmp_path, nni):
    out = tmp_path / "thumb.jpg"
    assert main(["decode", str(nni), "-o", str(out), "--size", "30x20"]) == 0
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.size == (30, 20)
        ref = nncodec.decode(nni.read_bytes(), (30, 20)).astype(float)
        assert np.abs(np.asarray(im).astype(float) - ref).mean() < 8


def test_decode_grey(tmp_path, encoded_grey):
    src = tmp_path / "g.nni"
    src.write_bytes(encoded_grey.data)
    out = tmp_path / "g.png"
    assert main(["decode", str(src), "-o", str(out), "-q"]) == 0
    with Image.open(out) as im:
        assert im.mode == "L" and im.size == (48, 32)


def test_decode_stdin_to_stdout(encoded_rgb, monkeypatch):
    stdin = FakeStream(encoded_rgb.data)
    stdout = FakeStream()
    monkeypatch.setattr(sys, "stdin", stdin)
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["decode", "-", "-o", "-", "--size", "16x12", "-q"]) == 0
    with Image.open(io.BytesIO(stdout.buffer.getvalue())) as im:
        assert im.format == "PNG" and im.size == (16, 12)


def test_decode_corrupted_file_leaves_nothing(tmp_path, encoded_rgb, capsys):
    bad = bytearray(encoded_rgb.data)
    bad[len(bad) // 2] ^= 0x10
    src = tmp_path / "bad.nni"
    src.write_bytes(bytes(bad))
    out = tmp_path / "out.png"
    assert main(["decode", str(src), "-o", str(out)]) == 1
    line = error_line(capsys.readouterr().err)
    assert "corrupt" in line or "checksum" in line
    assert leftovers(tmp_path) == ["bad.nni"]


def test_decode_existing_output_untouched_on_error(tmp_path, encoded_rgb, capsys):
    src = tmp_path / "trunc.nni"
    src.write_bytes(encoded_rgb.data[:20])
    out = tmp_path / "out.png"
    out.write_bytes(b"previous content")
    assert main(["decode", str(src), "-o", str(out)]) == 1
    error_line(capsys.readouterr().err)
    assert out.read_bytes() == b"previous content"
    assert leftovers(tmp_path) == ["out.png", "trunc.nni"]


@pytest.mark.parametrize("args", [["--max-pixels", "100"], ["--size", "0x5"],
                                  ["--scale", "1e9"]])
def test_decode_refused_sizes(tmp_path, nni, capsys, args):
    out = tmp_path / "out.png"
    assert main(["decode", str(nni), "-o", str(out)] + args) == 1
    error_line(capsys.readouterr().err)
    assert not out.exists()


def test_decode_max_pixels_zero_lifts_cap(tmp_path, nni):
    out = tmp_path / "out.png"
    assert main(["decode", str(nni), "-o", str(out), "--size", "20x10", "--max-pixels", "0",
                 "-q"]) == 0
    assert Image.open(out).size == (20, 10)


@pytest.mark.parametrize("args,want", [([], ...), (["--max-pixels", "0"], None),
                                       (["--max-pixels", "-3"], None),
                                       (["--max-pixels", "5000"], 5000),
                                       (["--max-pixels", "200000000"], 200000000)])
def test_decode_max_pixels_reaches_the_decoder(tmp_path, nni, monkeypatch, args, want):
    """The override is passed on (a real render above the default cap would take too long)."""
    from nncodec import decoder

    seen = []

    def fake_decode(data, size, *, scale=None, **kw):
        seen.append(kw.get("max_pixels", ...))
        return np.zeros((2, 3, 3), np.uint8)

    monkeypatch.setattr(decoder, "decode", fake_decode)
    assert main(["decode", str(nni), "-o", str(tmp_path / "o.png"), "-q"] + args) == 0
    assert seen == [want]


def test_default_cap_error_names_the_override(tmp_path, nni, capsys):
    side = 9460  # 9460^2 > 89,478,485
    assert main(["decode", str(nni), "-o", str(tmp_path / "o.png"), "--size",
                 f"{side}x{side}"]) == 1
    line = error_line(capsys.readouterr().err)
    assert "89478485" in line and "--max-pixels 0" in line
    assert leftovers(tmp_path) == ["img.nni"]


def test_decode_unknown_extension(tmp_path, nni, capsys):
    out = tmp_path / "out.xyz"
    assert main(["decode", str(nni), "-o", str(out)]) == 1
    assert "out.xyz" in error_line(capsys.readouterr().err)
    assert leftovers(tmp_path) == ["img.nni"]


def test_decode_missing_input(tmp_path, capsys):
    assert main(["decode", str(tmp_path / "none.nni"), "-o", str(tmp_path / "o.png")]) == 1
    assert "none.nni" in error_line(capsys.readouterr().err)
    assert leftovers(tmp_path) == []


def test_decode_directory_input(tmp_path, capsys):
    assert main(["decode", str(tmp_path), "-o", str(tmp_path / "o.png")]) == 1
    error_line(capsys.readouterr().err)


def test_decode_into_missing_directory(tmp_path, nni, capsys):
    """An unwritable output is an error like any other: one line, status 1."""
    out = tmp_path / "no" / "such" / "dir" / "out.png"
    assert main(["decode", str(nni), "-o", str(out)]) == 1
    error_line(capsys.readouterr().err)


@pytest.mark.parametrize("args", [["--scale", "0"], ["--scale", "-1"], ["--scale", "x"],
                                  ["--size", "30"], ["--size", "axb"],
                                  ["--scale", "2", "--size", "3x3"]])
def test_decode_bad_arguments_exit_2(nni, tmp_path, capsys, args):
    with pytest.raises(SystemExit) as e:
        main(["decode", str(nni), "-o", str(tmp_path / "o.png")] + args)
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


# ---------------------------------------------------------------------------
# info


def test_info(nni, encoded_rgb, capsys):
    assert main(["info", str(nni)]) == 0
    out = capsys.readouterr().out
    lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert lines["width"] == "64" and lines["height"] == "48"
    assert lines["channels"] == "3"
    assert lines["file_bytes"] == str(len(encoded_rgb.data))
    assert lines["format_version"] == str(fmt.FORMAT_VERSION)


def test_info_stdin(encoded_grey, monkeypatch):
    stdin = FakeStream(encoded_grey.data)
    stdout = FakeStream()
    monkeypatch.setattr(sys, "stdin", stdin)
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["info", "-"]) == 0
    text = stdout.text.getvalue()
    assert "width: 48" in text.splitlines() and "height: 32" in text.splitlines()
    assert "channels: 1" in text.splitlines()


def test_info_bad_file(tmp_path, capsys):
    p = tmp_path / "x.nni"
    p.write_bytes(b"\x89PNG\r\n\x1a\nnot nni")
    assert main(["info", str(p)]) == 1
    assert "magic" in error_line(capsys.readouterr().err)


def test_package_version_is_the_pyproject_version():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^version = "([^"]+)"$', text, re.M).group(1) == nncodec.__version__


def test_no_command_and_version(capsys):
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert nncodec.__version__ in capsys.readouterr().out


# ---------------------------------------------------------------------------
# python -m nncodec


def test_module_entry_point(nni):
    r = subprocess.run([sys.executable, "-m", "nncodec", "info", str(nni)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "width: 64" in r.stdout.splitlines() and "height: 48" in r.stdout.splitlines()
    r = subprocess.run([sys.executable, "-m", "nncodec", "info", str(nni) + ".missing"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert r.stderr.strip().startswith("nncodec: error:")


# ---------------------------------------------------------------------------
# Terminal conventions: progress bar, -v, --help.


class TTYStream(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self):
        return True


@pytest.fixture
def quick(monkeypatch):
    """The fast preset trains 100 steps: enough for four progress reports."""
    from nncodec import encoder

    monkeypatch.setitem(encoder.PRESETS, "fast",
                        encoder.Preset(steps=100, sample_fraction=1 / 8, ste_fraction=0.15))


def test_progress_bar_only_on_a_terminal(tmp_path, png, monkeypatch, capsys, quick):
    out = tmp_path / "out.nni"
    assert main(["encode", str(png), "-o", str(out), "-b", "300", "--preset", "fast"]) == 0
    plain = capsys.readouterr().err
    assert "step" not in plain and "%|" not in plain  # not a terminal: no bar
    tty = TTYStream()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main(["encode", str(png), "-o", str(out), "-b", "300", "--preset", "fast"]) == 0
    text = tty.getvalue()
    assert "training" in text and "/100" in text and "step" in text
    assert " dB ~" in text and " bytes" in text  # current PSNR and estimated bytes
    assert text.rstrip().splitlines()[-1].startswith(f"{out}: ")  # the bar is gone
    tty.truncate(0)
    assert main(["encode", str(png), "-o", str(out), "-b", "300", "--preset", "fast",
                 "-q"]) == 0
    assert tty.getvalue().strip("\x00") == ""


def test_verbose_logs_steps(tmp_path, png, capsys, quick):
    out = tmp_path / "out.nni"
    assert main(["encode", str(png), "-o", str(out), "-b", "300", "--preset", "fast",
                 "-v"]) == 0
    err = capsys.readouterr().err
    assert "step 25/100" in err and " dB " in err
    assert err.rstrip().splitlines()[-1].startswith(f"{out}: ")


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_help_has_examples(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "nncodec encode" in out
    if command == "encode":
        for flag in ("--keep-metadata", "--video", "--frames", "--jobs", "--scheduler", "-q",
                     "-v"):
            assert flag in out

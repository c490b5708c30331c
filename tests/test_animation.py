"""animation.py and encode --video / --frames: training animations that leave the file alone."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import nncodec
from nncodec import animation, encoder
from nncodec.cli import main


@pytest.fixture
def quick(monkeypatch):
    """The fast preset trains 100 steps: progress reports at steps 25, 50 and 75."""
    monkeypatch.setitem(encoder.PRESETS, "fast",
                        encoder.Preset(steps=100, sample_fraction=1 / 8, ste_fraction=0.15))


@pytest.fixture(scope="module")
def png(tmp_path_factory, make_image):
    p = tmp_path_factory.mktemp("anim") / "in.png"
    Image.fromarray(make_image(48, 32, 3, seed=7)).save(p)
    return p


def encode(png, out, *extra) -> bytes:
    assert main(["encode", str(png), "-o", str(out), "-b", "300", "--preset", "fast", "-q",
                 *extra]) == 0
    return out.read_bytes()


def test_video_and_frames_leave_the_bytes_alone(tmp_path, png, quick):
    plain = encode(png, tmp_path / "plain.nni")
    frames = tmp_path / "frames"
    data = encode(png, tmp_path / "v.nni", "--video", str(tmp_path / "t.webp"),
                  "--frames", str(frames))
    assert data == plain
    names = sorted(p.name for p in frames.iterdir())
    assert names == ["frame0000-step000025.png", "frame0001-step000050.png",
                     "frame0002-step000075.png", "frame0003-final.png"]
    with Image.open(tmp_path / "t.webp") as im:
        assert im.is_animated and im.n_frames == 4 and im.size == (48, 32)
    # The last frame is the decoded file; training frames show the model improving.
    last = np.asarray(Image.open(frames / names[-1]))
    np.testing.assert_array_equal(last, nncodec.decode(data))
    src = np.asarray(Image.open(png)).astype(float)
    errors = [np.abs(np.asarray(Image.open(frames / n)).astype(float) - src).mean()
              for n in names]
    assert errors[-1] < errors[0]


def test_gif(tmp_path, png, quick):
    encode(png, tmp_path / "g.nni", "--video", str(tmp_path / "t.gif"))
    with Image.open(tmp_path / "t.gif") as im:
        assert im.format == "GIF" and im.is_animated and im.size == (48, 32)


@pytest.mark.parametrize("args,word", [
    (["--video", "t.mp4"], "t.mp4"),
    (["--video", "no/such/dir/t.webp"], "no/such/dir"),
])
def test_bad_video_path_fails_before_encoding(tmp_path, png, capsys, args, word, monkeypatch):
    monkeypatch.chdir(tmp_path)
    called = []
    monkeypatch.setattr(encoder, "encode_stats", lambda *a, **k: called.append(1))
    assert main(["encode", str(png), "-o", "o.nni", "-b", "300", *args]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("nncodec: error:") and word in err and "\n" not in err
    assert called == [] and not (tmp_path / "o.nni").exists()


def test_recorder_caps_frames_and_size():
    class Info:
        total = 1000
        size = (3000, 1000)

        def __init__(self, step):
            self.step = step

        def render(self, size):
            return np.zeros((size[1], size[0], 3), np.uint8)

    rec = animation.FrameRecorder(max_frames=10, max_side=300)
    for step in range(25, 1000, 25):
        rec(Info(step))
    assert len(rec.frames) == 10 and rec.size == (300, 100)
    assert [label for label, _ in rec.frames][:3] == ["step000025", "step000125", "step000225"]

"""benchmarks/rd_preset.py and rd_stencil.py: the patches their runs measure."""

from __future__ import annotations

import pytest

from nncodec import encoder, field
from nncodec.field import ModelSpec


@pytest.fixture
def restore(monkeypatch):
    """Let a patch change the encoder's and the field's settings for one test only."""
    monkeypatch.setattr(encoder, "PRESETS", dict(encoder.PRESETS))
    for name in ("DEFAULT_STENCIL", "FULL_GRID_STENCIL", "PLAIN_STENCIL"):
        monkeypatch.setattr(encoder, name, getattr(encoder, name))
    monkeypatch.setattr(field, "PLUS", field.PLUS)


def test_rd_preset_replaces_the_named_fields_only(load_benchmark, restore):
    rp = load_benchmark("rd_preset")
    before = encoder.PRESETS["default"]
    rp.patch("default", {"ste_fraction": "0.04", "steps": "100"})
    after = encoder.PRESETS["default"]
    assert (after.ste_fraction, after.steps) == (0.04, 100)
    assert isinstance(after.steps, int)
    assert after.sample_fraction == before.sample_fraction
    assert encoder.PRESETS["fast"].steps != 100


def test_rd_preset_refuses_what_a_preset_does_not_have(load_benchmark, restore):
    rp = load_benchmark("rd_preset")
    with pytest.raises(ValueError, match="no field 'stes'"):
        rp.patch("default", {"stes": "1"})
    with pytest.raises(SystemExit):
        rp.main(["--set", "ste_fraction"])


def test_rd_stencil_box_adds_the_diagonals_and_keeps_the_encoders_stencil(load_benchmark,
                                                                          restore):
    rs = load_benchmark("rd_stencil")
    stencils = encoder.DEFAULT_STENCIL, encoder.FULL_GRID_STENCIL, encoder.PLAIN_STENCIL
    spec = ModelSpec(64, 64, 3, 4, 0, 0, 2, 8, stencil=2)
    assert len(spec.grid_features()) == 5 + 3
    rs.patch(None, None, "box")
    assert (encoder.DEFAULT_STENCIL, encoder.FULL_GRID_STENCIL, encoder.PLAIN_STENCIL) == stencils
    feats = spec.grid_features()
    assert sorted((dy, dx) for g, dy, dx in feats if g == 0) == [
        (dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    assert [(g, dy, dx) for g, dy, dx in feats if g > 0] == [(1, 0, 0), (2, 0, 0), (3, 0, 0)]


def test_rd_preset_patches_the_preset_the_run_uses(load_benchmark, restore, monkeypatch):
    rp = load_benchmark("rd_preset")
    seen = []
    monkeypatch.setattr(rp.rd, "main", lambda rest: seen.append(rest) or 0)
    assert rp.main(["--set", "steps=123", "--preset", "fast", "--budgets", "2k"]) == 0
    assert encoder.PRESETS["fast"].steps == 123
    assert encoder.PRESETS["default"].steps != 123
    assert seen == [["--budgets", "2k", "--preset", "fast"]]

"""Shared fixtures: small deterministic test images and one encoded file.

Images are smooth gradients plus a disc and a rectangle plus mild Gaussian
noise, generated with NumPy from a fixed seed, so every run sees the same
pixels. Encoding is the slow part of the suite, so one small RGB image (and
one grey image) is encoded once per session and the bytes are shared.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest


def _make_image(width: int, height: int, channels: int = 3, *, shapes: bool = True,
                noise: float = 2.0, seed: int = 0) -> np.ndarray:
    """uint8[H, W, 3] (channels=3) or uint8[H, W] (channels=1)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    u = (x + 0.5) / width
    v = (y + 0.5) / height
    img = np.stack([40.0 + 170.0 * u, 60.0 + 150.0 * v, 200.0 - 120.0 * u * v], axis=-1)
    if shapes:
        cx, cy, rad = 0.62 * width, 0.40 * height, 0.22 * min(width, height)
        img[(x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 < rad ** 2] = (230.0, 200.0, 40.0)
        img[int(0.60 * height): int(0.85 * height), int(0.10 * width): int(0.35 * width)] = (
            30.0, 40.0, 120.0)
    if noise:
        img = img + rng.normal(0.0, noise, img.shape)
    if channels == 1:
        img = img @ np.array([0.299, 0.587, 0.114])
    elif channels != 3:
        raise ValueError(channels)
    return np.floor(np.clip(img, 0, 255) + 0.5).astype(np.uint8)


@pytest.fixture(scope="session")
def make_image():
    """Factory: ``make_image(width, height, channels=3, shapes=True, noise=2.0, seed=0)``."""
    return _make_image


@pytest.fixture(scope="session")
def rgb_image():
    """64x48 RGB test image (uint8[48, 64, 3])."""
    return _make_image(64, 48, 3)


@pytest.fixture(scope="session")
def grey_image():
    """48x32 grey test image (uint8[32, 48])."""
    return _make_image(48, 32, 1, seed=1)


@pytest.fixture(scope="session")
def encoded_rgb(rgb_image):
    """``rgb_image`` encoded once at 600 bytes with the fast preset."""
    from nncodec.encoder import encode_stats

    data, stats = encode_stats(rgb_image, budget=600, preset="fast", seed=0)
    return SimpleNamespace(image=rgb_image, data=data, stats=stats, budget=600)


@pytest.fixture(scope="session")
def encoded_grey(grey_image):
    """``grey_image`` encoded once at 300 bytes with the fast preset."""
    from nncodec.encoder import encode_stats

    data, stats = encode_stats(grey_image, budget=300, preset="fast", seed=0)
    return SimpleNamespace(image=grey_image, data=data, stats=stats, budget=300)


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark("rd")``: a script of benchmarks/ as a module.

    benchmarks/ is not a package and its scripts import their sibling
    ``baselines.py``, so the folder is on ``sys.path`` for the session.
    """
    import importlib.util
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    sys.path.insert(0, str(bench))

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"{name}_bench", bench / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    yield load
    sys.path.remove(str(bench))

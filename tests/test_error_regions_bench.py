"""benchmarks/error_regions.py: the measures behind the README's note on the 16 KiB files."""

from __future__ import annotations

import numpy as np


def test_ycocg_of_grey_is_luma_alone(load_benchmark):
    er = load_benchmark("error_regions")
    grey = np.full((2, 3, 3), 77, np.uint8)
    np.testing.assert_array_equal(er.ycocg(grey), np.dstack([np.full((2, 3), 77.0),
                                                             np.zeros((2, 3)), np.zeros((2, 3))]))
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 0] = 100
    np.testing.assert_allclose(er.ycocg(red)[0, 0], [25.0, 50.0, -25.0])


def test_classes_split_by_gradient_and_errors_add_up(load_benchmark):
    er = load_benchmark("error_regions")
    rng = np.random.default_rng(1)
    # Flat on the left, ever steeper to the right (float, so no ties).
    x = np.linspace(0, 1, 100) ** 3
    row = 250 * np.cumsum(x) / x.sum()
    img = np.tile(row, (60, 1))[..., None].repeat(3, 2)
    classes = er.classify(img)
    shares = [np.mean(classes == k) for k in range(3)]
    np.testing.assert_allclose(shares, [0.5, 0.4, 0.1], atol=0.03)
    assert classes[:, 5].max() == 0 and classes[:, 95].min() == 2
    rec = img + rng.integers(-3, 4, img.shape)
    res = er.error_regions(img, rec, classes)
    mse = np.mean((rec.astype(float) - img) ** 2)
    assert abs(sum(res["sse"]) - mse * img.shape[0] * img.shape[1]) < 1e-6 * sum(res["sse"])
    assert abs(res["psnr"] - 10 * np.log10(255 ** 2 / mse)) < 1e-9
    # Error only on the steep class shows there alone.
    only = img.copy()
    only[classes == 2] += 1
    assert er.error_regions(img, only, classes)["sse"][:2] == [0.0, 0.0]

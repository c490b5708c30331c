"""benchmarks/kernels_time.py: a training step's kernels, each timed alone."""

from __future__ import annotations

import numpy as np
from PIL import Image

KERNELS = ["latent_inputs", "column_pass", "mlp_grad", "latent_grad", "rate_walk",
           "table_rate", "adam_latents"]


def test_times_every_kernel_of_a_step(load_benchmark, make_image, tmp_path, capsys):
    bench = load_benchmark("kernels_time")
    path = tmp_path / "tiny.png"
    Image.fromarray(make_image(72, 40, 3)).save(path)
    assert bench.main([str(path), "--budget", "600", "--runs", "2", "--warm-steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "tiny.png, 600 bytes, 2 runs" in out
    for name in KERNELS:
        line = next(ln for ln in out.splitlines() if ln.split()[:1] == [name])
        med, lo = float(line.split()[2]), float(line.split()[4])
        assert 0.0 <= lo <= med


def test_the_calls_are_the_steps_kernels_on_live_inputs(load_benchmark, make_image):
    """The seven kernels of a step, each called once untimed and then runs
    times; the column pass gives finite values for the step's latents."""
    bench = load_benchmark("kernels_time")
    img = make_image(40, 24, 3)
    calls = bench.kernel_calls(img, 300, 1)
    assert list(calls) == KERNELS
    counts = {}

    def counted(name, fn):
        def call():
            counts[name] = counts.get(name, 0) + 1
            return fn()
        return call

    res = bench.time_calls({k: counted(k, f) for k, f in calls.items()}, 3)
    assert counts == {k: 4 for k in KERNELS}
    assert all(med >= lo >= 0.0 for med, lo in res.values())
    c, _ = calls["column_pass"]()
    assert c.size and np.isfinite(c).all()

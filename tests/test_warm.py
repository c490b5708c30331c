"""The cold-cache helper compiles exactly the coding kernels the encoder uses.

On a cold kernel cache the encoder starts ``python -m nncodec._warm`` to
compile the entropy coder, the renderer and the decoder while it compiles the
training kernels itself. If the helper compiled other type signatures than
the encoder's, the encoder would silently compile them again and the helper
would buy nothing: here a fresh cache is filled by the helper alone, then an
encode and a decode must load every coding kernel from it and compile none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nncodec

SRC = Path(nncodec.__file__).resolve().parent.parent

_SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    import nncodec
    from nncodec import _warm
    from nncodec.encoder import encode_stats

    before = _warm.cached(_warm.coding_kernels())
    y, x = np.mgrid[0:40, 0:56]
    img = np.stack([x * 4, y * 5, (x + y) * 2], -1).astype(np.uint8)
    data, st = encode_stats(img, budget=400, preset="fast", steps=30)
    nncodec.decode(data, (23, 17))
    stats = {k.py_func.__name__: [sum(k.stats.cache_hits.values()),
                                  sum(k.stats.cache_misses.values())]
             for k in _warm.coding_kernels()}
    print(json.dumps({"cached_before": before, "started": _warm._started, "stats": stats}))
""")


def _env(cache: Path, **extra) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH")) if p)
    return env


def test_cold_cache_reports_uncached(tmp_path):
    code = "from nncodec import _warm; print(_warm.cached(_warm.coding_kernels()))"
    out = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True,
                         text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_helper_compiles_the_encoders_coding_kernels(tmp_path):
    subprocess.run([sys.executable, "-m", "nncodec._warm"], env=_env(tmp_path), check=True,
                   timeout=600)
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=_env(tmp_path),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["cached_before"] is True
    assert res["started"] is False  # nothing left for a helper to do
    for name, (hits, misses) in res["stats"].items():
        assert misses == 0, f"{name} was compiled again in the encoder: {res['stats']}"
        assert hits >= 1, f"{name} was never loaded from the cache: {res['stats']}"

"""Compile the coding kernels in a helper process on a cold kernel cache.

After a fresh install the first encode compiles every kernel, one after the
other, on one core: about 22 s on a 2-core machine. Half of that is the
training kernels, which the encoder needs at once; the other half is the
entropy coder, the renderer and the decoder, which it first needs about 25
steps later. On a cold cache the encoder therefore starts this module as a
helper process (``python -m nncodec._warm``) that compiles the coding kernels
on a tiny model while the encoder compiles the training kernels; by the time
the encoder reaches the coding kernels it loads them from numba's cache.

The helper only writes numba's own cache. If it fails, is slow or cannot
start, the encoder compiles those kernels itself as before: the outcome never
depends on the helper, only the time to get there.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys

_started = False


def _index_exists(dispatcher) -> bool:
    """Whether numba's cache holds an index for this kernel (any signature)."""
    try:
        return os.path.exists(dispatcher._cache._cache_file._index_path)
    except AttributeError:  # a numba without this layout: assume cached
        return True


def coding_kernels() -> list:
    from .entropy import _decode_all, _encode_all
    from .field import _render

    return [_encode_all, _render, _decode_all]


def training_kernels() -> list:
    from .train import _grid_grad_cols, _mlp_grad

    return [_mlp_grad, _grid_grad_cols]


def cached(kernels) -> bool:
    return all(_index_exists(k) for k in kernels)


def start_helper() -> bool:
    """Start the helper once per process if the coding kernels are not cached.

    Returns whether a helper was started.
    """
    global _started
    if (_started or not sys.executable or os.environ.get("NNCODEC_NO_WARM_HELPER")
            or cached(coding_kernels())):
        return False
    _started = True
    # The helper must import this copy of the package, so that it fills the
    # cache this process reads.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    try:
        helper = subprocess.Popen([sys.executable, "-m", "nncodec._warm"],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=path))
    except OSError:
        return False
    atexit.register(_reap, helper)
    return True


def _reap(helper) -> None:
    """At exit, let a running helper finish (it lives about 10 s) and reap it."""
    try:
        helper.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass


def compile_coding_kernels() -> None:
    """Run the entropy coder, the renderer and the decoder on a tiny model."""
    import numpy as np

    from .decoder import decode
    from .encoder import _default_steps, _file, _quantize_theta, choose_spec
    from .field import render

    w, h = 48, 32
    spec = choose_spec(w, h, 3, 600)
    theta = np.zeros(spec.n_params, np.float32)
    ws, bs = _default_steps(spec, theta)
    q, deq = _quantize_theta(spec, theta, ws, bs)
    latq = np.zeros(spec.n_latents, np.int64)
    data = _file(spec, q, ws, bs, latq)  # the entropy coder, first needed first
    render(spec, deq, latq.astype(np.float32), w, h)
    decode(data)


if __name__ == "__main__":
    compile_coding_kernels()

"""One place for every numba compile flag the project uses.

Kernels import ``njit`` / ``pjit`` from here instead of calling ``numba.njit``
themselves, so flags (caching, fastmath, threading layer) are set once.

Nothing compiles at import: numba compiles a kernel on its first call, and
``cache=True`` stores the machine code next to the module so that later
processes load it in a fraction of a second.

Determinism: parallel loops run over fixed-size tiles whose partial results
are reduced in tile order, never over threads, and no kernel uses
``fastmath`` but the training's dot products (:data:`njit_reassoc`).
Decoding never uses it: the decoder's arithmetic is the same on every build.
"""

from __future__ import annotations

import os

import numba

# The OpenMP / TBB layers cost milliseconds per parallel region on small
# machines; the workqueue layer costs tens of microseconds. Respect an
# explicit user choice.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

_FLAGS = dict(cache=True, nogil=True, fastmath=False, error_model="numpy")

#: Compile a serial kernel.
njit = numba.njit(**_FLAGS)


#: Compile a serial helper whose float sums LLVM may reassociate (fastmath
#: ``reassoc`` alone, no other fastmath flag), so that a dot product's loop
#: runs in vector registers with several partial sums. The order is the
#: build's choice (the vector width of the machine that compiled it), fixed
#: for every run of that build and for any number of threads; encoder only.
njit_reassoc = numba.njit(cache=True, nogil=True, fastmath={"reassoc"}, error_model="numpy")


def pjit(fn):
    """Compile a kernel whose ``prange`` loops run in parallel."""
    return numba.njit(parallel=True, **_FLAGS)(fn)


prange = numba.prange

#: Pixels per tile in parallel loops. Fixed, so that results never depend on
#: the number of threads.
TILE = 4096

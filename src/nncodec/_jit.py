"""One place for every numba compile flag the project uses.

Kernels import ``njit`` / ``pjit`` from here instead of calling ``numba.njit``
themselves, so flags (caching, fastmath, threading layer) are set once.

Nothing compiles at import: numba compiles a kernel on its first call, and
``cache=True`` stores the machine code next to the module so that later
processes load it in a fraction of a second.

Determinism: no kernel uses ``fastmath`` (it would let LLVM reorder float
sums differently per build) and parallel loops run over fixed-size tiles
whose partial results are reduced in tile order, never over threads.
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


def pjit(fn):
    """Compile a kernel whose ``prange`` loops run in parallel."""
    return numba.njit(parallel=True, **_FLAGS)(fn)


prange = numba.prange

#: Pixels per tile in parallel loops. Fixed, so that results never depend on
#: the number of threads.
TILE = 4096

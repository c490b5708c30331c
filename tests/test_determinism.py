"""The same bytes and the same pixels whatever the number of threads.

One subprocess per thread count (``NUMBA_NUM_THREADS`` is read when numba
starts) encodes a small image through the public API and decodes the file at
several sizes; the outputs must be identical. The image has more pixels than
one training tile (``_jit.TILE``), so training reduces over several tiles, and
the renders have many rows, so they are split between threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nncodec
from nncodec._jit import TILE

SRC = Path(nncodec.__file__).resolve().parent.parent

_SCRIPT = textwrap.dedent("""
    import hashlib
    import numba
    import numpy as np
    import nncodec
    from nncodec.encoder import encode_stats

    sha = lambda b: hashlib.sha256(b).hexdigest()[:32]
    print("module", nncodec.__file__)
    print("threads", numba.get_num_threads())
    y, x = np.mgrid[0:64, 0:96]
    img = np.stack([x * 2, y * 3, (x + y) // 2], -1).astype(np.uint8)
    img[20:44, 30:70] = (200, 40, 90)
    data, st = encode_stats(img, budget=300, preset="fast", steps=60)
    print("file", len(data), sha(data))
    for size, scale in ((None, None), ((97, 61), None), ((9, 7), None), (None, 2.5)):
        out = nncodec.decode(data, size, scale=scale)
        print("decode", size, scale, out.shape, sha(out.tobytes()))
""")


def _run(threads: int) -> list[str]:
    # The subprocess must import this source tree, whatever is installed.
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads), PYTHONPATH=str(SRC))
    r = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def test_encode_and_decode_do_not_depend_on_thread_count():
    assert 96 * 64 > TILE
    one, two = _run(1), _run(2)
    assert one[0] == two[0] == f"module {Path(nncodec.__file__).resolve()}"
    assert one[1] == "threads 1" and two[1] == "threads 2"
    assert one[2].startswith("file ") and int(one[2].split()[1]) <= 300
    assert len(one) == 7 and one[2:] == two[2:]

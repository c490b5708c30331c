"""Encode many files: in this process, in a local process pool, or on a Dask cluster.

Every input is read here and sent to the worker as bytes, and the worker
returns the ``.nni`` bytes, which are written here (atomically) as
``OUTDIR/<stem>.nni``: workers need no shared file system. A file that fails
is reported in its :class:`FileResult` and does not stop the batch.

Local pools use the ``spawn`` start method and give each worker an equal
share of the cores for its numba threads. On Dask, workers need nncodec
installed; one encode runs at a time per worker process (numba's threading
layer is not re-entrant), so start workers with ``--nthreads 1``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError, NniError

#: Tasks in flight per worker: enough to keep workers busy, few enough that
#: the inputs are not all held in memory at once.
IN_FLIGHT_PER_WORKER = 2

_ENCODE_LOCK = threading.Lock()


@dataclass
class FileResult:
    """The outcome of one file of a batch."""

    input: str
    output: str
    bytes: int = 0
    budget: int = 0
    psnr: float = 0.0
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def output_paths(inputs: Iterable[str | os.PathLike], outdir: str | os.PathLike) -> list[Path]:
    """``OUTDIR/<stem>.nni`` for every input; InputError if two inputs share a name."""
    seen = {}
    out = []
    for src in inputs:
        path = Path(outdir) / (Path(src).stem + ".nni")
        if path in seen:
            raise InputError(f"inputs {os.fspath(seen[path])} and {os.fspath(src)} would both be "
                             f"written to {path}")
        seen[path] = src
        out.append(path)
    return out


def encode_one(name: str, data: bytes, options: dict) -> tuple[dict, bytes]:
    """Encode one image given as the bytes of file ``name``; runs in a worker.

    Returns ``(stats, nni_bytes)``; on a failure ``({"error": message}, b"")``
    (errors are data here, so that one bad file never stops a batch).
    """
    from .encoder import encode_stats
    from .metadata import from_image, pack

    opts = dict(options)
    keep = opts.pop("keep_metadata", False)
    try:
        with _ENCODE_LOCK:
            meta = pack(from_image(data)) if keep else b""
            nni, st = encode_stats(data, metadata=meta, **opts)
    except NniError as e:
        # The image travelled as bytes: name the file instead.
        return {"error": str(e).replace("<bytes>", name)}, b""
    except MemoryError:
        return {"error": "out of memory"}, b""
    return {"bytes": st.bytes, "budget": st.budget, "psnr": st.psnr,
            "seconds": st.seconds}, nni


def _init_worker(threads: int) -> None:
    """Pool initializer: share the cores between the workers."""
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


def _run_here(tasks: Iterator, options: dict):
    for key, name, data in tasks:
        try:
            yield key, encode_one(name, data, options)
        except Exception as e:  # noqa: BLE001 - reported per file, like a worker failure
            yield key, e


def _run_pool(tasks: Iterator, options: dict, jobs: int):
    import multiprocessing
    from concurrent.futures import BrokenExecutor

    threads = max(1, (os.cpu_count() or 1) // jobs)
    ex = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=(threads,))
    pending = {}
    broken = None
    try:
        while True:
            while broken is None and len(pending) < IN_FLIGHT_PER_WORKER * jobs:
                task = next(tasks, None)
                if task is None:
                    break
                try:
                    pending[ex.submit(encode_one, task[1], task[2], options)] = task[0]
                except BrokenExecutor as e:
                    broken = e
                    yield task[0], e
            if broken is not None:
                # A dead pool takes no more work: fail what is left.
                for task in tasks:
                    yield task[0], broken
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                key = pending.pop(fut)
                exc = fut.exception()
                if isinstance(exc, BrokenExecutor):
                    broken = exc
                yield key, exc if exc is not None else fut.result()
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _dask_client(scheduler):
    """A ``distributed.Client`` for an address (or the client passed in)."""
    try:
        import distributed
    except ImportError:
        raise NniError("running on a Dask cluster needs dask and distributed: "
                       "pip install 'nncodec[dask]'") from None
    if isinstance(scheduler, distributed.Client):
        return scheduler, False
    try:
        return distributed.Client(scheduler, timeout="30s"), True
    except (OSError, TimeoutError, ValueError) as e:
        raise NniError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None


def _run_dask(tasks: Iterator, options: dict, client):
    from distributed import as_completed

    limit = IN_FLIGHT_PER_WORKER * max(1, sum(client.nthreads().values()))
    pending = {}
    running = as_completed()

    def fill():
        while len(pending) < limit:
            task = next(tasks, None)
            if task is None:
                return
            data = client.scatter(task[2], hash=False)
            fut = client.submit(encode_one, task[1], data, options, pure=False)
            pending[fut] = task[0]
            running.add(fut)

    fill()
    for fut in running:
        key = pending.pop(fut)
        try:
            yield key, fut.result()
        except Exception as e:  # noqa: BLE001 - a lost worker fails this file only
            yield key, e
        fill()


def encode_files(inputs: Iterable[str | os.PathLike], outdir: str | os.PathLike, *, budget,
                 preset: str = "default", seed: int = 0, model: str = "grid",
                 keep_metadata: bool = False, jobs: int = 1, scheduler=None,
                 on_result: Callable[[FileResult], None] | None = None,
                 steps: int | None = None) -> list[FileResult]:
    """Encode image files into ``OUTDIR/<stem>.nni``; returns one result per input, in order.

    Args:
        inputs: image paths.
        outdir: output directory, created if missing.
        budget, preset, seed, model: as for :func:`nncodec.encode`.
        keep_metadata: store each image's ICC profile and Exif (counted in
            the budget).
        jobs: worker processes on this machine (1: encode in this process).
        scheduler: a Dask scheduler address (``"tcp://host:8786"``) or a
            ``distributed.Client``; the batch then runs on that cluster and
            ``jobs`` is ignored.
        on_result: called with each :class:`FileResult` as it completes.
        steps: training steps instead of the preset's (for quick trials).
    Raises:
        BudgetError / InputError: for a malformed budget or preset, clashing
            output names or an unusable output directory (nothing is encoded).
    """
    from .encoder import PRESETS, parse_budget

    inputs = [os.fspath(p) for p in inputs]
    nbytes = parse_budget(budget)
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
    if int(jobs) < 1:
        raise InputError(f"jobs must be at least 1, got {jobs}")
    outs = output_paths(inputs, outdir)
    client, owned = _dask_client(scheduler) if scheduler is not None else (None, False)
    try:
        return _encode_files(inputs, outs, outdir, nbytes, {
            "budget": nbytes, "preset": preset, "seed": seed, "model": model,
            "keep_metadata": keep_metadata, "steps": steps}, int(jobs), client, on_result)
    finally:
        if owned:
            client.close()


def _encode_files(inputs, outs, outdir, nbytes, options, jobs, client, on_result):
    from ._files import read_input, write_atomic

    try:
        Path(outdir).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create output directory {os.fspath(outdir)}: "
                         f"{e.strerror or e}") from None
    results = [FileResult(src, os.fspath(out), budget=nbytes) for src, out in zip(inputs, outs)]

    def report(r: FileResult) -> None:
        if on_result is not None:
            on_result(r)

    def tasks():
        for k, src in enumerate(inputs):
            try:
                yield k, src, read_input(src)
            except NniError as e:
                results[k].error = str(e)
                report(results[k])

    if client is not None:
        runner = _run_dask(tasks(), options, client)
    elif jobs > 1:
        runner = _run_pool(tasks(), options, jobs)
    else:
        runner = _run_here(tasks(), options)
    for k, outcome in runner:
        r = results[k]
        if isinstance(outcome, BaseException):
            r.error = f"worker failed: {type(outcome).__name__}: {outcome}"
        else:
            stats, nni = outcome
            if "error" in stats:
                r.error = stats["error"]
            else:
                try:
                    write_atomic(r.output, nni)
                    r.bytes, r.psnr, r.seconds = stats["bytes"], stats["psnr"], stats["seconds"]
                except NniError as e:
                    r.error = str(e)
        report(r)
    return results


def summary(results: list[FileResult], wall_seconds: float) -> list[str]:
    """Lines of a batch summary: one per file, then the totals."""
    width = max([len(r.input) for r in results] + [4])
    lines = [f"{'file':<{width}}  {'bytes':>8}  {'budget':>8}  {'PSNR dB':>7}  {'seconds':>7}"]
    for r in results:
        if r.ok:
            lines.append(f"{r.input:<{width}}  {r.bytes:>8}  {r.budget:>8}  {r.psnr:>7.2f}  "
                         f"{r.seconds:>7.1f}")
        else:
            lines.append(f"{r.input:<{width}}  failed: {r.error}")
    ok = [r for r in results if r.ok]
    total = f"{len(results)} files: {len(ok)} encoded, {len(results) - len(ok)} failed"
    if ok:
        total += (f"; {sum(r.bytes for r in ok)} bytes, mean {sum(r.psnr for r in ok) / len(ok):.2f}"
                  f" dB, {sum(r.seconds for r in ok):.1f} s encoding")
    lines.append(total + f", {wall_seconds:.1f} s wall")
    return lines

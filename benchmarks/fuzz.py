"""Long decoder fuzz runs.

    python benchmarks/fuzz.py --cases 100000 --seed 1 --out benchmarks/results/fuzz-100k.json

Builds the corpus and the cases of ``tests/fuzzing.py`` (the engine the test
suite runs on 2,000 cases) and checks every case the same way: only
``nncodec.NniError`` escapes from ``nncodec.decode`` / ``nncodec.info`` and the
CLI ``decode`` / ``info``, the API and the CLI agree, every call stays within
``CPU_LIMIT`` seconds of CPU time (and ``WALL_LIMIT`` of wall-clock time), and
every ``--mem-every``-th case stays within the ``tracemalloc`` memory bound.

Two backstops for what a check inside the process cannot see:

* the address space of the process is limited (``RLIMIT_AS``) to its size
  after warm-up plus ``--headroom`` MiB, so an allocation the traced cases
  miss (numba's own allocations, untraced cases) raises ``MemoryError``,
  which counts as a failure, instead of exhausting the machine;
* a watchdog thread ends the run with a traceback of every thread if one
  case takes more than ``--hang`` seconds; results written so far are kept
  (the output is rewritten every 1,000 cases).

The output JSON holds the command, the duration, counts (decoded, refused by
error class, by mutator and CRC mode, by error message with the numbers
taken out), the slowest cases, the largest traced
peak, and every failing case with its input in hex (at most ``--keep``).
Case ``i`` can be rebuilt alone: ``fuzzing.make_case(seed, i, corpus)``.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import platform
import re
import resource
import shlex
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
try:
    import nncodec  # noqa: F401
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(ROOT / "src"))

import fuzzing  # noqa: E402
import nncodec  # noqa: E402


def _vm_size() -> int | None:
    """Bytes of address space the process uses (Linux), else None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Watchdog:
    """Dump every thread's traceback and exit if a case runs longer than ``limit`` seconds."""

    def __init__(self, limit: float):
        self.limit = limit
        self.case = None
        self.started = 0.0
        threading.Thread(target=self._run, daemon=True).start()

    def start(self, case: int) -> None:
        self.started, self.case = time.monotonic(), case

    def stop(self) -> None:
        self.case = None

    def _run(self) -> None:
        while True:
            time.sleep(1.0)
            case = self.case
            if case is not None and time.monotonic() - self.started > self.limit:
                print(f"case {case} runs longer than {self.limit} s: aborting", file=sys.stderr)
                faulthandler.dump_traceback(all_threads=True)
                os._exit(3)


def _machine() -> dict:
    import numba
    import numpy

    return {"platform": platform.platform(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "numpy": numpy.__version__,
            "numba": numba.__version__, "numba_threads": numba.get_num_threads(),
            "nncodec": nncodec.__version__}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=10000, help="number of cases (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the case generator (default 0)")
    p.add_argument("--out", required=True, help="results JSON to write")
    p.add_argument("--start", type=int, default=0, help="first case index (default 0)")
    p.add_argument("--cap", type=int, default=fuzzing.FUZZ_MAX_PIXELS,
                   help="max_pixels of every decode (default %(default)s)")
    p.add_argument("--mem-every", type=int, default=10,
                   help="trace memory on every N-th case (0: never; default 10)")
    p.add_argument("--cli-every", type=int, default=1,
                   help="check the CLI on every N-th case (0: never; default 1)")
    p.add_argument("--headroom", type=int, default=4096,
                   help="MiB of address space allowed beyond the size after warm-up "
                        "(0: no limit; default 4096)")
    p.add_argument("--hang", type=float, default=120.0,
                   help="abort the run if one case takes longer (seconds, default 120)")
    p.add_argument("--keep", type=int, default=200, help="failing cases stored in full")
    args = p.parse_args(argv)

    t_start = time.perf_counter()
    corpus = fuzzing.make_corpus()
    fuzzing.warm_up(corpus)
    vm = _vm_size()
    if args.headroom > 0 and vm is not None:
        limit = vm + (args.headroom << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    setup_s = time.perf_counter() - t_start

    failures, slowest = [], []
    counts, messages = Counter(), Counter()
    by_mutator: dict[str, Counter] = {}
    max_peak = 0
    n_failed = 0
    t0 = time.perf_counter()

    def write(done: int, final: bool) -> None:
        report = {
            "command": "python benchmarks/fuzz.py " + " ".join(shlex.quote(a) for a in
                                                               (argv if argv is not None
                                                                else sys.argv[1:])),
            "complete": final, "seed": args.seed, "start": args.start, "cases": done,
            "failures": n_failed, "seconds": round(time.perf_counter() - t0, 1),
            "setup_seconds": round(setup_s, 1), "cap_pixels": args.cap,
            "cpu_limit_s": fuzzing.CPU_LIMIT, "wall_limit_s": fuzzing.WALL_LIMIT, "mem_every": args.mem_every, "cli_every": args.cli_every,
            "address_space_limit_mib": (None if args.headroom <= 0 or vm is None
                                        else (vm >> 20) + args.headroom),
            "corpus": [name for name, _ in corpus],
            "outcomes": dict(sorted(counts.items())),
            "by_mutator": {m: dict(sorted(c.items())) for m, c in sorted(by_mutator.items())},
            "refusals": dict(messages.most_common(40)),
            "max_traced_peak_bytes": max_peak,
            "slowest": [{"case": i, "cpu_s": c, "wall_s": w} for c, w, i in slowest],
            "machine": _machine(),
            "failed_cases": failures,
        }
        tmp = Path(args.out).with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1) + "\n")
        os.replace(tmp, args.out)

    with tempfile.TemporaryDirectory(prefix="nncodec-fuzz-") as work:
        work = Path(work)
        done = 0
        watchdog = Watchdog(args.hang)
        for i in range(args.start, args.start + args.cases):
            watchdog.start(i)
            case = fuzzing.make_case(args.seed, i, corpus)
            trace = args.mem_every > 0 and i % args.mem_every == 0
            cli = args.cli_every > 0 and i % args.cli_every == 0
            res = fuzzing.check_case(case, work, cap=args.cap, trace=trace, cli=cli)
            watchdog.stop()
            done += 1
            outcome = ("failed" if res.failures else "decoded" if res.decoded
                       else f"refused:{res.error}")
            counts[outcome] += 1
            if res.message is not None:  # numbers and quoted text out: one entry per kind
                messages[f"{res.error}: " + re.sub(r"\d+", "N", re.sub(r"'[^']*'", "'…'",
                                                                         res.message))] += 1
            counts[f"mode:{case.mode}:{'decoded' if res.decoded else 'refused'}"] += 1
            for m in case.mutators:
                by_mutator.setdefault(m, Counter())["decoded" if res.decoded else "refused"] += 1
            slowest.append((round(res.cpu_seconds, 3), round(res.seconds, 3), i))
            slowest = sorted(slowest, reverse=True)[:10]
            if res.peak is not None:
                max_peak = max(max_peak, res.peak)
            if res.failures:
                n_failed += 1
                if len(failures) < args.keep:
                    failures.append(fuzzing.describe(case, res))
                print(f"case {i}: FAILED {res.failures}", file=sys.stderr)
            if done % 1000 == 0:
                write(done, False)
                print(f"{done} cases, {n_failed} failed, {time.perf_counter() - t0:.0f} s",
                      file=sys.stderr)
    write(done, True)
    print(f"{done} cases in {time.perf_counter() - t0:.0f} s: {n_failed} failed", file=sys.stderr)
    return 1 if n_failed else 0


if __name__ == "__main__":
    sys.exit(main())

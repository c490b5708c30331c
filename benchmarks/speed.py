"""Speed benchmark: encode per preset, decode at 1x and x4, compile, import, threads.

Every measurement runs in a fresh subprocess with a controlled environment
(``NUMBA_NUM_THREADS``, ``NUMBA_CACHE_DIR``), so thread counts and the kernel
cache are what the row says:

- ``import``: time of ``import nncodec`` inside a fresh interpreter (median),
  and of the interpreter start alone for reference.
- ``compile``: first encode + decode in a process whose kernel cache
  directory is empty (numba compiles every kernel), minus the same work in a
  process with the cache filled; medians of ``--compile-runs``. Measured as
  shipped (the encoder compiles the coding kernels in a helper process, see
  ``nncodec._warm``) and with ``NNCODEC_NO_WARM_HELPER=1`` (all in one process).
- ``encode <preset>``: ``nncodec.encode`` of the image at the budget, after a
  warm-up encode of a tiny image (kernels loaded), median of ``--runs``.
- ``decode 1x`` / ``decode x4``: ``nncodec.decode`` in-process after a warm-up,
  median of ``--decode-runs``.
- ``cli decode``: ``nncodec decode IN.nni -o OUT.png`` as a whole process
  (warm cache), median of ``--runs``.
- ``huge``: a ``--huge`` x ``--huge`` render (default 8192) of the fast file in
  its own process: seconds and growth of the peak resident memory, beside the
  size of the output array.
- ``threads``: the default-preset encode and the 1x decode with
  ``NUMBA_NUM_THREADS=1`` and ``=2``; speed-up = t1 / t2, and whether the
  bytes (and decoded pixels) are identical.

MAC per pixel is counted from the model the encoder chose: per rendered pixel,
4 column + 4 row multiply-adds per grid and stencil point plus the MLP; per
training sample, the forward pass plus about twice the MLP for the backward.

Writes ``--out`` (JSON with the machine block) and prints a markdown table.

Example (about 15 minutes on 2 cores)::

    python benchmarks/speed.py --image ../shared/datasets/kodak/kodim23.png --budget 2k \\
        --out benchmarks/results/speed-kodim23-2k.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import baselines as B  # noqa: E402

DEFAULT_IMAGE = REPO.parent / "shared" / "datasets" / "kodak" / "kodim23.png"

# --------------------------------------------------------------------------- worker

_WORKER = r"""
import json, sys, time
t_start = time.perf_counter()
import numpy as np
import nncodec
from nncodec.encoder import encode_stats
from nncodec.imageio import load_image
args = json.loads(sys.argv[1])
out = {}
img = load_image(args["image"])
if args.get("warm", True):
    # Load (or compile) every kernel on a tiny image first.
    d0 = nncodec.encode(img[:32, :32], budget=200, preset="fast")
    nncodec.decode(d0)
t0 = time.perf_counter()
times, datas = [], []
for r in range(args["runs"]):
    t = time.perf_counter()
    data, st = encode_stats(img, budget=args["budget"], preset=args["preset"])
    times.append(time.perf_counter() - t)
    datas.append(data)
out["encode_s"] = times
out["bytes"] = len(datas[-1])
out["psnr"] = st.psnr
out["spec"] = {k: getattr(st.spec, k) for k in st.spec.__dataclass_fields__}
out["identical_runs"] = all(d == datas[0] for d in datas)
out["sha"] = __import__("hashlib").sha256(datas[0]).hexdigest()
h, w = img.shape[:2]
for label, size in (("decode_1x_s", None), ("decode_x4_s", (4 * w, 4 * h))):
    nncodec.decode(datas[0], size)
    ts = []
    for r in range(args["decode_runs"]):
        t = time.perf_counter()
        px = nncodec.decode(datas[0], size)
        ts.append(time.perf_counter() - t)
    out[label] = ts
    if size is None:
        out["decoded_sha"] = __import__("hashlib").sha256(px.tobytes()).hexdigest()
if args.get("write"):
    open(args["write"], "wb").write(datas[0])
out["process_s"] = time.perf_counter() - t_start
print("RESULT " + json.dumps(out))
"""


def _env(threads: int | None = None, cache_dir: str | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    if threads is not None:
        env["NUMBA_NUM_THREADS"] = str(threads)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    return env


def run_worker(args: dict, threads=None, cache_dir=None, extra_env=None) -> dict:
    env = dict(_env(threads, cache_dir), **(extra_env or {}))
    proc = subprocess.run([sys.executable, "-c", _WORKER, json.dumps(args)],
                          env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"worker failed:\n{proc.stderr[-2000:]}")


def timed_process(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def med(xs) -> float:
    return statistics.median(xs)


# --------------------------------------------------------------------------- MACs


def macs(spec: dict) -> tuple[int, int]:
    """(MAC per rendered pixel, MAC per training sample) of a model spec."""
    from rd import import_nncodec

    import_nncodec()
    from nncodec.field import grid_points

    grids = spec["n_levels"] + 2 * spec["n_chroma"]
    points = sum(len(grid_points(spec["stencil"], g)) for g in range(grids))
    n_in = points + 4 * spec["n_fourier"]
    widths = [n_in] + [spec["hidden_width"]] * spec["n_hidden"] + [spec["channels"]]
    mlp = sum(a * b for a, b in zip(widths[:-1], widths[1:]))
    feat = 8 * points
    return feat + mlp, feat + 3 * mlp + 8 * points


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default=str(DEFAULT_IMAGE))
    ap.add_argument("--budget", default="2k")
    ap.add_argument("--presets", default="fast,default")
    ap.add_argument("--runs", type=int, default=5, help="encode runs per preset (median)")
    ap.add_argument("--decode-runs", type=int, default=9)
    ap.add_argument("--skip-threads", action="store_true")
    ap.add_argument("--skip-compile", action="store_true")
    ap.add_argument("--compile-runs", type=int, default=3,
                    help="cold-cache processes per variant (with and without the helper)")
    ap.add_argument("--huge", type=int, default=8192,
                    help="side of the square render whose peak memory is measured (0: skip)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if not Path(a.image).is_file():
        ap.error(f"image not found: {a.image}")
    budget = B.parse_budget(a.budget)
    doc = {"machine": B.machine_info(), "image": str(a.image), "budget": budget,
           "runs": a.runs, "rows": {}}
    rows = doc["rows"]

    # Warm the shared cache once (compiles if needed) and keep a file for the CLI.
    tmp = tempfile.mkdtemp(prefix="nnspeed-")
    nni = os.path.join(tmp, "x.nni")
    run_worker({"image": a.image, "budget": budget, "preset": "fast", "runs": 1,
                "decode_runs": 1, "write": nni})

    code = "import time; t = time.perf_counter(); import nncodec; print(time.perf_counter() - t)"
    t_imp = [float(subprocess.run([sys.executable, "-c", code], env=_env(), check=True,
                                  capture_output=True, text=True).stdout)
             for _ in range(a.runs)]
    rows["import_s"] = med(t_imp)
    rows["python_start_s"] = med([timed_process([sys.executable, "-c", "pass"], _env())
                                  for _ in range(a.runs)])
    t_cli = [timed_process([sys.executable, "-m", "nncodec", "decode", nni, "-o",
                            os.path.join(tmp, "o.png")], _env()) for _ in range(a.runs)]
    rows["cli_decode_s"] = med(t_cli)
    print(f"import {rows['import_s']:.3f} s, cli decode {rows['cli_decode_s']:.3f} s", flush=True)

    if a.huge:
        code = ("import resource, sys, time, numpy as np, nncodec\n"
                "d = open(sys.argv[1], 'rb').read(); n = int(sys.argv[2])\n"
                "nncodec.decode(d)\n"
                "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
                "t = time.perf_counter(); px = nncodec.decode(d, (n, n), max_pixels=None)\n"
                "dt = time.perf_counter() - t\n"
                "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
                "print(dt, base * 1024, peak * 1024, px.nbytes)")
        out = subprocess.run([sys.executable, "-c", code, nni, str(a.huge)], env=_env(),
                             check=True, capture_output=True, text=True).stdout.split()
        dt, base, peak, nbytes = float(out[0]), int(out[1]), int(out[2]), int(out[3])
        rows["huge"] = {"side": a.huge, "seconds": dt, "output_mb": nbytes / 2**20,
                        "peak_rss_over_start_mb": (peak - base) / 2**20}
        print(f"render {a.huge}x{a.huge}: {dt:.1f} s, output {nbytes / 2**20:.0f} MB, peak RSS "
              f"grew {(peak - base) / 2**20:.0f} MB", flush=True)

    if not a.skip_compile:
        w = {"image": a.image, "budget": budget, "preset": "fast", "runs": 1, "decode_runs": 1,
             "warm": False}
        cold, serial, warm = [], [], []
        for _ in range(a.compile_runs):
            # As shipped (the encoder starts the cold-cache helper), then with
            # the helper disabled: every kernel compiled in the encoding process.
            d = tempfile.mkdtemp(prefix="nnspeed-cache-")
            cold.append(run_worker(w, cache_dir=d)["process_s"])
            warm.append(run_worker(w, cache_dir=d)["process_s"])
            d = tempfile.mkdtemp(prefix="nnspeed-cache-")
            serial.append(run_worker(w, cache_dir=d,
                                     extra_env={"NNCODEC_NO_WARM_HELPER": "1"})["process_s"])
        rows["compile_s"] = med(cold) - med(warm)
        rows["compile_serial_s"] = med(serial) - med(warm)
        rows["compile_runs"] = {"cold": cold, "cold_no_helper": serial, "warm": warm}
        print(f"compile {rows['compile_s']:.1f} s, {rows['compile_serial_s']:.1f} s without the "
              f"helper process (medians of {a.compile_runs}: cold process {med(cold):.1f} s, "
              f"without helper {med(serial):.1f} s, warm {med(warm):.1f} s)", flush=True)

    for preset in a.presets.split(","):
        r = run_worker({"image": a.image, "budget": budget, "preset": preset, "runs": a.runs,
                        "decode_runs": a.decode_runs})
        mac_px, mac_train = macs(r["spec"])
        rows[preset] = {"encode_s": med(r["encode_s"]), "encode_runs_s": r["encode_s"],
                        "bytes": r["bytes"], "psnr": r["psnr"],
                        "decode_1x_ms": 1000 * med(r["decode_1x_s"]),
                        "decode_x4_ms": 1000 * med(r["decode_x4_s"]),
                        "mac_per_pixel": mac_px, "mac_per_train_sample": mac_train,
                        "identical_runs": r["identical_runs"], "spec": r["spec"]}
        print(f"{preset}: encode {rows[preset]['encode_s']:.1f} s, {r['bytes']} B, "
              f"{r['psnr']:.2f} dB, decode {rows[preset]['decode_1x_ms']:.1f} / "
              f"{rows[preset]['decode_x4_ms']:.0f} ms", flush=True)

    if not a.skip_threads:
        res = {}
        for n in (1, 2):
            res[n] = run_worker({"image": a.image, "budget": budget, "preset": "default",
                                 "runs": max(1, a.runs // 2), "decode_runs": a.decode_runs},
                                threads=n)
        rows["threads"] = {
            "encode_1_s": med(res[1]["encode_s"]), "encode_2_s": med(res[2]["encode_s"]),
            "encode_speedup": med(res[1]["encode_s"]) / med(res[2]["encode_s"]),
            "decode_1_ms": 1000 * med(res[1]["decode_1x_s"]),
            "decode_2_ms": 1000 * med(res[2]["decode_1x_s"]),
            "decode_speedup": med(res[1]["decode_1x_s"]) / med(res[2]["decode_1x_s"]),
            "identical_bytes": res[1]["sha"] == res[2]["sha"],
            "identical_pixels": res[1]["decoded_sha"] == res[2]["decoded_sha"],
        }
        print("threads:", json.dumps(rows["threads"]), flush=True)

    print()
    print(table(doc))
    if a.out:
        B.write_json_atomic(a.out, doc)
    return 0


def table(doc: dict) -> str:
    rows = doc["rows"]
    lines = ["| measurement | value |", "|---|---|"]
    for preset in ("fast", "default", "slow"):
        if preset in rows:
            r = rows[preset]
            lines.append(f"| encode `{preset}` (median of {doc['runs']}) | {r['encode_s']:.1f} s, "
                         f"{r['bytes']} B, {r['psnr']:.2f} dB |")
    for preset in ("default", "fast"):
        if preset in rows:
            r = rows[preset]
            lines.append(f"| decode 1x / x4 (`{preset}` file) | {r['decode_1x_ms']:.1f} ms / "
                         f"{r['decode_x4_ms']:.0f} ms |")
            lines.append(f"| MAC per pixel: render / training sample | {r['mac_per_pixel']} / "
                         f"{r['mac_per_train_sample']} |")
            break
    if "huge" in rows:
        h = rows["huge"]
        lines.append(f"| render {h['side']}x{h['side']} (`fast` file) | {h['seconds']:.1f} s; peak "
                     f"memory +{h['peak_rss_over_start_mb']:.0f} MB for a {h['output_mb']:.0f} MB "
                     f"output |")
    if "compile_s" in rows:
        lines.append(f"| kernel compile (first run, empty cache) | {rows['compile_s']:.1f} s "
                     f"({rows['compile_serial_s']:.1f} s without the helper process) |")
    lines.append(f"| `import nncodec` (in a fresh interpreter) | {1000 * rows['import_s']:.0f} ms "
                 f"(interpreter start alone: {1000 * rows['python_start_s']:.0f} ms) |")
    lines.append(f"| `nncodec decode` whole process | {rows['cli_decode_s']:.2f} s |")
    if "threads" in rows:
        t = rows["threads"]
        lines.append(f"| encode 1 -> 2 threads | {t['encode_1_s']:.1f} -> {t['encode_2_s']:.1f} s "
                     f"(x{t['encode_speedup']:.2f}), identical bytes: {t['identical_bytes']} |")
        lines.append(f"| decode 1 -> 2 threads | {t['decode_1_ms']:.1f} -> {t['decode_2_ms']:.1f} "
                     f"ms (x{t['decode_speedup']:.2f}), identical pixels: "
                     f"{t['identical_pixels']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

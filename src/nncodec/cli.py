"""Command line: ``nncodec encode | decode | info``. Owns the terminal."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from ._files import read_input as _read
from ._files import write_atomic as _write_atomic
from .errors import InputError, NniError

EXAMPLES = """examples:
  nncodec encode photo.png -o photo.nni --budget 2kb
  nncodec encode photo.jpg -o photo.nni --budget 4kb --keep-metadata
  nncodec encode photo.png -o photo.nni --budget 2kb --video training.webp
  nncodec encode *.png -o out/ --budget 4kb --jobs 2
  nncodec encode *.png -o out/ --budget 4kb --scheduler tcp://host:8786
  nncodec decode photo.nni -o photo.png
  nncodec decode photo.nni -o big.png --scale 4
  nncodec decode photo.nni -o thumb.jpg --size 192x128
  nncodec info photo.nni
  cat photo.png | nncodec encode - -o - --budget 4k > photo.nni

budgets are bytes: 2048, 2k, 2kb, 2KiB (1 k = 1024 bytes); the file is never larger.
statistics and progress go to stderr, so -o - keeps stdout for the file alone.
"""


def _kernels_cached() -> bool:
    from ._warm import cached, coding_kernels, training_kernels

    return cached(training_kernels() + coding_kernels())


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1920x1080, got {text!r}") from None


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"scale must be a positive number, got {text!r}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return v


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nncodec", description="Images as tiny neural networks: "
                                "encode under a byte budget, decode at any size.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    p.add_argument("--version", action="version", version=f"nncodec {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("encode", help="encode images into .nni files",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("input", nargs="+",
                   help="image file(s) (anything Pillow reads), or - for stdin")
    e.add_argument("-o", "--output", required=True,
                   help=".nni file to write, - for stdout, or a directory (ending in /, or "
                        "existing) to write DIR/<stem>.nni, as several inputs need")
    e.add_argument("-b", "--budget", required=True,
                   help="maximum file size: 2048, 2k, 2kb, 2KiB (1 k = 1024 bytes)")
    e.add_argument("--preset", default="default", choices=["fast", "default", "slow"],
                   help="time against quality: fast is about 4 times faster than default, "
                        "slow trains default twice (seeds N and N+1) and keeps the better "
                        "file (default: %(default)s)")
    e.add_argument("--model", default="grid", choices=["grid", "mlp"],
                   help="grid: latent grids + MLP (default); mlp: plain coordinate MLP")
    e.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    e.add_argument("--keep-metadata", action="store_true",
                   help="store the ICC profile and Exif (they count in the budget)")
    e.add_argument("--video", metavar="FILE",
                   help="save an animation of the training (.webp or .gif); one input only")
    e.add_argument("--frames", metavar="DIR",
                   help="save the animation's frames as PNG files in DIR; one input only")
    e.add_argument("-j", "--jobs", type=_positive_int, default=1,
                   help="encode a batch in N worker processes (default 1)")
    e.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the batch on a Dask cluster, e.g. tcp://host:8786 "
                        "(needs pip install 'nncodec[dask]')")
    e.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    e.add_argument("-v", "--verbose", action="store_true",
                   help="log the model and training progress (instead of a progress bar)")

    d = sub.add_parser("decode", help="decode an .nni file to an image at any size",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("input", help=".nni file, or - for stdin")
    d.add_argument("-o", "--output", required=True,
                   help="image to write; format from the extension (PNG for -); stored "
                        "ICC profile and Exif are written to PNG, JPEG, WebP, AVIF and TIFF")
    g = d.add_mutually_exclusive_group()
    g.add_argument("--scale", type=_positive_float, help="scale factor, any positive number")
    g.add_argument("--size", type=_parse_size, help="output size WxH, e.g. 1920x1080")
    d.add_argument("--max-pixels", type=int, default=None,
                   help="refuse outputs (or coded images) larger than this many pixels "
                        "(default 89478485; 0 removes the cap)")
    d.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")

    i = sub.add_parser("info", help="print the header fields of an .nni file")
    i.add_argument("input", help=".nni file, or - for stdin")
    return p


# ---------------------------------------------------------------------------
# encode


def _show_bar(args) -> bool:
    """A progress bar only for a person watching: not quiet, not verbose, stderr a terminal."""
    return not args.quiet and not args.verbose and sys.stderr.isatty()


def _tqdm(**kw):
    from tqdm import tqdm

    return tqdm(file=sys.stderr, dynamic_ncols=True, leave=False, **kw)


class _StepProgress:
    """The encoder's progress callback: progress bar, verbose lines, animation frames."""

    def __init__(self, args, recorder=None):
        self.bar = None
        self.show_bar = _show_bar(args)
        self.verbose = args.verbose
        self.recorder = recorder
        self.last = 0.0

    def __call__(self, step, total, info) -> None:
        if self.show_bar:
            first = self.bar is None
            if first:
                self.bar = _tqdm(total=total, unit="step", desc="training")
            # Drawn at once the first time, then at tqdm's own pace.
            self.bar.set_postfix_str(f"{info.stage} {info.psnr:.2f} dB ~{info.bytes} bytes",
                                     refresh=first)
            self.bar.update(step - self.bar.n)
        if self.verbose and time.monotonic() - self.last > 1.0:
            self.last = time.monotonic()
            print(f"  step {step}/{total}  {info.stage}  {info.psnr:.2f} dB  "
                  f"~{info.bytes} bytes", file=sys.stderr)
        if self.recorder is not None:
            self.recorder(info)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _is_batch(args) -> bool:
    """True if ``-o`` names a directory (ends in / or exists); several inputs need one."""
    out = args.output
    is_dir = out.endswith("/") or out.endswith(os.sep) or (out != "-" and Path(out).is_dir())
    if len(args.input) > 1 and not is_dir:
        raise InputError(f"{len(args.input)} inputs need an output directory: give -o DIR/ "
                         f"(ending in /, or an existing directory), not -o {out}")
    return is_dir


def _encode(args) -> int:
    if _is_batch(args):
        return _encode_batch(args)
    if args.jobs > 1 or args.scheduler:
        raise InputError("--jobs and --scheduler encode into a directory: give -o DIR/")
    return _encode_one(args)


def _prepare_animation(args):
    """Check the animation outputs before training; returns (recorder, format) or (None, None)."""
    if not (args.video or args.frames):
        return None, None
    from .animation import FrameRecorder, animation_format

    fmt = None
    if args.video:
        fmt = animation_format(args.video)
        parent = Path(args.video).parent
        if not parent.is_dir():
            raise InputError(f"cannot write {args.video}: no such directory {parent}")
    if args.frames and Path(args.frames).exists() and not Path(args.frames).is_dir():
        raise InputError(f"cannot write frames into {args.frames}: not a directory")
    return FrameRecorder(), fmt


def _write_frames(directory: str, recorder) -> None:
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NniError(f"cannot create frame directory {directory}: {e.strerror or e}") from None
    for name, png in recorder.pngs():
        _write_atomic(Path(directory) / name, png)


def _say_if_compiling(args) -> None:
    if not args.quiet and not _kernels_cached():
        print("nncodec: compiling kernels (first run only, 15 to 25 s; cached afterwards)",
              file=sys.stderr)


def _encode_one(args) -> int:
    from .encoder import encode_stats
    from .metadata import from_image, pack

    src_name = args.input[0]
    _say_if_compiling(args)
    src = _read(src_name) if src_name == "-" else src_name
    recorder, video_fmt = _prepare_animation(args)
    meta = pack(from_image(src)) if args.keep_metadata else b""
    progress = _StepProgress(args, recorder)
    try:
        data, st = encode_stats(src, budget=args.budget, preset=args.preset, seed=args.seed,
                                model=args.model, metadata=meta, progress=progress)
    finally:
        progress.close()
    _write_atomic(args.output, data)
    if recorder is not None:
        recorder.finish(data)
        if args.video:
            _write_atomic(args.video, recorder.animation(video_fmt))
        if args.frames:
            _write_frames(args.frames, recorder)
    if not args.quiet:
        name = "<stdout>" if args.output == "-" else args.output
        extra = f", {len(meta)} of them metadata" if meta else ""
        print(f"{name}: {st.bytes} bytes (budget {st.budget}{extra}), {st.bpp:.4f} bpp, "
              f"{st.psnr:.2f} dB PSNR, {st.seconds:.1f} s", file=sys.stderr)
        if recorder is not None:
            where = " and ".join(x for x in (args.video, args.frames) if x)
            print(f"{where}: {len(recorder.frames)} frames", file=sys.stderr)
    return 0


def _encode_batch(args) -> int:
    from .batch import encode_files, summary

    if "-" in args.input:
        raise InputError("stdin (-) cannot be part of a batch: name the files")
    if args.video or args.frames:
        raise InputError("--video and --frames record one encode: give one input and a file -o")
    _say_if_compiling(args)
    bar = _tqdm(total=len(args.input), unit="file", desc="encoding") if _show_bar(args) else None

    def on_result(r) -> None:
        if not r.ok:
            line = f"nncodec: error: {r.input}: {r.error}"
            if bar is not None:
                bar.write(line, file=sys.stderr)
            else:
                print(line, file=sys.stderr)
        elif args.verbose:
            print(f"{r.input} -> {r.output}: {r.bytes} bytes, {r.psnr:.2f} dB, "
                  f"{r.seconds:.1f} s", file=sys.stderr)
        if bar is not None:
            bar.set_postfix_str(Path(r.input).name, refresh=False)
            bar.update(1)

    t0 = time.perf_counter()
    try:
        results = encode_files(args.input, args.output, budget=args.budget, preset=args.preset,
                               seed=args.seed, model=args.model,
                               keep_metadata=args.keep_metadata, jobs=args.jobs,
                               scheduler=args.scheduler, on_result=on_result)
    finally:
        if bar is not None:
            bar.close()
    if not args.quiet:
        for line in summary(results, time.perf_counter() - t0):
            print(line, file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


# ---------------------------------------------------------------------------
# decode, info


def _decode(args) -> int:
    import io

    from PIL import Image

    from . import decoder
    from .errors import FormatError
    from .metadata import pil_save_options, read as read_metadata

    data = _read(args.input)
    kw = {}
    if args.max_pixels is not None:
        kw["max_pixels"] = None if args.max_pixels <= 0 else args.max_pixels
    t0 = time.perf_counter()
    out = decoder.decode(data, args.size, scale=args.scale, **kw)
    try:
        meta = read_metadata(data)
    except FormatError as e:
        meta = {}
        if not args.quiet:
            print(f"nncodec: warning: metadata not written: {e}", file=sys.stderr)
    im = Image.fromarray(out)
    buf = io.BytesIO()
    if args.output == "-":
        im.save(buf, format="PNG", **pil_save_options(meta, "PNG"))
    else:
        try:
            fmt = Image.registered_extensions()[Path(args.output).suffix.lower()]
        except KeyError:
            raise NniError(f"cannot tell the image format from {args.output!r}: "
                           "use an extension such as .png, .jpg or .webp") from None
        # Lossy output formats get a high quality: the render is the product.
        opts = {"quality": 95} if fmt in ("JPEG", "WEBP", "AVIF") else {}
        opts.update(pil_save_options(meta, fmt))
        try:
            im.save(buf, format=fmt, **opts)
        except (OSError, ValueError, KeyError) as e:
            raise NniError(f"cannot write {fmt} image: {e}") from None
    _write_atomic(args.output, buf.getvalue())
    if not args.quiet:
        print(f"{args.output}: {out.shape[1]}x{out.shape[0]} in "
              f"{(time.perf_counter() - t0) * 1000:.0f} ms", file=sys.stderr)
    return 0


def _info(args) -> int:
    from . import decoder

    for k, v in decoder.info(_read(args.input)).items():
        if isinstance(v, list):
            v = " ".join(map(str, v)) or "none"
        elif v is None:
            v = "unreadable"
        print(f"{k}: {v}")
    return 0


def main(argv=None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    level = logging.WARNING
    if getattr(args, "verbose", False):
        level = logging.INFO
    logging.basicConfig(level=level, format="nncodec: %(message)s", stream=sys.stderr)
    try:
        return {"encode": _encode, "decode": _decode, "info": _info}[args.command](args)
    except NniError as e:
        print(f"nncodec: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("nncodec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

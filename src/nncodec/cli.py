"""Command line: ``nncodec encode | decode | info``. Owns the terminal."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from .errors import InputError, NniError, os_error_message

EXAMPLES = """examples:
  nncodec encode photo.png -o photo.nni --budget 2kb
  nncodec decode photo.nni -o photo.png
  nncodec decode photo.nni -o big.png --scale 4
  nncodec decode photo.nni -o thumb.jpg --size 192x128
  nncodec info photo.nni
  cat photo.png | nncodec encode - -o - --budget 4k > photo.nni

budgets are bytes: 2048, 2k, 2kb, 2KiB (1 k = 1024 bytes); the file is never larger.
"""


def _write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename."""
    if path == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    if target.is_dir():
        raise NniError(f"cannot write {path}: it is a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                   dir=str(target.parent) if str(target.parent) else ".")
    except OSError as e:
        raise NniError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        # mkstemp creates the file 0600; give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise NniError(f"cannot write {path}: {e.strerror or e}") from None
        raise


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InputError(os_error_message(e, path)) from None


def _kernels_cached() -> bool:
    cache = Path(__file__).with_name("__pycache__")
    return cache.is_dir() and any(cache.glob("train.*.nbi")) and any(cache.glob("field.*.nbi"))


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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nncodec", description="Images as tiny neural networks: "
                                "encode under a byte budget, decode at any size.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    from . import __version__

    p.add_argument("--version", action="version", version=f"nncodec {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("encode", help="encode an image into an .nni file",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("input", help="image file (anything Pillow reads), or - for stdin")
    e.add_argument("-o", "--output", required=True, help=".nni file to write, or - for stdout")
    e.add_argument("-b", "--budget", required=True,
                   help="maximum file size: 2048, 2k, 2kb, 2KiB (1 k = 1024 bytes)")
    e.add_argument("--preset", default="default", choices=["fast", "default", "slow"],
                   help="time against quality (default: %(default)s)")
    e.add_argument("--model", default="grid", choices=["grid", "mlp"],
                   help="grid: latent grids + MLP (default); mlp: plain coordinate MLP")
    e.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    e.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    e.add_argument("-v", "--verbose", action="store_true", help="log training progress")

    d = sub.add_parser("decode", help="decode an .nni file to an image at any size",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("input", help=".nni file, or - for stdin")
    d.add_argument("-o", "--output", required=True,
                   help="image to write; format from the extension (PNG for -)")
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


def _encode(args) -> int:
    from .encoder import encode_stats

    if not args.quiet and not _kernels_cached():
        print("nncodec: compiling kernels (first run, takes a minute; cached afterwards)",
              file=sys.stderr)
    src = _read(args.input) if args.input == "-" else args.input
    last = [0.0]

    def progress(step, total, info):
        if args.verbose and time.monotonic() - last[0] > 1.0:
            last[0] = time.monotonic()
            print(f"  step {step}/{total}  {info['psnr']:.2f} dB  ~{info['bytes']} bytes",
                  file=sys.stderr)

    data, st = encode_stats(src, budget=args.budget, preset=args.preset, seed=args.seed,
                            model=args.model, progress=progress)
    _write_atomic(args.output, data)
    if not args.quiet:
        name = "<stdout>" if args.output == "-" else args.output
        print(f"{name}: {st.bytes} bytes (budget {st.budget}), {st.bpp:.4f} bpp, "
              f"{st.psnr:.2f} dB PSNR, {st.seconds:.1f} s", file=sys.stderr)
    return 0


def _decode(args) -> int:
    import io

    from PIL import Image

    from . import decoder

    data = _read(args.input)
    kw = {}
    if args.max_pixels is not None:
        kw["max_pixels"] = None if args.max_pixels <= 0 else args.max_pixels
    t0 = time.perf_counter()
    out = decoder.decode(data, args.size, scale=args.scale, **kw)
    im = Image.fromarray(out)
    buf = io.BytesIO()
    if args.output == "-":
        im.save(buf, format="PNG")
    else:
        try:
            fmt = Image.registered_extensions()[Path(args.output).suffix.lower()]
        except KeyError:
            raise NniError(f"cannot tell the image format from {args.output!r}: "
                           "use an extension such as .png, .jpg or .webp") from None
        # Lossy output formats get a high quality: the render is the product.
        opts = {"quality": 95} if fmt in ("JPEG", "WEBP", "AVIF") else {}
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

"""Reading inputs and writing outputs for the command line and batches.

Outputs are written to a temporary file in the target directory, synced and
renamed over the target, so a failed or interrupted run never leaves a
truncated file or destroys an existing one.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from .errors import InputError, NniError, os_error_message


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename; ``-`` is stdout."""
    path = os.fspath(path)
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


def read_input(path: str | os.PathLike) -> bytes:
    """The bytes of ``path``; ``-`` reads stdin."""
    path = os.fspath(path)
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise InputError(os_error_message(e, path)) from None

"""Exceptions raised on purpose by nncodec. All derive from :class:`NniError`."""

from __future__ import annotations


class NniError(Exception):
    """Base class of every error nncodec raises on purpose."""


class FormatError(NniError, ValueError):
    """The data is not a valid ``.nni`` file (bad magic, field out of range...)."""


class TruncatedError(FormatError):
    """The file ends before its declared content."""


class ChecksumError(FormatError):
    """The file's CRC-32 does not match its content: it is corrupted."""


class VersionError(FormatError):
    """The file was written by a format version this decoder does not know."""


class ImageTooLargeError(NniError, ValueError):
    """A requested render (or an input image) exceeds the pixel cap."""


class BudgetError(NniError, ValueError):
    """The byte budget is too small for any model, or malformed."""

    def __init__(self, message: str, minimum: int | None = None):
        super().__init__(message)
        #: Smallest budget in bytes that would work, when known.
        self.minimum = minimum


class InputError(NniError, ValueError):
    """An input image or argument cannot be used."""


def os_error_message(e: OSError, path) -> str:
    """A one-line description of why ``path`` could not be opened."""
    if isinstance(e, FileNotFoundError):
        return f"no such file: {path}"
    if isinstance(e, IsADirectoryError):
        return f"is a directory, not a file: {path}"
    if isinstance(e, PermissionError):
        return f"permission denied: {path}"
    return f"cannot read {path}: {e.strerror or e}"

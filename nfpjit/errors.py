"""Errors a user can act on.

Every failure that bad input can cause is an :class:`NfpjitError` carrying what
went wrong, where (file, section, instruction index, line:column) and, when
there is one, what to do about it.  The CLI turns these into one line on
stderr and a non-zero exit status; anything else escaping is a bug.
"""

from __future__ import annotations


class NfpjitError(Exception):
    """Base class: ``where: message`` plus an optional hint."""

    exit_status = 1

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class UsageError(NfpjitError):
    """Bad command-line options or API arguments."""

    exit_status = 2


class LoadError(NfpjitError):
    """A malformed or unsupported input file: ELF object, raw bytecode, map file, pcap."""


class DecodeError(LoadError):
    """An invalid eBPF instruction encoding."""


class AsmError(NfpjitError):
    """Assembly source that does not assemble (eBPF or NFP-32)."""


class ImageError(LoadError):
    """A firmware image that is truncated, corrupt or of another ISA/version."""


class UnsupportedError(NfpjitError):
    """Something valid that this tool (or the selected engine) does not handle."""

"""Errors of the offload path, carrying the kernel's errno.

:class:`OffloadError` is what the offload API (``nfpjit.offload.Device``, the map
client, load and attach) raises when the kernel would have failed the same
operation: ``.errno`` is the errno the kernel returns (``errno.ENOENT`` ...),
``.reason`` the kernel-style reason (``"No such file or directory"``) and the
message says, better than a bare errno, what went wrong.  :class:`CmsgError` is a
malformed control message (also with an errno, normally ``EINVAL``/``EBADMSG``).
"""

from __future__ import annotations

import errno as _errno
import os

from nfpjit.errors import NfpjitError


def errno_name(code: int) -> str:
    """``errno.ENOENT`` -> ``"ENOENT"``; unknown numbers as ``"E<n>"``."""
    return _errno.errorcode.get(code, f"E{code}")


class OffloadError(NfpjitError):
    """An offload operation failed with a kernel errno (``.errno``, ``.reason``)."""

    def __init__(self, errno: int, message: str, *, where: str | None = None, hint: str | None = None):
        super().__init__(message, where=where, hint=hint)
        self.errno = int(errno)
        self.reason = os.strerror(self.errno)

    @property
    def errno_name(self) -> str:
        return errno_name(self.errno)

    def __str__(self) -> str:
        return f"{super().__str__()} [{self.errno_name}: {self.reason}]"


class CmsgError(OffloadError):
    """A control message that does not parse: truncated, wrong version, unknown type, bad lengths."""

    def __init__(self, errno: int, message: str, *, where: str | None = None, hint: str | None = None):
        super().__init__(errno, message, where=where or "cmsg", hint=hint)

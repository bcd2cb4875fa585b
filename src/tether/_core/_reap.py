"""The reap of a child through its pidfd, and the wait before it, in one C call each when
the extension offers them.

Reaping is the last step of every wait, and each microsecond spent there is one the
caller waits after its child is already dead: ``waitid(P_PIDFD)`` through ctypes builds
argument objects and two C structures on every call, then the status is decoded in
Python. The native extension (``_native/_spawner.c``) makes the same system call, rusage
included, and builds the status itself: an ``Exited`` or a ``Signaled`` with its
``Rusage``, stored field by field into the slots the classes read (anything rarer is
decoded by ``decode_waitid``), so no Python frame runs between the reap and the answer.
It is used only once the kernel has accepted ``P_PIDFD`` (``KERNEL.waitid_pidfd``), so
Linux 5.3's EINVAL and its pid-based fallback stay in ``_linux._pidfd``, which is also
the whole path when the extension is missing or older than this module. Either way the
reap names the child by its pidfd, never by a pid.
"""

from __future__ import annotations

from collections.abc import Callable
from signal import Signals

from .._linux import _pidfd
from .._linux._probes import KERNEL
from .._native import available, spawner
from .._status import Exited, Rusage, Signaled, Status, decode_waitid

__all__ = ["reap_pidfd", "wait_exited", "wait_readable"]

_native_reap = getattr(spawner, "reap_status", None) if available else None
_native_wait = getattr(spawner, "wait_readable", None) if available else None
wait_exited: Callable[[int], None] | None = (
    getattr(spawner, "wait_exited", _native_wait) if available else None
)
"""Block until the child behind a pidfd of ours has exited, leaving it unreaped, in one
C call: a blocking ``waitid(WNOWAIT)``, woken as a blocking ``wait4`` is, quicker than a
``poll``; the fd's readability for a process not our child (None without the extension)."""
if _native_reap is not None:
    spawner.set_status_types(
        Exited, Signaled, Rusage, {member.value: member for member in Signals}, decode_waitid
    )


def wait_readable(fd: int, timeout: float | None) -> bool:
    """Block until the exit fd *fd* is readable or *timeout* seconds pass (see
    :func:`tether._linux._pidfd.wait_readable`); a wait without a timeout is one C call."""
    if timeout is None and _native_wait is not None:
        _native_wait(fd)
        return True
    return _pidfd.wait_readable(fd, timeout)


def reap_pidfd(pidfd: int, pid: int) -> Status | None:
    """Reap the exited child *pid* behind *pidfd* without blocking; None while it runs.

    Raises ``ChildProcessError`` when someone else reaped it (see
    ``_pidfd.recover_exit_status``), like :func:`tether._linux._pidfd.reap_pidfd`.
    """
    if _native_reap is None or KERNEL.waitid_pidfd is not True:
        return _pidfd.reap_pidfd(pidfd, pid)
    status: Status | None = _native_reap(pidfd)
    return status

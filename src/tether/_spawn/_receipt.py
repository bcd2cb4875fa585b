"""The receipt of one spawn: where a child is written down the moment it exists.

A Python signal handler may raise between any two bytecodes: Ctrl-C's
``KeyboardInterrupt``, an alarm, ``pytest-timeout``. The worst place for that is right
after a child is born. A pid that is only a return value is dropped with the frame
that was about to store it, and the child runs on, tracked by nobody. So no backend
*returns* its child; each writes it into the caller's receipt where no Python code
can run in between:

* the C spawner sets ``receipt.pid`` and ``receipt.pidfd`` itself before it returns to
  Python;
* the pure-Python backends (``os.posix_spawn``, ``os.fork``) run on tether's spawner
  thread when the caller is the main thread. CPython runs signal handlers in the main
  thread only, so there nothing can raise between the call that makes the child and
  the store that records it. Called from any other thread, they run in place, for the
  same reason.

The caller makes the receipt *before* the spawn and keeps it, so whatever happens
next, :func:`undo` finds the child: it kills and reaps it, closes its pidfd and every
fd made for the spawn. If the main thread is interrupted while the spawner thread is
still at work, the job is left to that thread, which undoes it as soon as it is done
(``_spawner_thread``). ``undo`` itself finishes even when interrupted again.

Two rules keep the bookkeeping exact under interrupts, here and in the handles above:
a store that hands something over is a plain assignment with no call in between
(CPython checks for pending signals only at calls, function entries and backward
jumps), and an fd is taken out of its record *before* it is closed, so an interrupt
can at worst leak it, never close it twice.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import TYPE_CHECKING

from typing_extensions import final

from .. import _native
from .._linux import _pidfd

if TYPE_CHECKING:
    from ._spawner_thread import Job
    from ._stdio import ChildStdio

__all__ = ["SpawnReceipt", "open_pidfd_into", "undo"]

_UNDO_ATTEMPTS = 100


@final
class SpawnReceipt:
    """The child of one spawn: ``pid`` (0 until it exists) and ``pidfd`` (None without)."""

    __slots__ = ("job", "pid", "pidfd", "report")

    def __init__(self) -> None:
        self.pid = 0
        self.pidfd: int | None = None
        self.report: int | None = None
        """The read end of the ``fork`` backend's failure-report pipe, while it is open."""
        self.job: Job | None = None
        """The spawner thread's job, when the spawn runs there."""


def open_pidfd_into(receipt: SpawnReceipt) -> None:
    """Open a pidfd for the receipt's child (recorded in C when the extension is built),
    and let it go again unless it names an unreaped child of ours (see ``open_pidfd``)."""
    if not _pidfd.pidfds_available():
        return
    try:
        if _native.available:
            _native.spawner.pidfd_open_into(receipt, receipt.pid)
        else:
            receipt.pidfd = os.pidfd_open(receipt.pid)
    except OSError as exc:
        _pidfd.note_pidfd_refusal(exc)
        return
    pidfd = receipt.pidfd
    if pidfd is not None and not _pidfd.names_our_child(pidfd):
        receipt.pidfd = None
        os.close(pidfd)


def undo(receipt: SpawnReceipt, stdio: ChildStdio) -> None:
    """Kill and reap the child *receipt* names, close its pidfd and the spawn's fds.

    Idempotent. When the spawner thread is still running the spawn, the undoing is
    left to it. An exception raised while undoing (another interrupt) does not stop
    it: it is retried, and only an error that keeps coming back is raised.
    """
    job = receipt.job
    if job is not None and not job.settle_or_leave(lambda: _undo_now(receipt, stdio)):
        return
    for attempt in range(_UNDO_ATTEMPTS):
        try:
            _undo_now(receipt, stdio)
            return
        except BaseException:
            if attempt == _UNDO_ATTEMPTS - 1:
                raise


def _undo_now(receipt: SpawnReceipt, stdio: ChildStdio) -> None:
    pid = receipt.pid
    if pid:
        pidfd = receipt.pidfd
        with contextlib.suppress(ProcessLookupError):
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):  # reaped by someone else: gone too
            if pidfd is not None:
                _pidfd.wait_readable(pidfd, None)
                _pidfd.reap_pidfd(pidfd, pid)
            else:
                os.waitpid(pid, 0)
        receipt.pid = 0
    fd, receipt.pidfd = receipt.pidfd, None
    if fd is not None:
        os.close(fd)
    fd, receipt.report = receipt.report, None
    if fd is not None:
        os.close(fd)
    stdio.close_all()

"""The supervisor's side of the lifeline: start it, tell it each cgroup, restart it if it died.

A supervising process that dies without leaving its scopes (SIGKILL, the OOM killer, a
crash) leaves its ``kill="cgroup"`` cgroups behind with whatever grandchildren escaped
``pdeathsig`` in them. The lifeline (``_linux/_lifeline.py``, a separate process, one per
supervising process) cleans up after such a death; this module is the supervisor's end
of it, and the :class:`~tether._linux._cgroup.Cgroup` watcher that every cgroup a scope
makes reports to.

* :meth:`Lifeline.announce` runs before each cgroup's ``mkdir``. The first one starts the
  lifeline (``python -I -S _lifeline.py OUR_PID`` in a session of its own, with the
  control pipe as stdin) and waits for its ``ready``; every one checks that the lifeline
  still runs, and starts a new one that is told every live cgroup if it died (or stopped
  reading). Before the first cgroup under a parent directory, the stale ``tether-*``
  cgroups there (owners dead without their lifeline) are killed and removed.
* :meth:`Lifeline.withdraw` runs after a cgroup was removed, or was never made.

The lifeline is our child but not a ``Process``: it is started with the spawn layer
directly, so that neither the interpreter-exit policy (which kills tracked children; at
exit it has to *outlive* us) nor the background reaper holds it. It is reaped here,
when a check finds it dead (and then replaced) or when it is retired; it ends by
itself once this process is gone, and init reaps it then. After ``os.fork`` the child
process forgets the parent's lifeline and starts its own when it first makes a cgroup.
"""

from __future__ import annotations

import contextlib
import errno as errnos
import logging
import os
import select
import sys
import threading

from typing_extensions import final

from .._errors import CgroupError
from .._linux import _lifeline, _pidfd
from .._spawn import PIPE, ChildStdio, SpawnReceipt, choose_backend, make_plan, start_child, undo

__all__ = ["LIFELINE", "Lifeline"]

_logger = logging.getLogger("tether.supervisor")
_SCRIPT = os.path.abspath(_lifeline.__file__)
_READY_TIMEOUT = 30.0
_SEND_TIMEOUT = 5.0
"""Seconds a full control pipe may take to drain before the lifeline counts as wedged."""


class _Running:
    """One lifeline process: our unreaped child (pid, pidfd) and the control pipe's write end."""

    __slots__ = ("control", "receipt")

    def __init__(self, receipt: SpawnReceipt, control: int) -> None:
        self.receipt = receipt
        self.control = control

    def alive(self) -> bool:
        """Whether it still runs; reaps it if it has exited."""
        receipt = self.receipt
        if not receipt.pid:
            return False
        try:
            if receipt.pidfd is not None:
                if not _pidfd.wait_readable(receipt.pidfd, 0):
                    return True
                _pidfd.reap_pidfd(receipt.pidfd, receipt.pid)
            elif os.waitid(os.P_PID, receipt.pid, os.WEXITED | os.WNOHANG) is None:
                return True
        except ChildProcessError:
            pass  # reaped by someone else
        receipt.pid = 0
        return False

    def send(self, data: bytes) -> None:
        """Write *data* whole; ``OSError`` if the lifeline is gone or does not read."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.control, view) :]
            except BlockingIOError:
                if not select.select([], [self.control], [], _SEND_TIMEOUT)[1]:
                    raise OSError(errnos.ETIMEDOUT, "the lifeline does not read") from None

    def retire(self) -> None:
        """Kill and reap it (harmless once dead), close our fds."""
        fd, self.control = self.control, -1
        if fd >= 0:
            os.close(fd)
        undo(self.receipt, ChildStdio())


def _start(into: _Running) -> None:
    """Start a lifeline for this process into *into* and wait until it holds our pidfd.

    The child and the pipe are written into *into* as they come to exist, so that the
    caller, which holds it already, can take them apart if anything is interrupted.
    """
    if not sys.executable:
        raise CgroupError(
            errnos.ENOENT, "cannot start the lifeline: no Python interpreter path", _SCRIPT
        )
    stdio = ChildStdio()
    read_end, into.control = os.pipe2(os.O_CLOEXEC)
    try:
        plan = make_plan(
            [sys.executable, "-I", "-S", _SCRIPT, str(os.getpid())],
            stdin=read_end,
            stdout=PIPE,
            start_new_session=True,
            cwd="/",
        )
        start_child(plan, choose_backend(plan, "auto"), into.receipt, stdio)
        answer = _read_line(stdio.parent_ends[1])
        if answer != b"ready\n":
            raise CgroupError(
                errnos.ECHILD, f"the lifeline did not start (it said {answer!r})", _SCRIPT
            )
        os.set_blocking(into.control, False)
    finally:
        stdio.close_all()
        os.close(read_end)


def _read_line(fd: int) -> bytes:
    """The lifeline's answer; what it said so far if it exits or is silent too long."""
    line = b""
    while not line.endswith(b"\n"):
        if not select.select([fd], [], [], _READY_TIMEOUT)[0]:
            break
        chunk = os.read(fd, 64)
        if not chunk:
            break
        line += chunk
    return line


@final
class Lifeline:
    """The lifeline of this process; the cgroup watcher of every ``kill="cgroup"`` scope."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: _Running | None = None
        self._announced: set[str] = set()
        self._swept: set[str] = set()
        self._owner = os.getpid()

    def announce(self, path: str) -> None:
        """Before cgroup *path* is made: make sure the lifeline runs and knows it."""
        with self._lock:
            self._forget_parent_after_fork()
            parent = os.path.dirname(path)
            if parent not in self._swept:
                self._swept.add(parent)
                self._sweep(parent)
            self._announced.add(path)
            running = self._running
            if running is not None and running.alive():
                try:
                    running.send(_record(b"+", path))
                    return
                except OSError:
                    pass  # dead or wedged: a new one learns everything below
            self._restart()

    def withdraw(self, path: str) -> None:
        """After cgroup *path* was removed (or never made): the lifeline forgets it."""
        with self._lock:
            self._forget_parent_after_fork()
            if path not in self._announced:
                return
            self._announced.discard(path)
            running = self._running
            if running is not None:
                with contextlib.suppress(OSError):  # replaced at the next announcement
                    running.send(_record(b"-", path))

    def held(self) -> tuple[int | None, frozenset[int]]:
        """The lifeline's pid and the fds this process holds for it (for leak checks)."""
        with self._lock:
            running = self._running
            if running is None or self._owner != os.getpid() or not running.receipt.pid:
                return None, frozenset()
            fds = {running.control, running.receipt.pidfd}
            return running.receipt.pid, frozenset(fd for fd in fds if fd is not None and fd >= 0)

    def _restart(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            running.retire()
        self._running = new = _Running(SpawnReceipt(), -1)
        try:
            _start(new)
            new.send(b"".join(_record(b"+", path) for path in sorted(self._announced)))
        except BaseException:
            self._running = None
            new.retire()
            raise

    def _sweep(self, parent: str) -> None:
        stale = _lifeline.stale(parent, spare=os.getpid())
        if stale:
            _logger.info("removing cgroups left by dead supervisors: %s", ", ".join(stale))
            for problem in _lifeline.release(stale):
                _logger.warning("could not remove a stale cgroup: %s", problem)

    def _forget_parent_after_fork(self) -> None:
        if self._owner != os.getpid():  # a forked child: those are the parent's
            self._owner = os.getpid()
            self._running = None
            self._announced.clear()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        running, self._running = self._running, None
        if running is not None:  # the parent's lifeline: not ours to signal or reap
            for fd in (running.control, running.receipt.pidfd):
                if fd is not None and fd >= 0:
                    os.close(fd)
        self._announced.clear()
        self._owner = os.getpid()


def _record(kind: bytes, path: str) -> bytes:
    return kind + os.fsencode(path) + b"\0"


LIFELINE = Lifeline()
"""The one lifeline of this process."""

os.register_at_fork(after_in_child=LIFELINE._after_fork_in_child)

"""The background reaper: one thread, one epoll, every child nobody waits for.

A child whose handle is dropped while it runs (or that its owner ``detach()``-ed)
would stay a zombie until the next ``wait`` that never comes. Its handle gives the
pidfd to this module instead; one daemon thread, started on first use, blocks in
``epoll_wait`` over all such pidfds and reaps each child with ``waitid(P_PIDFD)``
within milliseconds of its exit. It never reaps anything it was not handed, keeps
no reference to the handles (only pid numbers and fds), and adds exactly one
thread however many children it holds.

Without a pidfd there is nothing to put in an epoll set, so such a child gets a
small thread of its own that blocks in ``waitid(P_PID)`` and reaps it: the
fallback's price, paid only by dropped children on kernels without pidfds.

``os.fork()``: a forked child starts with a fresh reaper and no registrations (the
inherited fds name its parent's children, not its own, and are closed).

Interpreter exit: every child tether still owns (a live handle, or a dropped one
held here) is killed with SIGKILL and reaped; a child that was ``detach()``-ed is
left running, since that is what detaching asks for. See :func:`track`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import threading
import weakref
from typing import TYPE_CHECKING

from .._linux import _pidfd

if TYPE_CHECKING:
    from ._process import Process

THREAD_NAME = "tether-reaper"


class _Reaper:
    """The registry of adopted children and the thread that reaps them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._epoll: select.epoll | None = None
        self._thread: threading.Thread | None = None
        self._by_pidfd: dict[int, tuple[int, bool]] = {}  # pidfd -> (pid, kill at exit)
        self._without_pidfd: set[int] = set()
        self._owner = os.getpid()

    def adopt(self, pid: int, pidfd: int | None, *, kill_at_exit: bool) -> None:
        """Take over reaping child *pid*, and its *pidfd* (closed once reaped)."""
        with self._lock:
            if pidfd is None:
                self._without_pidfd.add(pid)
                threading.Thread(
                    target=self._reap_by_pid, args=(pid,), name=f"{THREAD_NAME}-{pid}", daemon=True
                ).start()
                return
            if self._epoll is None:
                self._epoll = select.epoll()
                self._thread = threading.Thread(
                    target=self._run, args=(self._epoll,), name=THREAD_NAME, daemon=True
                )
                self._thread.start()
            self._by_pidfd[pidfd] = (pid, kill_at_exit)
            self._epoll.register(pidfd, select.EPOLLIN)

    def epoll_fd(self) -> int | None:
        """The reaper's own long-lived epoll fd, once started."""
        return None if self._epoll is None else self._epoll.fileno()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every adopted child is reaped; False if *timeout* ran out first."""
        with self._idle:
            return self._idle.wait_for(
                lambda: not self._by_pidfd and not self._without_pidfd, timeout
            )

    def kill_all(self) -> None:
        """SIGKILL every adopted child that was not detached on purpose, and reap them."""
        with self._lock:
            doomed = [(pidfd, pid) for pidfd, (pid, kill) in self._by_pidfd.items() if kill]
        for pidfd, _ in doomed:
            with contextlib.suppress(OSError):
                _pidfd.signal_pidfd(pidfd, signal.SIGKILL)
        self.wait_idle(timeout=5.0)

    def _run(self, epoll: select.epoll) -> None:
        while True:
            for pidfd, _ in epoll.poll():
                self._reap(epoll, pidfd)

    def _reap(self, epoll: select.epoll, pidfd: int) -> None:
        with self._lock:
            entry = self._by_pidfd.get(pidfd)
            if entry is None:
                return
            with contextlib.suppress(ChildProcessError):  # stolen: nothing left to do
                _pidfd.reap_pidfd(pidfd, entry[0])
            epoll.unregister(pidfd)
            os.close(pidfd)
            del self._by_pidfd[pidfd]
            self._idle.notify_all()

    def _reap_by_pid(self, pid: int) -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, pid, os.WEXITED)
        with self._lock:
            self._without_pidfd.discard(pid)
            self._idle.notify_all()

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's registrations and close their fds."""
        for pidfd in self._by_pidfd:
            with contextlib.suppress(OSError):
                os.close(pidfd)
        if self._epoll is not None:
            with contextlib.suppress(OSError):
                self._epoll.close()
        self.__init__()  # type: ignore[misc]


REAPER = _Reaper()
"""The one reaper of this process."""

_live: weakref.WeakSet[Process] = weakref.WeakSet()
_owner = os.getpid()


def track(process: Process) -> None:
    """Remember a live handle, so that interpreter exit can stop its child."""
    _live.add(process)


def untrack(process: Process) -> None:
    """Forget a handle whose child is reaped, detached or handed to the reaper."""
    _live.discard(process)


def _at_exit() -> None:
    if os.getpid() != _owner:
        return  # a forked child running its inherited atexit handlers: not our children
    for process in list(_live):
        with contextlib.suppress(Exception):
            process.kill()
            process.wait()
    REAPER.kill_all()


def _after_fork_in_child() -> None:
    global _owner
    _owner = os.getpid()
    _live.clear()
    REAPER.forget_after_fork()


atexit.register(_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)

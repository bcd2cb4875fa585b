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

What happens to the children held here at interpreter exit and after ``os.fork()`` is
decided in ``_exit_policy``; the live handles are listed in ``_registry``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading

from .._linux import _pidfd
from . import _reap

THREAD_NAME = "tether-reaper"


class _Reaper:
    """The children handed over by their handles, and the thread that reaps them."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # GC may run Process.__del__ (-> take) under it
        self._idle = threading.Condition(self._lock)
        self._epoll: select.epoll | None = None
        self._thread: threading.Thread | None = None
        self._by_pidfd: dict[int, tuple[int, bool]] = {}  # pidfd -> (pid, kill at exit)
        self._without_pidfd: dict[int, bool] = {}  # pid -> kill at exit

    def take(self, pid: int, pidfd: int | None, *, kill_at_exit: bool) -> None:
        """Take over reaping child *pid*, and its *pidfd* (closed once reaped)."""
        with self._lock:
            if pidfd is None:
                self._without_pidfd[pid] = kill_at_exit
                threading.Thread(
                    target=self._reap_by_pid, args=(pid,), name=f"{THREAD_NAME}-{pid}", daemon=True
                ).start()
                return
            if self._epoll is None:
                epoll = select.epoll()
                if self._epoll is not None:  # a collection during epoll() took a child meanwhile
                    epoll.close()
                else:
                    self._epoll = epoll
                    self._thread = threading.Thread(
                        target=self._run, args=(epoll,), name=THREAD_NAME, daemon=True
                    )
                    self._thread.start()
            self._by_pidfd[pidfd] = (pid, kill_at_exit)
            self._epoll.register(pidfd, select.EPOLLIN)

    def pids(self) -> set[int]:
        """The pids of the children held here and not reaped yet."""
        with self._lock:
            held, without = list(self._by_pidfd.values()), list(self._without_pidfd)
        return {pid for pid, _ in held} | set(without)

    def registrations(self) -> int:
        """How many children are held here now."""
        with self._lock:
            return len(self._by_pidfd) + len(self._without_pidfd)

    def epoll_fd(self) -> int | None:
        """The reaper's own long-lived epoll fd, once started."""
        return None if self._epoll is None else self._epoll.fileno()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every child held here is reaped; False if *timeout* ran out first."""
        with self._idle:
            return self._idle.wait_for(
                lambda: not self._by_pidfd and not self._without_pidfd, timeout
            )

    def kill_all(self, patience: float = 5.0) -> None:
        """SIGKILL every child held here that was not detached on purpose, and wait up to
        *patience* seconds for them to be reaped; detached children are not waited for."""
        with self._lock:
            for pidfd, (_, kill) in list(self._by_pidfd.items()):
                if kill:
                    with contextlib.suppress(OSError):
                        _pidfd.signal_pidfd(pidfd, signal.SIGKILL)
            for pid, kill in list(self._without_pidfd.items()):
                if kill:  # unreaped: its thread reaps under this lock, so the pid is ours
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            self._idle.wait_for(self._no_doomed_child, patience)

    def _no_doomed_child(self) -> bool:
        held, without = list(self._by_pidfd.values()), list(self._without_pidfd.values())
        return not any(kill for _, kill in held) and not any(without)

    def _run(self, epoll: select.epoll) -> None:
        # Signals are for the program's threads: blocked here, they go to one that acts.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while True:
            for pidfd, _ in epoll.poll():
                self._reap(epoll, pidfd)

    def _reap(self, epoll: select.epoll, pidfd: int) -> None:
        with self._lock:
            entry = self._by_pidfd.get(pidfd)
            if entry is None:
                return
            with contextlib.suppress(ChildProcessError):  # stolen: nothing left to do
                _reap.reap_pidfd(pidfd, entry[0])
            epoll.unregister(pidfd)
            os.close(pidfd)
            del self._by_pidfd[pidfd]
            self._idle.notify_all()

    def _reap_by_pid(self, pid: int) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        with contextlib.suppress(ChildProcessError):  # exited; not reaped, so still ours
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        with self._lock:  # reaped under the lock: kill_all never signals a reaped pid
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            del self._without_pidfd[pid]
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

"""The thread that keeps a ``Supervisor``'s children alive: one per scope, started lazily.

Restarting a child means noticing its exit while the body of the ``with`` block does
something else, so a :class:`~tether.Supervisor` whose first child with a restart
policy is spawned starts one daemon thread, ``"tether-supervisor"``. It blocks in
``epoll_wait`` over:

* an exit fd per child of the scope: a ``dup`` of the child's pidfd (taken while the
  handle's fd is borrowed, so it cannot be closed under us), or, without pidfds, the
  borrowed fd of the handle's exit notifier, given back after the exit;
* the read end of a wake-up pipe, written to when the scope ends, when a child is
  added that must be looked at at once, and by the test hook ``Supervisor._poke``.

The epoll timeout is the time left until the earliest restart that is due, computed
from the supervisor's clock: a restart is a timed wait, never a sleep loop. Once the
thread has adopted a scope it watches *every* child of it, restart policy or not, so
that ``wait_any``/``wait_all`` can wait on one condition variable that the thread
notifies on each exit, restart and give-up.

Each pass of the thread (after ``epoll_wait`` returns) reaps the children whose fds
turned readable, hands their statuses to the supervisor (which asks the restart
tracker), restarts the children that are due, then publishes the number of the last
poke it has served. ``Supervisor.__exit__`` stops the thread and joins it *before* it
stops the children, so nothing restarts during the shutdown.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from typing import TYPE_CHECKING

from .._core._process import ExitFdLease, Process
from .._errors import StatusUnknownError
from .._status import Status
from ._records import Supervised

if TYPE_CHECKING:
    from ._supervisor import Supervisor

__all__ = ["THREAD_NAME", "Watcher"]

THREAD_NAME = "tether-supervisor"

_Entry = tuple[Supervised[Process], Process, ExitFdLease | None]  # None: the fd is our dup


class Watcher:
    """The watching thread of one :class:`Supervisor`; every method but :meth:`stop` and
    :meth:`wake` must be called with the supervisor's lock held."""

    def __init__(self, scope: Supervisor) -> None:
        self._scope = scope
        self._lock = scope._lock
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._watched: dict[int, _Entry] = {}
        self._ready: list[_Entry] = []  # exited before they could be watched
        self._stopping = False
        self._closed = False
        self.crashed = False
        """Whether the thread died of an error (waits then poll the children themselves)."""
        self.poked = 0
        """How many pokes were asked for (``Supervisor._poke``)."""
        self.served = 0
        """The last poke a complete pass has seen."""
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the thread still runs."""
        return self._thread.is_alive()

    def watch(self, record: Supervised[Process]) -> None:
        """Watch the current incarnation of *record* for its exit."""
        process = record._tree.process
        lease = ExitFdLease(process)
        fd = lease.acquire()
        if fd is None:  # reaped already
            self._ready.append((record, process, None))
            self.wake()
            return
        kept: ExitFdLease | None = lease
        if fd == process.pidfd:  # a pidfd: watch a dup of our own, give the lease back
            try:
                fd = os.dup(fd)
            finally:
                lease.release()
            kept = None
        try:
            self._epoll.register(fd, select.EPOLLIN)
        except BaseException:
            _release(fd, kept)
            raise
        self._watched[fd] = (record, process, kept)

    def wake(self) -> None:
        """Make the thread run a pass now."""
        with contextlib.suppress(BlockingIOError):  # full: it will wake anyway
            os.write(self._wake_w, b"\0")

    def stop(self) -> None:
        """Stop the thread, wait for it, and let go of every fd; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._stopping = True
            self.wake()
        self._thread.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for fd, (_, _, lease) in self._watched.items():
                self._epoll.unregister(fd)
                _release(fd, lease)
            self._watched.clear()
            self._epoll.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # a bug, or no memory: never lose children silently
            with self._lock:
                self.crashed = True
                for record in self._scope._records:
                    record._unkeep(f"the {THREAD_NAME} thread failed: {exc!r}")
                self._scope._changed.notify_all()
            raise

    def _serve(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                timeout = self._scope._next_restart_in()
            events = self._epoll.poll(-1 if timeout is None else timeout)
            with self._lock:
                exits = []
                for fd, _ in events:
                    if fd == self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            while os.read(self._wake_r, 512):
                                pass
                        continue
                    entry = self._watched.pop(fd, None)
                    if entry is not None:
                        self._epoll.unregister(fd)
                        exits.append((fd, entry))
                ready, self._ready = self._ready, []
                seen = self.poked
            for fd, (record, process, lease) in exits:
                status = _reap(process)
                _release(fd, lease)
                self._scope._child_exited(record, process, status)
            for record, process, _ in ready:
                self._scope._child_exited(record, process, _reap(process))
            self._scope._restart_due()
            with self._lock:
                self.served = seen
                self._scope._changed.notify_all()


def _reap(process: Process) -> Status | None:
    """The status of a child whose exit fd turned readable; None if another party took it."""
    try:
        status = process.poll()
    except StatusUnknownError:
        return None
    if status is None:  # readable means exited: wait the moment the kernel may need
        try:
            return process.wait()
        except StatusUnknownError:
            return None
    return status


def _release(fd: int, lease: ExitFdLease | None) -> None:
    """Give back the fd of a watched child: the handle's lease, or our own dup."""
    if lease is not None:
        lease.release()
    else:
        os.close(fd)

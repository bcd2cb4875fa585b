"""The thread that keeps a ``Supervisor``'s children alive: one per scope, started lazily.

Restarting a child means noticing its exit while the body of the ``with`` block does
something else, so a :class:`~tether.Supervisor` whose first child with a restart
policy is spawned starts one daemon thread, ``"tether-supervisor"``. It blocks in
``epoll_wait`` over:

* an exit fd per child of the scope: a ``dup`` of the child's pidfd (taken while the
  handle's fd is borrowed, so it cannot be closed under us), or, without pidfds, the
  borrowed fd of the handle's exit notifier, given back after the exit;
* the read end of a wake-up pipe, written to when the scope ends, when a child is
  added that must be looked at at once, and when a test asks for a pass
  (:meth:`Watcher.poke`, behind ``Supervisor._poke``).

The thread talks to its supervisor only through :class:`WatcherHost`, a small contract
(``Supervisor`` implements it with a private adapter; ``tests/test_watcher.py`` with a
fake), and sees each child only through a record it does not look into (:class:`Watched`:
the handle of the current incarnation), handed back as it came.

The epoll timeout is the time left until the earliest restart that is due, which the
host computes on its clock (cut to the ~24.8 days ``epoll_wait`` can take; the
thread asks again when it wakes): a restart is a timed wait, never a sleep loop. Once the
thread has adopted a scope it watches *every* child of it, restart policy or not, so
that ``wait_any``/``wait_all`` can wait on one condition variable that the host
notifies on each exit, restart and give-up.

Each pass of the thread (after ``epoll_wait`` returns) reaps the children whose fds
turned readable, hands their statuses to the host (which asks the restart tracker),
has the host restart the children that are due, then publishes the number of the last
poke it has served. ``Supervisor.__exit__`` stops the thread and joins it *before* it
stops the children, so nothing restarts during the shutdown. Should the thread die of
an error, the host hears of it (:meth:`WatcherHost.watcher_failed`) before the error
goes on to ``threading.excepthook``: no child is lost silently.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from typing import Generic, Protocol, TypeVar

from .._core._lease import ExitFdLease
from .._core._process import Process
from .._durations import poll_seconds
from .._errors import StatusUnknownError
from .._status import Status

__all__ = ["THREAD_NAME", "Watched", "Watcher", "WatcherHost"]

THREAD_NAME = "tether-supervisor"


class Watched(Protocol):
    """A child as the watcher sees it: the handle of its current incarnation."""

    @property
    def process(self) -> Process:
        """The incarnation to watch when the record is passed to :meth:`Watcher.watch`."""
        ...


R = TypeVar("R", bound=Watched)
R_contra = TypeVar("R_contra", bound=Watched, contravariant=True)


class WatcherHost(Protocol[R_contra]):
    """What a :class:`Watcher` needs of the scope it serves.

    The thread calls :meth:`next_restart_in`, :meth:`notify_changed` and
    :meth:`watcher_failed` with :attr:`lock` held, :meth:`child_exited` and
    :meth:`restart_due` without it (they take it as they need it).
    """

    @property
    def lock(self) -> threading.Lock:
        """The scope's lock; it also guards the watcher's own state."""
        ...

    def next_restart_in(self) -> float | None:
        """Seconds until the earliest restart is due (0 if overdue); None if none is."""
        ...

    def child_exited(self, record: R_contra, process: Process, status: Status | None) -> None:
        """*process*, the incarnation of *record* that was watched, has exited and is
        reaped; *status* is None if another party took it."""
        ...

    def restart_due(self) -> None:
        """Restart the children whose restart is due (at the end of every pass)."""
        ...

    def notify_changed(self) -> None:
        """A pass is complete: wake whoever waits for the children or for :attr:`Watcher.served`."""
        ...

    def watcher_failed(self, error: BaseException) -> None:
        """The thread is dying of *error*: nothing keeps the children alive any more."""
        ...


_Entry = tuple[R, Process, ExitFdLease | None]  # None: the fd is our dup


class Watcher(Generic[R]):
    """The watching thread of one scope, started at once; :meth:`watch` must be called
    with the host's lock held, :meth:`poke` and :meth:`stop` without it."""

    def __init__(self, host: WatcherHost[R]) -> None:
        self._host = host
        self._lock = host.lock
        self._epoll = select.epoll()
        try:
            self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        except BaseException:
            self._epoll.close()
            raise
        self._watched: dict[int, _Entry[R]] = {}
        self._ready: list[_Entry[R]] = []  # exited before they could be watched
        self._stopping = False
        self._abandoned = False  # by a constructor that failed after starting the thread
        self._closed = False
        self.crashed = False
        """Whether the thread died of an error (waits then poll the children themselves)."""
        self.poked = 0
        """How many passes were asked for (:meth:`poke`)."""
        self.served = 0
        """The last poke a complete pass has seen."""
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        try:
            self._epoll.register(self._wake_r, select.EPOLLIN)
            self._thread.start()
        except BaseException:  # no thread (out of threads or memory), or an interrupt
            if self._thread.ident is None:
                self._close_locked()
            else:  # interrupted after it started: it stops, and closes up, on its own
                self._stopping = self._abandoned = True
                self.wake()
            raise

    @property
    def alive(self) -> bool:
        """Whether the thread still runs."""
        return self._thread.is_alive()

    def watch(self, record: R) -> None:
        """Watch the current incarnation of *record* for its exit."""
        process = record.process
        lease = ExitFdLease(process)
        own = -1
        try:
            fd = lease.acquire()
            if fd is None:  # reaped already
                self._ready.append((record, process, None))
                self.wake()
                return
            if fd == process.pidfd:  # a pidfd: watch a dup of our own, give the lease back
                own = os.dup(fd)
                lease.release()
                self._epoll.register(own, select.EPOLLIN)
                self._watched[own] = (record, process, None)
            else:
                self._epoll.register(fd, select.EPOLLIN)
                self._watched[fd] = (record, process, lease)
        except BaseException:  # an error, or an interrupt: give back what is not watched
            if own != -1 and own not in self._watched:
                with contextlib.suppress(OSError):
                    self._epoll.unregister(own)
                os.close(own)
            if all(entry[2] is not lease for entry in self._watched.values()):
                lease.release()
            raise

    def wake(self) -> None:
        """Make the thread run a pass now."""
        with contextlib.suppress(BlockingIOError):  # full: it will wake anyway
            os.write(self._wake_w, b"\0")

    def poke(self) -> int:
        """Ask for a complete pass now; once :attr:`served` reaches the number returned, one
        has run (the host's :meth:`~WatcherHost.notify_changed` says when to look)."""
        with self._lock:
            self.poked += 1
            if not self._closed:  # else the pipe is gone, and so is the thread
                self.wake()
            return self.poked

    def stop(self) -> None:
        """Stop the thread, wait for it, and let go of every fd; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._stopping = True
            self.wake()
        self._thread.join()
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
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
        # Signals are for the program's threads: blocked here, they go to one that acts.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            self._serve()
            if self._abandoned:
                with self._lock:
                    self._close_locked()
        except BaseException as exc:  # a bug, or no memory: never lose children silently
            with self._lock:
                self.crashed = True
                self._host.watcher_failed(exc)
            raise

    def _serve(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                timeout = poll_seconds(self._host.next_restart_in())
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
                self._host.child_exited(record, process, status)
            for record, process, _ in ready:
                self._host.child_exited(record, process, _reap(process))
            self._host.restart_due()
            with self._lock:
                self.served = seen
                self._host.notify_changed()


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

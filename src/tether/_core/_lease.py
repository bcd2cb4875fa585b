"""Borrowing a child's exit fd, and waiting on it without ``TimeoutExpired``.

A child's *exit fd* turns readable once the child has exited: its pidfd, or without
pidfds the read end of an exit notifier's pipe (``_linux._exit_notifier``). Several
waiters may poll it at once (threads in ``wait``, a ``run`` loop, an async task, a
supervisor's watcher), and it may be closed only after the last of them has stopped:
closing an fd under a poller lets its number be reused and polled by mistake. So a
waiter borrows the fd with an :class:`ExitFdLease` and the last lease given back after
the reap closes it.

An interrupt (a signal handler that raises) may land between any two calls, so the
lease is recorded by the handle *inside* the same locked step that counts it, and it
is taken inside the ``with`` block, never in ``__enter__``: whatever happens, the
block's exit gives back exactly what was taken.
"""

from __future__ import annotations

from typing import Protocol

from typing_extensions import final

from .._durations import deadline_after, remaining
from .._errors import StatusUnknownError
from .._status import Status
from ._reap import wait_readable

__all__ = ["ExitFdLease", "Leasable", "wait_for_exit"]


class Leasable(Protocol):
    """A handle whose exit fd can be leased (``Process`` is one)."""

    @property
    def pid(self) -> int:
        """The child's pid."""

    @property
    def args(self) -> tuple[str, ...]:
        """The child's argv."""

    def poll(self) -> Status | None:
        """Reap the child if it has exited."""

    def _borrow_exit_fd(self, lease: ExitFdLease, /) -> int | None:
        """Count *lease* and set ``lease.fd`` in one locked step; the fd or None."""

    def _return_exit_fd(self, lease: ExitFdLease, /) -> None:
        """Uncount *lease* if it holds the fd, and clear ``lease.fd``, in one locked step."""

    def _reap_returning(self, lease: ExitFdLease, /) -> Status | None:
        """Give *lease* back (as ``_return_exit_fd``) and reap the child, in one locked step."""


@final
class ExitFdLease:
    """A borrowed exit fd of a child, given back when the ``with`` block ends.

    ::

        with ExitFdLease(process) as lease:
            fd = lease.acquire()  # None: reaped, lost or detached, nothing to wait for
            ...

    While any lease is out the fd stays open, even after the reap.
    """

    __slots__ = ("_handle", "fd")

    def __init__(self, handle: Leasable) -> None:
        self._handle = handle
        self.fd: int | None = None
        """The borrowed fd, set by the handle while it counts this lease."""

    def acquire(self) -> int | None:
        """Borrow the fd (once); None when there is nothing to wait for."""
        if self.fd is None:
            return self._handle._borrow_exit_fd(self)
        return self.fd

    def release(self) -> None:
        """Give the fd back; idempotent."""
        # Only this lease's holder sets fd (under the handle's lock, with the count), so
        # None here means nothing is counted and the lock need not be taken.
        if self.fd is not None:
            self._handle._return_exit_fd(self)

    def __enter__(self) -> ExitFdLease:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def wait_for_exit(handle: Leasable, timeout: float | None) -> Status | None:
    """Block until the child exits, reap it and return its status; None after *timeout*.

    ``Process.wait`` without the exception: a timeout is an answer here, so tether's own
    waits (stop, shutdown, run) do not use ``TimeoutExpired`` for control flow. Raises
    :class:`tether.StatusUnknownError` like ``wait``.
    """
    # The lease's with-block spelled out (the fewer calls after a child's exit, the
    # sooner its waiter returns): taken inside the try, given back in its finally.
    deadline = None if timeout is None else deadline_after(timeout)
    while True:
        lease = ExitFdLease(handle)
        try:
            fd = handle._borrow_exit_fd(lease)
            if fd is None:  # reaped (or found lost) already
                break
            if not wait_readable(fd, None if deadline is None else remaining(deadline)):
                return None
            status = handle._reap_returning(lease)  # gives the lease back as it reaps
            if status is not None:
                return status
        finally:
            if lease.fd is not None:
                handle._return_exit_fd(lease)
    status = handle.poll()
    if status is None:  # pragma: no cover - poll() raises when the status is lost
        raise StatusUnknownError(handle.pid, handle.args)
    return status

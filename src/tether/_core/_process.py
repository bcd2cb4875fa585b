"""``tether.Process``: the synchronous handle of one child, and ``tether.spawn``.

A handle owns its child from spawn to reap. Three rules keep it safe to share
between threads:

* The reap happens under the handle's lock, once; the status is then cached and
  every waiter, in any thread, gets the same one.
* Signals are sent under the same lock and only while the child is unreaped, so a
  signal can never reach a process that inherited a recycled pid.
* Waiters block in ``poll`` on the pidfd *without* the lock. The pidfd is closed
  after the reap only when no waiter is still polling it; closing it under a
  poller would let the fd number be reused and polled by mistake. Waiters
  therefore borrow the fd and the last one to give it back closes it.

Without a pidfd (see ``_linux._exit_notifier``), the fd that waiters poll is a pipe
fed by a watching thread, and the reap uses ``wait4(pid)``.

Code outside this module borrows that fd through an :class:`ExitFdLease` (a context
manager) and waits without the exception :meth:`Process.wait` raises through
:func:`wait_for_exit`; it never touches the handle's underscore attributes.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import IO

from typing_extensions import Self, Unpack, final

from .._durations import deadline_after, remaining
from .._errors import StatusUnknownError, TimeoutExpired
from .._linux import _pidfd
from .._linux._exit_notifier import ExitNotifier
from .._spawn import SpawnOptions, StrOrBytesPath, make_plan, start_child
from .._status import Status
from ..limits import Limits
from . import _exit_policy as _exit_policy  # registers the interpreter-exit policy
from . import _registry
from ._reaper import REAPER

DEFAULT_GRACE = 5.0
"""Seconds :meth:`Process.stop` waits after the stop signal before it sends SIGKILL."""


@final
class Process:
    """A child process started by :func:`tether.spawn`.

    The child is reaped exactly once, by :meth:`poll`, :meth:`wait` or :meth:`stop`,
    and signals sent after that are silently dropped. Used as a context manager,
    the handle stops the child (:meth:`stop`) and closes its pipes on exit.
    """

    pid: int
    """The child's pid. Never reused by tether after the reap."""
    backend: str
    """The spawn backend that started the child: ``"native"``, ``"posix_spawn"`` or ``"fork"``."""
    args: tuple[str, ...]
    """The argv the child was started with."""
    stdin: IO[bytes] | None
    """Writable binary pipe to the child's stdin when spawned with ``stdin=PIPE``."""
    stdout: IO[bytes] | None
    """Readable binary pipe from the child's stdout when spawned with ``stdout=PIPE``."""
    stderr: IO[bytes] | None
    """Readable binary pipe from the child's stderr when spawned with ``stderr=PIPE``."""

    _lock: threading.Lock
    _status: Status | None
    _lost: bool
    _pidfd: int | None
    _exit_fd: int | None
    _notifier: ExitNotifier | None
    _borrowers: int
    _detached: bool

    def __init__(self) -> None:
        raise TypeError("Process handles are created by tether.spawn()")

    @classmethod
    def _from_spawn(
        cls,
        pid: int,
        pidfd: int | None,
        backend: str,
        args: tuple[str, ...],
        pipes: Mapping[int, int],
    ) -> Process:
        self = object.__new__(cls)
        self.pid = pid
        self.backend = backend
        self.args = args
        self._lock = threading.Lock()
        self._status = None
        self._lost = False
        self._pidfd = _pidfd.open_pidfd(pid) if pidfd is None else pidfd
        self._exit_fd = self._pidfd
        self._notifier = None
        self._borrowers = 0
        self._detached = False
        _registry.track(self)
        self.stdin = _open_pipe(pipes.get(0), "wb")
        self.stdout = _open_pipe(pipes.get(1), "rb")
        self.stderr = _open_pipe(pipes.get(2), "rb")
        return self

    @property
    def pidfd(self) -> int | None:
        """The child's pidfd while it is unreaped; None after the reap or without pidfds."""
        return self._pidfd

    @property
    def detached(self) -> bool:
        """Whether :meth:`detach` gave the child up."""
        return self._detached

    @property
    def status(self) -> Status | None:
        """The decoded exit status once reaped, else None. Does not reap."""
        return self._status

    @property
    def returncode(self) -> int | None:
        """The subprocess-style return code once reaped (negative for a signal), else None."""
        return None if self._status is None else self._status.returncode

    def poll(self) -> Status | None:
        """Reap the child if it has exited and return its status; None while it runs.

        A child that is only stopped (SIGSTOP) is still running. Raises
        :class:`tether.StatusUnknownError` if another party reaped it and the kernel
        kept no record of its status.
        """
        status = self._status
        if status is not None:
            return status
        with self._lock:
            return self._reap_locked()

    def wait(self, timeout: float | None = None) -> Status:
        """Block until the child exits, reap it and return its status.

        Waits on the pidfd with a real timeout (no sleep loop); raises
        :class:`tether.TimeoutExpired` when *timeout* seconds pass first, leaving the
        child running. Any number of threads may wait at once; all get the same status.
        """
        status = wait_for_exit(self, timeout)
        if status is None:
            raise TimeoutExpired(self.args, timeout if timeout is not None else 0.0)
        return status

    def send_signal(self, sig: int, *, group: bool = False) -> None:
        """Send *sig* to the child; a no-op once it has been reaped.

        ``group=True`` signals the child's whole process group instead (the child must
        lead one: spawn it with ``process_group=0`` or ``start_new_session=True``), so
        grandchildren that stayed in the group get it too. While the unreaped leader
        holds the group id, it cannot name another group.
        """
        with self._lock:
            self._check_attached()
            if self._status is not None or self._lost:
                return
            if group:
                _pidfd.signal_group(self.pid, self._pidfd, sig)
            elif self._pidfd is not None:
                _pidfd.signal_pidfd(self._pidfd, sig)
            else:
                _pidfd.signal_pid(self.pid, sig)

    def limits(self) -> Limits:
        """The child's resource limits now, read with ``prlimit``.

        Raises :class:`ProcessLookupError` once the child has been reaped: its pid
        may name another process by then.
        """
        with self._lock:
            self._check_running_locked()
            return Limits.read(self.pid)

    def set_limits(self, limits: Limits) -> None:
        """Change the running child's resource limits with ``prlimit``.

        The child's pid cannot change owner while tether holds it unreaped, so this
        never touches another process; raising a hard limit needs
        ``CAP_SYS_RESOURCE``. Raises :class:`ProcessLookupError` once reaped.
        """
        with self._lock:
            self._check_running_locked()
            limits.apply(self.pid)

    def detach(self) -> None:
        """Give up the child: it runs on, and tether's background reaper reaps it.

        For a child meant to outlive this handle (and this program: detached children
        are not killed at interpreter exit). Its status is never reported; every
        method but ``repr`` raises ``RuntimeError`` afterwards. A no-op once reaped.
        """
        with self._lock:
            if self._status is not None or self._lost or self._detached:
                return
            if self._borrowers:
                raise RuntimeError(f"process {self.pid} is being waited for: cannot detach it")
            self._hand_to_reaper_locked(kill_at_exit=False)
            self._detached = True

    def terminate(self) -> None:
        """Send SIGTERM; a no-op once the child has been reaped."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL; a no-op once the child has been reaped."""
        self.send_signal(signal.SIGKILL)

    def stop(self, grace: float = DEFAULT_GRACE, sig: int = signal.SIGTERM) -> Status:
        """Stop the child and reap it: *sig*, up to *grace* seconds, then SIGKILL.

        The grace period is a ceiling: a child that exits at once returns at once.
        SIGCONT follows *sig* (as systemd does) so that a stopped child can act on
        it. If the wait is interrupted (KeyboardInterrupt, ...), the child is killed
        and reaped before the exception propagates.
        """
        if grace < 0:
            raise ValueError(f"grace must not be negative, not {grace}")
        status = self.poll()
        if status is not None:
            return status
        send_stop_signal(self.send_signal, sig)
        try:
            status = wait_for_exit(self, grace)
        except StatusUnknownError:
            raise  # nothing left to stop
        except BaseException:
            self.kill()
            with contextlib.suppress(StatusUnknownError):
                self.wait()
            raise
        if status is not None:
            return status
        self.kill()
        return self.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if not self._detached:
                with contextlib.suppress(StatusUnknownError):  # gone; wait() says what happened
                    self.stop()
        finally:
            close_pipes(self)

    def __repr__(self) -> str:
        if self._status is not None:
            state = str(self._status)
        elif self._lost:
            state = "status unknown"
        elif self._detached:
            state = "detached"
        else:
            state = "running"
        args = list(self.args)
        return f"<tether.Process pid={self.pid} {state} backend={self.backend} args={args!r}>"

    def __del__(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is None or self._detached:
            return
        running = False
        if self._status is None and not self._lost:
            try:
                running = self.poll() is None
            except Exception:
                running = False
        with lock:
            if running:
                self._hand_to_reaper_locked(kill_at_exit=True)
            else:
                self._borrowers = 0
                self._release_locked(child_reaped=self._status is not None)
        if running:
            warnings.warn(
                f"tether: process {self.pid} ({list(self.args)!r}) is still running; "
                "the background reaper will reap it",
                ResourceWarning,
                source=self,
                stacklevel=1,
            )

    # --- internals ------------------------------------------------------------------

    def _check_running_locked(self) -> None:
        self._check_attached()
        if self._status is not None or self._lost:
            raise ProcessLookupError(f"process {self.pid} has been reaped")

    def _check_attached(self) -> None:
        if self._detached:
            raise RuntimeError(f"process {self.pid} was detached: tether no longer owns it")

    def _hand_to_reaper_locked(self, *, kill_at_exit: bool) -> None:
        pidfd, self._pidfd = self._pidfd, None
        if self._notifier is not None:
            self._notifier.close(child_reaped=False)
            self._notifier = None
        self._exit_fd = None
        REAPER.take(self.pid, pidfd, kill_at_exit=kill_at_exit)
        _registry.untrack(self)

    def _reap_locked(self) -> Status | None:
        if self._status is not None:
            return self._status
        self._check_attached()
        if self._lost:
            raise StatusUnknownError(self.pid, self.args)
        try:
            if self._pidfd is not None:
                status = _pidfd.reap_pidfd(self._pidfd, self.pid)
            else:
                status = _pidfd.reap_pid(self.pid)
        except ChildProcessError:
            status = None if self._pidfd is None else _pidfd.recover_exit_status(self._pidfd)
            if status is None:
                self._lost = True
                self._release_locked(child_reaped=True)
                _registry.untrack(self)
                raise StatusUnknownError(self.pid, self.args) from None
        if status is not None:
            self._status = status
            self._release_locked(child_reaped=True)
            _registry.untrack(self)
        return status

    def _borrow_exit_fd(self) -> int | None:
        with self._lock:
            if self._status is not None or self._lost or self._detached:
                return None
            if self._exit_fd is None:
                self._notifier = ExitNotifier(self.pid)
                self._exit_fd = self._notifier.fileno
            self._borrowers += 1
            return self._exit_fd

    def _return_exit_fd(self) -> None:
        with self._lock:
            self._borrowers -= 1
            if self._status is not None or self._lost:
                self._release_locked(child_reaped=True)

    def _release_locked(self, *, child_reaped: bool) -> None:
        if self._borrowers:
            return
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        if self._notifier is not None:
            self._notifier.close(child_reaped=child_reaped)
            self._notifier = None
        self._exit_fd = None


def spawn(argv: Iterable[StrOrBytesPath], **options: Unpack[SpawnOptions]) -> Process:
    """Start *argv* as a child process and return its :class:`Process` handle.

    Options are validated before anything is created: bad input raises
    ``ValueError``/``TypeError``, a program that cannot run raises
    :class:`tether.SpawnError`, and a failed spawn leaves no process, zombie or fd
    behind. ``backend`` is ``"auto"`` (the fastest backend that supports the
    options), ``"native"``, ``"posix_spawn"`` or ``"fork"``; every other option is
    described in the user guide.
    """
    plan = make_plan(argv, **options)
    pid, pidfd, backend_name, stdio = start_child(plan, options.get("backend", "auto"))
    try:
        return Process._from_spawn(pid, pidfd, backend_name, plan.args, stdio.parent_ends)
    except BaseException:
        stdio.close_all()
        _kill_and_reap(pid)
        raise


@final
class ExitFdLease:
    """A borrowed exit fd of a child: it turns readable once the child has exited.

    The fd is the child's pidfd, or the pipe of the no-pidfd fallback. While a lease is
    out the fd stays open, even after the reap; the last lease given back closes it.
    Used as a context manager, ``__enter__`` returns the fd, or None when the child is
    reaped (or lost, or detached) already and there is nothing to wait for;
    :meth:`acquire` and :meth:`release` do the same for a lease held across calls.
    """

    __slots__ = ("_fd", "_process")

    def __init__(self, process: Process) -> None:
        self._process = process
        self._fd: int | None = None

    def acquire(self) -> int | None:
        """Borrow the fd (once); None when there is nothing to wait for."""
        if self._fd is None:
            self._fd = self._process._borrow_exit_fd()
        return self._fd

    def release(self) -> None:
        """Give the fd back; idempotent."""
        if self._fd is not None:
            self._fd = None
            self._process._return_exit_fd()

    def __enter__(self) -> int | None:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def wait_for_exit(process: Process, timeout: float | None) -> Status | None:
    """Block until *process* exits, reap it and return its status; None after *timeout*.

    :meth:`Process.wait` without the exception: a timeout is an answer here, so tether's
    own waits (stop, shutdown, run) do not use ``TimeoutExpired`` for control flow.
    Raises :class:`tether.StatusUnknownError` like ``wait``.
    """
    deadline = deadline_after(timeout)
    while True:
        with ExitFdLease(process) as fd:
            if fd is None:  # reaped (or found lost) already
                break
            ready = _pidfd.wait_readable(fd, remaining(deadline))
        if not ready:
            return None
        if process.poll() is not None:
            break
    status = process.poll()
    if status is None:  # pragma: no cover - poll() raises when the status is lost
        raise StatusUnknownError(process.pid, process.args)
    return status


def send_stop_signal(send: Callable[[int], None], sig: int) -> None:
    """Send the stop signal *sig* through *send*, then SIGCONT so a stopped child can act.

    Not after SIGKILL (which needs no help) or SIGCONT itself.
    """
    send(sig)
    if sig not in (signal.SIGKILL, signal.SIGCONT):
        send(signal.SIGCONT)


def close_pipes(process: Process) -> None:
    """Close the handle's pipes to the child; unflushed input it will never read is dropped."""
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            _close_quietly(pipe)


def _kill_and_reap(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _open_pipe(fd: int | None, mode: str) -> IO[bytes] | None:
    if fd is None:
        return None
    return io.open(fd, mode, buffering=-1)  # noqa: UP020


def _close_quietly(pipe: IO[bytes]) -> None:
    with contextlib.suppress(BrokenPipeError):  # unflushed input the child will never read
        pipe.close()

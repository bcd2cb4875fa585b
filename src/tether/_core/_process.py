"""``tether.Process``: the synchronous handle of one child.

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
fed by a watching thread, and the reap uses ``wait4(pid)``. The borrowing is done
with the leases of ``_lease``.

A handle is made *before* its child (``_spawning``): the spawn writes the child into
the handle's receipt, and :meth:`Process._take_child` then takes it over in one group
of plain stores, which no signal handler can cut in two. Every release follows the
same rule: an fd leaves its attribute before it is closed, so an interrupt can leak
one but never get it closed twice, and a pidfd is closed only once its child is
proven reaped (otherwise the child goes to the background reaper with it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import warnings
from types import ModuleType, TracebackType
from typing import IO, Protocol

from typing_extensions import Self, final

from .._durations import check_duration
from .._errors import StatusUnknownError, TimeoutExpired
from .._linux import _pidfd
from .._linux._exit_notifier import ExitNotifier
from .._spawn import ChildStdio, SpawnPlan, SpawnReceipt, undo
from .._status import Status
from ..limits import Limits
from . import _exit_policy as _exit_policy  # registers the interpreter-exit policy
from . import _registry
from ._lease import ExitFdLease, wait_for_exit
from ._pipes import close_pipes, open_pipe
from ._reap import reap_pidfd
from ._reap import wait_exited as _wait_exited
from ._reaper import REAPER
from ._stop_signal import check_stop_signal, send_stop_signal

_SIGKILL = signal.SIGKILL

DEFAULT_GRACE = 5.0
"""Seconds :meth:`Process.stop` waits after the stop signal before it sends SIGKILL."""


class ReadinessHook(Protocol):
    """A readiness channel a supervisor attached (``_supervise._readiness``)."""

    @property
    def status_text(self) -> str | None:
        """The last ``STATUS=`` text the child sent."""

    def wait(self, process: Process, timeout: float | None, /) -> None:
        """Block until the child says ready (see :meth:`Process.ready`)."""

    async def wait_async(self, handle: object, /) -> None:
        """Wait until the child behind *handle* (an ``AsyncProcess``) says ready."""


@final
class Process:
    """A child process started by :func:`tether.spawn`.

    The child is reaped exactly once, by :meth:`poll`, :meth:`wait` or :meth:`stop`,
    and signals sent after that are silently dropped. Only :func:`tether.spawn` creates
    one (calling ``Process()`` is a ``TypeError``); a handle is safe to share between
    threads.

    Used as a context manager (``with tether.spawn(...) as process:``), the handle stops the
    child on exit (:meth:`stop` with the defaults, unless it was detached), swallows
    :class:`tether.StatusUnknownError`, and closes its pipes.

    A handle garbage-collected while its child runs emits a ``ResourceWarning`` and hands the
    child to the background reaper (one ``tether-reaper`` thread, an epoll over all such
    pidfds). At interpreter exit every child tether still owns (live or dropped handles, not
    detached ones) is killed with ``SIGKILL`` and reaped.
    """

    __slots__ = (
        "__weakref__",
        "_backend",
        "_borrowers",
        "_detached",
        "_exit_fd",
        "_lock",
        "_lost",
        "_notifier",
        "_owner",
        "_pidfd",
        "_plan",
        "_readiness",
        "_receipt",
        "_started",
        "_status",
        "_stdio",
        "args",
        "backend",
        "pid",
        "stderr",
        "stdin",
        "stdout",
    )

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
    _started: bool
    _receipt: SpawnReceipt
    _stdio: ChildStdio
    _plan: SpawnPlan | None
    _backend: ModuleType | None
    _owner: int  # the pid of the process that spawned the child
    _readiness: ReadinessHook | None  # set by a supervisor for spawn(ready=...)

    def __init__(self) -> None:
        raise TypeError("Process handles are created by tether.spawn()")

    @classmethod
    def _unstarted(cls, plan: SpawnPlan, backend: ModuleType) -> Process:
        """A handle for the child *plan* describes, before that child exists."""
        self = object.__new__(cls)
        self.pid = 0
        self.backend = backend.NAME
        self.args = plan.args
        self.stdin = self.stdout = self.stderr = None
        self._status = None
        self._lost = False
        self._pidfd = None
        self._exit_fd = None
        self._notifier = None
        self._borrowers = 0
        self._detached = False
        self._started = False
        self._receipt = SpawnReceipt()
        self._stdio = ChildStdio()
        self._plan = plan
        self._backend = backend
        self._owner = os.getpid()
        self._readiness = None
        self._lock = threading.Lock()  # last: __del__ takes a handle without it as half-made
        return self

    def _take_child(self) -> None:
        """Take over the child the spawn wrote into the receipt, and its pipes."""
        receipt, stdio = self._receipt, self._stdio
        if stdio.parent_ends:
            self.stdin = open_pipe(stdio.take_parent_end(0), "wb")
            self.stdout = open_pipe(stdio.take_parent_end(1), "rb")
            self.stderr = open_pipe(stdio.take_parent_end(2), "rb")
        # One group of plain stores: the child is the receipt's until here, ours after.
        self.pid, self._pidfd, self._exit_fd, receipt.pidfd, self._started = (
            receipt.pid,
            receipt.pidfd,
            receipt.pidfd,
            None,
            True,
        )
        self._plan = self._backend = None
        _registry.track(self)

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
        if timeout is None and _wait_exited is not None:
            status = self._wait_on_own_pidfd()
            if status is not None:
                return status
        status = wait_for_exit(self, timeout)
        if status is None:
            raise TimeoutExpired(self.args, timeout if timeout is not None else 0.0)
        return status

    def _wait_on_own_pidfd(self) -> Status | None:
        # wait() without a timeout on a child with a pidfd: wait_for_exit with its lease
        # spelled out in one frame, the borrowed fd held in a local that is counted and
        # set, then uncounted and cleared, in single steps (no call between the two
        # stores, so no interrupt either). After the child's exit every call runs on
        # caches the exit evicted, and this is the path to the caller's answer. None:
        # nothing was borrowed, or the reap found the child running; the general path
        # then does the rest.
        fd = None
        try:
            with self._lock:
                pidfd = self._pidfd
                if (
                    pidfd is None
                    or self._status is not None
                    or self._lost
                    or self._detached
                    or not self._started
                ):
                    return None
                self._borrowers, fd = self._borrowers + 1, pidfd
            _wait_exited(pidfd)  # type: ignore[misc]  # not None: checked by wait()
            with self._lock:
                self._borrowers, fd = self._borrowers - 1, None
                return self._reap_after_wait_locked()
        finally:
            if fd is not None:
                self._give_back_borrowed_fd()

    def ready(self, timeout: float | None = None) -> None:
        """Block until the child says it is ready; only for ``Supervisor.spawn(ready=...)``.

        Returns once the child has sent ``READY=1`` (``ready="notify"``) or written its
        line (``ready="fd:N"``). Raises :class:`tether.NotReadyError` (with the child's
        status) if it exits first, :class:`tether.TimeoutExpired` after *timeout*
        seconds (leaving the child running), and ``RuntimeError`` for a child spawned
        without ``ready=``.
        """
        if self._readiness is None:
            raise RuntimeError(
                f"process {self.pid} was not spawned with ready=: nothing says when it is "
                'ready (use Supervisor.spawn(..., ready="notify") or ready="fd:N")'
            )
        self._readiness.wait(self, timeout)

    @property
    def notify_status(self) -> str | None:
        """The last ``STATUS=`` text of a child spawned with ``ready="notify"``, else None."""
        return None if self._readiness is None else self._readiness.status_text

    def send_signal(self, sig: int, *, group: bool = False) -> None:
        """Send *sig* to the child; a no-op once it has been reaped.

        ``group=True`` signals the child's whole process group instead (the child must
        lead one: spawn it with ``process_group=0`` or ``start_new_session=True``), so
        grandchildren that stayed in the group get it too: through the pidfd with
        ``PIDFD_SIGNAL_PROCESS_GROUP`` (Linux 6.9+), else with ``killpg``. While the unreaped
        leader holds the group id, it cannot name another group.

        :raises ValueError: ``group=True`` for a child that does not lead its group.
        :raises OSError: an invalid signal number (``EINVAL``).
        :raises RuntimeError: the child was detached.
        """
        if self._owner != os.getpid():  # before the lock: a forked child may hold it
            self._check_owner()
        with self._lock:
            if self._detached:
                self._check_attached()
            if self._status is not None or self._lost or not self._started:
                return
            pidfd = self._pidfd
            if group:
                _pidfd.signal_group(self.pid, pidfd, sig)
            elif pidfd is not None:
                # _pidfd.signal_pidfd spelled out, without suppress()'s two calls: a
                # kill's waiter is on the clock from here
                try:  # noqa: SIM105
                    signal.pidfd_send_signal(pidfd, sig)
                except ProcessLookupError:
                    pass  # reaped by someone else: nothing left to signal
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
        if not isinstance(limits, Limits):
            raise TypeError(f"limits must be a tether.Limits, not {type(limits).__name__}")
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
        self.send_signal(_SIGKILL)

    def stop(self, grace: float = DEFAULT_GRACE, sig: int = signal.SIGTERM) -> Status:
        """Stop the child and reap it: *sig*, up to *grace* seconds, then SIGKILL.

        The grace period is a ceiling: a child that exits at once returns at once.
        SIGCONT follows *sig* (as systemd does) so that a stopped child can act on
        it. If the wait is interrupted (KeyboardInterrupt, ...), the child is killed
        and reaped before the exception propagates.
        """
        grace = check_duration(grace, "grace")
        sig = check_stop_signal(sig)
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
        if not self._started:
            state = "not started"
        elif self._status is not None:
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
        try:
            if self._status is not None and self._pidfd is None and self._notifier is None:
                return  # reaped, and its fds closed: the common end, nothing to do
            lock = self._lock
        except AttributeError:
            return  # half-made: _unstarted stores _lock last
        if self._detached:
            return  # given up
        if self._owner != os.getpid():
            return  # inherited through os.fork: the parent's child
        if not self._started:
            undo(self._receipt, self._stdio)  # an abandoned spawn: normally a no-op
            return
        running = False
        if self._status is None and not self._lost:
            try:
                running = self.poll() is None
            except StatusUnknownError:
                running = False
            except Exception:
                running = True  # not proven reaped: its pidfd goes to the reaper, unclosed
        with lock:
            self._borrowers = 0  # no lease outlives its handle: each holds a reference
            if running:
                self._hand_to_reaper_locked(kill_at_exit=True)
            else:
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

    def _check_owner(self) -> None:
        if self._owner != os.getpid():
            raise RuntimeError(
                f"process {self.pid} is a child of process {self._owner}, not of this one"
            )

    def _check_attached(self) -> None:
        if self._detached:
            raise RuntimeError(f"process {self.pid} was detached: tether no longer owns it")

    def _hand_to_reaper_locked(self, *, kill_at_exit: bool) -> None:
        pidfd, self._pidfd, self._exit_fd = self._pidfd, None, None
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            notifier.close(child_reaped=False)
        REAPER.take(self.pid, pidfd, kill_at_exit=kill_at_exit)
        _registry.untrack(self)

    def _reap_locked(self) -> Status | None:
        if self._status is not None:
            return self._status
        if self._detached:
            self._check_attached()
        if self._lost:
            raise StatusUnknownError(self.pid, self.args)
        if not self._started:  # pid 0 would name every child of ours
            raise RuntimeError("the child of this handle was never started")
        try:
            if self._pidfd is not None:
                status = reap_pidfd(self._pidfd, self.pid)
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

    def _borrow_exit_fd(self, lease: ExitFdLease) -> int | None:
        with self._lock:
            if self._status is not None or self._lost or self._detached or not self._started:
                return None
            if self._exit_fd is None:
                # No pidfd: a child that has exited already is reaped now, with no new fds
                # (which may have run out) and no thread.
                with contextlib.suppress(StatusUnknownError):  # poll() will raise it
                    if self._reap_locked() is not None:
                        return None
                if self._lost:
                    return None
                self._notifier = ExitNotifier(self.pid)
                self._exit_fd = self._notifier.fileno
            fd = self._exit_fd
            self._borrowers, lease.fd = self._borrowers + 1, fd  # counted and recorded at once
            return fd

    def _reap_returning(self, lease: ExitFdLease) -> Status | None:
        # The lease given back and the child reaped in one locked step.
        with self._lock:
            if lease.fd is not None:
                self._borrowers, lease.fd = self._borrowers - 1, None
            return self._reap_after_wait_locked()

    def _reap_after_wait_locked(self) -> Status | None:
        # A waiter has given its fd back, and the fd was readable: the child has most
        # likely exited. The usual case, the last waiter of a child with a pidfd, is
        # _reap_locked and _release_locked spelled out: after the child's exit every call
        # runs on caches the exit evicted, and this is the path to the caller's answer.
        pidfd = self._pidfd
        if (
            pidfd is not None
            and self._status is None
            and not self._lost
            and not self._borrowers
            and not self._detached
            and self._notifier is None
        ):
            try:
                status = reap_pidfd(pidfd, self.pid)
            except ChildProcessError:  # reaped by someone else: recovered or lost there
                return self._reap_locked()
            if status is not None:
                self._status = status
                self._exit_fd = self._pidfd = None  # out of the record, then closed
                os.close(pidfd)
                _registry.untrack(self)
            return status
        if self._status is None and not self._lost:
            return self._reap_locked()  # closes the fds if it reaps and no one borrows
        self._release_locked(child_reaped=True)
        if self._lost:
            raise StatusUnknownError(self.pid, self.args)
        return self._status

    def _return_exit_fd(self, lease: ExitFdLease) -> None:
        with self._lock:
            if lease.fd is None:
                return
            self._borrowers, lease.fd = self._borrowers - 1, None
            if self._status is not None or self._lost:
                self._release_locked(child_reaped=True)

    def _give_back_borrowed_fd(self) -> None:
        # _return_exit_fd for _wait_on_own_pidfd's borrow, which has no lease object.
        with self._lock:
            self._borrowers -= 1
            if self._status is not None or self._lost:
                self._release_locked(child_reaped=True)

    def _release_locked(self, *, child_reaped: bool) -> None:
        if self._borrowers:
            return
        self._exit_fd = None
        pidfd, self._pidfd = self._pidfd, None  # out of the record first: never closed twice
        if pidfd is not None:
            os.close(pidfd)
        notifier, self._notifier = self._notifier, None
        if notifier is not None:
            notifier.close(child_reaped=child_reaped)

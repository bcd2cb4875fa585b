"""``daemonize()``: the classic double fork, with a launcher that knows whether it worked.

The hazards, in the order the code meets them:

* **Threads.** ``fork`` copies only the calling thread; a lock another thread held at
  that moment stays held for ever in the child (logging's, the allocator's, an import
  lock, tether's own). So daemonize refuses to run while ``/proc/self/task`` lists any
  thread but the caller, tether's included: tether starts ``tether-reaper`` and
  ``tether-spawner`` on first use (see ``docs/internals.md``), so daemonize before
  spawning anything. ``threading.active_count()`` would miss threads started from C.
* **Buffered output** would be written twice (by the launcher and by the daemon): the
  standard streams are flushed before the first fork.
* **A launcher that exits 0 before the daemon can fail** tells the init script "started"
  about a daemon that dies a moment later. A pipe is made before the first fork; the
  daemon writes its pid, then ``R`` when it is ready (:meth:`Daemon.ready`) or ``E`` and
  the text of the exception that stopped its start-up; the launcher exits 0, or 1 with
  that text, or 1 when the daemon says nothing within ``ready_timeout``.
* **The pid file** is locked before forking, so a second instance fails at once in its
  launcher; the lock (an ``flock``) is inherited by the daemon, which rewrites the pid.
* **The controlling terminal.** The intermediate process calls ``setsid`` and forks
  again, so the daemon is not a session leader and can never acquire a terminal.
* **Closing every fd** breaks ``logging``: the streams of active handlers are kept, with
  the pid file's, the readiness pipe's and whatever the caller names.
* **Service managers** (``NOTIFY_SOCKET``, ``INVOCATION_ID`` or ``LISTEN_PID`` set) track
  the process they started; forking away from them is wrong. daemonize then stays in the
  foreground (unless ``foreground=False``), says so in :attr:`Daemon.reason` and in the
  ``tether.daemon`` logger, and :meth:`Daemon.ready` sends ``READY=1`` instead.
* **The launcher exits with ``os._exit``**: its ``atexit`` handlers belong to the daemon
  now (they would remove the daemon's pid file).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import IO, Any, NoReturn, TypeAlias

from typing_extensions import Self, final

from .._core._reaper import REAPER
from .._durations import deadline_after, poll_millis, remaining
from ._notify import notify
from ._pidfile import PidFile

__all__ = ["MANAGER_VARIABLES", "Daemon", "StdioTarget", "daemonize"]

_logger = logging.getLogger("tether.daemon")

MANAGER_VARIABLES = ("NOTIFY_SOCKET", "INVOCATION_ID", "LISTEN_PID")
"""Environment variables that show a service manager started this process."""

StdioTarget: TypeAlias = "str | os.PathLike[str] | int | IO[Any] | None"

_PYTHON_DEFAULTS: dict[int, Callable[[int, FrameType | None], Any] | int] = {
    signal.SIGINT: signal.default_int_handler,
    signal.SIGPIPE: signal.SIG_IGN,
    signal.SIGXFSZ: signal.SIG_IGN,
}


@final
class Daemon:
    """What :func:`daemonize` returns in the daemon (or in the foreground process).

    Call :meth:`ready` once the service works: the launcher then exits 0. Used as a
    context manager, an exception that leaves the block before :meth:`ready` is sent
    to the launcher, which prints it and exits 1; an uncaught exception does the same.
    """

    def __init__(self, *, detached: bool, reason: str | None, pidfile: PidFile | None) -> None:
        self.detached = detached
        """True after the double fork; False when it stayed in the foreground."""
        self.reason = reason
        """Why it stayed in the foreground (None when detached)."""
        self.pidfile = pidfile
        """The held :class:`PidFile`, if one was given."""
        self._pipe: int | None = None
        self._previous_hook = sys.excepthook

    @property
    def pid(self) -> int:
        """This process's pid."""
        return os.getpid()

    @property
    def is_ready(self) -> bool:
        """Whether :meth:`ready` (or :meth:`fail`) has been called."""
        return self._pipe is None

    def ready(self, status: str | None = None) -> None:
        """Report that the daemon works: the launcher exits 0 (or ``READY=1`` is sent)."""
        if not self.detached:
            notify(ready=True, status=status)
        self._finish(b"R\n")

    def fail(self, message: str) -> None:
        """Report that the start failed: the launcher prints *message* and exits 1."""
        self._finish(b"E" + message.encode("utf-8", "replace"))

    def _finish(self, record: bytes) -> None:
        pipe, self._pipe = self._pipe, None
        if sys.excepthook is self._excepthook:
            sys.excepthook = self._previous_hook
        if pipe is not None:
            try:
                with contextlib.suppress(BrokenPipeError):  # the launcher was killed
                    os.write(pipe, record)
            finally:
                os.close(pipe)

    def _excepthook(
        self, kind: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        self.fail("".join(traceback.format_exception(kind, value, tb)))
        self._previous_hook(kind, value, tb)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if value is not None and not self.is_ready:
            self.fail("".join(traceback.format_exception(kind, value, tb)))

    def __repr__(self) -> str:
        where = "detached" if self.detached else f"foreground: {self.reason}"
        return f"<tether.daemon.Daemon pid={self.pid} {where}>"


def other_threads() -> list[str]:
    """The threads of this process besides the calling one, named (from ``/proc``)."""
    named = {t.native_id: t.name for t in threading.enumerate()}
    me = threading.get_native_id()
    found = []
    for tid in sorted(int(t) for t in os.listdir("/proc/self/task")):
        if tid == me:
            continue
        name = named.get(tid)
        if name is None:
            with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
        found.append(f"{name or '?'} ({tid})")
    return found


def manager_reason() -> str | None:
    """Which variable shows a service manager runs this process, or None."""
    for name in MANAGER_VARIABLES:
        if os.environ.get(name):
            return f"{name} is set: a service manager runs this process"
    return None


def daemonize(
    *,
    pidfile: PidFile | str | os.PathLike[str] | None = None,
    workdir: str | os.PathLike[str] = "/",
    umask: int = 0o022,
    stdin: StdioTarget = None,
    stdout: StdioTarget = None,
    stderr: StdioTarget = None,
    keep_fds: Iterable[int] = (),
    ready_timeout: float | None = 30.0,
    foreground: bool | None = None,
) -> Daemon:
    """Turn this program into a daemon; return, in the daemon, a :class:`Daemon`.

    The launcher (the process that called this) never returns: it exits 0 once the
    daemon calls :meth:`Daemon.ready`, or 1 after printing the daemon's start-up error,
    or 1 when nothing came within *ready_timeout* seconds (``None``: wait for ever; the
    daemon is then left running, and its pid printed).

    *pidfile* (a path or a :class:`PidFile`) is locked before the first fork:
    :class:`AlreadyRunning` is raised here, in the launcher, when another instance holds
    it. The daemon runs in *workdir* with *umask*, an empty signal mask and the signal
    dispositions of a fresh interpreter; its stdin, stdout and stderr go to ``/dev/null``
    unless a path (opened for appending), an fd or a file object is given. Every other fd
    is closed except *keep_fds*, the pid file's and those of active ``logging``
    handlers. Under a service manager it stays in the foreground unless *foreground*
    is False; ``foreground=True`` never forks.

    Raises ``RuntimeError`` when other threads run, or outside the main thread.
    """
    held = _hold(pidfile)
    try:
        reason = "foreground=True was passed" if foreground else None
        if foreground is None:
            reason = manager_reason()
        if reason is not None:
            _logger.info("tether.daemon: not detaching (%s)", reason)
            return Daemon(detached=False, reason=reason, pidfile=held)
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("daemonize() must be called from the main thread")
        threads = other_threads()
        if threads:
            raise RuntimeError(
                "daemonize() must run before any thread starts (fork copies only the "
                f"calling thread, and locks held by the others stay held); running: "
                f"{', '.join(threads)}. tether's own threads count: daemonize before "
                "spawning or supervising anything"
            )
        targets = [_open_target(t, i) for i, t in enumerate((stdin, stdout, stderr))]
    except BaseException:
        if held is not None and pidfile is not held:
            held.release()
        raise
    given = (stdin, stdout, stderr)
    # fds the caller handed over stay open; those opened here from paths are closed once
    # dup2 has put them in place
    keep = {*keep_fds, *_logging_fds()} | {
        fd
        for fd, target in zip(targets, given, strict=True)
        if fd >= 0 and not isinstance(target, (str, os.PathLike))
    }
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid != 0:
        os.close(write_end)
        _launcher(pid, read_end, ready_timeout)
    os.close(read_end)
    try:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        daemon = Daemon(detached=True, reason=None, pidfile=held)
        daemon._pipe = write_end
        os.write(write_end, f"P{os.getpid()}\n".encode())
        _settle(workdir, umask, targets)
        if held is not None:
            held.write()
            atexit.register(held.release)
        epoll = REAPER.epoll_fd()
        _close_fds_except(
            {0, 1, 2, write_end, *keep, -1 if epoll is None else epoll}
            | ({held.fd} if held is not None and held.fd is not None else set())
        )
        sys.excepthook = daemon._excepthook
        return daemon
    except BaseException as exc:  # the intermediate or the early daemon: tell the launcher
        with contextlib.suppress(OSError):
            os.write(write_end, b"E" + f"daemonize failed: {exc!r}".encode())
        os._exit(1)


def _hold(pidfile: PidFile | str | os.PathLike[str] | None) -> PidFile | None:
    if pidfile is None:
        return None
    held = pidfile if isinstance(pidfile, PidFile) else PidFile(pidfile)
    if not held.held:
        held.acquire()
    return held


def _open_target(target: StdioTarget, index: int) -> int:
    """An fd for stdio *index* (-1 for ``/dev/null``), opened now, before any fork."""
    if target is None:
        return -1
    if isinstance(target, int):
        os.fstat(target)  # EBADF now, in the launcher, rather than in the daemon
        return target
    if isinstance(target, (str, os.PathLike)):
        flags = os.O_RDONLY if index == 0 else os.O_WRONLY | os.O_APPEND | os.O_CREAT
        return os.open(target, flags | os.O_CLOEXEC, 0o644)
    return int(target.fileno())


def _logging_fds() -> set[int]:
    found: set[int] = set()
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            for holder in (
                getattr(handler, "stream", None),
                getattr(handler, "socket", None),
                getattr(handler, "sock", None),
            ):
                with contextlib.suppress(Exception):
                    found.add(int(holder.fileno()))  # type: ignore[union-attr]
    return found


def _settle(workdir: str | os.PathLike[str], umask: int, targets: list[int]) -> None:
    os.chdir(workdir)
    os.umask(umask)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for signum in signal.valid_signals():
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        with contextlib.suppress(OSError, ValueError):  # glibc's reserved real-time signals
            signal.signal(signum, _PYTHON_DEFAULTS.get(signum, signal.SIG_DFL))
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    for index, target in enumerate(targets):
        os.dup2(null if target < 0 else target, index)
    os.close(null)


def _close_fds_except(keep: set[int]) -> None:
    listing = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        open_fds = [int(name) for name in os.listdir(listing)]
    finally:
        os.close(listing)
    for fd in open_fds:
        if fd not in keep and fd != listing:
            with contextlib.suppress(OSError):
                os.close(fd)


def _launcher(child: int, read_end: int, ready_timeout: float | None) -> NoReturn:
    """Wait for the daemon's word, print it, and exit: never returns to the caller."""
    code = 1
    try:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child, 0)  # the intermediate exits at once
        code, message = _await_word(read_end, ready_timeout)
        if message:
            sys.stderr.write(message if message.endswith("\n") else message + "\n")
            sys.stderr.flush()
    finally:
        os._exit(code)


def _await_word(read_end: int, ready_timeout: float | None) -> tuple[int, str]:
    """Read the daemon's records until ``R``, EOF or the timeout; the exit code and message.

    Closes *read_end*.
    """
    try:
        data, timed_out = _read_records(read_end, deadline_after(ready_timeout))
    finally:
        os.close(read_end)
    head, _, rest = data.partition(b"\n")
    if rest.startswith(b"R\n"):
        return 0, ""
    who = f"daemon (pid {head[1:].decode()})" if head.startswith(b"P") else "daemon"
    if rest.startswith(b"E"):
        return 1, f"{who} failed to start:\n{rest[1:].decode('utf-8', 'replace')}"
    if head.startswith(b"E"):
        return 1, head[1:].decode("utf-8", "replace")
    if timed_out:
        return 1, f"{who} did not report ready within {ready_timeout} s; left running"
    return 1, f"{who} exited before it reported ready"


def _read_records(read_end: int, deadline: float | None) -> tuple[bytes, bool]:
    """Everything the daemon wrote until ``R``, EOF or *deadline*; and whether it timed out."""
    data = b""
    poller = select.poll()
    poller.register(read_end, select.POLLIN)
    while True:
        if not poller.poll(poll_millis(remaining(deadline))):
            if deadline is not None and time.monotonic() >= deadline:
                return data, True
            continue
        chunk = os.read(read_end, 65536)
        if not chunk:
            return data, False
        data += chunk
        if b"\nR\n" in data:
            return data, False

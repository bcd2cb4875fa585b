"""``spawn_daemon()``: start a command detached from us, through the spawn engine.

A daemon must not be our child: it would stay in our process tree, and its exit
would be ours to reap for as long as we live. So the classic double fork, with
these hazards handled:

* **Python after fork.** The intermediate process is an ``os.fork`` of the caller, which
  may run threads. It runs a fixed, short path: ``setsid``, the spawn of a handle
  *prepared in the parent* (every option validated, the program found, the backend
  chosen before the fork: ``_core._spawning.prepare``), one ``write`` and ``_exit``.
  That path takes no lock another thread could hold at the fork (tether's registry is
  made anew in a forked child, and the native spawner is a ``clone`` in C). CPython 3.12+
  warns about any fork of a threaded process; that warning is silenced for this fork
  alone, for these reasons.
* **Zombies.** The intermediate is our child and is reaped at once; the daemon,
  orphaned when it exits, is re-parented to init (or to the nearest subreaper, which
  must then reap it: a ``Supervisor(subreaper=True)`` scope does).
* **Exec failures.** The spawn engine reports them synchronously in the intermediate,
  which sends the :class:`tether.SpawnError` back over a pipe; the caller gets it as
  if the spawn had been its own.
* **The controlling terminal.** The intermediate leads the new session; the daemon is
  not a session leader and so never acquires a terminal.
* **Interrupts.** An exception (Ctrl-C) that lands after the fork still gets the
  intermediate reaped, and a daemon whose pid the caller will never learn is killed
  through a pidfd; only :class:`DaemonStartError` leaves a daemon running, and names it.
* **Readiness** (``notify=True``): the daemon gets a ``NOTIFY_SOCKET`` of its own (an
  abstract datagram socket with a random name) and the call returns only after
  ``READY=1``, or raises :class:`DaemonStartError` when the daemon exits first (watched
  through a pidfd: it is not our child) or says nothing within ``ready_timeout``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import secrets
import select
import signal
import socket
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from typing_extensions import Unpack

from .. import _native
from .._core._process import Process
from .._core._spawning import prepare, start
from .._durations import deadline_after, poll_millis, remaining
from .._errors import TetherError
from .._linux import _pidfd
from .._spawn import DEVNULL, PIPE, SpawnOptions, StrOrBytesPath
from ._pidfile import PidFile

__all__ = ["DaemonStartError", "spawn_daemon"]


_RECORD_BUFFER = 65536
"""Bytes read at a time from the intermediate (its pid record is a few dozen)."""
_KILL_PATIENCE = 10.0
"""Seconds to wait for a daemon killed on an interrupted start to be gone."""


class DaemonStartError(TetherError):
    """A daemon did not become ready; ``pid`` names it, ``status`` holds its last ``STATUS=``."""

    def __init__(self, message: str, pid: int, status: str | None = None) -> None:
        super().__init__(message)
        self.pid = pid
        self.status = status

    def __reduce__(self) -> tuple[object, ...]:
        return (DaemonStartError, (self.args[0], self.pid, self.status))


def spawn_daemon(
    argv: Iterable[StrOrBytesPath],
    *,
    pidfile: PidFile | str | os.PathLike[str] | None = None,
    notify: bool = False,
    ready_timeout: float | None = 30.0,
    **options: Unpack[SpawnOptions],
) -> int:
    """Start *argv* detached (own session, re-parented to init) and return its pid.

    Takes the options of :func:`tether.spawn` (limits, cwd, env, fds, user, ...);
    stdin, stdout and stderr default to ``/dev/null`` and cannot be ``PIPE``. A missing
    or non-executable program raises :class:`tether.SpawnError` as ``spawn`` does.

    *pidfile* is locked before anything starts (:class:`AlreadyRunning` if held), its
    fd is passed to the daemon so that the lock lives exactly as long as the daemon (and
    whatever inherits that fd), and the daemon's pid is written into it. It is not
    removed when the daemon exits: the next start finds it unlocked and takes it over.

    With *notify*, wait for the daemon to send ``READY=1`` on the ``NOTIFY_SOCKET`` it is
    given (the environment variable is added to its *env*); :class:`DaemonStartError`
    when it exits first or *ready_timeout* seconds pass (it is then left running).
    """
    for name in ("stdin", "stdout", "stderr"):
        if options.get(name) == PIPE:
            raise ValueError(f"a daemon outlives us: {name}=PIPE has no reader")
        options.setdefault(name, DEVNULL)  # type: ignore[misc]
    held = (
        None if pidfile is None else pidfile if isinstance(pidfile, PidFile) else PidFile(pidfile)
    )
    if held is not None and not held.held:
        held.acquire()
    sock = None
    started: list[int] = []  # the receipt: the daemon's pid, the moment it is known
    running = False
    try:
        if held is not None and held.fd is not None:
            options["pass_fds"] = (*options.get("pass_fds", ()), held.fd)
        if notify:
            sock, address = _notify_socket()
            options["env"] = _with_notify_socket(options.get("env"), address)
        process = prepare(argv, **options)
        _double_fork(process, started)
        if held is not None:
            held.write(started[0])
        if sock is not None:
            _await_ready(sock, started[0], ready_timeout)
        running = True
        return started[0]
    except DaemonStartError:
        running = True  # reported with its pid, left running: the caller decides
        raise
    except BaseException:
        for pid in started:  # an interrupt: the caller never learns the pid
            _kill(pid)
        raise
    finally:
        if sock is not None:
            sock.close()
        if held is not None:
            if running:
                held._let_go()  # the daemon holds the lock through its copy of the fd
            else:
                held.release()


def _with_notify_socket(
    env: Mapping[str, str] | Mapping[bytes, bytes] | None, address: str
) -> dict[bytes, bytes]:
    merged = {os.fsencode(key): os.fsencode(value) for key, value in (env or os.environ).items()}
    merged[b"NOTIFY_SOCKET"] = address.encode()
    return merged


def _notify_socket() -> tuple[socket.socket, str]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        name = f"tether-daemon-{os.getpid()}-{secrets.token_hex(8)}"
        sock.bind(b"\0" + name.encode())
    except BaseException:
        sock.close()
        raise
    return sock, "@" + name


class _Fork:
    """Where the fork records the intermediate and our end of its report pipe."""

    __slots__ = ("pid", "report")

    def __init__(self) -> None:
        self.pid = 0
        self.report: int | None = None


def _fork_into(fork: _Fork) -> tuple[int, int]:
    """Fork, with a close-on-exec report pipe: ``(pid, -1)`` here, ``(0, write end)`` in
    the child. With the extension, ``fork.pid`` and ``fork.report`` are stored in C before
    it returns, so no interrupt can lose them; without it, an interrupt in the instant
    after ``os.fork`` returns can (the record the intermediate sends names it, below)."""
    if _native.available:
        return _native.spawner.fork_into(fork)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    fork.report = read_end
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # see the module docstring
        pid = os.fork()
    if pid == 0:
        return 0, write_end
    fork.pid = pid
    os.close(write_end)
    return pid, -1


def _double_fork(process: Process, started: list[int]) -> None:
    """Start the prepared *process* from an intermediate child; append the daemon's pid
    to *started* (a receipt the caller made, so that no return value can be lost).

    If anything interrupts this after the fork, the intermediate is still reaped, and a
    daemon it managed to start but did not reach the receipt is killed (through a pidfd).
    """
    fork = _Fork()
    # Read *into* a buffer made beforehand: a chunk returned by os.read would be lost to
    # an interrupt landing before it is stored, and with it the pid of a daemon to kill.
    # The pid record is one small write (atomic in a pipe), so it sits at offset 0.
    buffer = bytearray(_RECORD_BUFFER)
    filled = 0
    try:
        child, write_end = _fork_into(fork)
        if child == 0:
            _intermediate(process, write_end)
        assert fork.report is not None, "made by the fork"
        while True:
            if filled == len(buffer):
                buffer.extend(bytes(_RECORD_BUFFER))
            count = os.readv(fork.report, [memoryview(buffer)[filled:]])
            if count == 0:
                break
            filled += count
        _reap(fork.pid)  # it exits at once, after writing its one record
        fork.pid = 0  # (reaping it twice is harmless: ECHILD, a pid is not reused that fast)
        started.append(_outcome(bytes(buffer[:filled]), process))
    except BaseException:
        record = None if fork.report is None else _salvage(buffer, fork.report)
        # the intermediate names itself in its record, for the fallback fork's window
        intermediate = fork.pid or (record[2] if record is not None else 0)
        if intermediate > 0:
            _reap(intermediate)
        if not started and record is not None and record[0] == "pid":
            _kill(record[1])
        raise
    finally:
        report, fork.report = fork.report, None  # out of the record, then closed
        if report is not None:
            os.close(report)


def _outcome(data: bytes, process: Process) -> int:
    """The daemon's pid from the intermediate's record, or raise the error it sent."""
    if not data:
        raise TetherError(f"the intermediate process of {list(process.args)!r} died silently")
    kind, value, _ = pickle.loads(data)
    if kind == "error":
        raise value
    return int(value)


def _salvage(buffer: bytearray, read_end: int) -> tuple[str, Any, int] | None:
    """After an interrupt: the intermediate's record, from what was read (whether or not
    it was counted) and the rest of the pipe; None if there is none."""
    data = bytes(buffer).rstrip(b"\0")  # a pickle ends with STOP ("."), never a NUL
    with contextlib.suppress(OSError):
        while chunk := os.read(read_end, len(buffer)):  # EOF once the intermediate exits
            data += chunk
    try:
        kind, value, intermediate = pickle.loads(data)
    except Exception:
        return None
    return str(kind), value, int(intermediate)


def _kill(pid: int) -> None:
    """SIGKILL the daemon *pid* through a pidfd and wait until it is dead (it is not our
    child: init reaps it)."""
    with contextlib.suppress(OSError):
        pidfd = os.pidfd_open(pid)
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            _pidfd.wait_readable(pidfd, _KILL_PATIENCE)
        finally:
            os.close(pidfd)


def _intermediate(process: Process, report: int) -> None:
    code = 0
    try:
        os.setsid()
        start(process)
        message = pickle.dumps(("pid", process.pid, os.getpid()))
    except BaseException as exc:
        code = 1
        try:
            message = pickle.dumps(("error", exc, os.getpid()))
        except Exception:
            failure = TetherError(f"spawn_daemon failed: {exc!r}")
            message = pickle.dumps(("error", failure, os.getpid()))
    finally:
        try:
            os.write(report, message)
        finally:
            os._exit(code)


def _reap(pid: int) -> None:
    """Reap our intermediate child, whatever interrupts the wait."""
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except ChildProcessError:
            return
        except BaseException:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            raise


def _await_ready(sock: socket.socket, pid: int, ready_timeout: float | None) -> None:
    deadline = deadline_after(ready_timeout)
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise DaemonStartError(f"daemon (pid {pid}) exited before it reported ready", pid) from None
    status: str | None = None
    try:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        while True:
            events = dict(poller.poll(poll_millis(remaining(deadline))))
            if sock.fileno() in events:
                for line in sock.recv(65536).decode("utf-8", "replace").splitlines():
                    if line == "READY=1":
                        return
                    if line.startswith("STATUS="):
                        status = line[len("STATUS=") :]
                continue
            if pidfd in events:
                how = _pidfd.recover_exit_status(pidfd)
                said = f" ({how})" if how is not None else ""
                extra = f"; last status: {status}" if status else ""
                raise DaemonStartError(
                    f"daemon (pid {pid}) exited before it reported ready{said}{extra}",
                    pid,
                    status,
                )
            if deadline is not None and time.monotonic() >= deadline:
                extra = f"; last status: {status}" if status else ""
                raise DaemonStartError(
                    f"daemon (pid {pid}) did not report ready within {ready_timeout} s "
                    f"(left running){extra}",
                    pid,
                    status,
                )
    finally:
        os.close(pidfd)

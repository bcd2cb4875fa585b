"""Readiness of a supervised child: ``ready="notify"`` and ``ready="fd:N"``.

The hazard: a child that has been *started* is not a child that is *up*. A server
still loading its configuration refuses connections, and a supervisor that resets a
crash-looping child's backoff because it "ran for a while" has learned nothing. So
the child is given a channel on which it says when it is up, and
``process.ready(timeout)`` waits for that word or for the child's death, whichever
comes first.

Two channels, as systemd and s6 spell them:

* ``ready="notify"``: a datagram socket of the child's own (an ``AF_UNIX``
  ``SOCK_DGRAM`` socket autobound in the abstract namespace, named to the child in
  ``NOTIFY_SOCKET=@...``), speaking sd_notify: each datagram holds newline-separated
  ``KEY=VALUE`` lines; ``READY=1`` says ready, ``STATUS=...`` is kept as the last
  status text, ``STOPPING=1`` is recorded, ``MAINPID=``/``WATCHDOG=1`` and unknown
  keys are ignored. An abstract socket has no file permissions: anyone in the network
  namespace can send to it. So the socket has ``SO_PASSCRED`` and every datagram is
  believed only if the kernel-stamped sender pid is the child, or a process whose
  process group is the child's (the child leads it in ``kill="group"`` mode) or whose
  parent chain leads to the child. Everything else is dropped.
* ``ready="fd:N"``: s6's readiness fd. The child gets the write end of a pipe as fd
  *N* and writes a line (any bytes, then a newline) once it is up. Our copy of the
  write end is closed as soon as the child exists, so end of file means that nobody
  can ever say ready any more.

A :class:`Readiness` is made before the child (in the launch, which stores it the
moment it exists so an interrupt leaves nothing open), handed the child's pid once it
exists, attached to the ``Process`` handle and closed when the supervisor lets the
incarnation go or the scope ends. Waiters borrow its fd; a close while one polls it
is deferred to the last of them, so a number is never closed under a poller.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Literal, TypeAlias

import anyio
import anyio.lowlevel
from typing_extensions import final

from .._aio._process import AsyncProcess, sync_process
from .._core._lease import ExitFdLease
from .._core._process import Process
from .._durations import deadline_after, poll_millis, remaining
from .._errors import NotReadyError, TimeoutExpired
from .._spawn import SpawnOptions

__all__ = ["Readiness", "ReadyMode", "parse_ready", "release"]

ReadyMode: TypeAlias = Literal["notify"] | int
"""``"notify"`` or the fd number of ``ready="fd:N"``."""

_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
_MAX_DATAGRAM = 4096
_ANCESTRY_LIMIT = 64  # parent links followed before a sender is given up as unrelated


def parse_ready(ready: str | None, options: SpawnOptions) -> ReadyMode | None:
    """The mode ``spawn(ready=...)`` asks for; None without one. Checks it against *options*."""
    if ready is None:
        return None
    if not isinstance(ready, str):
        raise TypeError(f'ready must be "notify" or "fd:N", not {type(ready).__name__}')
    if ready == "notify":
        return "notify"
    kind, _, number = ready.partition(":")
    if kind != "fd" or not number.isdigit() or not number.isascii():
        raise ValueError(f'ready must be "notify" or "fd:N" (N a number above 2), not {ready!r}')
    fd = int(number)
    if fd < 3:
        raise ValueError(f"ready={ready!r}: fds 0, 1 and 2 are the standard streams; use 3 or more")
    if fd in set(options.get("pass_fds", ())):
        raise ValueError(f"ready={ready!r}: fd {fd} is also in pass_fds")
    return fd


@final
class Readiness:
    """The channel on which one incarnation says it is ready, and what it said."""

    __slots__ = (
        "_borrowers",
        "_closing",
        "_eof",
        "_line",
        "_lock",
        "_pid",
        "_read",
        "_ready",
        "_sock",
        "_status",
        "_stopping",
        "_wake",
        "_write",
        "mode",
    )

    def __init__(self, mode: ReadyMode) -> None:
        self.mode: ReadyMode = mode
        self._lock = threading.Lock()
        self._wake: anyio.Lock | None = None  # one async waiter polls the fd at a time
        self._borrowers = 0
        self._closing = False
        self._eof = False
        self._ready = False
        self._stopping = False
        self._status: str | None = None
        self._line = b""
        self._pid = 0
        self._sock: socket.socket | None = None
        self._read: int | None = None
        self._write: int | None = None

    def open(self) -> None:
        """Create the socket or the pipe (each fd stored the moment it exists)."""
        if self.mode == "notify":
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            self._sock.setblocking(False)
            self._sock.bind("")  # autobind: a unique name in the abstract namespace
        else:
            self._read, self._write = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            os.set_blocking(self._write, True)

    def apply(self, options: SpawnOptions) -> SpawnOptions:
        """*options* with ``NOTIFY_SOCKET`` in the child's environment (notify mode)."""
        if self._sock is None:
            return options
        name = self._sock.getsockname()
        assert isinstance(name, bytes), "autobound: abstract"
        address = "@" + name[1:].decode("ascii")
        env = options.get("env")
        new: SpawnOptions = {**options}
        if env is None:
            new["env"] = {**os.environ, "NOTIFY_SOCKET": address}
        else:
            encoded: dict[bytes, bytes] = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
            encoded[b"NOTIFY_SOCKET"] = os.fsencode(address)
            new["env"] = encoded
        return new

    def extra_fds(self) -> tuple[tuple[int, int], ...]:
        """The ``(source, target)`` pair that gives the child the pipe as fd N (fd mode)."""
        if self._write is None or not isinstance(self.mode, int):
            return ()
        return ((self._write, self.mode),)

    def started(self, pid: int) -> None:
        """The child exists: only it (and its tree) hold the write end from now on."""
        self._pid = pid
        write, self._write = self._write, None
        if write is not None:
            os.close(write)

    # --- what the child said ------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether the child has said it is ready (reads what is pending first)."""
        return self.check()

    @property
    def status_text(self) -> str | None:
        """The last ``STATUS=`` text the child sent; None if none (or in fd mode)."""
        self.check()
        return self._status

    @property
    def stopping(self) -> bool:
        """Whether the child sent ``STOPPING=1``."""
        self.check()
        return self._stopping

    def check(self) -> bool:
        """Read every pending message without blocking; True once the child said ready."""
        with self._borrowed() as fd:
            if fd is not None:
                with self._lock:
                    if self._sock is not None:
                        self._drain_socket(self._sock)
                    elif not self._eof:
                        self._drain_pipe(fd)
        return self._ready

    def _drain_socket(self, sock: socket.socket) -> None:
        space = socket.CMSG_SPACE(_UCRED.size)
        while True:
            try:
                data, ancillary, _, _ = sock.recvmsg(_MAX_DATAGRAM, space)
            except (BlockingIOError, InterruptedError):
                return
            sender = 0
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    sender = _UCRED.unpack(payload[: _UCRED.size])[0]
            if self._believed(sender):
                self._take(data)

    def _drain_pipe(self, fd: int) -> None:
        while not self._ready:
            try:
                chunk = os.read(fd, 4096)
            except (BlockingIOError, InterruptedError):
                return
            if not chunk:
                self._eof = True
                return
            self._line += chunk
            if b"\n" in self._line:
                self._ready = True
                self._line = b""

    def _take(self, datagram: bytes) -> None:
        for line in datagram.decode("utf-8", "replace").split("\n"):
            key, _, value = line.partition("=")
            if key == "READY" and value == "1":
                self._ready = True
            elif key == "STATUS":
                self._status = value
            elif key == "STOPPING" and value == "1":
                self._stopping = True

    def _believed(self, sender: int) -> bool:
        """Whether *sender* is the child or one of its descendants."""
        child = self._pid
        if child <= 0 or sender <= 0:
            return False
        pid = sender
        for _ in range(_ANCESTRY_LIMIT):
            if pid == child:
                return True
            try:
                with open(f"/proc/{pid}/stat", "rb") as stat:
                    fields = stat.read().rpartition(b")")[2].split()
            except OSError:  # gone: it cannot be proven to be ours
                return False
            parent, group = int(fields[1]), int(fields[2])
            if group == child:
                return True
            if parent <= 1:
                return False
            pid = parent
        return False

    # --- waiting ------------------------------------------------------------------

    def wait(self, process: Process, timeout: float | None) -> None:
        """Block until the child says ready; :class:`NotReadyError` if it exits first,
        :class:`TimeoutExpired` after *timeout* seconds."""
        deadline = deadline_after(timeout)
        while not self.check():
            status = process.poll()
            if status is not None:
                if self.check():  # it said so before it exited
                    return
                raise NotReadyError(process.args, process.pid, status)
            left = remaining(deadline)
            if left is not None and left <= 0:
                raise TimeoutExpired(process.args, timeout if timeout is not None else 0.0)
            poller = select.poll()
            with ExitFdLease(process) as lease, self._borrowed() as fd:
                exit_fd = lease.acquire()
                if fd is not None and not self._eof:
                    poller.register(fd, select.POLLIN)
                if exit_fd is not None:
                    poller.register(exit_fd, select.POLLIN)
                elif fd is None or self._eof:
                    raise RuntimeError(
                        f"process {process.pid} cannot say it is ready any more: "
                        "its readiness channel is closed"
                    )
                poller.poll(poll_millis(left))

    async def wait_async(self, handle: object) -> None:
        """``await AsyncProcess.ready()``: the async :meth:`wait` (no timeout: use anyio's)."""
        assert isinstance(handle, AsyncProcess)
        process = sync_process(handle)
        if self._wake is None:
            self._wake = anyio.Lock()
        async with self._wake:
            while not self.check():
                status = process.poll()
                if status is not None:
                    if self.check():
                        break
                    raise NotReadyError(process.args, process.pid, status)
                with self._borrowed() as fd:
                    async with anyio.create_task_group() as group:

                        async def exit_watch() -> None:
                            await handle.wait()
                            group.cancel_scope.cancel()

                        group.start_soon(exit_watch)
                        if fd is not None and not self._eof:
                            await anyio.wait_readable(fd)
                            group.cancel_scope.cancel()
        await anyio.lowlevel.checkpoint()

    # --- closing ------------------------------------------------------------------

    @contextlib.contextmanager
    def _borrowed(self) -> Iterator[int | None]:
        """The fd to read or poll, kept open until the block ends; None once closed."""
        with self._lock:
            if self._closing:
                fd = None
            else:
                self._borrowers += 1
                fd = self._sock.fileno() if self._sock is not None else self._read
        try:
            yield fd
        finally:
            if fd is not None:
                with self._lock:
                    self._borrowers -= 1
                    if self._closing and not self._borrowers:
                        self._close_locked()

    def close(self) -> None:
        """Read what is pending, then close (at once, or when the last waiter is done)."""
        with contextlib.suppress(OSError):
            self.check()
        with self._lock:
            self._closing = True
            if not self._borrowers:
                self._close_locked()

    def _close_locked(self) -> None:
        sock, self._sock = self._sock, None
        read, self._read = self._read, None
        write, self._write = self._write, None
        if sock is not None:
            sock.close()
        for fd in (read, write):
            if fd is not None:
                os.close(fd)

    def __repr__(self) -> str:
        mode = "notify" if self.mode == "notify" else f"fd:{self.mode}"
        return f"<Readiness {mode} pid={self._pid} ready={self._ready}>"


def release(process: Process | AsyncProcess) -> None:
    """Close the readiness channel of *process*, if it has one."""
    sync = sync_process(process) if isinstance(process, AsyncProcess) else process
    readiness = sync._readiness
    if isinstance(readiness, Readiness):
        readiness.close()

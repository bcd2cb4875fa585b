"""``tether.asyncio``: ``create_subprocess_exec``/``_shell`` on pidfds, for asyncio code.

asyncio's own subprocesses wait through a child watcher: a ``SIGCHLD`` handler, a thread
per child, or a pidfd, depending on the version and the platform, and the pid-based
ones race with pid reuse and with other reapers (gh-127049). Here the child is started
by the drop-in :class:`tether.subprocess.Popen` (so every ``Popen`` argument works and
a failed exec raises the same ``OSError``), its pipes become asyncio streams through
``connect_read_pipe``/``connect_write_pipe``, and waiting is the event loop watching the
child's pidfd (``add_reader``): no watcher, no signal handler, no thread, the same on
Python 3.10 to 3.14. The returned :class:`Process` has the interface of
``asyncio.subprocess.Process``.
"""

from __future__ import annotations

import asyncio as _asyncio
import contextlib
from asyncio import streams as _streams
from typing import Any

from ._core._lease import ExitFdLease
from ._popen._popen import Popen, child_process

__all__ = [
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "Process",
    "create_subprocess_exec",
    "create_subprocess_shell",
]

PIPE = _asyncio.subprocess.PIPE
"""Pipe the stream to or from the child (the asyncio and subprocess constant)."""
STDOUT = _asyncio.subprocess.STDOUT
"""Send stderr where stdout goes."""
DEVNULL = _asyncio.subprocess.DEVNULL
"""Connect the stream to ``/dev/null``."""

_DEFAULT_LIMIT = 2**16  # asyncio.streams' buffer limit


class _StdinProtocol(_streams.FlowControlMixin, _asyncio.Protocol):
    """The write side of the child's stdin: flow control for ``drain``, a close waiter."""

    def __init__(self, loop: _asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._closed: _asyncio.Future[None] = loop.create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self._closed.done():
            self._closed.set_result(None)

    def _get_close_waiter(self, stream: object) -> _asyncio.Future[None]:
        return self._closed


class Process:
    """A child started by :func:`create_subprocess_exec` or :func:`create_subprocess_shell`.

    The interface of ``asyncio.subprocess.Process``: ``pid``, ``returncode``, ``stdin``
    (a ``StreamWriter``), ``stdout``/``stderr`` (``StreamReader``), ``wait()``,
    ``communicate()``, ``send_signal()``, ``terminate()``, ``kill()``. Signals go through
    the pidfd and are dropped once the child has been reaped.
    """

    stdin: _asyncio.StreamWriter | None
    """Writes to the child's stdin when it was started with ``stdin=PIPE``."""
    stdout: _asyncio.StreamReader | None
    """Reads the child's stdout when it was started with ``stdout=PIPE``."""
    stderr: _asyncio.StreamReader | None
    """Reads the child's stderr when it was started with ``stderr=PIPE``."""

    def __init__(self, popen: Popen[bytes], loop: _asyncio.AbstractEventLoop) -> None:
        self._popen = popen
        self._loop = loop
        self._exited: _asyncio.Future[int] | None = None
        self.stdin = self.stdout = self.stderr = None

    @property
    def pid(self) -> int:
        """The child's pid."""
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """None until the child has been reaped (by :meth:`wait`); then its return code."""
        return self._popen.returncode

    @property
    def popen(self) -> Popen[bytes]:
        """The :class:`tether.subprocess.Popen` underneath (its ``status``, ``backend``...)."""
        return self._popen

    def __repr__(self) -> str:
        return f"<Process {self.pid}>"

    async def wait(self) -> int:
        """Wait for the child to exit, on its pidfd; return its return code."""
        code = self._popen.poll()
        if code is not None:
            return code
        if self._exited is None:
            self._exited = self._watch_exit()
        return await _asyncio.shield(self._exited)

    def _watch_exit(self) -> _asyncio.Future[int]:
        """One watch of the exit fd per child, however many tasks wait."""
        future: _asyncio.Future[int] = self._loop.create_future()
        lease = ExitFdLease(child_process(self._popen))
        fd = lease.acquire()
        if fd is None:  # reaped meanwhile
            lease.release()
            future.set_result(self._popen.wait())
            return future

        def exited() -> None:
            self._loop.remove_reader(fd)
            lease.release()
            if not future.done():
                try:
                    future.set_result(self._popen.wait())
                except BaseException as error:  # handed to the waiters
                    future.set_exception(error)

        self._loop.add_reader(fd, exited)
        return future

    def send_signal(self, signal: int) -> None:
        """Send *signal* through the pidfd; nothing once the child has been reaped."""
        self._popen.send_signal(signal)

    def terminate(self) -> None:
        """Send SIGTERM."""
        self._popen.terminate()

    def kill(self) -> None:
        """Send SIGKILL."""
        self._popen.kill()

    async def communicate(self, input: bytes | None = None) -> tuple[bytes | None, bytes | None]:
        """Send *input*, read stdout and stderr to their end, wait; ``(stdout, stderr)``."""
        results = await _asyncio.gather(
            self._feed_stdin(input), _read_all(self.stdout), _read_all(self.stderr)
        )
        await self.wait()
        return results[1], results[2]

    async def _feed_stdin(self, input: bytes | None) -> None:
        stdin = self.stdin
        if stdin is None:
            return
        if input is not None:
            stdin.write(input)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await stdin.drain()
        stdin.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await stdin.wait_closed()


async def _read_all(stream: _asyncio.StreamReader | None) -> bytes | None:
    if stream is None:
        return None
    return await stream.read()


def _refuse_text(kwds: dict[str, Any]) -> None:
    """asyncio's streams are bytes: refuse what would make the pipes text, as asyncio does."""
    if kwds.pop("universal_newlines", False):
        raise ValueError("universal_newlines must be False")
    if kwds.pop("text", False):
        raise ValueError("text must be False")
    if kwds.pop("encoding", None) is not None:
        raise ValueError("encoding must be None")
    if kwds.pop("errors", None) is not None:
        raise ValueError("errors must be None")
    if kwds.pop("bufsize", 0) != 0:
        raise ValueError("bufsize must be 0")


async def _start(
    args: Any, shell: bool, stdin: Any, stdout: Any, stderr: Any, limit: int, kwds: dict[str, Any]
) -> Process:
    loop = _asyncio.get_running_loop()
    _refuse_text(kwds)
    popen: Popen[bytes] = Popen(
        args, bufsize=0, shell=shell, stdin=stdin, stdout=stdout, stderr=stderr, **kwds
    )
    process = Process(popen, loop)
    transports: list[_asyncio.BaseTransport] = []
    try:
        if popen.stdout is not None:
            process.stdout = await _reader(loop, popen.stdout, limit, transports)
        if popen.stderr is not None:
            process.stderr = await _reader(loop, popen.stderr, limit, transports)
        if popen.stdin is not None:
            pipe = popen.stdin
            transport, protocol = await loop.connect_write_pipe(lambda: _StdinProtocol(loop), pipe)
            transports.append(transport)
            process.stdin = _asyncio.StreamWriter(transport, protocol, None, loop)
    except BaseException:
        for connected in transports:
            connected.close()  # off the event loop before the pipes close
        popen.kill()
        popen.__exit__(None, None, None)  # closes the pipes, reaps the child
        raise
    return process


async def _reader(
    loop: _asyncio.AbstractEventLoop,
    pipe: Any,
    limit: int,
    transports: list[_asyncio.BaseTransport],
) -> _asyncio.StreamReader:
    reader = _asyncio.StreamReader(limit=limit, loop=loop)
    transport, _ = await loop.connect_read_pipe(
        lambda: _asyncio.StreamReaderProtocol(reader, loop=loop), pipe
    )
    transports.append(transport)
    return reader


async def create_subprocess_exec(
    program: Any,
    *args: Any,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    limit: int = _DEFAULT_LIMIT,
    **kwds: Any,
) -> Process:
    """Start *program* with *args*: ``asyncio.create_subprocess_exec``, on pidfds.

    Every other keyword is a ``Popen`` argument (``cwd``, ``env``, ``start_new_session``,
    tether's ``limits``...); text mode is refused, as asyncio refuses it.
    """
    if kwds.pop("shell", False):
        raise ValueError("shell must be False")
    return await _start([program, *args], False, stdin, stdout, stderr, limit, kwds)


async def create_subprocess_shell(
    cmd: str | bytes,
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    limit: int = _DEFAULT_LIMIT,
    **kwds: Any,
) -> Process:
    """Run *cmd* through ``/bin/sh``: ``asyncio.create_subprocess_shell``, on pidfds."""
    if not isinstance(cmd, (bytes, str)):
        raise ValueError("cmd must be a string")
    if not kwds.pop("shell", True):
        raise ValueError("shell must be True")
    return await _start(cmd, True, stdin, stdout, stderr, limit, kwds)

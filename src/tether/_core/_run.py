"""``tether.run``: spawn, feed input, collect output, wait, stop on timeout.

Output is read and input written through one ``poll`` loop over the pipes, so a
child that fills its stdout pipe while we still write its stdin cannot deadlock us,
and a child that never reads its stdin (EPIPE) does not fail the run. On timeout
the child is stopped (signal, grace, SIGKILL) and reaped, and the output read so
far rides on the exception. Once the child exits, its pipes are drained of what it
wrote and the run ends: nothing waits for a grandchild that still holds a pipe.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, cast

from typing_extensions import Unpack, final

from .._durations import check_duration, deadline_after, poll_seconds, remaining
from .._errors import CalledProcessError, StatusUnknownError, TimeoutExpired
from .._spawn import PIPE, SpawnOptions, StrOrBytesPath
from .._status import Status
from ._lease import ExitFdLease, wait_for_exit
from ._pipes import close_pipes
from ._process import DEFAULT_GRACE, Process
from ._spawning import abort, prepare, start

CHUNK = 65536
"""Bytes read from or written to a pipe at a time."""


@final
@dataclass(frozen=True, slots=True)
class Completed:
    """The outcome of :func:`tether.run`: the command, its status and captured output."""

    args: tuple[str, ...]
    status: Status
    stdout: bytes | None = None
    stderr: bytes | None = None

    @property
    def returncode(self) -> int:
        """The subprocess-style return code: the exit code, or minus the killing signal."""
        code = self.status.returncode
        assert code is not None, "a completed process has terminated"
        return code

    def check_returncode(self) -> None:
        """Raise :class:`tether.CalledProcessError` unless the command succeeded."""
        if not self.status.success:
            raise CalledProcessError(self.args, self.status, self.stdout, self.stderr)


def run(
    argv: Iterable[StrOrBytesPath],
    *,
    timeout: float | None = None,
    capture: bool = False,
    check: bool = False,
    input: bytes | None = None,
    grace: float = DEFAULT_GRACE,
    **options: Unpack[SpawnOptions],
) -> Completed:
    """Run *argv* to completion and return a :class:`Completed`.

    ``capture=True`` pipes and collects stdout and stderr; ``input`` is written to
    the child's stdin, which is then closed. After *timeout* seconds the child is
    stopped (stop signal, *grace* seconds, SIGKILL), reaped, and
    :class:`tether.TimeoutExpired` raised with the output read so far. ``check=True``
    raises :class:`tether.CalledProcessError` for an unsuccessful status.
    """
    prepare_run(options, input=input, capture=capture, grace=grace)
    deadline = deadline_after(timeout)
    process = prepare(argv, **options)
    exchange = _Exchange(process, input)
    try:
        start(process)
        exchange.begin()
        exchange.run_until(deadline)
        status = wait_for_exit(process, remaining(deadline))
        if status is None:
            raise _DeadlinePassed
    except _DeadlinePassed:
        _stop(process, grace)
        raise TimeoutExpired(
            process.args, timeout or 0.0, exchange.output(1), exchange.output(2)
        ) from None
    except BaseException:
        abort(process, grace)
        raise
    finally:
        exchange.close()
    completed = Completed(process.args, status, exchange.output(1), exchange.output(2))
    if check:
        completed.check_returncode()
    return completed


def prepare_run(options: SpawnOptions, *, input: bytes | None, capture: bool, grace: float) -> None:
    """Check the arguments of ``run``/``run_process`` and pipe what they feed or capture."""
    check_duration(grace, "grace")
    if input is not None:
        try:
            memoryview(input)
        except TypeError:
            raise TypeError(f"input must be bytes-like, not {type(input).__name__}") from None
        _claim(options, "stdin", "input")
        options["stdin"] = PIPE
    if capture:
        _claim(options, "stdout", "capture")
        _claim(options, "stderr", "capture")
        options["stdout"] = options["stderr"] = PIPE


def _claim(options: SpawnOptions, name: str, by: str) -> None:
    if options.get(name) is not None:
        raise ValueError(f"{name} and {by} cannot both be used")


def _stop(process: Process, grace: float) -> None:
    with contextlib.suppress(StatusUnknownError):  # gone already: nothing to stop
        process.stop(grace)


_EXITED = -1


class _DeadlinePassed(Exception):
    """The run's deadline passed: ``run`` turns it into ``TimeoutExpired`` with the output."""


class _Exchange:
    """Writes a child's input and reads its output until the pipes close or it exits.

    Once the child has exited, everything it wrote is in the pipe buffers (had it
    written more, it would have blocked until we read), so the pipes are drained
    without waiting for an end-of-file that a grandchild holding them may delay
    for ever.
    """

    def __init__(self, process: Process, input: bytes | None) -> None:
        self._process = process
        self._selector = selectors.PollSelector()
        self._chunks: dict[int, list[bytes]] = {}
        self._input = memoryview(input or b"")
        self._written = 0

    def begin(self) -> None:
        """Register the started child's pipes."""
        process = self._process
        if process.stdin is not None:
            if self._input:
                os.set_blocking(process.stdin.fileno(), False)
                self._selector.register(process.stdin, selectors.EVENT_WRITE, 0)
            else:
                _close_input(process.stdin)
        for target, pipe in ((1, process.stdout), (2, process.stderr)):
            if pipe is not None:
                self._chunks[target] = []
                self._selector.register(pipe, selectors.EVENT_READ, target)

    def output(self, target: int) -> bytes | None:
        """What was read from the child's fd *target* so far (None when not piped)."""
        chunks = self._chunks.get(target)
        return None if chunks is None else b"".join(chunks)

    def close(self) -> None:
        """Close every pipe to the child."""
        self._selector.close()
        close_pipes(self._process)

    def run_until(self, deadline: float | None) -> None:
        """Move data until the pipes close or the child exits; _DeadlinePassed at *deadline*."""
        if not self._selector.get_map():
            return
        with ExitFdLease(self._process) as lease:
            exit_fd = lease.acquire()
            if exit_fd is None:
                self._pump(deadline, watched=0)
                return
            self._selector.register(exit_fd, selectors.EVENT_READ, _EXITED)
            try:
                self._pump(deadline, watched=1)
            finally:
                self._selector.unregister(exit_fd)

    def _pump(self, deadline: float | None, watched: int) -> None:
        while len(self._selector.get_map()) > watched:
            timeout = remaining(deadline)
            ready = self._selector.select(poll_seconds(timeout))
            if not ready and timeout is not None and timeout <= 0:
                raise _DeadlinePassed
            for key, _ in ready:
                if key.data == _EXITED:
                    self._drain(deadline)
                    return
                pipe = cast("IO[bytes]", key.fileobj)
                if key.data == 0:
                    self._write(pipe)
                else:
                    self._read(pipe, key.data)

    def _drain(self, deadline: float | None) -> None:
        for key in list(self._selector.get_map().values()):
            if key.data in (0, _EXITED):
                continue
            pipe = cast("IO[bytes]", key.fileobj)
            os.set_blocking(pipe.fileno(), False)
            with contextlib.suppress(BlockingIOError):
                while self._read(pipe, key.data):
                    if deadline is not None and time.monotonic() > deadline:
                        raise _DeadlinePassed

    def _write(self, pipe: IO[bytes]) -> None:
        try:
            self._written += os.write(pipe.fileno(), self._input[self._written :][:CHUNK])
        except BlockingIOError:
            return
        except BrokenPipeError:
            self._written = len(self._input)
        if self._written >= len(self._input):
            self._selector.unregister(pipe)
            _close_input(pipe)

    def _read(self, pipe: IO[bytes], target: int) -> bool:
        data = os.read(pipe.fileno(), CHUNK)
        if data:
            self._chunks[target].append(data)
            return True
        self._selector.unregister(pipe)
        pipe.close()
        return False


def _close_input(pipe: IO[bytes]) -> None:
    with contextlib.suppress(BrokenPipeError):
        pipe.close()

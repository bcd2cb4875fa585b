"""``tether.run``: spawn, feed input, collect output, wait, stop on timeout.

Output is read and input written through one ``poll`` loop over the pipes, so a
child that fills its stdout pipe while we still write its stdin cannot deadlock us,
and a child that never reads its stdin (EPIPE) does not fail the run. On timeout
the child is stopped (signal, grace, SIGKILL) and reaped, and the output read so
far rides on the exception; nothing waits for a grandchild that still holds a pipe.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import IO, TypedDict, cast

from typing_extensions import Unpack, final

from ._errors import CalledProcessError, TimeoutExpired
from ._process import DEFAULT_GRACE, Process, spawn
from ._spawn import PIPE, StdioOption, StrOrBytesPath
from ._status import Status

_CHUNK = 65536


class SpawnOptions(TypedDict, total=False):
    """The keyword options of :func:`tether.spawn`, for functions that pass them on."""

    backend: str
    executable: StrOrBytesPath | None
    env: Mapping[str, str] | Mapping[bytes, bytes] | None
    cwd: StrOrBytesPath | None
    stdin: StdioOption
    stdout: StdioOption
    stderr: StdioOption
    pass_fds: Iterable[int]
    start_new_session: bool
    process_group: int | None
    umask: int | None
    preexec_fn: Callable[[], object] | None
    restore_signals: bool


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
    if input is not None:
        _claim(options, "stdin", "input")
        options["stdin"] = PIPE
    if capture:
        _claim(options, "stdout", "capture")
        _claim(options, "stderr", "capture")
        options["stdout"] = options["stderr"] = PIPE
    deadline = None if timeout is None else time.monotonic() + timeout
    with spawn(argv, **options) as process:
        exchange = _Exchange(process, input)
        try:
            exchange.run_until(deadline)
            status = process.wait(_remaining(deadline))
        except TimeoutExpired:
            process.stop(grace)
            raise TimeoutExpired(
                process.args, timeout or 0.0, exchange.output(1), exchange.output(2)
            ) from None
    completed = Completed(process.args, status, exchange.output(1), exchange.output(2))
    if check:
        completed.check_returncode()
    return completed


def _claim(options: SpawnOptions, name: str, by: str) -> None:
    if options.get(name) is not None:
        raise ValueError(f"{name} and {by} cannot both be used")


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class _Exchange:
    """Writes a child's input and reads its output until every pipe is done."""

    def __init__(self, process: Process, input: bytes | None) -> None:
        self._selector = selectors.PollSelector()
        self._chunks: dict[int, list[bytes]] = {}
        self._input = memoryview(input or b"")
        self._written = 0
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

    def run_until(self, deadline: float | None) -> None:
        """Move data until every pipe is closed; raise TimeoutExpired at *deadline*."""
        try:
            while self._selector.get_map():
                timeout = _remaining(deadline)
                ready = self._selector.select(timeout)
                if not ready and timeout is not None and timeout <= 0:
                    raise TimeoutExpired((), 0.0)
                for key, _ in ready:
                    pipe = cast("IO[bytes]", key.fileobj)
                    if key.data == 0:
                        self._write(pipe)
                    else:
                        self._read(pipe, key.data)
        finally:
            self._selector.close()

    def _write(self, pipe: IO[bytes]) -> None:
        try:
            self._written += os.write(pipe.fileno(), self._input[self._written :][:_CHUNK])
        except BlockingIOError:
            return
        except BrokenPipeError:
            self._written = len(self._input)
        if self._written >= len(self._input):
            self._selector.unregister(pipe)
            _close_input(pipe)

    def _read(self, pipe: IO[bytes], target: int) -> None:
        data = os.read(pipe.fileno(), _CHUNK)
        if data:
            self._chunks[target].append(data)
        else:
            self._selector.unregister(pipe)
            pipe.close()


def _close_input(pipe: IO[bytes]) -> None:
    with contextlib.suppress(BrokenPipeError):
        pipe.close()

"""``Popen.communicate``'s loop: feed stdin, collect stdout and stderr, survive a timeout.

The hazards are those the standard module solved and a rewrite can reintroduce: a
child that fills its stdout pipe while we still write its stdin (so both directions go
through one ``poll`` loop), a child that never reads its stdin (EPIPE is not an error),
and a timeout in the middle (the state lives here, so the next ``communicate`` resumes
where this one stopped: the input offset and the chunks read so far survive, and the
``TimeoutExpired`` carries the output read until then).

One hazard the standard module leaves open: after ``kill()``, a grandchild that
inherited the pipes can hold them open for ever, and ``communicate()`` waits for an
end-of-file that never comes. Once the child we killed with SIGKILL has exited, the
loop also watches its exit fd: the pipes are drained of what is in them, and the read
ends there.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import time
from typing import IO, Any

from .._core._lease import ExitFdLease
from ._streams import write_and_close

__all__ = ["PIPE_BUF", "Exchange"]

PIPE_BUF = 512  # what the standard module writes at a time: a write the kernel keeps whole
_READ_SIZE = 32768
_EXITED = "exited"


class Exchange:
    """The state of one ``Popen``'s communication, kept across timeouts.

    *popen* below is the ``Popen`` (typed loosely: ``_popen`` imports this module).
    """

    def __init__(self) -> None:
        self.started = False
        self.input: bytes | None = None
        self.offset = 0
        self.output: dict[Any, list[bytes]] = {}

    def communicate(self, popen: Any, input: Any, timeout: float | None) -> tuple[Any, Any]:
        """``Popen.communicate``: the one-pipe shortcut, or the loop; Ctrl-C courtesy wait."""
        if self.started and input:
            raise ValueError("Cannot send input after starting communication")
        pipes = [popen.stdin, popen.stdout, popen.stderr]
        if timeout is None and not self.started and pipes.count(None) >= 2 and not popen._sigkilled:
            stdout = stderr = None
            if popen.stdin is not None:
                write_and_close(popen.stdin, input)
            elif popen.stdout is not None:
                stdout = popen.stdout.read()
                popen.stdout.close()
            elif popen.stderr is not None:
                stderr = popen.stderr.read()
                popen.stderr.close()
            popen.wait()
            return stdout, stderr
        endtime = None if timeout is None else time.monotonic() + timeout
        try:
            stdout, stderr = self.run(popen, input, endtime, timeout)
        except KeyboardInterrupt:
            popen._courtesy_wait(endtime)
            raise
        finally:
            self.started = True
        popen.wait(timeout=_remaining(endtime))
        return stdout, stderr

    def save_input(self, popen: Any, input: Any) -> None:
        """Keep the input (encoded in text mode) the first time, to resume writing it."""
        if popen.stdin is not None and self.input is None:
            self.offset = 0
            self.input = input
            if input is not None and popen.text_mode:
                stdin: Any = popen.stdin
                self.input = input.encode(stdin.encoding, stdin.errors)

    def run(
        self, popen: Any, input: Any, endtime: float | None, orig_timeout: float | None
    ) -> tuple[Any, Any]:
        """Exchange data until every pipe is closed, then wait for the child."""
        if popen.stdin is not None and not self.started:
            _flush_input(popen.stdin)
            if not input:
                with contextlib.suppress(BrokenPipeError):
                    popen.stdin.close()
        if not self.started:
            self.output = {}
            for pipe in (popen.stdout, popen.stderr):
                if pipe is not None:
                    self.output[pipe] = []
        stdout = self.output.get(popen.stdout) if popen.stdout is not None else None
        stderr = self.output.get(popen.stderr) if popen.stderr is not None else None
        self.save_input(popen, input)
        with selectors.PollSelector() as selector:
            if popen.stdin is not None and input and not popen.stdin.closed:
                selector.register(popen.stdin, selectors.EVENT_WRITE)
            for pipe in (popen.stdout, popen.stderr):
                if pipe is not None and not pipe.closed:
                    selector.register(pipe, selectors.EVENT_READ)
            self._pump(popen, selector, endtime, orig_timeout, stdout, stderr)
        popen.wait(timeout=_remaining(endtime))
        out: bytes | str | None = None if stdout is None else b"".join(stdout)
        err: bytes | str | None = None if stderr is None else b"".join(stderr)
        if popen.text_mode:
            if isinstance(out, bytes):
                out = _translate_newlines(out, popen.stdout)
            if isinstance(err, bytes):
                err = _translate_newlines(err, popen.stderr)
        return out, err

    def _pump(
        self,
        popen: Any,
        selector: selectors.BaseSelector,
        endtime: float | None,
        orig_timeout: float | None,
        stdout: list[bytes] | None,
        stderr: list[bytes] | None,
    ) -> None:
        process = popen._process
        assert process is not None, "communicate() needs a started child"
        with ExitFdLease(process) as lease:
            watching_exit = False
            while len(selector.get_map()) > watching_exit:
                if not watching_exit and popen._sigkilled:
                    exit_fd = lease.acquire()
                    if exit_fd is not None:
                        selector.register(exit_fd, selectors.EVENT_READ, _EXITED)
                        watching_exit = True
                timeout = _remaining(endtime)
                if timeout is not None and timeout < 0:
                    raise popen._timeout_error(orig_timeout, stdout, stderr)
                ready = selector.select(timeout)
                _check_timeout(popen, endtime, orig_timeout, stdout, stderr)
                for key, _ in ready:
                    if key.data == _EXITED:
                        self._drain(selector)
                        return
                    if key.fileobj is popen.stdin:
                        self._write(selector, key)
                    else:
                        self._read(selector, key)

    def _write(self, selector: selectors.BaseSelector, key: selectors.SelectorKey) -> None:
        pipe: IO[Any] = key.fileobj  # type: ignore[assignment]
        data = self.input or b""
        chunk = memoryview(data)[self.offset : self.offset + PIPE_BUF]
        try:
            self.offset += os.write(key.fd, chunk)
        except BrokenPipeError:
            selector.unregister(pipe)
            pipe.close()
        else:
            if self.offset >= len(data):
                selector.unregister(pipe)
                pipe.close()

    def _read(self, selector: selectors.BaseSelector, key: selectors.SelectorKey) -> bool:
        pipe: IO[Any] = key.fileobj  # type: ignore[assignment]
        data = os.read(key.fd, _READ_SIZE)
        if not data:
            selector.unregister(pipe)
            pipe.close()
        self.output[pipe].append(data)
        return bool(data)

    def _drain(self, selector: selectors.BaseSelector) -> None:
        """The killed child has exited: take what the pipes hold, close them, stop."""
        for key in list(selector.get_map().values()):
            if key.data == _EXITED:
                selector.unregister(key.fileobj)
                continue
            pipe: IO[Any] = key.fileobj  # type: ignore[assignment]
            if key.events == selectors.EVENT_READ:
                os.set_blocking(key.fd, False)
                with contextlib.suppress(BlockingIOError):
                    while self._read(selector, key):
                        pass
            if not pipe.closed:
                selector.unregister(pipe)
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()


def _flush_input(stdin: IO[Any]) -> None:
    try:
        stdin.flush()
    except BrokenPipeError:
        pass  # communicate() ignores EPIPE
    except ValueError:
        if not stdin.closed:  # anything but "I/O operation on closed file"
            raise


def _remaining(endtime: float | None) -> float | None:
    return None if endtime is None else endtime - time.monotonic()


def _check_timeout(
    popen: Any,
    endtime: float | None,
    orig_timeout: float | None,
    stdout: list[bytes] | None,
    stderr: list[bytes] | None,
) -> None:
    if endtime is not None and time.monotonic() > endtime:
        raise popen._timeout_error(orig_timeout, stdout, stderr)


def _translate_newlines(data: bytes, pipe: Any) -> str:
    text = data.decode(pipe.encoding, pipe.errors)
    return text.replace("\r\n", "\n").replace("\r", "\n")

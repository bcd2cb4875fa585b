"""A handle's pipes to its child, as buffered binary files.

Our end of each pipe is taken out of the spawn's record before it is wrapped, so an
interrupt between the two can leak the fd but never have it closed twice. Closing a
pipe whose child will never read drops the unflushed input instead of failing.
"""

from __future__ import annotations

import contextlib
import io
from typing import IO, Protocol

__all__ = ["HasPipes", "close_pipes", "close_quietly", "open_pipe"]


class HasPipes(Protocol):
    """A handle with the three optional pipes (``Process`` is one)."""

    stdin: IO[bytes] | None
    stdout: IO[bytes] | None
    stderr: IO[bytes] | None


def open_pipe(fd: int | None, mode: str) -> IO[bytes] | None:
    """Wrap our end *fd* of a pipe (``"wb"`` or ``"rb"``); None stays None."""
    if fd is None:
        return None
    return io.open(fd, mode, buffering=-1)  # noqa: UP020


def close_quietly(pipe: IO[bytes]) -> None:
    """Close *pipe*; unflushed input the child will never read is dropped."""
    with contextlib.suppress(BrokenPipeError):
        pipe.close()


def close_pipes(handle: HasPipes) -> None:
    """Close the handle's pipes to the child."""
    for pipe in (handle.stdin, handle.stdout, handle.stderr):
        if pipe is not None:
            close_quietly(pipe)

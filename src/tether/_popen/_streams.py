"""The pipes of a ``Popen``: buffering, text mode, pipe size, and writing input.

The hazard is the standard module's small print: ``bufsize=0`` means raw unbuffered
files, ``bufsize=1`` means line buffering in text mode and a ``RuntimeWarning`` in binary
mode, text mode wraps each pipe in a ``TextIOWrapper`` (stdin writing through), and
writing input must treat EPIPE (and the EINVAL some kernels give for a child that
exited) as "the child did not read it", not as an error.
"""

from __future__ import annotations

import errno
import fcntl
import io
import warnings
from collections.abc import Sequence
from typing import IO, Any

__all__ = ["set_pipe_size", "wrap_pipes", "write_and_close"]

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def wrap_pipes(
    pipes: Sequence[IO[bytes] | None],
    bufsize: int,
    text_mode: bool,
    line_buffering: bool,
    encoding: str | None,
    errors: str | None,
) -> list[IO[Any] | None]:
    """stdin, stdout and stderr as ``Popen`` exposes them, from tether's buffered pipes."""
    if bufsize == 1 and any(pipes):  # what io.open(fd, "wb", 1) warns
        warnings.warn(
            "line buffering (buffering=1) isn't supported in binary mode, "
            "the default buffer size will be used",
            RuntimeWarning,
            stacklevel=4,
        )
    wrapped: list[IO[Any] | None] = [_rebuffer(pipe, bufsize) for pipe in pipes]
    if not text_mode:
        return wrapped
    for index, pipe in enumerate(wrapped):
        if pipe is None:
            continue
        if index == 0:
            wrapped[0] = io.TextIOWrapper(
                pipe,
                write_through=True,
                line_buffering=line_buffering,
                encoding=encoding,
                errors=errors,
            )
        else:
            wrapped[index] = io.TextIOWrapper(pipe, encoding=encoding, errors=errors)
    return wrapped


def _rebuffer(pipe: IO[bytes] | None, bufsize: int) -> IO[bytes] | None:
    """The pipe with the buffering ``io.open(fd, mode, bufsize)`` would have given it."""
    if pipe is None or bufsize < 0 or bufsize == 1:
        return pipe  # the default buffer (1 is line buffering, which binary files lack)
    raw = pipe.detach()  # type: ignore[attr-defined]
    if bufsize == 0:
        return raw  # type: ignore[no-any-return]
    if isinstance(pipe, io.BufferedWriter):
        return io.BufferedWriter(raw, bufsize)
    return io.BufferedReader(raw, bufsize)


def set_pipe_size(pipes: Sequence[IO[bytes] | None], size: int) -> None:
    """Give each pipe *size* bytes of kernel buffer (``F_SETPIPE_SZ``): ``pipesize=``."""
    for pipe in pipes:
        if pipe is not None:
            fcntl.fcntl(pipe.fileno(), _F_SETPIPE_SZ, size)


def write_and_close(stdin: IO[Any], input: Any) -> None:
    """Write *input* (if any) and close: ``communicate`` with only stdin piped."""
    if input:
        try:
            stdin.write(input)
        except BrokenPipeError:
            pass  # the child did not read it all
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # a child that exited may give EINVAL
                raise
    try:
        stdin.close()
    except BrokenPipeError:
        pass
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise

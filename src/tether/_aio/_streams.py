"""The pipes of an async child as anyio byte streams, over raw non-blocking fds.

Reads and writes wait with ``anyio.wait_readable``/``wait_writable``, so no thread is
involved, on asyncio and on trio. Each stream owns its fd through the ``io.FileIO`` it was
made from: closing the stream closes the fd exactly once, and wakes (with
``anyio.ClosedResourceError``) a task blocked on it.
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import IO

import anyio
import anyio.lowlevel
from anyio.abc import ByteReceiveStream, ByteSendStream
from typing_extensions import final

from .._core._run import CHUNK

__all__ = ["PipeEnd", "PipeReceiveStream", "PipeSendStream", "take_raw"]


class PipeEnd:
    """Owns one parent end of a pipe, switched to non-blocking mode."""

    def __init__(self, raw: io.FileIO) -> None:
        self._raw = raw  # the only owner: closing it closes the fd, once
        self._fd = raw.fileno()
        os.set_blocking(self._fd, False)

    def fileno(self) -> int:
        """The pipe's fd (do not close it yourself)."""
        return self._fd

    def _open_fd(self) -> int:
        if self._raw.closed:
            raise anyio.ClosedResourceError
        return self._fd

    def close_now(self) -> None:
        """Close the pipe at once (no checkpoint); a task blocked on it is woken."""
        if not self._raw.closed:
            anyio.notify_closing(self._fd)  # wakes a task blocked on it
            self._raw.close()

    async def aclose(self) -> None:
        """Close the pipe; a task blocked on it gets ``anyio.ClosedResourceError``."""
        self.close_now()
        await anyio.lowlevel.checkpoint()


@final
class PipeReceiveStream(PipeEnd, ByteReceiveStream):
    """The read end of a pipe from the child, as an anyio byte stream."""

    async def receive(self, max_bytes: int = CHUNK) -> bytes:
        """Return up to *max_bytes* bytes; raise ``anyio.EndOfStream`` at end of file."""
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        await anyio.lowlevel.checkpoint_if_cancelled()
        waited = False
        while True:
            try:
                data = os.read(self._open_fd(), max_bytes)
            except BlockingIOError:
                await anyio.wait_readable(self._fd)
                waited = True
                continue
            if not waited:
                await anyio.lowlevel.cancel_shielded_checkpoint()
            if not data:
                raise anyio.EndOfStream
            return data

    def drain(self) -> list[bytes]:
        """Read what the pipe holds right now, without waiting; [] once closed."""
        chunks: list[bytes] = []
        if self._raw.closed:
            return chunks
        with contextlib.suppress(BlockingIOError):
            while data := os.read(self._fd, CHUNK):
                chunks.append(data)
        return chunks


@final
class PipeSendStream(PipeEnd, ByteSendStream):
    """The write end of a pipe to the child, as an anyio byte stream."""

    async def send(self, item: bytes) -> None:
        """Write all of *item*; raise ``anyio.BrokenResourceError`` if the child closed its end."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        view = memoryview(item).cast("B")
        waited = False
        while view:
            try:
                written = os.write(self._open_fd(), view)
            except BlockingIOError:
                await anyio.wait_writable(self._fd)
                waited = True
                continue
            except BrokenPipeError as exc:
                raise anyio.BrokenResourceError from exc
            view = view[written:]
        if not waited:
            await anyio.lowlevel.cancel_shielded_checkpoint()


def take_raw(pipe: IO[bytes] | None) -> io.FileIO | None:
    """The raw fd object under a handle's buffered pipe, taken over without closing it."""
    if pipe is None:
        return None
    assert isinstance(pipe, io.BufferedIOBase), "spawn() opens pipes buffered"
    raw = pipe.detach()  # the buffered object lets go of the fd without closing it
    assert isinstance(raw, io.FileIO)
    return raw

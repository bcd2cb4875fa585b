"""``tether.open_process``, ``tether.run_process`` and ``tether.AsyncProcess`` (anyio).

The async handle is a thin coat over the synchronous :class:`tether.Process`: the
spawn is the same (it has no await point), and so are the reap, the signals and the
cached status. Only the waiting differs. A waiting task borrows the fd that turns
readable when the child exits (its pidfd) and awaits it on the loop itself
(``_readable``: ``add_reader`` on asyncio, ``trio.lowlevel.wait_readable`` on trio,
anyio's for anything else), so asyncio and trio both work without a child watcher, a
SIGCHLD handler or a thread. The usual wait (one task, a live child) runs in the one
frame of :meth:`AsyncProcess.wait`, which awaits the loop's own wait through one small
coroutine (``_readable.readable``): after the child's exit every call and frame runs on
caches the exit evicted, so the path from the wake-up to the status is kept short.
trio lets only one task wait on a given fd, so when several tasks wait for the same
child one of them watches the fd and the others wait for it to finish (an
``anyio.Event``, made only when a second task comes); if the watcher is cancelled,
another takes over. Without pidfds the borrowed fd is a pipe fed by a watcher thread (see
``_linux._exit_notifier``), one per waited child.

Pipes become anyio byte streams over the raw, non-blocking fds: reads and writes
wait with ``anyio.wait_readable``/``wait_writable``, again without threads.

Cancellation is meant to be boring. Cancelling :meth:`AsyncProcess.wait` only
abandons the wait: the fd is given back, the child keeps running, and a later
``wait()`` reaps it. Leaving ``async with`` by cancellation (or by any exception),
or cancelling :func:`run_process`, stops the child (the stop signal, the grace
period, SIGKILL) and reaps it inside a shielded scope before the cancellation goes
on, so no cancelled scope leaves a child behind. :meth:`AsyncProcess.stop` is
shielded as a whole for the same reason; should the wait inside it be interrupted
all the same (a ``KeyboardInterrupt``, or a native asyncio ``Task.cancel``, which
anyio shields cannot hold off), the child is killed and reaped synchronously before
the exception propagates. :func:`open_process` checks for cancellation before it
spawns and not after, so a cancelled caller never receives (or loses) a child. A
:func:`run_process` timeout becomes :class:`tether.TimeoutExpired`; a cancellation
from outside stays a cancellation.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterable
from types import TracebackType

import anyio
import anyio.lowlevel
from anyio.abc import ByteReceiveStream, ByteSendStream
from typing_extensions import Self, Unpack, final

from .._core._lease import ExitFdLease
from .._core._process import DEFAULT_GRACE, Process
from .._core._run import Completed, prepare_run
from .._core._spawning import abort, prepare, start
from .._core._stop_signal import check_stop_signal, send_stop_signal
from .._durations import check_duration
from .._errors import StatusUnknownError, TimeoutExpired
from .._spawn import SpawnOptions, StrOrBytesPath
from .._status import Status
from ..limits import Limits
from ._groups import ungrouped
from ._readable import busy_error, checkpoint_if_cancelled, readable, wait_readable
from ._streams import PipeEnd, PipeReceiveStream, PipeSendStream, take_raw

__all__ = ["AsyncProcess", "open_process", "run_process"]

_SIGTERM = signal.SIGTERM
_SIGKILL = signal.SIGKILL


@final
class AsyncProcess:
    """A child process started by :func:`tether.open_process`.

    The same guarantees as :class:`tether.Process` (one reap, signals only before it,
    a cached status), with awaitable waits and anyio byte streams for the pipes.
    Used as ``async with``, it stops the child (:meth:`stop`) and closes the pipes on
    exit, whatever the reason for leaving, cancellation included. Only
    :func:`tether.open_process` creates one (calling ``AsyncProcess()`` is a ``TypeError``).

    The streams work on the raw, non-blocking pipe fds: ``receive(max_bytes=65536)`` returns
    up to ``max_bytes`` bytes and raises ``anyio.EndOfStream`` at end-of-file; ``send(data)``
    writes all of ``data`` and raises ``anyio.BrokenResourceError`` if the child closed its
    end; after ``aclose()``, a task blocked on the stream gets ``anyio.ClosedResourceError``.
    """

    stdin: ByteSendStream | None
    """Stream to the child's stdin when opened with ``stdin=PIPE``; ``aclose()`` sends EOF."""
    stdout: ByteReceiveStream | None
    """Stream from the child's stdout when opened with ``stdout=PIPE``."""
    stderr: ByteReceiveStream | None
    """Stream from the child's stderr when opened with ``stderr=PIPE``."""

    _process: Process
    _pipes: tuple[PipeEnd, ...]
    _lease: ExitFdLease  # the watching task's: one task at a time borrows the exit fd
    _watching: bool  # a task is awaiting the exit fd
    _watch: anyio.Event | None  # set when that task stops; made by the first task to wait on it

    def __init__(self) -> None:
        raise TypeError("AsyncProcess handles are created by tether.open_process()")

    @classmethod
    def _wrap(cls, process: Process) -> AsyncProcess:
        self = object.__new__(cls)
        self._process = process
        self._lease = ExitFdLease(process)
        self._watching = False
        self._watch = None
        self.stdin = self.stdout = self.stderr = None
        self._pipes = ()
        if process.stdin is None and process.stdout is None and process.stderr is None:
            return self
        stdin, stdout, stderr = (
            take_raw(p) for p in (process.stdin, process.stdout, process.stderr)
        )
        process.stdin = process.stdout = process.stderr = None
        self.stdin = None if stdin is None else PipeSendStream(stdin)
        self.stdout = None if stdout is None else PipeReceiveStream(stdout)
        self.stderr = None if stderr is None else PipeReceiveStream(stderr)
        self._pipes = tuple(
            s for s in (self.stdin, self.stdout, self.stderr) if isinstance(s, PipeEnd)
        )
        return self

    @property
    def pid(self) -> int:
        """The child's pid. Never reused by tether after the reap."""
        return self._process.pid

    @property
    def pidfd(self) -> int | None:
        """The child's pidfd while it is unreaped; None after the reap or without pidfds."""
        return self._process.pidfd

    @property
    def backend(self) -> str:
        """The spawn backend that started the child."""
        return self._process.backend

    @property
    def args(self) -> tuple[str, ...]:
        """The argv the child was started with."""
        return self._process.args

    @property
    def detached(self) -> bool:
        """Whether :meth:`detach` gave the child up."""
        return self._process.detached

    @property
    def status(self) -> Status | None:
        """The decoded exit status once reaped, else None. Does not reap."""
        return self._process.status

    @property
    def returncode(self) -> int | None:
        """The subprocess-style return code once reaped (negative for a signal), else None."""
        return self._process.returncode

    def poll(self) -> Status | None:
        """Reap the child if it has exited and return its status; None while it runs."""
        return self._process.poll()

    async def wait(self) -> Status:
        """Wait until the child exits, reap it and return its status.

        Any number of tasks may wait at once; all get the same status. Cancelling a
        wait leaves the child running and reapable. Use ``anyio.fail_after`` or
        ``anyio.move_on_after`` for a timeout.
        """
        process = self._process
        status = process._status
        if status is not None:
            await anyio.lowlevel.checkpoint()
            return status
        if not self._watching:
            # The common case in this one frame, awaiting the loop's own wait: every call
            # and frame after the child's exit runs on caches that the exit evicted. The
            # lease's with-block spelled out, its give-back joined to the reap (one lock).
            # No poll() first: a child that has exited already makes its fd readable at once.
            lease = self._lease
            self._watching = True
            try:
                fd = process._borrow_exit_fd(lease)
                if fd is not None:
                    try:
                        await readable(fd)
                    except Exception as exc:
                        busy = busy_error(exc)
                        if busy is None:
                            raise
                        raise busy from None
                    status = process._reap_returning(lease)
            finally:
                try:
                    if lease.fd is not None:
                        process._return_exit_fd(lease)
                finally:
                    self._stop_watching()
            if status is not None:
                return status
        return await self._wait_on()

    async def _wait_on(self) -> Status:
        # The rest: another task watches the fd (wait for it, take over if it gives up),
        # the fd woke us before the child could be reaped, or there is no fd to wait on.
        process = self._process
        status = process.poll()
        while status is None:
            if self._watching:
                watch = self._watch
                if watch is None:
                    watch = self._watch = anyio.Event()
                await watch.wait()
                status = process.poll()
            else:
                status = await self._watch_exit_fd(process)
        return status

    async def _watch_exit_fd(self, process: Process) -> Status | None:
        lease = self._lease
        self._watching = True
        try:
            fd = process._borrow_exit_fd(lease)
            if fd is None:  # reaped, lost or detached: poll() tells which
                return process.poll()
            await wait_readable(fd)
            return process._reap_returning(lease)
        finally:
            try:
                if lease.fd is not None:
                    process._return_exit_fd(lease)
            finally:
                self._stop_watching()

    def _stop_watching(self) -> None:
        self._watching = False
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.set()

    async def ready(self) -> None:
        """Wait until the child says it is ready; only for ``AsyncSupervisor.start(ready=...)``.

        See :meth:`tether.Process.ready`: raises :class:`tether.NotReadyError` if the child
        exits first and ``RuntimeError`` for a child started without ``ready=``. Use
        ``anyio.fail_after`` for a timeout; cancelling leaves the child running.
        """
        readiness = self._process._readiness
        if readiness is None:
            raise RuntimeError(
                f"process {self.pid} was not started with ready=: nothing says when it is "
                'ready (use AsyncSupervisor.start(..., ready="notify") or ready="fd:N")'
            )
        await readiness.wait_async(self)

    @property
    def notify_status(self) -> str | None:
        """The last ``STATUS=`` text of a child started with ``ready="notify"``, else None."""
        return self._process.notify_status

    def send_signal(self, sig: int, *, group: bool = False) -> None:
        """Send *sig* to the child (or its process group); a no-op after the reap.

        See :meth:`tether.Process.send_signal` for ``group``.
        """
        self._process.send_signal(sig, group=group)

    def terminate(self) -> None:
        """Send SIGTERM; a no-op once the child has been reaped."""
        self._process.send_signal(_SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL; a no-op once the child has been reaped."""
        self._process.send_signal(_SIGKILL)

    def limits(self) -> Limits:
        """The child's resource limits now; see :meth:`tether.Process.limits`."""
        return self._process.limits()

    def set_limits(self, limits: Limits) -> None:
        """Change the running child's limits; see :meth:`tether.Process.set_limits`."""
        self._process.set_limits(limits)

    def detach(self) -> None:
        """Hand the child to the background reaper; see :meth:`tether.Process.detach`."""
        self._process.detach()

    async def stop(self, grace: float = DEFAULT_GRACE, sig: int = signal.SIGTERM) -> Status:
        """Stop the child and reap it: *sig*, up to *grace* seconds, then SIGKILL.

        A stopped child is sent SIGCONT after *sig*. The whole stop is shielded
        from cancellation: a cancelled caller still gets its child reaped, and the
        cancellation is delivered at its next checkpoint.
        """
        grace = check_duration(grace, "grace")
        sig = check_stop_signal(sig)
        with anyio.CancelScope(shield=True):
            try:
                return await self._stop(grace, sig)
            except BaseException:  # interrupted all the same: do not leave a child behind
                with contextlib.suppress(StatusUnknownError):
                    self._process.kill()
                    self._process.wait()
                raise
        raise AssertionError("unreachable: a shield without a deadline never swallows")

    async def _stop(self, grace: float, sig: int) -> Status:
        status = self._process.poll()
        if status is not None:
            return status
        send_stop_signal(self.send_signal, sig)
        with anyio.move_on_after(grace):
            return await self.wait()
        self.kill()
        return await self.wait()

    async def _shutdown(self, grace: float) -> None:
        try:
            if not self._process.detached:
                with contextlib.suppress(StatusUnknownError):  # gone; wait() says what happened
                    await self.stop(grace)
        finally:
            close_pipes(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._shutdown(DEFAULT_GRACE)

    def __repr__(self) -> str:
        return repr(self._process).replace("<tether.Process", "<tether.AsyncProcess", 1)


def wrap(process: Process) -> AsyncProcess:
    """The async handle of a started *process*; its pipes become anyio streams."""
    return AsyncProcess._wrap(process)


def sync_process(handle: AsyncProcess) -> Process:
    """The synchronous handle under *handle* (for the supervisor's process trees)."""
    return handle._process


def close_pipes(handle: AsyncProcess) -> None:
    """Close the handle's pipe streams at once; a task blocked on one is woken."""
    for pipe in handle._pipes:
        pipe.close_now()


async def open_process(
    argv: Iterable[StrOrBytesPath], **options: Unpack[SpawnOptions]
) -> AsyncProcess:
    """Start *argv* as a child process and return its :class:`AsyncProcess` handle.

    Takes the options of :func:`tether.spawn`; piped stdio becomes anyio byte
    streams. Cancellation is checked before the spawn, never after it, so a
    cancelled caller is never left with a child it cannot see.
    """
    await checkpoint_if_cancelled()  # no turn of the loop: the wait that follows yields
    process = prepare(argv, **options)
    try:
        start(process)
        return wrap(process)
    except BaseException:
        abort(process)
        raise


async def run_process(
    argv: Iterable[StrOrBytesPath],
    *,
    input: bytes | None = None,
    capture: bool = False,
    check: bool = False,
    timeout: float | None = None,
    grace: float = DEFAULT_GRACE,
    **options: Unpack[SpawnOptions],
) -> Completed:
    """Run *argv* to completion and return a :class:`tether.Completed`.

    The async twin of :func:`tether.run`: ``input`` is written to the child's stdin
    (then closed) while ``capture=True`` collects stdout and stderr, concurrently.
    After *timeout* seconds the child is stopped (stop signal, *grace* seconds,
    SIGKILL), reaped, and :class:`tether.TimeoutExpired` raised with the output read
    so far. ``check=True`` raises :class:`tether.CalledProcessError` for an
    unsuccessful status. If the caller is cancelled, the child is stopped the same
    way and reaped before the cancellation propagates.
    """
    prepare_run(options, input=input, capture=capture, grace=grace)
    chunks: dict[int, list[bytes]] = {}

    def output(target: int) -> bytes | None:
        parts = chunks.get(target)
        return None if parts is None else b"".join(parts)

    await checkpoint_if_cancelled()  # cancellation is checked before the spawn, never after
    child = prepare(argv, **options)  # held by this frame from birth: an interrupt loses nothing
    process: AsyncProcess | None = None
    try:
        start(child)
        process = wrap(child)
        with anyio.move_on_after(timeout) as deadline, ungrouped():
            async with anyio.create_task_group() as tasks:
                if process.stdin is not None:
                    tasks.start_soon(_feed, process.stdin, input or b"")
                for target, stream in ((1, process.stdout), (2, process.stderr)):
                    if stream is not None:
                        tasks.start_soon(_collect, stream, chunks.setdefault(target, []))
                status = await process.wait()
                # It has exited, so all it wrote is in the pipes: take that and stop,
                # rather than wait for an end-of-file that a grandchild may hold back.
                tasks.cancel_scope.cancel()
            for target, stream in ((1, process.stdout), (2, process.stderr)):
                if isinstance(stream, PipeReceiveStream):
                    chunks[target].extend(stream.drain())
        if deadline.cancelled_caught:
            await process._shutdown(grace)
            await anyio.lowlevel.checkpoint_if_cancelled()  # an outer cancel stays one
            raise TimeoutExpired(process.args, timeout or 0.0, output(1), output(2))
    finally:
        if process is not None:
            await process._shutdown(grace)
        else:  # interrupted before the handle existed
            abort(child)
    completed = Completed(process.args, status, output(1), output(2))
    if check:
        completed.check_returncode()
    return completed


async def _feed(stream: ByteSendStream, data: bytes) -> None:
    # On cancellation or error the pipes stay open until the child is stopped (_shutdown).
    with contextlib.suppress(anyio.BrokenResourceError):  # the child wants no more input
        if data:
            await stream.send(data)
    await stream.aclose()


async def _collect(stream: ByteReceiveStream, into: list[bytes]) -> None:
    async for data in stream:
        into.append(data)
    await stream.aclose()

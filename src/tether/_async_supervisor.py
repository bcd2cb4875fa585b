"""``tether.AsyncSupervisor``: the supervisor scope for anyio, on asyncio and trio.

The policy is :class:`tether.Supervisor`'s (see ``_supervisor``): the stop signal to
every child at once, one shared grace period, SIGKILL for what is left, a
:class:`KilledAfterGraceWarning` when that was needed, every child reaped before the
scope returns, and failures attached to the body's exception or raised in an
``ExceptionGroup``. Only the waiting is async: each tree is stopped by its own task
in an anyio task group, the leader awaited on its pidfd (``AsyncProcess.wait``), a
cgroup through the readiness of its ``cgroup.events`` watch fd, and grandchildren of
a process group, which send no notification, polled with ``anyio.sleep`` backoff.

Leaving the scope by cancellation is the common case, so the whole shutdown runs in
a shielded cancel scope and the cancellation is delivered afterwards, unless
stopping failed: a cancel scope would swallow notes attached to its cancellation,
so the failures are raised instead (with the cancellation as their context). Should the
shutdown be interrupted all the same (a ``KeyboardInterrupt``, or a native asyncio
``Task.cancel``, which anyio shields cannot hold off), every tree is SIGKILLed and
reaped synchronously before the interrupt propagates.

The body of ``async with`` does not run inside a task group of ours, so an exception
leaves it unwrapped, as it came.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal as signals
import sys
from collections.abc import Iterable
from types import TracebackType

import anyio
import anyio.lowlevel
from typing_extensions import Self, Unpack, final

from ._async import AsyncProcess, open_process
from ._errors import StatusUnknownError
from ._process import DEFAULT_GRACE
from ._spawn import SpawnOptions, StrOrBytesPath
from ._status import Status
from ._supervisor import (
    _FIRST_DELAY,
    _MAX_DELAY,
    KILL_PATIENCE,
    KillMode,
    Outcome,
    ProcessTree,
    SupervisorBase,
    abandon,
    finish,
    prepare_options,
    report,
)

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found, unused-ignore]

__all__ = ["AsyncSupervisor"]


@final
class AsyncSupervisor(SupervisorBase):
    """An ``async with`` scope whose children are stopped and reaped when it ends.

    ``AsyncSupervisor(grace=5.0, stop_signal=SIGTERM, kill="group", cgroup_parent=None)``
    takes the settings of :class:`tether.Supervisor` and gives the same guarantees,
    whether the scope ends normally, by an exception or by cancellation. Children are
    started with :meth:`start` and are :class:`tether.AsyncProcess` handles.
    """

    def __init__(
        self,
        *,
        grace: float = DEFAULT_GRACE,
        stop_signal: int = signals.SIGTERM,
        kill: KillMode = "group",
        cgroup_parent: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(
            grace=grace, stop_signal=stop_signal, kill=kill, cgroup_parent=cgroup_parent
        )
        self._handles: dict[int, AsyncProcess] = {}  # id(tree) -> its handle

    @property
    def children(self) -> list[AsyncProcess]:
        """Every child started by this scope, in start order (exited ones included)."""
        return [self._handles[id(tree)] for tree in self._trees]

    async def start(
        self, argv: Iterable[StrOrBytesPath], **options: Unpack[SpawnOptions]
    ) -> AsyncProcess:
        """Start *argv* as a child of this scope; takes the options of :func:`tether.open_process`.

        Cancellation is checked before the spawn, never after it. In ``"group"`` mode
        the child leads a new process group; an explicit ``process_group`` other than
        0 is a ``ValueError``. Raises ``RuntimeError`` outside the scope.
        """
        self._check_open("start")
        self._release_finished()
        cgroup = self._new_cgroup()
        try:
            handle = await open_process(argv, **prepare_options(self._kill, options, cgroup))
        except BaseException:
            if cgroup is not None:
                cgroup.remove()
            raise
        tree = ProcessTree(handle._process, self._kill, cgroup)
        try:
            tree.pin_group()
            if self._state != "open":  # the scope ended while open_process checkpointed
                raise RuntimeError("the supervisor scope ended while the child was being started")
        except BaseException as exc:
            abandon(tree, exc)
            _close_pipes(handle)
            raise
        self._trees.append(tree)
        self._handles[id(tree)] = handle
        return handle

    async def wait_any(self) -> AsyncProcess:
        """Wait until a child exits, reap it and return its handle.

        Each child is handed out once, in the order they exit; one that has already
        exited is returned at once. Raises ``ChildProcessError`` when every child has
        been handed out. Use ``anyio.fail_after`` for a timeout.
        """
        while True:
            await anyio.lowlevel.checkpoint()
            tree = self._next_exited()
            if tree is not None:
                return self._handles[id(tree)]
            pending = [self._handles[id(tree)] for tree in self._pending()]
            async with anyio.create_task_group() as tasks:
                for handle in pending:
                    tasks.start_soon(_wake_on_exit, handle, tasks.cancel_scope)

    async def wait_all(self) -> list[Status]:
        """Wait for every child to exit and return their statuses, in start order.

        Only the children are awaited, not their groups. Use ``anyio.fail_after``
        for a timeout; cancelling leaves the children running.
        """
        return [await handle.wait() for handle in self.children]

    async def __aenter__(self) -> Self:
        await anyio.lowlevel.checkpoint()
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._state = "closed"
        trees = [tree for tree in self._trees if not tree.closed]
        outcome = Outcome()
        try:
            with anyio.CancelScope(shield=True):
                for tree in trees:
                    outcome.attempt(tree, functools.partial(tree.stop, self._stop_signal))
                async with anyio.create_task_group() as tasks:
                    for tree in trees:
                        tasks.start_soon(self._stop_tree, tree, outcome)
        except BaseException as interrupt:  # shields cannot hold these off: kill, reap, re-raise
            outcome.interrupted = _unwrap(interrupt)
            for tree in trees:
                outcome.attempt(tree, tree.kill)
            for tree in trees:
                finish(tree, outcome)
        for handle in self._handles.values():
            _close_pipes(handle)
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            exc = None  # a cancel scope would swallow notes on it: raise the failures instead
        report(exc, outcome, self._grace, self._stop_signal)

    async def _stop_tree(self, tree: ProcessTree, outcome: Outcome) -> None:
        handle = self._handles[id(tree)]
        try:
            with anyio.move_on_after(self._grace) as patience:
                with contextlib.suppress(StatusUnknownError):
                    await handle.wait()
                await _others_gone(tree)
            if patience.cancelled_caught:
                outcome.escalated.append(tree)
            tree.kill()  # also where the wait found it gone: catches stragglers
            with contextlib.suppress(StatusUnknownError):
                await handle.wait()
            with anyio.move_on_after(KILL_PATIENCE) as patience:
                await _others_gone(tree)
            if patience.cancelled_caught:
                outcome.record(tree, tree.survivors())
        except Exception as exc:
            outcome.record(tree, exc)
        finish(tree, outcome, confirm=False)  # reaped and gone already, unless something failed


async def _others_gone(tree: ProcessTree) -> None:
    """After the leader's exit, wait until no other process of its tree lives."""
    cgroup = tree.cgroup
    if cgroup is not None:
        while cgroup.populated():
            await anyio.wait_readable(cgroup.watch_fd)
        return
    delay = _FIRST_DELAY
    while tree.others_alive():  # grandchildren send no exit notification: poll
        await anyio.sleep(delay)
        delay = min(2 * delay, _MAX_DELAY)


async def _wake_on_exit(handle: AsyncProcess, scope: anyio.CancelScope) -> None:
    with contextlib.suppress(StatusUnknownError):
        await handle.wait()
    scope.cancel()


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _close_pipes(handle: AsyncProcess) -> None:
    for pipe in handle._pipes:
        pipe._close()

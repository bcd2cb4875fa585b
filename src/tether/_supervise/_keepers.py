"""The keeper tasks of an ``AsyncSupervisor``: one per child under a restart policy.

Why they run in a task group the caller passes (``AsyncSupervisor(task_group=tg)``) is
told in ``_async_supervisor``. Here is what a keeper does, in a loop, while the scope is
open:

1. await the exit of the child's current incarnation on its pidfd
   (``AsyncProcess.wait``), so no thread and no SIGCHLD handler is involved;
2. hand the status to the child's record (``_keepalive``), which asks the restart
   tracker and logs; stop what is left of the exited tree if a restart follows;
3. wait until the restart is due: an ``anyio.Event`` (the *poke*) awaited with the time
   left on the supervisor's clock as its timeout, then the clock is read again. With
   the real monotonic clock that is a plain timed wait; with a fake clock a test
   advances the clock and pokes (:meth:`Keepers.poke`), which returns once every
   sleeping keeper has looked at the clock again and done what was due;
4. start the next incarnation (``AsyncSupervisor._relaunch``).

Every change of a record's state sets the *changed* event (and replaces it), which is
what ``wait_any``/``wait_all`` await for children under a policy. Each keeper runs in a
cancel scope of its own; :meth:`Keepers.stop` cancels them all and waits until the last
one has finished, which ``__aexit__`` does before it stops any child.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from .._aio._process import AsyncProcess
from .._errors import StatusUnknownError
from .._status import Status
from ._records import Supervised, stop_leftovers

if TYPE_CHECKING:
    from ._async_supervisor import AsyncSupervisor

__all__ = ["Keepers"]


class Keepers:
    """The keeper tasks of one :class:`AsyncSupervisor`, and the events they set."""

    def __init__(self, scope: AsyncSupervisor) -> None:
        self._scope = scope
        self._count = 0
        self._scopes: set[anyio.CancelScope] = set()
        self._idle: anyio.Event | None = None  # events need the event loop: made in open()
        self._changed: anyio.Event | None = None
        self._poke: anyio.Event | None = None
        self._sleepers = 0
        self._passes = 0

    def open(self) -> None:
        """Make the events, in the event loop, as the scope is entered."""
        self._changed = anyio.Event()
        self._poke = anyio.Event()

    def start(self, task_group: TaskGroup, record: Supervised[AsyncProcess]) -> None:
        """Start the keeper of *record* in *task_group* (raises if it is not running)."""
        pid = record._tree.process.pid
        task_group.start_soon(self._keep, record, name=f"tether keeper of {pid}")
        if self._count == 0:
            self._idle = anyio.Event()
        self._count += 1

    async def stop(self) -> None:
        """Cancel every keeper and wait until all have finished."""
        for scope in list(self._scopes):
            scope.cancel()
        if self._count and self._idle is not None:
            await self._idle.wait()

    def notify(self) -> None:
        """Wake every task waiting for a change of the children's states."""
        changed, self._changed = self._changed, anyio.Event()
        if changed is not None:
            changed.set()

    async def until_change(self, records: list[Supervised[AsyncProcess]]) -> None:
        """Wait until a plain child among *records* exits or a keeper reports a change."""
        changed = self._changed
        async with anyio.create_task_group() as tasks:
            if changed is not None and any(r._tracker is not None for r in records):
                tasks.start_soon(_wake_on_event, changed, tasks.cancel_scope)
            for record in records:
                if record._tracker is None:
                    tasks.start_soon(_wake_on_exit, record.process, tasks.cancel_scope)

    async def poke(self) -> None:
        """Wake the keepers waiting out a backoff; return once each has looked at the
        clock again (and restarted its child if that was due)."""
        target = self._passes + self._sleepers
        poke, self._poke = self._poke, anyio.Event()
        if poke is not None:
            poke.set()
        while self._passes < target and self._changed is not None:
            await self._changed.wait()

    def _pass_done(self) -> None:
        self._passes += 1
        self.notify()

    async def _keep(self, record: Supervised[AsyncProcess]) -> None:
        """Await each exit of *record*'s child, apply the policy, restart."""
        sup = self._scope
        cancel = anyio.CancelScope()
        self._scopes.add(cancel)
        try:
            with cancel:
                while sup._state == "open":
                    status = await _exit_status(record.process)
                    try:
                        decision = record._on_exit(status, scope_open=True, clock=sup._clock)
                        if decision is not None and decision.action == "restart":
                            stop_leftovers(record._tree, sup._stop_signal)
                    except Exception as exc:  # never lose a child silently
                        record._fail(status, f"could not apply the restart policy: {exc!r}", exc)
                    self.notify()
                    if record._state != "restarting":
                        return
                    await self._sleep_until(record)
                    await sup._relaunch(record)
                    self._pass_done()
        finally:
            if sup._state == "open":  # cancelled from outside: its task group is ending
                record._unkeep("its keeper task was cancelled")
                self.notify()
            self._scopes.discard(cancel)
            self._count -= 1
            if self._count == 0 and self._idle is not None:
                self._idle.set()

    async def _sleep_until(self, record: Supervised[AsyncProcess]) -> None:
        """Wait until *record*'s restart is due on the supervisor's clock."""
        clock = self._scope._clock
        while record._due is not None and (remaining := record._due - clock()) > 0:
            poke = self._poke
            assert poke is not None, "made on entry"
            self._sleepers += 1
            try:
                with anyio.move_on_after(remaining):
                    await poke.wait()
            finally:
                self._sleepers -= 1
            if record._due - clock() > 0:
                self._pass_done()  # not yet: back to sleep


async def _exit_status(handle: AsyncProcess) -> Status | None:
    try:
        return await handle.wait()
    except StatusUnknownError:
        return None


async def _wake_on_exit(handle: AsyncProcess, scope: anyio.CancelScope) -> None:
    with contextlib.suppress(StatusUnknownError):
        await handle.wait()
    scope.cancel()


async def _wake_on_event(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()

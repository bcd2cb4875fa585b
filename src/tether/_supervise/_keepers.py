"""The keeper tasks of an ``AsyncSupervisor``: one per child under a restart policy.

Why they run in a task group the caller passes (``AsyncSupervisor(task_group=tg)``) is
told in ``_async_supervisor``. Here is what a keeper does, in a loop, while the scope is
open:

1. await the exit of the child's current incarnation on its pidfd
   (``AsyncProcess.wait``), so no thread and no SIGCHLD handler is involved;
2. hand the status to the host (:meth:`KeeperHost.child_exited`), which has the
   child's record (``_records``) ask the restart tracker and log, stops what is left of
   the exited tree if a restart follows, and answers when the restart is due;
3. wait until the restart is due: an ``anyio.Event`` (the *poke*) awaited with the time
   left on the host's clock as its timeout, then the clock is read again. With the
   real monotonic clock that is a plain timed wait; with a fake clock a test advances
   the clock and pokes (:meth:`Keepers.poke`), which returns once every sleeping
   keeper has looked at the clock again and done what was due;
4. have the host start the next incarnation (:meth:`KeeperHost.relaunch`).

The keepers talk to their supervisor only through :class:`KeeperHost` (``AsyncSupervisor``
implements it with a private adapter; ``tests/test_keepers.py`` with a fake) and see a
child only as a record with a current handle (:class:`Kept`), handed back as it came.

Every change of a record's state sets the *changed* event (and replaces it), which is
what ``wait_any``/``wait_all`` await for children under a policy. Each keeper runs in a
cancel scope of its own; :meth:`Keepers.stop` cancels them all and waits until the last
one has finished, which ``__aexit__`` does before it stops any child.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

import anyio
from anyio.abc import TaskGroup

from .._aio._process import AsyncProcess
from .._errors import StatusUnknownError
from .._status import Status

__all__ = ["KeeperHost", "Keepers", "Kept"]


class Kept(Protocol):
    """A child as its keeper sees it: the handle of its current incarnation."""

    @property
    def process(self) -> AsyncProcess:
        """The current incarnation; :meth:`KeeperHost.relaunch` replaces it."""
        ...


R = TypeVar("R", bound=Kept)
R_contra = TypeVar("R_contra", bound=Kept, contravariant=True)


class KeeperHost(Protocol[R_contra]):
    """What the :class:`Keepers` need of the scope they serve (all in its event loop)."""

    @property
    def scope_open(self) -> bool:
        """Whether the scope is open: keepers keep their children alive only while it is."""
        ...

    def clock(self) -> float:
        """Now, on the clock that restarts are due on (monotonic seconds)."""
        ...

    def child_exited(self, record: R_contra, status: Status | None) -> float | None:
        """Apply the restart policy to the exit of *record*'s current incarnation (*status*
        None: another party took it); the time its restart is due, None if none follows."""
        ...

    async def relaunch(self, record: R_contra) -> None:
        """Start the next incarnation of *record*, or give the child up."""
        ...

    def keeper_ended(self, record: R_contra) -> None:
        """The keeper of *record* ended while the scope is open (cancelled, failed, or done
        because the child stays down): nothing keeps the child alive any more."""
        ...


class Keepers(Generic[R]):
    """The keeper tasks of one scope, and the events they set."""

    def __init__(self, host: KeeperHost[R]) -> None:
        self._host = host
        self._count = 0
        self._scopes: set[anyio.CancelScope] = set()
        self._idle: anyio.Event | None = None  # events need the event loop: made in open()
        self._changed: anyio.Event | None = None
        self._poke: anyio.Event | None = None
        self._sleepers = 0
        self._passes = 0
        self._stopping = False

    def open(self) -> None:
        """Make the events, in the event loop, as the scope is entered."""
        self._changed = anyio.Event()
        self._poke = anyio.Event()

    def start(self, task_group: TaskGroup, record: R) -> None:
        """Start the keeper of *record* in *task_group* (raises if it is not running)."""
        pid = record.process.pid
        task_group.start_soon(self._keep, record, name=f"tether keeper of {pid}")
        if self._count == 0:
            self._idle = anyio.Event()
        self._count += 1

    async def stop(self) -> None:
        """Cancel every keeper (and any that has yet to start) and wait until all have
        finished."""
        self._stopping = True
        for scope in list(self._scopes):
            scope.cancel()
        if self._count and self._idle is not None:
            await self._idle.wait()

    def notify(self) -> None:
        """Wake every task waiting for a change of the children's states."""
        changed, self._changed = self._changed, anyio.Event()
        if changed is not None:
            changed.set()

    async def until_change(self, plain: Sequence[AsyncProcess], *, kept: bool) -> None:
        """Wait until one of the *plain* children (no keeper) exits or, if *kept* (some
        awaited children have keepers), a keeper reports a change."""
        changed = self._changed
        async with anyio.create_task_group() as tasks:
            if changed is not None and kept:
                tasks.start_soon(_wake_on_event, changed, tasks.cancel_scope)
            for process in plain:
                tasks.start_soon(_wake_on_exit, process, tasks.cancel_scope)

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

    async def _keep(self, record: R) -> None:
        """Await each exit of *record*'s child, apply the policy, restart."""
        host = self._host
        cancel = anyio.CancelScope()
        if self._stopping:  # stop() came before this task ran: keep nothing
            cancel.cancel()
        self._scopes.add(cancel)
        try:
            with cancel:
                while host.scope_open:
                    status = await _exit_status(record.process)
                    due = host.child_exited(record, status)
                    self.notify()
                    if due is None:
                        return
                    await self._sleep_until(due)
                    await host.relaunch(record)
                    self._pass_done()
        finally:
            if host.scope_open:  # e.g. cancelled from outside: its task group is ending
                host.keeper_ended(record)
                self.notify()
            self._scopes.discard(cancel)
            self._count -= 1
            if self._count == 0 and self._idle is not None:
                self._idle.set()

    async def _sleep_until(self, due: float) -> None:
        """Wait until *due* on the host's clock."""
        clock = self._host.clock
        while (remaining := due - clock()) > 0:
            poke = self._poke
            assert poke is not None, "made on entry"
            self._sleepers += 1
            try:
                with anyio.move_on_after(remaining):
                    await poke.wait()
            finally:
                self._sleepers -= 1
            if due - clock() > 0:
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

"""``tether.AsyncSupervisor``: the supervisor scope for anyio, on asyncio and trio.

The policy is :class:`tether.Supervisor`'s (see ``_supervisor`` and ``_shutdown``): the
stop signal to every child at once, one shared grace period, SIGKILL for what is left,
a :class:`KilledAfterGraceWarning` when that was needed, every child reaped before the
scope returns, and failures attached to the body's exception or raised in an
``ExceptionGroup``. Only the waiting is async (``_async_stop``): each leader awaited on
its pidfd (``AsyncProcess.wait``) and each cgroup on its ``cgroup.events`` watch fd by
a task of its own, and the process groups, which send no notification, together, one
look at ``/proc`` per round in a worker thread (``_census``).

Leaving the scope by cancellation is the common case, so the whole shutdown runs in
a shielded cancel scope and the cancellation is delivered afterwards, unless
stopping failed: a cancel scope would swallow notes attached to its cancellation,
so the failures are raised instead (with the cancellation as their context). Should the
shutdown be interrupted all the same (a ``KeyboardInterrupt``, or a native asyncio
``Task.cancel``, which anyio shields cannot hold off), every tree is SIGKILLed and
reaped synchronously before the interrupt propagates.

The body of ``async with`` does not run inside a task group of ours, so an exception
leaves it unwrapped, as it came. That rules out the obvious home for keep-alive, an
internal task group opened in ``__aenter__``: the body would then run inside it, and
trio (and anyio's asyncio backend) would wrap every exception of the body in an
``ExceptionGroup``. A thread like the sync ``Supervisor``'s would work, but would have
to hand every restart back to the event loop (``anyio.from_thread``) and be a thread
where a task will do. So restarts run as tasks in a task group the *caller* owns::

    async with anyio.create_task_group() as tg:
        async with tether.AsyncSupervisor(task_group=tg) as sup:
            await sup.start(["server"], restart="on-failure")
            ...

the structured-concurrency idiom of passing a nursery: the caller already decided how
exceptions of that group are grouped, and the group encloses the scope. ``start()`` with
a restart policy and no ``task_group`` is a ``ValueError``. Each child under a policy
gets one keeper task (``_keepers``, which reaches the scope through the ``KeeperHost``
contract that :class:`_KeeperHost` implements): it awaits the child's exit on its pidfd,
asks the restart tracker (``_records``), waits out the backoff (a wait on an event with
the delay left on the supervisor's clock as its timeout, so a test can drive a fake
clock and poke), then starts the next incarnation. Leaving the scope cancels every
keeper and waits for all of them to finish before any child is stopped, so nothing
restarts during the shutdown; a keeper that has not started yet finds the scope closed.
"""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Iterable
from types import TracebackType

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from typing_extensions import Self, Unpack, final

from .._aio._groups import lone
from .._aio._process import AsyncProcess, close_pipes, wrap
from .._spawn import SpawnOptions, StrOrBytesPath
from .._status import Status
from ._async_stop import stop_all
from ._base import ScopeSettings, SupervisorBase
from ._keepers import Keepers
from ._launch import Launch
from ._readiness import ReadyMode, parse_ready, release
from ._records import Supervised, frozen_argv, frozen_options, parse_policy, stop_leftovers
from ._restart import Backoff, RestartMode, RestartPolicy
from ._shutdown import Outcome, abandon, close_all, finish, report
from ._tree import ProcessTree

if sys.version_info < (3, 11):  # pragma: no cover
    pass  # type: ignore[import-not-found, unused-ignore]

__all__ = ["AsyncSupervisor"]


@final
class AsyncSupervisor(SupervisorBase[AsyncProcess]):
    """An ``async with`` scope whose children are stopped and reaped when it ends.

    ``AsyncSupervisor(*, grace=5.0, stop_signal=SIGTERM, kill="group",
    cgroup_parent=None, subreaper=False, task_group=None, clock=time.monotonic,
    random=random.random)`` takes the settings of :class:`tether.Supervisor`, with the
    same meanings and defaults, and gives the same guarantees, whether the scope ends
    normally, by an exception or by cancellation. Children are started with
    :meth:`start` and are :class:`tether.AsyncProcess` handles. Children with a
    restart policy are kept alive by tasks in *task_group*, which the caller opens
    around the scope; *clock* and *random* drive the restart schedules (tests pass
    fakes).
    """

    def __init__(
        self, *, task_group: TaskGroup | None = None, **settings: Unpack[ScopeSettings]
    ) -> None:
        super().__init__(**settings)
        self._task_group = task_group
        self._handles: dict[int, AsyncProcess] = {}  # id(tree) -> its handle, every incarnation
        self._launches: set[Launch] = set()  # incarnations being started, until recorded
        self._keepers = Keepers(_KeeperHost(self))

    @property
    def children(self) -> list[AsyncProcess]:
        """The current incarnation of every child of this scope, in start order."""
        return [record.process for record in self._records]

    @property
    def supervised(self) -> list[Supervised[AsyncProcess]]:
        """A record per child of this scope, in start order: its handle, state and restarts."""
        return list(self._records)

    async def start(
        self,
        argv: Iterable[StrOrBytesPath],
        *,
        restart: RestartMode | RestartPolicy | None = None,
        backoff: Backoff | float | None = None,
        ready: str | None = None,
        **options: Unpack[SpawnOptions],
    ) -> AsyncProcess:
        """Start *argv* as a child of this scope; takes the options of :func:`tether.open_process`.

        *restart* and *backoff* are those of :meth:`tether.Supervisor.spawn`, and need
        the supervisor's ``task_group``. *ready* (``"notify"`` or ``"fd:N"``) is that of
        :meth:`tether.Supervisor.spawn`: ``await process.ready()`` waits for the child
        to say it is up. Cancellation is checked before the spawn, never
        after it. In ``"group"`` mode the child leads a new process group; an explicit
        ``process_group`` other than 0 is a ``ValueError``. Raises ``RuntimeError``
        outside the scope.
        """
        policy = parse_policy(restart, backoff)
        mode = parse_ready(ready, options)
        if policy is not None:
            if self._task_group is None:
                raise ValueError(
                    "a restart policy needs a task group for its keeper task: "
                    "AsyncSupervisor(task_group=tg), with tg opened around the scope"
                )
            argv, options = frozen_argv(argv), frozen_options(options)
        self._check_open("start")
        for superseded in self._release_finished():
            self._let_go(superseded)
        handle, tree = await self._launch(argv, options, mode)  # in the scope's trees already
        record = Supervised(handle, tree, argv, options, self._tracker(policy), mode)
        self._records.append(record)
        if policy is not None and self._task_group is not None:
            try:
                self._keepers.start(self._task_group, record)
            except BaseException as exc:  # the task group is not running
                del self._records[-1], self._trees[-1], self._handles[id(tree)]
                abandon(tree, exc)
                close_pipes(handle)
                release(handle)
                raise
        return handle

    async def wait_any(self) -> AsyncProcess:
        """Wait until a child exits for good, reap it and return its (current) handle.

        Each child is handed out once. It looks at the children in start order and
        returns the first one not handed out yet that has finished; if none has, it
        waits until one does and looks again. So when several have finished, the one
        started first comes out first, whatever order they finished in. A child under
        a restart policy finishes when it exits and is not restarted; one that was given
        up raises its :class:`tether.SupervisedChildFailed` in its turn. Raises
        ``ChildProcessError`` when every child has been handed out. Use
        ``anyio.fail_after`` for a timeout.
        """
        while True:
            await anyio.lowlevel.checkpoint()
            self._reap_adopted()
            record = self._next_settled()
            if record is not None:
                return record.process
            await self._until_change(self._pending())

    async def wait_all(self) -> list[Status]:
        """Wait until every child has exited for good and return their statuses, in start order.

        Only the children are awaited, not their groups; a child under a restart policy
        is awaited until it exits and is not restarted. Raises the
        :class:`tether.SupervisedChildFailed` of a child given up as soon as there is
        one. Use ``anyio.fail_after`` for a timeout; cancelling leaves the children running.
        """
        while True:
            await anyio.lowlevel.checkpoint()
            self._reap_adopted()
            self._raise_unseen_failure()
            unsettled = self._unsettled()
            if not unsettled:
                return self._final_statuses()
            await self._until_change(unsettled)

    async def __aenter__(self) -> Self:
        await anyio.lowlevel.checkpoint()
        self._open()
        self._keepers.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._state = "closed"
        outcome = Outcome()
        trees: list[ProcessTree] = []
        for launch in list(self._launches):  # a start whose own cleanup an interrupt cut short
            stranding = RuntimeError("a child being started when the scope ended")
            outcome.attempt(None, functools.partial(self._undo_launch, launch, stranding))
        try:
            with anyio.CancelScope(shield=True):
                await self._keepers.stop()  # first: nothing restarts once the shutdown begins
                self._end_restarts()
                trees = [tree for tree in self._trees if not tree.closed]
                for tree in trees:
                    outcome.attempt(tree, functools.partial(tree.stop, self._stop_signal))
                await stop_all(
                    trees, self._wait_leader, self._grace, outcome, self._reap_adopted_at_exit
                )
                close_all(trees, outcome, self._reap_adopted_at_exit)
        except BaseException as interrupt:  # shields cannot hold these off: kill, reap, re-raise
            outcome.interrupted = lone(interrupt)
            self._end_restarts()
            trees = [tree for tree in self._trees if not tree.closed]
            for tree in trees:
                outcome.attempt(tree, tree.kill)
            for tree in trees:
                finish(tree, outcome, close=False)
            close_all(trees, outcome, self._reap_adopted_at_exit)
        finally:
            self._unclaim()
        for handle in self._handles.values():
            close_pipes(handle)
            release(handle)
        self._record_final_exits()
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            exc = None  # a cancel scope would swallow notes on it: raise the failures instead
        report(exc, outcome, self._grace, self._stop_signal, self._unseen_failures())

    async def _wait_leader(self, tree: ProcessTree) -> None:
        await self._handles[id(tree)].wait()

    async def _launch(
        self, argv: Iterable[StrOrBytesPath], options: SpawnOptions, ready: ReadyMode | None
    ) -> tuple[AsyncProcess, ProcessTree]:
        """Start one incarnation in a tree of its own, recorded among the scope's trees (so
        its end stops it); nothing is left behind if that fails or is interrupted.

        Cancellation is checked before the spawn, never after it.
        """
        await anyio.lowlevel.checkpoint()
        if self._state != "open":  # the scope ended while we checkpointed
            raise RuntimeError("the supervisor scope ended while the child was being started")
        launch = Launch()
        self._launches.add(launch)  # from here the scope's end undoes it, if nothing else
        try:
            tree = launch.run(self._kill, self._cgroup_parent, argv, options, ready)
            handle = wrap(tree.process)
            self._handles[id(tree)] = handle
            self._trees.append(tree)
            self._launches.discard(launch)
            return handle, tree
        except BaseException as exc:
            self._undo_launch(launch, exc)
            raise

    def _undo_launch(self, launch: Launch, error: BaseException) -> None:
        """Take apart an incarnation whose start failed (notes on *error* say what failed
        doing so), out of the scope's trees; it is no longer pending."""
        tree = launch.tree
        if tree is not None and tree in self._trees:
            self._trees.remove(tree)
        handle = None if tree is None else self._handles.pop(id(tree), None)
        launch.undo(error)  # closes the tree's pipes, which the handle shares
        if handle is not None:
            close_pipes(handle)
            release(handle)
        self._launches.discard(launch)

    async def _until_change(self, records: list[Supervised[AsyncProcess]]) -> None:
        """Wait until a plain child among *records* exits or a keeper reports a change."""
        plain = [record.process for record in records if record._tracker is None]
        await self._keepers.until_change(plain, kept=len(plain) < len(records))

    # --- keep-alive: called by the keeper tasks (_keepers), through _KeeperHost ---------

    def _child_exited(
        self, record: Supervised[AsyncProcess], status: Status | None
    ) -> float | None:
        """Apply the restart policy to an exit; when the restart is due, None if none follows."""
        try:
            decision = record._on_exit(status, scope_open=True, clock=self._clock)
            if decision is not None and decision.action == "restart":
                stop_leftovers(record._tree, self._stop_signal)
        except Exception as exc:  # never lose a child silently
            record._fail(status, f"could not apply the restart policy: {exc!r}", exc)
        return record.next_restart

    async def _relaunch(self, record: Supervised[AsyncProcess]) -> None:
        """Start the next incarnation of *record*, or give it up if that cannot be done."""
        stop_leftovers(record._tree, signal.SIGKILL)
        for superseded in self._release_finished():
            self._let_go(superseded)
        try:
            handle, tree = await self._launch(record._argv, record._options, record._ready)
        except Exception as exc:
            if self._state == "open":
                status = record._tree.process.status
                record._fail(status, f"restart {record.restarts + 1} failed to spawn: {exc}", exc)
                self._keepers.notify()
            return
        record._restarted(handle, tree)
        self._keepers.notify()

    def _let_go(self, tree: ProcessTree) -> None:
        handle = self._handles.pop(id(tree), None)
        if handle is not None:
            close_pipes(handle)
            release(handle)

    async def _poke(self) -> None:
        """For tests: wake the keepers waiting out a backoff; return once each has looked
        at the clock again (and restarted its child if that was due)."""
        await self._keepers.poke()


class _KeeperHost:
    """An :class:`AsyncSupervisor` as its keeper tasks see it (``_keepers.KeeperHost``)."""

    __slots__ = ("_scope",)

    def __init__(self, scope: AsyncSupervisor) -> None:
        self._scope = scope

    @property
    def scope_open(self) -> bool:
        return self._scope._state == "open"

    def clock(self) -> float:
        return self._scope._clock()

    def child_exited(self, record: Supervised[AsyncProcess], status: Status | None) -> float | None:
        return self._scope._child_exited(record, status)

    async def relaunch(self, record: Supervised[AsyncProcess]) -> None:
        await self._scope._relaunch(record)

    def keeper_ended(self, record: Supervised[AsyncProcess]) -> None:
        record._unkeep("its keeper task was cancelled")

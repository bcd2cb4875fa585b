"""``tether.Supervisor``: a scope that no child outlives, and that can keep children alive.

Leaving ``with Supervisor(...) as sup:`` (normally, by an exception, by
``KeyboardInterrupt``) stops every child the scope started and reaps it before
``__exit__`` returns, with the stop policy of ``_shutdown``: the stop signal to every
tree at once, one shared grace period, SIGKILL for what is left. What a tree covers
(the child's process group, its cgroup, or the child alone) is the ``kill`` mode,
described in ``_tree``.

``sup.spawn(argv, restart="on-failure")`` also keeps the child alive while the scope is
open, the way supervisord and systemd do: each exit the policy wants restarted is
followed, after an exponential backoff with jitter and a cap, by a new incarnation,
until the restart budget of the policy's window is spent and the child is given up as
failed (``_restart`` decides, ``_records`` keeps the record, ``_watcher`` is the thread
that notices exits and restarts, talking to the scope through the ``WatcherHost``
contract that :class:`_WatcherHost` implements). When an incarnation exits and is to be
restarted, what is left of its tree (grandchildren in its group or cgroup) gets the stop
signal at once and SIGKILL when the restart is due, as systemd stops a unit's control
group before starting it again. ``sup.spawn`` returns the first incarnation;
``sup.children`` and ``sup.supervised`` show the current ones. Restarts stop as soon as
the scope begins to end: the watcher thread is joined before any child is stopped.

``subreaper=True`` adopts the orphans of the trees (``_subreaper``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
import threading
from collections.abc import Iterable
from types import TracebackType

from typing_extensions import Self, Unpack, final

from .._core._lease import ExitFdLease
from .._core._pipes import close_pipes
from .._core._process import Process
from .._durations import deadline_after, poll_millis, remaining
from .._errors import TimeoutExpired
from .._spawn import SpawnOptions, StrOrBytesPath
from .._status import Status
from . import _signal_shield
from ._base import ScopeSettings, SupervisorBase
from ._launch import Launch
from ._readiness import parse_ready, release
from ._records import (
    Supervised,
    frozen_argv,
    frozen_options,
    logger,
    parse_policy,
    stop_leftovers,
)
from ._restart import Backoff, RestartMode, RestartPolicy
from ._shutdown import Outcome, abandon, report, shutdown
from ._tree import KillMode, ProcessTree
from ._watcher import THREAD_NAME, Watcher

__all__ = ["KillMode", "Supervisor"]


@final
class Supervisor(SupervisorBase[Process]):
    """A ``with`` scope whose children are stopped and reaped when it ends.

    ``Supervisor(*, grace=5.0, stop_signal=SIGTERM, kill="group", cgroup_parent=None,
    subreaper=False, clock=time.monotonic, random=random.random)``. On leaving the scope
    every live child gets *stop_signal* (an ``int`` signal number, and then SIGCONT) at
    once; whatever outlives the shared *grace* period (seconds; ``math.inf`` waits as
    long as it takes) is SIGKILLed with a :class:`KilledAfterGraceWarning`, and
    everything is reaped before ``__exit__`` returns. *kill* says what a stop reaches:
    ``"group"`` (the child's process group, the default), ``"cgroup"`` (a cgroup v2
    per child, created under *cgroup_parent* or our own cgroup;
    :class:`tether.CgroupError` if that is not writable), ``"process"`` (the child
    alone) or ``"namespace"`` (a PID namespace per child behind tether's init, which the
    kernel kills with everything in it even when this process is SIGKILLed; needs
    ``CAP_SYS_ADMIN``, else :class:`tether.NamespaceError` at spawn). Children get
    ``pdeathsig=SIGKILL`` unless the spawn options say otherwise. Scopes nest; each
    stops its own children. Safe to use from several threads.

    ``subreaper=True`` makes this process a child subreaper while the scope is open
    (process-wide; the previous value is restored when the last such scope ends), so
    that descendants orphaned inside the trees are re-parented here, and reaps those
    that provably belong to the trees. Children spawned with a ``restart`` policy are
    restarted by a thread of the scope, ``"tether-supervisor"``. *clock* (monotonic
    seconds) and *random* (in ``[0, 1]``) drive the restart schedules; tests pass fakes.

    Leaving the scope first stops the ``"tether-supervisor"`` thread (nothing restarts
    during the shutdown), then stops every tree at once, reaps every child, waits (at most
    10 s after SIGKILL) until the rest of each tree is gone, removes the cgroups and closes
    the children's pipes. The block's exception propagates unchanged, with failures attached
    as notes; without one, failures are raised in an ``ExceptionGroup``, except that a lone
    :class:`tether.SupervisedChildFailed` that no wait raised is raised on its own. An
    interrupt during the grace period kills and reaps everything at once, then propagates.

    :raises ValueError: a negative *grace*, a *stop_signal* that is not a signal, an unknown
        *kill* mode, *cgroup_parent* without ``kill="cgroup"``, or ``subreaper=True`` with
        ``kill="process"`` or ``"namespace"``.
    :raises RuntimeError: the scope is entered a second time.
    """

    def __init__(self, **settings: Unpack[ScopeSettings]) -> None:
        super().__init__(**settings)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._watcher: Watcher[Supervised[Process]] | None = None
        self._owner = os.getpid()
        self._launches: set[Launch] = set()  # incarnations being started, until recorded

    @property
    def children(self) -> list[Process]:
        """The current incarnation of every child of this scope, in start order."""
        with self._lock:
            return [record.process for record in self._records]

    @property
    def supervised(self) -> list[Supervised[Process]]:
        """A record per child of this scope, in start order: its handle, state and restarts."""
        with self._lock:
            return list(self._records)

    def spawn(
        self,
        argv: Iterable[StrOrBytesPath],
        *,
        restart: RestartMode | RestartPolicy | None = None,
        backoff: Backoff | float | None = None,
        ready: str | None = None,
        **options: Unpack[SpawnOptions],
    ) -> Process:
        """Start *argv* as a child of this scope; takes the options of :func:`tether.spawn`.

        *restart* (``"never"``, ``"on-failure"``, ``"always"`` or a ``RestartPolicy``)
        keeps the child alive while the scope is open; *backoff* replaces the policy's
        schedule (a ``Backoff``, or seconds for the first delay). The handle returned is
        the first incarnation: see :attr:`children` or :attr:`supervised` for the
        current one. In ``"group"`` mode the child leads a new process group; an
        explicit ``process_group`` other than 0 is a ``ValueError``. Raises
        ``RuntimeError`` outside the scope.

        *ready* gives each incarnation a way to say that it is up, for
        :meth:`tether.Process.ready` to wait on: ``"notify"`` (an sd_notify socket of
        its own in ``NOTIFY_SOCKET``, believed only from the child's tree; ``STATUS=``
        lines appear as ``process.notify_status``) or ``"fd:N"`` (s6 style: the write
        end of a pipe as fd N, on which the child writes a line). Under a restart
        policy a run that never said ready does not reset the backoff, and exiting
        before ready is a failed start.
        """
        policy = parse_policy(restart, backoff)
        mode = parse_ready(ready, options)
        if policy is not None:
            argv, options = frozen_argv(argv), frozen_options(options)
        launch = Launch()
        with self._lock:
            self._check_open("spawn")
            gone = self._release_finished()
            self._launches.add(launch)  # from here the scope's end undoes it, if nothing else
        try:
            for superseded in gone:
                self._let_go(superseded)
            tree = launch.run(self._kill, self._cgroup_parent, argv, options, mode)
            record = Supervised(tree.process, tree, argv, options, self._tracker(policy), mode)
            with self._lock:
                if self._state != "open":
                    raise RuntimeError(
                        "the supervisor scope ended while the child was being spawned"
                    )
                if policy is not None and self._watcher is None:
                    self._watcher = Watcher(_WatcherHost(self))
                    for earlier in self._records:
                        if earlier.state == "running":
                            self._watcher.watch(earlier)
                if self._watcher is not None:
                    self._watcher.watch(record)
                self._trees.append(tree)  # first: from here the scope's end stops it
                self._records.append(record)
                self._launches.discard(launch)
                return tree.process
        except BaseException as exc:
            self._undo_launch(launch, exc)
            raise

    def wait_any(self, timeout: float | None = None) -> Process:
        """Wait until a child exits for good, reap it and return its (current) handle.

        Each child is handed out once. It looks at the children in start order and
        returns the first one not handed out yet that has finished; if none has, it
        waits until one does and looks again. So when several have finished, the one
        started first comes out first, whatever order they finished in. A child under
        a restart policy finishes when it exits and is not restarted; one that was given
        up raises its :class:`tether.SupervisedChildFailed` in its turn. Raises
        :class:`tether.TimeoutExpired` after *timeout* seconds and ``ChildProcessError``
        when every child has been handed out.
        """
        deadline = deadline_after(timeout)
        while True:
            with self._lock:
                self._reap_adopted()
                record = self._next_settled()
                if record is not None:
                    return record.process
                pending = self._pending()
                left = remaining(deadline)
                if left is not None and left <= 0:
                    args = pending[0].args if len(pending) == 1 else (f"<any of {len(pending)}>",)
                    raise TimeoutExpired(args, timeout or 0.0)
                if self._watcher is not None and not self._watcher.crashed:
                    self._changed.wait(left)
                    continue
                processes = [record.process for record in pending]
            _wait_for_any(processes, left)

    def wait_all(self, timeout: float | None = None) -> list[Status]:
        """Wait until every child has exited for good and return their statuses, in start order.

        Only the children are awaited, not their groups; a child under a restart policy
        is awaited until it exits and is not restarted (``"always"``: never). Raises the
        :class:`tether.SupervisedChildFailed` of a child given up as soon as there is
        one, and :class:`tether.TimeoutExpired` after *timeout* seconds, leaving the
        children running.
        """
        deadline = deadline_after(timeout)
        while True:
            with self._lock:
                self._reap_adopted()
                self._raise_unseen_failure()
                unsettled = self._unsettled()
                if not unsettled:
                    return self._final_statuses()
                left = remaining(deadline)
                if left is not None and left <= 0:
                    raise TimeoutExpired(unsettled[0].args, timeout or 0.0)
                if self._watcher is not None and not self._watcher.crashed:
                    self._changed.wait(left)
                    continue
                processes = [record.process for record in unsettled]
            _wait_for_any(processes, left)

    def __enter__(self) -> Self:
        self._check_new()  # a second entry changes nothing, so there is nothing to undo
        try:
            with self._lock:
                self._open()
            _signal_shield.shield(self)
        except BaseException:
            # An interrupt before the with-block owns the scope: its __exit__ will never
            # run, so undo what the entry did (each undo a no-op for what was not done).
            _signal_shield.unshield(self)
            self._unclaim()
            raise
        return self

    @_signal_shield.protect
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._owner != os.getpid():
            return  # a child made by os.fork leaving the scope: the trees are its parent's
        with self._lock:
            self._state = "closed"
            watcher = self._watcher
            mine = threading.get_ident()
            stranded = [launch for launch in self._launches if launch.owner == mine]
        outcome = Outcome()
        trees: list[ProcessTree] = []
        for launch in stranded:  # a spawn whose own cleanup an interrupt cut short
            stranding = RuntimeError("a child being spawned when the scope ended")
            outcome.attempt(None, functools.partial(self._undo_launch, launch, stranding))
        try:
            if watcher is not None:
                try:
                    watcher.stop()  # first: nothing restarts once the shutdown begins
                except BaseException as interrupt:
                    outcome.interrupted = interrupt
            with self._lock:
                self._end_restarts()
                trees = list(self._trees)
                self._changed.notify_all()
            shutdown(
                trees,
                self._grace,
                self._stop_signal,
                outcome=outcome,
                before_close=self._reap_adopted_at_exit,
                hurried=_signal_shield.hurried,
            )
        finally:
            if watcher is not None:
                watcher.stop()  # joined already, unless an interrupt cut the join short
            self._unclaim()
        for tree in trees:
            close_pipes(tree.process)
            release(tree.process)
        with self._lock:
            self._record_final_exits()
            failures = self._unseen_failures()
            self._changed.notify_all()  # waiters parked on the watcher's condition
        _signal_shield.unshield(self)
        for kept in _signal_shield.take_interrupts():  # report() raises the first one
            outcome.note_interrupt(kept)
        report(exc, outcome, self._grace, self._stop_signal, failures)

    # --- called by the watcher thread, through _WatcherHost -----------------------------

    def _child_exited(
        self, record: Supervised[Process], process: Process, status: Status | None
    ) -> None:
        with self._lock:
            if record._tree.process is process:
                try:
                    decision = record._on_exit(
                        status, scope_open=self._state == "open", clock=self._clock
                    )
                    if decision is not None and decision.action == "restart":
                        stop_leftovers(record._tree, self._stop_signal)
                except Exception as exc:  # never lose a child silently
                    record._fail(status, f"could not apply the restart policy: {exc!r}", exc)
            self._changed.notify_all()

    def _restart_due(self) -> None:
        with self._lock:
            due = self._due() if self._state == "open" else []
        for record in due:
            self._relaunch(record)

    def _relaunch(self, record: Supervised[Process]) -> None:
        with self._lock:
            if self._state != "open":
                return
            stop_leftovers(record._tree, signal.SIGKILL)
            gone = self._release_finished()
        for superseded in gone:
            self._let_go(superseded)
        launch = Launch()
        try:
            tree = launch.run(
                self._kill, self._cgroup_parent, record._argv, record._options, record._ready
            )
        except Exception as exc:
            launch.undo(exc)
            with self._lock:
                status = record._tree.process.status
                record._fail(status, f"restart {record.restarts + 1} failed to spawn: {exc}", exc)
                self._changed.notify_all()
            return
        with self._lock:
            if self._state == "open" and self._watcher is not None:
                self._trees.append(tree)
                record._restarted(tree.process, tree)
                try:
                    self._watcher.watch(record)
                except Exception as exc:  # EMFILE, ENOMEM: the scope still stops it
                    record._fail(None, f"restart {record.restarts} cannot be watched: {exc}", exc)
                self._changed.notify_all()
                return
        error = RuntimeError("the supervisor scope ended while a child was being restarted")
        abandon(tree, error)
        close_pipes(tree.process)
        release(tree.process)
        for note in getattr(error, "__notes__", ()):
            logger.error("%s", note)

    def _let_go(self, tree: ProcessTree) -> None:
        close_pipes(tree.process)
        release(tree.process)

    def _undo_launch(self, launch: Launch, error: BaseException) -> None:
        """Take apart an incarnation that was not recorded (notes on *error* say what
        failed doing so); it is no longer pending."""
        launch.undo(error)
        with self._lock:
            self._launches.discard(launch)

    def _poke(self, timeout: float = 30.0) -> None:
        """For tests: wake the watcher thread and return once it has run a full pass.

        A test that advances a fake clock pokes to have due restarts happen now.
        """
        with self._lock:
            watcher = self._watcher
        if watcher is None:
            return
        target = watcher.poke()
        with self._lock:
            if not self._changed.wait_for(
                lambda: watcher.served >= target or not watcher.alive, timeout
            ):
                raise TimeoutError("the tether-supervisor thread did not run a pass")


class _WatcherHost:
    """A :class:`Supervisor` as its watcher thread sees it (``_watcher.WatcherHost``)."""

    __slots__ = ("_scope",)

    def __init__(self, scope: Supervisor) -> None:
        self._scope = scope

    @property
    def lock(self) -> threading.Lock:
        return self._scope._lock

    def next_restart_in(self) -> float | None:
        return self._scope._next_restart_in()

    def child_exited(
        self, record: Supervised[Process], process: Process, status: Status | None
    ) -> None:
        self._scope._child_exited(record, process, status)

    def restart_due(self) -> None:
        self._scope._restart_due()

    def notify_changed(self) -> None:
        self._scope._changed.notify_all()

    def watcher_failed(self, error: BaseException) -> None:
        for record in self._scope._records:
            record._unkeep(f"the {THREAD_NAME} thread failed: {error!r}")
        self._scope._changed.notify_all()


def _wait_for_any(processes: list[Process], timeout: float | None) -> None:
    """Block until one of *processes* may have exited, or *timeout* seconds pass."""
    poller = select.poll()
    with contextlib.ExitStack() as leases:
        for process in processes:
            fd = leases.enter_context(ExitFdLease(process)).acquire()
            if fd is None:
                return  # reaped meanwhile
            poller.register(fd, select.POLLIN)
        poller.poll(poll_millis(timeout))

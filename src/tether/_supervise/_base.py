"""The settings and bookkeeping shared by ``Supervisor`` and ``AsyncSupervisor``.

The seven settings of a scope (:class:`ScopeSettings`) are declared, defaulted and
checked here once; the two public constructors take them as ``**settings``, which
``mypy`` still checks name by name and type by type. A scope moves from ``"new"``
through ``"open"`` (inside ``with``) to ``"closed"`` (:data:`ScopeState`), once.

A scope keeps two lists. ``_records`` has one
:class:`~tether._supervise._records.Supervised` per child the caller started, in start
order: that is what ``children``, ``supervised``, ``statuses`` and the waits look at.
``_trees`` has one :class:`~tether._supervise._tree.ProcessTree` per *incarnation*: a
child restarted three times owns four trees, and every one of them is stopped, checked
and closed when the scope ends. Finished trees are closed along the way (on each spawn),
so that the pinned pidfds and cgroups of restarts that came and went do not pile up.

The waits hand each child out once (``wait_any``) or all at once (``wait_all``), and a
child counts as finished when no restart will follow: a plain child when it has been
reaped, a child under a restart policy when its record says ``"exited"`` or
``"failed"``. A given-up child is raised as its ``SupervisedChildFailed`` from the
first wait that finds it; one that no wait raised is reported when the scope ends.
"""

from __future__ import annotations

import contextlib
import errno as errnos
import os
import random as _random
import signal
import time
from collections.abc import Callable
from typing import Generic, Literal, TypeAlias, TypeVar

from typing_extensions import TypedDict, Unpack

from .._core._process import DEFAULT_GRACE
from .._durations import check_duration
from .._errors import StatusUnknownError, SupervisedChildFailed
from .._linux._cgroup import Cgroup, writable_parent
from .._status import Status
from . import _subreaper
from ._records import Supervised, logger
from ._restart import RestartPolicy, RestartTracker
from ._tree import KillMode, ProcessTree

__all__ = ["ScopeSettings", "ScopeState", "SupervisorBase"]

H = TypeVar("H")

ScopeState: TypeAlias = Literal["new", "open", "closed"]
"""Where a scope stands: not entered yet, inside its ``with`` block, or ended (for good)."""


class ScopeSettings(TypedDict, total=False):
    """The settings every supervisor scope takes as keywords; each is optional.

    The public classes' docstrings say what each one means; the defaults live in
    :meth:`SupervisorBase.__init__`, the one place that reads them.
    """

    grace: float
    stop_signal: int
    kill: KillMode
    cgroup_parent: str | os.PathLike[str] | None
    subreaper: bool
    clock: Callable[[], float]
    random: Callable[[], float]


_SETTING_NAMES = frozenset(ScopeSettings.__annotations__)


class SupervisorBase(Generic[H]):
    """Settings and state shared by ``Supervisor`` (*H* is ``Process``) and ``AsyncSupervisor``."""

    def __init__(self, **settings: Unpack[ScopeSettings]) -> None:
        for name in settings:
            if name not in _SETTING_NAMES:
                raise TypeError(
                    f"{type(self).__name__}() got an unexpected keyword argument {name!r}"
                )
        grace = check_duration(settings.get("grace", DEFAULT_GRACE), "grace")
        stop_signal = settings.get("stop_signal", signal.SIGTERM)
        kill = settings.get("kill", "group")
        cgroup_parent = settings.get("cgroup_parent")
        subreaper = settings.get("subreaper", False)
        if isinstance(stop_signal, bool) or not isinstance(stop_signal, int):
            raise TypeError(f"stop_signal must be a signal number (an int), not {stop_signal!r}")
        if not 0 < stop_signal < signal.NSIG:
            raise ValueError(f"stop_signal must be a signal number, not {stop_signal!r}")
        if kill not in ("group", "cgroup", "process", "namespace"):
            raise ValueError(
                f'kill must be "group", "cgroup", "process" or "namespace", not {kill!r}'
            )
        if cgroup_parent is not None and kill != "cgroup":
            raise ValueError('cgroup_parent is only meaningful with kill="cgroup"')
        if subreaper and kill == "namespace":
            raise ValueError(
                'subreaper=True has nothing to adopt with kill="namespace": the init of '
                "each child's namespace adopts and reaps its orphans"
            )
        if subreaper and kill == "process":
            raise ValueError(
                'subreaper=True needs kill="group" or "cgroup": with kill="process" no '
                "orphan can be proven to belong to this scope, so none would ever be reaped"
            )
        self._grace = grace
        self._stop_signal = int(stop_signal)
        self._kill: KillMode = kill
        self._cgroup_parent = None if cgroup_parent is None else os.fspath(cgroup_parent)
        self._subreaper = bool(subreaper)
        self._clock = settings.get("clock", time.monotonic)
        self._random = settings.get("random", _random.random)
        self._state: ScopeState = "new"
        self._records: list[Supervised[H]] = []
        self._trees: list[ProcessTree] = []

    @property
    def grace(self) -> float:
        """Seconds the children get after the stop signal before SIGKILL (a ceiling; ``inf``
        waits as long as it takes)."""
        return self._grace

    @property
    def stop_signal(self) -> int:
        """The signal that asks the children to stop."""
        return self._stop_signal

    @property
    def kill_mode(self) -> KillMode:
        """What a stop reaches: ``"group"``, ``"cgroup"``, ``"process"`` or ``"namespace"``."""
        return self._kill

    @property
    def subreaper(self) -> bool:
        """Whether the scope adopts (and reaps) the orphans of its trees; see ``_subreaper``."""
        return self._subreaper

    @property
    def statuses(self) -> list[Status | None]:
        """Each child's status (its current incarnation's), in start order; None while unreaped."""
        return [record._tree.process.status for record in self._records]

    # --- the scope ----------------------------------------------------------------------

    def _check_new(self) -> None:
        if self._state != "new":
            raise RuntimeError("a supervisor scope can be entered only once")

    def _open(self) -> None:
        self._check_new()
        if self._kill == "cgroup":
            self._cgroup_parent = writable_parent(self._cgroup_parent)
        if self._subreaper:
            _subreaper.claim(self)
        self._state = "open"

    def _unclaim(self) -> None:
        """Let go of the process-wide subreaper flag once the scope is over (a no-op for a
        scope that holds no claim, even one whose claim an interrupt cut short)."""
        if self._subreaper:
            _subreaper.release(self)

    def _check_open(self, what: str) -> None:
        if self._state == "new":
            raise RuntimeError(f"enter the supervisor scope before calling {what}()")
        if self._state != "open":
            raise RuntimeError(f"{what}() on a supervisor whose scope has ended")

    def _tracker(self, policy: RestartPolicy | None) -> RestartTracker | None:
        return None if policy is None else RestartTracker(policy, self._clock, self._random)

    def _release_finished(self) -> list[ProcessTree]:
        """Close the pinned pidfds and cgroups of finished trees, and let go of superseded
        incarnations, so that a child restarted for hours costs nothing that grows.

        An incarnation a restart has replaced is dropped once its tree is finished, its
        pipes closed; only its handle (with its final status) lives on where the caller
        keeps it. The first incarnation stays (its pipes are closed when the scope ends):
        its handle is the one ``spawn()``/``start()`` returned, and its reader may still
        be reading.
        """
        self._reap_adopted()
        keep = {id(record._tree) for record in self._records}
        keep.update(id(record._first) for record in self._records)
        kept: list[ProcessTree] = []
        gone: list[ProcessTree] = []
        for tree in self._trees:
            if not tree.closed:
                with contextlib.suppress(OSError):  # retried, then reported, when the scope ends
                    if tree.finished():
                        tree.close()
            if tree.closed and id(tree) not in keep:
                gone.append(tree)
            else:
                kept.append(tree)
        self._trees[:] = kept
        return gone  # the caller lets go of them (closes pipes) once the scope lock is released

    def _let_go(self, tree: ProcessTree) -> None:
        """Forget a finished incarnation that a restart superseded: close its pipes."""
        raise NotImplementedError

    def _reap_adopted(self) -> None:
        """Reap the exited orphans of our trees that this process adopted (``subreaper=True``)."""
        if not self._subreaper or self._state != "open":
            return
        for pid, status in _subreaper.reap_adopted(self._trees):
            logger.debug("reaped adopted orphan %d: %s", pid, status)

    def _reap_adopted_at_exit(self) -> None:
        if self._subreaper:
            for pid, status in _subreaper.reap_adopted(self._trees):
                logger.debug("reaped adopted orphan %d: %s", pid, status)

    def _new_cgroup(self) -> Cgroup | None:
        if self._kill != "cgroup":
            return None
        assert self._cgroup_parent is not None, "resolved on entering the scope"
        return Cgroup.create(self._cgroup_parent)

    # --- waiting ------------------------------------------------------------------------

    def _next_settled(self) -> Supervised[H] | None:
        """The first child not yet handed out that will not restart; raise it if it failed."""
        for record in self._records:
            if not record._handed_out and _settled(record):
                record._handed_out = True
                failure = record._unseen_failure()
                if failure is not None:
                    raise failure
                return record
        return None

    def _pending(self) -> list[Supervised[H]]:
        pending = [record for record in self._records if not record._handed_out]
        if not pending:
            raise ChildProcessError(errnos.ECHILD, "no supervised child is left to wait for")
        return pending

    def _raise_unseen_failure(self) -> None:
        """Raise the first given-up child that no wait has raised yet."""
        for record in self._records:
            failure = record._unseen_failure()
            if failure is not None:
                raise failure

    def _unsettled(self) -> list[Supervised[H]]:
        return [record for record in self._records if not _settled(record)]

    def _final_statuses(self) -> list[Status]:
        statuses: list[Status] = []
        for record in self._records:
            status = record._tree.process.poll()
            if status is None:  # pragma: no cover - settled children are reaped
                raise StatusUnknownError(record._tree.process.pid, record.args)
            statuses.append(status)
        return statuses

    def _end_restarts(self) -> None:
        """Once nothing can restart any more: the children waiting for a restart stay down."""
        for record in self._records:
            record._scope_ended()

    def _record_final_exits(self) -> None:
        """After the shutdown: the children it stopped have exited for good."""
        for record in self._records:
            status = record._tree.process.status
            if status is not None:
                record._on_exit(status, scope_open=False, clock=self._clock)

    def _unseen_failures(self) -> list[SupervisedChildFailed]:
        return [f for f in (record._unseen_failure() for record in self._records) if f]

    # --- restarts -----------------------------------------------------------------------

    def _due(self) -> list[Supervised[H]]:
        """The children whose restart is due now."""
        now = self._clock()
        return [
            record
            for record in self._records
            if record._state == "restarting" and record._due is not None and record._due <= now
        ]

    def _next_restart_in(self) -> float | None:
        """Seconds until the earliest restart is due (0 if one is overdue); None if none is."""
        due = [r._due for r in self._records if r._state == "restarting" and r._due is not None]
        return None if not due else max(0.0, min(due) - self._clock())

    def __repr__(self) -> str:
        return (
            f"<tether.{type(self).__name__} {self._state} kill={self._kill} "
            f"grace={self._grace:g} children={len(self._records)}>"
        )


def _settled(record: Supervised[H]) -> bool:
    try:
        return record._settled()
    except StatusUnknownError:
        return True

"""The stop policy of a supervisor scope, shared by ``Supervisor`` and ``AsyncSupervisor``.

The stop is done in parallel: the stop signal (then SIGCONT, so that a stopped child
can act on it) goes to every tree at once, all trees share one grace period, which is
a ceiling and not a sleep, and whatever is still alive when it runs out is SIGKILLed
together, with a :class:`KilledAfterGraceWarning`. An interrupt during that wait cuts
it short: everything is killed and reaped, then the interrupt propagates.

The leader's exit is awaited on its pidfd, a cgroup's emptiness on ``cgroup.events``;
the members of process groups, which send no notification, are found for all trees at
once, one look at ``/proc`` per round, and awaited on pidfds (``_census``). Whatever
the waiting concluded, every tree gets a SIGKILL once the grace period is over (a no-op
when it is empty), so a process that slipped past the scan dies anyway.

Failures while stopping are never swallowed (:func:`report`), and neither are the
supervised children that were given up (``_records``) and that no ``wait_any()`` or
``wait_all()`` raised. If the body raised, its exception propagates unchanged, with
each of them attached as a note; otherwise a lone one is raised as it is and several
together in an ``ExceptionGroup``.
"""

from __future__ import annotations

import functools
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence

from .._core._lease import wait_for_exit
from .._core._process import Process
from .._durations import remaining
from .._errors import KilledAfterGraceWarning, StatusUnknownError
from .._status import signal_name
from ._census import POLL_MAX_DELAY, Reap, groups_gone
from ._tree import KILL_PATIENCE, ProcessTree

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "Outcome",
    "abandon",
    "add_note",
    "close_all",
    "confirm_gone",
    "finish",
    "report",
    "shutdown",
    "wait_trees",
]


class Outcome:
    """What a shutdown ran into: failures, trees that needed SIGKILL, an interrupt."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.escalated: list[ProcessTree] = []
        self.interrupted: BaseException | None = None

    def record(self, tree: ProcessTree | None, error: BaseException) -> None:
        """Keep *error*, noting which process it came from (None: orphans or groups)."""
        if tree is None:
            add_note(error, "tether: while reaping adopted orphans or waiting for process groups")
        else:
            add_note(
                error,
                f"tether: while stopping process {tree.process.pid} {list(tree.process.args)}",
            )
        self.errors.append(error)

    def attempt(self, tree: ProcessTree | None, action: Callable[[], object]) -> bool | None:
        """Run *action*; True if it succeeded, False if it failed, None if interrupted."""
        try:
            action()
        except Exception as exc:
            self.record(tree, exc)
            return False
        except BaseException as exc:  # KeyboardInterrupt: remember it, carry on
            self.note_interrupt(exc)
            return None
        return True

    def note_interrupt(self, exc: BaseException) -> None:
        """Keep *exc*, an interrupt: the first is raised once the stop is done."""
        if self.interrupted is None:
            self.interrupted = exc
        else:
            self.errors.append(exc)


def _reap(process: Process) -> None:
    try:
        process.kill()
        process.wait()
    except StatusUnknownError:
        pass


def confirm_gone(tree: ProcessTree, outcome: Outcome) -> None:
    """After SIGKILL: wait for *tree* as a scope's shutdown does (:func:`wait_trees`), and
    record its survivors in *outcome* if it is not gone within :data:`KILL_PATIENCE`
    seconds."""
    if wait_trees([tree], time.monotonic() + KILL_PATIENCE, outcome):
        outcome.attempt(tree, functools.partial(_raise_survivors, tree))


def _raise_survivors(tree: ProcessTree) -> None:
    raise tree.survivors()


def finish(
    tree: ProcessTree, outcome: Outcome, *, confirm: bool = True, close: bool = True
) -> None:
    """SIGKILL and reap the leader (retried if interrupted), check the tree is gone, close it.

    ``close=False`` leaves the closing to the caller, which may first reap the orphans
    of the tree that this process adopted (``_subreaper``): closing lets go of the pinned
    group and the cgroup that prove they belong to the tree.
    """
    if tree.closed:
        return
    while outcome.attempt(tree, functools.partial(_reap, tree.process)) is None:
        pass
    if confirm:
        confirm_gone(tree, outcome)
    if close:
        outcome.attempt(tree, tree.close)


def close_all(
    trees: list[ProcessTree], outcome: Outcome, before: Callable[[], object] | None = None
) -> None:
    """Run *before* (reaping adopted orphans), then close every tree still open."""
    if before is not None:
        outcome.attempt(None, before)
    for tree in trees:
        if not tree.closed:
            outcome.attempt(tree, tree.close)


def abandon(tree: ProcessTree, error: BaseException) -> None:
    """Kill, reap and close a tree the caller will not get; notes on *error* say what failed."""
    outcome = Outcome()
    outcome.attempt(tree, tree.kill)
    finish(tree, outcome)
    for problem in [*outcome.errors, *filter(None, [outcome.interrupted])]:
        add_note(error, _describe(problem))


def wait_trees(
    trees: list[ProcessTree],
    deadline: float,
    outcome: Outcome,
    reap: Reap | None = None,
    hurried: Callable[[], bool] | None = None,
) -> list[ProcessTree]:
    """Reap each leader and wait for the rest of every tree until *deadline*; return the
    trees not gone by then. The process groups are waited for together (``_census``),
    *reap* reaping the adopted orphans at each round. A tree whose wait failed is
    recorded in *outcome* and not returned; an interrupt ends the waiting (it is
    recorded too), and only the trees found not gone until then are returned. Once
    *hurried* says so, the waiting ends too, and every tree not seen gone is returned."""
    not_gone: list[ProcessTree] = []
    groups: list[ProcessTree] = []
    for index, tree in enumerate(trees):
        if _hurried(hurried):
            return not_gone + groups + trees[index:]
        step = functools.partial(_leader_gone, tree, deadline, not_gone, groups, hurried)
        if outcome.attempt(tree, step) is None:
            return not_gone
    left: list[ProcessTree] = []
    if groups:
        outcome.attempt(None, lambda: left.extend(groups_gone(groups, deadline, reap, hurried)))
    return not_gone + left


def _leader_gone(
    tree: ProcessTree,
    deadline: float,
    not_gone: list[ProcessTree],
    groups: list[ProcessTree],
    hurried: Callable[[], bool] | None,
) -> None:
    try:
        exited = _patiently(
            lambda timeout: wait_for_exit(tree.process, timeout) is not None, deadline, hurried
        )
        if not exited:
            not_gone.append(tree)
            return
    except StatusUnknownError:
        pass  # reaped by someone else: its tree still counts
    cgroup, init = tree.cgroup, None if tree.namespace is None else tree.namespace.init
    if init is not None:  # it exits once every other process of its namespace is gone
        if not _patiently(functools.partial(_exited, init), deadline, hurried):
            not_gone.append(tree)
    elif cgroup is not None:
        if not _patiently(cgroup.wait_empty, deadline, hurried):
            not_gone.append(tree)
    else:
        groups.append(tree)


def _exited(process: Process, timeout: float | None) -> bool:
    try:
        return wait_for_exit(process, timeout) is not None
    except StatusUnknownError:
        return True


def shutdown(
    trees: list[ProcessTree],
    grace: float,
    stop_signal: int,
    *,
    outcome: Outcome | None = None,
    before_close: Callable[[], object] | None = None,
    hurried: Callable[[], bool] | None = None,
) -> Outcome:
    """Stop *trees* in parallel: stop signal, one shared grace period, SIGKILL, reap, close.

    An *outcome* that was interrupted already skips the grace period, and so does the
    rest of it once *hurried* says so (it is asked at least every :data:`POLL_MAX_DELAY`
    seconds). *before_close* reaps the orphans adopted: at each round of waiting for the
    process groups, and once every tree is dead and its leader reaped, before the trees
    are closed.
    """
    outcome = Outcome() if outcome is None else outcome
    live = [tree for tree in trees if not tree.closed]
    for tree in live:
        outcome.attempt(tree, functools.partial(tree.stop, stop_signal))
    unsure = live  # the trees that may still have a live process after the SIGKILL
    if outcome.interrupted is None and not _hurried(hurried):  # else kill them all now
        deadline = time.monotonic() + grace
        late = wait_trees(live, deadline, outcome, before_close, hurried)
        if outcome.interrupted is None and not _hurried(hurried):
            outcome.escalated.extend(late)
            unsure = late  # a group seen without a live member gains none: nobody is left to fork
    for tree in live:
        outcome.attempt(tree, tree.kill)  # also where the wait found it gone: catches stragglers
    for tree in live:
        finish(tree, outcome, confirm=False, close=False)
    for tree in wait_trees(unsure, time.monotonic() + KILL_PATIENCE, outcome, before_close):
        outcome.record(tree, tree.survivors())
    close_all(live, outcome, before_close)
    return outcome


def _hurried(hurried: Callable[[], bool] | None) -> bool:
    return hurried is not None and hurried()


def _patiently(
    step: Callable[[float | None], bool], deadline: float, hurried: Callable[[], bool] | None
) -> bool:
    """Call ``step(timeout)`` until it returns True (then True) or *deadline* passes; with
    *hurried*, in slices of :data:`POLL_MAX_DELAY` seconds, and False once it says so."""
    if hurried is None:
        return step(remaining(deadline))
    while True:
        slice_end = min(deadline, time.monotonic() + POLL_MAX_DELAY)
        if step(remaining(slice_end)):
            return True
        if slice_end >= deadline or hurried():
            return False


# --- reporting -------------------------------------------------------------------------


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``, also on Python 3.10 (where the backport prints ``__notes__``)."""
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:  # pragma: no cover
        notes = getattr(exc, "__notes__", None)
        exc.__notes__ = [*(notes or []), note]  # type: ignore[attr-defined, unused-ignore]


def _describe(problem: BaseException, what: str = "stopping the supervised processes") -> str:
    return f"tether: {what} also failed:\n" + "".join(traceback.format_exception(problem)).rstrip(
        "\n"
    )


def report(
    body: BaseException | None,
    outcome: Outcome,
    grace: float,
    stop_signal: int,
    failures: Sequence[BaseException] = (),
) -> None:
    """Warn about escalations and raise (or attach to *body*) what went wrong while stopping.

    *failures* are the supervised children given up (``SupervisedChildFailed``) that no
    ``wait_any()``/``wait_all()`` raised: they are reported along with the rest. A lone
    warning or child failure is raised as it is, several problems in an ``ExceptionGroup``.
    """
    problems = list(outcome.errors)
    if outcome.escalated and outcome.interrupted is None and grace > 0:
        stragglers = ", ".join(
            f"{t.process.pid} {list(t.process.args)!r}" for t in outcome.escalated
        )
        message = (
            f"tether: {len(outcome.escalated)} supervised process tree(s) outlived the "
            f"{grace:g} s grace period after {signal_name(stop_signal)} and were killed "
            f"with SIGKILL: {stragglers}"
        )
        try:
            warnings.warn(KilledAfterGraceWarning(message), stacklevel=3)
        except Warning as warning:  # warnings turned into errors
            problems.append(warning)
    primary = outcome.interrupted if outcome.interrupted is not None else body
    if primary is not None:
        for failure in failures:
            add_note(primary, _describe(failure, "a supervised child"))
        for problem in problems:
            add_note(primary, _describe(problem))
        if outcome.interrupted is not None:
            raise outcome.interrupted
        return
    if not failures and len(problems) == 1 and isinstance(problems[0], Warning):
        raise problems[0]
    if len(failures) == 1 and not problems:
        raise failures[0]
    if failures:
        raise BaseExceptionGroup(
            f"tether: {len(failures)} supervised child(ren) failed"
            + (f" and {len(problems)} failure(s) while stopping" if problems else ""),
            [*failures, *problems],
        )
    if problems:
        raise BaseExceptionGroup(
            f"tether: {len(problems)} failure(s) while stopping supervised processes", problems
        )

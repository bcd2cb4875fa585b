"""``tether.Supervisor``: a scope that no child outlives.

Leaving ``with Supervisor(...) as sup:`` (normally, by an exception, by
``KeyboardInterrupt``) stops every child the scope started and reaps it before
``__exit__`` returns. The stop is done in parallel: the stop signal (then SIGCONT, so
that a stopped child can act on it) goes to every child at once, all children share
one grace period, which is a ceiling and not a sleep, and whatever is still alive
when it runs out is SIGKILLed together, with a :class:`KilledAfterGraceWarning`.
An interrupt during that wait cuts it short: everything is killed and reaped, then
the interrupt propagates.

What "a child" covers is the ``kill`` mode:

* ``"group"`` (default): the child leads a new process group (``process_group=0``,
  or ``start_new_session=True``) and the whole group is signalled, so grandchildren
  that stayed in it are stopped too, even after the child itself has exited.
* ``"cgroup"``: the child and all its descendants, however they fork or ``setsid``,
  through a cgroup v2 of its own (see ``_cgroup``).
* ``"process"``: only the child.

The group outlives its leader, and that is the hazard. A shell that runs
``sleep 60 &`` and exits leaves the sleep in its group after the leader has been
reaped, and from then on the group's *number* may be recycled: ``killpg`` is unsafe.
So right after the spawn the supervisor keeps a ``dup`` of the child's pidfd, which
pins the kernel's ``struct pid``, and signals the group through it with
``PIDFD_SIGNAL_PROCESS_GROUP`` (Linux 6.9): the group is named by that object, not
by a number, and a group with no member left answers ESRCH. Signal 0 therefore
says whether the group has members; but a killed grandchild stays a member as a
zombie until init reaps it, which can take seconds (the init of some VMs reaps
orphans only every two seconds), so once signal 0 finds members the supervisor
looks in ``/proc`` for one that is not a zombie. The leader's exit is awaited on its
pidfd; only the grandchildren, which send no notification, are polled, with a
backoff from 1 ms up to 50 ms. Whatever the polling concluded, the group gets a
SIGKILL through the pinned pidfd once the grace period is over (a no-op when it is
empty), so a process that slipped past the scan dies anyway. On older kernels
(EINVAL) the group is signalled with ``killpg`` while the leader is unreaped and
not at all afterwards: grandchildren may then survive a leader that exits first;
use ``kill="cgroup"`` for those.

Children are spawned with ``pdeathsig=SIGKILL`` unless the caller says otherwise,
so they die with a supervising process that is itself SIGKILLed.

Failures while stopping are never swallowed. If the body raised, its exception
propagates unchanged, with each failure attached as a note; otherwise they are
raised together in an ``ExceptionGroup``.
"""

from __future__ import annotations

import contextlib
import errno as errnos
import functools
import math
import os
import select
import signal as signals
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Literal, TypeAlias

from typing_extensions import Self, Unpack, final

from ._cgroup import Cgroup, writable_parent
from ._errors import StatusUnknownError, TetherError, TimeoutExpired
from ._pidfd import _PIDFD_SIGNAL_PROCESS_GROUP
from ._process import DEFAULT_GRACE, Process, _close_quietly, spawn
from ._spawn import SpawnOptions, StrOrBytesPath
from ._status import Status

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found, unused-ignore]

__all__ = ["KillMode", "KilledAfterGraceWarning", "Supervisor"]

KillMode: TypeAlias = Literal["group", "cgroup", "process"]
"""What a supervisor stops: the child's process group, its cgroup, or the child alone."""

KILL_PATIENCE = 10.0
"""Seconds to wait for a tree to be gone after SIGKILL before reporting survivors."""
_FIRST_DELAY = 0.001
_MAX_DELAY = 0.05
_group_flag_refused = False


class KilledAfterGraceWarning(RuntimeWarning):
    """A supervised child (or its group or cgroup) outlived the grace period and was SIGKILLed."""


# --- one supervised tree ---------------------------------------------------------------


def _signal_pinned_group(group_fd: int, signal: int) -> bool | None:
    """Signal the group whose leader *group_fd* pins, reaped or not (Linux 6.9).

    True if delivered (0 is a probe: the group has members, zombies included),
    False if the group has no member left, None if the kernel lacks the flag.
    """
    global _group_flag_refused
    if _group_flag_refused:
        return None
    try:
        signals.pidfd_send_signal(group_fd, signal, None, _PIDFD_SIGNAL_PROCESS_GROUP)
    except ProcessLookupError:
        return False
    except OSError as exc:
        if exc.errno != errnos.EINVAL:
            raise
        _group_flag_refused = True
        return None
    return True


def _live_member(pgid: int) -> bool:
    """Whether ``/proc`` shows a process in group *pgid* that is not a zombie."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/stat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            stat = os.read(fd, 512)
        except OSError:
            continue
        finally:
            os.close(fd)
        fields = stat[stat.rfind(b")") + 2 :].split(b" ", 3)
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


@final
class ProcessTree:
    """A supervised child plus what its kill mode reaches: its process group or cgroup."""

    __slots__ = ("cgroup", "closed", "group_fd", "mode", "process", "reported")

    def __init__(self, process: Process, mode: KillMode, cgroup: Cgroup | None) -> None:
        self.process = process
        self.mode = mode
        self.cgroup = cgroup
        self.group_fd: int | None = None
        self.reported = False  # handed out by wait_any()
        self.closed = False

    def pin_group(self) -> None:
        """Keep a dup of the leader's pidfd: it names the group even after the leader's reap."""
        pidfd = self.process.pidfd
        if self.mode == "group" and pidfd is not None:
            self.group_fd = os.dup(pidfd)

    def signal(self, signal: int) -> None:
        """Send *signal* to every process of the tree."""
        if self.mode == "group":
            self._signal_group(signal)
        else:
            self.process.send_signal(signal)
        if self.cgroup is not None:
            self.cgroup.signal_members(signal, exclude=self.process.pid)

    def _signal_group(self, signal: int) -> None:
        if self.group_fd is None or _signal_pinned_group(self.group_fd, signal) is None:
            self.process.send_signal(
                signal, group=True
            )  # killpg, only while the leader is unreaped

    def stop(self, signal: int) -> None:
        """Send the stop *signal*, then SIGCONT."""
        self.signal(signal)
        if signal not in (signals.SIGKILL, signals.SIGCONT):
            self.signal(signals.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the whole tree; harmless when it is gone already."""
        if self.cgroup is not None:
            self.cgroup.kill()
        if self.mode == "group":
            self._signal_group(signals.SIGKILL)
        self.process.kill()

    def others_alive(self) -> bool:
        """After the leader's exit: whether any other process of the tree still lives."""
        if self.cgroup is not None:
            return self.cgroup.populated()
        if self.group_fd is None or not _signal_pinned_group(self.group_fd, 0):
            return False  # no member left, or no way to tell
        return _live_member(self.process.pid)  # members may be zombies awaiting init

    def finished(self) -> bool:
        """Reaped, and nothing (not even a zombie) left in its group or cgroup."""
        if self.process.status is None:
            return False
        if self.cgroup is not None:
            return not self.cgroup.populated()
        return self.group_fd is None or not _signal_pinned_group(self.group_fd, 0)

    def survivors(self) -> TetherError:
        """The error for a tree that SIGKILL did not end."""
        return TetherError(
            f"processes of the tree of {self.process.pid} ({list(self.process.args)!r}) "
            f"were still alive {KILL_PATIENCE:g} s after SIGKILL"
        )

    def close(self) -> None:
        """Remove the cgroup and let go of the pinned group; the tree must be gone."""
        if self.cgroup is not None:
            self.cgroup.remove()
        if self.group_fd is not None:
            os.close(self.group_fd)
            self.group_fd = None
        self.closed = True


def prepare_options(mode: KillMode, options: SpawnOptions, cgroup: Cgroup | None) -> SpawnOptions:
    """The spawn options of a supervised child: its own group (or cgroup) and pdeathsig."""
    prepared: SpawnOptions = {**options}
    prepared.setdefault("pdeathsig", signals.SIGKILL)
    if mode != "process" and not prepared.get("start_new_session", False):
        group = prepared.get("process_group")
        if group is None:
            prepared["process_group"] = 0
        elif group != 0 and mode == "group":
            raise ValueError(
                f'kill="group" needs the child to lead its own process group, but '
                f"process_group={group} joins another; pass process_group=0 or "
                'start_new_session=True, or use kill="process"'
            )
    if cgroup is not None:
        if prepared.get("cgroup") is not None:
            raise ValueError('kill="cgroup" puts each child in a cgroup of its own: drop cgroup=')
        prepared["cgroup"] = cgroup.path
    return prepared


# --- the shutdown, sync parts shared with AsyncSupervisor -------------------------------


class Outcome:
    """What a shutdown ran into: failures, trees that needed SIGKILL, an interrupt."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.escalated: list[ProcessTree] = []
        self.interrupted: BaseException | None = None

    def record(self, tree: ProcessTree, error: BaseException) -> None:
        """Keep *error*, noting which process it came from."""
        add_note(
            error, f"tether: while stopping process {tree.process.pid} {list(tree.process.args)}"
        )
        self.errors.append(error)

    def attempt(self, tree: ProcessTree, action: Callable[[], object]) -> bool | None:
        """Run *action*; True if it succeeded, False if it failed, None if interrupted."""
        try:
            action()
        except Exception as exc:
            self.record(tree, exc)
            return False
        except BaseException as exc:  # KeyboardInterrupt: remember it, carry on
            if self.interrupted is None:
                self.interrupted = exc
            else:
                self.errors.append(exc)
            return None
        return True


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def wait_tree(tree: ProcessTree, deadline: float) -> bool:
    """Reap the leader and wait for the rest of its tree until *deadline*; True if all gone."""
    try:
        tree.process.wait(_remaining(deadline))
    except TimeoutExpired:
        return False
    except StatusUnknownError:
        pass  # reaped by someone else: its tree still counts
    if tree.cgroup is not None:
        return tree.cgroup.wait_empty(_remaining(deadline))
    delay = _FIRST_DELAY
    while tree.others_alive():  # grandchildren send no exit notification: poll, bounded
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(2 * delay, _MAX_DELAY)
    return True


def _reap(process: Process) -> None:
    try:
        process.kill()
        process.wait()
    except StatusUnknownError:
        pass


def confirm_gone(tree: ProcessTree) -> None:
    """After SIGKILL: raise if the tree is not gone within :data:`KILL_PATIENCE` seconds."""
    if not wait_tree(tree, time.monotonic() + KILL_PATIENCE):
        raise tree.survivors()


def finish(tree: ProcessTree, outcome: Outcome, *, confirm: bool = True) -> None:
    """SIGKILL and reap the leader (retried if interrupted), check the tree is gone, close it."""
    if tree.closed:
        return
    while outcome.attempt(tree, functools.partial(_reap, tree.process)) is None:
        pass
    if confirm:
        outcome.attempt(tree, functools.partial(confirm_gone, tree))
    outcome.attempt(tree, tree.close)


def abandon(tree: ProcessTree, error: BaseException) -> None:
    """Kill, reap and close a tree the caller will not get; notes on *error* say what failed."""
    outcome = Outcome()
    outcome.attempt(tree, tree.kill)
    finish(tree, outcome)
    for problem in [*outcome.errors, *filter(None, [outcome.interrupted])]:
        add_note(error, _describe(problem))


def shutdown(trees: list[ProcessTree], grace: float, stop_signal: int) -> Outcome:
    """Stop *trees* in parallel: stop signal, one shared grace period, SIGKILL, reap, close."""
    outcome = Outcome()
    live = [tree for tree in trees if not tree.closed]
    for tree in live:
        outcome.attempt(tree, functools.partial(tree.stop, stop_signal))
    deadline = time.monotonic() + grace
    for tree in live:
        if outcome.interrupted is not None:
            break  # no more patience: kill them all now
        outcome.attempt(tree, functools.partial(_escalate_unless_gone, tree, deadline, outcome))
    for tree in live:
        outcome.attempt(tree, tree.kill)  # also where the wait found it gone: catches stragglers
    for tree in live:
        finish(tree, outcome)
    return outcome


def _escalate_unless_gone(tree: ProcessTree, deadline: float, outcome: Outcome) -> None:
    if not wait_tree(tree, deadline):
        outcome.escalated.append(tree)


# --- reporting -------------------------------------------------------------------------


def add_note(exc: BaseException, note: str) -> None:
    """``exc.add_note(note)``, also on Python 3.10 (where the backport prints ``__notes__``)."""
    if sys.version_info >= (3, 11):
        exc.add_note(note)
    else:  # pragma: no cover
        notes = getattr(exc, "__notes__", None)
        exc.__notes__ = [*(notes or []), note]  # type: ignore[attr-defined, unused-ignore]


def _describe(problem: BaseException) -> str:
    return "tether: stopping the supervised processes also failed:\n" + "".join(
        traceback.format_exception(problem)
    ).rstrip("\n")


def _signal_name(signal: int) -> str:
    try:
        return signals.Signals(signal).name
    except ValueError:
        return f"signal {signal}"


def report(body: BaseException | None, outcome: Outcome, grace: float, stop_signal: int) -> None:
    """Warn about escalations and raise (or attach to *body*) what went wrong while stopping."""
    problems = list(outcome.errors)
    if outcome.escalated and outcome.interrupted is None and grace > 0:
        stragglers = ", ".join(
            f"{t.process.pid} {list(t.process.args)!r}" for t in outcome.escalated
        )
        message = (
            f"tether: {len(outcome.escalated)} supervised process tree(s) outlived the "
            f"{grace:g} s grace period after {_signal_name(stop_signal)} and were killed "
            f"with SIGKILL: {stragglers}"
        )
        try:
            warnings.warn(KilledAfterGraceWarning(message), stacklevel=3)
        except Warning as warning:  # warnings turned into errors
            problems.append(warning)
    primary = outcome.interrupted if outcome.interrupted is not None else body
    if primary is not None:
        for problem in problems:
            add_note(primary, _describe(problem))
        if outcome.interrupted is not None:
            raise outcome.interrupted
        return
    if len(problems) == 1 and isinstance(problems[0], Warning):
        raise problems[0]
    if problems:
        raise BaseExceptionGroup(
            f"tether: {len(problems)} failure(s) while stopping supervised processes", problems
        )


# --- the scope -------------------------------------------------------------------------


class SupervisorBase:
    """Settings and state shared by :class:`Supervisor` and ``AsyncSupervisor``."""

    def __init__(
        self,
        *,
        grace: float = DEFAULT_GRACE,
        stop_signal: int = signals.SIGTERM,
        kill: KillMode = "group",
        cgroup_parent: str | os.PathLike[str] | None = None,
    ) -> None:
        if grace < 0:
            raise ValueError(f"grace must not be negative, not {grace}")
        if isinstance(stop_signal, bool) or not 0 < stop_signal < signals.NSIG:
            raise ValueError(f"stop_signal must be a signal number, not {stop_signal!r}")
        if kill not in ("group", "cgroup", "process"):
            raise ValueError(f'kill must be "group", "cgroup" or "process", not {kill!r}')
        if cgroup_parent is not None and kill != "cgroup":
            raise ValueError('cgroup_parent is only meaningful with kill="cgroup"')
        self._grace = float(grace)
        self._stop_signal = int(stop_signal)
        self._kill: KillMode = kill
        self._cgroup_parent = None if cgroup_parent is None else os.fspath(cgroup_parent)
        self._state = "new"
        self._trees: list[ProcessTree] = []

    @property
    def grace(self) -> float:
        """Seconds the children get after the stop signal before SIGKILL (a ceiling)."""
        return self._grace

    @property
    def stop_signal(self) -> int:
        """The signal that asks the children to stop."""
        return self._stop_signal

    @property
    def kill_mode(self) -> KillMode:
        """What a stop reaches: ``"group"``, ``"cgroup"`` or ``"process"``."""
        return self._kill

    @property
    def statuses(self) -> list[Status | None]:
        """Each child's status, in start order; None while it is unreaped."""
        return [tree.process.status for tree in self._trees]

    def _open(self) -> None:
        if self._state != "new":
            raise RuntimeError("a supervisor scope can be entered only once")
        if self._kill == "cgroup":
            self._cgroup_parent = writable_parent(self._cgroup_parent)
        self._state = "open"

    def _check_open(self, what: str) -> None:
        if self._state == "new":
            raise RuntimeError(f"enter the supervisor scope before calling {what}()")
        if self._state != "open":
            raise RuntimeError(f"{what}() on a supervisor whose scope has ended")

    def _release_finished(self) -> None:
        """Close the pinned pidfds and cgroups of finished trees, so that they do not pile up."""
        for tree in self._trees:
            if not tree.closed:
                with contextlib.suppress(OSError):  # retried, then reported, when the scope ends
                    if tree.finished():
                        tree.close()

    def _new_cgroup(self) -> Cgroup | None:
        if self._kill != "cgroup":
            return None
        assert self._cgroup_parent is not None, "resolved on entering the scope"
        return Cgroup.create(self._cgroup_parent)

    def _next_exited(self) -> ProcessTree | None:
        for tree in self._trees:
            if not tree.reported:
                try:
                    exited = tree.process.poll() is not None
                except StatusUnknownError:
                    exited = True
                if exited:
                    tree.reported = True
                    return tree
        return None

    def _pending(self) -> list[ProcessTree]:
        pending = [tree for tree in self._trees if not tree.reported]
        if not pending:
            raise ChildProcessError(errnos.ECHILD, "no supervised child is left to wait for")
        return pending

    def __repr__(self) -> str:
        return (
            f"<tether.{type(self).__name__} {self._state} kill={self._kill} "
            f"grace={self._grace:g} children={len(self._trees)}>"
        )


@final
class Supervisor(SupervisorBase):
    """A ``with`` scope whose children are stopped and reaped when it ends.

    ``Supervisor(grace=5.0, stop_signal=SIGTERM, kill="group", cgroup_parent=None)``.
    On leaving the scope every live child gets *stop_signal* (and SIGCONT) at once;
    whatever outlives the shared *grace* period is SIGKILLed with a
    :class:`KilledAfterGraceWarning`, and everything is reaped before ``__exit__``
    returns. *kill* says what a stop reaches: ``"group"`` (the child's process
    group, the default), ``"cgroup"`` (a cgroup v2 per child, created under
    *cgroup_parent* or our own cgroup; :class:`tether.CgroupError` if that is not
    writable) or ``"process"`` (the child alone). Children get
    ``pdeathsig=SIGKILL`` unless the spawn options say otherwise. Scopes nest; each
    stops its own children. Safe to use from several threads.
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
        self._lock = threading.Lock()

    @property
    def children(self) -> list[Process]:
        """Every child started by this scope, in start order (exited ones included)."""
        with self._lock:
            return [tree.process for tree in self._trees]

    def spawn(self, argv: Iterable[StrOrBytesPath], **options: Unpack[SpawnOptions]) -> Process:
        """Start *argv* as a child of this scope; takes the options of :func:`tether.spawn`.

        In ``"group"`` mode the child leads a new process group; an explicit
        ``process_group`` other than 0 is a ``ValueError``. Raises ``RuntimeError``
        outside the scope.
        """
        with self._lock:
            self._check_open("spawn")
            self._release_finished()
            cgroup = self._new_cgroup()
        try:
            process = spawn(argv, **prepare_options(self._kill, options, cgroup))
        except BaseException:
            if cgroup is not None:
                cgroup.remove()
            raise
        tree = ProcessTree(process, self._kill, cgroup)
        try:
            tree.pin_group()
            with self._lock:
                if self._state == "open":
                    self._trees.append(tree)
                    return process
            raise RuntimeError("the supervisor scope ended while the child was being spawned")
        except BaseException as exc:
            abandon(tree, exc)
            _close_pipes(process)
            raise

    def wait_any(self, timeout: float | None = None) -> Process:
        """Wait until a child exits, reap it and return its handle.

        Each child is handed out once, in the order they exit; one that has already
        exited is returned at once. Raises :class:`tether.TimeoutExpired` after
        *timeout* seconds and ``ChildProcessError`` when every child has been handed out.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                tree = self._next_exited()
                if tree is not None:
                    return tree.process
                pending = [t.process for t in self._pending()]
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                args = pending[0].args if len(pending) == 1 else (f"<any of {len(pending)}>",)
                raise TimeoutExpired(args, timeout or 0.0)
            _wait_for_any(pending, remaining)

    def wait_all(self, timeout: float | None = None) -> list[Status]:
        """Wait for every child to exit and return their statuses, in start order.

        Only the children are awaited, not their groups. Raises
        :class:`tether.TimeoutExpired` after *timeout* seconds, leaving them running.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        return [
            process.wait(None if deadline is None else _remaining(deadline))
            for process in self.children
        ]

    def __enter__(self) -> Self:
        with self._lock:
            self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._lock:
            self._state = "closed"
            trees = list(self._trees)
        outcome = shutdown(trees, self._grace, self._stop_signal)
        for tree in trees:
            _close_pipes(tree.process)
        report(exc, outcome, self._grace, self._stop_signal)


def _close_pipes(process: Process) -> None:
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            _close_quietly(pipe)


def _wait_for_any(processes: list[Process], timeout: float | None) -> None:
    """Block until one of *processes* may have exited, or *timeout* seconds pass."""
    borrowed: list[Process] = []
    poller = select.poll()
    try:
        for process in processes:
            fd = process._borrow_exit_fd()
            if fd is None:
                return  # reaped meanwhile
            borrowed.append(process)
            poller.register(fd, select.POLLIN)
        poller.poll(None if timeout is None else math.ceil(timeout * 1000))
    finally:
        for process in borrowed:
            process._return_exit_fd()

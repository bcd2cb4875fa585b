"""Supervisor: scopes that stop, kill and reap every child and its process group.

Grandchildren are not our children, so the leak guard cannot see them: every test
that starts some pins each one with a pidfd before it can exit and, after the
scope, asserts the pidfd is readable (the process is dead) *at once*, which proves
the scope waited for it. The ``pins`` fixture SIGKILLs whatever a failing test
left alive. Children print "ready" (or their grandchildren's pids) before the test
acts; nothing sleeps to synchronise.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

import pytest

import tether
from tether import KilledAfterGraceWarning, Supervisor
from tether._linux import _pidfd
from tether._supervise import _tree
from tether._supervise._tree import ProcessTree

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup

PY = sys.executable
WAIT_FOR_STDIN = "import sys; print('ready', flush=True); sys.stdin.read()"
IGNORE_TERM = (
    "import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); sys.stdin.read()"
)
SLEEPY_SHELL = "sleep 60 & echo $!; sleep 60 & echo $!; read line"
"""A shell that starts two ``sleep`` grandchildren, prints their pids, and exits on a line."""
STUBBORN_SHELL = "trap '' TERM; " + SLEEPY_SHELL
"""The same with SIGTERM ignored by the shell and (inherited through exec) the sleeps."""
SUPERVISING = """
import sys
from tether import Supervisor
with Supervisor(kill=sys.argv[1]) as sup:
    child = sup.spawn(["sleep", "60"])
    print(child.pid, flush=True)
    sys.stdin.read()
"""
"""A supervising process for the parent-death tests: prints its child's pid, then blocks."""
REAL_PIDFD_OPEN = os.pidfd_open  # the no_pidfd fixture patches os.pidfd_open for tether


class Pins:
    """Pidfds of processes that are not our children, to prove they died."""

    def __init__(self) -> None:
        self.fds: list[int] = []

    def pin(self, pid: int) -> int:
        fd = REAL_PIDFD_OPEN(pid)
        self.fds.append(fd)
        return fd

    def dead(self, timeout: float = 0.0) -> list[bool]:
        """For each pinned process, whether it has exited (within *timeout* seconds)."""
        return [_pidfd.wait_readable(fd, timeout) for fd in self.fds]

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
            os.close(fd)


@pytest.fixture
def pins() -> Iterator[Pins]:
    """Pinned grandchildren; any still alive at teardown is killed."""
    pinned = Pins()
    yield pinned
    pinned.close()


def started(sup: Supervisor, script: str, **options: object) -> tether.Process:
    """Spawn a Python child under *sup* and return once it has printed "ready"."""
    process = sup.spawn([PY, "-c", script], stdin=tether.PIPE, stdout=tether.PIPE, **options)  # type: ignore[arg-type]
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    return process


def shell_with_grandchildren(sup: Supervisor, pins: Pins, script: str) -> tether.Process:
    """Start *script* under *sup*, pin the two grandchildren it reports, let it exit, reap it."""
    process = sup.spawn(["sh", "-c", script], stdin=tether.PIPE, stdout=tether.PIPE)
    assert process.stdout is not None
    assert process.stdin is not None
    for _ in range(2):
        pins.pin(int(process.stdout.readline()))
    process.stdin.write(b"go\n")
    process.stdin.flush()
    assert process.wait(timeout=30) == tether.Exited(0)  # reaped: only the group is left
    assert pins.dead() == [False, False]
    return process


# --- the stop policy -------------------------------------------------------------------


def test_a_child_ignoring_the_stop_signal_is_killed_after_the_grace_with_a_warning() -> None:
    started_at = time.monotonic()
    with (
        pytest.warns(KilledAfterGraceWarning, match="0.5 s grace period after SIGTERM"),
        Supervisor(grace=0.5) as sup,
    ):
        process = started(sup, IGNORE_TERM)
    assert time.monotonic() - started_at >= 0.5
    assert process.status == tether.Signaled(signal.SIGKILL)
    assert str(process.status) == "killed by SIGKILL"
    assert process.stdout is not None
    assert process.stdout.closed


def test_a_child_that_exits_at_once_returns_at_once() -> None:
    started_at = time.monotonic()
    with Supervisor(grace=30) as sup:
        process = started(sup, WAIT_FOR_STDIN)
    assert time.monotonic() - started_at < 10
    assert process.status == tether.Signaled(signal.SIGTERM)


def test_children_are_stopped_in_parallel_with_one_grace_period() -> None:
    with (  # noqa: PT031
        pytest.warns(KilledAfterGraceWarning, match="3 supervised process tree"),
        Supervisor(grace=1) as sup,
    ):
        processes = [started(sup, IGNORE_TERM) for _ in range(3)]
        polite = started(sup, WAIT_FOR_STDIN)
        stopping_at = time.monotonic()
    assert time.monotonic() - stopping_at < 2.5, "the grace period is shared, not per child"
    assert [p.status for p in processes] == [tether.Signaled(signal.SIGKILL)] * 3
    assert polite.status == tether.Signaled(signal.SIGTERM)


def test_a_custom_stop_signal_reaches_a_stopped_child() -> None:
    with Supervisor(grace=30, stop_signal=signal.SIGUSR1) as sup:
        process = started(sup, WAIT_FOR_STDIN)
        process.send_signal(signal.SIGSTOP)
    assert process.status == tether.Signaled(signal.SIGUSR1)


def test_a_zero_grace_kills_without_a_warning() -> None:
    with Supervisor(grace=0) as sup:
        process = started(sup, IGNORE_TERM)
    assert process.status == tether.Signaled(signal.SIGKILL)


def test_warnings_as_errors_raise_the_warning_after_everything_is_reaped() -> None:
    with pytest.raises(KilledAfterGraceWarning), Supervisor(grace=0.1) as sup:
        process = started(sup, IGNORE_TERM)
    assert process.status == tether.Signaled(signal.SIGKILL)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="grace"):
        Supervisor(grace=-1)
    with pytest.raises(ValueError, match="stop_signal"):
        Supervisor(stop_signal=0)
    with pytest.raises(ValueError, match="kill"):
        Supervisor(kill="tree")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cgroup_parent"):
        Supervisor(cgroup_parent="/sys/fs/cgroup")
    sup = Supervisor(grace=2, stop_signal=signal.SIGINT, kill="process")
    assert (sup.grace, sup.stop_signal, sup.kill_mode) == (2.0, signal.SIGINT, "process")
    assert "new" in repr(sup)


# --- process groups --------------------------------------------------------------------


def test_grandchildren_left_by_an_exited_shell_are_stopped(pins: Pins) -> None:
    started_at = time.monotonic()
    with Supervisor(grace=30) as sup:
        shell_with_grandchildren(sup, pins, SLEEPY_SHELL)
    assert pins.dead() == [True, True]
    assert time.monotonic() - started_at < 10, "killed sleeps are not waited for to be reaped"


def test_grandchildren_ignoring_the_stop_signal_are_killed_after_the_leader_is_reaped(
    pins: Pins,
) -> None:
    with pytest.warns(KilledAfterGraceWarning), Supervisor(grace=0.5) as sup:
        shell_with_grandchildren(sup, pins, STUBBORN_SHELL)
    assert pins.dead() == [True, True]


def test_a_running_leader_and_its_group_are_stopped_together(pins: Pins) -> None:
    with Supervisor(grace=30) as sup:
        process = sup.spawn(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=tether.PIPE)
        assert process.stdout is not None
        pins.pin(int(process.stdout.readline()))
    assert pins.dead() == [True]
    assert process.status == tether.Signaled(signal.SIGTERM)


def test_a_new_session_leads_the_group_too(pins: Pins) -> None:
    with Supervisor(grace=30) as sup:
        process = sup.spawn(
            ["sh", "-c", "sleep 60 & echo $!; wait"], stdout=tether.PIPE, start_new_session=True
        )
        assert process.stdout is not None
        pins.pin(int(process.stdout.readline()))
        assert os.getsid(process.pid) == process.pid
    assert pins.dead() == [True]


def test_process_mode_stops_only_the_child(pins: Pins) -> None:
    with Supervisor(grace=30, kill="process") as sup:
        process = sup.spawn(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=tether.PIPE)
        assert process.stdout is not None
        pins.pin(int(process.stdout.readline()))
        assert os.getpgid(process.pid) == os.getpgid(0), "no group of its own"
    assert process.status == tether.Signaled(signal.SIGTERM)
    assert pins.dead() == [False], "the grandchild was not ours to stop"


def test_an_explicit_foreign_process_group_is_refused() -> None:
    with Supervisor() as sup, pytest.raises(ValueError, match="process_group=0"):
        sup.spawn(["true"], process_group=os.getpgid(0))
    assert sup.children == []


def test_spawn_options_are_prepared_for_supervision() -> None:
    group = _tree.prepare_options("group", {}, None)
    assert group == {"pdeathsig": signal.SIGKILL, "process_group": 0}
    session = _tree.prepare_options("group", {"start_new_session": True}, None)
    assert "process_group" not in session
    assert _tree.prepare_options("process", {"pdeathsig": None}, None) == {"pdeathsig": None}
    joined = _tree.prepare_options("cgroup", {"process_group": 1}, None)
    assert joined["process_group"] == 1


def test_no_pidfd_fallback_signals_the_group_while_the_leader_lives(
    no_pidfd: None, pins: Pins
) -> None:
    with pytest.warns(KilledAfterGraceWarning), Supervisor(grace=0.3) as sup:  # noqa: PT031
        process = sup.spawn(
            ["sh", "-c", "trap '' TERM; sleep 60 & echo $!; wait"], stdout=tether.PIPE
        )
        assert process.stdout is not None
        pins.pin(int(process.stdout.readline()))
    # SIGKILL was sent to the group before the scope returned; without a pidfd to pin
    # the group, nothing waits for the grandchild's death, which may take a moment.
    assert pins.dead(timeout=10) == [True]


def test_finished_groups_do_not_pile_up_fds() -> None:
    with Supervisor() as sup:
        sup.spawn(["true"]).wait()
        fds = len(os.listdir("/proc/self/fd"))
        for _ in range(20):
            sup.spawn(["true"]).wait()
        assert len(os.listdir("/proc/self/fd")) <= fds + 1
    assert sup.statuses == [tether.Exited(0)] * 21


# --- leaving the scope -----------------------------------------------------------------


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_an_exception_inside_the_scope_leaves_nothing_behind(
    error: type[BaseException], pins: Pins
) -> None:
    with pytest.raises(error, match="boom"), Supervisor(grace=30) as sup:  # noqa: PT012
        process = started(sup, WAIT_FOR_STDIN)
        shell_with_grandchildren(sup, pins, SLEEPY_SHELL)
        raise error("boom")
    assert process.status == tether.Signaled(signal.SIGTERM)
    assert pins.dead() == [True, True]


def test_an_interrupt_during_the_shutdown_kills_and_reaps_at_once() -> None:
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        started_at = time.monotonic()
        with pytest.raises(KeyboardInterrupt), Supervisor(grace=30) as sup:  # noqa: PT012
            processes = [started(sup, IGNORE_TERM) for _ in range(2)]
            signal.setitimer(signal.ITIMER_REAL, 0.3)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - started_at < 10
    assert [p.status for p in processes] == [tether.Signaled(signal.SIGKILL)] * 2


def test_failures_while_stopping_are_raised_in_an_exception_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(self: ProcessTree, signal: int) -> None:
        raise PermissionError(1, "simulated")

    monkeypatch.setattr(ProcessTree, "stop", refuse)
    with pytest.raises(ExceptionGroup) as caught, Supervisor(grace=0) as sup:
        processes = [started(sup, WAIT_FOR_STDIN) for _ in range(2)]
    assert [type(e) for e in caught.value.exceptions] == [PermissionError] * 2
    assert "while stopping process" in caught.value.exceptions[0].__notes__[0]
    assert [p.status for p in processes] == [tether.Signaled(signal.SIGKILL)] * 2


def test_failures_while_stopping_are_attached_to_the_body_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(self: ProcessTree) -> None:
        raise OSError(5, "simulated kill failure")

    monkeypatch.setattr(ProcessTree, "kill", refuse)
    with pytest.raises(ValueError, match="body") as caught, Supervisor(grace=30) as sup:  # noqa: PT012
        process = started(sup, WAIT_FOR_STDIN)
        raise ValueError("body")
    assert any("simulated kill failure" in note for note in caught.value.__notes__)
    assert process.status == tether.Signaled(signal.SIGTERM)


# --- children, waiting, nesting --------------------------------------------------------


def test_wait_any_hands_out_each_child_once_in_exit_order() -> None:
    with Supervisor() as sup:
        first, second = (started(sup, WAIT_FOR_STDIN) for _ in range(2))
        with pytest.raises(tether.TimeoutExpired):
            sup.wait_any(timeout=0.05)
        assert second.stdin is not None
        second.stdin.close()
        assert sup.wait_any(timeout=30) is second
        assert second.status == tether.Exited(0)
        first.kill()
        assert sup.wait_any() is first
        with pytest.raises(ChildProcessError):
            sup.wait_any()
        assert sup.children == [first, second]
        assert sup.statuses == [tether.Signaled(signal.SIGKILL), tether.Exited(0)]


def test_wait_all_returns_the_statuses_in_start_order() -> None:
    with Supervisor() as sup:
        sup.spawn(["sh", "-c", "exit 3"])
        sup.spawn(["true"])
        assert sup.wait_all(timeout=30) == [tether.Exited(3), tether.Exited(0)]
        running = started(sup, WAIT_FOR_STDIN)
        with pytest.raises(tether.TimeoutExpired):
            sup.wait_all(timeout=0.05)
        assert running.poll() is None


def test_scopes_nest_and_each_stops_its_own_children() -> None:
    with Supervisor() as outer:
        kept = started(outer, WAIT_FOR_STDIN)
        with Supervisor() as inner:
            dropped = started(inner, WAIT_FOR_STDIN)
        assert dropped.status == tether.Signaled(signal.SIGTERM)
        assert kept.poll() is None
    assert kept.status == tether.Signaled(signal.SIGTERM)


def test_a_supervisor_outside_its_scope_refuses_to_spawn() -> None:
    sup = Supervisor()
    with pytest.raises(RuntimeError, match="enter"):
        sup.spawn(["true"])
    with sup:
        sup.spawn(["true"]).wait()
    with pytest.raises(RuntimeError, match="ended"):
        sup.spawn(["true"])
    with pytest.raises(RuntimeError, match="once"), sup:
        pass
    assert sup.wait_all() == [tether.Exited(0)]


def test_spawning_from_another_thread() -> None:
    with Supervisor() as sup:
        spawned: list[tether.Process] = []
        thread = threading.Thread(target=lambda: spawned.append(sup.spawn(["true"])))
        thread.start()
        thread.join()
        assert spawned[0].wait() == tether.Exited(0)


# --- parent death ----------------------------------------------------------------------


def test_children_die_with_a_sigkilled_supervising_process(pins: Pins) -> None:
    with tether.spawn(
        [PY, "-c", SUPERVISING, "group"], stdin=tether.PIPE, stdout=tether.PIPE
    ) as supervising:
        assert supervising.stdout is not None
        pins.pin(int(supervising.stdout.readline()))
        supervising.kill()
        assert supervising.wait() == tether.Signaled(signal.SIGKILL)
    assert pins.dead(timeout=30) == [True]


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"grace": math.nan}, ValueError),
        ({"grace": -1}, ValueError),
        ({"grace": "5"}, TypeError),
        ({"grace": True}, TypeError),
        ({"stop_signal": 15.5}, TypeError),
        ({"stop_signal": True}, TypeError),
        ({"stop_signal": 0}, ValueError),
        ({"kill": "tree"}, ValueError),
        ({"gracee": 1}, TypeError),
    ],
)
@pytest.mark.parametrize("scope", [Supervisor, tether.AsyncSupervisor])
def test_bad_scope_settings_are_refused(
    scope: type[Supervisor] | type[tether.AsyncSupervisor],
    settings: dict[str, object],
    error: type[Exception],
) -> None:
    with pytest.raises(error):
        scope(**settings)  # type: ignore[arg-type]


def test_infinite_grace_is_a_ceiling_not_a_kill() -> None:
    with Supervisor(grace=math.inf) as sup:
        process = sup.spawn(["sleep", "60"])
    assert process.status == tether.Signaled(signal.SIGTERM)

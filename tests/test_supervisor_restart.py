"""Keep-alive: ``sup.spawn(..., restart=...)`` and ``await sup.start(..., restart=...)``.

Restart schedules are asserted on a fake clock, never by sleeping. The supervisor reads
the time from ``clock=``; the test waits (on the supervisor's condition variable, or
its async change event) until the child is ``"restarting"``, checks when the restart is
due, advances the clock and pokes the watcher (``_poke``), which returns once the
watcher has looked at the clock again and restarted what was due. Poking *without*
advancing the clock proves that nothing restarts early.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import tether
from tests.test_supervisor import Pins, pins
from tether import (
    AsyncSupervisor,
    Backoff,
    RestartPolicy,
    Supervised,
    SupervisedChildFailed,
    Supervisor,
)

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup

__all__ = ["pins"]  # the fixture, imported for use here

FAIL = ["sh", "-c", "exit 1"]
NO_JITTER = Backoff(jitter=0)
THREE_TRIES = RestartPolicy(mode="on-failure", backoff=NO_JITTER, max_restarts=3)


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def until(sup: Supervisor, predicate: Callable[[], bool]) -> None:
    """Wait (on the supervisor's condition, no sleeping) until *predicate* holds.

    The predicate runs under the supervisor's lock: it must not call ``sup.supervised``.
    """
    with sup._changed:
        assert sup._changed.wait_for(predicate, 30), "timed out"


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "tether.supervisor" and r.levelno == level
    ]


# --- the sync supervisor ---------------------------------------------------------------


def test_a_failing_child_is_restarted_with_a_growing_backoff_then_given_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tether.supervisor")
    clock = FakeClock()
    with Supervisor(clock=clock) as sup:
        first = sup.spawn(FAIL, restart=THREE_TRIES)
        (record,) = sup.supervised
        delays = []
        for restarts in range(3):
            until(sup, lambda: record.state == "restarting")
            assert record.next_restart is not None
            delays.append(record.next_restart - clock.now)
            sup._poke()
            assert record.restarts == restarts, "nothing restarts before the delay"
            clock.advance(delays[-1])
            sup._poke()
            assert record.restarts == restarts + 1
        until(sup, lambda: record.failed)
        with pytest.raises(SupervisedChildFailed) as caught:
            sup.wait_all(timeout=30)
        assert sup.wait_all(timeout=30) == [tether.Exited(1)], "raised once, then a status"
    assert delays == pytest.approx([0.1, 0.2, 0.4])
    failure = caught.value
    assert isinstance(failure, tether.TetherError)
    assert (failure.status, failure.restarts, failure.argv) == (tether.Exited(1), 3, tuple(FAIL))
    assert failure.reason == "exited with status 1: 3 restarts within 60s: giving up"
    assert record.error is failure
    assert first.status == tether.Exited(1)
    assert sup.children == [record.process] != [first]
    assert record.process.pid != first.pid
    info = messages(caplog, logging.INFO)
    restarting = [m for m in info if "restarting in" in m]
    assert restarting[0] == (
        f"supervised child {FAIL!r} (pid {first.pid}) exited with status 1: "
        "restarting in 0.1s (restart 1 of 3 within 60s)"
    )
    assert [m.split(": ", 1)[1] for m in restarting] == [
        f"restarting in {d}s (restart {n} of 3 within 60s)"
        for n, d in [(1, "0.1"), (2, "0.2"), (3, "0.4")]
    ]
    assert sum("restarted as pid" in m for m in info) == 3
    assert messages(caplog, logging.ERROR) == [
        f"supervised child {FAIL!r} (pid {record.process.pid}) given up: {failure.reason}"
    ]


def test_always_restarts_a_child_that_succeeded() -> None:
    clock = FakeClock()
    with Supervisor(clock=clock) as sup:
        sup.spawn(["true"], restart="always", backoff=NO_JITTER)
        (record,) = sup.supervised
        until(sup, lambda: record.state == "restarting")
        assert record.process.status == tether.Exited(0)
        assert record.next_restart == clock.now + 0.1
        clock.advance(0.1)
        sup._poke()
        assert record.restarts == 1
        until(sup, lambda: record.state == "restarting")
    assert record.state == "exited", "the restart that was due later never happens"
    assert record.restarts == 1


def test_on_failure_does_not_restart_a_success(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tether.supervisor")
    with Supervisor() as sup:
        process = sup.spawn(["true"], restart="on-failure")
        assert sup.wait_any(timeout=30) is process
        (record,) = sup.supervised
        assert (record.state, record.restarts, record.failed) == ("exited", 0, False)
        assert sup.wait_all(timeout=30) == [tether.Exited(0)]
    assert messages(caplog, logging.INFO) == [
        f"supervised child ['true'] (pid {process.pid}) exited with status 0: "
        "not restarting (restart='on-failure')"
    ]


def test_restarts_happen_on_the_real_clock_too() -> None:
    policy = RestartPolicy(
        mode="on-failure", backoff=Backoff(initial=0.01, jitter=0), max_restarts=3
    )
    started = time.monotonic()
    with Supervisor() as sup:
        sup.spawn(FAIL, restart=policy)
        with pytest.raises(SupervisedChildFailed, match="3 restarts"):
            sup.wait_all(timeout=30)
    assert time.monotonic() - started >= 0.07, "0.01 + 0.02 + 0.04 s of backoff"
    assert sup.supervised[0].restarts == 3


def test_the_end_of_the_scope_stops_restarts() -> None:
    with Supervisor(grace=30) as sup:
        waiting = sup.spawn(FAIL, restart="always", backoff=60)
        running = sup.spawn(["sleep", "60"], restart="always", backoff=0)
        record = sup.supervised[0]
        until(sup, lambda: record.state == "restarting")
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 10
    assert [r.restarts for r in sup.supervised] == [0, 0]
    assert [r.state for r in sup.supervised] == ["exited", "exited"]
    assert sup.children == [waiting, running]
    assert running.status == tether.Signaled(signal.SIGTERM), "stopped, not restarted"


def test_a_given_up_child_nobody_waited_for_is_raised_when_the_scope_ends() -> None:
    never = RestartPolicy(mode="on-failure", max_restarts=0)
    with pytest.raises(SupervisedChildFailed, match="no restarts allowed"), Supervisor() as sup:  # noqa: PT012
        sup.spawn(FAIL, restart=never)
        record = sup.supervised[0]
        until(sup, lambda: record.failed)
    with pytest.raises(ValueError, match="body") as caught, Supervisor() as sup:  # noqa: PT012
        sup.spawn(FAIL, restart=never)
        record = sup.supervised[0]
        until(sup, lambda: record.failed)
        raise ValueError("body")
    assert any("a supervised child also failed" in note for note in caught.value.__notes__)


def test_wait_any_hands_out_plain_and_kept_children_when_they_finish() -> None:
    clock = FakeClock()
    never = RestartPolicy(mode="on-failure", max_restarts=0)
    with Supervisor(clock=clock) as sup:
        plain = sup.spawn(["sh", "-c", "exit 3"])
        assert sup.wait_any(timeout=30) is plain  # no watcher yet: polled
        kept = sup.spawn(["true"], restart="on-failure")
        doomed = sup.spawn(FAIL, restart=never)
        late = sup.spawn(["sh", "-c", "exit 4"])  # watched by the thread now
        finished: set[tether.Process] = set()
        raised = 0
        while len(finished) < 2 or not raised:
            try:
                finished.add(sup.wait_any(timeout=30))
            except SupervisedChildFailed as failure:
                raised += failure.argv == tuple(FAIL)
        assert finished == {kept, late}
        with pytest.raises(ChildProcessError):
            sup.wait_any(timeout=30)
        assert sup.statuses == [
            tether.Exited(3),
            tether.Exited(0),
            tether.Exited(1),
            tether.Exited(4),
        ]
        assert doomed.status == tether.Exited(1)


def test_each_incarnation_has_its_own_pipes() -> None:
    clock = FakeClock()
    with Supervisor(clock=clock) as sup:
        first = sup.spawn(["sh", "-c", "echo $$; exit 1"], restart="on-failure", stdout=tether.PIPE)
        (record,) = sup.supervised
        assert first.stdout is not None
        assert int(first.stdout.readline()) == first.pid
        until(sup, lambda: record.state == "restarting")
        clock.advance(1)
        sup._poke()
        second = record.process
        assert second is not first
        assert second.stdout is not None
        assert int(second.stdout.readline()) == second.pid
    assert first.stdout.closed
    assert second.stdout.closed


def test_what_is_left_of_an_exited_incarnation_is_stopped_before_the_restart(
    pins: Pins,
) -> None:
    clock = FakeClock()
    with Supervisor(clock=clock, grace=30) as sup:
        leader = sup.spawn(
            ["sh", "-c", "sleep 60 & echo $!; exit 1"], restart="on-failure", stdout=tether.PIPE
        )
        assert leader.stdout is not None
        pins.pin(int(leader.stdout.readline()))
        record = sup.supervised[0]
        until(sup, lambda: record.state == "restarting")
        assert pins.dead(timeout=30) == [True], "the stop signal went to the old group"


def test_a_restart_that_cannot_be_spawned_gives_the_child_up(tmp_path: Path) -> None:
    program = tmp_path / "program"
    program.write_text("#!/bin/sh\nexit 1\n")
    program.chmod(0o755)
    clock = FakeClock()
    with Supervisor(clock=clock) as sup:
        sup.spawn([str(program)], restart="on-failure")
        (record,) = sup.supervised
        until(sup, lambda: record.state == "restarting")
        program.unlink()
        clock.advance(1)
        sup._poke()
        assert record.failed
        with pytest.raises(SupervisedChildFailed, match="restart 1 failed to spawn") as caught:
            sup.wait_all(timeout=30)
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_restart_options_are_checked() -> None:
    with Supervisor() as sup:
        with pytest.raises(ValueError, match="unknown restart mode"):
            sup.spawn(["true"], restart="sometimes")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="backoff= needs a restart policy"):
            sup.spawn(["true"], backoff=1.0)
        assert sup.children == []
        plain = sup.spawn(["true"], restart="never")
        assert sup.supervised[0].policy.mode == "never"
        assert sup._watcher is None, "no thread for a child that is never restarted"
        plain.wait()
    assert "restart='never'" in repr(sup.supervised[0])


def test_the_watcher_thread_is_one_per_scope_and_ends_with_it() -> None:
    clock = FakeClock()
    with Supervisor(clock=clock) as sup:
        for _ in range(3):
            sup.spawn(["sleep", "60"], restart="always")
        names = [t.name for t in threading.enumerate()]
        assert names.count("tether-supervisor") == 1
        fds = len(os.listdir("/proc/self/fd"))
    assert len(os.listdir("/proc/self/fd")) < fds
    assert "tether-supervisor" not in [t.name for t in threading.enumerate()]


# --- the async supervisor --------------------------------------------------------------


async def until_async(sup: AsyncSupervisor, predicate: Callable[[], bool]) -> None:
    with anyio.fail_after(30):
        while not predicate():
            changed = sup._keepers._changed
            assert changed is not None
            await changed.wait()


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_async_restarts_follow_the_backoff_then_give_up(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tether.supervisor")
    clock = FakeClock()
    with pytest.raises(ExceptionGroup) as caught:  # noqa: PT012
        async with (
            anyio.create_task_group() as tg,
            AsyncSupervisor(task_group=tg, clock=clock) as sup,
        ):
            first = await sup.start(FAIL, restart=THREE_TRIES)
            record: Supervised[tether.AsyncProcess] = sup.supervised[0]
            delays = []
            for restarts in range(3):
                await until_async(sup, lambda: record.state == "restarting")
                assert record.next_restart is not None
                delays.append(record.next_restart - clock.now)
                await sup._poke()
                assert record.restarts == restarts
                clock.advance(delays[-1])
                await sup._poke()
                assert record.restarts == restarts + 1
            await until_async(sup, lambda: record.failed)
    assert delays == pytest.approx([0.1, 0.2, 0.4])
    assert caught.group_contains(SupervisedChildFailed, match="3 restarts within 60s")
    assert first.status == tether.Exited(1)
    assert sup.children[0] is record.process is not first
    assert len(messages(caplog, logging.ERROR)) == 1


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_async_scope_end_stops_restarts(anyio_backend: str) -> None:
    clock = FakeClock()
    with anyio.CancelScope() as outer:
        async with (
            anyio.create_task_group() as tg,
            AsyncSupervisor(task_group=tg, clock=clock, grace=30) as sup,
        ):
            await sup.start(["true"], restart="always", backoff=NO_JITTER)
            running = await sup.start(["sleep", "60"], restart="always", backoff=0)
            record = sup.supervised[0]
            await until_async(sup, lambda: record.state == "restarting")
            clock.advance(0.1)
            await sup._poke()
            assert record.restarts == 1
            await until_async(sup, lambda: record.state == "restarting")
            outer.cancel()
            await anyio.sleep_forever()
    assert outer.cancelled_caught
    assert [r.restarts for r in sup.supervised] == [1, 0]
    assert [r.state for r in sup.supervised] == ["exited", "exited"]
    assert running.status == tether.Signaled(signal.SIGTERM)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_async_waits_see_settled_and_failed_children(anyio_backend: str) -> None:
    never = RestartPolicy(mode="on-failure", max_restarts=0)
    async with anyio.create_task_group() as tg, AsyncSupervisor(task_group=tg) as sup:
        kept = await sup.start(["true"], restart="on-failure")
        plain = await sup.start(["sh", "-c", "exit 3"])
        assert {await sup.wait_any(), await sup.wait_any()} == {kept, plain}
        await sup.start(FAIL, restart=never)
        with pytest.raises(SupervisedChildFailed):
            await sup.wait_all()
        assert await sup.wait_all() == [tether.Exited(0), tether.Exited(3), tether.Exited(1)]


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_async_restart_needs_a_task_group(anyio_backend: str) -> None:
    async with AsyncSupervisor() as sup:
        with pytest.raises(ValueError, match="task_group=tg"):
            await sup.start(["true"], restart="always")
        assert sup.children == []


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_async_a_failure_nobody_waited_for_is_raised_at_the_end(anyio_backend: str) -> None:
    never = RestartPolicy(mode="on-failure", max_restarts=0)
    with pytest.raises(ExceptionGroup) as caught:  # noqa: PT012
        async with anyio.create_task_group() as tg, AsyncSupervisor(task_group=tg) as sup:
            await sup.start(FAIL, restart=never)
            await until_async(sup, lambda: sup.supervised[0].failed)
    assert caught.group_contains(SupervisedChildFailed, match="no restarts allowed")


def test_restarts_without_pidfds(no_pidfd: None) -> None:
    policy = RestartPolicy(mode="on-failure", backoff=Backoff(initial=0, jitter=0), max_restarts=2)
    with Supervisor() as sup:
        plain = sup.spawn(["sh", "-c", "exit 3"])
        first = sup.spawn(FAIL, restart=policy)
        assert first.pidfd is None
        with pytest.raises(SupervisedChildFailed, match="2 restarts"):
            sup.wait_all(timeout=30)
        assert sup.wait_all(timeout=30) == [tether.Exited(3), tether.Exited(1)]
        assert plain.status == tether.Exited(3)
    assert sup.supervised[1].restarts == 2


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_async_a_cancelled_keeper_leaves_a_plain_child(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with AsyncSupervisor(grace=30) as sup:
        async with anyio.create_task_group() as tg:
            sup._task_group = tg  # a task group that ends before the scope does
            kept = await sup.start(
                ["sh", "-c", "cat >/dev/null"], restart="always", stdin=tether.PIPE
            )
            tg.cancel_scope.cancel()
        (record,) = sup.supervised
        assert record.state == "running"
        assert "no longer kept alive" in caplog.text
        assert kept.stdin is not None
        await kept.stdin.aclose()
        assert await sup.wait_all() == [tether.Exited(0)]
        assert record.restarts == 0


CRASH_LOOP = RestartPolicy(mode="always", backoff=NO_JITTER, max_restarts=1000, window=3600)


def test_a_crash_looping_child_costs_nothing_that_grows() -> None:
    """Each superseded incarnation lets go of its pipes, its tree and its record."""
    clock = FakeClock()
    with Supervisor(clock=clock) as sup:
        sup.spawn(["sh", "-c", "echo $$"], restart=CRASH_LOOP, stdout=tether.PIPE)
        (record,) = sup.supervised
        counts = []
        for restarts in range(40):
            until(sup, lambda: record.state == "restarting")
            clock.advance(60)
            sup._poke()
            until(sup, lambda: record.restarts == restarts + 1)  # noqa: B023
            if restarts in (9, 39):
                counts.append((len(os.listdir("/proc/self/fd")), len(sup._trees)))
    (fds_then, trees_then), (fds_now, trees_now) = counts
    assert trees_now == trees_then, "the trees of superseded incarnations piled up"
    # the current incarnation may hold its pidfd or not, at the moment of counting;
    # keeping every incarnation's pipes would add 60 fds over these 30 restarts
    assert fds_now - fds_then <= 2, "the fds of superseded incarnations piled up"


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_an_async_crash_looping_child_costs_nothing_that_grows(anyio_backend: str) -> None:
    clock = FakeClock()
    async with (
        anyio.create_task_group() as tg,
        AsyncSupervisor(task_group=tg, clock=clock) as sup,
    ):
        await sup.start(["sh", "-c", "echo $$"], restart=CRASH_LOOP, stdout=tether.PIPE)
        record = sup.supervised[0]
        counts = []
        for restarts in range(40):
            await until_async(sup, lambda: record.state == "restarting")
            clock.advance(60)
            await sup._poke()
            await until_async(sup, lambda: record.restarts == restarts + 1)  # noqa: B023
            if restarts in (9, 39):
                counts.append(
                    (len(os.listdir("/proc/self/fd")), len(sup._trees), len(sup._handles))
                )
    (fds_then, *kept_then), (fds_now, *kept_now) = counts
    assert kept_now == kept_then, "the trees or handles of superseded incarnations piled up"
    assert fds_now - fds_then <= 2, "the fds of superseded incarnations piled up"

"""The keeper tasks of an ``AsyncSupervisor`` (``_keepers.Keepers``) against a fake host.

The keepers talk to their scope only through the ``KeeperHost`` contract, so a fake
host stands in for the ``AsyncSupervisor`` here: it records every call, answers each
exit with the delay the test chose (or None: the child stays down), and starts the
next incarnation itself. Time is a fake clock that the test advances and then pokes
(``Keepers.poke``), except in the one test of a real timed wait; the tests wait on
the keepers' change notifications (``until_change``), never by sleeping. Every test
runs on asyncio and on trio (the ``anyio_backend`` fixture of ``conftest``).
"""

from __future__ import annotations

import functools
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
import pytest

import tether
from tether import AsyncProcess, Status
from tether._supervise._keepers import Keepers

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup

pytestmark = pytest.mark.anyio

WAIT = 30.0
"""Seconds a handshake may take before the test fails (a bound, never a sleep)."""


@dataclass
class Record:
    """A child as its keeper sees it (``Kept``): the current incarnation, and the rest."""

    process: AsyncProcess
    incarnations: list[AsyncProcess] = field(default_factory=list)


class FakeHost:
    """A ``KeeperHost`` that records its calls.

    ``delays`` answer the exits in turn: seconds until the restart is due on the host's
    clock, or None (the child stays down, as it also does once they run out).
    ``next_argv`` is what :meth:`relaunch` starts; ``crash`` is raised by
    :meth:`child_exited`.
    """

    def __init__(
        self,
        delays: tuple[float | None, ...] = (),
        *,
        clock: Callable[[], float] | None = None,
        crash: BaseException | None = None,
    ) -> None:
        self.open = True
        self.now = 1000.0
        self._clock = clock
        self.delays = list(delays)
        self.crash = crash
        self.next_argv = ["sh", "-c", "exit 4"]
        self.exits: list[tuple[Record, Status | None]] = []
        self.exited_at: list[float] = []  # on the host's clock
        self.relaunched: list[tuple[Record, float]] = []  # and when (on the host's clock)
        self.ended: list[Record] = []

    @property
    def scope_open(self) -> bool:
        return self.open

    def clock(self) -> float:
        return self.now if self._clock is None else self._clock()

    def child_exited(self, record: Record, status: Status | None) -> float | None:
        self.exits.append((record, status))
        self.exited_at.append(self.clock())
        if self.crash is not None:
            raise self.crash
        delay = self.delays.pop(0) if self.delays else None
        return None if delay is None else self.clock() + delay

    async def relaunch(self, record: Record) -> None:
        record.incarnations.append(record.process)
        record.process = await tether.open_process(self.next_argv)
        self.relaunched.append((record, self.clock()))

    def keeper_ended(self, record: Record) -> None:
        self.ended.append(record)


async def until(keepers: Keepers[Record], predicate: Callable[[], object]) -> None:
    """Wait for the keepers' change notifications until *predicate* holds."""
    with anyio.fail_after(WAIT):
        while not predicate():
            await keepers.until_change([], kept=True)


async def record_of(argv: list[str]) -> Record:
    return Record(await tether.open_process(argv))


# --- exits and restarts ----------------------------------------------------------------


async def test_an_exit_reaches_child_exited_and_a_child_that_stays_down_ends_its_keeper() -> None:
    host = FakeHost()
    keepers = Keepers(host)
    keepers.open()
    record = await record_of(["sh", "-c", "exit 3"])
    async with anyio.create_task_group() as tg:
        keepers.start(tg, record)
        await until(keepers, lambda: host.ended)
        await keepers.stop()  # nothing left to cancel
    assert host.exits == [(record, tether.Exited(3))]
    assert host.relaunched == []
    assert host.ended == [record], "told when the keeper ends, whatever the reason"


async def test_a_restart_waits_on_the_hosts_clock_until_it_is_due() -> None:
    host = FakeHost(delays=(5.0,))
    keepers = Keepers(host)
    keepers.open()
    record = await record_of(["sh", "-c", "exit 3"])
    async with anyio.create_task_group() as tg:
        keepers.start(tg, record)
        await until(keepers, lambda: host.exits)
        await keepers.poke()  # the keeper looks at the clock: not due yet
        assert host.relaunched == []
        host.now += 4.5
        await keepers.poke()
        assert host.relaunched == []
        host.now += 0.5
        await keepers.poke()  # returns once the keeper has done what was due
        assert host.relaunched == [(record, 1005.0)]
        await until(keepers, lambda: host.ended)
    first, second = [*record.incarnations, record.process]
    assert host.exits == [(record, tether.Exited(3)), (record, tether.Exited(4))]
    assert first.status == tether.Exited(3)
    assert second.status == tether.Exited(4), "the keeper awaited the new incarnation"


async def test_with_the_real_clock_the_restart_is_a_timed_wait() -> None:
    host = FakeHost(delays=(0.2,), clock=time.monotonic)
    keepers = Keepers(host)
    keepers.open()
    record = await record_of(["sh", "-c", "exit 3"])
    async with anyio.create_task_group() as tg:
        keepers.start(tg, record)
        await until(keepers, lambda: host.ended)  # no poke: the keeper's own timed wait
    ((_, restarted_at),) = host.relaunched
    assert restarted_at - host.exited_at[0] >= 0.2
    assert [status for _, status in host.exits] == [tether.Exited(3), tether.Exited(4)]


async def test_until_change_wakes_on_a_plain_exit_or_on_a_keepers_change() -> None:
    keepers = Keepers(FakeHost())
    keepers.open()
    plain = await tether.open_process(["sh", "-c", "exit 7"])
    with anyio.fail_after(WAIT):
        await keepers.until_change([plain], kept=False)
    assert plain.poll() == tether.Exited(7)
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(keepers.until_change, [], kept=True))
        await anyio.wait_all_tasks_blocked()
        keepers.notify()  # the task ends, or the group would wait for ever


# --- the scope, cancellation and failures ----------------------------------------------


async def test_stop_cancels_a_waiting_keeper_and_tells_the_host() -> None:
    host = FakeHost(delays=(1.0,))
    keepers = Keepers(host)
    keepers.open()
    record = await record_of(["sleep", "60"])
    try:
        async with anyio.create_task_group() as tg:
            keepers.start(tg, record)
            await anyio.wait_all_tasks_blocked()  # the keeper awaits the exit
            await keepers.stop()
        assert host.exits == []
        assert host.ended == [record]
    finally:
        record.process.kill()
        assert await record.process.wait() == tether.Signaled(signal.SIGKILL)


async def test_stop_before_a_keeper_has_run_keeps_nothing() -> None:
    host = FakeHost(delays=(1.0,))
    keepers = Keepers(host)
    keepers.open()
    record = await record_of(["sleep", "60"])
    try:
        async with anyio.create_task_group() as tg:
            keepers.start(tg, record)
            await keepers.stop()  # the scope is still open for the host
        assert host.exits == []
        assert host.ended == [record]
    finally:
        record.process.kill()
        assert await record.process.wait() == tether.Signaled(signal.SIGKILL)


async def test_a_keeper_started_after_the_scope_closed_does_nothing() -> None:
    host = FakeHost(delays=(1.0,))
    host.open = False
    keepers = Keepers(host)
    keepers.open()
    record = await record_of(["sh", "-c", "exit 3"])
    async with anyio.create_task_group() as tg:
        keepers.start(tg, record)
    await keepers.stop()
    assert await record.process.wait() == tether.Exited(3)
    assert (host.exits, host.relaunched, host.ended) == ([], [], [])


async def test_a_crash_in_the_host_fails_the_keeper_and_tells_the_host() -> None:
    crash = RuntimeError("the host broke")
    host = FakeHost(crash=crash)
    keepers = Keepers(host)
    keepers.open()
    record = await record_of(["sh", "-c", "exit 3"])
    with pytest.raises(ExceptionGroup) as caught:
        async with anyio.create_task_group() as tg:
            keepers.start(tg, record)
    assert caught.value.exceptions == (crash,)
    assert host.exits == [(record, tether.Exited(3))]
    assert host.ended == [record], "so the child is not thought kept alive any more"
    await keepers.stop()  # every keeper has finished: returns at once

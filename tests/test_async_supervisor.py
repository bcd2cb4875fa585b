"""AsyncSupervisor: the supervisor scope on asyncio and trio.

Every test runs on both event loops (the ``anyio_backend`` fixture). As in
``test_supervisor``, grandchildren are pinned with pidfds before they can exit and
must be dead as soon as the scope returns; children print "ready" (or pids) before
the test acts.
"""

from __future__ import annotations

import signal
import sys
import time

import anyio
import anyio.lowlevel
import pytest

import tether
from tests.test_supervisor import (
    IGNORE_TERM,
    PY,
    SLEEPY_SHELL,
    STUBBORN_SHELL,
    WAIT_FOR_STDIN,
    Pins,
    pins,
)
from tether import AsyncProcess, AsyncSupervisor, KilledAfterGraceWarning
from tether._supervise._tree import ProcessTree

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup

pytestmark = pytest.mark.anyio

__all__ = ["pins"]  # the fixture, imported for use here


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Each event loop in turn."""
    return str(request.param)


async def read_line(process: AsyncProcess) -> bytes:
    """Read the child's stdout up to and including the first newline."""
    assert process.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        line += await process.stdout.receive(1)
    return line


async def started(sup: AsyncSupervisor, script: str) -> AsyncProcess:
    """Start a Python child under *sup* and return once it has printed "ready"."""
    process = await sup.start([PY, "-c", script], stdin=tether.PIPE, stdout=tether.PIPE)
    assert await read_line(process) == b"ready\n"
    return process


async def shell_with_grandchildren(sup: AsyncSupervisor, pins: Pins, script: str) -> None:
    """Start *script*, pin the two grandchildren it reports, let it exit and reap it."""
    process = await sup.start(["sh", "-c", script], stdin=tether.PIPE, stdout=tether.PIPE)
    for _ in range(2):
        pins.pin(int(await read_line(process)))
    assert process.stdin is not None
    await process.stdin.send(b"go\n")
    assert await process.wait() == tether.Exited(0)
    assert pins.dead() == [False, False]


# --- the stop policy -------------------------------------------------------------------


async def test_a_child_ignoring_the_stop_signal_is_killed_after_the_grace_with_a_warning() -> None:
    started_at = time.monotonic()
    with pytest.warns(KilledAfterGraceWarning, match="after SIGTERM"):  # noqa: PT031
        async with AsyncSupervisor(grace=0.5) as sup:
            process = await started(sup, IGNORE_TERM)
            polite = await started(sup, WAIT_FOR_STDIN)
    assert time.monotonic() - started_at >= 0.5
    assert process.status == tether.Signaled(signal.SIGKILL)
    assert polite.status == tether.Signaled(signal.SIGTERM)


async def test_a_child_that_exits_at_once_returns_at_once() -> None:
    started_at = time.monotonic()
    async with AsyncSupervisor(grace=30) as sup:
        process = await started(sup, WAIT_FOR_STDIN)
    assert time.monotonic() - started_at < 10
    assert process.status == tether.Signaled(signal.SIGTERM)
    with pytest.raises(anyio.ClosedResourceError):
        await read_line(process)


async def test_children_are_stopped_in_parallel() -> None:
    with pytest.warns(KilledAfterGraceWarning, match="3 supervised"):  # noqa: PT031
        async with AsyncSupervisor(grace=1) as sup:
            processes = [await started(sup, IGNORE_TERM) for _ in range(3)]
            stopping_at = time.monotonic()
    assert time.monotonic() - stopping_at < 2.5, "the grace period is shared, not per child"
    assert [p.status for p in processes] == [tether.Signaled(signal.SIGKILL)] * 3


async def test_grandchildren_left_by_an_exited_shell_are_stopped(pins: Pins) -> None:
    started_at = time.monotonic()
    async with AsyncSupervisor(grace=30) as sup:
        await shell_with_grandchildren(sup, pins, SLEEPY_SHELL)
    assert pins.dead() == [True, True]
    assert time.monotonic() - started_at < 10


async def test_grandchildren_ignoring_the_stop_signal_are_killed(pins: Pins) -> None:
    with pytest.warns(KilledAfterGraceWarning):
        async with AsyncSupervisor(grace=0.5) as sup:
            await shell_with_grandchildren(sup, pins, STUBBORN_SHELL)
    assert pins.dead() == [True, True]


# --- leaving the scope -----------------------------------------------------------------


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
async def test_an_exception_inside_the_scope_leaves_nothing_behind(
    error: type[BaseException], pins: Pins
) -> None:
    with pytest.raises(error, match="boom"):  # noqa: PT012
        async with AsyncSupervisor(grace=30) as sup:
            process = await started(sup, WAIT_FOR_STDIN)
            await shell_with_grandchildren(sup, pins, SLEEPY_SHELL)
            raise error("boom")
    assert process.status == tether.Signaled(signal.SIGTERM)
    assert pins.dead() == [True, True]


async def test_a_cancellation_inside_the_scope_leaves_nothing_behind(pins: Pins) -> None:
    with anyio.CancelScope() as scope:
        async with AsyncSupervisor(grace=30) as sup:
            process = await started(sup, WAIT_FOR_STDIN)
            await shell_with_grandchildren(sup, pins, SLEEPY_SHELL)
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert process.status == tether.Signaled(signal.SIGTERM)
    assert pins.dead() == [True, True]


async def test_a_timeout_with_a_stubborn_child_still_waits_out_the_grace() -> None:
    with pytest.warns(KilledAfterGraceWarning):  # noqa: PT031
        with anyio.CancelScope() as scope:
            async with AsyncSupervisor(grace=0.3) as sup:
                process = await started(sup, IGNORE_TERM)
                scope.deadline = anyio.current_time() + 0.2  # from readiness: load-proof
                await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert process.status == tether.Signaled(signal.SIGKILL)


async def test_a_failing_sibling_task_stops_the_scope_inside_a_task_group(pins: Pins) -> None:
    ready = anyio.Event()

    async def fail_when_ready() -> None:
        await ready.wait()
        raise ValueError("sibling")

    with pytest.raises(ExceptionGroup) as caught:  # noqa: PT012
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(fail_when_ready)
            async with AsyncSupervisor(grace=30) as sup:
                process = await started(sup, WAIT_FOR_STDIN)
                await shell_with_grandchildren(sup, pins, SLEEPY_SHELL)
                ready.set()
                await anyio.sleep_forever()
    assert caught.group_contains(ValueError, match="sibling")
    assert process.status == tether.Signaled(signal.SIGTERM)
    assert pins.dead() == [True, True]


class Interrupt(BaseException):
    """Stands for what a shield cannot hold off: ^C on trio, a native Task.cancel on asyncio.

    (A task raising a real KeyboardInterrupt would also escape asyncio's event loop.)
    """


async def test_an_interrupt_during_the_shutdown_kills_and_reaps_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def interrupted(self: AsyncSupervisor, tree: ProcessTree) -> None:
        if tree is self._trees[0]:
            await anyio.lowlevel.checkpoint()
            raise Interrupt
        await anyio.sleep_forever()  # the other stop is under way when the interrupt comes

    monkeypatch.setattr(AsyncSupervisor, "_wait_leader", interrupted)
    with pytest.raises(Interrupt):  # noqa: PT012
        async with AsyncSupervisor(grace=30) as sup:
            processes = [await started(sup, IGNORE_TERM) for _ in range(2)]
            stopping_at = time.monotonic()
    assert time.monotonic() - stopping_at < 10
    assert [p.status for p in processes] == [tether.Signaled(signal.SIGKILL)] * 2


async def test_a_start_under_a_cancelled_scope_starts_nothing() -> None:
    async with AsyncSupervisor() as sup:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await sup.start(["true"])
            pytest.fail("start() returned under a cancelled scope")
        assert scope.cancelled_caught
        assert sup.children == []


async def test_failures_while_stopping_are_raised_in_an_exception_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(self: ProcessTree, signal: int) -> None:
        raise PermissionError(1, "simulated")

    monkeypatch.setattr(ProcessTree, "stop", refuse)
    with pytest.raises(ExceptionGroup) as caught:
        async with AsyncSupervisor(grace=0) as sup:
            process = await started(sup, WAIT_FOR_STDIN)
    assert [type(e) for e in caught.value.exceptions] == [PermissionError]
    assert process.status == tether.Signaled(signal.SIGKILL)


async def test_failures_while_stopping_are_attached_to_the_body_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(self: ProcessTree) -> None:
        raise OSError(5, "simulated kill failure")

    monkeypatch.setattr(ProcessTree, "kill", refuse)
    with pytest.raises(ValueError, match="body") as caught:  # noqa: PT012
        async with AsyncSupervisor(grace=30) as sup:
            process = await started(sup, WAIT_FOR_STDIN)
            raise ValueError("body")
    assert any("simulated kill failure" in note for note in caught.value.__notes__)
    assert process.status == tether.Signaled(signal.SIGTERM)


async def test_failures_while_stopping_are_raised_even_under_cancellation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(self: ProcessTree) -> None:
        raise OSError(5, "simulated kill failure")

    monkeypatch.setattr(ProcessTree, "kill", refuse)
    with pytest.raises(ExceptionGroup) as caught, anyio.CancelScope() as scope:  # noqa: PT012
        async with AsyncSupervisor(grace=30) as sup:
            process = await started(sup, WAIT_FOR_STDIN)
            scope.cancel()
            await anyio.sleep_forever()
    assert [str(e) for e in caught.value.exceptions] == ["[Errno 5] simulated kill failure"]
    assert process.status == tether.Signaled(signal.SIGTERM)


# --- children, waiting, nesting --------------------------------------------------------


async def test_wait_any_hands_out_each_child_once_in_exit_order() -> None:
    async with AsyncSupervisor() as sup:
        first = await started(sup, WAIT_FOR_STDIN)
        second = await started(sup, WAIT_FOR_STDIN)
        with anyio.move_on_after(0.05) as scope:
            await sup.wait_any()
        assert scope.cancelled_caught
        assert second.stdin is not None
        await second.stdin.aclose()
        assert await sup.wait_any() is second
        first.kill()
        assert await sup.wait_any() is first
        with pytest.raises(ChildProcessError):
            await sup.wait_any()
        assert sup.children == [first, second]
        assert sup.statuses == [tether.Signaled(signal.SIGKILL), tether.Exited(0)]


async def test_wait_all_returns_the_statuses_in_start_order() -> None:
    async with AsyncSupervisor() as sup:
        await sup.start(["sh", "-c", "exit 3"])
        await sup.start(["true"])
        assert await sup.wait_all() == [tether.Exited(3), tether.Exited(0)]


async def test_scopes_nest_and_each_stops_its_own_children() -> None:
    async with AsyncSupervisor() as outer:
        kept = await started(outer, WAIT_FOR_STDIN)
        async with AsyncSupervisor() as inner:
            dropped = await started(inner, WAIT_FOR_STDIN)
        assert dropped.status == tether.Signaled(signal.SIGTERM)
        assert kept.poll() is None
    assert kept.status == tether.Signaled(signal.SIGTERM)


async def test_a_supervisor_outside_its_scope_refuses_to_start() -> None:
    sup = AsyncSupervisor()
    with pytest.raises(RuntimeError, match="enter"):
        await sup.start(["true"])
    async with sup:
        await (await sup.start(["true"])).wait()
    with pytest.raises(RuntimeError, match="ended"):
        await sup.start(["true"])
    with pytest.raises(RuntimeError, match="once"):
        async with sup:
            pass
    assert "closed" in repr(sup)


async def test_an_explicit_foreign_process_group_is_refused() -> None:
    async with AsyncSupervisor() as sup:
        with pytest.raises(ValueError, match="process_group=0"):
            await sup.start(["true"], process_group=1)
        assert sup.children == []

"""Interrupts are inputs: an exception raised by a signal handler never loses a child.

Each attempt arms a one-shot SIGALRM at a random moment within the time a spawn takes;
its handler raises while tether code is on the stack (so the test's own bookkeeping is
never hit). Over hundreds of attempts the interrupt lands at every step of a spawn, one
interrupt per attempt, as a Ctrl-C would. The autouse leak guard then proves that no
child, zombie, thread or fd was left behind: every child was either handed back in a
handle or killed and reaped before the exception propagated.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType

import pytest

import tether
from tests.spawn_paths import python_posix_spawn
from tether._core._reaper import REAPER

PY = sys.executable
IGNORE_TERM = (
    "import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); sys.stdin.read()"
)
TETHER_DIR = os.path.dirname(tether.__file__) + os.sep
TESTS_DIR = os.path.dirname(__file__) + os.sep
LOOP_SECONDS = 1.5
MAX_ROUNDS = 400
WINDOW = 0.003
"""Seconds within which each attempt's interrupt lands: about what a spawn takes here."""


class Interrupted(Exception):
    """What the storm raises."""


def _in_tether(frame: FrameType | None) -> bool:
    """Whether the interrupted code is tether's own, where its bookkeeping lives.

    Not stdlib code it calls: a Python callback run from C (an ``os.register_at_fork``
    handler, a ``__del__``) cannot propagate an exception, and CPython's own locks are
    not safe against one. Not inside a ``__del__`` of tether's either, for that reason.
    """
    if frame is None or not frame.f_code.co_filename.startswith(TETHER_DIR):
        return False
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return False
        frame = frame.f_back
    return True


def _is_coroutine(frame: FrameType | None) -> bool:
    return frame is not None and bool(frame.f_code.co_flags & inspect.CO_COROUTINE)


def _is_loop_callback(frame: FrameType | None) -> bool:
    """Whether *frame* is a function asyncio's loop called back (``Handle._run``), such as
    the pidfd reader of ``_aio._readable``: an exception there goes to the loop's exception
    handler, not to any caller, as in a coroutine frame."""
    caller = None if frame is None else frame.f_back
    return (
        caller is not None
        and caller.f_code.co_name == "_run"
        and caller.f_code.co_filename.endswith(os.path.join("asyncio", "events.py"))
    )


def _start_tethers_threads() -> None:
    """Start the spawner and reaper threads before the storm.

    An interrupt inside ``threading.Thread.start`` itself leaves CPython's own thread
    bookkeeping confused (``KeyError`` in ``_limbo``), whoever started the thread.
    """
    with pytest.MonkeyPatch.context() as patch:
        python_posix_spawn(patch)  # os.posix_spawn runs on the spawner thread
        tether.spawn(["true"], backend="posix_spawn").wait()
    handed_over = tether.spawn(["sh", "-c", "read line"], stdin=tether.PIPE)
    handed_over.detach()  # the reaper thread
    assert handed_over.stdin is not None
    handed_over.stdin.close()  # EOF: the child exits and the reaper reaps it
    assert REAPER.wait_idle(timeout=30)


@contextlib.contextmanager
def interrupts(*, in_coroutines: bool = True) -> Iterator[None]:
    """Make SIGALRM raise :class:`Interrupted` while tether code runs.

    ``in_coroutines=False`` spares the frames of tether's coroutines, where an exception
    between two awaits could land inside anyio's own bookkeeping (a task group being
    entered, a coroutine made and not yet awaited), which no library can make safe: there
    the frameworks deliver Ctrl-C themselves, as a cancellation (asyncio) or at a
    checkpoint (trio). It spares tether's event-loop callbacks too, whose exceptions the
    loop reports rather than raises (a reader that raised runs again at the next loop
    iteration, the fd still readable). What creates children and fds is synchronous
    code, still covered.
    """
    _start_tethers_threads()

    def handler(signum: int, frame: FrameType | None) -> None:
        if _in_tether(frame) and (
            in_coroutines or not (_is_coroutine(frame) or _is_loop_callback(frame))
        ):
            raise Interrupted

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _storm_loop(attempt: Callable[[], object]) -> tuple[list[object], int]:
    """Call *attempt* again and again, each time with one interrupt at a random moment
    within :data:`WINDOW` seconds; return what succeeded and how many were interrupted."""
    done: list[object] = []
    interrupted = 0
    deadline = time.monotonic() + LOOP_SECONDS
    chance = random.Random(0x7E7)
    with interrupts():
        for _ in range(MAX_ROUNDS):
            if time.monotonic() > deadline:
                break
            signal.setitimer(signal.ITIMER_REAL, chance.uniform(0.000_01, WINDOW))
            try:
                done.append(attempt())
            except Interrupted:
                interrupted += 1
            signal.setitimer(signal.ITIMER_REAL, 0)
    return done, interrupted


@pytest.mark.parametrize("backend", ["native", "posix_spawn", "fork"])
def test_spawn_interrupted_anywhere_loses_no_child(backend: str) -> None:
    done, interrupted = _storm_loop(lambda: tether.spawn(["true"], backend=backend))
    assert interrupted > 0, "the storm never hit a spawn: the test proves nothing"
    for process in done:
        assert isinstance(process, tether.Process)
        assert process.wait() == tether.Exited(0)


@pytest.mark.parametrize("backend", ["native", "posix_spawn", "fork"])
def test_run_interrupted_anywhere_loses_no_child(backend: str) -> None:
    done, interrupted = _storm_loop(lambda: tether.run(["true"], backend=backend))
    assert interrupted > 0
    assert all(completed.status == tether.Exited(0) for completed in done)  # type: ignore[attr-defined]


def test_a_supervisor_body_interrupted_while_spawning_leaves_nothing_running() -> None:
    started: list[tether.Process] = []
    with tether.Supervisor(grace=5) as sup:
        done, interrupted = _storm_loop(lambda: sup.spawn(["sleep", "60"]))
        started.extend(done)  # type: ignore[arg-type]
    assert interrupted > 0
    assert all(process.status == tether.Signaled(signal.SIGTERM) for process in started)


def test_the_spawner_thread_undoes_a_spawn_its_caller_abandoned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """os.posix_spawn (no extension) from the main thread runs on the spawner thread; a
    caller interrupted while it waits leaves the job, and the thread kills and reaps the
    child."""
    python_posix_spawn(monkeypatch)
    done, interrupted = _storm_loop(lambda: tether.spawn(["sleep", "60"], backend="posix_spawn"))
    assert interrupted > 0
    for process in done:
        assert isinstance(process, tether.Process)
        process.kill()
        process.wait()


STORM_PERIOD = 0.001
"""Seconds between the interrupts of a storm: a raising handler every millisecond."""
SLOW_TO_STOP = "trap 'sleep 0.02; exit 0' TERM; echo ready; while :; do sleep 1 & wait $!; done"
"""A child that takes a little while to stop (20 ms), so that a storm lands in the stop."""


@pytest.mark.parametrize("kill", ["group", "process"])
def test_a_scope_ending_in_a_storm_of_interrupts_leaves_nothing(kill: str) -> None:
    """Interrupts every millisecond while the scope stops its children: each lands
    somewhere in ``__exit__``, and none leaves a child running or unreaped."""
    scopes_interrupted = 0
    with interrupts():
        for _ in range(20):
            started: list[tether.Process] = []
            try:
                with tether.Supervisor(grace=5, kill=kill) as sup:  # type: ignore[arg-type]
                    for _ in range(3):
                        child = sup.spawn(["sh", "-c", SLOW_TO_STOP], stdout=tether.PIPE)
                        started.append(child)
                        assert child.stdout is not None
                        assert child.stdout.readline() == b"ready\n"  # its trap is set
                    signal.setitimer(signal.ITIMER_REAL, STORM_PERIOD, STORM_PERIOD)
            except Interrupted:
                scopes_interrupted += 1
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            for process in started:
                assert process.status is not None, f"{process.pid} left unreaped"
                assert process.status.returncode in (0, -signal.SIGKILL)  # its trap, or killed
    assert scopes_interrupted > 0, "the storm never hit a scope's end: the test proves nothing"


def test_an_interrupt_during_the_grace_period_kills_at_once() -> None:
    """A scope waiting for a child that ignores its stop signal gives up the grace period
    when interrupted: everything is killed and reaped, then the interrupt propagates."""
    interrupted = False
    with interrupts():
        try:
            with tether.Supervisor(grace=3600) as sup:
                stubborn = sup.spawn([PY, "-c", IGNORE_TERM], stdin=tether.PIPE, stdout=tether.PIPE)
                assert stubborn.stdout is not None
                assert stubborn.stdout.readline() == b"ready\n"
                signal.setitimer(signal.ITIMER_REAL, 0.05, STORM_PERIOD)
        except Interrupted:
            interrupted = True
    signal.setitimer(signal.ITIMER_REAL, 0)
    assert interrupted
    assert stubborn.status == tether.Signaled(signal.SIGKILL)


def test_handlers_outside_a_scope_end_are_called_as_before() -> None:
    """Inside a scope's body the program's handlers run unchanged, and the scope's end puts
    them back as they were."""
    calls: list[int] = []

    def count(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)

    previous = signal.signal(signal.SIGUSR1, count)
    interrupt_handler = signal.getsignal(signal.SIGINT)  # SIG_IGN in a backgrounded job
    try:
        with tether.Supervisor() as sup:
            assert signal.getsignal(signal.SIGUSR1) is not count  # behind the shield
            signal.raise_signal(signal.SIGUSR1)
            assert calls == [signal.SIGUSR1]
            sup.spawn(["true"]).wait()
        assert signal.getsignal(signal.SIGUSR1) is count
        assert signal.getsignal(signal.SIGINT) is interrupt_handler
    finally:
        signal.signal(signal.SIGUSR1, previous)


# --- the async entry points ------------------------------------------------------------


async def _async_storm(attempt: Callable[[], Awaitable[object]]) -> tuple[list[object], int]:
    """:func:`_storm_loop` inside one event loop: one interrupt per awaited attempt."""
    done: list[object] = []
    interrupted = 0
    deadline = time.monotonic() + LOOP_SECONDS
    chance = random.Random(0xA5)
    for _ in range(MAX_ROUNDS):
        if time.monotonic() > deadline:
            break
        signal.setitimer(signal.ITIMER_REAL, chance.uniform(0.000_01, WINDOW))
        try:
            done.append(await attempt())
        except Interrupted:
            interrupted += 1
        signal.setitimer(signal.ITIMER_REAL, 0)
    return done, interrupted


@pytest.mark.anyio
async def test_open_process_interrupted_anywhere_loses_no_child(anyio_backend: str) -> None:
    with interrupts(in_coroutines=False):
        done, interrupted = await _async_storm(lambda: tether.open_process(["true"]))
    assert interrupted > 0
    for process in done:
        assert isinstance(process, tether.AsyncProcess)
        assert await process.wait() == tether.Exited(0)


@pytest.mark.anyio
async def test_run_process_interrupted_anywhere_loses_no_child(anyio_backend: str) -> None:
    with interrupts(in_coroutines=False):
        done, interrupted = await _async_storm(lambda: tether.run_process(["true"]))
    assert interrupted > 0
    assert all(completed.status == tether.Exited(0) for completed in done)  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_async_supervisor_start_interrupted_anywhere_loses_no_child(
    anyio_backend: str,
) -> None:
    started: list[object] = []
    with interrupts(in_coroutines=False):
        async with tether.AsyncSupervisor(grace=5) as sup:
            done, interrupted = await _async_storm(lambda: sup.start(["sleep", "60"]))
            started.extend(done)
    assert interrupted > 0
    for process in started:
        assert isinstance(process, tether.AsyncProcess)
        assert process.status == tether.Signaled(signal.SIGTERM)

"""The ``tether-supervisor`` thread (``_watcher.Watcher``) against a fake ``WatcherHost``.

The watcher talks to its scope only through the ``WatcherHost`` contract, so here a
fake host stands in for the ``Supervisor``: it records every call, answers the
timeouts a test gives it, and notifies a condition variable at the end of each pass,
which is what the tests wait on (no sleeping). The children are real, and the exit
tests run with pidfds and on the no-pidfd fallback (``pidfd_mode``); the leak guard
checks that every watcher lets go of its thread and fds.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

import tether
from tether import Process, Status
from tether._core._lease import ExitFdLease
from tether._supervise._watcher import THREAD_NAME, Watcher

WAIT = 30.0
"""Seconds a handshake may take before the test fails (a bound, never a sleep)."""

READ_THEN_EXIT_3 = ["sh", "-c", "read line; exit 3"]


@dataclass
class Record:
    """A child as the watcher sees it (``Watched``): its current incarnation."""

    process: Process


class FakeHost:
    """A ``WatcherHost`` that records its calls; ``timeouts`` are its first answers to
    ``next_restart_in`` (then None), ``crash`` is raised by ``restart_due``."""

    def __init__(self, timeouts: tuple[float | None, ...] = (), crash: bool = False) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.timeouts = list(timeouts)
        self.crash = RuntimeError("the host broke") if crash else None
        self.asked = 0
        self.exits: list[tuple[Record, Process, Status | None]] = []
        self.restarts_due: list[float] = []  # when restart_due was called (monotonic)
        self.passes = 0
        self.failures: list[BaseException] = []

    def next_restart_in(self) -> float | None:
        assert self.lock.locked(), "called with the lock held"
        self.asked += 1
        return self.timeouts.pop(0) if self.timeouts else None

    def child_exited(self, record: Record, process: Process, status: Status | None) -> None:
        with self.lock:  # without the lock held by the thread: this would deadlock
            self.exits.append((record, process, status))

    def restart_due(self) -> None:
        with self.lock:
            self.restarts_due.append(time.monotonic())
        if self.crash is not None:
            raise self.crash

    def notify_changed(self) -> None:
        self.passes += 1
        self.changed.notify_all()  # a RuntimeError unless the lock is held

    def watcher_failed(self, error: BaseException) -> None:
        self.failures.append(error)
        self.changed.notify_all()

    def until(self, predicate: Callable[[], object]) -> None:
        """Wait on the host's condition until *predicate* holds."""
        with self.changed:
            assert self.changed.wait_for(predicate, WAIT), "timed out"


@pytest.fixture
def host() -> FakeHost:
    return FakeHost()


@pytest.fixture
def watcher(host: FakeHost) -> Iterator[Watcher[Record]]:
    watcher = Watcher(host)
    try:
        yield watcher
    finally:
        watcher.stop()


def watch(host: FakeHost, watcher: Watcher[Record], process: Process) -> Record:
    record = Record(process)
    with host.lock:
        watcher.watch(record)
    return record


def let_exit(process: Process) -> None:
    """Let a ``READ_THEN_EXIT_3`` child go on to its exit."""
    assert process.stdin is not None
    process.stdin.write(b"go\n")
    process.stdin.close()


# --- exits -----------------------------------------------------------------------------


@pytest.mark.usefixtures("pidfd_mode")
def test_an_exit_reaches_child_exited_with_its_status(
    host: FakeHost, watcher: Watcher[Record]
) -> None:
    with (
        tether.spawn(READ_THEN_EXIT_3, stdin=tether.PIPE) as first,
        tether.spawn(READ_THEN_EXIT_3, stdin=tether.PIPE) as second,
    ):
        one, two = watch(host, watcher, first), watch(host, watcher, second)
        let_exit(second)
        host.until(lambda: len(host.exits) == 1)
        assert host.exits == [(two, second, tether.Exited(3))]
        assert second.status == tether.Exited(3), "reaped by the watcher"
        assert first.poll() is None
        let_exit(first)
        host.until(lambda: len(host.exits) == 2)
        assert host.exits[1] == (one, first, tether.Exited(3))


@pytest.mark.usefixtures("pidfd_mode")
def test_a_child_reaped_before_it_is_watched_is_reported_at_once(
    host: FakeHost, watcher: Watcher[Record]
) -> None:
    with tether.spawn(["sh", "-c", "exit 5"]) as process:
        assert process.wait() == tether.Exited(5)
        record = watch(host, watcher, process)
        host.until(lambda: len(host.exits) == 1)
    assert host.exits == [(record, process, tether.Exited(5))]


def test_each_pass_asks_for_due_restarts_and_ends_under_the_hosts_lock(
    host: FakeHost, watcher: Watcher[Record]
) -> None:
    with tether.spawn(READ_THEN_EXIT_3, stdin=tether.PIPE) as process:
        watch(host, watcher, process)
        let_exit(process)
        host.until(lambda: host.exits and host.passes >= 1)
    assert host.restarts_due, "each pass ends by asking for the restarts that are due"
    assert not host.failures


# --- timeouts and passes ---------------------------------------------------------------


def test_a_due_restart_is_asked_for_once_the_timeout_the_host_gave_is_over() -> None:
    host = FakeHost(timeouts=(0.2,))
    started = time.monotonic()
    watcher = Watcher(host)
    try:
        host.until(lambda: host.passes == 1)
        assert len(host.restarts_due) == 1
        assert host.restarts_due[0] - started >= 0.2, "not before the timeout"
        assert host.asked == 2, "then the thread asks again (None: wait for a wake-up)"
    finally:
        watcher.stop()


def test_a_timeout_longer_than_epoll_can_wait_is_cut_not_fatal() -> None:
    host = FakeHost(timeouts=(1e12,))  # about 31700 years
    watcher = Watcher(host)
    try:
        target = watcher.poke()
        host.until(lambda: watcher.served >= target or not watcher.alive)
        assert watcher.alive
        assert not watcher.crashed
        assert not host.failures
    finally:
        watcher.stop()


def test_wake_runs_a_pass(host: FakeHost, watcher: Watcher[Record]) -> None:
    host.until(lambda: host.asked == 1)  # the thread is waiting, no timeout
    assert host.passes == 0
    watcher.wake()
    host.until(lambda: host.passes == 1)
    assert len(host.restarts_due) == 1
    assert host.exits == []


def test_poke_returns_the_pass_to_wait_for(host: FakeHost, watcher: Watcher[Record]) -> None:
    for _ in range(3):
        target = watcher.poke()
        host.until(lambda: watcher.served >= target)  # noqa: B023 - waited on at once
    assert watcher.poked == watcher.served == 3
    assert len(host.restarts_due) >= 1


# --- stopping and failing --------------------------------------------------------------


@pytest.mark.usefixtures("pidfd_mode")
def test_stop_joins_the_thread_and_lets_go_of_every_fd(host: FakeHost) -> None:
    with (
        tether.spawn(READ_THEN_EXIT_3, stdin=tether.PIPE) as first,
        tether.spawn(READ_THEN_EXIT_3, stdin=tether.PIPE) as second,
    ):
        for process in (first, second):
            with ExitFdLease(process) as lease:  # without pidfds the fd is made on first use
                lease.acquire()
        fds = set(os.listdir("/proc/self/fd"))
        watcher = Watcher(host)
        watch(host, watcher, first)
        watch(host, watcher, second)
        assert THREAD_NAME in [t.name for t in threading.enumerate()]
        watcher.stop()
        watcher.stop()  # idempotent
        assert not watcher.alive
        assert THREAD_NAME not in [t.name for t in threading.enumerate()]
        assert set(os.listdir("/proc/self/fd")) == fds
        assert first.poll() is None, "stopping leaves the children alone"
        assert second.poll() is None
        let_exit(first)
        assert first.wait(timeout=WAIT) == tether.Exited(3), "the exit fd was given back"
        target = watcher.poke()  # the pipe is gone: nothing to wake, nothing to wait for
        assert watcher.served < target
        assert not watcher.alive
    assert host.exits == []


def test_a_crash_in_the_host_is_reported_through_the_contract() -> None:
    host = FakeHost(crash=True)
    seen: list[BaseException | None] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: seen.append(args.exc_value)
    try:
        watcher = Watcher(host)
        watcher.wake()
        host.until(lambda: host.failures)
        watcher.stop()  # joins: the error has reached threading.excepthook by then
    finally:
        threading.excepthook = previous
    assert host.failures == [host.crash]
    assert seen == [host.crash], "and it still goes on to threading.excepthook"
    assert watcher.crashed
    assert not watcher.alive
    assert host.passes == 0


# --- a thread that cannot start ---------------------------------------------------------


def test_a_thread_that_cannot_start_leaves_no_fd(
    host: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_threads_left(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", no_threads_left)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        Watcher(host)
    # the leak guard fails this test if the epoll or the wake-up pipe stayed open


def test_an_interrupt_after_the_thread_started_lets_it_close_up(
    host: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = threading.Thread.start
    started: list[threading.Thread] = []

    def start_then_interrupt(self: threading.Thread) -> None:
        start(self)
        started.append(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", start_then_interrupt)
    with host.lock, pytest.raises(KeyboardInterrupt):
        Watcher(host)  # built under the host's lock, as the supervisor does
    monkeypatch.undo()
    [thread] = started
    thread.join(WAIT)
    assert not thread.is_alive()
    assert host.failures == []

"""Process: waiting, signalling, stopping, stolen reaps, dropped handles.

Every scenario runs through both spawn backends, and most run with pidfds and
again on the forced no-pidfd fallback (``pidfd_mode``). Children that must be
running when the test acts print "ready" first; nothing here sleeps to synchronise.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator

import pytest

import tether
from tests.fdlimits import no_free_fds
from tether._core import _reaper
from tether._linux import _pidfd

PY = sys.executable
IGNORE_TERM = (
    "import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); sys.stdin.read()"
)
WAIT_FOR_STDIN = "import sys; print('ready', flush=True); sys.stdin.read()"
REAL_PIDFD_OPEN = os.pidfd_open  # the no_pidfd fixture patches os.pidfd_open for tether


@pytest.fixture(autouse=True)
def each_backend(backend: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Make ``backend="auto"`` choose each backend in turn for every test here."""
    monkeypatch.setattr(tether._spawn, "AUTO_ORDER", (backend,))
    return backend


def started(script: str, **options: object) -> tether.Process:
    """Spawn a Python child and return once it has printed "ready"."""
    process = tether.spawn(
        [PY, "-c", script],
        stdin=tether.PIPE,
        stdout=tether.PIPE,
        **options,  # type: ignore[arg-type]
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    assert process.backend == tether._spawn.AUTO_ORDER[0]
    return process


@pytest.fixture
def sleeper(pidfd_mode: str) -> Iterator[tether.Process]:
    """A child that runs until its stdin closes (or it is killed)."""
    with started(WAIT_FOR_STDIN) as process:
        yield process


def test_wait_returns_and_caches_the_status(pidfd_mode: str) -> None:
    process = tether.spawn(["sh", "-c", "exit 7"])
    status = process.wait()
    assert status == tether.Exited(7)
    assert process.status is status
    assert process.returncode == 7
    assert process.poll() is status
    assert process.wait(timeout=0) is status
    assert process.pidfd is None
    assert status.rusage is not None
    assert status.rusage.max_rss > 0


def test_poll_is_none_while_running(sleeper: tether.Process) -> None:
    assert sleeper.poll() is None
    assert sleeper.status is None
    assert sleeper.returncode is None
    assert "running" in repr(sleeper)


def test_wait_timeout_leaves_the_child_running(sleeper: tether.Process) -> None:
    started_at = time.monotonic()
    with pytest.raises(tether.TimeoutExpired) as caught:
        sleeper.wait(timeout=0.05)
    assert time.monotonic() - started_at >= 0.05
    assert isinstance(caught.value, tether.TetherError)
    assert caught.value.timeout == 0.05
    assert sleeper.poll() is None
    sleeper.kill()
    assert sleeper.wait() == tether.Signaled(signal.SIGKILL)


def test_wait_with_timeout_returns_when_the_child_exits(sleeper: tether.Process) -> None:
    assert sleeper.stdin is not None
    sleeper.stdin.close()
    assert sleeper.wait(timeout=30) == tether.Exited(0)


def test_many_threads_waiting_get_the_same_status(sleeper: tether.Process) -> None:
    statuses: list[tether.Status] = []
    barrier = threading.Barrier(9)

    def waiter() -> None:
        barrier.wait()
        statuses.append(sleeper.wait(timeout=30))

    threads = [threading.Thread(target=waiter) for _ in range(8)]
    for thread in threads:
        thread.start()
    barrier.wait()
    sleeper.send_signal(signal.SIGUSR1)
    for thread in threads:
        thread.join()
    assert len(statuses) == 8
    assert all(status is statuses[0] for status in statuses)
    assert statuses[0] == tether.Signaled(signal.SIGUSR1)


def test_a_hundred_children_exiting_at_once(pidfd_mode: str) -> None:
    read_end, write_end = os.pipe()
    try:
        children = [tether.spawn(["cat"], stdin=read_end) for _ in range(100)]
    finally:
        os.close(read_end)
        os.close(write_end)  # every cat sees end-of-file at the same instant
    statuses = [child.wait(timeout=60) for child in children]
    assert statuses == [tether.Exited(0)] * 100


def test_signals_after_the_reap_touch_nothing(
    sleeper: tether.Process, monkeypatch: pytest.MonkeyPatch
) -> None:
    sleeper.terminate()
    assert sleeper.wait() == tether.Signaled(signal.SIGTERM)
    sent: list[object] = []
    monkeypatch.setattr(signal, "pidfd_send_signal", lambda *a: sent.append(a))
    monkeypatch.setattr(os, "kill", lambda *a: sent.append(a))
    sleeper.send_signal(signal.SIGKILL)
    sleeper.terminate()
    sleeper.kill()
    assert sent == []


def test_stop_escalates_to_sigkill_after_the_grace(pidfd_mode: str) -> None:
    process = started(IGNORE_TERM)
    started_at = time.monotonic()
    status = process.stop(grace=0.2)
    assert time.monotonic() - started_at >= 0.2
    assert status == tether.Signaled(signal.SIGKILL)
    assert str(status) == "killed by SIGKILL"
    process.__exit__(None, None, None)


def test_stop_returns_as_soon_as_the_child_exits(sleeper: tether.Process) -> None:
    started_at = time.monotonic()
    assert sleeper.stop(grace=60) == tether.Signaled(signal.SIGTERM)
    assert time.monotonic() - started_at < 30, "the grace period is a ceiling, not a sleep"


def test_stop_reaches_a_stopped_child(sleeper: tether.Process) -> None:
    sleeper.send_signal(signal.SIGSTOP)
    os.waitid(os.P_PID, sleeper.pid, os.WSTOPPED | os.WNOWAIT)
    assert sleeper.poll() is None, "a stopped child has not exited"
    with pytest.raises(tether.TimeoutExpired):
        sleeper.wait(timeout=0.01)
    assert sleeper.stop(grace=30) == tether.Signaled(signal.SIGTERM)


def test_stop_validates_grace(sleeper: tether.Process) -> None:
    with pytest.raises(ValueError, match="grace"):
        sleeper.stop(grace=-1)


def test_context_manager_stops_reaps_and_closes(pidfd_mode: str) -> None:
    with started(WAIT_FOR_STDIN) as process:
        pass
    assert process.status == tether.Signaled(signal.SIGTERM)
    assert process.stdin is not None
    assert process.stdin.closed


def test_exception_in_the_block_stops_the_child_and_propagates(pidfd_mode: str) -> None:
    with pytest.raises(KeyError), started(IGNORE_TERM) as process:
        raise KeyError("boom")
    assert process.status is not None
    assert process.status.returncode == -signal.SIGKILL or process.status.success is False


def test_eintr_during_wait_is_retried(sleeper: tether.Process) -> None:
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)
        with pytest.raises(tether.TimeoutExpired):
            sleeper.wait(timeout=0.15)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert len(fired) >= 2
    assert sleeper.poll() is None


# --- someone else reaps our child -----------------------------------------------------


def _exited(process: tether.Process) -> None:
    """Block until the child has exited, without reaping it."""
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)


def test_status_stolen_by_foreign_waitpid_is_recovered() -> None:
    process = tether.spawn(["sh", "-c", "exit 9"])
    assert process.pidfd is not None
    _exited(process)
    assert os.waitpid(-1, 0) == (process.pid, 9 << 8)
    status = process.wait()
    assert status == tether.Exited(9)
    assert status.rusage is None, "the kernel keeps no rusage for a stolen reap"


@pytest.mark.parametrize("timeout", [30, None], ids=["timed", "untimed"])
def test_status_stolen_by_sigchld_ignored_is_recovered(
    each_backend: str, timeout: float | None
) -> None:
    """The untimed wait sleeps in waitid(WNOWAIT), which an auto-reaped child ends with
    ECHILD: the poll of the pidfd and the recovery take over, as for the timed wait."""
    previous = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        process = tether.spawn(["sh", "-c", "kill -USR2 $$"])
        try:
            status: tether.Status | None = process.wait(timeout=timeout)
        except tether.StatusUnknownError:
            status = None
    finally:
        signal.signal(signal.SIGCHLD, previous)
    if each_backend == "native":  # the pidfd exists from birth: the record is always there
        assert status == tether.Signaled(signal.SIGUSR2)
    else:  # the child may be reaped before pidfd_open: unknown then, never a wrong status
        assert status in (tether.Signaled(signal.SIGUSR2), None)


def test_unrecoverable_status_is_unknown_never_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pidfd, "recover_exit_status", lambda pidfd: None)
    process = tether.spawn(["true"])
    _exited(process)
    os.waitpid(process.pid, 0)
    with pytest.raises(tether.StatusUnknownError) as caught:
        process.wait()
    assert isinstance(caught.value, ChildProcessError)
    assert caught.value.pid == process.pid
    with pytest.raises(tether.StatusUnknownError):
        process.poll()
    assert process.returncode is None
    assert "status unknown" in repr(process)
    process.kill()  # a no-op: the pid may already belong to someone else


def test_exited_child_on_the_fallback_is_reaped_with_no_fd_to_spare(no_pidfd: None) -> None:
    process = tether.spawn(["sh", "-c", "exit 5"])
    assert process.pidfd is None
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)  # exited, still unreaped
    with no_free_fds():
        assert process.wait(timeout=30) == tether.Exited(5)
    assert not [t for t in threading.enumerate() if t.name.startswith("tether-exit-watch")]


def test_stolen_status_on_the_fallback_is_unknown(no_pidfd: None) -> None:
    process = tether.spawn(["true"])
    assert process.pidfd is None
    _exited(process)
    os.waitpid(process.pid, 0)
    with pytest.raises(tether.StatusUnknownError):
        process.wait(timeout=30)


def test_tether_never_reaps_a_foreign_child(pidfd_mode: str) -> None:
    foreign = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 5"], os.environ)
    try:
        ours = tether.spawn(["sh", "-c", "exit 6"])
        os.waitid(os.P_PID, foreign, os.WEXITED | os.WNOWAIT)
        assert ours.wait() == tether.Exited(6)
    finally:
        _, raw = os.waitpid(foreign, 0)
    assert tether.decode_status(raw) == tether.Exited(5)


# --- dropped handles ------------------------------------------------------------------


def test_a_dropped_running_handle_warns_and_is_reaped_in_the_background(
    pidfd_mode: str,
) -> None:
    process = tether.spawn([PY, "-c", "import signal; signal.pause()"])
    pid = process.pid
    with pytest.warns(ResourceWarning, match=f"process {pid} .* is still running"):
        del process  # the last reference: CPython finalises at once
    os.kill(pid, signal.SIGKILL)  # unreaped, so the pid is still our child's
    assert _reaper.REAPER.wait_idle(timeout=30)
    with pytest.raises(ChildProcessError):
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)


def test_detach_hands_the_child_over(pidfd_mode: str) -> None:
    process = tether.spawn(["sh", "-c", "read line"], stdin=tether.PIPE)
    assert process.stdin is not None
    with process:
        process.detach()
        assert "detached" in repr(process)
        for call in (process.poll, process.wait, process.kill):
            with pytest.raises(RuntimeError, match="detached"):
                call()
    assert process.stdin.closed  # leaving the block closed the pipe, so sh exits
    assert _reaper.REAPER.wait_idle(timeout=30)


def test_dropping_an_exited_handle_reaps_it(pidfd_mode: str) -> None:
    process = tether.spawn(["true"])
    pid = process.pid
    _exited(process)
    del process
    gc.collect()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_process_cannot_be_constructed_directly() -> None:
    with pytest.raises(TypeError, match=r"tether\.spawn"):
        tether.Process()


def test_pidfd_is_readable_exactly_when_the_child_exits() -> None:
    with started(WAIT_FOR_STDIN) as process:
        assert process.pidfd is not None
        assert select.select([process.pidfd], [], [], 0)[0] == []
        process.kill()
        assert select.select([process.pidfd], [], [], 30)[0] == [process.pidfd]


def test_group_signal_reaches_grandchildren(pidfd_mode: str) -> None:
    script = "sleep 60 & echo $!; wait"
    process = tether.spawn(["sh", "-c", script], process_group=0, stdout=tether.PIPE)
    with process:
        assert process.stdout is not None
        grandchild = int(process.stdout.readline())
        grandchild_fd = REAL_PIDFD_OPEN(grandchild)  # pins it: sh has not reaped it yet
        try:
            process.send_signal(signal.SIGTERM, group=True)
            assert process.wait(timeout=30) == tether.Signaled(signal.SIGTERM)
            assert _pidfd.wait_readable(grandchild_fd, 30), "the grandchild outlived the group kill"
        finally:
            os.close(grandchild_fd)


def test_group_signal_needs_a_group_leader(sleeper: tether.Process) -> None:
    with pytest.raises(ValueError, match="does not lead a process group"):
        sleeper.send_signal(signal.SIGTERM, group=True)
    assert sleeper.poll() is None


# --- the untimed wait's own path (one frame, no lease object) ---------------------------


class _Interrupted(Exception):
    pass


def test_an_untimed_wait_ended_by_a_raising_handler_gives_its_fd_back(
    sleeper: tether.Process,
) -> None:
    def interrupt(signum: int, frame: object) -> None:
        raise _Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(_Interrupted):
            sleeper.wait()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert sleeper._borrowers == 0, "the interrupted wait kept its borrow"
    had_pidfd = sleeper.pidfd is not None
    sleeper.kill()
    assert sleeper.wait() == tether.Signaled(signal.SIGKILL)
    assert sleeper.pidfd is None  # closed by the reap: no borrower was left to keep it
    if had_pidfd:
        assert sleeper._borrowers == 0


def test_an_untimed_wait_beside_a_timed_one_leaves_the_fd_to_the_last(
    sleeper: tether.Process,
) -> None:
    # The timed waiter holds a borrow while the untimed one reaps: the pidfd must stay
    # open until the timed waiter has given its borrow back, then close.
    results: list[tether.Status] = []
    timed = threading.Thread(target=lambda: results.append(sleeper.wait(timeout=30)))
    timed.start()
    untimed = threading.Thread(target=lambda: results.append(sleeper.wait()))
    untimed.start()
    sleeper.kill()
    timed.join()
    untimed.join()
    assert results == [tether.Signaled(signal.SIGKILL)] * 2
    assert sleeper._borrowers == 0
    assert sleeper.pidfd is None

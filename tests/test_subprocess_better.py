"""What ``tether.subprocess`` does better than the standard module, each shown side by side.

Every test runs the same code against the standard ``subprocess`` and against the
drop-in and checks that the standard module shows the hazard and tether does not:
a wait that sleeps in a loop, a signal sent by pid, a dropped ``Popen`` left a zombie
until the next ``Popen``, a stolen exit status reported as 0, a timed-out ``run`` that
leaves the grandchildren running, and reading after ``kill()`` that waits for
grandchildren holding the pipes.
"""

from __future__ import annotations

import gc
import os
import select
import signal
import subprocess as std
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from tether import subprocess
from tether._core._reaper import REAPER

_SPAWN_GRANDCHILD = (
    "import os, subprocess; child = subprocess.Popen(['sleep', '60']); "
    "os.write({fd}, str(child.pid).encode()); os.close({fd}); child.wait()"
)
MODULES = pytest.mark.parametrize("module", [std, subprocess], ids=["stdlib", "tether"])


def _is_our_unreaped_child(pid: int) -> bool:
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _wait_exited_unreaped(pid: int) -> None:
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # blocks until it is a zombie


@pytest.fixture
def grandchildren() -> Iterator[list[int]]:
    """Pids of grandchildren a test learns of; any still alive at the end is killed."""
    found: list[int] = []
    yield found
    for pid in found:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], 30)
        finally:
            os.close(pidfd)


def _alive(pid: int, wait: float = 0.0) -> bool:
    """Whether *pid* (not our child) still runs; with *wait*, give it that long to die."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        return not select.select([pidfd], [], [], wait)[0]
    finally:
        os.close(pidfd)


@MODULES
def test_wait_with_a_timeout_blocks_instead_of_sleeping_in_a_loop(
    module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    naps: list[float] = []
    real_sleep = time.sleep

    def counting_sleep(seconds: float) -> None:
        naps.append(seconds)
        real_sleep(seconds)

    with module.Popen(["sleep", "60"]) as process:
        monkeypatch.setattr(time, "sleep", counting_sleep)
        with pytest.raises(std.TimeoutExpired):
            process.wait(timeout=0.05)
        monkeypatch.undo()
        process.kill()
    if module is not std:
        assert naps == []
    elif sys.version_info < (3, 15):
        assert naps, "the standard module polls with time.sleep (until CPython 3.15)"


@MODULES
def test_signals_go_through_the_pidfd_never_by_pid(
    module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_pid: list[tuple[int, int]] = []
    real_kill = os.kill

    def recording_kill(pid: int, sig: int) -> None:
        by_pid.append((pid, sig))
        real_kill(pid, sig)

    with module.Popen(["sleep", "60"]) as process:
        monkeypatch.setattr(os, "kill", recording_kill)
        process.terminate()
        monkeypatch.undo()
    assert process.returncode == -signal.SIGTERM
    if module is std:
        assert by_pid == [(process.pid, signal.SIGTERM)]  # a pid another process may own
    else:
        assert by_pid == []


@MODULES
def test_a_dropped_popen_is_reaped_without_waiting_for_the_next_one(module: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        process = module.Popen(["sleep", "60"])
        pid = process.pid
        del process
        gc.collect()
    os.kill(pid, signal.SIGKILL)  # still our unreaped child: the pid is safe to use
    if module is std:
        _wait_exited_unreaped(pid)
        assert _is_our_unreaped_child(pid), "a zombie until the next Popen reaps it"
        std._cleanup()  # type: ignore[attr-defined]  # what the next Popen would do
    else:
        assert REAPER.wait_idle(timeout=30)
    assert not _is_our_unreaped_child(pid)


@MODULES
def test_a_stolen_exit_status_is_recovered_not_reported_as_zero(module: Any) -> None:
    process = module.Popen(["sh", "-c", "exit 7"])
    _, raw = os.waitpid(process.pid, 0)  # a foreign reaper takes the status
    assert os.waitstatus_to_exitcode(raw) == 7
    code = process.wait()
    assert code == (0 if module is std else 7)


@MODULES
def test_a_timed_out_run_kills_the_group_of_a_child_in_its_own_session(
    module: Any, grandchildren: list[int]
) -> None:
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(std.TimeoutExpired):
            module.run(
                [sys.executable, "-c", _SPAWN_GRANDCHILD.format(fd=write_end)],
                start_new_session=True,
                stdout=std.PIPE,
                pass_fds=[write_end],
                timeout=2,
            )
        os.close(write_end)
        write_end = -1
        grandchild = int(os.read(read_end, 100))
        grandchildren.append(grandchild)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    if module is std:
        assert _alive(grandchild), "the standard run kills only the direct child"
    else:
        assert not _alive(grandchild, wait=30)


@MODULES
def test_reading_after_kill_is_bounded_when_grandchildren_hold_the_pipes(
    module: Any, grandchildren: list[int]
) -> None:
    with module.Popen(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=std.PIPE) as process:
        grandchildren.append(int(process.stdout.readline()))
        process.kill()
        if module is std:
            with pytest.raises(std.TimeoutExpired):
                process.communicate(timeout=1)  # would wait for the grandchild's 60 s
            process.wait()
            process.stdout.close()
        else:
            out, err = process.communicate()
            assert (out, err) == (b"", None)
    assert process.returncode == -signal.SIGKILL
    assert _alive(grandchildren[0])  # not ours to kill: only the reading stopped

"""The background reaper, interpreter exit, fork, and living beside other libraries."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import warnings

import pytest

import tether
from tether._core import _reaper
from tether._linux import _pidfd

PY = sys.executable


def _is_our_child(pid: int) -> bool:
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def test_a_thousand_dropped_handles_leave_no_zombie() -> None:
    threads_before = threading.active_count()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        pids = [tether.spawn(["sleep", "60"]).pid for _ in range(1000)]
    assert len([w for w in caught if w.category is ResourceWarning]) == 1000
    assert threading.active_count() <= threads_before + 1, "one reaper thread for all"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)  # unreaped until the reaper acts: still our children
    assert _reaper.REAPER.wait_idle(timeout=60)
    assert not [pid for pid in pids if _is_our_child(pid)]


def test_a_forked_child_starts_with_a_fresh_reaper() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        pid_of_dropped = tether.spawn(["sleep", "60"]).pid
    read_end, write_end = os.pipe()
    forked = os.fork()
    if forked == 0:  # the forked child: report what its reaper holds, then leave
        try:
            registrations = _reaper.REAPER.registrations()
            os.write(write_end, f"{registrations} {_reaper.REAPER.epoll_fd()}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        report = os.read(read_end, 100).decode()
    finally:
        os.close(read_end)
        os.waitpid(forked, 0)
    assert report == "0 None"
    os.kill(pid_of_dropped, signal.SIGKILL)
    assert _reaper.REAPER.wait_idle(timeout=30)


EXIT_SCRIPT = """
import sys, tether, warnings
from tether._linux import _pidfd
if sys.argv[1] == "no_pidfd":
    _pidfd.disable_pidfds()
warnings.simplefilter("ignore", ResourceWarning)
kept = tether.spawn(["sleep", "60"])
dropped = tether.spawn(["sleep", "60"]).pid
detached = tether.spawn(["sleep", "60"])
detached.detach()
print(kept.pid, dropped, detached.pid, flush=True)
sys.stdin.readline()
"""


EXIT_PATIENCE = 3.0
"""Seconds an exiting interpreter may take: it waits for the children it kills, never for
a detached one (the old code waited 5 s for those)."""


@pytest.mark.parametrize("mode", ["pidfd", "no_pidfd"])
def test_interpreter_exit_kills_owned_children_and_spares_detached_ones(mode: str) -> None:
    parent = tether.spawn([PY, "-c", EXIT_SCRIPT, mode], stdin=tether.PIPE, stdout=tether.PIPE)
    with parent:
        assert parent.stdout is not None
        assert parent.stdin is not None
        kept, dropped, detached = map(int, parent.stdout.readline().split())
        pins = {pid: os.pidfd_open(pid) for pid in (kept, dropped, detached)}
        try:
            parent.stdin.close()  # the script returns, and its interpreter exits
            assert parent.wait(timeout=EXIT_PATIENCE) == tether.Exited(0)
            assert _pidfd.wait_readable(pins[kept], 30), "a live handle's child survived exit"
            assert _pidfd.wait_readable(pins[dropped], 30), "a dropped child survived exit"
            assert not _pidfd.wait_readable(pins[detached], 0), "the detached child was killed"
            signal.pidfd_send_signal(pins[detached], signal.SIGKILL)  # ours to clean up
            assert _pidfd.wait_readable(pins[detached], 30)
        finally:
            for pin in pins.values():
                os.close(pin)


# --- living beside subprocess, asyncio and multiprocessing ------------------------------


def _exit_with(code: int) -> None:
    sys.exit(code)


async def _asyncio_child(code: int) -> int:
    child = await asyncio.create_subprocess_exec("sh", "-c", f"exit {code}")
    return await child.wait()


def test_statuses_stay_right_when_mixed_with_other_libraries() -> None:
    ours = [tether.spawn(["sh", "-c", f"exit {code}"]) for code in (3, 4)]
    popen = subprocess.Popen(["sh", "-c", "exit 5"])
    context = multiprocessing.get_context("fork")
    worker = context.Process(target=_exit_with, args=(6,))
    worker.start()
    asyncio_code = asyncio.run(_asyncio_child(7))
    assert popen.wait() == 5
    worker.join()
    assert worker.exitcode == 6
    worker.close()
    assert asyncio_code == 7
    assert [process.wait() for process in ours] == [tether.Exited(3), tether.Exited(4)]

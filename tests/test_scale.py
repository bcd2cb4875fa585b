"""Ten thousand concurrent children, each reaped, with at most two threads added."""

from __future__ import annotations

import faulthandler
import os
import resource
import signal

import anyio
import pytest

import tether

pytestmark = pytest.mark.anyio

COUNT = 10_000


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.timeout(300)
async def test_ten_thousand_concurrent_children_are_each_reaped() -> None:
    # Its own timeout is 300 s: pytest's faulthandler_timeout (50 s) would dump every
    # thread's stack from a watchdog thread while they run, which can crash the run (seen
    # once here, at load 160). A hang still ends in pytest-timeout's dump.
    faulthandler.cancel_dump_traceback_later()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < COUNT + 1000:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} cannot hold {COUNT} pidfds")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    threads_before = _threads()
    processes: list[tether.AsyncProcess] = []
    try:
        for _ in range(COUNT):
            processes.append(await tether.open_process(["sleep", "600"]))
        peak = _threads()
        statuses: list[tether.Status] = []

        async def reap(process: tether.AsyncProcess) -> None:
            statuses.append(await process.wait())

        async with anyio.create_task_group() as group:
            for process in processes:
                group.start_soon(reap, process)
            for process in processes:
                process.kill()
        peak = max(peak, _threads())
    finally:
        for process in processes:
            process.kill()
            with anyio.CancelScope(shield=True):
                await process.wait()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert statuses == [tether.Signaled(signal.SIGKILL)] * COUNT
    assert peak <= threads_before + 2

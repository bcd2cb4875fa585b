"""The benchmarks' bare contenders (benchmarks/_bare.py) and the ``bare x`` of a verdict.

A bare contender stands beside a target as the least Python can spend on that road; one
that skipped a step (no reap, a wait that returns before the exit) would make every
target look out of reach. These tests check that each one waits for the real exit,
reaps its child, returns its return code, closes its pidfd and leaves no reader on the
loop, and that a verdict carries the bare contender's ratio.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
import trio

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _bare  # noqa: E402
import _common  # noqa: E402

SLEEP = ["/bin/sleep", "60"]


def _fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _is_unreaped_child(pid: int) -> bool:
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def test_the_blocking_wait_reaps_the_killed_child_and_closes_its_pidfd() -> None:
    child = _bare.BareChild(SLEEP)
    child.kill()
    assert _bare.wait_blocking(child) == -signal.SIGKILL
    assert not _is_unreaped_child(child.pid)
    assert not _fd_is_open(child.fd)


def test_the_blocking_wait_waits_for_the_exit_and_returns_the_exit_code() -> None:
    child = _bare.BareChild(["/bin/sh", "-c", "sleep 0.05; exit 7"])
    assert _bare.wait_blocking(child) == 7
    assert not _is_unreaped_child(child.pid)


def test_the_asyncio_wait_leaves_no_reader_on_the_loop() -> None:
    async def main() -> tuple[int, int]:
        child = _bare.BareChild(["/bin/sh", "-c", "sleep 0.05; exit 3"])
        code = await _bare.wait_asyncio(child)
        loop = asyncio.get_running_loop()
        assert not loop.remove_reader(child.fd), "the reader outlived the wait"
        return child.pid, code

    pid, code = asyncio.run(main())
    assert code == 3
    assert not _is_unreaped_child(pid)


def test_the_trio_wait_reaps_the_killed_child() -> None:
    async def main() -> tuple[int, int]:
        child = _bare.BareChild(SLEEP)
        child.kill()
        return child.pid, await _bare.wait_trio(child)

    pid, code = trio.run(main)
    assert code == -signal.SIGKILL
    assert not _is_unreaped_child(pid)


@pytest.mark.parametrize(("program", "expected"), [("/bin/true", 0), ("/bin/false", 1)])
def test_the_bare_async_spawns_return_the_exit_code(program: str, expected: int) -> None:
    assert asyncio.run(_bare.spawn_asyncio([program])) == expected
    assert trio.run(_bare.spawn_trio, [program]) == expected


def test_a_missing_program_fails_and_leaves_no_child() -> None:
    with pytest.raises(FileNotFoundError):
        _bare.BareChild(["/nonexistent/program"])


def test_a_verdict_carries_the_bare_contenders_ratio() -> None:
    samples = {"mine": [2.0, 2.2, 2.1], "theirs": [1.0, 1.0, 1.0], "bare": [1.5, 1.6, 1.5]}
    target = _common.Target("mine", "theirs", 1.3, bare="bare")
    verdict = _common.judge(target, samples, None)
    assert verdict.bare_ratio == pytest.approx(1.5)
    assert verdict.verdict == "NOT met"
    table = _common.format_verdicts([verdict])
    assert "bare x" in table.splitlines()[0]
    assert table.splitlines()[-1].rstrip().endswith("1.50")
    assert _common.verdicts_json([verdict])[0]["bare_ratio"] == pytest.approx(1.5)
    plain = _common.judge(_common.Target("mine", "theirs", None), samples, None)
    assert plain.bare_ratio is None

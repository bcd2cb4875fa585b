"""The benchmarks' C floor (benchmarks/floor/floor.c, driven by benchmarks/_floor.py).

Every ratio in the benchmark suite has the C floor beside it, so a floor that silently
measures nothing (a failed spawn timed as a fast one, a reply with the wrong count)
would make every figure wrong. These tests build it and check that each mode answers
with one positive sample per operation, that its children really ran (the tiny
child's report), and that failures are loud.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _floor  # noqa: E402

pytestmark = pytest.mark.skipif(
    shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler"
)


@pytest.fixture
def floor() -> Iterator[_floor.Floor]:
    with _floor.Floor() as server:
        yield server


def test_build_is_cached_by_source_hash() -> None:
    first = _floor.build_floor()
    assert first.parent == _floor.BUILD
    assert first.name.startswith("floor-")
    assert os.access(first, os.X_OK)
    assert _floor.build_floor() == first


@pytest.mark.parametrize("mode", ["spawn", "vfork", "reap"])
def test_each_mode_answers_one_sample_per_operation(floor: _floor.Floor, mode: str) -> None:
    samples = getattr(floor, mode)(3)
    assert len(samples) == 3
    assert all(sample > 0 for sample in samples)


def test_batches_can_follow_one_another(floor: _floor.Floor) -> None:
    assert len(floor.spawn(2)) == 2
    assert len(floor.reap(1)) == 1
    assert len(floor.vfork(2)) == 2


def test_tiny_child_reports_its_pid_and_exit_time() -> None:
    binary = _floor.build_floor()
    read_fd, write_fd = os.pipe()
    try:
        before = time.monotonic_ns()
        pid = os.posix_spawn(
            str(binary),
            _floor.child_argv(binary, 1000, 1),
            os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, write_fd, 1)],
        )
        _, status = os.waitpid(pid, 0)
        after = time.monotonic_ns()
        os.close(write_fd)
        write_fd = -1
        line = os.read(read_fd, 100).decode()
    finally:
        if write_fd >= 0:
            os.close(write_fd)
        os.close(read_fd)
    assert os.waitstatus_to_exitcode(status) == 0
    reported_pid, ns = line.split()
    assert int(reported_pid) == pid
    assert before + 1_000_000 <= int(ns) <= after  # slept 1 ms; the same clock as ours


def test_unknown_command_fails_loudly(floor: _floor.Floor) -> None:
    with pytest.raises(_floor.FloorError, match="unknown mode"):
        floor._batch("bogus", 1)


def test_no_compiler_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(_floor.FloorError, match="no C compiler"):
        _floor.build_floor()

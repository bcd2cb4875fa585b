"""``/proc/PID/stat`` parsing: names with spaces and parentheses, zombies, vanished pids.

The live cases run a copy of ``/bin/sh`` renamed in a temporary directory, so the
kernel itself sets the hostile ``comm``; the shell prints "ready" once it runs (the
name is set by then), and nothing here sleeps to synchronise.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest

from tether._linux._procfs import ProcStat, live_group_members, parse_stat, read_stat
from tether._supervise import _subreaper

# Names a parser that stops at the first ")" or splits on spaces gets wrong; the second
# one reads as a zombie whose parent and group are init.
HOSTILE_NAMES = ["a) (b", "x) Z 1 1"]


def test_the_name_ends_at_the_last_parenthesis() -> None:
    assert parse_stat(b"42 (a) (b) S 1 42 42 0 -1 4194560\n") == ProcStat("a) (b", "S", 1, 42)


def test_a_name_that_mimics_the_fields_after_it() -> None:
    line = b"7 (x) Z 1 1) S 5 7 7 0 -1 4194560 118 0 0 0\n"
    assert parse_stat(line) == ProcStat("x) Z 1 1", "S", 5, 7)


def test_a_name_that_is_not_utf8_is_replaced_not_refused() -> None:
    assert parse_stat(b"9 (\xff)) R 2 9 9\n") == ProcStat("\ufffd)", "R", 2, 9)


@pytest.mark.parametrize("line", [b"", b"garbage", b"1 (x) S 1", b"1 x) S 1 1", b"1 (x) S a 1"])
def test_what_is_not_a_stat_line_is_refused(line: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - int() and ours say different things
        parse_stat(line)


def test_our_own_stat() -> None:
    stat = read_stat(os.getpid())
    assert stat is not None
    assert (stat.state, stat.ppid, stat.pgid) == ("R", os.getppid(), os.getpgrp())


def test_a_pid_that_cannot_exist_reads_as_vanished() -> None:
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert read_stat(pid_max + 1) is None


def test_a_process_reaped_between_open_and_read_reads_as_vanished(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def reaped(fd: int, size: int) -> bytes:
        raise ProcessLookupError(3, "No such process")

    monkeypatch.setattr(os, "read", reaped)
    assert read_stat(os.getpid()) is None


@pytest.fixture(params=HOSTILE_NAMES)
def named_shell(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[int, str, BinaryIO]]:
    """A shell whose ``comm`` is a hostile name, leading its own group and waiting on
    stdin; yields its pid, its name and its stdin (closing it ends the shell)."""
    name = str(request.param)
    program = tmp_path / name
    shutil.copy("/bin/sh", program)
    stdin_read, stdin_write = os.pipe()
    stdout_read, stdout_write = os.pipe()
    pid = os.posix_spawn(
        program,
        [name, "-c", "echo ready; read line"],
        os.environ,
        file_actions=[
            (os.POSIX_SPAWN_DUP2, stdin_read, 0),
            (os.POSIX_SPAWN_DUP2, stdout_write, 1),
        ],
        setpgroup=0,
    )
    os.close(stdin_read)
    os.close(stdout_write)
    stdin = os.fdopen(stdin_write, "wb")
    try:
        with os.fdopen(stdout_read, "rb") as stdout:
            assert stdout.readline() == b"ready\n"
        yield pid, name, stdin
    finally:
        stdin.close()
        os.waitpid(pid, 0)


def test_a_live_child_with_a_hostile_name(named_shell: tuple[int, str, BinaryIO]) -> None:
    pid, name, _ = named_shell
    stat = read_stat(pid)
    assert stat is not None
    assert stat.comm == name
    assert stat.state in ("R", "S")
    assert (stat.ppid, stat.pgid) == (os.getpid(), pid)
    assert _subreaper._parent_and_group(pid) == (os.getpid(), pid)
    assert live_group_members((pid,))


def test_a_zombie_with_a_hostile_name_is_no_live_member(
    named_shell: tuple[int, str, BinaryIO],
) -> None:
    pid, name, stdin = named_shell
    stdin.close()  # the shell's read ends, and so does the shell
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    assert read_stat(pid) == ProcStat(name, "Z", os.getpid(), pid)
    assert not live_group_members((pid,))

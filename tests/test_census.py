"""The shared wait for process groups (``_census``): one look at /proc per round for all trees.

Each test builds real trees: a shell leading its group, with a ``sleep`` grandchild in
it whose pid the shell prints. The shell exits on a line from the test, leaving the
grandchild as the group's only member; killing it (by pidfd) empties the group.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Iterator

import anyio
import pytest

import tether
from tests.test_supervisor import Pins, pins
from tether import Supervisor
from tether._linux import _pidfd
from tether._linux._procfs import live_group_members
from tether._supervise import _census
from tether._supervise._tree import ProcessTree

__all__ = ["pins"]  # the fixture, imported for use here

SHELL = "sleep 60 & echo $!; read line"


def _tree(sup: Supervisor) -> ProcessTree:
    return sup._trees[-1]


def _orphaned_group(sup: Supervisor, pins: Pins) -> tuple[ProcessTree, int]:
    """A tree whose leader has exited and been reaped; its group holds one live sleep."""
    process = sup.spawn(["sh", "-c", SHELL], stdin=tether.PIPE, stdout=tether.PIPE)
    assert process.stdout is not None
    assert process.stdin is not None
    grandchild = pins.pin(int(process.stdout.readline()))
    process.stdin.write(b"go\n")
    process.stdin.flush()
    assert process.wait(timeout=30) == tether.Exited(0)
    return _tree(sup), grandchild


@pytest.fixture
def scope() -> Iterator[Supervisor]:
    with Supervisor(grace=5) as sup:
        yield sup


def test_one_scan_finds_the_live_members_of_many_groups(scope: Supervisor, pins: Pins) -> None:
    trees = [_orphaned_group(scope, pins)[0] for _ in range(3)]
    found = live_group_members({tree.process.pid for tree in trees} | {2**22 + 1})
    assert sorted(found) == sorted(tree.process.pid for tree in trees)
    assert all(len(members) == 1 for members in found.values())
    assert live_group_members(()) == {}


def test_a_round_pins_the_live_members_and_drops_empty_groups(
    scope: Supervisor, pins: Pins
) -> None:
    (busy, _), (idle, pidfd) = _orphaned_group(scope, pins), _orphaned_group(scope, pins)
    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    assert _pidfd.wait_readable(pidfd, 30)
    reaped: list[bool] = []
    look = _census.Round()
    try:
        look.take([busy, idle], lambda: reaped.append(True))
        assert reaped == [True], "the adopted orphans are reaped first"
        assert look.left == [busy]
        assert len(look.pidfds) == 1
        assert not look.blind
    finally:
        look.close()
    assert look.pidfds == []


def test_groups_gone_waits_on_pidfds_until_the_groups_are_empty(
    scope: Supervisor, pins: Pins
) -> None:
    tree, pidfd = _orphaned_group(scope, pins)
    assert _census.groups_gone([tree], time.monotonic() + 0.01, None) == [tree]
    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    assert _census.groups_gone([tree], time.monotonic() + 30, None) == []


def _refuse(pid: int, flags: int = 0) -> int:
    raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))


def test_without_pidfds_for_the_members_it_polls(
    scope: Supervisor, pins: Pins, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree, pidfd = _orphaned_group(scope, pins)
    assert tree.group_has_members()  # the kernel probe, made with a pidfd, is done by now
    monkeypatch.setattr(os, "pidfd_open", _refuse)
    look = _census.Round()
    look.take([tree], None)
    assert look.blind
    assert look.left == [tree]
    assert look.pidfds == []
    assert _census.groups_gone([tree], time.monotonic() + 0.01, None) == [tree]
    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    assert _census.groups_gone([tree], time.monotonic() + 30, None) == []


@pytest.mark.anyio
@pytest.mark.parametrize("blind", [False, True])
async def test_groups_gone_async_narrows_the_list_in_place(
    scope: Supervisor, pins: Pins, monkeypatch: pytest.MonkeyPatch, blind: bool
) -> None:
    tree, pidfd = _orphaned_group(scope, pins)
    assert tree.group_has_members()  # the kernel probe, made with a pidfd, is done by now
    if blind:
        monkeypatch.setattr(os, "pidfd_open", _refuse)
    pending = [tree]
    with anyio.move_on_after(0.05):
        await _census.groups_gone_async(pending, None)
    assert pending == [tree]
    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    with anyio.fail_after(30):
        await _census.groups_gone_async(pending, None)
    assert pending == []


def test_a_member_that_left_the_group_meanwhile_is_not_pinned(
    scope: Supervisor, pins: Pins, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pid is trusted only if, once its pidfd is held, it is still in the group."""
    tree, _ = _orphaned_group(scope, pins)
    monkeypatch.setattr(_census, "read_stat", lambda pid: None)  # as if it vanished
    look = _census.Round()
    try:
        look.take([tree], None)
        assert look.left == [tree]
        assert look.pidfds == []
        assert not look.blind
    finally:
        look.close()

"""``subreaper=True``: orphans of the trees are adopted, then killed and reaped by tether.

An orphan is made the way daemons are: a shell whose subshell starts ``sleep 60`` in
the background, prints its pid and exits, so the sleep loses its parent. Under a
subreaper scope its parent pid becomes ours. It is pinned with a pidfd; after the
scope, the pidfd is readable (it died) and ``waitid`` on it says ECHILD: someone reaped
it, and since it was our child, that was tether. The autouse leak guard would also
fail the test for a zombie child left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable

import anyio
import pytest

import tether
from tests.test_cgroup import DOUBLE_FORK, needs_cgroups
from tests.test_supervisor import PY, Pins, pins
from tether import AsyncSupervisor, Supervisor
from tether._linux import _pidfd
from tether._supervise import _subreaper

__all__ = ["pins"]  # the fixture, imported for use here

ORPHANING_SHELL = "(sleep 60 >/dev/null & echo $!)"
"""Prints the pid of a ``sleep`` whose parent (a subshell) exits at once."""


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("PPid:"))
    return int(line.split()[1])


def reaped(pidfd: int) -> bool:
    """Whether the (dead) process behind *pidfd* was reaped: ECHILD from waitid."""
    try:
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return False


def orphan(sup: Supervisor, pins: Pins) -> tuple[int, int]:
    """Start ORPHANING_SHELL under *sup*; return the orphan's pid and pinned pidfd."""
    shell = sup.spawn(["sh", "-c", ORPHANING_SHELL], stdout=tether.PIPE)
    assert shell.stdout is not None
    pid = int(shell.stdout.readline())
    pidfd = pins.pin(pid)
    assert shell.wait(timeout=30) == tether.Exited(0)
    assert parent_of(pid) == os.getpid(), "adopted by this process"
    assert os.getpgid(pid) == shell.pid, "still in the shell's group"
    return pid, pidfd


def test_an_adopted_orphan_is_killed_and_reaped_when_the_scope_ends(pins: Pins) -> None:
    assert not _subreaper.is_subreaper()
    with Supervisor(subreaper=True, grace=30) as sup:
        assert _subreaper.is_subreaper()
        _, pidfd = orphan(sup, pins)
        assert pins.dead() == [False]
    assert not _subreaper.is_subreaper(), "the previous value is back"
    assert pins.dead() == [True]
    assert reaped(pidfd)


def test_an_exited_orphan_is_reaped_by_wait_all(pins: Pins) -> None:
    with Supervisor(subreaper=True) as sup:
        _, pidfd = orphan(sup, pins)
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)  # it turns into a zombie of ours
        assert pins.dead(timeout=30) == [True]
        assert not reaped(pidfd), "a zombie, waiting for its parent: us"
        assert sup.wait_all(timeout=30) == [tether.Exited(0)]
        assert reaped(pidfd)


def test_a_foreign_child_is_left_to_its_owner() -> None:
    with Supervisor(subreaper=True) as sup:
        done = subprocess.Popen(["sh", "-c", "exit 7"], start_new_session=True)
        running = subprocess.Popen(["sleep", "60"], start_new_session=True)
        exit_fd = os.pidfd_open(done.pid)
        try:
            assert _pidfd.wait_readable(exit_fd, 30), "a zombie now"
        finally:
            os.close(exit_fd)
        sup.spawn(["true"]).wait()
        assert sup.wait_all(timeout=30) == [tether.Exited(0)]
        sup.spawn(["true"])  # reaps adopted orphans too
    try:
        assert running.poll() is None, "not signalled by the scope"
        assert done.wait(timeout=30) == 7, "its status was still there for subprocess"
    finally:
        running.kill()
        running.wait()


def test_scopes_share_the_process_wide_flag_and_restore_it() -> None:
    with Supervisor(subreaper=True):
        with Supervisor(subreaper=True):
            assert _subreaper.is_subreaper()
        assert _subreaper.is_subreaper(), "the outer scope still holds it"
    assert not _subreaper.is_subreaper()
    _subreaper._set_subreaper(True)
    try:
        with Supervisor(subreaper=True):
            pass
        assert _subreaper.is_subreaper(), "it was set before: it stays set"
    finally:
        _subreaper._set_subreaper(False)


def test_subreaper_needs_a_tree_to_prove_ownership() -> None:
    with pytest.raises(ValueError, match="subreaper=True needs"):
        Supervisor(subreaper=True, kill="process")
    assert Supervisor(subreaper=True).subreaper


@needs_cgroups
def test_a_setsid_orphan_is_reaped_through_its_cgroup(pins: Pins) -> None:
    with Supervisor(subreaper=True, kill="cgroup", grace=30) as sup:
        process = sup.spawn(
            [PY, "-c", DOUBLE_FORK, "polite"], stdin=tether.PIPE, stdout=tether.PIPE
        )
        assert process.stdout is not None
        grandchild = int(process.stdout.readline())
        pidfd = pins.pin(grandchild)
        assert parent_of(grandchild) == os.getpid(), "its parent exited: adopted"
        assert os.getsid(grandchild) == grandchild, "out of every process group of ours"
    assert pins.dead() == [True]
    assert reaped(pidfd)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_async_scope_adopts_and_reaps_orphans(anyio_backend: str, pins: Pins) -> None:
    with anyio.CancelScope() as scope:
        async with AsyncSupervisor(subreaper=True, grace=30) as sup:
            shell = await sup.start(["sh", "-c", ORPHANING_SHELL], stdout=tether.PIPE)
            assert shell.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                line += await shell.stdout.receive(1)
            pidfd = pins.pin(int(line))
            assert await shell.wait() == tether.Exited(0)
            assert parent_of(int(line)) == os.getpid()
            scope.cancel()
            await anyio.sleep_forever()
    assert not _subreaper.is_subreaper()
    assert pins.dead() == [True]
    assert reaped(pidfd)


def test_without_pidfds_orphans_are_reaped_while_their_leader_lives(
    no_pidfd: None, pins: Pins
) -> None:
    with Supervisor(subreaper=True, grace=30) as sup:
        shell = sup.spawn(
            ["sh", "-c", ORPHANING_SHELL + "; echo orphaned; read line; exit 0"],
            stdin=tether.PIPE,
            stdout=tether.PIPE,
        )
        assert shell.pidfd is None
        assert shell.stdout is not None
        pid = int(shell.stdout.readline())
        pidfd = pins.pin(pid)  # the test's own pidfd; tether has none
        assert shell.stdout.readline() == b"orphaned\n", "its parent subshell has exited"
        assert parent_of(pid) == os.getpid()
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        assert pins.dead(timeout=30) == [True]
        with pytest.raises(tether.TimeoutExpired):
            sup.wait_any(timeout=0)
        assert reaped(pidfd), "reaped by the wait, proven by the unreaped leader"
        assert shell.stdin is not None
        shell.stdin.close()
        assert shell.wait(timeout=30) == tether.Exited(0)


# --- an interrupt during Supervisor.__enter__ ---------------------------------------


class EnterInterrupted(Exception):
    """Stands for Ctrl-C landing right after one step of the scope's entry."""


def _then_raise(real: Callable[..., object]) -> Callable[..., None]:
    def step(*args: object) -> None:
        real(*args)
        raise EnterInterrupted

    return step


@pytest.mark.parametrize("step", ["claim", "shield"])
def test_an_interrupt_during_entry_leaves_no_claim_and_no_shield(
    step: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The with-block never owned the scope, so its __exit__ never runs: the entry itself
    must give back the subreaper flag and the signal wrappers it had put in place."""
    from tether._supervise import _signal_shield

    assert not _subreaper.is_subreaper()
    module = _subreaper if step == "claim" else _signal_shield
    monkeypatch.setattr(module, step, _then_raise(getattr(module, step)))
    sigint = signal.getsignal(signal.SIGINT)
    with pytest.raises(EnterInterrupted), Supervisor(subreaper=True):
        pytest.fail("the body ran after an interrupted entry")
    assert not _subreaper.is_subreaper(), "the subreaper flag outlived the interrupted entry"
    assert signal.getsignal(signal.SIGINT) is sigint, "a signal wrapper stayed in place"
    monkeypatch.undo()
    with Supervisor(subreaper=True, grace=5) as sup:  # the next scope starts clean
        assert _subreaper.is_subreaper()
        sup.spawn(["true"]).wait()
    assert not _subreaper.is_subreaper()
    assert signal.getsignal(signal.SIGINT) is sigint


def test_a_second_entry_leaves_the_open_scope_its_claim_and_shield() -> None:
    sigint = signal.getsignal(signal.SIGINT)
    with Supervisor(subreaper=True, grace=5) as sup:
        with pytest.raises(RuntimeError, match="entered only once"):
            sup.__enter__()
        assert _subreaper.is_subreaper()
        assert signal.getsignal(signal.SIGINT) is not sigint  # still shielded
    assert not _subreaper.is_subreaper()
    assert signal.getsignal(signal.SIGINT) is sigint

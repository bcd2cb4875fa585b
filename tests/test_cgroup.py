"""cgroup v2 helpers and ``kill="cgroup"`` supervision, sync and async.

The supervision tests need a writable cgroup v2 directory (root, or a delegated
cgroup) and skip cleanly without one. Their target is the grandchild a process
group cannot hold: one that double-forks and calls ``setsid``. It is pinned with a
pidfd before the scope ends and must be dead when the scope returns, and the
child's cgroup must be gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import time
from pathlib import Path

import anyio
import pytest

import tether
from tests.test_supervisor import PY, SUPERVISING, WAIT_FOR_STDIN, Pins, pins
from tether import AsyncSupervisor, CgroupError, KilledAfterGraceWarning, Supervisor
from tether._linux import _cgroup
from tether._linux._cgroup import Cgroup

__all__ = ["pins"]  # the fixture, imported for use here

DOUBLE_FORK = """
import os, signal, sys, time
read_end, write_end = os.pipe()
middle = os.fork()
if middle == 0:
    if os.fork() == 0:
        os.setsid()
        if sys.argv[1] == "stubborn":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.write(write_end, b"%d\\n" % os.getpid())
        time.sleep(60)
    os._exit(0)
os.waitpid(middle, 0)
os.close(write_end)
print(os.fdopen(read_end).readline().strip(), flush=True)
sys.stdin.read()
"""
"""Prints the pid of a grandchild in a session of its own (SIGTERM ignored if "stubborn")."""


def _writable_parent() -> str | None:
    try:
        return _cgroup.writable_parent()
    except CgroupError:
        return None


PARENT = _writable_parent()
needs_cgroups = pytest.mark.skipif(PARENT is None, reason="no writable cgroup v2 directory")


def cgroup_of(pid: int) -> str:
    """The cgroup v2 directory of process *pid*."""
    mount, _ = _cgroup.cgroup2_mount()
    with open(f"/proc/{pid}/cgroup") as lines:
        path = next(line[3:].strip() for line in lines if line.startswith("0::"))
    return os.path.join(mount, path.lstrip("/"))


def ours(parent: str) -> set[str]:
    """The cgroups this process has created under *parent* (other test runs may share it)."""
    return {name for name in os.listdir(parent) if name.startswith(f"tether-{os.getpid()}-")}


def double_forked(sup: Supervisor, pins: Pins, mode: str) -> tuple[tether.Process, str]:
    """Start DOUBLE_FORK under *sup*; pin the grandchild; return the child and its cgroup."""
    process = sup.spawn([PY, "-c", DOUBLE_FORK, mode], stdin=tether.PIPE, stdout=tether.PIPE)
    assert process.stdout is not None
    grandchild = int(process.stdout.readline())
    pins.pin(grandchild)
    assert os.getsid(grandchild) == grandchild != os.getpgid(process.pid)
    directory = cgroup_of(process.pid)
    assert cgroup_of(grandchild) == directory
    assert os.path.basename(directory).startswith(f"tether-{os.getpid()}-")
    return process, directory


# --- finding the hierarchy -------------------------------------------------------------


def test_the_cgroup2_mount_is_read_from_mountinfo(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 0:21 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "41 31 0:38 /outer /mnt/with\\040space rw,relatime shared:9 - cgroup2 cgroup2 rw\n"
        "42 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    )
    assert _cgroup.cgroup2_mount(str(mountinfo)) == ("/sys/fs/cgroup/unified", "/")
    mountinfo.write_text("22 1 0:21 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")
    with pytest.raises(CgroupError, match="no cgroup2"):
        _cgroup.cgroup2_mount(str(mountinfo))


def test_our_cgroup_is_read_from_proc(tmp_path: Path) -> None:
    mount, _ = _cgroup.cgroup2_mount()
    proc_cgroup = tmp_path / "cgroup"
    proc_cgroup.write_text("4:memory:/elsewhere\n0::/a/b\n")
    assert _cgroup.own_cgroup_dir(str(proc_cgroup)) == os.path.join(mount, "a/b")
    proc_cgroup.write_text("4:memory:/elsewhere\n")
    with pytest.raises(CgroupError, match="no cgroup v2"):
        _cgroup.own_cgroup_dir(str(proc_cgroup))
    assert os.path.isdir(_cgroup.own_cgroup_dir())


def test_cgroup_mode_fails_clearly_where_cgroups_cannot_be_created(tmp_path: Path) -> None:
    sup = Supervisor(kill="cgroup", cgroup_parent=tmp_path)
    with pytest.raises(CgroupError, match="cannot create cgroups here") as caught, sup:
        pytest.fail("entered a cgroup scope without a cgroup")
    assert isinstance(caught.value, tether.TetherError)
    assert caught.value.filename == str(tmp_path / "cgroup.procs")


# --- one cgroup ------------------------------------------------------------------------


@needs_cgroups
def test_a_cgroup_is_watched_killed_and_removed() -> None:
    assert PARENT is not None
    cgroup = Cgroup.create(PARENT)
    try:
        assert not cgroup.populated()
        with tether.spawn(
            [PY, "-c", WAIT_FOR_STDIN], cgroup=cgroup.path, stdin=tether.PIPE, stdout=tether.PIPE
        ) as process:
            assert process.stdout is not None
            assert process.stdout.readline() == b"ready\n"
            assert cgroup.populated()
            assert cgroup.pids() == [process.pid]
            assert not cgroup.wait_empty(0.01)
            cgroup.signal_members(signal.SIGUSR1, exclude=process.pid)
            assert process.poll() is None
            cgroup.kill()
            assert cgroup.wait_empty(30)
            assert process.wait() == tether.Signaled(signal.SIGKILL)
    finally:
        cgroup.remove()
    assert not os.path.exists(cgroup.path)
    cgroup.remove()  # idempotent


# --- supervision -----------------------------------------------------------------------


@needs_cgroups
def test_a_double_forked_setsid_grandchild_is_stopped(pins: Pins) -> None:
    started_at = time.monotonic()
    with Supervisor(grace=30, kill="cgroup") as sup:
        process, directory = double_forked(sup, pins, "polite")
    assert pins.dead() == [True]
    assert time.monotonic() - started_at < 10, "the stop signal reached the grandchild"
    assert process.status == tether.Signaled(signal.SIGTERM)
    assert not os.path.exists(directory)


@needs_cgroups
def test_a_stubborn_double_forked_grandchild_dies_by_cgroup_kill(pins: Pins) -> None:
    with pytest.warns(KilledAfterGraceWarning), Supervisor(grace=0.3, kill="cgroup") as sup:  # noqa: PT031
        process, directory = double_forked(sup, pins, "stubborn")
        assert process.stdin is not None
        process.stdin.close()  # the child exits: only the grandchild is left
        assert process.wait(timeout=30) == tether.Exited(0)
    assert pins.dead() == [True]
    assert not os.path.exists(directory)


@needs_cgroups
def test_an_exception_in_a_cgroup_scope_leaves_nothing_behind(pins: Pins) -> None:
    with pytest.raises(KeyboardInterrupt), Supervisor(grace=30, kill="cgroup") as sup:  # noqa: PT012
        _, directory = double_forked(sup, pins, "polite")
        raise KeyboardInterrupt
    assert pins.dead() == [True]
    assert not os.path.exists(directory)


@needs_cgroups
def test_a_supervising_child_and_its_own_cgroups_are_stopped_and_removed(pins: Pins) -> None:
    started_at = time.monotonic()
    with Supervisor(grace=30, kill="cgroup") as sup:
        supervising = sup.spawn(
            [PY, "-c", SUPERVISING, "cgroup"], stdin=tether.PIPE, stdout=tether.PIPE
        )
        assert supervising.stdout is not None
        grandchild = int(supervising.stdout.readline())
        pins.pin(grandchild)
        directory = cgroup_of(supervising.pid)
        assert os.path.dirname(cgroup_of(grandchild)) == directory, "a cgroup nested in ours"
    assert time.monotonic() - started_at < 10, "the stop signal reached the nested cgroup"
    assert pins.dead() == [True]
    assert not os.path.exists(directory)


@needs_cgroups
def test_a_failed_spawn_removes_its_cgroup() -> None:
    assert PARENT is not None
    before = ours(PARENT)
    with Supervisor(kill="cgroup") as sup, pytest.raises(FileNotFoundError):
        sup.spawn(["/nonexistent/program"])
    assert ours(PARENT) == before


@needs_cgroups
def test_an_explicit_cgroup_option_is_refused_in_cgroup_mode() -> None:
    assert PARENT is not None
    with Supervisor(kill="cgroup") as sup, pytest.raises(ValueError, match="drop cgroup="):
        sup.spawn(["true"], cgroup=PARENT)


@needs_cgroups
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_async_cgroup_scope_stops_a_double_forked_grandchild(
    anyio_backend: str, pins: Pins
) -> None:
    directories = []
    with pytest.warns(KilledAfterGraceWarning), anyio.CancelScope() as scope:  # noqa: PT031
        async with AsyncSupervisor(grace=0.3, kill="cgroup") as sup:
            for mode in ("polite", "stubborn"):
                process = await sup.start(
                    [PY, "-c", DOUBLE_FORK, mode], stdin=tether.PIPE, stdout=tether.PIPE
                )
                assert process.stdout is not None
                line = b""
                while not line.endswith(b"\n"):
                    line += await process.stdout.receive(1)
                pins.pin(int(line))
                directories.append(cgroup_of(process.pid))
            scope.cancel()
            await anyio.sleep_forever()
    assert pins.dead() == [True, True]
    assert not any(os.path.exists(directory) for directory in directories)


@needs_cgroups
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_a_cancelled_start_removes_its_cgroup(anyio_backend: str) -> None:
    assert PARENT is not None
    before = ours(PARENT)
    async with AsyncSupervisor(kill="cgroup") as sup:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await sup.start(["true"])
        assert scope.cancelled_caught
        assert ours(PARENT) == before


@needs_cgroups
def test_children_die_with_a_sigkilled_supervising_process(pins: Pins) -> None:
    with tether.spawn(
        [PY, "-c", SUPERVISING, "cgroup"], stdin=tether.PIPE, stdout=tether.PIPE
    ) as supervising:
        assert supervising.stdout is not None
        child = int(supervising.stdout.readline())
        pins.pin(child)
        directory = cgroup_of(child)
        try:
            supervising.kill()
            assert supervising.wait() == tether.Signaled(signal.SIGKILL)
            assert pins.dead(timeout=30) == [True]
        finally:  # nobody is left to remove the supervisor's cgroup: no mechanism does
            with contextlib.suppress(OSError):
                Path(directory, "cgroup.kill").write_text("1")
            _remove_when_empty(directory)


def _remove_when_empty(directory: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            os.rmdir(directory)
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
        else:
            return


@needs_cgroups
@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_cgroups_are_made_0755_whatever_the_umask(umask: int) -> None:
    assert PARENT is not None
    previous = os.umask(umask)
    try:
        cgroup = Cgroup.create(PARENT)
    finally:
        os.umask(previous)
    try:
        assert stat.S_IMODE(os.stat(cgroup.path).st_mode) == 0o755
    finally:
        cgroup.remove()

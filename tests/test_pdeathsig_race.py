"""The ``pdeathsig`` race: a parent that dies before its child's ``prctl`` leaves no child.

``PR_SET_PDEATHSIG`` arms the signal for a parent that is alive *now*; a parent that
died between the clone and the ``prctl`` is never reported, and the child, adopted by
init, would run its program for ever. The child therefore compares ``getppid()`` with
the pid its parent recorded before the clone and dies at once if they differ.

To hit that window every time, the child is stopped inside it by the cgroup v2
freezer: it joins a frozen cgroup (the ``cgroup=`` option, or ``cgroup_parent=`` in
``kill="cgroup"``), which is the setup step right before the ids and the ``prctl``,
and freezes on its way back from that write. Its parent, blocked in the spawn, is
then SIGKILLed and reaped, and only then is the cgroup thawed. A control run without
``pdeathsig`` shows the construction really lets the child run on to its program.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether
from tether import Supervisor
from tether._linux import _cgroup

PY = sys.executable
INTERMEDIATE = """
import sys
from tether import Supervisor
mode, backend, frozen, deathsig = sys.argv[1:5]
options = {"backend": backend, "pdeathsig": int(deathsig) or None}
if mode == "cgroup":
    sup = Supervisor(kill="cgroup", cgroup_parent=frozen)
else:
    sup = Supervisor(kill=mode)
    options["cgroup"] = frozen
with sup:
    # never returns: the child is frozen before its prctl, and says so if it ever runs
    sup.spawn(["sh", "-c", "echo ran; exec sleep 60"], **options)
"""


def _writable_parent() -> str | None:
    try:
        return _cgroup.writable_parent()
    except tether.CgroupError:
        return None


PARENT = _writable_parent()
pytestmark = pytest.mark.skipif(PARENT is None, reason="no writable cgroup v2 directory")


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _pids_below(directory: str) -> list[int]:
    found: list[int] = []
    for where, _, _ in os.walk(directory):
        with contextlib.suppress(FileNotFoundError), open(os.path.join(where, "cgroup.procs")) as f:
            found.extend(int(pid) for pid in f.read().split())
    return found


def _wait_populated(directory: str, want: bool, timeout: float) -> bool:
    """Wait until ``cgroup.events`` of *directory* says ``populated`` is *want*."""
    fd = os.open(os.path.join(directory, "cgroup.events"), os.O_RDONLY | os.O_CLOEXEC)
    try:
        with select.epoll() as watch:
            watch.register(fd, select.EPOLLPRI)
            while (b"populated 1" in os.pread(fd, 4096, 0)) != want:
                if not watch.poll(timeout):
                    return False
        return True
    finally:
        os.close(fd)


@pytest.fixture
def frozen() -> Iterator[str]:
    """A frozen cgroup of the test's own; killed, thawed and removed at teardown."""
    assert PARENT is not None
    path = os.path.join(PARENT, f"race-{os.getpid()}-{os.urandom(4).hex()}")
    os.mkdir(path)
    try:
        _write(os.path.join(path, "cgroup.freeze"), b"1")
        yield path
    finally:
        for where, _, _ in os.walk(path):
            with contextlib.suppress(FileNotFoundError):
                _write(os.path.join(where, "cgroup.kill"), b"1")
        _write(os.path.join(path, "cgroup.freeze"), b"0")
        assert _wait_populated(path, False, 30)
        _cgroup._remove_tree(path)


def _orphan_in_the_window(
    frozen: str, mode: str, backend: str, deathsig: int
) -> tuple[int | None, int]:
    """Freeze a child of a supervising process before its prctl, SIGKILL and reap the parent,
    thaw the child; return a pidfd of the (former) child and the read end of its stdout.

    The pidfd is None when the child is gone already: in cgroup mode the lifeline may kill
    it (with its cgroup) as soon as the parent dies, before the check itself could."""
    argv = [PY, "-c", INTERMEDIATE, mode, backend, frozen, str(deathsig)]
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        with tether.spawn(argv, start_new_session=True, stdout=write_end) as parent:
            os.close(write_end)
            write_end = -1
            try:
                assert _wait_populated(frozen, True, 30), "the child never joined the cgroup"
            finally:
                parent.kill()
            assert parent.wait(timeout=30) == tether.Signaled(signal.SIGKILL)
        children = _pids_below(frozen)  # the frozen child, unless the lifeline got it
        assert len(children) == 1 or (mode == "cgroup" and not children), children
        pidfd = None
        if children:
            with contextlib.suppress(ProcessLookupError):  # the lifeline again
                pidfd = os.pidfd_open(children[0])
        assert pidfd is not None or mode == "cgroup"
    except BaseException:
        os.close(read_end)
        raise
    finally:
        if write_end >= 0:
            os.close(write_end)
    _write(os.path.join(frozen, "cgroup.freeze"), b"0")
    return pidfd, read_end


@pytest.mark.parametrize("backend", ["native", "fork"])
@pytest.mark.parametrize("mode", ["group", "process", "cgroup"])
def test_a_child_whose_parent_died_before_its_prctl_dies_too(
    frozen: str, mode: str, backend: str
) -> None:
    pidfd, output = _orphan_in_the_window(frozen, mode, backend, int(signal.SIGKILL))
    try:
        assert os.read(output, 100) == b"", "the orphaned child ran its program"
        if pidfd is not None:
            assert select.select([pidfd], [], [], 30)[0] == [pidfd]
    finally:
        if pidfd is not None:
            os.close(pidfd)
        os.close(output)
    assert _wait_populated(frozen, False, 30)


@pytest.mark.parametrize("backend", ["native", "fork"])
def test_without_pdeathsig_the_same_child_runs_on(frozen: str, backend: str) -> None:
    """The control: the construction really lets the child reach its program."""
    pidfd, output = _orphan_in_the_window(frozen, "group", backend, 0)
    assert pidfd is not None, "in group mode nothing else kills it"
    try:
        assert os.read(output, 100) == b"ran\n"
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    finally:
        os.close(pidfd)
        os.close(output)


def test_posix_spawn_refuses_pdeathsig() -> None:
    """posix_spawn cannot run the check in the child, so it never spawns with pdeathsig."""
    with pytest.raises(ValueError, match="posix_spawn backend cannot honour the pdeathsig"):
        tether.spawn(["true"], backend="posix_spawn", pdeathsig=signal.SIGKILL)


def _spawning_thread(pid: int) -> str | None:
    """The name of the thread of ours whose child *pid* is (the thread pdeathsig watches)."""
    names = {thread.native_id: thread.name for thread in threading.enumerate()}
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/self/task/{tid}/children") as f:
            if str(pid) in f.read().split():
                return names.get(int(tid), f"unknown thread {tid}")
    return None


def test_restarts_from_the_watcher_thread_are_spawned_by_the_spawner_thread(
    tmp_path: Path,
) -> None:
    """The watcher thread ends with the scope: a child armed against it would die early."""
    flag = tmp_path / "flag"
    script = f"if [ -e {flag} ]; then echo $$; exec sleep 60; fi; touch {flag}; exit 1"
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        with Supervisor(grace=5) as sup:
            sup.spawn(["sh", "-c", script], stdout=write_end, restart="on-failure")
            restarted = int(os.read(read_end, 100))  # printed by the second incarnation
            assert _spawning_thread(restarted) == "tether-spawner"
    finally:
        os.close(read_end)
        os.close(write_end)

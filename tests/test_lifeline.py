"""The lifeline: a SIGKILLed ``kill="cgroup"`` supervisor leaves no process and no cgroup.

Each scenario runs a real supervising process (``python -c``: a sync ``Supervisor``, or
an ``AsyncSupervisor`` on asyncio or trio) whose children double-fork a grandchild into
a session of its own, that ignores SIGTERM: the process ``pdeathsig`` cannot reach.
The supervising process prints the grandchildren's pids and its lifeline's, which the
test pins with pidfds (and kills at teardown, should a check fail), then SIGKILLs it.
Once the lifeline has exited, every grandchild must be dead and every cgroup gone.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether
from tests.test_cgroup import DOUBLE_FORK, PARENT, needs_cgroups
from tests.test_supervisor import Pins, pins
from tether._linux import _lifeline, _pidfd
from tether._spawn import SpawnReceipt
from tether._supervise import _sentinel

__all__ = ["pins"]  # the fixture, imported for use here

pytestmark = needs_cgroups
PY = sys.executable

SYNC = """
import sys
import tether
from tether import Supervisor
from tether._supervise._sentinel import LIFELINE

def start(sup):
    child = sup.spawn([sys.executable, "-c", sys.argv[1], "stubborn"],
                      stdin=tether.PIPE, stdout=tether.PIPE)
    print("grandchild", int(child.stdout.readline()), flush=True)

with Supervisor(kill="cgroup") as sup:
    for line in sys.stdin:
        start(sup)
        print("lifeline", LIFELINE.held()[0], flush=True)
"""
"""Starts one double-forking child per line read; prints its grandchild, then the lifeline."""

ASYNC = """
import sys
import anyio
from tether import AsyncSupervisor, PIPE
from tether._supervise._sentinel import LIFELINE

async def main():
    async with AsyncSupervisor(kill="cgroup") as sup:
        async with await anyio.open_file("/dev/stdin", "rb") as stdin:
            while await stdin.readline():
                child = await sup.start([sys.executable, "-c", sys.argv[1], "stubborn"],
                                        stdin=PIPE, stdout=PIPE)
                line = b""
                while not line.endswith(b"\\n"):
                    line += await child.stdout.receive()
                print("grandchild", int(line), flush=True)
                print("lifeline", LIFELINE.held()[0], flush=True)

anyio.run(main, backend=sys.argv[2])
"""
"""The same on an AsyncSupervisor; argv[2] names the event loop."""


class Supervising:
    """A supervising process under test, and what it reported."""

    def __init__(self, argv: list[str], pins: Pins) -> None:
        self.pins = pins
        self.process = tether.spawn(
            argv, stdin=tether.PIPE, stdout=tether.PIPE, start_new_session=True
        )
        self.grandchildren: list[int] = []
        self.lifelines: list[int] = []
        self.pidfds: dict[int, int] = {}
        """A pidfd (in *pins*) of each pid reported."""

    def start_child(self) -> None:
        """Have it start one more child; pin the grandchild and the lifeline it reports."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None
        assert stdout is not None
        stdin.write(b"go\n")
        stdin.flush()
        for _ in range(2):
            what, pid = stdout.readline().split()
            if what == b"grandchild":
                self.pidfds[int(pid)] = self.pins.pin(int(pid))
                self.grandchildren.append(int(pid))
            else:
                assert what == b"lifeline"
                if int(pid) not in self.lifelines:
                    self.pidfds[int(pid)] = self.pins.pin(int(pid))
                    self.lifelines.append(int(pid))

    def cgroups(self) -> list[str]:
        assert PARENT is not None
        prefix = f"tether-{self.process.pid}-"
        return sorted(name for name in os.listdir(PARENT) if name.startswith(prefix))

    def sigkill(self) -> None:
        self.process.kill()
        assert self.process.wait(timeout=30) == tether.Signaled(signal.SIGKILL)

    def close(self) -> None:
        """Teardown: whatever a failed check left, kill it and remove it."""
        with self.process:
            self.process.kill()
        assert PARENT is not None
        _lifeline.release([os.path.join(PARENT, name) for name in self.cgroups()])


@pytest.fixture
def supervising(pins: Pins) -> Iterator[list[Supervising]]:
    made: list[Supervising] = []
    yield made
    for each in made:
        each.close()


def _run(made: list[Supervising], pins: Pins, argv: list[str]) -> Supervising:
    each = Supervising(argv, pins)
    made.append(each)
    return each


SCRIPTS = {
    "sync": [PY, "-c", SYNC, DOUBLE_FORK],
    "asyncio": [PY, "-c", ASYNC, DOUBLE_FORK, "asyncio"],
    "trio": [PY, "-c", ASYNC, DOUBLE_FORK, "trio"],
}


@pytest.mark.parametrize("api", SCRIPTS)
def test_a_sigkilled_supervisor_leaves_no_process_and_no_cgroup(
    supervising: list[Supervising], pins: Pins, api: str
) -> None:
    sup = _run(supervising, pins, SCRIPTS[api])
    sup.start_child()
    sup.start_child()
    assert len(sup.cgroups()) == 2
    [lifeline] = sup.lifelines
    assert os.getsid(lifeline) == lifeline, "the lifeline leads a session of its own"
    sup.sigkill()
    assert _pidfd.wait_readable(sup.pidfds[lifeline], 30)
    assert pins.dead() == [True] * len(pins.fds)
    assert sup.cgroups() == []


def test_a_dead_lifeline_is_restarted_and_told_every_cgroup(
    supervising: list[Supervising], pins: Pins
) -> None:
    sup = _run(supervising, pins, SCRIPTS["sync"])
    sup.start_child()
    [first] = sup.lifelines
    signal.pidfd_send_signal(sup.pidfds[first], signal.SIGKILL)
    assert _pidfd.wait_readable(sup.pidfds[first], 30)
    sup.start_child()  # the next cgroup finds it dead and starts another
    assert len(sup.lifelines) == 2
    assert len(sup.cgroups()) == 2
    sup.sigkill()
    assert _pidfd.wait_readable(sup.pidfds[sup.lifelines[1]], 30)
    assert pins.dead() == [True] * len(pins.fds)
    assert sup.cgroups() == [], "the new lifeline also removed the cgroup made before it"


def test_stale_cgroups_of_a_dead_supervisor_are_swept_at_start_up(
    supervising: list[Supervising], pins: Pins
) -> None:
    """Supervisor and lifeline SIGKILLed both: the next supervising process cleans up."""
    sup = _run(supervising, pins, SCRIPTS["sync"])
    sup.start_child()
    [lifeline] = sup.lifelines
    signal.pidfd_send_signal(sup.pidfds[lifeline], signal.SIGKILL)
    assert _pidfd.wait_readable(sup.pidfds[lifeline], 30)
    sup.sigkill()
    [stale] = sup.cgroups()
    assert pins.dead() == [False, True], "the setsid grandchild outlived both"
    later = tether.run(
        [
            PY,
            "-c",
            "from tether import Supervisor\n"
            "with Supervisor(kill='cgroup') as sup: sup.spawn(['true']).wait()",
        ],
        timeout=60,
    )
    assert later.returncode == 0
    assert sup.cgroups() == [], f"{stale} was not swept"
    assert pins.dead(timeout=30) == [True, True]


def test_the_cgroups_of_a_live_owner_are_never_stale(pins: Pins) -> None:
    assert PARENT is not None
    with tether.spawn(["sleep", "60"]) as owner:
        path = os.path.join(PARENT, f"tether-{owner.pid}-1")
        os.mkdir(path)
        try:
            os.chmod(path, 0o755)  # as tether makes them: the change time is the making
            assert path not in _lifeline.stale(PARENT, spare=os.getpid())
            owner.kill()
            owner.wait()
            assert path in _lifeline.stale(PARENT, spare=os.getpid())
        finally:
            _lifeline.release([path])
    assert not os.path.exists(path)


def test_a_reused_owner_pid_does_not_protect_a_stale_cgroup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The owner's pid is alive, but that process started after the cgroup was made."""
    assert PARENT is not None
    with tether.spawn(["sleep", "60"]) as owner:
        path = os.path.join(PARENT, f"tether-{owner.pid}-1")
        os.mkdir(path)
        try:
            later = _lifeline._boot_seconds_at_start(owner.pid)
            assert later is not None
            monkeypatch.setattr(_lifeline, "_boot_seconds_at_start", lambda pid: later + 3600)
            assert path in _lifeline.stale(PARENT, spare=os.getpid())
            assert path not in _lifeline.stale(PARENT, spare=owner.pid)
        finally:
            _lifeline.release([path])
            owner.kill()


def test_serve_follows_the_announcements_and_releases_on_the_owners_death() -> None:
    """The lifeline's loop, in-process: records split across writes, a withdrawal, and
    announcements still in the pipe when the owner's death is seen."""
    assert PARENT is not None
    paths = [os.path.join(PARENT, f"tether-test-{os.getpid()}-{n}") for n in range(3)]
    for path in paths:
        os.mkdir(path)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    owner = tether.spawn(["sleep", "60"])
    owner_fd = os.pidfd_open(owner.pid)  # ours: the handle closes its own once reaped
    member = tether.spawn(["sleep", "60"], cgroup=paths[0])
    try:
        record = b"+" + os.fsencode(paths[0]) + b"\0+" + os.fsencode(paths[1])
        os.write(write_end, record[:7])
        os.write(write_end, record[7:] + b"\0-" + os.fsencode(paths[1]) + b"\0")
        os.write(write_end, b"+" + os.fsencode(paths[2]) + b"\0")  # read by the final drain
        owner.kill()
        owner.wait()
        released = _lifeline.serve(owner_fd, read_end)
        assert released == {paths[0], paths[2]}
        assert member.wait(timeout=30) == tether.Signaled(signal.SIGKILL)
        assert [os.path.exists(path) for path in paths] == [False, True, False]
    finally:
        member.kill()
        member.wait()
        owner.wait()
        os.close(owner_fd)
        os.close(read_end)
        os.close(write_end)
        _lifeline.release(paths)


def test_serve_keeps_watching_the_owner_when_the_pipe_closes() -> None:
    """A closed pipe (an exec, a forked child's exit) is no death: the pidfd decides."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    os.close(write_end)
    with tether.spawn(["sleep", "60"]) as owner:
        owner_fd = os.pidfd_open(owner.pid)
        owner.kill()
        owner.wait()
        try:
            assert _lifeline.serve(owner_fd, read_end) == set()
        finally:
            os.close(owner_fd)
            os.close(read_end)


def test_without_a_pidfd_serve_watches_for_a_new_parent(monkeypatch: pytest.MonkeyPatch) -> None:
    """No pidfd of the owner: the owner is the parent, gone once getppid() changes."""
    assert PARENT is not None
    path = os.path.join(PARENT, f"tether-test-{os.getpid()}-nopidfd")
    os.mkdir(path)
    monkeypatch.setattr(_lifeline, "_PARENT_CHECK", 0.01)
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        os.write(write_end, b"+" + os.fsencode(path) + b"\0")
        assert _lifeline.serve(-1, read_end, owner=os.getppid() + 1) == {path}
        assert not os.path.exists(path)
    finally:
        os.close(read_end)
        os.close(write_end)
        _lifeline.release([path])


def test_a_lifeline_that_does_not_answer_ready_is_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    impostor = tmp_path / "impostor.py"
    impostor.write_text("print('nope')\n")
    monkeypatch.setattr(_sentinel, "_SCRIPT", str(impostor))
    running = _sentinel._Running(SpawnReceipt(), -1)
    with pytest.raises(tether.CgroupError, match=r"did not start .*nope"):
        _sentinel._start(running)
    running.retire()
    assert running.receipt.pid == 0
    assert running.control == -1


def test_a_lifeline_that_stops_reading_counts_as_wedged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sentinel, "_SEND_TIMEOUT", 0.01)
    read_end, write_end = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        running = _sentinel._Running(SpawnReceipt(), write_end)
        assert not running.alive(), "a receipt without a child is no live lifeline"
        with pytest.raises(OSError, match="does not read"):
            running.send(b"x" * (1 << 20))  # more than a pipe holds
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_forked_child_forgets_the_parents_lifeline() -> None:
    assert PARENT is not None
    with tether.Supervisor(kill="cgroup") as sup:
        sup.spawn(["true"]).wait()
    pid, fds = _sentinel.LIFELINE.held()
    assert pid is not None
    child = os.fork()
    if child == 0:  # pragma: no cover - the forked child
        os._exit(0 if _sentinel.LIFELINE.held() == (None, frozenset()) else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _sentinel.LIFELINE.held() == (pid, fds)


def test_an_interrupted_lifeline_start_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while waiting for ``ready``: the started lifeline is killed and reaped, the
    pipes closed (the leak guard checks the child and the fds)."""

    def interrupted(fd: int) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr(_sentinel, "_read_line", interrupted)
    lifeline = _sentinel.Lifeline()
    with pytest.raises(KeyboardInterrupt):
        lifeline._restart()
    assert lifeline.held() == (None, frozenset())

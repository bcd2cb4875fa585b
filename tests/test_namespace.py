"""kill="namespace": each child in a PID namespace of its own, behind tether's C init.

The scenarios of the group-mode tests (statuses with signals and core dumps, stop with
grace, restart, exceptions and cancellation, on both event loops), plus what only this
mode does: ``setsid`` double-forked grandchildren die with their scope, with the child
that started them, and with a supervising process that is SIGKILLed.

Grandchildren are not our children: each is pinned with a pidfd as soon as its pid is
known, and the ``pins`` fixture SIGKILLs whatever a failing test left alive. A
grandchild in a child namespace sees itself under another pid; it reports the pid
``/proc/self`` names, which is its pid in *our* namespace (procfs is not remounted).
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import signal
import socket
import threading
from pathlib import Path

import anyio
import pytest

import tether
from tests.test_interrupts import Interrupted, interrupts
from tests.test_supervisor import IGNORE_TERM, PY, WAIT_FOR_STDIN, Pins, pins
from tether import AsyncSupervisor, KilledAfterGraceWarning, NamespaceError, Supervisor
from tether._linux import _pidfd
from tether._native import spawner
from tether._spawn._receipt import SpawnReceipt
from tether._supervise import _namespace
from tether._supervise._tree import ProcessTree

__all__ = ["pins"]  # the fixture, imported for use here

STORM_ROUNDS = 150
STORM_WINDOW = 0.02
"""Seconds within which each interrupt lands: about what a namespace launch takes here."""

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason='kill="namespace" needs CAP_SYS_ADMIN: these tests run as root'
)

DAEMONIZE = """
import os, sys
def daemon():
    done, written = os.pipe()  # close-on-exec: EOF once the daemon has exec'd
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            pid = os.readlink("/proc/self")
            if len(sys.argv) > 1:
                with open(sys.argv[1], "a") as f:
                    f.write(pid + "\\n")
            os.write(1, (pid + "\\n").encode())  # one write: siblings share this pipe
            os.execvp("sleep", ["sleep", "60"])
        os._exit(0)
    os.close(written)
    os.wait()
    os.read(done, 1)
    os.close(done)
for _ in range(2):
    daemon()
os.write(1, b"ready\\n")
sys.stdin.read()
"""
"""A child that starts two ``setsid`` double-forked ``sleep`` daemons and prints their pids
(as we see them), then "ready", then waits for its stdin to close."""

SUPERVISING = """
import sys
import anyio
from tether import AsyncSupervisor, Supervisor
api, pidfile, daemonize = sys.argv[1:4]
argv = [sys.executable, "-c", daemonize, pidfile]
if api == "sync":
    with Supervisor(kill="namespace") as sup:
        for _ in range(2):
            sup.spawn(argv)
        sys.stdin.read()
else:
    async def main():
        async with AsyncSupervisor(kill="namespace") as sup:
            for _ in range(2):
                await sup.start(argv)
            await anyio.wait_readable(sys.stdin)
    anyio.run(main, backend=api)
"""
"""A supervising process: two namespace-mode children, each with two daemons."""


def started(sup: Supervisor, script: str = WAIT_FOR_STDIN) -> tether.Process:
    """Spawn a Python child under *sup* and return once it has printed "ready"."""
    process = sup.spawn([PY, "-c", script], stdin=tether.PIPE, stdout=tether.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    return process


def with_daemons(sup: Supervisor, pins: Pins) -> tether.Process:
    """Start DAEMONIZE under *sup*, pin its two daemons, return once they run."""
    process = sup.spawn([PY, "-c", DAEMONIZE], stdin=tether.PIPE, stdout=tether.PIPE)
    assert process.stdout is not None
    for _ in range(2):
        pins.pin(int(process.stdout.readline()))
    assert process.stdout.readline() == b"ready\n"
    assert pins.dead() == [False, False]
    return process


def tree_of(sup: Supervisor | AsyncSupervisor, process: object) -> ProcessTree:
    return next(tree for tree in sup._trees if tree.process is process)


# --- statuses and the pid --------------------------------------------------------------


def test_the_child_is_ours_with_its_real_status_and_pid() -> None:
    with Supervisor(kill="namespace") as sup:
        process = sup.spawn(["sh", "-c", "echo $$; exit 3"], stdout=tether.PIPE)
        assert process.stdout is not None
        assert process.stdout.read() == b"2\n"  # PID 1 is the init
        with open(f"/proc/{process.pid}/status") as status:
            nspid = next(line for line in status if line.startswith("NSpid:"))
        assert nspid.split()[1:] == [str(process.pid), "2"]
        assert process.wait() == tether.Exited(3)
        assert process.status is not None
        assert process.status.rusage is not None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGUSR1])
def test_a_signal_status_is_the_childs_own(sig: int) -> None:
    with Supervisor(kill="namespace") as sup:
        process = started(sup)
        process.send_signal(sig)
        assert process.wait() == tether.Signaled(sig)
        assert str(process.status) == f"killed by {signal.Signals(sig).name}"


def test_a_core_dump_is_reported(tmp_path: Path) -> None:
    with Supervisor(kill="namespace") as sup:
        process = sup.spawn(
            ["sh", "-c", "kill -SEGV $$"], cwd=tmp_path, limits=tether.Limits(core="1M")
        )
        status = process.wait()
    assert status == tether.Signaled(signal.SIGSEGV, core_dumped=True)
    assert str(status) == "killed by SIGSEGV (core dumped)"


def test_a_stopped_child_can_be_continued() -> None:
    with Supervisor(kill="namespace", grace=30, stop_signal=signal.SIGUSR1) as sup:
        process = started(sup)
        process.send_signal(signal.SIGSTOP)
    assert process.status == tether.Signaled(signal.SIGUSR1)


# --- stopping --------------------------------------------------------------------------


def test_a_child_ignoring_the_stop_signal_is_killed_after_the_grace() -> None:
    with (  # noqa: PT031
        pytest.warns(KilledAfterGraceWarning),
        Supervisor(kill="namespace", grace=0.3) as sup,
    ):
        stubborn = started(sup, IGNORE_TERM)
        polite = started(sup)
    assert stubborn.status == tether.Signaled(signal.SIGKILL)
    assert polite.status == tether.Signaled(signal.SIGTERM)
    assert all(tree.closed for tree in sup._trees)


def test_setsid_daemons_die_with_the_scope(pins: Pins) -> None:
    with Supervisor(kill="namespace", grace=30) as sup:
        process = with_daemons(sup, pins)
    assert process.status == tether.Signaled(signal.SIGTERM)
    assert pins.dead() == [True, True]


def test_setsid_daemons_die_with_the_child_that_started_them(pins: Pins) -> None:
    with Supervisor(kill="namespace", grace=30) as sup:
        process = with_daemons(sup, pins)
        assert process.stdin is not None
        process.stdin.close()
        assert process.wait() == tether.Exited(0)
        assert pins.dead(timeout=30) == [True, True]  # the init left with the child
        tree = tree_of(sup, process)
        assert tree.namespace is not None
        assert tree.namespace.init is not None
        assert tree.namespace.init.wait(timeout=30) == tether.Exited(0)


def test_the_init_forwards_the_signals_sent_to_it() -> None:
    with Supervisor(kill="namespace") as sup:
        process = started(sup)
        namespace = tree_of(sup, process).namespace
        assert namespace is not None
        assert namespace.init is not None
        namespace.init.send_signal(signal.SIGUSR1)
        assert process.wait() == tether.Signaled(signal.SIGUSR1)


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_an_exception_inside_the_scope_leaves_nothing_behind(
    error: type[BaseException], pins: Pins
) -> None:
    with pytest.raises(error, match="boom"), Supervisor(kill="namespace", grace=30) as sup:  # noqa: PT012
        process = with_daemons(sup, pins)
        raise error("boom")
    assert process.status == tether.Signaled(signal.SIGTERM)
    assert pins.dead() == [True, True]


def test_a_failing_child_is_restarted_in_a_new_namespace() -> None:
    policy = tether.RestartPolicy(
        mode="on-failure", backoff=tether.Backoff(initial=0.01, jitter=0), max_restarts=2
    )
    with Supervisor(kill="namespace") as sup:
        first = sup.spawn(["sh", "-c", "exit 1"], restart=policy)
        with pytest.raises(tether.SupervisedChildFailed, match="2 restarts"):
            sup.wait_all(timeout=30)
    assert first.status == tether.Exited(1)
    assert sup.supervised[0].restarts == 2
    assert sup.supervised[0].process is not first


PIDFD_THREAD = os.O_EXCL
"""``pidfd_open`` of a thread (Linux 6.9): readable once that very thread has exited."""


def test_a_child_outlives_the_short_lived_thread_that_spawned_it() -> None:
    """pdeathsig fires when the *thread* that spawned a process exits: the init and the
    child are spawned by tether's long-lived spawner thread, not by the caller's."""
    handles: list[tether.Process] = []
    spawned, may_exit = threading.Event(), threading.Event()

    def short_lived() -> None:
        handles.append(started(sup))
        spawned.set()
        may_exit.wait()

    with Supervisor(kill="namespace") as sup:
        worker = threading.Thread(target=short_lived)
        worker.start()
        spawned.wait()
        assert worker.native_id is not None
        try:
            thread_fd = os.pidfd_open(worker.native_id, PIDFD_THREAD)
        except OSError as exc:  # pragma: no cover - before Linux 6.9
            may_exit.set()
            worker.join()
            pytest.skip(f"no pidfd for a thread here: {exc}")
        may_exit.set()
        worker.join()
        try:
            assert _pidfd.wait_readable(thread_fd, 30), "the thread has exited for good"
        finally:
            os.close(thread_fd)
        (process,) = handles
        namespace = tree_of(sup, process).namespace
        assert namespace is not None
        assert namespace.alive(), "the thread's exit must not kill the init"
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(b"still there?\n")
        process.stdin.close()
        assert process.wait() == tether.Exited(0)


def test_a_body_interrupted_while_spawning_leaves_nothing_running() -> None:
    """Interrupts (SIGALRM raising in tether code, as Ctrl-C would) land at every step
    of a namespace launch: the lifeline, the init, the setns, the child, the hand-over."""
    started: list[tether.Process] = []
    interrupted = 0
    chance = random.Random(0x7E7)
    with interrupts(), Supervisor(kill="namespace", grace=5) as sup:
        for _ in range(STORM_ROUNDS):
            signal.setitimer(signal.ITIMER_REAL, chance.uniform(0.000_01, STORM_WINDOW))
            try:
                started.append(sup.spawn(["sleep", "60"]))
            except Interrupted:
                interrupted += 1
            signal.setitimer(signal.ITIMER_REAL, 0)
    assert interrupted > 0, "the storm never hit a spawn: the test proves nothing"
    assert all(process.status == tether.Signaled(signal.SIGTERM) for process in started)
    assert all(tree.closed for tree in sup._trees)


# --- what cannot be done ---------------------------------------------------------------


def test_settings_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="subreaper"):
        Supervisor(kill="namespace", subreaper=True)
    with pytest.raises(ValueError, match="cgroup_parent"):
        Supervisor(kill="namespace", cgroup_parent="/sys/fs/cgroup")
    assert Supervisor(kill="namespace").kill_mode == "namespace"


@pytest.mark.parametrize("backend", ["fork", "posix_spawn"])
def test_the_pure_python_backends_refuse_the_mode(backend: str) -> None:
    with Supervisor(kill="namespace") as sup:
        with pytest.raises(ValueError, match='cannot honour the kill="namespace"'):
            sup.spawn(["true"], backend=backend)
        assert sup.children == []


def test_a_foreign_process_group_is_refused() -> None:
    with Supervisor(kill="namespace") as sup, pytest.raises(ValueError, match="process group"):
        sup.spawn(["true"], process_group=1)


@pytest.mark.parametrize(
    ("code", "why"),
    [
        (errno.EPERM, "CAP_SYS_ADMIN"),
        (errno.ENOSPC, "max_pid_namespaces"),
        (errno.EINVAL, "kernel"),
        (errno.EIO, "Input/output error"),
    ],
)
def test_a_refused_namespace_is_a_namespace_error_that_says_what_to_use(
    monkeypatch: pytest.MonkeyPatch, code: int, why: str
) -> None:
    def refuse(*args: object) -> tuple[int, int, int, str]:
        return (0, -1, code, "fork")

    monkeypatch.setattr(spawner, "spawn_pid_namespace_init", refuse)
    with Supervisor(kill="namespace") as sup:
        with pytest.raises(NamespaceError, match=why) as caught:
            sup.spawn(["true"])
        assert caught.value.errno == code
        assert 'use kill="cgroup"' in str(caught.value)
        assert sup.children == []


def test_a_refused_setns_is_a_namespace_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> tuple[int, int, int, str]:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(spawner, "spawn_in_pid_namespace", refuse)
    with Supervisor(kill="namespace") as sup:
        with pytest.raises(NamespaceError, match="join the PID namespace"):
            sup.spawn(["true"])
        assert sup.children == []


def test_a_failed_exec_in_the_namespace_is_a_spawn_error() -> None:
    with Supervisor(kill="namespace") as sup:
        with pytest.raises(tether.SpawnError, match="No such file") as caught:
            sup.spawn(["/nonexistent/program"])
        assert caught.value.stage == "exec"


@pytest.mark.usefixtures("no_pidfd")
def test_without_pidfds_the_spawn_fails_and_says_why() -> None:
    with Supervisor(kill="namespace") as sup:
        with pytest.raises(NamespaceError, match="needs pidfds"):
            sup.spawn(["true"])
        assert sup.children == []


def test_a_missing_init_is_a_namespace_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_namespace, "INIT_NAME", "_no_such_init")
    with Supervisor(kill="namespace") as sup, pytest.raises(NamespaceError, match="not built"):
        sup.spawn(["true"])


def test_without_privilege_the_spawn_fails_and_says_why(tmp_path: Path) -> None:
    """A real refusal: the supervising process runs without CAP_SYS_ADMIN."""
    script = (
        "import tether\n"
        "try:\n"
        "    with tether.Supervisor(kill='namespace') as sup:\n"
        "        sup.spawn(['true'])\n"
        "except tether.NamespaceError as exc:\n"
        "    print(exc.errno, exc)\n"
    )
    command = ["setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin", PY, "-c", script]
    completed = tether.run(command, capture=True, timeout=60)
    if completed.returncode != 0 and b"setpriv" in completed.stderr:
        pytest.skip(f"setpriv cannot drop CAP_SYS_ADMIN here: {completed.stderr!r}")
    assert completed.status == tether.Exited(0), completed.stderr
    assert completed.stdout.startswith(f"{errno.EPERM} ".encode())
    assert b"CAP_SYS_ADMIN" in completed.stdout


# --- CLONE_PIDFD_AUTOKILL (Linux 7.1) --------------------------------------------------


def _kernel_at_least(major: int, minor: int) -> bool:
    release = os.uname().release.split("-")[0].split(".")
    return (int(release[0]), int(release[1])) >= (major, minor)


def test_the_autokill_probe_answers_for_this_kernel() -> None:
    works = spawner.pidfd_autokill()
    assert works is spawner.pidfd_autokill()  # learned once
    if not _kernel_at_least(7, 1):
        assert works is False


@pytest.mark.skipif(not spawner.pidfd_autokill(), reason="no CLONE_PIDFD_AUTOKILL (Linux 7.1)")
def test_an_init_dies_when_its_pidfd_is_closed() -> None:  # pragma: no cover
    program = os.fsencode(_namespace.init_program())
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    receipt = SpawnReceipt()
    with ours, theirs:
        fd = theirs.fileno()
        _, _, code, _ = spawner.spawn_pid_namespace_init(
            program, [program, b"%d" % fd], None, None, [], sorted({0, 1, 2, fd}), [fd],
            [], [], None, True, -1, -1, -1, 0, False, -1, -1, True, receipt,
        )  # fmt: skip
        assert code == 0
        assert receipt.pidfd is not None
        os.close(receipt.pidfd)  # the last reference: the kernel kills the init
        _, status = os.waitpid(receipt.pid, 0)  # the lifeline is still open: only that
    assert os.WIFSIGNALED(status)
    assert os.WTERMSIG(status) == signal.SIGKILL


# --- a SIGKILLed supervisor ------------------------------------------------------------


@pytest.mark.parametrize("api", ["sync", "asyncio", "trio"])
def test_nothing_outlives_a_sigkilled_supervising_process(
    api: str, pins: Pins, tmp_path: Path
) -> None:
    pidfile = tmp_path / "daemons"
    try:
        with tether.spawn(
            [PY, "-c", SUPERVISING, api, str(pidfile), DAEMONIZE],
            stdin=tether.PIPE,
            stdout=tether.PIPE,
        ) as supervising:
            assert supervising.stdout is not None
            lines = [supervising.stdout.readline() for _ in range(6)]
            daemons = [int(line) for line in lines if line != b"ready\n"]
            assert len(daemons) == 4, lines
            for pid in daemons:
                pins.pin(pid)
            assert pins.dead() == [False] * 4
            supervising.kill()
            assert supervising.wait() == tether.Signaled(signal.SIGKILL)
        assert pins.dead(timeout=30) == [True] * 4
    finally:  # whatever the test saw, no daemon it started lives on
        if pidfile.exists():
            for line in pidfile.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    pins.pin(int(line))


# --- async -----------------------------------------------------------------------------


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Each event loop in turn."""
    return str(request.param)


async def read_line(process: tether.AsyncProcess) -> bytes:
    assert process.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        line += await process.stdout.receive(1)
    return line


async def async_with_daemons(sup: AsyncSupervisor, pins: Pins) -> tether.AsyncProcess:
    process = await sup.start([PY, "-c", DAEMONIZE], stdin=tether.PIPE, stdout=tether.PIPE)
    for _ in range(2):
        pins.pin(int(await read_line(process)))
    assert await read_line(process) == b"ready\n"
    return process


@pytest.mark.anyio
async def test_async_statuses_are_the_childs_own() -> None:
    async with AsyncSupervisor(kill="namespace") as sup:
        exited = await sup.start(["sh", "-c", "exit 7"])
        killed = await sup.start(["sh", "-c", "kill -TERM $$"])
        assert await exited.wait() == tether.Exited(7)
        assert await killed.wait() == tether.Signaled(signal.SIGTERM)


@pytest.mark.anyio
async def test_async_stop_with_grace_kills_the_stubborn_and_the_daemons(pins: Pins) -> None:
    with pytest.warns(KilledAfterGraceWarning):  # noqa: PT031
        async with AsyncSupervisor(kill="namespace", grace=0.3) as sup:
            stubborn = await sup.start(
                [PY, "-c", IGNORE_TERM], stdin=tether.PIPE, stdout=tether.PIPE
            )
            assert await read_line(stubborn) == b"ready\n"
            polite = await async_with_daemons(sup, pins)
    assert stubborn.status == tether.Signaled(signal.SIGKILL)
    assert polite.status == tether.Signaled(signal.SIGTERM)
    assert pins.dead() == [True, True]


@pytest.mark.anyio
async def test_async_cancellation_leaves_nothing_behind(pins: Pins) -> None:
    with anyio.CancelScope() as scope:
        async with AsyncSupervisor(kill="namespace", grace=30) as sup:
            process = await async_with_daemons(sup, pins)
            scope.cancel()
            await anyio.sleep_forever()
    assert process.status == tether.Signaled(signal.SIGTERM)
    assert pins.dead() == [True, True]


@pytest.mark.anyio
async def test_async_a_failing_child_is_restarted() -> None:
    policy = tether.RestartPolicy(
        mode="on-failure", backoff=tether.Backoff(initial=0.01, jitter=0), max_restarts=2
    )
    async with (
        anyio.create_task_group() as tg,
        AsyncSupervisor(kill="namespace", task_group=tg) as sup,
    ):
        first = await sup.start(["sh", "-c", "exit 1"], restart=policy)
        with pytest.raises(tether.SupervisedChildFailed, match="2 restarts"):
            await sup.wait_all()
    assert first.status == tether.Exited(1)
    assert sup.supervised[0].restarts == 2

"""Readiness of supervised children: ``spawn(ready="notify")`` and ``spawn(ready="fd:N")``.

Children say they are up over sd_notify datagrams (sent with Python's ``socket`` module
to ``$NOTIFY_SOCKET``, not ``systemd-notify``) or by writing a line on fd N. Nothing is
synchronised by sleeping: every step is a line on a pipe. Restart schedules are read
on the fake clock of ``tests/test_supervisor_restart``.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys

import anyio
import pytest

import tether
from tests.test_supervisor_restart import FakeClock, until, until_async
from tether import AsyncSupervisor, Backoff, RestartPolicy, Supervisor

PY = sys.executable

SEND = """
import os, socket, sys
def send(message):
    address = os.environ["NOTIFY_SOCKET"]
    if address.startswith("@"):
        address = "\\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), address)
"""

NOTIFY_READY = SEND + 'send("STATUS=loading\\nREADY=1\\nMAINPID=1\\nWATCHDOG=1\\nX")\n'
"""Sends READY=1 (with keys that are ignored), then waits for a line on stdin."""


def child(script: str) -> list[str]:
    return [PY, "-c", script]


# --- ready="notify", sync --------------------------------------------------------------


def test_notify_ready_returns_once_the_child_says_so_and_keeps_its_status() -> None:
    with Supervisor() as sup:
        script = NOTIFY_READY + "sys.stdin.readline()\n"
        process = sup.spawn(child(script), ready="notify", stdin=tether.PIPE)
        process.ready(timeout=30)
        process.ready(timeout=0)  # an answer once given stays
        assert process.notify_status == "loading"
        (record,) = sup.supervised
        assert record.ready is True
        assert record.notify_status == "loading"
        assert process.stdin is not None
        process.stdin.close()
        assert process.wait(timeout=30) == tether.Exited(0)
    process.ready()  # the channel is closed, the answer stays
    assert process.notify_status == "loading"


def test_notify_socket_is_the_childs_own_even_with_an_explicit_env() -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin"), "NOTIFY_SOCKET": "/not/this/one"}
    with Supervisor() as sup:
        script = NOTIFY_READY + "print(os.environ['NOTIFY_SOCKET'], flush=True)\n"
        process = sup.spawn(child(script), ready="notify", env=env, stdout=tether.PIPE)
        process.ready(timeout=30)
        assert process.stdout is not None
        address = process.stdout.readline().decode().strip()
        assert address.startswith("@")
        assert process.wait(timeout=30) == tether.Exited(0)


def test_notify_with_a_bytes_env_and_from_a_grandchild() -> None:
    """A descendant of the child (here a child of its shell) is believed."""
    env = {b"PATH": os.fsencode(os.environ.get("PATH", "/usr/bin"))}
    script = NOTIFY_READY.replace("READY=1", "READY=1\\nSTATUS=from the grandchild")
    shell = f"{PY} -c '{script}'; cat >/dev/null"
    assert "'" not in script
    with Supervisor() as sup:
        process = sup.spawn(["sh", "-c", shell], ready="notify", env=env, stdin=tether.PIPE)
        process.ready(timeout=30)
        assert process.notify_status == "from the grandchild"
        assert process.stdin is not None
        process.stdin.close()
        assert process.wait(timeout=30) == tether.Exited(0)


def test_a_message_from_outside_the_childs_tree_is_not_believed() -> None:
    script = (
        SEND
        + "print(os.environ['NOTIFY_SOCKET'], flush=True)\n"
        + "sys.stdin.readline()\n"
        + "send('STATUS=after')\n"
        + "print('sent', flush=True)\n"
        + "sys.stdin.readline()\n"
    )
    with Supervisor() as sup:
        process = sup.spawn(child(script), ready="notify", stdin=tether.PIPE, stdout=tether.PIPE)
        assert process.stdin is not None
        assert process.stdout is not None
        address = process.stdout.readline().decode().strip()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as intruder:
            intruder.sendto(b"READY=1\nSTATUS=forged", "\0" + address[1:])
        process.stdin.write(b"go\n")
        process.stdin.flush()
        assert process.stdout.readline() == b"sent\n"  # queued after the forgery
        assert process.notify_status == "after"
        with pytest.raises(tether.TimeoutExpired):
            process.ready(timeout=0)
        assert sup.supervised[0].ready is False
        process.stdin.close()
        assert process.wait(timeout=30) == tether.Exited(0)


def test_a_child_that_exits_before_ready_raises_with_its_status() -> None:
    with Supervisor() as sup:
        process = sup.spawn(["sh", "-c", "exit 3"], ready="notify")
        with pytest.raises(tether.NotReadyError) as caught:
            process.ready(timeout=30)
        error = caught.value
        assert isinstance(error, tether.TetherError)
        assert (error.status, error.pid, error.argv) == (
            tether.Exited(3),
            process.pid,
            ("sh", "-c", "exit 3"),
        )
        assert "exited with status 3" in str(error)
        assert "before it was ready" in str(error)


def test_ready_times_out_and_leaves_the_child_running() -> None:
    with Supervisor() as sup:
        process = sup.spawn(["cat"], ready="notify", stdin=tether.PIPE)
        with pytest.raises(tether.TimeoutExpired):
            process.ready(timeout=0.05)
        assert process.poll() is None
        assert process.stdin is not None
        process.stdin.close()
        assert process.wait(timeout=30) == tether.Exited(0)


def test_ready_without_ready_is_a_runtime_error() -> None:
    with Supervisor() as sup:
        process = sup.spawn(["true"])
        with pytest.raises(RuntimeError, match="not spawned with ready="):
            process.ready()
        assert process.notify_status is None
        assert sup.supervised[0].ready is None
        assert sup.supervised[0].notify_status is None
        process.wait(timeout=30)
    with tether.spawn(["true"]) as plain, pytest.raises(RuntimeError):
        plain.ready(timeout=1)


@pytest.mark.parametrize(
    ("ready", "error"),
    [
        ("bogus", ValueError),
        ("fd:", ValueError),
        ("fd:x", ValueError),
        ("fd:2", ValueError),
        ("fd:-4", ValueError),
        ("pipe:3", ValueError),
        (3, TypeError),
    ],
)
def test_a_bad_ready_is_refused_before_anything_starts(ready: object, error: type) -> None:
    with Supervisor() as sup:
        with pytest.raises(error):
            sup.spawn(["true"], ready=ready)  # type: ignore[arg-type]
        assert sup.children == []


def test_a_readiness_fd_also_in_pass_fds_is_refused() -> None:
    with Supervisor() as sup, pytest.raises(ValueError, match="also in pass_fds"):
        sup.spawn(["true"], ready="fd:5", pass_fds=[5])


# --- ready="fd:N" -----------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["native", "posix_spawn", "fork"])
@pytest.mark.parametrize("number", [3, 9])
def test_fd_ready_is_a_line_on_fd_n(backend: str, number: int) -> None:
    shell = f"test -e /proc/self/fd/{number} || exit 9; printf 'up\\n' >&{number}; cat >/dev/null"
    extra = {"pdeathsig": None} if backend == "posix_spawn" else {}  # it cannot set one
    with Supervisor() as sup:
        process = sup.spawn(
            ["sh", "-c", shell], ready=f"fd:{number}", stdin=tether.PIPE, backend=backend, **extra
        )
        process.ready(timeout=30)
        assert process.notify_status is None
        assert process.stdin is not None
        process.stdin.close()
        assert process.wait(timeout=30) == tether.Exited(0)


def test_fd_ready_keeps_the_standard_streams_and_pass_fds() -> None:
    read_end, write_end = os.pipe()
    passed = fcntl.fcntl(write_end, fcntl.F_DUPFD_CLOEXEC, 40)
    os.close(write_end)
    try:
        script = f"import os; os.write({passed}, b'passed\\n'); os.write(3, b'up\\n'); print('out')"
        with Supervisor() as sup:
            process = sup.spawn(child(script), ready="fd:3", pass_fds=[passed], stdout=tether.PIPE)
            process.ready(timeout=30)
            assert process.stdout is not None
            assert process.stdout.read() == b"out\n"
            assert process.wait(timeout=30) == tether.Exited(0)
        os.close(passed)
        passed = -1
        assert os.read(read_end, 100) == b"passed\n"
    finally:
        os.close(read_end)
        if passed >= 0:
            os.close(passed)


def test_fd_ready_closed_without_a_line_waits_for_the_exit() -> None:
    with Supervisor() as sup:
        process = sup.spawn(
            ["sh", "-c", "exec 3>&-; read line; exit 4"], ready="fd:3", stdin=tether.PIPE
        )
        with pytest.raises(tether.TimeoutExpired):
            process.ready(timeout=0.05)  # end of file is not ready, and not spinning either
        assert process.stdin is not None
        process.stdin.close()
        with pytest.raises(tether.NotReadyError) as caught:
            process.ready(timeout=30)
        assert caught.value.status == tether.Exited(4)


@pytest.mark.parametrize("kill", ["process", "cgroup"])
def test_ready_in_other_kill_modes(kill: str) -> None:
    try:
        sup = Supervisor(kill=kill)  # type: ignore[arg-type]
        scope = sup.__enter__()
    except tether.CgroupError as exc:
        pytest.skip(f"no writable cgroup: {exc}")
    try:
        process = scope.spawn(child(NOTIFY_READY), ready="notify")
        process.ready(timeout=30)
        assert process.wait(timeout=30) == tether.Exited(0)
    finally:
        sup.__exit__(None, None, None)


# --- restarts ---------------------------------------------------------------------------

GATED = RestartPolicy(mode="on-failure", backoff=Backoff(jitter=0), reset_after=10)


@pytest.mark.parametrize("says_ready", [True, False])
def test_a_restart_resets_the_backoff_only_after_ready(says_ready: bool) -> None:
    """A long run resets the backoff only if it said ready; without, the delay keeps growing."""
    clock = FakeClock()
    greeting = "send('READY=1')\n" if says_ready else ""
    script = SEND + greeting + "print('up', flush=True)\nsys.stdin.readline()\nsys.exit(1)\n"
    with Supervisor(clock=clock) as sup:
        first = sup.spawn(
            child(script), restart=GATED, ready="notify", stdin=tether.PIPE, stdout=tether.PIPE
        )
        (record,) = sup.supervised
        delays = []
        for run in range(2):
            process = record.process
            assert process.stdout is not None
            assert process.stdin is not None
            assert process.stdout.readline() == b"up\n"
            if says_ready:
                process.ready(timeout=30)
            clock.advance(0 if run == 0 else 11)
            process.stdin.close()
            until(sup, lambda: record.state == "restarting")
            assert record.next_restart is not None
            delays.append(record.next_restart - clock.now)
            clock.advance(delays[-1])
            sup._poke()
            assert record.restarts == run + 1
        assert record.process is not first
        with pytest.raises(tether.TimeoutExpired):
            record.process.ready(timeout=0)  # the new incarnation has its own channel
    assert delays == pytest.approx([0.1, 0.1] if says_ready else [0.1, 0.2])


def test_on_failure_restarts_a_child_that_exits_cleanly_before_ready(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="tether.supervisor")
    clock = FakeClock()
    with Supervisor(clock=clock) as sup:
        first = sup.spawn(["true"], restart=GATED, ready="notify")
        (record,) = sup.supervised
        until(sup, lambda: record.state == "restarting")
        assert any("before it was ready: restarting" in r.getMessage() for r in caplog.records)
        with pytest.raises(tether.NotReadyError):
            first.ready(timeout=30)


def test_fd_numbers_of_every_incarnation_are_closed_when_superseded() -> None:
    clock = FakeClock()
    with Supervisor(clock=clock) as sup:
        sup.spawn(["sh", "-c", "exit 1"], restart=GATED, ready="fd:3")
        (record,) = sup.supervised
        for run in range(3):
            until(sup, lambda: record.state == "restarting")
            clock.advance(record.next_restart - clock.now if record.next_restart else 0)
            sup._poke()
            assert record.restarts == run + 1
    # the leak guard checks that no socket or pipe of any incarnation is left open


# --- AsyncSupervisor ----------------------------------------------------------------------


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Each event loop in turn."""
    return str(request.param)


async def read_line(process: tether.AsyncProcess) -> bytes:
    assert process.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        line += await process.stdout.receive(1)
    return line


@pytest.mark.anyio
async def test_async_notify_ready() -> None:
    async with AsyncSupervisor() as sup:
        process = await sup.start(
            child(NOTIFY_READY + "sys.stdin.readline()\n"), ready="notify", stdin=tether.PIPE
        )
        with anyio.fail_after(30):
            await process.ready()
            await process.ready()
        assert process.notify_status == "loading"
        assert process.stdin is not None
        await process.stdin.aclose()
        assert await process.wait() == tether.Exited(0)


@pytest.mark.anyio
async def test_async_fd_ready_and_two_waiters() -> None:
    async with AsyncSupervisor() as sup:
        process = await sup.start(
            ["sh", "-c", "read line; printf 'up\\n' >&3; cat >/dev/null"],
            ready="fd:3",
            stdin=tether.PIPE,
        )
        assert process.stdin is not None
        done: list[int] = []
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:

                async def waiter(n: int) -> None:
                    await process.ready()
                    done.append(n)

                group.start_soon(waiter, 1)
                group.start_soon(waiter, 2)
                await process.stdin.send(b"go\n")
        assert sorted(done) == [1, 2]
        await process.stdin.aclose()
        assert await process.wait() == tether.Exited(0)


@pytest.mark.anyio
async def test_async_exit_before_ready_and_plain_child() -> None:
    async with AsyncSupervisor() as sup:
        process = await sup.start(["sh", "-c", "exit 5"], ready="notify")
        with anyio.fail_after(30), pytest.raises(tether.NotReadyError) as caught:
            await process.ready()
        assert caught.value.status == tether.Exited(5)
        plain = await sup.start(["true"])
        with pytest.raises(RuntimeError, match="not started with ready="):
            await plain.ready()
        assert plain.notify_status is None
        await plain.wait()


@pytest.mark.anyio
async def test_async_ready_can_be_cancelled_and_the_child_keeps_running() -> None:
    async with AsyncSupervisor() as sup:
        process = await sup.start(["cat"], ready="notify", stdin=tether.PIPE)
        with anyio.move_on_after(0.05):
            await process.ready()
        assert process.poll() is None
        assert process.stdin is not None
        await process.stdin.aclose()
        assert await process.wait() == tether.Exited(0)


@pytest.mark.anyio
async def test_async_restart_waits_for_ready_before_resetting_the_backoff() -> None:
    clock = FakeClock()
    script = SEND + "print('up', flush=True)\nsys.stdin.readline()\nsys.exit(1)\n"
    async with (
        anyio.create_task_group() as tg,
        AsyncSupervisor(task_group=tg, clock=clock) as sup,
    ):
        await sup.start(
            child(script), restart=GATED, ready="notify", stdin=tether.PIPE, stdout=tether.PIPE
        )
        (record,) = sup.supervised
        delays = []
        for run in range(2):
            process = record.process
            assert await read_line(process) == b"up\n"
            clock.advance(0 if run == 0 else 11)
            assert process.stdin is not None
            await process.stdin.aclose()
            await until_async(sup, lambda: record.state == "restarting")
            assert record.next_restart is not None
            delays.append(record.next_restart - clock.now)
            clock.advance(delays[-1])
            await sup._poke()
            assert record.restarts == run + 1
    assert delays == pytest.approx([0.1, 0.2]), "a run that never said ready resets nothing"


# --- failures, interrupts and the record -------------------------------------------------


def test_a_spawn_failure_leaves_no_channel_open() -> None:
    with Supervisor() as sup:
        for ready in ("notify", "fd:3"):
            with pytest.raises(tether.SpawnError):
                sup.spawn(["/nonexistent/program"], ready=ready)
        assert sup.children == []
    # the leak guard checks that neither the socket nor the pipe survived


def test_an_interrupt_after_the_channel_exists_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tether._supervise import _readiness

    def interrupted(self: _readiness.Readiness, options: object) -> object:
        raise KeyboardInterrupt

    monkeypatch.setattr(_readiness.Readiness, "apply", interrupted)
    with Supervisor() as sup:
        with pytest.raises(KeyboardInterrupt):
            sup.spawn(["true"], ready="notify")
        assert sup.children == []


def test_stopping_is_recorded_and_not_ready_error_pickles() -> None:
    import pickle

    from tether._supervise._readiness import Readiness

    script = SEND + "send('STOPPING=1\\nSTATUS=bye')\n"
    with Supervisor() as sup:
        process = sup.spawn(child(script), ready="notify")
        with pytest.raises(tether.NotReadyError) as caught:
            process.ready(timeout=30)
        readiness = process._readiness
        assert isinstance(readiness, Readiness)
        assert readiness.stopping
        assert process.notify_status == "bye"
        assert "notify" in repr(readiness)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.argv, copy.pid, copy.status) == (
        caught.value.argv,
        caught.value.pid,
        caught.value.status,
    )


def test_fd_ready_onto_the_fd_number_given_as_stdout(tmp_path: os.PathLike[str]) -> None:
    """``stdout=F, ready="fd:F"``: the child's stdout is still the file, fd F the pipe."""
    path = os.path.join(tmp_path, "out")
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        script = f"import os; print('out', flush=True); os.write({out}, b'up\\n')"
        with Supervisor() as sup:
            process = sup.spawn(child(script), ready=f"fd:{out}", stdout=out)
            process.ready(timeout=30)
            assert process.wait(timeout=30) == tether.Exited(0)
    finally:
        os.close(out)
    with open(path, "rb") as written:
        assert written.read() == b"out\n"

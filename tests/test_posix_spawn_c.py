"""The posix_spawn backend in C (``posix_spawn_into``) and its pure-Python fallback.

The C path records the child in the receipt before returning, so it runs in the calling
thread; it closes inheritable fds with ``closefrom`` where glibc has it (2.34), without
listing ``/proc/self/fd``. The fallback (no extension) is forced with
``tests.spawn_paths.python_posix_spawn`` and must behave the same.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether
from tests.fdlimits import no_free_fds
from tests.spawn_paths import python_posix_spawn
from tether import _native
from tether._linux import _pidfd
from tether._spawn import SpawnReceipt, _posix_spawn, _spawner_thread, make_plan

PY = sys.executable
LIST_FDS = (  # the fd that listdir used is closed again by the time exists() looks
    "import os; names = sorted(os.listdir('/proc/self/fd'), key=int); "
    "print(' '.join(n for n in names if os.path.exists('/proc/self/fd/' + n)))"
)

needs_c = pytest.mark.skipif(
    _posix_spawn._spawn_into is None, reason="the native extension is not built"
)


@pytest.fixture(params=["c", "c-listing", "python"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The posix_spawn backend through ``posix_spawn_into`` (with ``closefrom`` where the C
    library has it, then listing ``/proc/self/fd`` as without it), then through
    ``os.posix_spawn``."""
    if request.param == "python":
        python_posix_spawn(monkeypatch)
        yield "python"
        return
    if _posix_spawn._spawn_into is None:
        pytest.skip("the native extension is not built")
    if request.param == "c":
        yield "c"
        return
    monkeypatch.setattr(_posix_spawn, "_closes_from", False)
    was = _native.spawner.posix_spawn_closes_from(False)
    try:
        yield "c-listing"
    finally:
        _native.spawner.posix_spawn_closes_from(was)


def child_fds(**options: object) -> list[int]:
    done = tether.run(
        [PY, "-c", LIST_FDS],
        capture=True,
        check=True,
        backend="posix_spawn",
        **options,  # type: ignore[arg-type]
    )
    assert done.stdout is not None
    return [int(name) for name in done.stdout.split()]


@pytest.fixture
def inheritable_fds() -> Iterator[list[int]]:
    """Inheritable fds of ours: a low one, one at 200 and one at 600 (past the F_GETFD
    range of a pass_fd at 100, so both the probed and the listed ranges are crossed)."""
    low = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(low, True)
    made = [low]
    try:
        for number in (200, 600):
            made.append(os.dup2(low, number, inheritable=True))
        yield made
    finally:
        for fd in made:
            os.close(fd)


def test_the_path_in_use_is_the_one_forced(path: str) -> None:
    process = tether.spawn(["true"], backend="posix_spawn")
    assert process.wait().success
    assert _posix_spawn.RECORDS_IN_C is (path != "python")
    if path == "c-listing":
        assert _native.spawner.posix_spawn_closes_from() is False


# --- fds ----------------------------------------------------------------------------


def test_inheritable_fds_never_reach_the_child(path: str, inheritable_fds: list[int]) -> None:
    assert child_fds() == [0, 1, 2]


def test_pass_fds_reach_the_child_and_inheritable_ones_around_them_do_not(
    path: str, inheritable_fds: list[int]
) -> None:
    passed = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        at_100 = os.dup2(passed, 100, inheritable=False)
        try:
            assert child_fds(pass_fds=[passed, at_100]) == [0, 1, 2, passed, 100]
        finally:
            os.close(at_100)
    finally:
        os.close(passed)


def test_a_pass_fd_far_up_keeps_the_listed_range_exact(
    path: str, inheritable_fds: list[int]
) -> None:
    """A kept fd at 900: the inheritable fds at 200 and 600 lie below it, in the range
    that is listed rather than probed fd by fd."""
    source = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        high = os.dup2(source, 900, inheritable=False)
        try:
            assert child_fds(pass_fds=[high]) == [0, 1, 2, 900]
        finally:
            os.close(high)
    finally:
        os.close(source)


def test_stdio_pipes_and_a_user_fd_as_stdout(path: str, inheritable_fds: list[int]) -> None:
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)  # inheritable source of the fd map: closed after dup2
    try:
        process = tether.spawn(
            [PY, "-c", LIST_FDS], stdout=write_end, stdin=tether.PIPE, backend="posix_spawn"
        )
        os.close(write_end)
        write_end = -1
        assert process.stdin is not None
        process.stdin.close()
        assert process.wait().success
        assert os.read(read_end, 100).split() == [b"0", b"1", b"2"]
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


@pytest.fixture
def fds_around_a_lowered_limit() -> Iterator[tuple[int, int]]:
    """``(kept, stray)``: a non-inheritable fd just below a lowered soft RLIMIT_NOFILE and
    an inheritable one above it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = max(int(name) for name in os.listdir("/proc/self/fd")) + 32
    if lowered + 8 >= soft:
        pytest.skip("the soft RLIMIT_NOFILE is too low to open an fd above a lowered one")
    source = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        kept = os.dup2(source, lowered - 1, inheritable=False)
        stray = os.dup2(source, lowered + 5, inheritable=True)
    finally:
        os.close(source)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        yield kept, stray
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        os.close(kept)
        os.close(stray)


@needs_c
def test_closefrom_reaches_an_inheritable_fd_above_the_soft_limit() -> None:
    if not _posix_spawn._closes_from:
        pytest.skip("this C library has no posix_spawn_file_actions_addclosefrom_np")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = max(int(name) for name in os.listdir("/proc/self/fd")) + 32
    if lowered + 8 >= soft:
        pytest.skip("the soft RLIMIT_NOFILE is too low to open an fd above a lowered one")
    source = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    stray = os.dup2(source, lowered + 5, inheritable=True)
    os.close(source)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        assert not _posix_spawn.blocked_by_fds(make_plan(["true"]))
        assert child_fds() == [0, 1, 2]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        os.close(stray)


def test_an_fd_out_of_reach_is_refused_clearly_and_auto_moves_on(
    path: str, fds_around_a_lowered_limit: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the highest kept fd just below the soft limit, glibc refuses a closefrom above
    it (and a close action for the fd above): the spawn fails before any child exists."""
    kept, stray = fds_around_a_lowered_limit
    with pytest.raises(tether.SpawnError, match=f"inheritable fd {stray} is above") as caught:
        tether.spawn(["true"], pass_fds=[kept], backend="posix_spawn")
    assert (caught.value.errno, caught.value.stage) == (errno.EBADF, "close_fds")
    plan = make_plan([PY, "-c", LIST_FDS], pass_fds=[kept])
    assert _posix_spawn.blocked_by_fds(plan)
    monkeypatch.setattr(tether._spawn, "AUTO_ORDER", ("posix_spawn", "fork"))
    done = tether.run([PY, "-c", LIST_FDS], pass_fds=[kept], capture=True, check=True)
    assert done.stdout is not None
    assert done.stdout.split() == [b"0", b"1", b"2", str(kept).encode()]


@needs_c
def test_blocked_by_fds_lists_nothing_when_closefrom_is_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not _posix_spawn._closes_from:
        pytest.skip("this C library has no posix_spawn_file_actions_addclosefrom_np")

    def no_listing() -> list[int]:
        raise AssertionError("/proc/self/fd was listed")

    monkeypatch.setattr(_posix_spawn, "_inheritable_fds", no_listing)
    assert not _posix_spawn.blocked_by_fds(make_plan(["true"]))
    assert not _posix_spawn.blocked_by_fds(make_plan(["true"], pass_fds=[0, 1]))
    assert tether.spawn(["true"], backend="posix_spawn").wait().success


# --- failures -----------------------------------------------------------------------


def test_a_missing_program_fails_at_exec(path: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")
    with pytest.raises(tether.SpawnError) as caught:
        tether.spawn([missing], backend="posix_spawn")
    assert (caught.value.errno, caught.value.stage) == (errno.ENOENT, "exec")
    assert caught.value.filename == missing


def test_a_file_without_exec_permission_fails_at_exec(path: str, tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    with pytest.raises(tether.SpawnError) as caught:
        tether.spawn([script], backend="posix_spawn")
    assert (caught.value.errno, caught.value.stage) == (errno.EACCES, "exec")


@needs_c
@pytest.mark.parametrize("source", [999, 1 << 20], ids=["closed", "above the limit"])
def test_a_bad_fd_in_the_fd_map_fails_at_fd_map_and_leaves_nothing(source: int) -> None:
    """A closed source fails in the child (glibc reaps it); one above the soft limit is
    refused before any child exists. Either way the receipt names no child."""
    receipt = SpawnReceipt()
    code, stage, detail, _ = _native.spawner.posix_spawn_into(
        receipt, b"/bin/true", [b"true"], None, [(source, 0)], (), False, -1, (), True
    )
    assert (code, stage, detail) == (errno.EBADF, "fd_map", -1)
    assert (receipt.pid, receipt.pidfd) == (0, None)


@needs_c
@pytest.mark.parametrize(
    ("position", "value", "error"),
    [
        (1, "/bin/true", TypeError),  # program not bytes
        (2, ["true"], TypeError),  # argv not bytes
        (3, {"A": "1"}, TypeError),  # env not bytes
        (3, [b"A=1"], TypeError),  # env not a dict
        (4, [(0,)], TypeError),  # a pair that is not one
        (5, [-1], ValueError),  # pass_fds
        (7, -2, ValueError),  # pgid
    ],
)
def test_bad_arguments_raise_before_any_child(position: int, value: object, error: type) -> None:
    receipt = SpawnReceipt()
    args: list[object] = [receipt, b"/bin/true", [b"true"], None, (), (), False, -1, (), True]
    args[position] = value
    with pytest.raises(error):
        _native.spawner.posix_spawn_into(*args)  # type: ignore[arg-type]
    assert receipt.pid == 0


@needs_c
def test_an_unknown_default_signal_fails_at_signals_before_any_child() -> None:
    receipt = SpawnReceipt()
    result = _native.spawner.posix_spawn_into(
        receipt, b"/bin/true", [b"true"], None, (), (), False, -1, (10_000,), True
    )
    assert result == (errno.EINVAL, "signals", -1, -1)
    assert receipt.pid == 0


@needs_c
def test_too_few_arguments_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="takes 10 arguments"):
        _native.spawner.posix_spawn_into(SpawnReceipt())  # type: ignore[call-arg]


# --- the child recorded before control returns ----------------------------------------


@needs_c
def test_the_child_is_in_the_receipt_when_the_call_returns() -> None:
    receipt = SpawnReceipt()
    code, stage, detail, _ = _native.spawner.posix_spawn_into(
        receipt, b"/bin/sh", [b"sh", b"-c", b"exit 7"], None, (), (), False, -1, (), True
    )
    assert (code, stage, detail) == (0, None, 0)
    assert receipt.pid > 0
    assert receipt.pidfd is not None
    try:
        assert _pidfd.names_our_child(receipt.pidfd)
        _pidfd.wait_readable(receipt.pidfd, None)
        status = os.waitid(os.P_PIDFD, receipt.pidfd, os.WEXITED)
        assert status is not None
        assert (status.si_pid, status.si_status) == (receipt.pid, 7)
    finally:
        os.close(receipt.pidfd)


@needs_c
def test_an_interrupt_right_after_the_call_loses_no_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first moment a signal handler could raise is the first bytecode after the C
    call: here that is where the exception lands. The child is already in the receipt,
    so the spawn's undo kills and reaps it."""
    real = _posix_spawn._spawn_into
    assert real is not None
    seen: list[SpawnReceipt] = []

    def interrupted(receipt: SpawnReceipt, *args: object) -> object:
        real(receipt, *args)
        seen.append(receipt)
        raise KeyboardInterrupt

    monkeypatch.setattr(_posix_spawn, "_spawn_into", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tether.spawn(["sleep", "60"], backend="posix_spawn")
    [receipt] = seen
    assert (receipt.pid, receipt.pidfd) == (0, None), "undo found the child and cleared it"


@needs_c
def test_a_receipt_that_refuses_the_pid_gets_its_child_killed_and_reaped_in_c() -> None:
    started: list[int] = []

    class Refusing:
        pid = 0
        pidfd: int | None = None

        def __setattr__(self, name: str, value: object) -> None:
            if name == "pid" and value:
                started.append(value)  # type: ignore[arg-type]
                raise MemoryError("no room for the pid")
            object.__setattr__(self, name, value)

    receipt = Refusing()
    with pytest.raises(MemoryError):
        _native.spawner.posix_spawn_into(
            receipt, b"/bin/sleep", [b"sleep", b"60"], None, (), (), False, -1, (), True
        )
    assert (receipt.pid, receipt.pidfd) == (0, None)
    [pid] = started
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped in C


def test_from_the_main_thread_it_runs_on_the_spawner_thread_only_without_c(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    real_spawn = _posix_spawn.spawn

    def noting(*args: object) -> None:
        threads.append(threading.current_thread().name)
        real_spawn(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_posix_spawn, "spawn", noting)
    assert tether.spawn(["true"], backend="posix_spawn").wait().success
    on_main = threads == [threading.main_thread().name]
    assert on_main is (path != "python"), threads
    assert on_main or threads[0] == _spawner_thread.THREAD_NAME


# --- environment and pidfds --------------------------------------------------------


def test_env_none_passes_the_live_environment(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_POSIX_SPAWN_PROBE", "live")
    done = tether.run(["env"], capture=True, check=True, backend="posix_spawn")
    assert done.stdout is not None
    assert b"TETHER_POSIX_SPAWN_PROBE=live" in done.stdout.splitlines()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, b""),
        ({"A": "1", "B": "x=y"}, b"A=1\nB=x=y\n"),
        ({b"BYTES": b"\xff"}, b"BYTES=\xff\n"),
    ],
)
def test_env_dict_is_exactly_the_childs(
    path: str, env: dict[str, str] | dict[bytes, bytes], expected: bytes
) -> None:
    done = tether.run(["/usr/bin/env"], env=env, capture=True, check=True, backend="posix_spawn")
    assert done.stdout == expected


@needs_c
def test_a_real_pidfd_shortage_leaves_that_child_without_one() -> None:
    with no_free_fds():
        process = tether.spawn(["sh", "-c", "exit 3"], backend="posix_spawn")
    assert process.pidfd is None
    assert _pidfd.pidfds_available(), "a shortage must not disable pidfds for good"
    assert process.wait() == tether.Exited(3)


def test_session_group_and_signal_defaults(path: str) -> None:
    done = tether.run(
        [PY, "-c", "import os; print(os.getsid(0) == os.getpid(), os.getpgid(0) == os.getpid())"],
        start_new_session=True,
        capture=True,
        check=True,
        backend="posix_spawn",
    )
    assert done.stdout == b"True True\n"
    done = tether.run(
        [PY, "-c", "import os; print(os.getpgid(0) == os.getpid(), os.getsid(0) == os.getpid())"],
        process_group=0,
        capture=True,
        check=True,
        backend="posix_spawn",
    )
    assert done.stdout == b"True False\n"
    previous = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        status = tether.run(
            ["sh", "-c", "grep SigIgn /proc/self/status"],
            capture=True,
            check=True,
            backend="posix_spawn",
            restore_signals=True,
        )
    finally:
        signal.signal(signal.SIGPIPE, previous)
    assert status.stdout is not None
    ignored = int(status.stdout.split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))

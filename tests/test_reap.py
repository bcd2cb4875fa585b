"""The reap through a pidfd: the native call, its Python fallback, and the wait built on them.

``_core._reap`` reaps with the C extension's one-call ``waitid`` once the kernel has
accepted ``P_PIDFD``, and with ``_linux._pidfd`` otherwise; both must give the same
status, never reap a running child, and report a foreign reap the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import signal
import threading
from collections.abc import Iterator

import pytest

import tether
from tether._core import _reap
from tether._linux import _pidfd
from tether._linux._probes import KERNEL
from tether._native import available, spawner

needs_native = pytest.mark.skipif(not available, reason="the C extension was not built")


@pytest.fixture
def child() -> Iterator[tuple[int, int]]:
    """A raw sleeping child with its pidfd; killed and reaped afterwards if need be."""
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exec sleep 60"], os.environ)
    pidfd = os.pidfd_open(pid)
    try:
        yield pid, pidfd
    finally:
        if _pidfd.signal_pidfd(pidfd, signal.SIGKILL):
            with contextlib.suppress(ChildProcessError):  # the test may have reaped it
                os.waitpid(pid, 0)
        os.close(pidfd)


@needs_native
def test_native_reap_leaves_a_running_child(child: tuple[int, int]) -> None:
    pid, pidfd = child
    assert spawner.reap_pidfd(pidfd) is None
    assert os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None


@needs_native
def test_native_reap_returns_the_status_and_rusage(child: tuple[int, int]) -> None:
    _, pidfd = child
    assert _pidfd.signal_pidfd(pidfd, signal.SIGTERM)
    assert _pidfd.wait_readable(pidfd, 30)
    result = spawner.reap_pidfd(pidfd)
    assert result is not None
    si_code, si_status, user_time, system_time, max_rss = result
    assert (si_code, si_status) == (os.CLD_KILLED, signal.SIGTERM)
    assert user_time >= 0.0
    assert system_time >= 0.0
    assert max_rss > 0
    assert max_rss % 1024 == 0
    with pytest.raises(ChildProcessError):
        spawner.reap_pidfd(pidfd)  # reaped once


@needs_native
def test_native_reap_rejects_bad_fds() -> None:
    with pytest.raises(ValueError, match="out of range"):
        spawner.reap_pidfd(-1)
    with pytest.raises(OverflowError):
        spawner.reap_pidfd(1 << 80)
    with pytest.raises(TypeError):
        spawner.reap_pidfd("3")  # type: ignore[arg-type]
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(OSError, match=r"Invalid argument|Bad file") as caught:
            spawner.reap_pidfd(read_end)  # not a pidfd
        assert caught.value.errno in (errno.EINVAL, errno.EBADF)
    finally:
        os.close(read_end)
        os.close(write_end)


@needs_native
def test_native_reap_reports_a_foreign_reap() -> None:
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 12"], os.environ)
    pidfd = os.pidfd_open(pid)
    try:
        os.waitpid(pid, 0)
        with pytest.raises(ChildProcessError):
            spawner.reap_pidfd(pidfd)
    finally:
        os.close(pidfd)


@pytest.mark.parametrize("path", ["native", "no extension", "P_PIDFD unproven"])
def test_every_path_gives_the_same_status(
    child: tuple[int, int], path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid, pidfd = child
    _pidfd.names_our_child(pidfd)  # the kernel's answer about P_PIDFD, as a spawn learns it
    if path == "native" and (not available or KERNEL.waitid_pidfd is not True):
        pytest.skip("the native reap is not used here")
    if path == "no extension":
        monkeypatch.setattr(_reap, "_native_reap", None)
    if path == "P_PIDFD unproven":
        monkeypatch.setattr(KERNEL, "waitid_pidfd", None)
    assert _reap.reap_pidfd(pidfd, pid) is None
    assert _pidfd.signal_pidfd(pidfd, signal.SIGKILL)
    assert _pidfd.wait_readable(pidfd, 30)
    status = _reap.reap_pidfd(pidfd, pid)
    assert status == tether.Signaled(signal.SIGKILL)
    assert status is not None
    assert status.rusage is not None
    with pytest.raises(ChildProcessError):
        _reap.reap_pidfd(pidfd, pid)


def test_wait_reports_exit_codes_and_signals() -> None:
    with tether.spawn(["sh", "-c", "exit 3"]) as process:
        assert process.wait() == tether.Exited(3)
        assert process.pidfd is None, "closed after the reap"
    with tether.spawn(["sleep", "60"]) as process:
        process.kill()
        status = process.wait()
        assert status == tether.Signaled(signal.SIGKILL)
        assert status.rusage is not None
        assert process.wait() is status
        assert process.wait(0) is status


def test_wait_after_a_foreign_reap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-step give-back-and-reap of ``wait`` reports a foreign reap as ``poll`` does."""
    process = tether.spawn(["sh", "-c", "exit 5"])
    assert process.pidfd is not None
    assert _pidfd.wait_readable(process.pidfd, 30)
    os.waitpid(process.pid, 0)  # someone else's reap
    try:
        status = process.wait()
    except tether.StatusUnknownError:
        assert process.pidfd is None
        return
    assert status == tether.Exited(5)  # Linux 6.15+ kept the status on the pidfd
    assert process.pidfd is None


def test_two_threads_wait_for_one_child() -> None:
    with tether.spawn(["sleep", "60"]) as process:
        results: list[object] = []
        ready = threading.Barrier(3)

        def waiter() -> None:
            ready.wait()
            results.append(process.wait())

        threads = [threading.Thread(target=waiter) for _ in range(2)]
        for thread in threads:
            thread.start()
        ready.wait()
        process.kill()
        for thread in threads:
            thread.join()
        assert results[0] is results[1]
        assert results[0] == tether.Signaled(signal.SIGKILL)
        assert process.pidfd is None


class Interrupted(Exception):
    """Raised by the test's signal handler."""


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    try:
        yield read_end, write_end
    finally:
        os.close(read_end)
        os.close(write_end)


NATIVE_WAITS = ["wait_readable", "wait_exited"]
"""The C waits; wait_exited on an fd that is no pidfd of our child waits as wait_readable."""


@needs_native
@pytest.mark.parametrize("wait", NATIVE_WAITS)
def test_native_wait_returns_once_the_fd_is_readable(pipe: tuple[int, int], wait: str) -> None:
    read_end, write_end = pipe
    writer = threading.Timer(0.05, os.write, (write_end, b"x"))
    writer.start()
    try:
        assert getattr(spawner, wait)(read_end) is None
    finally:
        writer.join()
    assert os.read(read_end, 1) == b"x"


@needs_native
@pytest.mark.parametrize("wait", NATIVE_WAITS)
def test_native_wait_rejects_bad_fds(wait: str) -> None:
    with pytest.raises(ValueError, match="out of range"):
        getattr(spawner, wait)(-1)
    with pytest.raises(TypeError):
        getattr(spawner, wait)("3")


@needs_native
def test_a_raising_signal_handler_ends_the_native_wait(pipe: tuple[int, int]) -> None:
    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(Interrupted):
            spawner.wait_readable(pipe[0])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@needs_native
def test_a_returning_signal_handler_does_not_end_the_native_wait(pipe: tuple[int, int]) -> None:
    """EINTR is retried after the handlers ran (PEP 475): only the write ends the wait."""
    read_end, write_end = pipe
    handled = threading.Semaphore(0)
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: handled.release())

    written: list[bool] = []

    def write_after_three_signals() -> None:
        for _ in range(3):
            handled.acquire()
        written.append(True)
        os.write(write_end, b"x")

    writer = threading.Thread(target=write_after_three_signals)
    writer.start()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)
        spawner.wait_readable(read_end)
        assert written, "the wait returned before the fd was readable"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        for _ in range(3):
            handled.release()  # a writer still waiting (the wait failed) goes on
        writer.join()
    assert os.read(read_end, 1) == b"x"


# --- wait_exited: a blocking waitid(WNOWAIT) that leaves the child unreaped ----------


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"


@needs_native
def test_wait_exited_returns_at_the_exit_and_leaves_the_child_unreaped(
    child: tuple[int, int],
) -> None:
    pid, pidfd = child
    killer = threading.Timer(0.05, _pidfd.signal_pidfd, (pidfd, signal.SIGTERM))
    killer.start()
    try:
        assert spawner.wait_exited(pidfd) is None
    finally:
        killer.join()
    assert _zombie(pid), "the wait reaped the child: the caller's lock no longer guards its pid"
    result = spawner.reap_pidfd(pidfd)
    assert result is not None
    assert result[:2] == (os.CLD_KILLED, signal.SIGTERM)


@needs_native
def test_wait_exited_on_a_process_that_is_not_our_child_waits_for_its_pidfd() -> None:
    """ECHILD from waitid: the poll on the pidfd decides, as wait_readable would."""
    read_end, write_end = os.pipe()
    try:
        outer = tether.spawn(["/bin/sh", "-c", "sleep 0.2 & echo $!"], stdout=write_end)
        os.close(write_end)
        write_end = -1
        grandchild = int(os.read(read_end, 64))
        pidfd = os.pidfd_open(grandchild)  # not our child: its parent is the shell
        try:
            outer.wait()
            assert spawner.wait_exited(pidfd) is None
            assert not os.path.exists(f"/proc/{grandchild}/stat") or _zombie(grandchild)
        finally:
            os.close(pidfd)
            with contextlib.suppress(ChildProcessError):  # ours if we are a subreaper
                os.waitpid(grandchild, os.WNOHANG)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


@needs_native
def test_a_raising_signal_handler_ends_wait_exited_and_leaves_the_child(
    child: tuple[int, int],
) -> None:
    pid, pidfd = child

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(Interrupted):
            spawner.wait_exited(pidfd)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not _zombie(pid)
    assert spawner.reap_pidfd(pidfd) is None  # still running, still ours


@needs_native
def test_a_returning_signal_handler_does_not_end_wait_exited(child: tuple[int, int]) -> None:
    """EINTR is retried after the handlers ran (PEP 475): only the exit ends the wait."""
    pid, pidfd = child
    handled = threading.Semaphore(0)
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: handled.release())
    killed: list[bool] = []

    def kill_after_three_signals() -> None:
        for _ in range(3):
            handled.acquire()
        killed.append(True)
        _pidfd.signal_pidfd(pidfd, signal.SIGKILL)

    killer = threading.Thread(target=kill_after_three_signals)
    killer.start()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.02, 0.02)
        spawner.wait_exited(pidfd)
        assert killed, "the wait returned before the child exited"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        for _ in range(3):
            handled.release()
        killer.join()
    assert _zombie(pid)


def test_process_wait_without_a_timeout_waits_through_wait_exited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tether._core import _process

    if _process._wait_exited is None:
        pytest.skip("the C extension was not built")
    calls: list[int] = []
    real = _process._wait_exited

    def counted(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(_process, "_wait_exited", counted)
    process = tether.spawn(["/bin/sh", "-c", "exit 3"])
    pidfd = process.pidfd
    assert process.wait() == tether.Exited(3)
    assert calls == [pidfd]
    assert process.pidfd is None


def test_the_core_wait_uses_the_native_call_only_without_a_timeout(
    pipe: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    monkeypatch.setattr(_reap, "_native_wait", calls.append)
    assert _reap.wait_readable(pipe[0], None) is True
    assert calls == [pipe[0]]
    assert _reap.wait_readable(pipe[0], 0.01) is False  # timed: select.poll, not the C call
    assert calls == [pipe[0]]


@needs_native
@pytest.mark.parametrize(
    ("command", "signum", "expected"),
    [
        ("exit 0", 0, tether.Exited(0)),
        ("exit 255", 0, tether.Exited(255)),
        ("kill -TERM $$", 0, tether.Signaled(signal.SIGTERM)),
        ("exec sleep 60", signal.SIGKILL, tether.Signaled(signal.SIGKILL)),
        # a signal that Signals has no member for: built by decode_waitid instead
        ("exec sleep 60", signal.SIGRTMIN + 3, tether.Signaled(int(signal.SIGRTMIN) + 3)),
    ],
)
def test_the_status_built_in_c_equals_the_decoded_one(
    command: str, signum: int, expected: tether.Status
) -> None:
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", command], os.environ)
    pidfd = os.pidfd_open(pid)
    try:
        if signum:
            assert _pidfd.signal_pidfd(pidfd, signum)
        assert _pidfd.wait_readable(pidfd, 30)
        status = spawner.reap_status(pidfd)
    finally:
        os.close(pidfd)
    assert status == expected
    assert type(status) is type(expected)
    assert status.returncode == expected.returncode
    assert repr(dataclasses.replace(status, rusage=None)) == repr(expected)
    assert hash(status) == hash(expected)
    rusage = status.rusage
    assert isinstance(rusage, tether.Rusage)
    assert rusage.user_time >= 0.0
    assert rusage.system_time >= 0.0
    assert rusage.max_rss > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.rusage = None  # type: ignore[misc]


@needs_native
def test_the_c_status_reports_a_running_child_and_a_foreign_reap(
    child: tuple[int, int],
) -> None:
    pid, pidfd = child
    assert _pidfd.signal_pidfd(pidfd, signal.SIGSTOP)
    os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOWAIT)  # stopped, which is not exited
    assert spawner.reap_status(pidfd) is None
    assert _pidfd.signal_pidfd(pidfd, signal.SIGKILL)
    os.waitpid(pid, 0)  # someone else reaps it
    with pytest.raises(ChildProcessError):
        spawner.reap_status(pidfd)
    with pytest.raises(ValueError, match="out of range"):
        spawner.reap_status(-1)


@needs_native
def test_status_types_are_checked_before_any_is_kept() -> None:
    from tether._status import Exited, Rusage, Signaled, decode_waitid

    signals = {member.value: member for member in signal.Signals}
    with pytest.raises(TypeError, match="set_status_types"):
        spawner.set_status_types(Exited, Signaled, Rusage)  # type: ignore[call-arg]

    class NoSlots:
        pass

    with pytest.raises(AttributeError):
        spawner.set_status_types(NoSlots, Signaled, Rusage, signals, decode_waitid)  # type: ignore[arg-type]

    class PropertyNotSlot:
        exit_code = property(lambda self: 0)
        rusage = property(lambda self: None)

    with pytest.raises(TypeError, match="is not an object slot"):
        spawner.set_status_types(PropertyNotSlot, Signaled, Rusage, signals, decode_waitid)  # type: ignore[arg-type]

    class BorrowedSlots:  # another class's slot descriptors: not this layout's
        exit_code = vars(Exited)["exit_code"]
        rusage = Exited.rusage

    with pytest.raises(TypeError, match="is not an object slot"):
        spawner.set_status_types(BorrowedSlots, Signaled, Rusage, signals, decode_waitid)  # type: ignore[arg-type]
    with tether.spawn(["sh", "-c", "exit 4"]) as process:  # what was set before still works
        assert process.wait() == tether.Exited(4)

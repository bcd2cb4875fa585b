"""The raw pidfd layer, below Process."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Iterator

import pytest

import tether
from tether import Exited, Signaled
from tether._linux import _pidfd


@pytest.fixture
def child() -> Iterator[tuple[int, int]]:
    """A raw child that sleeps, with its pidfd; killed and reaped afterwards if need be."""
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exec sleep 60"], os.environ)
    pidfd = os.pidfd_open(pid)
    try:
        yield pid, pidfd
    finally:
        if _pidfd.signal_pidfd(pidfd, signal.SIGKILL):
            with contextlib.suppress(ChildProcessError):  # the test may have reaped it
                os.waitpid(pid, 0)
        os.close(pidfd)


def test_running_child_is_not_reaped(child: tuple[int, int]) -> None:
    pid, pidfd = child
    assert _pidfd.reap_pidfd(pidfd, pid) is None
    assert not _pidfd.wait_readable(pidfd, 0)


def test_reap_through_the_pidfd_collects_rusage(child: tuple[int, int]) -> None:
    pid, pidfd = child
    assert _pidfd.signal_pidfd(pidfd, signal.SIGTERM)
    assert _pidfd.wait_readable(pidfd, 30)
    status = _pidfd.reap_pidfd(pidfd, pid)
    assert status == Signaled(signal.SIGTERM)
    assert status is not None
    assert status.rusage is not None
    assert not _pidfd.signal_pidfd(pidfd, signal.SIGTERM), "reaped: ESRCH, reported as False"


def test_wait_readable_never_returns_early(child: tuple[int, int]) -> None:
    _, pidfd = child
    for timeout in (0.0005, 0.003, 0.02):
        started = time.monotonic()
        assert not _pidfd.wait_readable(pidfd, timeout)
        assert time.monotonic() - started >= timeout


def test_live_process_has_no_exit_record(child: tuple[int, int]) -> None:
    _, pidfd = child
    assert _pidfd.recover_exit_status(pidfd) is None


def test_exit_record_after_a_foreign_reap() -> None:
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 12"], os.environ)
    pidfd = os.pidfd_open(pid)
    try:
        os.waitpid(pid, 0)
        with pytest.raises(ChildProcessError):
            _pidfd.reap_pidfd(pidfd, pid)
        assert _pidfd.recover_exit_status(pidfd) == Exited(12)
    finally:
        os.close(pidfd)


def test_refusal_disables_pidfds_and_reset_restores(
    child: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(pid: int, flags: int = 0) -> int:
        raise OSError(errno.EPERM, "seccomp")

    pid, _ = child
    monkeypatch.setattr(os, "pidfd_open", refuse)
    try:
        assert _pidfd.open_pidfd(pid) is None
        assert not _pidfd.pidfds_available()
        monkeypatch.undo()
        assert _pidfd.open_pidfd(pid) is None, "stays off until reset"
    finally:
        _pidfd.reset_pidfd_probe()
    fd = _pidfd.open_pidfd(pid)
    assert fd is not None
    os.close(fd)


def test_a_pidfd_for_a_process_that_is_not_our_child_is_refused() -> None:
    assert _pidfd.open_pidfd(os.getppid()) is None
    assert _pidfd.pidfds_available()


def test_fallback_signals_only_a_running_child() -> None:
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 0"], os.environ)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    assert _pidfd.exited_unreaped(pid)
    assert not _pidfd.signal_pid(pid, signal.SIGKILL)
    assert _pidfd.reap_pid(pid) == Exited(0)


def test_an_invalid_signal_does_not_turn_group_signalling_off() -> None:
    """EINVAL for a bad signal number is the caller's error, not a missing kernel feature."""
    with tether.spawn(["sleep", "60"], process_group=0) as process:
        with pytest.raises(OSError, match="Invalid argument") as caught:
            process.send_signal(999, group=True)
        assert caught.value.errno == errno.EINVAL
        assert process.pidfd is not None
        assert _pidfd.signal_pinned_group(process.pidfd, 0) is True, "still on (Linux 6.9+)"
        process.kill()
        assert process.wait() == Signaled(signal.SIGKILL)

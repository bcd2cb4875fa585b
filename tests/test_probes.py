"""The kernel facts tether learns (``_probes.KERNEL``), and the ``prctl`` wrapper.

A fact may only be learned from a probe whose failure means nothing else: these tests
make callers err (a bad signal number, a bad fd) and check that no fact changes, and
simulate older kernels by refusing calls the way those kernels do.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
from collections.abc import Iterator

import pytest

import tether
from tether import Signaled
from tether._linux import _pidfd, _prctl, _probes
from tether._linux._probes import KERNEL, PIDFD_SIGNAL_PROCESS_GROUP

REAL_PIDFD_SEND_SIGNAL = signal.pidfd_send_signal
FACTS = ("pidfd_open", "waitid_pidfd", "pidfd_group_signal")


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing learned yet; what the process knew is put back afterwards."""
    for fact in FACTS:
        monkeypatch.setattr(KERNEL, fact, None)


@pytest.fixture
def group_leader() -> Iterator[tuple[int, int]]:
    """A raw child leading its own process group, with its pidfd; killed and reaped after."""
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exec sleep 60"], os.environ, setpgroup=0)
    pidfd = os.pidfd_open(pid)
    try:
        yield pid, pidfd
    finally:
        if _pidfd.signal_pidfd(pidfd, signal.SIGKILL):
            with contextlib.suppress(ChildProcessError):  # the test may have reaped it
                os.waitpid(pid, 0)
        os.close(pidfd)


def _refuse_group_flag(pidfd: int, sig: int, siginfo: object = None, flags: int = 0) -> None:
    """``pidfd_send_signal`` as Linux 5.1 to 6.8 answer it: EINVAL for any flag."""
    if flags:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
    REAL_PIDFD_SEND_SIGNAL(pidfd, sig, None, flags)


def _kernel_at_least(major: int, minor: int) -> bool:
    release = os.uname().release.split("-")[0].split(".")
    return (int(release[0]), int(release[1])) >= (major, minor)


# --- PIDFD_SIGNAL_PROCESS_GROUP -----------------------------------------------------


@pytest.mark.skipif(not _kernel_at_least(6, 9), reason="PIDFD_SIGNAL_PROCESS_GROUP is 6.9")
@pytest.mark.usefixtures("fresh")
def test_the_group_flag_is_probed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[int] = []
    real_pidfd_open = os.pidfd_open

    def counting(pid: int, flags: int = 0) -> int:
        opened.append(pid)
        return real_pidfd_open(pid, flags)

    monkeypatch.setattr(os, "pidfd_open", counting)
    assert _probes.pidfd_group_signal() is True
    assert _probes.pidfd_group_signal() is True
    assert opened == [os.getpid()], "probed once, through a pidfd of this process"
    assert KERNEL.pidfd_group_signal is True


@pytest.mark.usefixtures("fresh")
def test_an_older_kernel_falls_back_to_killpg(
    group_leader: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    pid, pidfd = group_leader
    monkeypatch.setattr(signal, "pidfd_send_signal", _refuse_group_flag)
    assert _pidfd.signal_pinned_group(pidfd, 0) is None
    assert KERNEL.pidfd_group_signal is False
    assert _pidfd.signal_group(pid, pidfd, signal.SIGTERM), "through killpg"
    assert _pidfd.wait_readable(pidfd, 30)
    assert _pidfd.reap_pidfd(pidfd, pid) == Signaled(signal.SIGTERM)


@pytest.mark.skipif(not _kernel_at_least(6, 9), reason="PIDFD_SIGNAL_PROCESS_GROUP is 6.9")
@pytest.mark.parametrize("learned", [True, None], ids=["learned", "first-call"])
def test_an_invalid_signal_is_the_callers_error(
    learned: bool | None, group_leader: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, pidfd = group_leader
    monkeypatch.setattr(KERNEL, "pidfd_group_signal", learned)
    with pytest.raises(OSError, match="Invalid argument"):
        _pidfd.signal_pinned_group(pidfd, 999)
    assert KERNEL.pidfd_group_signal is True
    assert _pidfd.signal_pinned_group(pidfd, 0) is True


def test_a_group_with_no_member_left_answers_false(group_leader: tuple[int, int]) -> None:
    pid, pidfd = group_leader
    assert _pidfd.signal_pidfd(pidfd, signal.SIGKILL)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    expected = None if KERNEL.pidfd_group_signal is False else True
    assert _pidfd.signal_pinned_group(pidfd, 0) is expected, "a zombie is still a member"
    assert _pidfd.reap_pidfd(pidfd, pid) == Signaled(signal.SIGKILL)
    expected = None if KERNEL.pidfd_group_signal is False else False
    assert _pidfd.signal_pinned_group(pidfd, 0) is expected


@pytest.mark.usefixtures("fresh", "no_pidfd")
def test_without_pidfds_the_group_flag_stays_unknown() -> None:
    assert _probes.pidfd_group_signal() is None
    assert KERNEL.pidfd_group_signal is None


@pytest.mark.usefixtures("fresh")
def test_no_fd_for_the_probe_is_asked_again_later(monkeypatch: pytest.MonkeyPatch) -> None:
    def exhausted(pid: int, flags: int = 0) -> int:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(os, "pidfd_open", exhausted)
    assert _probes.pidfd_group_signal() is None
    assert KERNEL.pidfd_group_signal is None
    assert KERNEL.pidfd_open is None, "a shortage is no refusal"


def test_the_flag_value_is_the_kernels() -> None:
    assert PIDFD_SIGNAL_PROCESS_GROUP == 4  # include/uapi/linux/pidfd.h


# --- pidfd_open and waitid(P_PIDFD) -------------------------------------------------


@pytest.mark.usefixtures("fresh")
def test_open_pidfd_learns_both_pidfd_facts(group_leader: tuple[int, int]) -> None:
    pid, _ = group_leader
    pidfd = _pidfd.open_pidfd(pid)
    assert pidfd is not None
    os.close(pidfd)
    assert (KERNEL.pidfd_open, KERNEL.waitid_pidfd) == (True, True)


def test_the_old_switches_are_the_pidfd_open_fact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(KERNEL, "pidfd_open", True)
    _pidfd.disable_pidfds()
    assert KERNEL.pidfd_open is False
    assert not _pidfd.pidfds_available()
    _pidfd.reset_pidfd_probe()
    assert KERNEL.pidfd_open is None
    assert _pidfd.pidfds_available()


def test_an_invalid_pidfd_does_not_turn_waitid_pidfd_off(
    group_leader: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    pid, _ = group_leader
    monkeypatch.setattr(KERNEL, "waitid_pidfd", True)
    with pytest.raises(OSError, match="Invalid argument"):
        _pidfd.reap_pidfd(-1, pid)
    assert KERNEL.waitid_pidfd is True


@pytest.mark.usefixtures("fresh")
def test_an_unknown_waitid_pidfd_is_learned_from_the_first_reap(
    group_leader: tuple[int, int],
) -> None:
    pid, pidfd = group_leader
    assert _pidfd.reap_pidfd(pidfd, pid) is None
    assert KERNEL.waitid_pidfd is True


def test_forget_and_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    for fact in FACTS:
        monkeypatch.setattr(KERNEL, fact, True)
    assert repr(KERNEL) == (
        "KernelProbes(pidfd_group_signal=True, pidfd_open=True, waitid_pidfd=True)"
    )
    KERNEL.forget()
    assert (KERNEL.pidfd_open, KERNEL.waitid_pidfd, KERNEL.pidfd_group_signal) == (None,) * 3


# --- prctl --------------------------------------------------------------------------


def test_a_prctl_failure_names_the_option() -> None:
    with pytest.raises(OSError, match=r"prctl\(PR_SET_PDEATHSIG\): Invalid argument") as caught:
        _prctl.set_pdeathsig(999)
    assert caught.value.errno == errno.EINVAL


def test_the_fork_child_loads_no_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """libc is opened at import, in the parent: ``dlopen`` after fork can deadlock."""

    def no_dlopen(*args: object, **kwargs: object) -> None:
        raise AssertionError("ctypes.CDLL called")

    monkeypatch.setattr(ctypes, "CDLL", no_dlopen)
    process = tether.spawn(
        ["sh", "-c", "grep NoNewPrivs /proc/self/status"],
        backend="fork",
        no_new_privs=True,
        pdeathsig=signal.SIGTERM,
        stdout=tether.PIPE,
    )
    with process:
        assert process.stdout is not None
        assert process.stdout.read().split() == [b"NoNewPrivs:", b"1"]
        assert process.wait().success

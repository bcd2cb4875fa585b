"""Tests for ``tether._status``: decoding against the ``os.W*`` macros, and real children."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import functools
import os
import pickle
import resource
import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import pytest

from tether import Continued, Exited, Rusage, Signaled, Status, Stopped, decode_status
from tether._status import decode_waitid, rusage_of, signal_name

_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_DUMPABLE = 4
_PTRACE_TRACEME = 0
_PTRACE_REFUSED = 77

_RUSAGE = Rusage(user_time=1.5, system_time=0.25, max_rss=4096)

_FATAL_SIGNALS = [
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGILL,
    signal.SIGTRAP,
    signal.SIGABRT,
    signal.SIGBUS,
    signal.SIGFPE,
    signal.SIGUSR1,
    signal.SIGSEGV,
    signal.SIGUSR2,
    signal.SIGPIPE,
    signal.SIGALRM,
    signal.SIGTERM,
    signal.SIGXCPU,
    signal.SIGXFSZ,
    signal.SIGVTALRM,
    signal.SIGPROF,
    signal.SIGSYS,
    signal.SIGKILL,
]


# --- helpers for real children ------------------------------------------------------------------


def _fork(body: Callable[[], object]) -> int:
    """Fork a child that runs ``body`` and never returns into pytest.

    The child exits 97 if ``body`` returns and 98 if it raises; ``body`` is expected to end the
    process itself.
    """
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process with threads (pytest's faulthandler
        # watchdog is one); with filterwarnings=error that would lose the pid after the fork.
        warnings.filterwarnings("ignore", r".*use of fork\(\) may lead to deadlocks", Warning)
        pid = os.fork()
    if pid == 0:
        code = 98
        try:
            body()
            code = 97
        finally:
            os._exit(code)
    return pid


class _Child:
    """A forked child that is always reaped: killed with SIGKILL on exit if still unreaped."""

    def __init__(self, body: Callable[[], object]) -> None:
        self.pid = _fork(body)
        self.reaped = False

    def __enter__(self) -> _Child:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.reaped:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self.reaped = True

    def waitpid(self, options: int = 0) -> int:
        pid, raw = os.waitpid(self.pid, options)
        assert pid == self.pid
        self.reaped = os.WIFEXITED(raw) or os.WIFSIGNALED(raw)
        return raw

    def wait4(self) -> tuple[int, resource.struct_rusage]:
        pid, raw, ru = os.wait4(self.pid, 0)
        assert pid == self.pid
        self.reaped = os.WIFEXITED(raw) or os.WIFSIGNALED(raw)
        return raw, ru

    def waitid(self, options: int) -> os.waitid_result:
        result = os.waitid(os.P_PID, self.pid, options)
        assert result is not None
        assert result.si_pid == self.pid
        gone = result.si_code in (os.CLD_EXITED, os.CLD_KILLED, os.CLD_DUMPED)
        self.reaped = gone and not options & os.WNOWAIT
        return result

    def wait_status(self, method: str) -> Status:
        """Reap the child with ``method`` and decode what it reports."""
        if method == "waitpid":
            return decode_status(self.waitpid())
        result = self.waitid(os.WEXITED)
        return decode_waitid(result.si_code, result.si_status)


def _kill_self(sig: int) -> None:
    """Child body: deliver ``sig`` to ourselves with its default action."""
    if sig != signal.SIGKILL:
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
    os.kill(os.getpid(), sig)


# --- decode_status against the macros -----------------------------------------------------------


def _oracle(raw: int) -> Status | None:
    """What the os.W* macros say about ``raw``; ``None`` where no valid status results."""
    if os.WIFEXITED(raw):
        return Exited(os.WEXITSTATUS(raw))
    if os.WIFSIGNALED(raw):
        sig = os.WTERMSIG(raw)
        return Signaled(sig, os.WCOREDUMP(raw)) if sig < signal.NSIG else None
    if os.WIFSTOPPED(raw):
        sig = os.WSTOPSIG(raw)
        return Stopped(sig) if 0 < sig < signal.NSIG else None
    if os.WIFCONTINUED(raw):
        return Continued()
    return None


def test_decode_status_agrees_with_macros_everywhere() -> None:
    mismatches = []
    kinds: collections.Counter[str] = collections.Counter()
    for raw in range(0x10000):
        expected = _oracle(raw)
        try:
            got: Status | None = decode_status(raw)
        except ValueError:
            got = None
        if got != expected or type(got) is not type(expected):
            mismatches.append((raw, got, expected))
        kinds[type(got).__name__] += 1
    assert mismatches == []
    assert kinds == {
        "Exited": 2 * 256,
        "Signaled": (signal.NSIG - 1) * 2 * 256,
        "Stopped": signal.NSIG - 1,
        "Continued": 1,
        "NoneType": 0x10000 - 2 * 256 - (signal.NSIG - 1) * (2 * 256 + 1) - 1,
    }


def test_wait_macros_are_mutually_exclusive() -> None:
    for raw in range(0x10000):
        accepted = [os.WIFEXITED(raw), os.WIFSIGNALED(raw), os.WIFSTOPPED(raw)]
        accepted.append(os.WIFCONTINUED(raw))
        assert sum(accepted) <= 1, hex(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0x0000, Exited(0)),
        (0x0300, Exited(3)),
        (0xFF00, Exited(255)),
        (0x0080, Exited(0)),
        (0x0009, Signaled(signal.SIGKILL)),
        (0x0086, Signaled(signal.SIGABRT, core_dumped=True)),
        (0x0109, Signaled(signal.SIGKILL)),
        (0x0040, Signaled(64)),
        (0x137F, Stopped(signal.SIGSTOP)),
        (0x407F, Stopped(64)),
        (0xFFFF, Continued()),
    ],
    ids=lambda value: hex(value) if isinstance(value, int) else None,
)
def test_decode_status_examples(raw: int, expected: Status) -> None:
    status = decode_status(raw)
    assert status == expected
    assert type(status) is type(expected)
    assert status.rusage is None


@pytest.mark.parametrize(
    "raw",
    [
        -1,
        0x10000,
        0x1057F,  # a ptrace event stop: (PTRACE_EVENT_CLONE << 16) | SIGTRAP << 8 | 0x7f
        0x007F,  # stopped by signal 0
        0x417F,  # stopped by signal 65
        0xFF7F,
        0x0041,  # killed by signal 65
        0x007E,
        0x00FE,
        0x00FF,
        0x01FF,
        0xFEFF,
    ],
    ids=hex,
)
def test_decode_status_rejects(raw: int) -> None:
    with pytest.raises(ValueError, match="wait status"):
        decode_status(raw)


def test_decode_status_normalises_signals() -> None:
    assert decode_status(0x0009).signal is signal.SIGKILL
    assert decode_status(0x137F).signal is signal.SIGSTOP
    rt = int(signal.SIGRTMIN) + 1
    assert type(decode_status(rt).signal) is int


# --- decode_waitid --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("si_code", "si_status", "expected"),
    [
        (os.CLD_EXITED, 0, Exited(0)),
        (os.CLD_EXITED, 255, Exited(255)),
        (os.CLD_KILLED, signal.SIGKILL, Signaled(signal.SIGKILL)),
        (os.CLD_DUMPED, signal.SIGSEGV, Signaled(signal.SIGSEGV, core_dumped=True)),
        (os.CLD_STOPPED, signal.SIGTSTP, Stopped(signal.SIGTSTP)),
        (os.CLD_TRAPPED, signal.SIGTRAP, Stopped(signal.SIGTRAP, trapped=True)),
        (os.CLD_CONTINUED, signal.SIGCONT, Continued()),
    ],
)
def test_decode_waitid(si_code: int, si_status: int, expected: Status) -> None:
    status = decode_waitid(si_code, si_status)
    assert status == expected
    assert type(status) is type(expected)


@pytest.mark.parametrize(
    ("si_code", "si_status", "expected"),
    [
        (os.CLD_EXITED, 7, Exited(7)),
        (os.CLD_KILLED, signal.SIGKILL, Signaled(signal.SIGKILL)),
        (os.CLD_DUMPED, signal.SIGABRT, Signaled(signal.SIGABRT, core_dumped=True)),
        (os.CLD_KILLED, int(signal.SIGRTMIN) + 1, Signaled(int(signal.SIGRTMIN) + 1)),
        (os.CLD_STOPPED, signal.SIGTSTP, Stopped(signal.SIGTSTP)),
        (os.CLD_CONTINUED, signal.SIGCONT, Continued()),
    ],
)
def test_decode_waitid_with_rusage_matches_the_constructors(
    si_code: int, si_status: int, expected: Status
) -> None:
    """The fast builds (no dataclass ``__init__``) give the values the constructors give."""
    usage = rusage_of(0.25, 0.5, 4096)
    assert usage == Rusage(0.25, 0.5, 4096)
    assert hash(usage) == hash(Rusage(0.25, 0.5, 4096))
    status = decode_waitid(si_code, si_status, usage)
    assert status == expected
    assert type(status) is type(expected)
    assert hash(status) == hash(expected)
    assert repr(status) == repr(expected.with_rusage(usage))
    assert status.rusage is usage
    assert status.signal == expected.signal
    assert type(status.signal) is type(expected.signal)  # a Signals member when one exists
    assert status.core_dumped == expected.core_dumped
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.rusage = None  # type: ignore[misc]


@pytest.mark.parametrize("si_code", [0, -1, 7, 0x10000])
def test_decode_waitid_rejects_unknown_code(si_code: int) -> None:
    with pytest.raises(ValueError, match="si_code"):
        decode_waitid(si_code, 0)


@pytest.mark.parametrize(
    ("si_code", "si_status"),
    [
        (os.CLD_EXITED, 256),
        (os.CLD_EXITED, -1),
        (os.CLD_KILLED, 0),
        (os.CLD_DUMPED, signal.NSIG),
        (os.CLD_STOPPED, 0),
        (os.CLD_TRAPPED, signal.NSIG),
    ],
)
def test_decode_waitid_rejects_bad_status(si_code: int, si_status: int) -> None:
    with pytest.raises(ValueError, match=r"must be in"):
        decode_waitid(si_code, si_status)


# --- the values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (Exited(0), "exited with status 0"),
        (Exited(3), "exited with status 3"),
        (Signaled(signal.SIGKILL), "killed by SIGKILL"),
        (Signaled(signal.SIGSEGV, core_dumped=True), "killed by SIGSEGV (core dumped)"),
        (Signaled(6), "killed by SIGABRT"),
        (Signaled(29), "killed by SIGIO"),
        (Stopped(signal.SIGSTOP), "stopped by SIGSTOP"),
        (Stopped(signal.SIGTRAP, trapped=True), "trapped by SIGTRAP"),
        (Continued(), "continued"),
        (Continued(rusage=_RUSAGE), "continued"),
    ],
)
def test_str(status: Status, text: str) -> None:
    assert str(status) == text


def test_realtime_signal_names() -> None:
    rtmin, rtmax = int(signal.SIGRTMIN), int(signal.SIGRTMAX)
    assert str(Signaled(rtmin)) == "killed by SIGRTMIN"
    assert str(Signaled(rtmin + 1)) == "killed by SIGRTMIN+1"
    assert str(Stopped(rtmax - 1)) == "stopped by SIGRTMAX-1"
    assert str(Signaled(rtmax)) == "killed by SIGRTMAX"
    names = [signal_name(n) for n in range(rtmin + 1, rtmax)]
    assert len(set(names)) == len(names)
    assert all(name.startswith(("SIGRTMIN+", "SIGRTMAX-")) for name in names)
    known = {member.value for member in signal.Signals}
    for n in set(range(1, rtmin)) - known:
        assert str(Signaled(n)) == f"killed by signal {n}"


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (Exited(3), "Exited(exit_code=3)"),
        (Signaled(9), "Signaled(signal=<Signals.SIGKILL: 9>, core_dumped=False)"),
        (
            Signaled(11, core_dumped=True),
            "Signaled(signal=<Signals.SIGSEGV: 11>, core_dumped=True)",
        ),
        (
            Signaled(int(signal.SIGRTMIN) + 1),
            f"Signaled(signal={int(signal.SIGRTMIN) + 1}, core_dumped=False)",
        ),
        (Stopped(19), "Stopped(signal=<Signals.SIGSTOP: 19>, trapped=False)"),
        (Continued(), "Continued()"),
        (
            Exited(0, rusage=_RUSAGE),
            "Exited(exit_code=0, rusage=Rusage(user_time=1.5, system_time=0.25, max_rss=4096))",
        ),
    ],
)
def test_repr(status: Status, text: str) -> None:
    assert repr(status) == text


def test_equality_and_hash_ignore_rusage() -> None:
    assert Exited(3) == Exited(3, rusage=_RUSAGE)
    assert hash(Exited(3)) == hash(Exited(3, rusage=_RUSAGE))
    assert Signaled(9, rusage=_RUSAGE) == Signaled(signal.SIGKILL)
    assert Continued() == Continued(rusage=_RUSAGE)
    assert hash(Continued()) == hash(Continued(rusage=_RUSAGE))
    assert len({Exited(1), Exited(1, rusage=_RUSAGE), Exited(2)}) == 2


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (Exited(3), Exited(4)),
        (Exited(9), Signaled(9)),
        (Signaled(9), Stopped(9)),
        (Signaled(9), Signaled(9, core_dumped=True)),
        (Stopped(5), Stopped(5, trapped=True)),
        (Continued(), Exited(0)),
        (Exited(0), 0),
        (Signaled(9), 9),
    ],
    ids=repr,
)
def test_inequality(left: Status, right: object) -> None:
    assert left != right
    assert right != left


@pytest.mark.parametrize(
    "status", [Exited(3), Signaled(9), Stopped(19), Continued()], ids=lambda s: type(s).__name__
)
def test_frozen(status: Status) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.rusage = _RUSAGE  # type: ignore[misc]
    # Pythons without the fix for CPython gh-105936 raise TypeError for a non-field name.
    with pytest.raises((dataclasses.FrozenInstanceError, TypeError)):
        status.other = 1  # type: ignore[attr-defined]
    assert status.rusage is None


def test_frozen_fields() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Exited(3).exit_code = 4  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Signaled(9).signal = 15  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Stopped(19).trapped = True  # type: ignore[misc]


_PROPERTY_ROWS = [
    (Exited(0), 0, True, True, 0, None, False),
    (Exited(3), 3, False, True, 3, None, False),
    (Exited(255), 255, False, True, 255, None, False),
    (Signaled(9), -9, False, True, None, signal.SIGKILL, False),
    (Signaled(6, core_dumped=True), -6, False, True, None, signal.SIGABRT, True),
    (Signaled(40), -40, False, True, None, 40, False),
    (Stopped(19), None, False, False, None, signal.SIGSTOP, False),
    (Stopped(5, trapped=True), None, False, False, None, signal.SIGTRAP, False),
    (Continued(), None, False, False, None, None, False),
]


@pytest.mark.parametrize(
    ("status", "returncode", "success", "terminated", "exit_code", "sig", "core"),
    [pytest.param(*row, id=repr(row[0])) for row in _PROPERTY_ROWS],
)
def test_properties(
    status: Status,
    returncode: int | None,
    success: bool,
    terminated: bool,
    exit_code: int | None,
    sig: int | None,
    core: bool,
) -> None:
    assert status.returncode == returncode
    assert status.success is success
    assert status.terminated is terminated
    assert status.exit_code == exit_code
    assert status.signal == sig
    assert status.core_dumped is core


def test_signal_is_normalised() -> None:
    assert Signaled(9).signal is signal.SIGKILL
    assert Stopped(signal.SIGSTOP).signal is signal.SIGSTOP
    assert Signaled(6).signal is signal.SIGABRT
    rt = int(signal.SIGRTMIN) + 1
    assert Signaled(rt).signal == rt
    assert type(Signaled(rt).signal) is int


@pytest.mark.parametrize("code", [-1, 256, 1000])
def test_exit_code_validation(code: int) -> None:
    with pytest.raises(ValueError, match=r"exit_code must be in 0\.\.255"):
        Exited(code)


@pytest.mark.parametrize("variant", [Signaled, Stopped])
@pytest.mark.parametrize("number", [-1, 0, signal.NSIG, 128])
def test_signal_validation(variant: type[Signaled | Stopped], number: int) -> None:
    with pytest.raises(ValueError, match=rf"signal number must be in 1\.\.{signal.NSIG - 1}"):
        variant(number)


def test_type_validation() -> None:
    with pytest.raises(TypeError):
        Exited(3.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Signaled("9")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Stopped(None)  # type: ignore[arg-type]


def test_status_is_abstract() -> None:
    with pytest.raises(TypeError):
        Status()  # type: ignore[abstract]


def test_rusage_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        Exited(0, _RUSAGE)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "status", [Exited(3), Signaled(9), Stopped(19), Continued()], ids=lambda s: type(s).__name__
)
def test_with_rusage(status: Status) -> None:
    measured = status.with_rusage(_RUSAGE)
    assert type(measured) is type(status)
    assert measured.rusage is _RUSAGE
    assert status.rusage is None
    assert measured == status
    assert measured.with_rusage(None).rusage is None


@pytest.mark.parametrize(
    "status",
    [
        Exited(3, rusage=_RUSAGE),
        Signaled(9),
        Signaled(40, core_dumped=True),
        Stopped(5),
        Continued(),
    ],
    ids=repr,
)
def test_pickle_round_trip(status: Status) -> None:
    copy = pickle.loads(pickle.dumps(status))
    assert copy == status
    assert type(copy) is type(status)
    assert copy.rusage == status.rusage
    assert copy.signal is status.signal or copy.signal == status.signal


def test_match_statement() -> None:
    def describe(status: Status) -> str:
        match status:
            case Exited(0):
                return "ok"
            case Exited(code):
                return f"failed {code}"
            case Signaled(signal.SIGKILL):
                return "oom?"
            case Signaled(sig, core_dumped=True):
                return f"crashed {int(sig)}"
            case _:
                return "other"

    assert describe(decode_status(0)) == "ok"
    assert describe(decode_status(0x0200)) == "failed 2"
    assert describe(decode_status(0x0009)) == "oom?"
    assert describe(decode_status(0x008B)) == f"crashed {int(signal.SIGSEGV)}"
    assert describe(decode_status(0xFFFF)) == "other"


def test_rusage_from_values() -> None:
    ru = Rusage.from_values(1, 500_000, 0, 250_000, 2048)
    assert ru == Rusage(user_time=1.5, system_time=0.25, max_rss=2048 * 1024)


def test_rusage_from_struct() -> None:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    converted = Rusage.from_struct(ru)
    assert converted == Rusage(ru.ru_utime, ru.ru_stime, ru.ru_maxrss * 1024)


# --- real children --------------------------------------------------------------------------------


def test_real_exit_codes() -> None:
    with contextlib.ExitStack() as stack:
        children = [stack.enter_context(_Child(functools.partial(os._exit, c))) for c in range(256)]
        statuses = [decode_status(child.waitpid()) for child in children]
    assert statuses == [Exited(code) for code in range(256)]
    assert [status.returncode for status in statuses] == list(range(256))
    assert [status.success for status in statuses] == [True] + [False] * 255


@pytest.mark.parametrize("code", [0, 1, 42, 255])
def test_real_exit_codes_waitid(code: int) -> None:
    with _Child(functools.partial(os._exit, code)) as child:
        status = child.wait_status("waitid")
    assert status == Exited(code)


def _die_without_core(sig: int) -> None:
    """Child body: die of ``sig`` with core dumps impossible.

    RLIMIT_CORE 0 stops file dumps; clearing the dumpable flag also stops dumps piped to a
    program through core_pattern, which ignore RLIMIT_CORE.
    """
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    _LIBC.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    _kill_self(sig)


@pytest.mark.parametrize("method", ["waitpid", "waitid"])
@pytest.mark.parametrize("sig", _FATAL_SIGNALS, ids=lambda s: s.name)
def test_real_fatal_signals(sig: signal.Signals, method: str) -> None:
    with _Child(functools.partial(_die_without_core, sig)) as child:
        status = child.wait_status(method)
    assert status == Signaled(sig, core_dumped=False)
    assert status.signal is sig
    assert status.returncode == -sig
    assert str(status) == f"killed by {sig.name}"


def _core_pattern() -> str:
    with open("/proc/sys/kernel/core_pattern") as f:
        return f.read().strip()


def _dump_core(directory: Path, sig: int) -> None:
    """Child body: die of ``sig`` with a (small) core file written into ``directory``."""
    os.chdir(directory)
    hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
    resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
    with contextlib.suppress(OSError), open("/proc/self/coredump_filter", "w") as f:
        f.write("0")  # leave anonymous memory out: the core stays a few KiB
    _kill_self(sig)


@pytest.mark.parametrize("method", ["waitpid", "waitid"])
@pytest.mark.parametrize("sig", [signal.SIGABRT, signal.SIGSEGV], ids=lambda s: s.name)
def test_real_core_dump(tmp_path: Path, sig: signal.Signals, method: str) -> None:
    pattern = _core_pattern()
    if pattern.startswith("|"):
        pytest.skip(f"core_pattern pipes to a program, which may not take the dump: {pattern!r}")
    if "/" in pattern:
        pytest.skip(f"core_pattern writes outside the working directory: {pattern!r}")
    hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1024 * 1024:
        pytest.skip(f"the hard RLIMIT_CORE ({hard} bytes) is too low for a core dump")

    with _Child(functools.partial(_dump_core, tmp_path, sig)) as child:
        status = child.wait_status(method)
    cores = list(tmp_path.iterdir())
    for core in cores:
        core.unlink()
    assert status == Signaled(sig, core_dumped=True)
    assert str(status) == f"killed by {sig.name} (core dumped)"
    assert cores, "the kernel reported a core dump but wrote no file"


def _stop_self_then_wait() -> None:
    """Child body: stop ourselves, then wait to be killed."""
    os.kill(os.getpid(), signal.SIGSTOP)
    while True:
        signal.pause()


def test_real_stop_and_continue_waitpid() -> None:
    with _Child(_stop_self_then_wait) as child:
        stopped = decode_status(child.waitpid(os.WUNTRACED))
        assert stopped == Stopped(signal.SIGSTOP)
        assert str(stopped) == "stopped by SIGSTOP"
        os.kill(child.pid, signal.SIGCONT)
        assert decode_status(child.waitpid(os.WCONTINUED)) == Continued()
        os.kill(child.pid, signal.SIGKILL)
        assert decode_status(child.waitpid()) == Signaled(signal.SIGKILL)
        assert child.reaped


def test_real_stop_and_continue_waitid() -> None:
    with _Child(_stop_self_then_wait) as child:
        result = child.waitid(os.WSTOPPED)
        assert result.si_code == os.CLD_STOPPED
        assert decode_waitid(result.si_code, result.si_status) == Stopped(signal.SIGSTOP)
        os.kill(child.pid, signal.SIGCONT)
        result = child.waitid(os.WCONTINUED)
        assert decode_waitid(result.si_code, result.si_status) == Continued()
        os.kill(child.pid, signal.SIGKILL)
        result = child.waitid(os.WEXITED)
        assert decode_waitid(result.si_code, result.si_status) == Signaled(signal.SIGKILL)
        assert child.reaped


def _trap_self() -> None:
    """Child body: become traced by the parent, then take a signal (a ptrace stop)."""
    if _LIBC.ptrace(_PTRACE_TRACEME, 0, None, None) != 0:
        os._exit(_PTRACE_REFUSED)
    _kill_self(signal.SIGUSR1)
    while True:
        signal.pause()


def test_real_ptrace_trap() -> None:
    with _Child(_trap_self) as child:
        result = child.waitid(os.WSTOPPED | os.WEXITED | os.WNOWAIT)
        if result.si_code == os.CLD_EXITED and result.si_status == _PTRACE_REFUSED:
            pytest.skip("ptrace(PTRACE_TRACEME) is not permitted here")
        trapped = decode_waitid(result.si_code, result.si_status)
        assert trapped == Stopped(signal.SIGUSR1, trapped=True)
        assert str(trapped) == "trapped by SIGUSR1"
        # The raw status of the same stop cannot tell a ptrace stop from a job-control stop.
        assert decode_status(child.waitpid()) == Stopped(signal.SIGUSR1)
        os.kill(child.pid, signal.SIGKILL)
        assert decode_status(child.waitpid()) == Signaled(signal.SIGKILL)


def _burn_cpu() -> None:
    """Child body: spend about 50 ms of CPU in user mode, then exit 0."""
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        sum(range(10_000))
    os._exit(0)


def test_real_rusage() -> None:
    with _Child(_burn_cpu) as child:
        raw, ru = child.wait4()
    status = decode_status(raw).with_rusage(Rusage.from_struct(ru))
    assert status == Exited(0)
    assert status.rusage is not None
    assert status.rusage.user_time > 0
    assert status.rusage.system_time >= 0
    assert status.rusage.user_time + status.rusage.system_time >= 0.04
    assert status.rusage.max_rss > 1024 * 1024
    assert status.rusage.max_rss == ru.ru_maxrss * 1024

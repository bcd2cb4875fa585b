"""The raw Linux calls behind a child handle: pidfds, reaping, exit-status recovery.

A pid is only a number, and the kernel hands it to a new process as soon as the old
one is reaped; anything that signals or waits "by pid" after that moment talks to a
stranger. A pidfd is a file descriptor that names one process for as long as the fd
is open, so this module does everything through it:

* ``pidfd_open`` (Linux 5.3) right after spawn, while the unreaped child holds its pid;
* ``pidfd_send_signal`` (5.1) to signal, which fails with ESRCH once the process is reaped;
* ``poll`` for readability, which the kernel reports once the process has exited;
* ``waitid(P_PIDFD, ...)`` (5.4) to reap exactly that child. The raw syscall also fills a
  ``struct rusage`` (glibc's wrapper hides that argument), so it is called through ctypes
  where the syscall number is known; elsewhere the rusage is simply missing;
* ``ioctl(PIDFD_GET_INFO)`` with ``PIDFD_INFO_EXIT`` (6.15) to recover the wait status
  when someone else reaped our child (a foreign ``waitpid(-1)``, ``SIGCHLD`` ignored).

When pidfds are refused outright (ENOSYS on old kernels, EPERM under some seccomp
profiles) :func:`pidfds_available` turns false for the rest of the process and callers
use the pid-based helpers at the bottom, which are correct as long as no foreign code
reaps our children. What the kernel refused is kept in ``_probes.KERNEL``, learned only
from calls whose failure can mean nothing else; this module imports nothing async and
keeps no other state.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import platform
import select
import signal
import struct
import time

from .._durations import deadline_after, poll_millis, remaining
from .._status import Rusage, Status, decode_status, decode_waitid
from ._probes import KERNEL, PIDFD_SIGNAL_PROCESS_GROUP, pidfd_group_signal

__all__ = [
    "disable_pidfds",
    "exited_unreaped",
    "names_our_child",
    "note_pidfd_refusal",
    "open_pidfd",
    "pidfds_available",
    "reap_pid",
    "reap_pidfd",
    "recover_exit_status",
    "reset_pidfd_probe",
    "signal_group",
    "signal_pid",
    "signal_pidfd",
    "signal_pinned_group",
    "wait_readable",
]

_P_PIDFD = os.P_PIDFD
_REFUSED = frozenset({errno.ENOSYS, errno.EPERM, errno.EACCES, errno.EOPNOTSUPP})


def pidfds_available() -> bool:
    """Whether this process may still use pidfds (false once the kernel refused one)."""
    return KERNEL.pidfd_open is not False


def disable_pidfds() -> None:
    """Use the pid-based fallback for every child spawned from now on."""
    KERNEL.pidfd_open = False


def reset_pidfd_probe() -> None:
    """Forget an earlier refusal, so the next spawn tries ``pidfd_open`` again."""
    KERNEL.pidfd_open = None


def open_pidfd(pid: int) -> int | None:
    """Open a pidfd for our child *pid*, or return None to use the fallback.

    A refusal that will not change (ENOSYS, EPERM) disables pidfds process-wide; a
    shortage (EMFILE, ENFILE, ENOMEM) affects only this child. When the child was
    reaped before we got here (``SIGCHLD`` ignored), its pid may already name a
    stranger: a pidfd that does not name one of our children is closed again, and
    the caller's fallback then reports the status as unknown.
    """
    if KERNEL.pidfd_open is False:
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as exc:
        note_pidfd_refusal(exc)
        return None
    try:
        ours = names_our_child(pidfd)
    except BaseException:
        os.close(pidfd)
        raise
    if not ours:
        os.close(pidfd)
        return None
    return pidfd


def note_pidfd_refusal(exc: OSError) -> None:
    """Learn from a failed ``pidfd_open``: a refusal that will not change (ENOSYS, EPERM)
    disables pidfds process-wide; a shortage (EMFILE, ...) concerns one child only."""
    if exc.errno in _REFUSED:
        disable_pidfds()


def names_our_child(pidfd: int) -> bool:
    """Whether the new *pidfd* names an unreaped child of ours (see :func:`open_pidfd`).

    On Linux 5.3 (pidfds but no ``P_PIDFD`` yet) this cannot be told, and is assumed.
    """
    if KERNEL.pidfd_open is None:  # never over a refusal another thread just learnt
        KERNEL.pidfd_open = True
    try:
        os.waitid(_P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        KERNEL.waitid_pidfd = True
        return False
    except OSError as exc:  # EINVAL: Linux 5.3 has pidfds but no P_PIDFD yet
        if exc.errno != errno.EINVAL:
            raise
        KERNEL.waitid_pidfd = False
    else:
        KERNEL.waitid_pidfd = True
    return True


def signal_pidfd(pidfd: int, signum: int) -> bool:
    """Send *signum* through *pidfd*; False when the process has already been reaped."""
    try:
        signal.pidfd_send_signal(pidfd, signum)
    except ProcessLookupError:
        return False
    return True


def signal_pinned_group(pidfd: int, signum: int) -> bool | None:
    """Signal the group whose leader *pidfd* pins, reaped or not (Linux 6.9).

    The group is named by the kernel's pid object, not by a number that may be
    recycled. True if delivered (signal 0 is a probe: the group has members,
    zombies included), False if no member is left, None if the kernel lacks
    ``PIDFD_SIGNAL_PROCESS_GROUP`` (or it cannot be told yet: see ``_probes``).
    An invalid *signum* raises ``OSError`` (EINVAL) and changes nothing.
    """
    if not pidfd_group_signal():
        return None
    try:
        signal.pidfd_send_signal(pidfd, signum, None, PIDFD_SIGNAL_PROCESS_GROUP)
    except ProcessLookupError:
        return False
    return True


def signal_group(pid: int, pidfd: int | None, signum: int) -> bool:
    """Signal the process group led by our unreaped child *pid*; False when it is gone.

    Through the pidfd with ``PIDFD_SIGNAL_PROCESS_GROUP`` (Linux 6.9), else ``killpg``.
    Raises ``ValueError`` if *pid* does not lead its process group (signalling the
    group it is in could reach us).
    """
    try:
        if os.getpgid(pid) != pid:
            raise ValueError(
                f"process {pid} does not lead a process group: spawn it with "
                "process_group=0 or start_new_session=True to signal its group"
            )
    except ProcessLookupError:
        return False
    if pidfd is not None:
        sent = signal_pinned_group(pidfd, signum)
        if sent is not None:
            return sent
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        return False
    return True


def wait_readable(fd: int, timeout: float | None) -> bool:
    """Block until *fd* is readable or *timeout* seconds pass; EINTR is retried.

    ``poll`` has millisecond resolution, so the timeout is rounded up: a wait never
    returns early.
    """
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if timeout is None:  # poll(-1) never returns empty; EINTR is retried (PEP 475)
        return bool(poller.poll())
    deadline = deadline_after(timeout)
    while True:
        left = remaining(deadline)
        if left is not None and left <= 0:
            return bool(poller.poll(0))
        if poller.poll(poll_millis(left)):
            return True


# --- reaping through the pidfd ------------------------------------------------------

_MACHINE = platform.machine()
if ctypes.sizeof(ctypes.c_void_p) == 4:  # a 32-bit Python on a 64-bit kernel
    _MACHINE = {"x86_64": "i686", "aarch64": "armv7l"}.get(_MACHINE, _MACHINE)
_WAITID_SYSCALL = {
    "x86_64": 247,
    "aarch64": 95,
    "arm64": 95,
    "riscv64": 95,
    "loongarch64": 95,
    "i386": 284,
    "i686": 284,
    "armv7l": 280,
    "armv6l": 280,
    "ppc64le": 272,
    "ppc64": 272,
    "s390x": 281,
}.get(_MACHINE)


class _SigInfo(ctypes.Structure):
    # The SIGCHLD view of siginfo_t; the union starts on a pointer boundary.
    _fields_ = [
        ("si_signo", ctypes.c_int),
        ("si_errno", ctypes.c_int),
        ("si_code", ctypes.c_int),
        ("_pad", ctypes.c_int * (1 if ctypes.sizeof(ctypes.c_void_p) == 8 else 0)),
        ("si_pid", ctypes.c_int),
        ("si_uid", ctypes.c_uint),
        ("si_status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 128),
    ]


class _Timeval(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("usec", ctypes.c_long)]


class _Rusage(ctypes.Structure):
    _fields_ = [
        ("utime", _Timeval),
        ("stime", _Timeval),
        ("maxrss", ctypes.c_long),
        ("_rest", ctypes.c_long * 13),
    ]


_syscall = None if _WAITID_SYSCALL is None else ctypes.CDLL(None, use_errno=True).syscall


def reap_pidfd(pidfd: int, pid: int) -> Status | None:
    """Reap the exited child *pid* behind *pidfd* without blocking.

    Returns None while it is still running (or only stopped). Raises
    ``ChildProcessError`` when it was already reaped by someone else: see
    :func:`recover_exit_status`. Linux 5.3 has pidfds but not ``P_PIDFD`` (5.4);
    there the child is reaped by pid, which is safe while it is unreaped.
    """
    if KERNEL.waitid_pidfd is False:
        return reap_pid(pid)
    try:
        status = _reap_pidfd(pidfd)
    except OSError as exc:
        # EINVAL means "no P_PIDFD" only while that is unknown (a pidfd from clone)
        if exc.errno != errno.EINVAL or KERNEL.waitid_pidfd is not None:
            raise
        KERNEL.waitid_pidfd = False
        return reap_pid(pid)
    if KERNEL.waitid_pidfd is None:
        KERNEL.waitid_pidfd = True
    return status


def _reap_pidfd(pidfd: int) -> Status | None:
    if _syscall is None or _WAITID_SYSCALL is None:
        result = os.waitid(_P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)
        return None if result is None else decode_waitid(result.si_code, result.si_status)
    info = _SigInfo()
    usage = _Rusage()
    while True:
        rc = _syscall(
            ctypes.c_long(_WAITID_SYSCALL),
            ctypes.c_long(_P_PIDFD),
            ctypes.c_long(pidfd),
            ctypes.byref(info),
            ctypes.c_long(os.WEXITED | os.WNOHANG),
            ctypes.byref(usage),
        )
        if rc == 0:
            break
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise OSError(err, os.strerror(err))
    if info.si_pid == 0:
        return None
    return decode_waitid(
        info.si_code,
        info.si_status,
        Rusage.from_values(
            usage.utime.sec, usage.utime.usec, usage.stime.sec, usage.stime.usec, usage.maxrss
        ),
    )


_PIDFD_GET_INFO = 0xC040FF0B  # _IOWR(0xFF, 11, struct pidfd_info), 64-byte version 0
_PIDFD_INFO_EXIT = 0x8
_INFO_SIZE = 64
_INFO_EXIT_CODE_OFFSET = 60
_RECOVERY_PATIENCE = 0.05


def recover_exit_status(pidfd: int) -> Status | None:
    """Ask the kernel for the wait status of a process someone else reaped.

    Linux 6.15+ keeps it on the pidfd (``PIDFD_INFO_EXIT``). The pidfd turns readable
    a moment before the kernel records the status, so a missing record is asked for
    again for up to 50 ms. Returns None on older kernels or when nothing was recorded.
    """
    deadline = time.monotonic() + _RECOVERY_PATIENCE
    buffer = bytearray(_INFO_SIZE)
    while True:
        struct.pack_into("Q", buffer, 0, _PIDFD_INFO_EXIT)
        try:
            fcntl.ioctl(pidfd, _PIDFD_GET_INFO, buffer, True)
        except OSError as exc:
            if exc.errno in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP):
                return None
            if exc.errno != errno.ESRCH:
                raise
        else:
            (mask,) = struct.unpack_from("Q", buffer, 0)
            if mask & _PIDFD_INFO_EXIT:
                (raw,) = struct.unpack_from("i", buffer, _INFO_EXIT_CODE_OFFSET)
                return decode_status(raw)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.001)


# --- the pid-based fallback -----------------------------------------------------------


def reap_pid(pid: int) -> Status | None:
    """Reap our exited child *pid* without blocking (the no-pidfd path).

    Returns None while it runs. Raises ``ChildProcessError`` when another party
    reaped it; without a pidfd its status is then lost.
    """
    waited, raw, usage = os.wait4(pid, os.WNOHANG)
    if waited == 0:
        return None
    return decode_status(raw).with_rusage(Rusage.from_struct(usage))


def exited_unreaped(pid: int) -> bool:
    """True when our child *pid* has exited, without reaping it (its pid stays reserved)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def signal_pid(pid: int, signum: int) -> bool:
    """Signal our unreaped child *pid* (the no-pidfd path); False when it has exited.

    An exited but unreaped child still holds its pid, so checking first closes the
    window in which the pid could name another process, unless foreign code reaps
    our children: the fallback cannot defend against that.
    """
    if exited_unreaped(pid):
        return False
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True

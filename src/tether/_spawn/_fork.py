"""The ``fork`` backend: ``os.fork`` then ``os.execve``, with Python in between.

This is the only backend that runs a user ``preexec_fn``, and the only pure-Python
one that can change directory or set a umask. Its costs are those of ``fork``: the
time grows with the parent's memory, and a multi-threaded parent risks deadlock in
the child if another thread held a lock (the allocator's, the import lock, a
logging handler's) at the moment of the fork. Everything the child needs is
prepared in the parent, so the child only makes system calls.

A failure in the child travels back over a close-on-exec pipe as
``stage:errno:message``; a successful ``execve`` closes the pipe, which the parent
sees as end-of-file. On failure the parent reaps the child before raising.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import resource
import signal

from .. import _native
from .._errors import SPAWN_STAGES, SpawnError
from .._linux import _prctl  # imported here, in the parent: it loads libc once
from ._plan import SpawnPlan
from ._receipt import SpawnReceipt, open_pidfd_into
from ._stdio import ChildStdio

NAME = "fork"
AVAILABLE = True
RECORDS_IN_C = _native.available
"""With the extension, the fork and its report pipe are recorded in C; without it, this
runs on the spawner thread when called from the main thread."""

_FAILED_EXIT = 127
_MAX_ERRNO = 4096  # the kernel's errno values are below MAX_ERRNO


REFUSES: tuple[str, ...] = ()
"""Every plan can use this backend."""


def spawn(plan: SpawnPlan, stdio: ChildStdio, receipt: SpawnReceipt) -> None:
    """Fork, set the child up as *plan* says, exec; the child goes into *receipt*.

    ``receipt.pid`` is set by the fork itself (see ``_receipt`` for why and where this
    runs). A child that fails before exec is reaped and :class:`SpawnError` raised.
    """
    env = os.environ if plan.env is None else plan.env
    parent = os.getpid()
    try:
        pid, report_write = _fork_into(receipt)
    except OSError as exc:
        raise plan.failure(exc.errno, "fork") from None
    if pid == 0:
        _child(plan, stdio, env, report_write, parent)  # never returns
    report_read = receipt.report
    assert report_read is not None, "made by the fork"
    report = _read_all(report_read)
    receipt.report = None  # out of the record, then closed: never twice
    os.close(report_read)
    if report:
        os.waitpid(receipt.pid, 0)
        receipt.pid = 0
        raise _decode_report(report, plan)
    open_pidfd_into(receipt)


def _fork_into(receipt: SpawnReceipt) -> tuple[int, int]:
    """Fork with the report pipe; the parent gets ``(pid, -1)``, the child ``(0, write end)``.

    With the extension, the pipe and the pid are recorded in C; without it this runs
    only on the spawner thread, where no signal handler can raise.
    """
    if _native.available:
        return _native.spawner.fork_into(receipt)
    report_read, report_write = os.pipe()
    receipt.report = report_read
    pid = os.fork()
    if pid == 0:
        os.close(report_read)
        return 0, report_write
    receipt.pid = pid
    os.close(report_write)
    return pid, -1


def _child(plan: SpawnPlan, stdio: ChildStdio, env: object, report: int, parent: int) -> None:
    cgroup_procs = stdio.cgroup_procs
    stage = "signals"
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        if plan.restore_signals:
            for signum in plan.default_signals:
                signal.signal(signum, signal.SIG_DFL)
        if plan.start_new_session:
            stage = "setsid"
            os.setsid()
        if plan.process_group is not None:
            stage = "setpgid"
            os.setpgid(0, plan.process_group)
        stage = "fd_map"
        if report in plan.kept_fds:  # an extra fd's dup2 would overwrite the report pipe
            report = fcntl.fcntl(report, fcntl.F_DUPFD_CLOEXEC, 3 + max(plan.kept_fds))
        for source, target in stdio.fd_map:
            os.dup2(source, target)
        for fd in (*(target for _, target in stdio.fd_map), *plan.pass_fds):
            os.set_inheritable(fd, True)
        stage = "close_fds"
        _close_fds_except(sorted({0, 1, 2, report, cgroup_procs, *plan.kept_fds} - {-1}))
        if plan.cwd is not None:
            stage = "chdir"
            os.chdir(plan.cwd)
        if plan.umask is not None:
            os.umask(plan.umask)
        stage = "setrlimit"
        for limit, soft, hard in plan.limits:
            resource.setrlimit(limit, (soft, hard))
        if cgroup_procs >= 0:
            stage = "cgroup"
            os.write(cgroup_procs, b"0")
        if plan.no_new_privs:
            stage = "no_new_privs"
            _prctl.set_no_new_privs()
        if plan.groups is not None:
            stage = "setgroups"
            os.setgroups(plan.groups)
        if plan.gid is not None:
            stage = "setgid"
            os.setresgid(plan.gid, plan.gid, plan.gid)
        if plan.uid is not None:
            stage = "setuid"
            os.setresuid(plan.uid, plan.uid, plan.uid)
        if plan.pdeathsig:  # after the ids: changing them clears it
            stage = "pdeathsig"
            _prctl.set_pdeathsig(plan.pdeathsig)
            if os.getppid() != parent:  # the parent died before it was armed
                os.kill(os.getpid(), plan.pdeathsig)
                os._exit(128 + plan.pdeathsig)
        if plan.preexec_fn is not None:
            stage = "preexec_fn"
            plan.preexec_fn()
        stage = "exec"
        if plan.env is None:  # the C environ, with what preexec_fn put there (as subprocess)
            os.execv(plan.program, plan.argv)
        os.execve(plan.program, plan.argv, env)  # type: ignore[arg-type]
    except BaseException as exc:
        code = exc.errno if isinstance(exc, OSError) and exc.errno else 0
        message = "" if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        try:
            os.write(report, f"{stage}:{code}:{message}".encode(errors="replace"))
        finally:
            os._exit(_FAILED_EXIT)
    finally:
        os._exit(_FAILED_EXIT)


def _close_fds_except(keep: list[int]) -> None:
    low = 0
    for fd in keep:
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))
    # An fd opened before the soft RLIMIT_NOFILE was lowered can sit above it.
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= low:
            with contextlib.suppress(OSError):  # the listing's own fd, closed by now
                os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def _decode_report(report: bytes, plan: SpawnPlan) -> SpawnError:
    """The error the child reported as ``stage:errno:message``, checked field by field.

    A report that does not parse (a stage tether does not know, an errno out of range,
    fields missing) says so, with the bytes received, instead of being guessed at.
    """
    stage, _, rest = report.decode(errors="replace").partition(":")
    code_text, separator, message = rest.partition(":")
    if stage not in SPAWN_STAGES or not separator or not code_text.isdigit():
        return _malformed(report, plan)
    code = int(code_text)
    if not 0 <= code < _MAX_ERRNO:
        return _malformed(report, plan)
    if code == 0:
        if stage != "preexec_fn":
            return _malformed(report, plan)
        return plan.failure(None, "preexec_fn", f"preexec_fn raised {message}")
    return plan.failure(code, stage)


def _malformed(report: bytes, plan: SpawnPlan) -> SpawnError:
    return plan.failure(
        errno.EIO, "fork", f"the child sent a malformed failure report: {report[:200]!r}"
    )

"""Every exception and warning tether raises, in one place.

::

    Exception
    ├── TetherError                      every error tether raises on purpose
    │   ├── SpawnError (+ OSError)       the child could not be started; ``stage`` says
    │   │     │                          where (a :data:`SpawnStage`), ``argv`` what
    │   │     └── one hidden subclass per errno family, so that ``except
    │   │         FileNotFoundError`` and ``except PermissionError`` catch a failed
    │   │         spawn as they do with ``subprocess`` (each is named ``SpawnError``)
    │   ├── StatusUnknownError (+ ChildProcessError)
    │   │                                another party reaped our child and the
    │   │                                kernel kept no record of its status
    │   ├── TimeoutExpired (+ subprocess.TimeoutExpired)
    │   ├── CalledProcessError (+ subprocess.CalledProcessError)
    │   ├── CgroupError (+ OSError)      ``kill="cgroup"`` cannot work here
    │   ├── NamespaceError (+ OSError)   ``kill="namespace"`` cannot work here
    │   └── SupervisedChildFailed        a supervised child was given up
    ├── ValueError, TypeError            bad input, raised before any process exists
    └── Warning
        ├── RuntimeWarning
        │   └── KilledAfterGraceWarning  a supervised tree outlived its grace period
        └── ResourceWarning              a handle was dropped while its child ran
                                         (the standard class; the reaper takes over)

Errors carry their context: the argv, the failing stage in the child, the pid, the
decoded status. Every one survives ``pickle`` (a ``ProcessPoolExecutor`` worker may
raise it), and each public class says ``tether.`` in tracebacks and reprs.
"""

from __future__ import annotations

import errno as errno_codes
import os
import subprocess
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

if TYPE_CHECKING:
    from ._status import Status

__all__ = [
    "SPAWN_STAGES",
    "CalledProcessError",
    "CgroupError",
    "KilledAfterGraceWarning",
    "NamespaceError",
    "NotReadyError",
    "SpawnError",
    "SpawnStage",
    "StatusUnknownError",
    "SupervisedChildFailed",
    "TetherError",
    "TimeoutExpired",
]

SpawnStage: TypeAlias = Literal[
    "fork",
    "signals",
    "setsid",
    "setpgid",
    "fd_map",
    "close_fds",
    "chdir",
    "setrlimit",
    "cgroup",
    "no_new_privs",
    "setgroups",
    "setgid",
    "setuid",
    "pdeathsig",
    "preexec_fn",
    "exec",
]
"""The step of a spawn that failed, in the order a child takes them.

``"fork"`` is the parent's clone/fork itself; ``"preexec_fn"`` exists only on the
``fork`` backend; the rest are the child's steps between fork and exec, named as the
C spawner names them (``_native/_spawner.c`` exports the same names as ``STAGES``).
"""

SPAWN_STAGES: tuple[SpawnStage, ...] = get_args(SpawnStage)
"""Every :data:`SpawnStage`, in order."""


class TetherError(Exception):
    """Base class of every error tether raises on purpose."""


class SpawnError(TetherError, OSError):
    """A child process could not be started.

    ``errno`` and ``filename`` are what the failing call gave (``execve`` reports the
    program, ``chdir`` the directory); ``stage`` names the step that failed in the child
    (``"exec"``, ``"chdir"``, ``"fd_map"``, ``"preexec_fn"``, ...) and ``argv`` the command.
    Constructing ``SpawnError(errno.ENOENT, ...)`` returns an instance of a subclass that
    is also a :class:`FileNotFoundError`, and so on for every errno that Python maps to an
    :class:`OSError` subclass.
    """

    stage: SpawnStage
    """The step of the child's setup that failed (:data:`SpawnStage`), ``"exec"`` by default."""
    argv: tuple[str, ...]
    """The command that could not be started."""

    def __new__(
        cls,
        errno: int | None,
        strerror: str | None = None,
        filename: str | None = None,
        *,
        stage: SpawnStage = "exec",
        argv: Sequence[str] = (),
    ) -> SpawnError:
        if cls is SpawnError:
            cls = _SPAWN_ERROR_BY_ERRNO.get(errno or 0, SpawnError)
        args: tuple[object, ...] = (errno, _describe(errno, strerror))
        if filename is not None:
            args += (filename,)
        instance: SpawnError = OSError.__new__(cls, *args)
        return instance

    def __init__(
        self,
        errno: int | None,
        strerror: str | None = None,
        filename: str | None = None,
        *,
        stage: SpawnStage = "exec",
        argv: Sequence[str] = (),
    ) -> None:
        # OSError.__new__ has filled errno, strerror and filename already.
        self.stage = stage
        self.argv = tuple(argv)

    def __str__(self) -> str:
        where = f"[Errno {self.errno}] {self.strerror}" if self.errno else str(self.strerror)
        if self.filename is not None:
            where += f": {self.filename!r}"
        return f"{where} (stage: {self.stage}, argv: {list(self.argv)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_spawn_error,
            (self.errno, self.strerror, self.filename, self.stage, self.argv),
        )


def _describe(errno: int | None, strerror: str | None) -> str:
    if strerror:
        return strerror
    return "unknown error" if errno is None else os.strerror(errno)


def _rebuild_spawn_error(
    errno: int | None,
    strerror: str,
    filename: str | None,
    stage: SpawnStage,
    argv: tuple[str, ...],
) -> SpawnError:
    return SpawnError(errno, strerror, filename, stage=stage, argv=argv)


def _make_spawn_subclasses() -> dict[int, type[SpawnError]]:
    by_errno: dict[int, type[SpawnError]] = {}
    families: dict[type[OSError], list[int]] = {}
    for name in dir(errno_codes):
        if not name.startswith("E"):
            continue
        code = getattr(errno_codes, name)
        family = type(OSError(code, ""))
        if family is not OSError:
            families.setdefault(family, []).append(code)
    for family, codes in families.items():
        subclass = type(
            "SpawnError",  # what tracebacks show: the family is in the class's bases
            (SpawnError, family),
            {
                "__doc__": f"A :class:`SpawnError` that is also a :class:`{family.__name__}`.",
                "__module__": "tether",
                "__qualname__": "SpawnError",
            },
        )
        for code in codes:
            by_errno[code] = subclass
    return by_errno


_SPAWN_ERROR_BY_ERRNO = _make_spawn_subclasses()


class StatusUnknownError(TetherError, ChildProcessError):
    """Our child was reaped by someone else and its exit status is lost.

    This happens when foreign code calls ``waitpid(-1)`` or sets ``SIGCHLD`` to
    ``SIG_IGN`` on a kernel older than 6.15 (which cannot report the status of a
    reaped process through its pidfd), or on the no-pidfd fallback. tether never
    guesses a status of 0.
    """

    def __init__(self, pid: int, argv: Sequence[str]) -> None:
        super().__init__(
            f"process {pid} ({list(argv)!r}) was reaped by another party "
            "and the kernel kept no record of its exit status"
        )
        self.pid = pid
        self.argv = tuple(argv)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.pid, self.argv))


class TimeoutExpired(TetherError, subprocess.TimeoutExpired):
    """A wait or a run ran out of time.

    Also a :class:`subprocess.TimeoutExpired`, so existing ``except`` clauses keep
    working. ``cmd`` is a list; ``output``/``stdout`` and ``stderr`` hold what
    :func:`tether.run` and :func:`tether.run_process` read before the timeout, and are
    ``None`` from :meth:`tether.Process.wait` and the supervisors' waits. The ``cmd`` of
    :meth:`tether.Supervisor.wait_any` is the argv of the one child it waited for, or
    ``['<any of N>']`` for N children.
    """

    def __init__(
        self,
        cmd: Sequence[str],
        timeout: float,
        output: bytes | None = None,
        stderr: bytes | None = None,
    ) -> None:
        subprocess.TimeoutExpired.__init__(self, list(cmd), timeout, output, stderr)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.cmd, self.timeout, self.output, self.stderr))


class CalledProcessError(TetherError, subprocess.CalledProcessError):
    """A checked command did not succeed.

    Also a :class:`subprocess.CalledProcessError`; ``status`` is the decoded
    :class:`tether.Status` and ``returncode`` follows the subprocess convention (``-1`` for
    a status that is not terminal). Note the argument order: ``cmd`` comes first, and it
    takes the decoded ``status`` instead of subprocess's ``returncode``. ``str()`` reads
    ``Command ['false'] exited with status 1.``
    """

    def __init__(
        self,
        cmd: Sequence[str],
        status: Status,
        output: bytes | None = None,
        stderr: bytes | None = None,
    ) -> None:
        returncode = status.returncode
        subprocess.CalledProcessError.__init__(
            self, returncode if returncode is not None else -1, list(cmd), output, stderr
        )
        self.status = status

    def __str__(self) -> str:
        return f"Command {self.cmd!r} {self.status}."

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.cmd, self.status, self.output, self.stderr))


class CgroupError(TetherError, OSError):
    """cgroup mode cannot work here: no cgroup2 mount, no writable parent, or an old kernel.

    ``errno`` and ``filename`` say what failed where, as with any ``OSError``.
    """


class NamespaceError(TetherError, OSError):
    """namespace mode cannot work here: no native spawner or namespace init was built, no
    privilege to create a PID namespace, or the kernel (or a seccomp filter) refuses it.

    ``errno`` says what the kernel answered, and the message which kill mode to use instead.
    """


class SupervisedChildFailed(TetherError):
    """A supervised child was given up: it kept failing past its restart budget.

    Also raised when a restart could not be spawned (the spawn error is the
    ``__cause__``) or when the child's exit status was taken by another party.
    ``argv``, ``pid`` (of the last incarnation), ``status`` (its last exit status, None
    if unknown), ``restarts`` (how many times it was restarted) and ``reason`` say
    what happened.
    """

    argv: tuple[str, ...]
    pid: int
    status: Status | None
    restarts: int
    reason: str

    def __init__(
        self, argv: tuple[str, ...], pid: int, status: Status | None, restarts: int, reason: str
    ) -> None:
        super().__init__(
            f"tether: supervised child {list(argv)!r} failed (last pid {pid}, "
            f"{restarts} restart(s)): {reason}"
        )
        self.argv = argv
        self.pid = pid
        self.status = status
        self.restarts = restarts
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.argv, self.pid, self.status, self.restarts, self.reason))


class NotReadyError(TetherError):
    """A supervised child exited before it reported that it was ready.

    Raised by ``Process.ready()`` (and ``await AsyncProcess.ready()``) for a child
    spawned with ``ready="notify"`` or ``ready="fd:N"``. ``argv``, ``pid`` and
    ``status`` (its exit status) say which child and how it ended.
    """

    argv: tuple[str, ...]
    pid: int
    status: Status

    def __init__(self, argv: tuple[str, ...], pid: int, status: Status) -> None:
        super().__init__(f"process {pid} ({list(argv)!r}) {status} before it was ready")
        self.argv = tuple(argv)
        self.pid = pid
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.argv, self.pid, self.status))


class KilledAfterGraceWarning(RuntimeWarning):
    """A supervised child (or its group or cgroup) outlived the grace period and was SIGKILLed."""

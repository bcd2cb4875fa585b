"""Types of the C spawner extension (``_spawner.c``), so that calls into it are checked."""

from collections.abc import Callable, Sequence
from signal import Signals

from tether._errors import SpawnStage
from tether._status import Exited, Rusage, Signaled, Status

STAGES: tuple[SpawnStage, ...]
"""The child's steps between clone and exec, in order, as the C code names them."""

def set_id_helper(path: bytes | None, /) -> None:
    """The id helper's path; None: children that change ids get a copy of our memory."""

def id_helper() -> bytes | None:
    """The id helper's path, or None when children that change ids do not use one."""

def spawn(
    program: bytes,
    argv: Sequence[bytes],
    envp: Sequence[bytes] | None,
    cwd: bytes | None,
    fd_map: Sequence[int],
    keep_fds: Sequence[int],
    pass_fds: Sequence[int],
    default_signals: Sequence[int],
    limits: Sequence[int],
    groups: Sequence[int] | None,
    new_session: bool,
    pgid: int,
    umask: int,
    cgroup_fd: int,
    pdeathsig: int,
    no_new_privs: bool,
    gid: int,
    uid: int,
    want_pidfd: bool,
    receipt: object,
    /,
) -> tuple[int, int, int, SpawnStage | None]:
    """Start a child: ``(pid, pidfd, 0, None)``, also stored as ``receipt.pid`` and
    ``receipt.pidfd`` before returning; ``(0, -1, errno, stage)`` on failure."""

def spawn_pid_namespace_init(
    program: bytes,
    argv: Sequence[bytes],
    envp: Sequence[bytes] | None,
    cwd: bytes | None,
    fd_map: Sequence[int],
    keep_fds: Sequence[int],
    pass_fds: Sequence[int],
    default_signals: Sequence[int],
    limits: Sequence[int],
    groups: Sequence[int] | None,
    new_session: bool,
    pgid: int,
    umask: int,
    cgroup_fd: int,
    pdeathsig: int,
    no_new_privs: bool,
    gid: int,
    uid: int,
    want_pidfd: bool,
    receipt: object,
    /,
) -> tuple[int, int, int, SpawnStage | None]:
    """``spawn`` with ``CLONE_NEWPID``: the child is PID 1 of a new PID namespace."""

def spawn_in_pid_namespace(
    init_pidfd: int,
    program: bytes,
    argv: Sequence[bytes],
    envp: Sequence[bytes] | None,
    cwd: bytes | None,
    fd_map: Sequence[int],
    keep_fds: Sequence[int],
    pass_fds: Sequence[int],
    default_signals: Sequence[int],
    limits: Sequence[int],
    groups: Sequence[int] | None,
    new_session: bool,
    pgid: int,
    umask: int,
    cgroup_fd: int,
    pdeathsig: int,
    no_new_privs: bool,
    gid: int,
    uid: int,
    want_pidfd: bool,
    receipt: object,
    /,
) -> tuple[int, int, int, SpawnStage | None]:
    """``spawn`` into the PID namespace of the init *init_pidfd* names; the child is ours."""

def pidfd_autokill() -> bool | None:
    """Whether ``clone3`` accepts ``CLONE_PIDFD_AUTOKILL`` (Linux 7.1), probed once; None
    when the probe failed for another reason."""

def clone_pidfd() -> bool | None:
    """Whether ``clone(CLONE_PIDFD)`` worked (None until the first spawn)."""

def clone3_clear_sighand(enable: bool = ..., /) -> bool | None:
    """Whether children are cloned with ``clone3(CLONE_CLEAR_SIGHAND)`` (None until the
    first spawn tried; False where refused or not built). *enable* False switches it off,
    True lets the next spawn try again (for the tests of both paths)."""

def cached_stacks() -> int:
    """How many child stacks this process keeps for reuse (mapped by it, not inherited)."""

def fork_into(receipt: object, /) -> tuple[int, int]:
    """``os.fork()`` with a report pipe: ``receipt.report`` (its read end) and
    ``receipt.pid`` are stored before returning; ``(pid, -1)`` in the parent,
    ``(0, write end)`` in the child."""

def pidfd_open_into(receipt: object, pid: int, /) -> int:
    """``os.pidfd_open(pid)``, also stored as ``receipt.pidfd`` before returning."""

def posix_spawn_into(
    receipt: object,
    program: bytes,
    argv: Sequence[bytes],
    env: dict[bytes, bytes] | None,
    fd_map: Sequence[tuple[int, int]],
    pass_fds: Sequence[int],
    new_session: bool,
    pgid: int,
    default_signals: Sequence[int],
    want_pidfd: bool,
    /,
) -> tuple[int, SpawnStage | None, int, int]:
    """``posix_spawn(3)``, the child stored as ``receipt.pid`` and ``receipt.pidfd`` before
    returning: ``(0, None, pidfd_open errno or 0, waitid(P_PIDFD) works: 1, 0 or -1)``;
    ``(errno, stage, fd that could not be closed or -1, -1)`` on failure, nothing left."""

def posix_spawn_closes_from(enable: bool = ..., /) -> bool:
    """Whether ``posix_spawn_into`` closes fds with ``closefrom`` (glibc 2.34), not by listing
    ``/proc/self/fd``; *enable* False makes it list from now on, True goes back (where
    built with it)."""

def dup_into(target: object, attribute: str, fd: int, /) -> int:
    """A close-on-exec dup of *fd*, also stored as ``target.attribute`` before returning."""

def reap_pidfd(pidfd: int, /) -> tuple[int, int, float, float, int] | None:
    """``waitid(P_PIDFD, pidfd, WEXITED | WNOHANG)`` with its rusage, as one system call:
    None while the child runs, else ``(si_code, si_status, user seconds, system seconds,
    max RSS in bytes)``. Raises ``ChildProcessError`` once someone else reaped it."""

def wait_readable(fd: int, /) -> None:
    """Block until *fd* is readable (or hung up, or not open), with no timeout, as one
    ``poll``; a signal handler that raises interrupts it, one that returns does not."""

def wait_exited(pidfd: int, /) -> None:
    """Block until the child behind *pidfd* has exited, leaving it unreaped: a blocking
    ``waitid(P_PIDFD, WEXITED | WNOWAIT)``, or :func:`wait_readable` on *pidfd* when it
    names no child of ours; a signal handler that raises interrupts it."""

def set_status_types(
    exited: type[Exited],
    signaled: type[Signaled],
    rusage: type[Rusage],
    signals: dict[int, Signals],
    decode: Callable[[int, int, Rusage], Status],
    /,
) -> None:
    """The classes :func:`reap_status` builds, the ``Signals`` member of each signal
    number, and the function that decodes any other ``waitid`` result."""

def reap_status(pidfd: int, /) -> Status | None:
    """:func:`reap_pidfd` with the status built in C: None while the child runs, else an
    ``Exited`` or a ``Signaled`` with its ``Rusage`` (anything rarer comes from the
    ``decode`` given to :func:`set_status_types`). Raises ``ChildProcessError`` once
    someone else reaped it."""

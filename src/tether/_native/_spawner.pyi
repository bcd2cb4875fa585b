"""Types of the C spawner extension (``_spawner.c``), so that calls into it are checked."""

from collections.abc import Sequence

from tether._errors import SpawnStage

STAGES: tuple[SpawnStage, ...]
"""The child's steps between clone and exec, in order, as the C code names them."""

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
    /,
) -> tuple[int, int, int, SpawnStage | None]:
    """Start a child: ``(pid, pidfd, 0, None)``, or ``(0, -1, errno, stage)`` on failure."""

def clone_pidfd() -> bool | None:
    """Whether ``clone(CLONE_PIDFD)`` worked (None until the first spawn)."""

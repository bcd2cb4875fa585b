"""The ``native`` backend: tether's C spawner (``tether/_native/_spawner.c``).

A vfork-style ``clone`` with the pidfd from birth, every child-side option applied in
C between clone and exec, and failures reported with their stage. It takes every
option except ``preexec_fn`` (Python code cannot run in a child that shares the
parent's memory) and is what ``auto`` picks whenever the extension was built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from .. import _native
from .._linux import _pidfd
from ._plan import PLAIN_OPTIONS, RESTORED_SIGNALS, SpawnPlan
from ._receipt import SpawnReceipt
from ._stdio import ChildStdio

NAME = "native"
AVAILABLE = _native.available
RECORDS_IN_C = True
"""The C spawner writes its child into the receipt before returning to Python."""


REFUSES = ("preexec_fn",)
"""Python code cannot run in a child that shares the parent's memory."""

PID_NAMESPACES = True
"""Whether it can start a namespace init and children born under one (``kill="namespace"``)."""


_STANDARD_FDS = (0, 1, 2)

SpawnerOptions: TypeAlias = tuple[
    "Sequence[bytes] | None",  # envp
    "bytes | None",  # cwd
    Sequence[int],  # fd map, flattened (source, target) pairs
    Sequence[int],  # fds kept open
    Sequence[int],  # pass_fds above 2
    Sequence[int],  # signals reset to their default action
    Sequence[int],  # limits, flattened (resource, soft, hard) triples
    "Sequence[int] | None",  # supplementary groups
    bool,  # new session
    int,  # process group (-1: unchanged)
    int,  # umask (-1: unchanged)
    int,  # cgroup.procs fd (-1: none)
    int,  # pdeathsig
    bool,  # no_new_privs
    int,  # gid (-1: unchanged)
    int,  # uid (-1: unchanged)
]
"""The C spawner's arguments between argv and the pidfd flag (see ``_spawner.pyi``)."""

_PLAIN_ARGS: SpawnerOptions = (
    *(None, None, (), _STANDARD_FDS, (), RESTORED_SIGNALS, (), None, False),
    *(-1, -1, -1, 0, False, -1, -1),
)
"""``spawner_options`` of a plan with every option at its default (``PLAIN_OPTIONS``)."""


def spawn(plan: SpawnPlan, stdio: ChildStdio, receipt: SpawnReceipt) -> None:
    """Start the child of *plan* into *receipt* (stored in C), or raise :class:`SpawnError`."""
    pidfds = _pidfd.pidfds_available()
    if plan[4:] == PLAIN_OPTIONS and not stdio.fd_map and stdio.cgroup_procs < 0:
        # Every option at its default: the arguments are constants, not rebuilt.
        _, _, code, stage = _native.spawner.spawn(
            plan.program, plan.argv, *_PLAIN_ARGS, pidfds, receipt
        )
    elif plan.new_pid_namespace:
        _, _, code, stage = _native.spawner.spawn_pid_namespace_init(
            plan.program, plan.argv, *spawner_options(plan, stdio), pidfds, receipt
        )
    elif plan.pid_namespace is not None:
        _, _, code, stage = _native.spawner.spawn_in_pid_namespace(
            plan.pid_namespace,
            plan.program,
            plan.argv,
            *spawner_options(plan, stdio),
            pidfds,
            receipt,
        )
    else:
        _, _, code, stage = _native.spawner.spawn(
            plan.program, plan.argv, *spawner_options(plan, stdio), pidfds, receipt
        )
    if code:
        raise plan.failure(code, stage or "fork")


def spawner_options(plan: SpawnPlan, stdio: ChildStdio) -> SpawnerOptions:
    """The C spawner's arguments between argv and the pidfd flag, for *plan* and *stdio*.

    What a plan does not use is passed as a shared empty tuple, not rebuilt.
    """
    cgroup_procs = stdio.cgroup_procs
    keep = (
        sorted({0, 1, 2, *plan.kept_fds, cgroup_procs} - {-1})
        if plan.pass_fds or plan.extra_fds or cgroup_procs >= 0
        else _STANDARD_FDS
    )
    return (
        None if plan.env is None else [key + b"=" + value for key, value in plan.env.items()],
        plan.cwd,
        [fd for pair in stdio.fd_map for fd in pair] if stdio.fd_map else (),
        keep,
        [fd for fd in plan.pass_fds if fd > 2] if plan.pass_fds else (),
        RESTORED_SIGNALS if plan.restore_signals else (),
        [value for triple in plan.limits for value in triple] if plan.limits else (),
        plan.groups,
        plan.start_new_session,
        -1 if plan.process_group is None else plan.process_group,
        -1 if plan.umask is None else plan.umask,
        cgroup_procs,
        plan.pdeathsig,
        plan.no_new_privs,
        -1 if plan.gid is None else plan.gid,
        -1 if plan.uid is None else plan.uid,
    )

"""The ``native`` backend: tether's C spawner (``tether/_native/_spawner.c``).

A vfork-style ``clone`` with the pidfd from birth, every child-side option applied in
C between clone and exec, and failures reported with their stage. It takes every
option except ``preexec_fn`` (Python code cannot run in a child that shares the
parent's memory) and is what ``auto`` picks whenever the extension was built.
"""

from __future__ import annotations

from .. import _native
from .._linux import _pidfd
from ._plan import RESTORED_SIGNALS, SpawnPlan
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


def spawn(plan: SpawnPlan, stdio: ChildStdio, receipt: SpawnReceipt) -> None:
    """Start the child of *plan* into *receipt* (stored in C), or raise :class:`SpawnError`."""
    # What a plain spawn does not use is passed as a shared empty tuple, not rebuilt.
    cgroup_procs = stdio.cgroup_procs
    keep = (
        sorted({0, 1, 2, *plan.kept_fds, cgroup_procs} - {-1})
        if plan.pass_fds or plan.extra_fds or cgroup_procs >= 0
        else _STANDARD_FDS
    )
    fd_map = [fd for pair in stdio.fd_map for fd in pair] if stdio.fd_map else ()
    limits = [value for triple in plan.limits for value in triple] if plan.limits else ()
    envp = None if plan.env is None else [key + b"=" + value for key, value in plan.env.items()]
    args = (
        plan.program,
        plan.argv,
        envp,
        plan.cwd,
        fd_map,
        keep,
        [fd for fd in plan.pass_fds if fd > 2] if plan.pass_fds else (),
        RESTORED_SIGNALS if plan.restore_signals else (),
        limits,
        plan.groups,
        plan.start_new_session,
        -1 if plan.process_group is None else plan.process_group,
        -1 if plan.umask is None else plan.umask,
        stdio.cgroup_procs,
        plan.pdeathsig,
        plan.no_new_privs,
        -1 if plan.gid is None else plan.gid,
        -1 if plan.uid is None else plan.uid,
        _pidfd.pidfds_available(),
        receipt,
    )
    if plan.new_pid_namespace:
        _, _, code, stage = _native.spawner.spawn_pid_namespace_init(*args)
    elif plan.pid_namespace is not None:
        _, _, code, stage = _native.spawner.spawn_in_pid_namespace(plan.pid_namespace, *args)
    else:
        _, _, code, stage = _native.spawner.spawn(*args)
    if code:
        raise plan.failure(code, stage or "fork")

"""The child's standard streams: pipes, /dev/null, and a clobber-free fd map.

The map lists ``(source, target)`` pairs for targets 0, 1 and 2, applied in that
order with ``dup2``, then the plan's ``extra_fds`` (a supervised child's readiness
pipe as fd N); a source that an extra target would overwrite is moved above them
first. A source below 3 that differs from its target could be
overwritten by an earlier ``dup2`` (``stdout=2, stderr=1`` swaps the two), so such a
source is first duplicated above 2 in the parent. Every fd made here is
close-on-exec, and every one is closed again if the spawn fails.
"""

from __future__ import annotations

import fcntl
import os

from .._errors import SpawnError
from ._plan import DEVNULL, PIPE, STDOUT, SpawnPlan


class ChildStdio:
    """The fds prepared for one spawn, and who closes them when.

    A plain class, not a dataclass: every spawn makes one, and the dataclass ``__init__``
    calls a factory for each of its three containers.
    """

    __slots__ = ("cgroup_procs", "child_only", "fd_map", "parent_ends")

    def __init__(self) -> None:
        self.fd_map: list[tuple[int, int]] = []
        """``(source, target)`` pairs to ``dup2`` in the child, targets in increasing order."""
        self.parent_ends: dict[int, int] = {}
        """Our end of each pipe, by the child's fd number (0, 1, 2)."""
        self.child_only: list[int] = []
        """fds the parent closes as soon as the child exists."""
        self.cgroup_procs = -1
        """The ``cgroup.procs`` file the child writes itself into; -1 for none."""

    def close_child_only(self) -> None:
        """Close what only the child needed (after a spawn, successful or not).

        Each fd leaves the list before it is closed: an interrupt may leak one, but
        never gets it closed twice.
        """
        while self.child_only:
            os.close(self.child_only.pop())

    def take_parent_end(self, target: int) -> int | None:
        """Hand over our end of the pipe to the child's fd *target*; it is no longer ours."""
        return self.parent_ends.pop(target, None)

    def close_all(self) -> None:
        """Close every fd made for this spawn that nobody took over (after a failure)."""
        self.close_child_only()
        while self.parent_ends:
            os.close(self.parent_ends.popitem()[1])


def prepare_stdio(plan: SpawnPlan, stdio: ChildStdio) -> None:
    """Create the pipes and /dev/null fds that *plan* asks for, and the fd map, in *stdio*.

    The caller owns *stdio* from before the first fd exists and closes it on failure. A
    child that inherits our standard streams needs nothing made.
    """
    if (
        plan.stdin is not None
        or plan.stdout is not None
        or plan.stderr is not None
        or plan.cgroup is not None
        or plan.extra_fds
    ):
        _fill(stdio, plan)


def _fill(stdio: ChildStdio, plan: SpawnPlan) -> None:
    if plan.cgroup is not None:
        stdio.cgroup_procs = _open_cgroup_procs(plan)
        stdio.child_only.append(stdio.cgroup_procs)
    sources: dict[int, int] = {}
    devnull: int | None = None
    for target, spec in ((0, plan.stdin), (1, plan.stdout), (2, plan.stderr)):
        if spec is None:
            continue
        if spec == PIPE:
            read_end, write_end = os.pipe()
            child_end, parent_end = (read_end, write_end) if target == 0 else (write_end, read_end)
            stdio.parent_ends[target] = parent_end
            stdio.child_only.append(child_end)
            sources[target] = child_end
        elif spec == DEVNULL:
            if devnull is None:
                devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                stdio.child_only.append(devnull)
            sources[target] = devnull
        elif spec == STDOUT:
            sources[target] = sources.get(1, 1)
        else:
            sources[target] = spec
    targets = {target for _, target in plan.extra_fds}
    for target, source in sources.items():
        if (source < 3 and source != target) or source in targets:
            source = fcntl.fcntl(source, fcntl.F_DUPFD_CLOEXEC, 3 + max(targets, default=0))
            stdio.child_only.append(source)
        stdio.fd_map.append((source, target))
    if stdio.cgroup_procs in targets:  # a dup2 onto it would lose it before the child joins
        stdio.cgroup_procs = fcntl.fcntl(stdio.cgroup_procs, fcntl.F_DUPFD_CLOEXEC, max(targets))
        stdio.child_only.append(stdio.cgroup_procs)
    for source, target in plan.extra_fds:
        if source in targets and source != target:  # a later dup2 would clobber it
            source = fcntl.fcntl(source, fcntl.F_DUPFD_CLOEXEC, max(targets))
            stdio.child_only.append(source)
        stdio.fd_map.append((source, target))


def _open_cgroup_procs(plan: SpawnPlan) -> int:
    assert plan.cgroup is not None
    path = os.path.join(plan.cgroup, b"cgroup.procs")
    try:
        return os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise SpawnError(
            exc.errno, filename=os.fsdecode(path), stage="cgroup", argv=plan.args
        ) from None

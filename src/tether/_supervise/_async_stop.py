"""The stop of an ``AsyncSupervisor`` scope: every tree at once, one grace period, then SIGKILL.

The policy is ``_shutdown``'s; what differs is how the waiting is done on an event loop.
Each leader is awaited on its pidfd and each cgroup on ``cgroup.events``, one task per
tree; the process groups are waited for together (``_census``), each round's look at
``/proc`` in a worker thread, so that a thousand trees cost one scan per round and the
loop never blocks on it. A tree counts as gone once its leader is reaped and its cgroup
or group is empty; the trees not gone when the grace period ends are the escalated
ones, and those not gone :data:`KILL_PATIENCE` seconds after SIGKILL are reported as
survivors.

The caller runs this in a shielded cancel scope; an exception that still gets through
(``KeyboardInterrupt``) is the caller's to handle: it kills and reaps everything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import anyio

from .._aio._readable import wait_readable
from .._core._lease import ExitFdLease
from .._core._process import Process
from .._errors import StatusUnknownError
from ._census import Reap, groups_gone_async
from ._shutdown import Outcome, finish
from ._tree import KILL_PATIENCE, ProcessTree

__all__ = ["stop_all"]

WaitLeader = Callable[[ProcessTree], Awaitable[object]]
"""Awaits the exit of a tree's leader and reaps it (its ``AsyncProcess.wait``)."""


async def stop_all(
    trees: list[ProcessTree],
    wait_leader: WaitLeader,
    grace: float,
    outcome: Outcome,
    reap: Reap | None,
) -> None:
    """After the stop signal: wait up to *grace* for *trees*, SIGKILL them all, wait for
    them again (up to :data:`KILL_PATIENCE`), reap every leader. Escalations, survivors
    and failures go to *outcome*; the trees are left for the caller to close."""
    pending = {id(tree) for tree in trees}
    with anyio.move_on_after(grace) as patience:
        await _gone(trees, pending, wait_leader, outcome, reap)
    # a tree seen gone stays gone (nobody is left in it to fork): only the rest is checked
    unsure = [tree for tree in trees if id(tree) in pending]
    if patience.cancelled_caught:
        outcome.escalated.extend(unsure)
    for tree in trees:
        outcome.attempt(tree, tree.kill)  # also where the wait found it gone: catches stragglers
    with anyio.move_on_after(KILL_PATIENCE):
        await _gone(unsure, pending, wait_leader, outcome, reap)
    for tree in trees:
        if id(tree) in pending:
            outcome.record(tree, tree.survivors())
        finish(tree, outcome, confirm=False, close=False)  # closed with the others


async def _gone(
    trees: list[ProcessTree],
    pending: set[int],
    wait_leader: WaitLeader,
    outcome: Outcome,
    reap: Reap | None,
) -> None:
    """Wait until every tree is gone, taking each out of *pending* (ids) once it is."""
    groups: list[ProcessTree] = []

    async def one(tree: ProcessTree) -> None:
        try:
            with contextlib.suppress(StatusUnknownError):
                await wait_leader(tree)
            cgroup, init = tree.cgroup, None if tree.namespace is None else tree.namespace.init
            if init is not None:  # it exits once every other process of its namespace is gone
                await _reaped(init)
            elif cgroup is not None:
                while cgroup.populated():
                    await anyio.wait_readable(cgroup.watch_fd)
            elif tree.group_fd is not None:
                groups.append(tree)
                return
        except Exception as exc:
            outcome.record(tree, exc)
        pending.discard(id(tree))

    async with anyio.create_task_group() as tasks:
        for tree in trees:
            tasks.start_soon(one, tree)
    left = list(groups)
    try:
        await groups_gone_async(left, reap)
    finally:
        still = {id(tree) for tree in left}
        pending.difference_update(id(tree) for tree in groups if id(tree) not in still)


async def _reaped(process: Process) -> None:
    """Wait for *process* to exit, on its exit fd, and reap it."""
    with contextlib.suppress(StatusUnknownError):
        while process.poll() is None:
            with ExitFdLease(process) as lease:
                fd = lease.acquire()
                if fd is None:
                    return
                await wait_readable(fd)  # shares the reader with AsyncProcess.wait

"""Waiting for many process groups to empty: one look at ``/proc`` per round for all of them.

A group sends no notification when its last member exits, and a SIGTERMed member stays
in the group as a zombie until its new parent reaps it: init, which may take seconds,
or this process when it is a subreaper (``_subreaper``). So a stopping supervisor must
look for members that are not zombies, and only ``/proc`` shows them. Done tree by
tree, every look reads every process's file: stopping a thousand shells with a
``sleep`` each read /proc twice per tree per tick, a million files, 1.3 to 2.2 s (and
38 to 41 s with ``subreaper=True``, whose zombies waited for a reap that came only after
every tree was checked).

So a round here, for every group still waited for, does this once:

1. reap the orphans this process adopted (``subreaper=True``): the zombies go first,
   so that their groups can be seen empty;
2. ask each pinned group whether it has members at all (``PIDFD_SIGNAL_PROCESS_GROUP``
   with signal 0, no ``/proc``): most are empty by now and drop out;
3. scan ``/proc`` once for the rest (:func:`~tether._linux._procfs.live_group_members`),
   and open a pidfd on each live member found, kept only if the member is still in
   that group once the pidfd holds it (its pid may have been reused meanwhile).

Then it waits for those pidfds: the next round starts when every pinned member has
exited (it may have forked), with no polling in between. Where no pidfd can be had
(the no-pidfd fallback), it polls instead, every 1 ms at first, backing off to 50 ms.

A round's work (steps 1 to 3) is blocking system calls; :func:`groups_gone_async`
runs it in a worker thread (``anyio.to_thread``) so the event loop stays free, and
awaits the pidfds through one epoll fd.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Sequence

import anyio
import anyio.to_thread

from .._linux._procfs import live_group_members, read_stat
from ._tree import ProcessTree

__all__ = ["POLL_FIRST_DELAY", "POLL_MAX_DELAY", "Round", "groups_gone", "groups_gone_async"]

POLL_FIRST_DELAY = 0.001
POLL_MAX_DELAY = 0.05

Reap = Callable[[], object]
"""Reaps the orphans this process adopted (the subreaper's); may be None."""


class Round:
    """One look at the groups still waited for: who is left, and pidfds on their members."""

    __slots__ = ("blind", "left", "pidfds")

    def __init__(self) -> None:
        self.pidfds: list[int] = []
        """Pidfds of the live members found (closed by :meth:`close`)."""
        self.blind = False
        """Whether a live member could not be pinned (no pidfds): poll instead."""
        self.left: list[ProcessTree] = []
        """The trees whose group still has a live member."""

    def take(self, trees: Sequence[ProcessTree], reap: Reap | None) -> None:
        """Reap adopted orphans, then find the live members of *trees*' groups and pin them.

        The pidfds go straight into :attr:`pidfds`, which the caller made and closes, so
        that nothing is lost if it is interrupted meanwhile (or runs this in a thread).
        """
        if reap is not None:
            reap()
        candidates = {tree.process.pid: tree for tree in trees if tree.group_has_members()}
        members = live_group_members(candidates.keys())
        self.left = [candidates[pgid] for pgid in members]
        for pgid, pids in members.items():
            for pid in pids:
                self._pin(pid, pgid)

    def _pin(self, pid: int, pgid: int) -> None:
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return  # gone already
        except OSError:
            self.blind = True
            return
        self.pidfds.append(pidfd)
        stat = read_stat(pid)  # after the pidfd: this pid can no longer be reused
        if stat is None or stat.pgid != pgid or stat.state in ("Z", "X"):
            self.pidfds.remove(pidfd)  # out of the record, then closed
            os.close(pidfd)

    def close(self) -> None:
        """Close the pidfds."""
        while self.pidfds:
            os.close(self.pidfds.pop())


def _wait_pinned(pidfds: list[int], timeout: float) -> None:
    """Wait until every pidfd of *pidfds* is readable (its process exited), or *timeout*."""
    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    waiting = len(pidfds)
    deadline = time.monotonic() + timeout
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        events = poller.poll(max(1, int(left * 1000) + 1))
        for fd, _ in events:
            poller.unregister(fd)
            waiting -= 1


def groups_gone(
    trees: Sequence[ProcessTree],
    deadline: float,
    reap: Reap | None,
    hurried: Callable[[], bool] | None = None,
) -> list[ProcessTree]:
    """Wait until no group of *trees* has a live member, or until *deadline*
    (``time.monotonic()``), or until *hurried* says so (asked at least every
    :data:`POLL_MAX_DELAY` seconds); return the trees whose group still had one."""
    pending = list(trees)
    delay = POLL_FIRST_DELAY
    while pending:
        look = Round()
        try:
            look.take(pending, reap)
            pending = look.left
            left = deadline - time.monotonic()
            if not pending or left <= 0 or (hurried is not None and hurried()):
                break
            if look.blind or not look.pidfds:
                time.sleep(min(delay, left))
                delay = min(2 * delay, POLL_MAX_DELAY)
            else:
                _wait_pinned(look.pidfds, left if hurried is None else min(left, POLL_MAX_DELAY))
        finally:
            look.close()
    return pending


async def groups_gone_async(pending: list[ProcessTree], reap: Reap | None) -> None:
    """:func:`groups_gone` for async code: narrows *pending* in place until it is empty,
    without a deadline (the caller's cancel scope is one, and *pending* then says who
    is left); each round's look runs in a worker thread."""
    delay = POLL_FIRST_DELAY
    while pending:
        look = Round()
        try:
            await anyio.to_thread.run_sync(look.take, list(pending), reap)
            pending[:] = look.left
            if not pending:
                break
            if look.blind or not look.pidfds:
                await anyio.sleep(delay)
                delay = min(2 * delay, POLL_MAX_DELAY)
            else:
                await _await_pinned(look.pidfds)
        finally:
            look.close()


async def _await_pinned(pidfds: list[int]) -> None:
    """Wait until every pidfd of *pidfds* is readable, through one epoll fd."""
    with select.epoll() as watch:
        for fd in pidfds:
            watch.register(fd, select.EPOLLIN)
        waiting = len(pidfds)
        while waiting:
            await anyio.wait_readable(watch.fileno())
            for fd, _ in watch.poll(0):
                watch.unregister(fd)
                waiting -= 1

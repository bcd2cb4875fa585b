"""The bare contenders: a library's system calls, written straight in Python.

A target that asks tether to be some fraction of a peer's time means little unless one
knows what the steps themselves cost when no library runs around them. Each contender
here makes the system calls of one road, in as few Python bytecodes as the road allows,
with no checks, no locks and no bookkeeping:

* spawn: ``os.posix_spawn`` with an environment built once as bytes (the cheapest
  ``env`` Python can hand over) and ``os.pidfd_open``;
* kill: ``signal.pidfd_send_signal(SIGKILL)``;
* wait: a blocking ``os.waitid(P_PIDFD, WEXITED | WNOWAIT)`` (sync: tether's untimed
  ``wait()`` sleeps the same way, leaving the reap to its lock), ``loop.add_reader`` on
  the pidfd (asyncio) or ``trio.lowlevel.wait_readable`` (trio); then
  ``os.waitid(P_PIDFD, WEXITED)`` and ``close``.

They are floors of a kind, the least *Python* can do on that road, which the C floor
(``_floor.py``) undercuts by the interpreter's own cost. A target whose limit is below
its bare contender's ratio cannot be met by any library on that road; the verdicts show
the bare ratio beside each such target (``Target.bare``). The bare spawn does more work in
the child than tether's native spawner (glibc's ``posix_spawn`` resets every handled
signal one ``sigaction`` at a time), so a library can beat it there, but not on the reap.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence

import trio
import trio.lowlevel

__all__ = [
    "BARE_REAP",
    "BARE_SPAWN_ASYNCIO",
    "BARE_SPAWN_TRIO",
    "BARE_WAIT_ASYNCIO",
    "BARE_WAIT_TRIO",
    "BareChild",
    "spawn_asyncio",
    "spawn_trio",
    "wait_asyncio",
    "wait_blocking",
    "wait_trio",
]

BARE_REAP = "bare pidfd_send_signal->waitid(WNOWAIT)->waitid"
BARE_WAIT_ASYNCIO = "bare add_reader(pidfd)->waitid"
"""The asyncio bare wait; ``bench_reap.async_contender`` names it with `` [asyncio]``."""
BARE_WAIT_TRIO = "bare wait_readable(pidfd)->waitid"
"""The trio bare wait; ``bench_reap.async_contender`` names it with `` [trio]``."""
BARE_SPAWN_ASYNCIO = "bare posix_spawn+add_reader(pidfd) [asyncio]"
BARE_SPAWN_TRIO = "bare posix_spawn+wait_readable(pidfd) [trio]"

_ENV = dict(os.environb)


class BareChild:
    """A child started with ``os.posix_spawn`` and held by a pidfd: ``pid``, ``fd``, ``kill()``."""

    __slots__ = ("fd", "pid")

    def __init__(self, argv: Sequence[str]) -> None:
        self.pid = os.posix_spawn(argv[0], list(argv), _ENV)
        try:
            self.fd = os.pidfd_open(self.pid)
        except BaseException:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            raise

    def kill(self) -> None:
        """SIGKILL through the pidfd (still fine on an exited, unreaped child)."""
        signal.pidfd_send_signal(self.fd, signal.SIGKILL)


def _reap(child: BareChild) -> int:
    # os.waitid returns None only with WNOHANG, which this never passes.
    info = os.waitid(os.P_PIDFD, child.fd, os.WEXITED)
    os.close(child.fd)
    assert info is not None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def wait_blocking(child: BareChild) -> int:
    """Block until the child has exited without reaping it, then reap: its return code."""
    os.waitid(os.P_PIDFD, child.fd, os.WEXITED | os.WNOWAIT)
    return _reap(child)


async def wait_asyncio(child: BareChild) -> int:
    """Await the pidfd with ``loop.add_reader``, then reap: the child's return code."""
    loop = asyncio.get_running_loop()
    readable = loop.create_future()
    loop.add_reader(child.fd, readable.set_result, None)
    try:
        await readable
    finally:
        loop.remove_reader(child.fd)
    return _reap(child)


async def wait_trio(child: BareChild) -> int:
    """Await the pidfd with ``trio.lowlevel.wait_readable``, then reap: the return code."""
    await trio.lowlevel.wait_readable(child.fd)
    return _reap(child)


async def spawn_asyncio(argv: Sequence[str]) -> int:
    """Spawn *argv* and await its exit on asyncio: the bare async spawn+reap."""
    return await wait_asyncio(BareChild(argv))


async def spawn_trio(argv: Sequence[str]) -> int:
    """Spawn *argv* and await its exit on trio: the bare async spawn+reap."""
    return await wait_trio(BareChild(argv))

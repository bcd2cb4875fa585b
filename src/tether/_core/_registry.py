"""The live handles: every ``Process`` whose child tether still owns and has not reaped.

Two readers need the list: the interpreter-exit policy (``_exit_policy``), which stops
those children, and the subreaper (``_supervise._subreaper``), which must tell the
children tether spawned from orphans it adopted. Handles are held weakly (a dropped
handle gives its child to the background reaper from ``__del__``).

Every spawn tracks its handle and every reap untracks it, so both are single operations
on a dict (keyed by the handle's ``id``, valued by a weak reference), each atomic
without a lock: a thread that spawns while another scans never breaks the scan, and the
garbage collector, which may run a dropped handle's ``__del__`` (and so ``untrack``) in
the middle of ``track``, finds no lock held. A handle that dies still tracked (which
tether's handles do only when an interrupt lands between the two) leaves no entry behind:
its weak reference's callback drops it.
"""

from __future__ import annotations

import functools
import weakref
from typing import Protocol

__all__ = ["Handle", "clear", "live", "pids", "track", "untrack"]


class Handle(Protocol):
    """What the registry needs of a handle (``Process`` is one)."""

    @property
    def pid(self) -> int:
        """The child's pid, held unreaped by the handle."""

    def kill(self) -> None:
        """SIGKILL the child; a no-op once it is reaped."""

    def wait(self, timeout: float | None = None) -> object:
        """Reap the child."""


_live: dict[int, weakref.ref[Handle]] = {}


def track(process: Handle) -> None:
    """Remember a live handle, so that interpreter exit can stop its child."""
    key = id(process)
    # The callback, ``_live.pop(key, ref)``, is C code: no Python frame that an interrupt
    # could land in. It runs while the handle is being freed, before its id can name
    # another object, so the entry it pops is still this handle's (or gone already).
    _live[key] = weakref.ref(process, functools.partial(_live.pop, key))


def untrack(process: Handle) -> None:
    """Forget a handle whose child is reaped, detached or handed to the reaper."""
    _live.pop(id(process), None)


def live() -> list[Handle]:
    """The live handles now."""
    refs = list(_live.values())  # one C-level copy: no Python code runs in the middle
    return [process for process in (ref() for ref in refs) if process is not None]


def pids() -> set[int]:
    """The pids of the unreaped children that live handles own."""
    return {process.pid for process in live()}


def clear() -> None:
    """Forget every handle (in a child made by ``os.fork``: they are its parent's)."""
    global _live
    _live = {}

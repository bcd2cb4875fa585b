"""The live handles: every ``Process`` whose child tether still owns and has not reaped.

Two readers need the list: the interpreter-exit policy (``_exit_policy``), which stops
those children, and the subreaper (``_supervise._subreaper``), which must tell the
children tether spawned from orphans it adopted. Handles are held weakly (a dropped
handle gives its child to the background reaper from ``__del__``), and every change and
every read happens under one lock, so a thread that spawns while another scans never
breaks the scan. The lock is reentrant: the garbage collector may run a dropped handle's
``__del__`` (which untracks it) on a thread that holds it, in the middle of ``track``.
"""

from __future__ import annotations

import threading
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


_lock = threading.RLock()  # GC may run Process.__del__ (-> untrack) inside track/live
_live: weakref.WeakSet[Handle] = weakref.WeakSet()


def track(process: Handle) -> None:
    """Remember a live handle, so that interpreter exit can stop its child."""
    with _lock:
        _live.add(process)


def untrack(process: Handle) -> None:
    """Forget a handle whose child is reaped, detached or handed to the reaper."""
    with _lock:
        _live.discard(process)


def live() -> list[Handle]:
    """The live handles now."""
    with _lock:
        # One C-level copy of the weak references: no Python code (so no collection, which
        # may untrack a handle under this reentrant lock) runs in the middle of it.
        refs: list[weakref.ref[Handle]] = list(_live.data)  # type: ignore[attr-defined]
    return [process for process in (ref() for ref in refs) if process is not None]


def pids() -> set[int]:
    """The pids of the unreaped children that live handles own."""
    return {process.pid for process in live()}


def clear() -> None:
    """Forget every handle (in a child made by ``os.fork``: they are its parent's).

    No lock is taken: another thread of the parent may have held it at the moment of
    the fork, and in the child nobody would ever release it. The lock is made anew.
    """
    global _lock, _live
    _lock = threading.RLock()
    _live = weakref.WeakSet()

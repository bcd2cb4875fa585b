"""Find what a test left behind: child processes (zombies included), threads, fds.

Used by the autouse fixture in ``conftest.py``. Processes are found through
``/proc/self/task/*/children`` (a zombie is still a child until reaped), threads
through ``/proc/self/task`` (which also sees threads Python does not know about),
fds through ``/proc/self/fd`` with their targets, so a number closed and reopened
for something else counts as a leak too. tether's lifeline (started by the first
``kill="cgroup"`` child, one per process for its lifetime) is not a leak, and
neither are the fds this process holds for it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import threading
import time
from dataclasses import dataclass

_SETTLE_SECONDS = 5.0  # a finished thread can take a moment to leave /proc/self/task
LONG_LIVED_THREADS = frozenset({"tether-spawner", "tether-reaper"})
"""tether's own threads that live as long as the process, by design (documented)."""


@dataclass(frozen=True)
class Snapshot:
    """What the process holds at one moment."""

    children: frozenset[int]
    threads: frozenset[int]
    fds: frozenset[tuple[int, str]]


def _lifeline() -> tuple[int | None, frozenset[int]]:
    """tether's lifeline process (one per process, for its lifetime, by design) and its fds."""
    from tether._supervise._sentinel import LIFELINE

    return LIFELINE.held()


def _children() -> frozenset[int]:
    pids: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/self/task/{tid}/children") as f:
            pids.update(int(pid) for pid in f.read().split())
    return frozenset(pids - {_lifeline()[0]})


def _fds() -> frozenset[tuple[int, str]]:
    from tether._core._reaper import REAPER  # its epoll fd lives as long as the process

    found = set()
    lifeline_fds = _lifeline()[1]
    listing = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in os.listdir(listing):
            fd = int(name)
            if fd in (listing, REAPER.epoll_fd()) or fd in lifeline_fds:
                continue
            with contextlib.suppress(FileNotFoundError):
                found.add((fd, os.readlink(name, dir_fd=listing)))
    finally:
        os.close(listing)
    return frozenset(found)


def _long_lived(thread: threading.Thread) -> bool:
    # trio keeps idle worker threads for a few seconds after use: its cache, not a leak
    return thread.name in LONG_LIVED_THREADS or thread.name.startswith("Trio thread")


def _threads() -> frozenset[int]:
    allowed = {t.native_id for t in threading.enumerate() if _long_lived(t)}
    return frozenset(int(tid) for tid in os.listdir("/proc/self/task")) - allowed


def snapshot() -> Snapshot:
    """Record the children, threads (but tether's long-lived ones) and fds held now."""
    return Snapshot(children=_children(), threads=_threads(), fds=_fds())


def _describe_child(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        command = stat[stat.index("(") + 1 : stat.rindex(")")]
        state = stat[stat.rindex(")") + 2]
    except (OSError, ValueError):
        return f"pid {pid}"
    kind = "zombie" if state == "Z" else f"state {state}"
    return f"pid {pid} ({command}, {kind})"


def _describe_thread(tid: int) -> str:
    names = {t.native_id: t.name for t in threading.enumerate()}
    if tid in names:
        return f"{tid} ({names[tid]!r})"
    try:
        with open(f"/proc/self/task/{tid}/comm") as f:
            return f"{tid} (not a Python thread: {f.read().strip()})"
    except OSError:
        return f"{tid} (gone)"


def leaks(before: Snapshot, after: Snapshot) -> list[str]:
    """Describe everything *after* holds that *before* did not."""
    found = [f"child {_describe_child(pid)}" for pid in sorted(after.children - before.children)]
    found += [f"thread {_describe_thread(tid)}" for tid in sorted(after.threads - before.threads)]
    found += [f"fd {fd} -> {target}" for fd, target in sorted(after.fds - before.fds)]
    return found


def settle_and_check(before: Snapshot) -> list[str]:
    """Collect garbage, give exiting threads a moment to vanish, and return the leaks."""
    deadline = time.monotonic() + _SETTLE_SECONDS
    while True:
        gc.collect()
        found = leaks(before, snapshot())
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.01)


def reap_leaked_children(before: Snapshot) -> None:
    """Kill and reap every child that appeared since *before* (our own children only)."""
    for pid in _children() - before.children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

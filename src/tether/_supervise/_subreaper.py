"""Orphans: ``Supervisor(subreaper=True)`` adopts the descendants its children abandon.

When a process dies, its children are re-parented to the nearest ancestor that called
``prctl(PR_SET_CHILD_SUBREAPER, 1)``, or to init. A daemon that double-forks therefore
escapes to init, where nobody in this program can see its exit. With ``subreaper=True``
a supervisor scope makes this process a child subreaper while it is open, so such
orphans become *our* children: their parent pid is ours, and when they exit they are
zombies of ours until we reap them.

The flag is process-wide (one bit on the process, not on the scope or the thread), so
scopes share it: the first scope to ask reads the previous value
(``PR_GET_CHILD_SUBREAPER``) and sets the flag, and the last one to end puts the
previous value back. Re-parenting is not undone when the flag goes: an orphan adopted
while a scope was open stays our child. The flag is not inherited across ``fork``.

Adopted orphans are reaped, but only those tether can *prove* belong to one of the
supervisor's trees, since any other child of this process may be another library's,
waiting for its own ``waitpid``. An orphan qualifies when it is listed in
``/proc/self/task/*/children`` (our child), tether did not spawn it (no live tether
handle has its pid), and

* ``kill="group"``: its process group is the group of one of the trees, and that group
  still has members as seen through the pinned pidfd of its leader, so the group
  number cannot have been recycled; or
* ``kill="cgroup"``: its cgroup is one of the trees' cgroups, or below one; these are
  named ``tether-<our pid>-<n>`` and exist until the tree is closed.

``kill="process"`` has no such proof and refuses ``subreaper=True``. Each candidate is
held by a pidfd from the moment it is found: its ``/proc`` entry is read after the
pidfd is open and trusted only if the pidfd still names a live (or zombie) process,
and the reap is a non-blocking ``waitid(P_PIDFD)`` on that very pidfd, so a recycled pid
is never reaped. Without pidfds (old kernels, some seccomp profiles) the reap goes by
pid, which is safe only as long as nothing else in the process reaps our children, and
a group cannot be pinned: in group mode an orphan is then provably the tree's only
while the tree's leader is unreaped (it holds the group number), which is no longer
the case when the scope ends; cgroup mode needs no pidfd for its proof.

They are reaped whenever ``wait_any()``/``wait_all()`` run, when a child is spawned,
and when the scope ends: after every tree has been killed and its leader reaped, and
before the trees are closed. An orphan that left the trees (``setsid`` in group mode,
for one) is not provably ours: it stays a child of this process and, once it exits, a
zombie until something reaps it. Use ``kill="cgroup"`` to keep every descendant inside
a tree.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterable

from .._core import _registry
from .._core._reaper import REAPER
from .._errors import CgroupError
from .._linux import _pidfd, _prctl
from .._linux._cgroup import own_cgroup_dir
from .._linux._procfs import read_stat
from .._status import Status
from ._tree import ProcessTree, signal_pinned_group

__all__ = ["children", "claim", "is_subreaper", "reap_adopted", "release"]

_lock = threading.Lock()
_claimants: set[int] = set()  # the ids of the scopes holding a claim
_previous = False


def is_subreaper() -> bool:
    """Whether this process is a child subreaper now (``PR_GET_CHILD_SUBREAPER``)."""
    return _prctl.get_child_subreaper()


def _set_subreaper(flag: bool) -> None:
    _prctl.set_child_subreaper(flag)


def claim(owner: object) -> None:
    """Make this process a child subreaper until *owner* calls :func:`release`.

    Keyed by owner, so that an owner whose claim an interrupt cut short (before or after
    it took effect) can always call :func:`release`: it undoes exactly what was done.
    """
    global _previous
    with _lock:
        if id(owner) in _claimants:
            return
        first = not _claimants
        _claimants.add(id(owner))  # before the flag: a release always finds the claim
        if first:
            _previous = is_subreaper()
            if not _previous:
                _set_subreaper(True)


def release(owner: object) -> None:
    """End *owner*'s :func:`claim` (a no-op without one); the last one puts back the
    value found by the first."""
    with _lock:
        if id(owner) not in _claimants:
            return
        _claimants.discard(id(owner))
        if not _claimants and not _previous:
            _set_subreaper(False)


def _forget_after_fork() -> None:
    global _claimants, _previous, _lock
    _lock = threading.Lock()
    _claimants = set()
    _previous = False


os.register_at_fork(after_in_child=_forget_after_fork)


def children() -> set[int]:
    """The pids of this process's children, zombies included, from every thread."""
    found: set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        with (
            contextlib.suppress(FileNotFoundError, ProcessLookupError),
            open(f"/proc/self/task/{tid}/children", "rb") as listing,
        ):
            found.update(int(pid) for pid in listing.read().split())
    return found


def _spawned_by_tether() -> set[int]:
    """Pids of the unreaped children tether started: live handles and the reaper's."""
    return _registry.pids() | REAPER.pids()


def _parent_and_group(pid: int) -> tuple[int, int] | None:
    stat = read_stat(pid)
    return None if stat is None else (stat.ppid, stat.pgid)


def _cgroup_of(pid: int) -> str | None:
    try:
        return own_cgroup_dir(f"/proc/{pid}/cgroup")
    except (CgroupError, FileNotFoundError, ProcessLookupError):
        return None


class _Index:
    """The open trees by process group and by cgroup, so each orphan is checked in O(1)."""

    def __init__(self, trees: Iterable[ProcessTree]) -> None:
        self.groups: dict[int, ProcessTree] = {}
        self.cgroups: dict[str, ProcessTree] = {}
        for tree in trees:
            if tree.closed:
                continue
            if tree.cgroup is not None:
                self.cgroups[tree.cgroup.path] = tree
            elif tree.mode == "group":
                self.groups[tree.process.pid] = tree

    def in_cgroup(self, cgroup: str) -> bool:
        """Whether *cgroup* is one of the trees' cgroups or below one."""
        while cgroup not in self.cgroups:
            parent = os.path.dirname(cgroup)
            if parent == cgroup:
                return False
            cgroup = parent
        return True


def _belongs(pid: int, index: _Index) -> bool:
    """Whether our child *pid* is in one of the indexed trees; see the module documentation."""
    found = _parent_and_group(pid)
    if found is None or found[0] != os.getpid():
        return False
    if index.cgroups:
        cgroup = _cgroup_of(pid)
        if cgroup is not None and index.in_cgroup(cgroup):
            return True
    tree = index.groups.get(found[1])
    if tree is None:
        return False
    if tree.group_fd is not None and signal_pinned_group(tree.group_fd, 0):
        return True  # the group has members: its number is still the tree's
    # no group pidfd, but the unreaped leader holds the number
    return _unreaped(tree.process.pid) and tree.process.status is None


def _unreaped(pid: int) -> bool:
    """Whether our child *pid* is not reaped yet (running or a zombie); does not reap it."""
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def _alive(pidfd: int | None) -> bool:
    if pidfd is None:
        return True  # no pidfd, no proof: the fallback trusts that nobody steals our reaps
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return False
    return True


def reap_adopted(trees: Iterable[ProcessTree]) -> list[tuple[int, Status]]:
    """Reap the exited orphans this process adopted that belong to *trees*.

    Returns ``(pid, status)`` for each one reaped; live ones are left alone.
    """
    candidates = children() - _spawned_by_tether()
    if not candidates:
        return []
    index = _Index(trees)
    reaped: list[tuple[int, Status]] = []
    for pid in sorted(candidates):
        try:
            pidfd = os.pidfd_open(pid) if _pidfd.pidfds_available() else None
        except ProcessLookupError:
            continue  # gone already
        except OSError:
            pidfd = None  # refused here: the pid-based fallback
        try:
            if not (_belongs(pid, index) and _alive(pidfd)):
                continue
            try:
                if pidfd is not None:
                    status = _pidfd.reap_pidfd(pidfd, pid)
                else:
                    status = _pidfd.reap_pid(pid)
            except ChildProcessError:
                continue  # reaped by someone else meanwhile
            if status is not None:
                reaped.append((pid, status))
        finally:
            if pidfd is not None:
                os.close(pidfd)
    return reaped

"""cgroup v2 helpers behind ``Supervisor(kill="cgroup")``.

A process group is a weak fence: any process can leave it with ``setsid`` or
``setpgid``, and a daemon that double-forks does exactly that. A cgroup is the
fence the kernel keeps: children are born into their parent's cgroup and only a
privileged writer of ``cgroup.procs`` can move them out. So each supervised child
gets a cgroup of its own, ``tether-<pid>-<n>``, which the child joins between fork
and exec (the ``cgroup=`` spawn option); every descendant is then found, stopped
and killed through that directory, however it forked.

Where the hierarchy lives is read, never assumed: the cgroup2 mount comes from
``/proc/self/mountinfo`` (``/sys/fs/cgroup`` on most systems, ``/sys/fs/cgroup/unified``
on hybrid ones) and our own cgroup from the ``0::`` line of ``/proc/self/cgroup``.
New cgroups are created under our own cgroup (or a parent the caller names, such
as a directory systemd delegated to us); when that is not writable, the caller gets
a :class:`CgroupError` naming the directory, never a silent fallback to weaker
process groups.

Three kernel interfaces do the work:

* ``cgroup.kill`` (Linux 5.14) SIGKILLs every process in the cgroup at once,
  racing no fork. cgroup v2 has no "send this signal to all" file, so the polite
  stop signal goes to each pid listed in ``cgroup.procs`` through a pidfd, and only
  to pids that are still listed once the pidfd is held: a pid that left the cgroup
  and was recycled in between is never signalled.
* ``cgroup.events`` says ``populated 0`` once no live process is left (zombies do
  not count). Each change raises a priority event on an open fd of that file, and
  reading the file acknowledges it. An epoll set watching that fd for ``EPOLLPRI``
  turns the event into plain readability of the epoll fd, which sync code polls
  with a timeout and async code awaits with ``anyio.wait_readable``: no sleep loop.
* ``rmdir`` removes an empty cgroup once the tree is gone.

No kernel mechanism kills a cgroup when the process that created it dies. So a
:class:`CgroupWatcher` may be told of each cgroup: before its ``mkdir`` and after its
removal. The supervisors pass the lifeline (``_supervise._sentinel``), a helper
process that kills and removes the announced cgroups if the supervising process dies
without doing it (SIGKILL, a crash).
"""

from __future__ import annotations

import contextlib
import errno as errnos
import itertools
import os
import re
import select
import signal
from typing import Protocol

from typing_extensions import final

from .._durations import deadline_after, remaining
from .._errors import CgroupError
from . import _pidfd

__all__ = ["CgroupWatcher", "cgroup2_mount", "own_cgroup_dir", "writable_parent"]

_NAMES = itertools.count(1)
_EVENTS_SIZE = 4096
_MODE = 0o755


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> tuple[str, str]:
    """Return ``(mount point, root)`` of the cgroup2 hierarchy as this process sees it.

    *root* is the cgroup the mount shows at its top (``/`` unless it is a bind mount).
    Raises :class:`CgroupError` when no cgroup2 filesystem is mounted.
    """
    found: list[tuple[str, str]] = []
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as lines:
            for line in lines:
                fields, _, rest = line.partition(" - ")
                if rest.split(" ", 1)[0] != "cgroup2":
                    continue
                parts = fields.split(" ")
                found.append((_unescape(parts[4]), _unescape(parts[3])))
    except OSError as exc:
        raise CgroupError(
            exc.errno, f"cannot read the mount table: {exc.strerror}", mountinfo
        ) from exc
    if not found:
        raise CgroupError(errnos.ENOENT, "no cgroup2 filesystem is mounted", mountinfo)
    found.sort(key=lambda mount: len(mount[1]))  # the least narrowed view first
    return found[0]


def own_cgroup_dir(proc_cgroup: str = "/proc/self/cgroup") -> str:
    """The directory of this process's cgroup v2, e.g. ``/sys/fs/cgroup/user.slice/...``."""
    mount, root = cgroup2_mount()
    try:
        with open(proc_cgroup, encoding="utf-8", errors="surrogateescape") as lines:
            path = next((line[3:].rstrip("\n") for line in lines if line.startswith("0::")), None)
    except OSError as exc:
        raise CgroupError(
            exc.errno, f"cannot read our cgroup: {exc.strerror}", proc_cgroup
        ) from exc
    if path is None:
        raise CgroupError(errnos.ENOENT, "this process is in no cgroup v2", proc_cgroup)
    relative = os.path.relpath(path, root) if root != "/" else path.lstrip("/")
    if relative.startswith(".."):
        raise CgroupError(errnos.ENOENT, f"our cgroup {path} is outside the cgroup2 mount", mount)
    return os.path.normpath(os.path.join(mount, relative))


def writable_parent(parent: str | None = None) -> str:
    """Check that cgroups can be created under *parent* (default: our own cgroup) and return it.

    Raises :class:`CgroupError` naming the directory when it is not writable.
    """
    directory = own_cgroup_dir() if parent is None else os.fspath(parent)
    for target in (directory, os.path.join(directory, "cgroup.procs")):
        if not os.access(target, os.W_OK):
            code = errnos.ENOENT if not os.path.exists(target) else errnos.EACCES
            raise CgroupError(
                code,
                "cannot create cgroups here (not a writable cgroup v2 directory); "
                "pass a delegated directory as cgroup_parent, or use kill='group'",
                target,
            )
    return directory


class CgroupWatcher(Protocol):
    """Told of every cgroup a :class:`Cgroup` makes, to remove it should we die first."""

    def announce(self, path: str) -> None:
        """Cgroup *path* is about to be made."""

    def withdraw(self, path: str) -> None:
        """Cgroup *path* was removed, or was never made."""


@final
class Cgroup:
    """One cgroup created for one supervised child and everything it starts."""

    path: str
    """The cgroup's directory, passed to the child as ``cgroup=``."""

    def __init__(
        self,
        path: str,
        events_fd: int,
        watch: select.epoll,
        watcher: CgroupWatcher | None = None,
    ) -> None:
        self.path = path
        self._events_fd = events_fd
        self._watch = watch
        self._watcher = watcher
        self._removed = False

    @classmethod
    def create(cls, parent: str, watcher: CgroupWatcher | None = None) -> Cgroup:
        """Create ``tether-<pid>-<n>`` under *parent*; raise :class:`CgroupError` on failure.

        *watcher* hears of the name before the ``mkdir``, so that no cgroup of ours ever
        exists unannounced, and of its removal.
        """
        while True:
            path = os.path.join(parent, f"tether-{os.getpid()}-{next(_NAMES)}")
            if watcher is not None:
                watcher.announce(path)
            try:
                os.mkdir(path, _MODE)
            except FileExistsError:  # left by an earlier process that had our pid
                if watcher is not None:
                    watcher.withdraw(path)
                continue
            except OSError as exc:
                if watcher is not None:
                    watcher.withdraw(path)
                raise CgroupError(
                    exc.errno, f"cannot create a cgroup: {exc.strerror}", path
                ) from exc
            break
        events_fd = -1
        try:
            os.chmod(path, _MODE)  # whatever the umask: nobody else may make cgroups in it
            if not os.path.exists(os.path.join(path, "cgroup.kill")):
                raise CgroupError(errnos.ENOTSUP, "the kernel lacks cgroup.kill (Linux 5.14)", path)
            events_fd = os.open(os.path.join(path, "cgroup.events"), os.O_RDONLY | os.O_CLOEXEC)
            watch = select.epoll()
        except BaseException:
            if events_fd >= 0:
                os.close(events_fd)
            os.rmdir(path)
            if watcher is not None:
                watcher.withdraw(path)
            raise
        watch.register(events_fd, select.EPOLLPRI)
        self = cls(path, events_fd, watch, watcher)
        self.populated()  # acknowledge the event a freshly opened file reports
        return self

    @property
    def watch_fd(self) -> int:
        """An fd that turns readable when ``cgroup.events`` changes; :meth:`populated` resets it."""
        return self._watch.fileno()

    def populated(self) -> bool:
        """True while a live process is in the cgroup (zombies do not count)."""
        events = os.pread(self._events_fd, _EVENTS_SIZE, 0)
        return b"populated 1" in events

    def wait_empty(self, timeout: float | None) -> bool:
        """Block until no live process is left or *timeout* seconds pass; True if empty."""
        deadline = deadline_after(timeout)
        while self.populated():
            left = remaining(deadline)
            if left is not None and left <= 0:
                return False
            _pidfd.wait_readable(self.watch_fd, left)
        return True

    def pids(self) -> list[int]:
        """The pids (processes, not threads) in the cgroup and the cgroups below it, now."""
        found: list[int] = []
        for directory, _, _ in os.walk(self.path):
            try:
                with open(os.path.join(directory, "cgroup.procs"), "rb") as procs:
                    found.extend(int(pid) for pid in procs.read().split())
            except FileNotFoundError:
                continue  # removed meanwhile
        return found

    def signal_members(self, sig: int, *, exclude: int | None = None) -> None:
        """Send *sig* to every process in the cgroup (and below) but *exclude*, through pidfds.

        A process is signalled only if its pid is still listed once its pidfd is held,
        so a pid recycled after leaving the cgroup is never hit. Without pidfds
        (``pidfd_open`` refused) nothing is sent: :meth:`kill` still reaches everyone.
        """
        pinned: list[tuple[int, int]] = []
        try:
            for pid in self.pids():
                if pid == exclude:
                    continue
                try:
                    pinned.append((pid, os.pidfd_open(pid)))
                except ProcessLookupError:
                    continue
                except OSError as exc:
                    if exc.errno in (errnos.ENOSYS, errnos.EPERM, errnos.EINVAL):
                        return
                    raise
            listed = set(self.pids())
            for pid, pidfd in pinned:
                if pid in listed:
                    with contextlib.suppress(ProcessLookupError):
                        signal.pidfd_send_signal(pidfd, sig)
        finally:
            for _, pidfd in pinned:
                os.close(pidfd)

    def kill(self) -> None:
        """SIGKILL every process in the cgroup (``cgroup.kill``)."""
        fd = os.open(os.path.join(self.path, "cgroup.kill"), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"1")
        finally:
            os.close(fd)

    def remove(self) -> None:
        """Remove the (empty) cgroup directory, then close our fds; idempotent.

        Empty cgroups below it go first: a supervised child that supervises in turn
        leaves its own ``tether-*`` cgroups there when it is killed. A failed
        ``rmdir`` raises :class:`CgroupError` and leaves the cgroup usable, so that
        it can be killed and removed again.
        """
        if self._removed:
            return
        try:
            _remove_tree(self.path)
        except OSError as exc:
            raise CgroupError(
                exc.errno, f"cannot remove the cgroup: {exc.strerror}", self.path
            ) from exc
        self._removed = True
        self._watch.close()
        os.close(self._events_fd)
        if self._watcher is not None:
            self._watcher.withdraw(self.path)

    def __repr__(self) -> str:
        return f"<tether cgroup {self.path}>"


def _remove_tree(path: str) -> None:
    """``rmdir`` *path* and the cgroups below it, deepest first; a vanished one is fine."""
    try:
        with os.scandir(path) as entries:
            below = [entry.path for entry in entries if entry.is_dir(follow_symlinks=False)]
        for directory in below:
            _remove_tree(directory)
        os.rmdir(path)
    except FileNotFoundError:
        pass

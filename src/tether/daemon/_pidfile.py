"""Pid files whose liveness is a lock, not a guess about a pid.

The classic pid file says "a process with this pid exists, so we are running". That is
wrong twice over: pids are recycled (an unrelated process inherits the number after a
crash), and a crash leaves the file behind to block the next start. Here the file is
only a *label*; the truth is an ``flock`` held on it by the running instance:

* ``flock`` locks belong to the open file description. They survive ``fork`` (the
  daemon inherits the launcher's) and are dropped by the kernel when the last fd of
  the description closes, so a crashed holder leaves no lock. POSIX ``fcntl`` locks
  would be lost the moment *any* fd of the file is closed by any code in the process.
* A second starter fails at once (``LOCK_NB``) and reads the holder's pid from the file.
* Unlinking a locked file races with starters that opened it a moment before: one of
  them may lock the unlinked inode while another creates and locks a new file at the
  path. So after locking, the inode under the fd is compared with the one at the path,
  and a starter that locked a file no longer at the path starts over.
* A file nobody holds the lock on is stale and is taken over in place.
* The pid is written in place (``pwrite`` then ``ftruncate``), never by truncating
  first, so a reader never sees an empty file while a holder lives.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from types import TracebackType

from typing_extensions import Self, final

from .._errors import TetherError

__all__ = ["AlreadyRunning", "PidFile"]

_MAX_RETRIES = 100


class AlreadyRunning(TetherError):
    """The pid file is locked by a running instance.

    Its ``path`` attribute is the pid file, its ``pid`` the holder's pid (None if unreadable).
    """

    def __init__(self, path: str, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"already running ({holder}): {path} is locked")
        self.path = path
        self.pid = pid

    def __reduce__(self) -> tuple[object, ...]:
        return (AlreadyRunning, (self.path, self.pid))


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


@final
class PidFile:
    """A pid file held by an ``flock`` for as long as the instance runs.

    :meth:`acquire` (or ``with PidFile(path):``) takes the lock or raises
    :class:`AlreadyRunning` naming the holder's pid; it writes this process's pid.
    :meth:`write` rewrites the pid in place (after a fork). :meth:`release` removes the
    file and drops the lock; it does so only in the process that last wrote its pid, so a
    launcher that exits after a fork never removes the daemon's file. The file is created
    with *mode* (0644 by default) whatever the umask.
    """

    def __init__(self, path: str | os.PathLike[str], *, mode: int = 0o644) -> None:
        self.path = os.path.abspath(os.fspath(path))
        """The absolute path of the file (made absolute at once: a daemon changes directory)."""
        self.mode = mode
        self._fd: int | None = None
        self._owner: int | None = None

    @property
    def fd(self) -> int | None:
        """The locked fd while held (keep it open across a fork), else None."""
        return self._fd

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    @staticmethod
    def holder(path: str | os.PathLike[str]) -> int | None:
        """The pid written in a *locked* pid file at *path*; None when nobody holds it.

        Liveness is the lock: an unlocked file names nobody, whatever pid it holds. A
        locked file whose pid cannot be read gives 0.
        """
        try:
            fd = os.open(os.fspath(path), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _read_pid(fd) or 0
            return None
        finally:
            os.close(fd)

    def acquire(self) -> None:
        """Lock the file, taking over a stale one, and write this process's pid.

        Raises :class:`AlreadyRunning` when another open file description holds the lock,
        and ``RuntimeError`` when this object holds it already.
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is held already by this PidFile")
        for _ in range(_MAX_RETRIES):
            fd = os.open(
                self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, self.mode
            )
            try:
                if self._lock_current(fd):
                    os.fchmod(fd, self.mode)
                    self._fd, fd = fd, -1
                    self.write()
                    return
            finally:
                if fd != -1:
                    os.close(fd)
        raise RuntimeError(f"{self.path} kept being replaced while it was being locked")

    def _lock_current(self, fd: int) -> bool:
        """Lock *fd*; True if it is still the file at the path, False to start over."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(self.path, _read_pid(fd)) from None
        try:
            at_path = os.stat(self.path, follow_symlinks=False)
        except FileNotFoundError:
            return False  # unlinked by its holder between our open and our lock
        ours = os.fstat(fd)
        return (at_path.st_dev, at_path.st_ino) == (ours.st_dev, ours.st_ino)

    def write(self, pid: int | None = None) -> None:
        """Write *pid* (this process's by default) in place; this process becomes the owner."""
        if self._fd is None:
            raise RuntimeError(f"{self.path} is not held")
        data = f"{os.getpid() if pid is None else pid}\n".encode()
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))
        self._owner = os.getpid()

    def release(self) -> None:
        """Remove the file and drop the lock (in the owning process; elsewhere just close).

        The file is unlinked *before* the lock goes, so no starter can lock it, see it
        still at the path and believe itself the owner.
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._owner == os.getpid():
                with contextlib.suppress(FileNotFoundError):
                    if self._still_ours(fd):
                        os.unlink(self.path)
        finally:
            os.close(fd)

    def _let_go(self) -> None:
        """Close our fd and leave the file: a daemon we started holds the lock through its copy."""
        fd, self._fd, self._owner = self._fd, None, None
        if fd is not None:
            os.close(fd)

    def _still_ours(self, fd: int) -> bool:
        try:
            at_path = os.stat(self.path, follow_symlinks=False)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        ours = os.fstat(fd)
        return (at_path.st_dev, at_path.st_ino) == (ours.st_dev, ours.st_ino)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = f"held, fd {self._fd}" if self._fd is not None else "not held"
        return f"PidFile({self.path!r}, {state})"

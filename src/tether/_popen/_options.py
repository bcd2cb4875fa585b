"""Turning ``Popen``'s arguments into tether spawn options, with the standard checks.

The hazard is small differences: the standard module resolves user and group names
with ``pwd``/``grp`` (an unknown name is a ``KeyError``), refuses negative ids with
``ValueError``, takes ``umask=-1`` and ``pipesize=-1`` for "unchanged", and inherits
every inheritable fd when ``close_fds=False``. Each function here reproduces one such
rule so that the drop-in fails where, and as, the standard module fails.
"""

from __future__ import annotations

import errno
import grp
import locale
import os
import pwd
import stat
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterable
from typing import Any

from .._errors import SpawnError

__all__ = [
    "check_cwd",
    "close_inherited_after",
    "command_line",
    "extra_group_ids",
    "group_id",
    "inherited_fds",
    "spawn_failure",
    "text_encoding",
    "user_id",
]

UNIX_SHELL = "/bin/sh"


def command_line(args: Any, executable: Any, shell: bool) -> tuple[list[Any], Any]:
    """The argv and the program to execute, as ``Popen._execute_child`` builds them."""
    argv: list[Any]
    if isinstance(args, (str, bytes)):
        argv = [args]
    elif isinstance(args, os.PathLike):
        if shell:
            raise TypeError("path-like args is not allowed when shell is true")
        argv = [args]
    else:
        argv = list(args)
    if shell:
        argv = [UNIX_SHELL, "-c", *argv]
        if executable:
            argv[0] = executable
    if executable is None:
        if not argv:
            raise IndexError("list index out of range")  # what subprocess raises for []
        executable = argv[0]
    return argv, executable


def _checked_id(value: int, what: str, too_big: type[Exception] = OverflowError) -> int:
    if value < 0:
        raise ValueError(f"{what} ID cannot be negative, got {value}")
    if value >= 2**32:  # the standard module's C converters refuse it
        raise too_big(f"{what.lower()} id is greater than maximum")
    return value


def group_id(group: object) -> int | None:
    """The gid for ``group=`` (a name or a number), or None."""
    if group is None:
        return None
    if isinstance(group, str):
        return grp.getgrnam(group).gr_gid
    if isinstance(group, int):
        return _checked_id(group, "Group")
    raise TypeError(f"Group must be a string or an integer, not {type(group)}")


def extra_group_ids(extra_groups: object) -> list[int] | None:
    """The gids for ``extra_groups=`` (names or numbers), or None."""
    if extra_groups is None:
        return None
    if isinstance(extra_groups, str):
        raise ValueError("Groups must be a list, not a string")
    gids: list[int] = []
    for extra in extra_groups:  # type: ignore[attr-defined]
        if isinstance(extra, str):
            gids.append(grp.getgrnam(extra).gr_gid)
        elif isinstance(extra, int):
            gids.append(extra)
        else:
            raise TypeError(f"Items in extra_groups must be a string or integer, not {type(extra)}")
    return [_checked_id(gid, "Group", ValueError) for gid in gids]


def user_id(user: object) -> int | None:
    """The uid for ``user=`` (a name or a number), or None."""
    if user is None:
        return None
    if isinstance(user, str):
        return pwd.getpwnam(user).pw_uid
    if isinstance(user, int):
        return _checked_id(user, "User")
    raise TypeError("User must be a string or an integer")


def inherited_fds(keep: Iterable[int]) -> list[int]:
    """Every open inheritable fd above 2, plus *keep*: what ``close_fds=False`` passes on.

    tether's backends close every fd not named, so "leave them open" becomes "name
    every fd that ``exec`` would have kept"; an fd closed meanwhile is left out.
    """
    found = set(keep)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2 or fd in found:
            continue
        try:
            if os.get_inheritable(fd):
                found.add(fd)
        except OSError:
            continue  # the fd listdir itself used, closed by now
    return sorted(found)


def text_encoding() -> str:
    """The encoding of text mode without ``encoding=``: the locale's (UTF-8 in UTF-8 mode).

    Warns ``EncodingWarning`` under ``-X warn_default_encoding``, at the caller outside
    tether, as the standard module does.
    """
    if sys.flags.warn_default_encoding:
        frame = sys._getframe(0)
        level = 1  # warn()'s stacklevel for *frame*
        while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            frame = frame.f_back
            level += 1
        warnings.warn("'encoding' argument not specified.", EncodingWarning, level)
    if sys.flags.utf8_mode:
        return "utf-8"
    return locale.getpreferredencoding(False)


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def close_inherited_after(
    preexec_fn: Callable[[], object], keep: Iterable[int]
) -> Callable[[], None]:
    """*preexec_fn*, then closing what it left inheritable: the standard ``close_fds=True``.

    The standard child closes fds *after* ``preexec_fn``, so an fd that the function
    opens or ``dup2``s is not inherited. tether's fork backend closes them before, so the
    drop-in closes, in the child, every inheritable fd above 2 but *keep* once the
    function returns; close-on-exec fds (the backend's report pipe) go at ``exec``.
    """
    kept = frozenset(keep)

    def run_then_close() -> None:
        preexec_fn()
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2 and fd not in kept:
                try:
                    if os.get_inheritable(fd):
                        os.close(fd)
                except OSError:
                    continue  # the directory's own fd, closed by now

    return run_then_close


def check_cwd(cwd: str | bytes | os.PathLike[str] | os.PathLike[bytes]) -> OSError | None:
    """Why ``chdir(cwd)`` would fail, as the error the standard child reports; or None.

    The standard child changes directory before it looks for the program, so a bad
    ``cwd`` is the error even when the program is missing too; tether resolves the
    program first, in the parent.
    """
    path = os.fsencode(cwd)
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return error
    if not stat.S_ISDIR(mode):
        return OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    if not os.access(path, os.X_OK):
        return OSError(errno.EACCES, os.strerror(errno.EACCES))
    return None


def spawn_failure(error: SpawnError, executable: object, cwd: object) -> BaseException:
    """The exception the standard module raises where tether's spawn failed.

    The same ``OSError`` subclass and ``errno``, with ``filename`` set as the standard
    child reports it (the executable as given, or the ``cwd``); a bad ``cwd`` wins over a
    missing program; a failing ``preexec_fn`` is ``_posixsubprocess``'s ``SubprocessError``.
    """
    if error.stage == "exec" and cwd is not None:
        bad_cwd = check_cwd(cwd)  # type: ignore[arg-type]
        if bad_cwd is not None:
            error = SpawnError(bad_cwd.errno, stage="chdir", argv=error.argv)
    if error.stage == "preexec_fn":
        failure = subprocess.SubprocessError("Exception occurred in preexec_fn.")
        failure.__cause__ = error
        return failure
    if error.stage == "exec":
        error.filename = executable
    elif error.stage == "chdir":
        error.filename = cwd
    return error

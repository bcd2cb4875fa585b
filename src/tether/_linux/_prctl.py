"""``prctl(2)``, called from Python, including in a forked child before ``exec``.

The hazard is where this runs. The ``fork`` backend calls ``prctl`` in the child,
between ``fork`` and ``exec``, where a multi-threaded parent may have left a lock
held by a thread that no longer exists: loading a library there (``dlopen``, and
``ctypes.CDLL`` is one) takes the dynamic loader's lock and can hang the child for
good. So libc is opened and ``prctl`` looked up once, when this module is imported
in the parent; a call only converts its integer arguments and enters libc.

``prctl`` is variadic and the kernel reads every argument as an ``unsigned long``,
so all four are passed as one (a pointer argument is passed as its address); a
stray high bit in an unused argument makes the kernel answer EINVAL. A failure is
raised as an ``OSError`` carrying the errno and naming the option.

``PR_SET_PDEATHSIG`` is tied to the *thread* that created the child, and changing
the uid or gid clears it: callers arm it after those changes. ``PR_SET_CHILD_SUBREAPER``
is one flag on the whole process and is not inherited across ``fork``.
"""

from __future__ import annotations

import ctypes
import os

__all__ = [
    "get_child_subreaper",
    "prctl",
    "set_child_subreaper",
    "set_no_new_privs",
    "set_pdeathsig",
]

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
PR_SET_NO_NEW_PRIVS = 38

_NAMES = {
    PR_SET_PDEATHSIG: "PR_SET_PDEATHSIG",
    PR_SET_CHILD_SUBREAPER: "PR_SET_CHILD_SUBREAPER",
    PR_GET_CHILD_SUBREAPER: "PR_GET_CHILD_SUBREAPER",
    PR_SET_NO_NEW_PRIVS: "PR_SET_NO_NEW_PRIVS",
}

_prctl = ctypes.CDLL(None, use_errno=True).prctl
_prctl.argtypes = [ctypes.c_int, *[ctypes.c_ulong] * 4]
_prctl.restype = ctypes.c_int


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """Call ``prctl(option, arg2, ...)`` and return its result; raise ``OSError`` on failure."""
    result: int = _prctl(option, arg2, arg3, arg4, arg5)
    if result == -1:
        code = ctypes.get_errno()
        name = _NAMES.get(option, str(option))
        raise OSError(code, f"prctl({name}): {os.strerror(code)}")
    return result


def set_pdeathsig(signum: int) -> None:
    """Have the kernel send *signum* to this process when the thread that made it exits."""
    prctl(PR_SET_PDEATHSIG, signum)


def set_no_new_privs() -> None:
    """Forbid this process and its descendants to gain privileges through ``execve``."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)


def get_child_subreaper() -> bool:
    """Whether this process is a child subreaper now."""
    value = ctypes.c_int(0)
    prctl(PR_GET_CHILD_SUBREAPER, ctypes.addressof(value))
    return value.value != 0


def set_child_subreaper(flag: bool) -> None:
    """Make this process a child subreaper (adopting orphaned descendants), or stop."""
    prctl(PR_SET_CHILD_SUBREAPER, int(flag))

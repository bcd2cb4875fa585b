"""The ``posix_spawn`` backend: glibc's vfork-style spawn, no Python in the child.

``os.posix_spawn`` cannot change directory, set a umask, limits or credentials, or
run Python code, so a plan asking for any of those is not eligible and ``auto``
moves on to the next backend. Everything else maps onto spawn attributes and file
actions:

* the fd map becomes ``dup2`` actions (glibc and musl clear close-on-exec when source
  and target are equal, which is how ``pass_fds`` reach the child);
* fds other than 0-2 and ``pass_fds`` that are inheritable in the parent get a
  ``close`` action; everything Python opens is close-on-exec already (PEP 446), so
  this list is usually empty;
* the signal mask is emptied, and SIGPIPE and SIGXFSZ (which Python ignores) are
  reset to their defaults when ``restore_signals`` is true.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from .._errors import SpawnError
from ._plan import SETUP_OPTIONS, SpawnPlan
from ._receipt import SpawnReceipt, open_pidfd_into
from ._stdio import ChildStdio

NAME = "posix_spawn"
AVAILABLE = True
RECORDS_IN_C = False
"""The pid is a return value: from the main thread, this runs on the spawner thread."""


REFUSES = SETUP_OPTIONS
"""Every option that needs the child set up between fork and exec."""


def spawn(plan: SpawnPlan, stdio: ChildStdio, receipt: SpawnReceipt) -> None:
    """Start the child of *plan* into *receipt*, or raise :class:`SpawnError`.

    Runs only where no signal handler can raise between the spawn and the store (see
    ``_receipt``).
    """
    keep = {0, 1, 2, *plan.kept_fds}
    leaking = [fd for fd in _inheritable_fds() if fd not in keep]
    unclosable = unclosable_fds(leaking)
    if unclosable:
        raise plan.failure(
            errno.EBADF,
            "close_fds",
            f"inheritable fd {unclosable[0]} is above the soft RLIMIT_NOFILE, where "
            "posix_spawn cannot close it in the child; use the native or fork backend, "
            "or make the fd non-inheritable",
        )
    actions: list[tuple[int, ...]] = [(os.POSIX_SPAWN_DUP2, src, dst) for src, dst in stdio.fd_map]
    actions.extend((os.POSIX_SPAWN_DUP2, fd, fd) for fd in plan.pass_fds if fd > 2)
    actions.extend((os.POSIX_SPAWN_CLOSE, fd) for fd in leaking)
    options: dict[str, Any] = {
        "file_actions": actions,
        "setsid": plan.start_new_session,
        "setsigmask": (),
        "setsigdef": plan.default_signals,
    }
    if plan.process_group is not None:
        options["setpgroup"] = plan.process_group
    env = os.environ if plan.env is None else plan.env
    try:
        receipt.pid = os.posix_spawn(plan.program, plan.argv, env, **options)
    except OSError as exc:
        raise _spawn_error(exc, plan) from None
    open_pidfd_into(receipt)


def unclosable_fds(fds: list[int]) -> list[int]:
    """Those of *fds* that a spawn file action cannot name: glibc refuses (``EBADF``) any fd
    at or above the soft ``RLIMIT_NOFILE``, which an fd opened before the limit was
    lowered can be."""
    limit = os.sysconf("SC_OPEN_MAX")
    return [fd for fd in fds if limit >= 0 and fd >= limit]


def blocked_by_fds(plan: SpawnPlan) -> bool:
    """Whether an inheritable fd that this backend cannot close would leak into *plan*'s child."""
    keep = {0, 1, 2, *plan.kept_fds}
    return bool(unclosable_fds([fd for fd in _inheritable_fds() if fd not in keep]))


def _inheritable_fds() -> list[int]:
    inheritable = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd <= 2:
            continue
        try:
            if os.get_inheritable(fd):
                inheritable.append(fd)
        except OSError:
            continue  # the fd listdir itself used, closed by now
    return inheritable


def _spawn_error(exc: OSError, plan: SpawnPlan) -> SpawnError:
    code = exc.errno or errno.EIO
    if code == errno.EBADF:
        return plan.failure(code, "fd_map")
    if code == errno.EAGAIN:
        return plan.failure(code, "fork")
    return plan.failure(code, "exec")

"""The ``posix_spawn`` backend: glibc's vfork-style spawn, no Python in the child.

The hazard first: ``os.posix_spawn`` *returns* its pid, and a signal handler raising
before that pid is stored loses the child (see ``_receipt``). So when the C extension
is built, the spawn is ``posix_spawn_into`` in ``_native/_spawner.c``: the C library's
``posix_spawn`` with the child written into the receipt before control returns to
Python, and no hop to the spawner thread. Without the extension, ``os.posix_spawn``
runs on the spawner thread from the main thread, as it always did.

``posix_spawn`` cannot change directory, set a umask, limits or credentials, or run
Python code, so a plan asking for any of those is not eligible and ``auto`` moves on
to the next backend. Everything else maps onto spawn attributes and file actions:

* the fd map becomes ``dup2`` actions (glibc and musl clear close-on-exec when source
  and target are equal, which is how ``pass_fds`` reach the child);
* every inheritable fd other than 0-2 and the kept ones is closed in the child. In C
  with glibc 2.34 or later, that is a ``closefrom`` above the highest kept fd (it
  reaches fds above the soft ``RLIMIT_NOFILE`` too) and a ``close`` for each
  inheritable fd below it, found without listing ``/proc/self/fd``. Otherwise the
  listed inheritable fds each get a ``close`` action, which glibc refuses for an fd at
  or above the soft ``RLIMIT_NOFILE``: that spawn fails with a clear error. Everything
  Python opens is close-on-exec already (PEP 446), so the list is usually empty;
* the signal mask is emptied, and SIGPIPE and SIGXFSZ (which Python ignores) are
  reset to their defaults when ``restore_signals`` is true.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from .. import _native
from .._errors import SpawnError
from .._linux import _pidfd
from .._linux._probes import KERNEL
from ._plan import SETUP_OPTIONS, SpawnPlan
from ._receipt import SpawnReceipt, open_pidfd_into
from ._stdio import ChildStdio

NAME = "posix_spawn"
AVAILABLE = True

_spawn_into = getattr(_native.spawner, "posix_spawn_into", None) if _native.available else None
_closes_from = _spawn_into is not None and _native.spawner.posix_spawn_closes_from()

RECORDS_IN_C = _spawn_into is not None
"""With the extension, the child is written into the receipt in C and the spawn runs in
the calling thread; without it, the pid is a return value, so from the main thread the
spawn runs on the spawner thread."""


REFUSES = SETUP_OPTIONS
"""Every option that needs the child set up between fork and exec."""


def spawn(plan: SpawnPlan, stdio: ChildStdio, receipt: SpawnReceipt) -> None:
    """Start the child of *plan* into *receipt*, or raise :class:`SpawnError`.

    Without the extension, runs only where no signal handler can raise between the
    spawn and the store (see ``_receipt``).
    """
    if _spawn_into is None:
        _spawn_in_python(plan, stdio, receipt)
        return
    code, stage, detail, waitid_pidfd = _spawn_into(
        receipt,
        plan.program,
        plan.argv,
        plan.env,
        stdio.fd_map,
        plan.pass_fds,
        plan.start_new_session,
        -1 if plan.process_group is None else plan.process_group,
        plan.default_signals,
        _pidfd.pidfds_available(),
    )
    if code:
        if stage == "close_fds" and code == errno.EBADF and detail >= 0:
            raise _unclosable(plan, detail)
        raise plan.failure(code, stage)
    if detail:  # pidfd_open failed: a refusal for good, or a shortage for this child
        _pidfd.note_pidfd_refusal(OSError(detail, os.strerror(detail)))
    elif waitid_pidfd >= 0 and KERNEL.waitid_pidfd is None:
        if KERNEL.pidfd_open is None:
            KERNEL.pidfd_open = True
        KERNEL.waitid_pidfd = waitid_pidfd == 1


def _spawn_in_python(plan: SpawnPlan, stdio: ChildStdio, receipt: SpawnReceipt) -> None:
    keep = {0, 1, 2, *plan.kept_fds}
    leaking = [fd for fd in _inheritable_fds() if fd not in keep]
    unclosable = unclosable_fds(leaking)
    if unclosable:
        raise _unclosable(plan, unclosable[0])
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


def _unclosable(plan: SpawnPlan, fd: int) -> SpawnError:
    return plan.failure(
        errno.EBADF,
        "close_fds",
        f"inheritable fd {fd} is above the soft RLIMIT_NOFILE, where "
        "posix_spawn cannot close it in the child; use the native or fork backend, "
        "or make the fd non-inheritable",
    )


def unclosable_fds(fds: list[int]) -> list[int]:
    """Those of *fds* that a spawn file action cannot name: glibc refuses (``EBADF``) any fd
    at or above the soft ``RLIMIT_NOFILE``, which an fd opened before the limit was
    lowered can be."""
    limit = os.sysconf("SC_OPEN_MAX")
    return [fd for fd in fds if limit >= 0 and fd >= limit]


def blocked_by_fds(plan: SpawnPlan) -> bool:
    """Whether an inheritable fd that this backend cannot close would leak into *plan*'s child.

    With ``closefrom`` in C, only fds above the highest kept one are closed that way, and
    only when that one is just below the soft limit (glibc then refuses the
    ``closefrom``) can an fd above it be out of reach: nothing is listed otherwise.
    """
    kept = plan.kept_fds
    if _closes_from:
        if not kept:
            return False
        top = max(kept)
        limit = os.sysconf("SC_OPEN_MAX")
        if limit < 0 or top + 1 < limit:
            return False
        return bool(unclosable_fds([fd for fd in _inheritable_fds() if fd > top]))
    keep = {0, 1, 2, *kept}
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

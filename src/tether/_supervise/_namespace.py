"""``kill="namespace"``: a PID namespace per supervised child, with tether's init as PID 1.

The hazard: a supervising process that is SIGKILLed (the OOM killer, ``kill -9``, a
container runtime's timeout) runs no more code, so nothing of it stops the
grandchildren its children started; ``pdeathsig`` reaches only the direct children,
and a ``setsid`` double-forked daemon escapes every process group. Only the kernel can
act then, and it does for a PID namespace: when a namespace's init dies, every process
in it is SIGKILLed. So each child of a namespace-mode scope gets a namespace of its
own, behind a small C init (``_native/_nsinit.c``, built next to the spawner), which
dies with the supervisor: ``pdeathsig`` (which follows the spawning *thread*, so an
init asked for off the main thread is spawned by tether's long-lived spawner thread)
plus a *lifeline*, a socket whose other end only the supervising process holds, so the
kernel hangs it up however the supervisor dies, even before the init got to run.

A child is started in three steps, each stored at once (``_launch``):

1. :meth:`PidNamespace.start`: the lifeline, and the init spawned with
   ``CLONE_NEWPID`` (it is PID 1 there, its pid out here is the init's handle);
2. the target, spawned by the C spawner *into* that namespace: the spawning thread
   joins it with ``setns`` for its children only, clones, and goes back. The target is
   still our own child, so we reap it and read its real wait status (a signal, a core
   dump, the rusage), ``Process.pid`` is its pid as we see it, and every signal,
   ``stop``, ``restart=`` and status works exactly as in the other modes;
3. :meth:`PidNamespace.attach`: the target's pidfd goes to the init over the lifeline.
   When the target exits, the init exits, and the kernel kills whatever it left.

The init reaps the orphans re-parented to it and forwards to the target the signals
sent to it. Stopping a tree signals the target's process group (as ``kill="group"``
does), then SIGKILLs the init, which takes the whole namespace down; the tree is gone
when the init is reaped, since an init exits only once its namespace is empty.

Creating a PID namespace and joining it need ``CAP_SYS_ADMIN``; without it, or where
the kernel or a seccomp filter refuses, the spawn raises :class:`NamespaceError`
saying why and which mode to use instead. (``CLONE_NEWUSER`` would let an unprivileged
process create the namespace, but not join it from outside, which step 2 needs.)
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket

from typing_extensions import final

from .. import _native
from .._core._process import Process
from .._core._spawning import abort, prepare_plan, start
from .._errors import NamespaceError, SpawnError, StatusUnknownError
from .._spawn import SpawnPlan, make_plan

__all__ = ["INIT_NAME", "PidNamespace", "init_program", "refused"]

INIT_NAME = "_nsinit"
"""The init's file name, next to the spawner extension."""

_INSTEAD = (
    'use kill="cgroup" (every descendant is stopped with the scope, but grandchildren '
    'survive a SIGKILLed supervisor) or kill="group"'
)


def init_program() -> str:
    """The path of the namespace init; :class:`NamespaceError` if it was not built."""
    if not _native.available:
        raise NamespaceError(
            errno.ENOSYS,
            f'kill="namespace" needs tether\'s C extension, and '
            f"{_native.unavailable_reason}; {_INSTEAD}",
        )
    path = os.path.join(os.path.dirname(os.path.abspath(_native.spawner.__file__)), INIT_NAME)
    if not os.access(path, os.X_OK):
        raise NamespaceError(
            errno.ENOENT,
            f'kill="namespace" needs its init program, which was not built here: {path}; '
            f"{_INSTEAD}",
        )
    return path


def refused(code: int | None, what: str) -> NamespaceError:
    """The error for the kernel refusing *what* (creating or joining a namespace) with *code*."""
    if code == errno.EPERM:
        why = "this process lacks CAP_SYS_ADMIN (root), or a seccomp filter forbids it"
    elif code in (errno.ENOSPC, errno.EUSERS):
        why = "the limit on PID namespaces is reached (/proc/sys/user/max_pid_namespaces)"
    elif code in (errno.EINVAL, errno.ENOSYS):
        why = "this kernel cannot (PID namespaces and setns through a pidfd need Linux 5.8)"
    else:
        why = os.strerror(code) if code else "unknown error"
    return NamespaceError(code, f'kill="namespace" could not {what}: {why}; {_INSTEAD}')


@final
class PidNamespace:
    """The PID namespace of one supervised child: its init's handle and our lifeline end."""

    __slots__ = ("init", "lifeline")

    def __init__(self) -> None:
        self.init: Process | None = None
        self.lifeline: socket.socket | None = None

    def start(self) -> None:
        """Create the lifeline and start the init, each stored as soon as it exists."""
        program = init_program()
        self.lifeline, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            fd = theirs.fileno()
            plan = make_plan(  # the init points its stdin and stdout at /dev/null itself
                [program, str(fd)],
                pass_fds=(fd,),
                start_new_session=True,  # the terminal's Ctrl-C is not the init's business
                # Armed before exec, and so spawned by tether's long-lived spawner thread
                # when the caller is another thread: pdeathsig follows the spawning thread.
                pdeathsig=signal.SIGKILL,
            )
            self.init = prepare_plan(plan._replace(new_pid_namespace=True), "native")
            try:
                start(self.init)
            except SpawnError as exc:
                if exc.stage != "fork":
                    raise
                raise refused(exc.errno, "create a PID namespace") from exc

    def plan_for(self, plan: SpawnPlan) -> SpawnPlan:
        """*plan*, to be born into this namespace."""
        init = self.init
        if init is None or init.pidfd is None:
            raise NamespaceError(
                errno.ENOSYS, f'kill="namespace" needs pidfds (Linux 5.3); {_INSTEAD}'
            )
        return plan._replace(pid_namespace=init.pidfd)

    def attach(self, target: Process) -> None:
        """Hand the target's pidfd to the init: from now on, the init exits when it does."""
        pidfd, lifeline = target.pidfd, self.lifeline
        if pidfd is not None and lifeline is not None:
            socket.send_fds(lifeline, [b"t"], [pidfd])

    def kill(self) -> None:
        """SIGKILL the init: the kernel kills every process of the namespace."""
        if self.init is not None:
            self.init.kill()

    def alive(self) -> bool:
        """Whether the init still runs (reaping it once it has exited): an init exits only
        once every other process of its namespace is gone, so False means the tree is."""
        if self.init is None:
            return False
        with contextlib.suppress(StatusUnknownError):
            return self.init.poll() is None
        return False

    def close(self) -> None:
        """Kill and reap the init, then close the lifeline. The target must be reaped
        first: the init's exit waits for every process of its namespace, ours included."""
        if self.init is not None:
            abort(self.init)
        lifeline, self.lifeline = self.lifeline, None
        if lifeline is not None:
            lifeline.close()

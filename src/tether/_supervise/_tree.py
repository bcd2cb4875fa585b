"""One supervised tree: a child plus what its kill mode reaches (its process group or cgroup).

What "a child" covers is the supervisor's ``kill`` mode:

* ``"group"`` (default): the child leads a new process group (``process_group=0``,
  or ``start_new_session=True``) and the whole group is signalled, so grandchildren
  that stayed in it are stopped too, even after the child itself has exited.
* ``"cgroup"``: the child and all its descendants, however they fork or ``setsid``,
  through a cgroup v2 of its own (see ``_cgroup``).
* ``"process"``: only the child.
* ``"namespace"``: the child and all its descendants, through a PID namespace of its
  own whose init tether starts (see ``_namespace``). Signals reach the child's process
  group as in ``"group"`` mode; SIGKILL goes to the init, and the kernel kills the rest,
  also when the supervising process itself is SIGKILLed.

The group outlives its leader, and that is the hazard. A shell that runs
``sleep 60 &`` and exits leaves the sleep in its group after the leader has been
reaped, and from then on the group's *number* may be recycled: ``killpg`` is unsafe.
So right after the spawn the supervisor keeps a ``dup`` of the child's pidfd, which
pins the kernel's ``struct pid``, and signals the group through it with
``PIDFD_SIGNAL_PROCESS_GROUP`` (Linux 6.9): the group is named by that object, not
by a number, and a group with no member left answers ESRCH. Signal 0 therefore
says whether the group has members; but a killed grandchild stays a member as a
zombie until init reaps it, which can take seconds (the init of some VMs reaps
orphans only every two seconds), so once signal 0 finds members the supervisor
looks in ``/proc`` for one that is not a zombie. On older kernels (EINVAL) the group
is signalled with ``killpg`` while the leader is unreaped and not at all afterwards:
grandchildren may then survive a leader that exits first; use ``kill="cgroup"`` for
those.

:func:`prepare_options` gives a supervised child its own group (or cgroup) and
``pdeathsig=SIGKILL`` unless the caller says otherwise, so it dies with a
supervising process that is itself SIGKILLed.
"""

from __future__ import annotations

import os
import signal
from typing import Literal, TypeAlias

from typing_extensions import final

from .. import _native
from .._core._process import Process
from .._core._stop_signal import send_stop_signal
from .._errors import TetherError
from .._linux._cgroup import Cgroup
from .._linux._pidfd import signal_pinned_group
from .._spawn import SpawnOptions
from ._namespace import PidNamespace

__all__ = ["KILL_PATIENCE", "KillMode", "ProcessTree", "prepare_options", "signal_pinned_group"]

KillMode: TypeAlias = Literal["group", "cgroup", "process", "namespace"]
"""What a supervisor's stop reaches (the ``kill`` parameter of :class:`tether.Supervisor`).

* ``"group"``: the child's process group, signalled through a pinned pidfd with
  ``PIDFD_SIGNAL_PROCESS_GROUP``, also after the child's reap. Misses processes that leave
  the group; before Linux 6.9 and without pidfds, the group is signalled (``killpg``) only
  while the child is unreaped.
* ``"cgroup"``: the child and every descendant, through a cgroup v2 ``tether-<pid>-<n>``
  per child (``cgroup.kill`` for SIGKILL). Needs a writable cgroup v2 directory and Linux
  5.14, else :class:`tether.CgroupError`. If the supervising process is SIGKILLed, its
  lifeline (one helper process per supervising process) kills and removes the cgroups.
* ``"process"``: the child alone; misses everything it starts.
* ``"namespace"``: the child and every descendant, in a PID namespace per child behind
  tether's init: the stop signal goes to the child's process group, SIGKILL to the init, and
  the kernel kills the rest, even when the supervising process is SIGKILLed. The child is
  still the supervisor's own child. Needs ``CAP_SYS_ADMIN``, the native spawner and Linux
  5.8, else :class:`tether.NamespaceError`.
"""

_GROUP_MODES = ("group", "namespace")
"""The modes where the child leads a process group that the stop signal reaches."""

KILL_PATIENCE = 10.0
"""Seconds to wait for a tree to be gone after SIGKILL before reporting survivors."""


@final
class ProcessTree:
    """A supervised child plus what its kill mode reaches: its process group or cgroup."""

    __slots__ = ("cgroup", "closed", "group_fd", "mode", "namespace", "process")

    def __init__(
        self,
        process: Process,
        mode: KillMode,
        cgroup: Cgroup | None,
        namespace: PidNamespace | None = None,
    ) -> None:
        self.process = process
        self.mode = mode
        self.cgroup = cgroup
        self.namespace = namespace
        self.group_fd: int | None = None
        self.closed = False

    def pin_group(self) -> None:
        """Keep a dup of the leader's pidfd: it names the group even after the leader's reap."""
        pidfd = self.process.pidfd
        if self.mode in _GROUP_MODES and pidfd is not None:
            if _native.available:  # recorded before control returns: an interrupt cannot leak it
                _native.spawner.dup_into(self, "group_fd", pidfd)
            else:
                self.group_fd = os.dup(pidfd)

    def signal(self, sig: int) -> None:
        """Send *sig* to every process of the tree."""
        if self.mode in _GROUP_MODES:
            self._signal_group(sig)
        else:
            self.process.send_signal(sig)
        if self.cgroup is not None:
            self.cgroup.signal_members(sig, exclude=self.process.pid)

    def _signal_group(self, sig: int) -> None:
        if self.group_fd is None or signal_pinned_group(self.group_fd, sig) is None:
            self.process.send_signal(sig, group=True)  # killpg, only while the leader is unreaped

    def stop(self, sig: int) -> None:
        """Send the stop signal *sig*, then SIGCONT."""
        send_stop_signal(self.signal, sig)

    def kill(self) -> None:
        """SIGKILL the whole tree; harmless when it is gone already."""
        if self.cgroup is not None:
            self.cgroup.kill()
        if self.namespace is not None:
            self.namespace.kill()  # the kernel kills the rest of the namespace
        if self.mode in _GROUP_MODES:
            self._signal_group(signal.SIGKILL)
        self.process.kill()

    def group_has_members(self) -> bool:
        """Whether the pinned group has members, zombies included; False when it is empty
        or cannot be told (no pinned group, or a kernel before 6.9)."""
        return self.group_fd is not None and bool(signal_pinned_group(self.group_fd, 0))

    def finished(self) -> bool:
        """Reaped, and nothing (not even a zombie) left in its group or cgroup."""
        if self.process.status is None:
            return False
        if self.cgroup is not None:
            return not self.cgroup.populated()
        if self.namespace is not None and self.namespace.alive():
            return False
        return self.group_fd is None or not signal_pinned_group(self.group_fd, 0)

    def survivors(self) -> TetherError:
        """The error for a tree that SIGKILL did not end."""
        return TetherError(
            f"processes of the tree of {self.process.pid} ({list(self.process.args)!r}) "
            f"were still alive {KILL_PATIENCE:g} s after SIGKILL"
        )

    def close(self) -> None:
        """Remove the cgroup and let go of the pinned group; the tree must be gone."""
        if self.cgroup is not None:
            self.cgroup.remove()
        if self.namespace is not None:
            self.namespace.close()
        group_fd, self.group_fd = self.group_fd, None  # out of the record, then closed
        if group_fd is not None:
            os.close(group_fd)
        self.closed = True


def prepare_options(mode: KillMode, options: SpawnOptions, cgroup: Cgroup | None) -> SpawnOptions:
    """The spawn options of a supervised child: its own group (or cgroup) and pdeathsig."""
    prepared: SpawnOptions = {**options}
    prepared.setdefault("pdeathsig", signal.SIGKILL)
    if mode != "process" and not prepared.get("start_new_session", False):
        group = prepared.get("process_group")
        if group is None:
            prepared["process_group"] = 0
        elif group != 0 and mode in _GROUP_MODES:
            raise ValueError(
                f'kill="{mode}" needs the child to lead its own process group, but '
                f"process_group={group} joins another; pass process_group=0 or "
                'start_new_session=True, or use kill="process"'
            )
    if cgroup is not None:
        if prepared.get("cgroup") is not None:
            raise ValueError('kill="cgroup" puts each child in a cgroup of its own: drop cgroup=')
        prepared["cgroup"] = cgroup.path
    return prepared

"""Starting one incarnation of a supervised child, so that an interrupt never loses it.

An incarnation is made of up to three things, created one after the other: its
cgroup (``kill="cgroup"``) or PID namespace (``kill="namespace"``: its init), its
child, and the :class:`~tether._supervise._tree.ProcessTree` that pins its group. A
signal handler may raise between any two of them (Ctrl-C in a
``with Supervisor():`` body that spawns in a loop), and a thing that was only a return
value when it struck would be lost to the scope's shutdown. So a :class:`Launch` is made
first, empty, and each step stores what it made into it at once; the child itself is
made through a prepared handle (``_core._spawning``), which holds it from birth. The
readiness channel (``ready=``) is made first of all, and stored likewise. Whatever
fails or is interrupted, :meth:`Launch.undo` takes apart what exists: the tree if there
is one (kill, reap, close), else the child, then the cgroup or the namespace.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from typing_extensions import final

from .._core._pipes import close_pipes
from .._core._process import Process
from .._core._spawning import abort, prepare_plan, start
from .._errors import SpawnError
from .._linux._cgroup import Cgroup
from .._spawn import SpawnOptions, StrOrBytesPath, make_plan
from ._namespace import PidNamespace, refused
from ._readiness import Readiness, ReadyMode
from ._sentinel import LIFELINE
from ._shutdown import abandon
from ._tree import KillMode, ProcessTree, prepare_options

__all__ = ["Launch"]


@final
class Launch:
    """What exists so far of one incarnation being started."""

    __slots__ = ("cgroup", "namespace", "owner", "process", "readiness", "tree")

    def __init__(self) -> None:
        self.cgroup: Cgroup | None = None
        self.namespace: PidNamespace | None = None
        self.process: Process | None = None
        self.tree: ProcessTree | None = None
        self.readiness: Readiness | None = None
        self.owner = threading.get_ident()
        """The thread starting it: only that thread may undo it."""

    def run(
        self,
        mode: KillMode,
        cgroup_parent: str | None,
        argv: Iterable[StrOrBytesPath],
        options: SpawnOptions,
        ready: ReadyMode | None = None,
    ) -> ProcessTree:
        """Create the cgroup or namespace (in those modes) and the readiness channel (with
        *ready*), start the child, pin its group."""
        if ready is not None:
            self.readiness = Readiness(ready)
            self.readiness.open()
            options = self.readiness.apply(options)
        if mode == "cgroup":
            assert cgroup_parent is not None, "resolved on entering the scope"
            self.cgroup = Cgroup.create(cgroup_parent, LIFELINE)
        prepared = prepare_options(mode, options, self.cgroup)
        plan = make_plan(argv, **prepared)
        if mode == "namespace":
            self.namespace = PidNamespace()
            self.namespace.start()
            plan = self.namespace.plan_for(plan)
        if self.readiness is not None:
            plan = plan._replace(extra_fds=self.readiness.extra_fds())
        self.process = prepare_plan(plan, prepared.get("backend", "auto"))
        try:
            start(self.process)
        except SpawnError:
            raise
        except OSError as exc:  # setns refused: the child was never made
            if self.namespace is None:
                raise
            raise refused(exc.errno, "join the PID namespace of its init") from exc
        if self.readiness is not None:
            self.process._readiness = self.readiness
            self.readiness.started(self.process.pid)
        if self.namespace is not None:
            self.namespace.attach(self.process)
        self.tree = ProcessTree(self.process, mode, self.cgroup, self.namespace)
        self.tree.pin_group()
        return self.tree

    def undo(self, error: BaseException) -> None:
        """Kill, reap and remove what exists; notes on *error* say what failed doing so."""
        tree, process, cgroup = self.tree, self.process, self.cgroup
        if self.readiness is not None:
            self.readiness.close()
        if tree is not None:
            abandon(tree, error)
            close_pipes(tree.process)
            return
        if process is not None:
            abort(process)
        if cgroup is not None:
            cgroup.remove()
        if self.namespace is not None:
            self.namespace.close()  # after the child: the init waits for it to be reaped

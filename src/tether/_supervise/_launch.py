"""Starting one incarnation of a supervised child, so that an interrupt never loses it.

An incarnation is made of up to three things, created one after the other: its
cgroup (``kill="cgroup"``), its child, and the :class:`~tether._supervise._tree.ProcessTree`
that pins its group. A signal handler may raise between any two of them (Ctrl-C in a
``with Supervisor():`` body that spawns in a loop), and a thing that was only a return
value when it struck would be lost to the scope's shutdown. So a :class:`Launch` is made
first, empty, and each step stores what it made into it at once; the child itself is
made through a prepared handle (``_core._spawning``), which holds it from birth. Whatever
fails or is interrupted, :meth:`Launch.undo` takes apart what exists: the tree if there
is one (kill, reap, close), else the child and the cgroup.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from typing_extensions import final

from .._core._pipes import close_pipes
from .._core._process import Process
from .._core._spawning import abort, prepare, start
from .._linux._cgroup import Cgroup
from .._spawn import SpawnOptions, StrOrBytesPath
from ._sentinel import LIFELINE
from ._shutdown import abandon
from ._tree import KillMode, ProcessTree, prepare_options

__all__ = ["Launch"]


@final
class Launch:
    """What exists so far of one incarnation being started."""

    __slots__ = ("cgroup", "owner", "process", "tree")

    def __init__(self) -> None:
        self.cgroup: Cgroup | None = None
        self.process: Process | None = None
        self.tree: ProcessTree | None = None
        self.owner = threading.get_ident()
        """The thread starting it: only that thread may undo it."""

    def run(
        self,
        mode: KillMode,
        cgroup_parent: str | None,
        argv: Iterable[StrOrBytesPath],
        options: SpawnOptions,
    ) -> ProcessTree:
        """Create the cgroup (in cgroup mode), start the child, pin its group."""
        if mode == "cgroup":
            assert cgroup_parent is not None, "resolved on entering the scope"
            self.cgroup = Cgroup.create(cgroup_parent, LIFELINE)
        self.process = prepare(argv, **prepare_options(mode, options, self.cgroup))
        start(self.process)
        self.tree = ProcessTree(self.process, mode, self.cgroup)
        self.tree.pin_group()
        return self.tree

    def undo(self, error: BaseException) -> None:
        """Kill, reap and remove what exists; notes on *error* say what failed doing so."""
        tree, process, cgroup = self.tree, self.process, self.cgroup
        if tree is not None:
            abandon(tree, error)
            close_pipes(tree.process)
            return
        if process is not None:
            abort(process)
        if cgroup is not None:
            cgroup.remove()

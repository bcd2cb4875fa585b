"""The spawn engine: plan the command, choose a backend, start the child.

Each backend module offers ``NAME``, ``ineligible_reason(plan)`` and
``spawn(plan, stdio) -> pid``. ``"auto"`` takes the first eligible backend in
:data:`AUTO_ORDER`, fastest first; naming a backend that cannot honour the plan is
a ``ValueError`` that says which option is in the way.
"""

from __future__ import annotations

from types import ModuleType

from . import _fork, _posix_spawn
from ._plan import DEVNULL, PIPE, STDOUT, SpawnPlan, StdioOption, StrOrBytesPath, make_plan
from ._stdio import ChildStdio, prepare_stdio

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "ChildStdio",
    "SpawnPlan",
    "StdioOption",
    "StrOrBytesPath",
    "choose_backend",
    "make_plan",
    "start_child",
]

BACKENDS: dict[str, ModuleType] = {module.NAME: module for module in (_posix_spawn, _fork)}
AUTO_ORDER: tuple[str, ...] = (_posix_spawn.NAME, _fork.NAME)


def choose_backend(plan: SpawnPlan, requested: str) -> ModuleType:
    """The backend module that will run *plan*: the one *requested*, or the first that fits."""
    if requested == "auto":
        for name in AUTO_ORDER:
            if BACKENDS[name].ineligible_reason(plan) is None:
                return BACKENDS[name]
        raise AssertionError("the fork backend accepts every plan")
    backend = BACKENDS.get(requested)
    if backend is None:
        choices = ", ".join(["auto", *BACKENDS])
        raise ValueError(f"unknown backend {requested!r}; choose one of {choices}")
    reason = backend.ineligible_reason(plan)
    if reason is not None:
        raise ValueError(f"the {requested} backend cannot honour the {reason} option")
    return backend


def start_child(plan: SpawnPlan, requested: str) -> tuple[int, str, ChildStdio]:
    """Start *plan*; return the pid, the backend that ran, and our ends of its pipes.

    Every fd made for the spawn is closed again when it fails.
    """
    backend = choose_backend(plan, requested)
    stdio = prepare_stdio(plan)
    try:
        pid: int = backend.spawn(plan, stdio)
    except BaseException:
        stdio.close_all()
        raise
    stdio.close_child_only()
    return pid, backend.NAME, stdio

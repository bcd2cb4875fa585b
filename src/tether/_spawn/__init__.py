"""The spawn engine: plan the command, choose a backend, start the child.

Each backend module offers ``NAME``, ``AVAILABLE``, ``ineligible_reason(plan)`` and
``spawn(plan, stdio) -> (pid, pidfd or None)``. ``"auto"`` takes the first eligible
backend in :data:`AUTO_ORDER`, fastest first; naming a backend that cannot honour
the plan is a ``ValueError`` that says which option is in the way.

A child with ``pdeathsig`` is armed against the *thread* that spawns it, so one
requested from any thread but the main thread is started by tether's long-lived
spawner thread instead (see ``_spawner_thread``).
"""

from __future__ import annotations

import threading
from types import ModuleType

from . import _fork, _native, _posix_spawn
from ._plan import (
    DEVNULL,
    PIPE,
    STDOUT,
    SpawnOptions,
    SpawnPlan,
    StdioOption,
    StrOrBytesPath,
    make_plan,
)
from ._spawner_thread import run_in_spawner_thread
from ._stdio import ChildStdio, prepare_stdio

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "ChildStdio",
    "SpawnOptions",
    "SpawnPlan",
    "StdioOption",
    "StrOrBytesPath",
    "choose_backend",
    "make_plan",
    "start_child",
]

BACKENDS: dict[str, ModuleType] = {module.NAME: module for module in (_native, _posix_spawn, _fork)}
AUTO_ORDER: tuple[str, ...] = tuple(
    module.NAME for module in (_native, _posix_spawn, _fork) if module.AVAILABLE
)


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
    if not backend.AVAILABLE:
        raise ValueError(f"the {requested} backend was not built on this platform")
    reason = backend.ineligible_reason(plan)
    if reason is not None:
        raise ValueError(f"the {requested} backend cannot honour the {reason} option")
    return backend


def start_child(plan: SpawnPlan, requested: str) -> tuple[int, int | None, str, ChildStdio]:
    """Start *plan*; return the pid, its pidfd if the backend made one, the backend that
    ran, and our ends of the child's pipes. Every fd made for the spawn is closed again
    when it fails.
    """
    backend = choose_backend(plan, requested)
    stdio = prepare_stdio(plan)
    try:
        if plan.pdeathsig and threading.current_thread() is not threading.main_thread():
            pid, pidfd = run_in_spawner_thread(backend.spawn, plan, stdio)
        else:
            pid, pidfd = backend.spawn(plan, stdio)
    except BaseException:
        stdio.close_all()
        raise
    stdio.close_child_only()
    return pid, pidfd, backend.NAME, stdio

"""The spawn engine: plan the command, choose a backend, start the child.

Each backend module offers ``NAME``, ``AVAILABLE``, ``REFUSES`` (the options it cannot honour) and
``spawn(plan, stdio) -> (pid, pidfd or None)``. ``"auto"`` takes the first eligible
backend in :data:`AUTO_ORDER`, fastest first; naming a backend that cannot honour
the plan is a ``ValueError`` that says which option is in the way.

A child with ``pdeathsig`` is armed against the *thread* that spawns it, so one
requested from any thread but the main thread is started by tether's long-lived
spawner thread instead (see ``_spawner_thread``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import ModuleType

from typing_extensions import final

from .. import _native as _extension
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
    "Backend",
    "ChildStdio",
    "SpawnOptions",
    "SpawnPlan",
    "StdioOption",
    "StrOrBytesPath",
    "backends",
    "choose_backend",
    "make_plan",
    "start_child",
]

BACKENDS: dict[str, ModuleType] = {module.NAME: module for module in (_native, _posix_spawn, _fork)}
AUTO_ORDER: tuple[str, ...] = tuple(
    module.NAME for module in (_native, _posix_spawn, _fork) if module.AVAILABLE
)


@final
@dataclass(frozen=True, slots=True)
class Backend:
    """What :func:`tether.backends` reports about one spawn backend."""

    name: str
    """``"native"``, ``"posix_spawn"`` or ``"fork"``: the value of ``spawn(backend=...)``."""
    available: bool
    """Whether this process can use it at all."""
    reason: str | None
    """Why it is not available (None when it is)."""
    auto_rank: int | None
    """Its place in the order ``backend="auto"`` tries (0 first); None when unavailable."""
    pidfd_at_birth: bool | None
    """Whether the kernel hands over the child's pidfd atomically with the spawn
    (``clone(CLONE_PIDFD)``), rather than tether opening it right after; None until
    the first spawn has tried."""
    refuses: tuple[str, ...]
    """The spawn options this backend cannot honour (``auto`` then moves on)."""


def backends() -> tuple[Backend, ...]:
    """Every spawn backend, in the order ``backend="auto"`` tries them, with what it can do.

    ``native`` is tether's C spawner (absent where the extension could not be built);
    ``posix_spawn`` and ``fork`` are always there. The fastest available backend that
    accepts a spawn's options runs it.
    """
    found: list[Backend] = []
    for name, module in BACKENDS.items():
        rank = AUTO_ORDER.index(name) if name in AUTO_ORDER else None
        if name == "native":
            reason = _extension.unavailable_reason
            at_birth = _extension.clone_pidfd_used()
        else:
            reason, at_birth = None, False
        found.append(Backend(name, module.AVAILABLE, reason, rank, at_birth, module.REFUSES))
    return tuple(sorted(found, key=lambda b: len(BACKENDS) if b.auto_rank is None else b.auto_rank))


def ineligible_reason(backend: ModuleType, plan: SpawnPlan) -> str | None:
    """The first option of *plan* that *backend* cannot honour, or None when it can run it."""
    return next((name for name in plan.needs() if name in backend.REFUSES), None)


def choose_backend(plan: SpawnPlan, requested: str) -> ModuleType:
    """The backend module that will run *plan*: the one *requested*, or the first that fits."""
    if requested == "auto":
        for name in AUTO_ORDER:
            if ineligible_reason(BACKENDS[name], plan) is None:
                return BACKENDS[name]
        raise AssertionError("the fork backend accepts every plan")
    backend = BACKENDS.get(requested)
    if backend is None:
        choices = ", ".join(["auto", *BACKENDS])
        raise ValueError(f"unknown backend {requested!r}; choose one of {choices}")
    if not backend.AVAILABLE:
        raise ValueError(f"the {requested} backend was not built on this platform")
    reason = ineligible_reason(backend, plan)
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

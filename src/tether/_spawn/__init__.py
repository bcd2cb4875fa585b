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
    PLAIN_OPTIONS,
    STDOUT,
    SpawnOptions,
    SpawnPlan,
    StdioOption,
    StrOrBytesPath,
    make_plan,
)
from ._receipt import SpawnReceipt, undo
from ._spawner_thread import Job, run_in_spawner_thread
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
    "SpawnReceipt",
    "StdioOption",
    "StrOrBytesPath",
    "backends",
    "choose_backend",
    "make_plan",
    "start_child",
    "undo",
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
    in_namespace = plan.pid_namespace is not None or plan.new_pid_namespace
    if in_namespace and not getattr(backend, "PID_NAMESPACES", False):
        return 'kill="namespace"'  # only the C spawner can clone into a PID namespace
    return next((name for name in plan.needs() if name in backend.REFUSES), None)


def choose_backend(plan: SpawnPlan, requested: str) -> ModuleType:
    """The backend module that will run *plan*: the one *requested*, or the first that fits."""
    if requested == "auto" and plan.preexec_fn is None and AUTO_ORDER[0] == _native.NAME:
        return _native  # it refuses nothing else (REFUSES): the one check a plain spawn makes
    if requested == "auto":
        for name in AUTO_ORDER:
            candidate = BACKENDS[name]
            if ineligible_reason(candidate, plan) is not None:
                continue
            if candidate is _posix_spawn and _posix_spawn.blocked_by_fds(plan):
                continue  # it would fail: an inheritable fd it cannot close
            return candidate
        raise AssertionError("the fork backend accepts every plan")
    backend = BACKENDS.get(requested)
    if backend is None:
        choices = ", ".join(["auto", *BACKENDS])
        raise ValueError(f"unknown backend {requested!r}; choose one of {choices}")
    if not backend.AVAILABLE:
        raise ValueError(f"the {requested} backend was not built on this platform")
    if plan.preexec_fn is None and plan[4:] == PLAIN_OPTIONS:
        return backend  # a plan that asks for nothing: no backend refuses it
    reason = ineligible_reason(backend, plan)
    if reason is not None:
        raise ValueError(f"the {requested} backend cannot honour the {reason} option")
    return backend


def start_child(
    plan: SpawnPlan, backend: ModuleType, receipt: SpawnReceipt, stdio: ChildStdio
) -> None:
    """Start *plan* with *backend* (from :func:`choose_backend`).

    The child is written into *receipt* and the spawn's fds into *stdio*, both made by
    the caller before the call: on any failure, the caller undoes them with
    :func:`undo`, which is how an interrupt at any point leaves nothing behind.
    """
    prepare_stdio(plan, stdio)
    if (plan.pdeathsig or not backend.RECORDS_IN_C) and _needs_spawner_thread(plan, backend):
        job = Job(backend.spawn, (plan, stdio, receipt))
        receipt.job = job
        run_in_spawner_thread(job)
    else:
        backend.spawn(plan, stdio, receipt)
    stdio.close_child_only()


def _needs_spawner_thread(plan: SpawnPlan, backend: ModuleType) -> bool:
    in_main = threading.current_thread() is threading.main_thread()
    return bool((plan.pdeathsig and not in_main) or (in_main and not backend.RECORDS_IN_C))

"""``tether.spawn``: start a child so that no exception, wherever it lands, loses it.

A signal handler may raise between any two bytecodes (Ctrl-C, an alarm,
``pytest-timeout``), and after a spawn that is the one moment that matters: a child
whose pid was only a return value when the exception struck runs on, tracked by
nobody. So the handle is made first (:func:`prepare`), holding an empty receipt and
an empty record of the spawn's fds; the backend writes the child and the fds into
them where no handler can run (``_spawn._receipt``); and only then does the handle
take the child over (:func:`start`). If anything fails or is interrupted before the
handle is returned, :func:`abort` kills and reaps the child and closes every fd,
through the receipt before the takeover and through the handle after it.

tether's own callers that keep the handle (``run``, ``open_process``, the
supervisors) call :func:`prepare` outside their ``try`` and :func:`start` inside it,
so their cleanup reaches a child even when the exception lands as ``start``
returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from typing_extensions import Unpack

from .._errors import StatusUnknownError
from .._spawn import (
    SpawnOptions,
    SpawnPlan,
    StrOrBytesPath,
    choose_backend,
    make_plan,
    start_child,
    undo,
)
from ._pipes import close_pipes
from ._process import Process

__all__ = ["abort", "prepare", "prepare_plan", "spawn", "start"]

_ABORT_ATTEMPTS = 100


def prepare(argv: Iterable[StrOrBytesPath], **options: Unpack[SpawnOptions]) -> Process:
    """Check every option and choose the backend; return the handle, with no child yet.

    Raises ``ValueError``/``TypeError`` for bad input, and :class:`tether.SpawnError`
    for a program that cannot be found, before anything is created.
    """
    return prepare_plan(make_plan(argv, **options), options.get("backend", "auto"))


def prepare_plan(plan: SpawnPlan, backend: str = "auto") -> Process:
    """:func:`prepare` for a plan made (and amended) by the caller: ``kill="namespace"``
    adds where the child is to be born."""
    return Process._unstarted(plan, choose_backend(plan, backend))


def start(process: Process) -> None:
    """Start the child of a :func:`prepare`-d handle; call :func:`abort` if this raises."""
    plan, backend = process._plan, process._backend
    if plan is None or backend is None:
        raise RuntimeError("this handle was started already")
    start_child(plan, backend, process._receipt, process._stdio)
    process._take_child()


def abort(process: Process, grace: float = 0.0) -> None:
    """Undo a spawn that failed or was interrupted, or end the child of a caller that
    failed: stop the child (if it exists) with *grace* seconds of patience (0: SIGKILL at
    once), reap it, and close every fd of the spawn. Finishes even if interrupted again
    (an interrupt then cuts the patience short)."""
    if not process._started:
        undo(process._receipt, process._stdio)  # through the receipt: no handle owns it
    else:
        for attempt in range(_ABORT_ATTEMPTS):
            try:
                with contextlib.suppress(StatusUnknownError):
                    if grace > 0:
                        process.stop(grace)
                    else:
                        process.kill()
                        process.wait()
                break
            except BaseException:
                grace = 0.0
                if attempt == _ABORT_ATTEMPTS - 1:
                    raise
    close_pipes(process)


def spawn(argv: Iterable[StrOrBytesPath], **options: Unpack[SpawnOptions]) -> Process:
    """Start *argv* as a child process and return its :class:`Process` handle.

    :param argv: The program and its arguments: a non-empty sequence of ``str``, ``bytes``
        or path-like objects, never a single string.
    :param options: The keyword options, each described with its type and default in
        :class:`SpawnOptions`: ``backend``, ``executable``, ``env``, ``cwd``, ``stdin``,
        ``stdout``, ``stderr``, ``pass_fds``, ``start_new_session``, ``process_group``,
        ``umask``, ``preexec_fn``, ``restore_signals``, ``limits``, ``pdeathsig``,
        ``no_new_privs``, ``user``, ``group``, ``extra_groups``, ``cgroup``.
    :raises TypeError: ``argv`` is a string; a stdio value, a ``pass_fds`` entry,
        ``preexec_fn``, ``limits``, ``user``, ``group`` or ``extra_groups`` has the wrong
        type; an unknown option is given.
    :raises ValueError: an empty argv or program name, a NUL byte, a bad environment name,
        ``STDOUT`` for ``stdin`` or ``stdout``, a negative fd, ``start_new_session`` with
        ``process_group``, a negative ``process_group``, a ``umask`` out of range, ``limits``
        that :meth:`tether.limits.Limits.check` refuses, a ``pdeathsig`` that is not a signal,
        an unknown user or group or an id out of range, an unknown backend, one not built
        here, or one that cannot honour the options.
    :raises SpawnError: the program cannot be found or run, an fd is not open, the ``cgroup``
        has no ``cgroup.procs`` we can open, or a setup step in the child fails
        (:attr:`SpawnError.stage` says which).
    :raises OSError: the parent runs out of resources while it prepares the spawn (for
        example ``EMFILE`` when it creates pipes).

    Options are validated before anything is created, and a failed spawn leaves no process,
    zombie or fd behind; neither does an exception (``KeyboardInterrupt``, ...) that arrives
    while the child is being started.
    """
    process = prepare(argv, **options)
    try:
        start(process)
        return process
    except BaseException:
        abort(process)
        raise

"""The long-lived thread that spawns children armed with ``pdeathsig``.

Linux delivers ``PR_SET_PDEATHSIG`` when the *thread* that created the child exits,
not when the process does. A worker thread that spawns a child with
``pdeathsig=SIGKILL`` and then returns to its pool would kill that child the moment
the worker is retired. So such spawns, when asked for from any thread but the main
one, are handed to one daemon thread that tether owns and that lives as long as the
process; the caller blocks until the spawn is done. The thread is started on first
use and started afresh in a child created by ``os.fork``.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

THREAD_NAME = "tether-spawner"

_lock = threading.Lock()
_jobs: queue.SimpleQueue[_Job] | None = None
_owner_pid = -1


class _Job:
    __slots__ = ("args", "done", "error", "function", "result")

    def __init__(self, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.function = function
        self.args = args
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


def run_in_spawner_thread(function: Callable[..., T], *args: Any) -> T:
    """Run ``function(*args)`` on the spawner thread and return (or raise) its outcome."""
    job = _Job(function, args)
    _job_queue().put(job)
    job.done.wait()
    if job.error is not None:
        raise job.error
    result: T = job.result
    return result


def _job_queue() -> queue.SimpleQueue[_Job]:
    global _jobs, _owner_pid
    with _lock:
        if _jobs is None or _owner_pid != os.getpid():
            _jobs = queue.SimpleQueue()
            _owner_pid = os.getpid()
            threading.Thread(target=_serve, args=(_jobs,), name=THREAD_NAME, daemon=True).start()
        return _jobs


def _serve(jobs: queue.SimpleQueue[_Job]) -> None:
    while True:
        job = jobs.get()
        try:
            job.result = job.function(*job.args)
        except BaseException as exc:  # handed to the caller, who re-raises it
            job.error = exc
        job.done.set()

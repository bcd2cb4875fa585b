"""The long-lived thread that runs the spawns no Python signal handler may interrupt.

Two kinds of spawn are handed to this one daemon thread, which tether owns and which
lives as long as the process:

* Spawns from the main thread on the pure-Python backends (``os.posix_spawn``,
  ``os.fork``). Their child is a return value, and in the main thread a signal handler
  may raise (``KeyboardInterrupt``) between the call and the store that records the
  child, which would lose it. CPython runs signal handlers in the main thread only, so
  here the child always reaches the caller's receipt (see ``_receipt``).
* Spawns with ``pdeathsig`` from any thread but the main one. Linux delivers
  ``PR_SET_PDEATHSIG`` when the *thread* that created the child exits, not when the
  process does: a worker thread that spawns with ``pdeathsig=SIGKILL`` and then goes
  back to its pool would kill the child the moment the worker is retired.

The caller blocks until the job is done. If it is interrupted while waiting, the job is
not: the caller leaves it (:meth:`Job.settle_or_leave`) with the undoing to do, and
this thread kills and reaps the child and closes the spawn's fds as soon as the spawn
returns, so nothing is lost either way. The thread is started on first use, and
started afresh in a child created by ``os.fork``.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
from collections.abc import Callable
from typing import Any

THREAD_NAME = "tether-spawner"
_TICK = 0.05

_logger = logging.getLogger("tether")

_lock = threading.Lock()
_jobs: queue.SimpleQueue[Job] | None = None
_owner_pid = -1


class Job:
    """One call to run on the spawner thread, and who undoes it if its caller left."""

    __slots__ = ("args", "done", "error", "finished", "function", "leftover", "lock")

    def __init__(self, function: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.function = function
        self.args = args
        self.lock = threading.Lock()
        # Released by the spawner thread when the job is done. A bare lock, not an Event:
        # an exception raised by a signal handler inside Event.wait (Python code) can
        # leave the Event's own lock held, and the spawner thread stuck on it for ever.
        self.done = threading.Lock()
        self.done.acquire()
        self.finished = False
        self.error: BaseException | None = None
        self.leftover: Callable[[], object] | None = None

    def settle_or_leave(self, undo: Callable[[], object]) -> bool:
        """True if the job has finished (the caller undoes what it did); otherwise leave
        *undo* for the spawner thread to run when it finishes, and return False."""
        with self.lock:
            if self.leftover is not None:
                return False  # left already: the spawner thread undoes it (or has)
            if self.finished:
                return True
            self.leftover = undo
            return False


def run_in_spawner_thread(job: Job) -> None:
    """Run *job* on the spawner thread; return when it is done, or raise its error."""
    _job_queue().put(job)
    # A timed wait: a signal delivered to another thread still gets its handler run
    # here, in the main thread, within a tick (a thread with a signal pending that only
    # the main thread may handle can otherwise spin without progress, under a tracer).
    while not job.done.acquire(timeout=_TICK):
        pass
    if job.error is not None:
        raise job.error


def _job_queue() -> queue.SimpleQueue[Job]:
    global _jobs, _owner_pid
    with _lock:
        if _jobs is None or _owner_pid != os.getpid():
            jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
            # Started first: a thread that cannot start leaves no queue that nobody serves.
            threading.Thread(target=_serve, args=(jobs,), name=THREAD_NAME, daemon=True).start()
            _jobs, _owner_pid = jobs, os.getpid()
        return _jobs


def _forget_after_fork() -> None:
    global _lock, _jobs
    _lock = threading.Lock()  # another thread of the parent may have held it at the fork
    _jobs = None


os.register_at_fork(after_in_child=_forget_after_fork)


def _serve(jobs: queue.SimpleQueue[Job]) -> None:
    # Signals are for the program's threads, not for this one: blocked here, the kernel
    # delivers them to a thread whose handler can act (in CPython, the main thread).
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    while True:
        job = jobs.get()
        with job.lock:
            left = job.leftover is not None
        if not left:  # a job its caller left before it started is not run at all
            try:
                job.function(*job.args)
            except BaseException as exc:  # handed to the caller, who re-raises it
                job.error = exc
        with job.lock:
            job.finished = True
            leftover = job.leftover
        if leftover is not None:  # the caller was interrupted and left: nothing may stay
            try:
                leftover()
            except BaseException:  # nobody to hand it to any more
                _logger.exception("tether: could not undo a spawn its caller abandoned")
        job.done.release()

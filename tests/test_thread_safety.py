"""Thread safety of the bookkeeping: garbage collection under a lock, waiters at scope end,
locks inherited through ``os.fork``, a spawn undone from two threads.

The deadlock cases run in a child interpreter: a failure there leaves a lock held for
good, which must not take the test process with it.
"""

from __future__ import annotations

import gc
import sys
import textwrap
import threading

import pytest

import tether
from tether._spawn import _posix_spawn, _receipt, _spawner_thread, make_plan
from tether._spawn._receipt import SpawnReceipt, undo
from tether._spawn._stdio import ChildStdio, prepare_stdio

PY = sys.executable
PATIENCE = 30


def run_script(source: str) -> tether.Completed:
    """Run *source* in a fresh interpreter; a hang is a ``TimeoutExpired`` (and killed)."""
    return tether.run([PY, "-c", textwrap.dedent(source)], capture=True, timeout=PATIENCE)


COLLECTING_PRELUDE = """
    import gc, sys, threading, warnings, weakref
    import tether
    from tether._core import _registry
    from tether._core._reaper import REAPER
    warnings.simplefilter("ignore", ResourceWarning)
    gc.disable()  # only the collections below run

    def drop_in_a_cycle():
        garbage = tether.spawn(["sleep", "60"])  # running: its __del__ hands it over
        cycle = [garbage]
        cycle.append(cycle)
"""


def test_a_collection_inside_track_untracks_cleanly() -> None:
    """The collector may run a dropped handle's ``__del__`` (which untracks it) in the
    middle of ``track``: neither a deadlock nor a lost entry."""
    done = run_script(
        COLLECTING_PRELUDE
        + """
    class CollectingDict(dict):
        def __setitem__(self, key, value):
            gc.collect()  # as an allocation in track may
            super().__setitem__(key, value)

    _registry._live = CollectingDict(_registry._live)
    drop_in_a_cycle()
    kept = tether.spawn(["sleep", "60"])  # track -> collection -> __del__ -> untrack
    assert _registry.live() == [kept], _registry.live()
    kept.kill()
    kept.wait()
    assert _registry.live() == []
    REAPER.kill_all(patience=10)
    print("done")
    """
    )
    assert done.stdout == b"done\n", done.stderr


def test_a_handle_that_dies_tracked_leaves_no_entry() -> None:
    from tether._core import _registry

    class Stub:
        pid = 1

        def kill(self) -> None:
            """Nothing to kill."""

        def wait(self, timeout: float | None = None) -> object:
            return None

    stub = Stub()
    _registry.track(stub)
    assert stub in _registry.live()
    before = len(_registry._live)
    del stub
    gc.collect()
    assert len(_registry._live) == before - 1


def test_a_collection_under_the_reapers_lock_does_not_deadlock() -> None:
    done = run_script(
        COLLECTING_PRELUDE
        + """
    class CollectingDict(dict):
        def __setitem__(self, key, value):
            gc.collect()  # as an allocation inside REAPER.take may
            super().__setitem__(key, value)

    REAPER._by_pidfd = CollectingDict(REAPER._by_pidfd)
    drop_in_a_cycle()
    kept = tether.spawn(["sleep", "60"])
    kept.detach()  # take -> collection -> __del__ -> take, under the same lock
    REAPER.kill_all(patience=10)
    import os, signal
    os.kill(kept.pid, signal.SIGKILL)
    print("done")
    """
    )
    assert done.stdout == b"done\n", done.stderr


def test_a_forked_child_can_use_the_spawner_thread_whatever_the_parent_held() -> None:
    done = run_script(
        """
    import os, threading
    import tether
    from tether._spawn import _spawner_thread

    held, forked = threading.Event(), threading.Event()
    def holder():
        with _spawner_thread._lock:  # as a thread inside _job_queue at the fork
            held.set()
            forked.wait()
    thread = threading.Thread(target=holder)
    thread.start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        code = tether.spawn(["true"], backend="posix_spawn").wait().returncode
        os._exit(code)
    forked.set()
    thread.join()
    print(os.waitpid(pid, 0)[1])
    """
    )
    assert done.stdout == b"0\n", done.stderr


def test_waiters_in_other_threads_wake_when_the_scope_ends() -> None:
    results: dict[str, object] = {}

    def waiter(name: str, call: object) -> None:
        try:
            results[name] = call()  # type: ignore[operator]
        except BaseException as exc:
            results[name] = exc

    with tether.Supervisor(grace=5) as sup:
        sup.spawn(["sleep", "60"], restart="always")  # the watcher thread exists
        sup.spawn(["sleep", "60"])
        threads = [
            threading.Thread(target=waiter, args=("all", sup.wait_all)),
            threading.Thread(target=waiter, args=("any", sup.wait_any)),
        ]
        for thread in threads:
            thread.start()
        parked = sup._changed
        with parked:  # both parked on the scope's condition before it ends
            assert parked.wait_for(lambda: len(parked._waiters) == 2, PATIENCE)  # type: ignore[attr-defined]
    for thread in threads:
        thread.join(PATIENCE)
    assert not any(thread.is_alive() for thread in threads), "a waiter was never woken"
    assert set(results) == {"all", "any"}


def test_a_spawn_left_to_the_spawner_thread_is_undone_once() -> None:
    plan = make_plan(["sleep", "60"])
    receipt, stdio = SpawnReceipt(), ChildStdio()
    prepare_stdio(plan, stdio)
    gate, inside, release = threading.Event(), threading.Event(), threading.Event()
    entries: list[str] = []
    real_undo_now = _receipt._undo_now

    def slow_spawn(plan: object, stdio: ChildStdio, receipt: SpawnReceipt) -> None:
        gate.wait()  # the caller gives up meanwhile
        _posix_spawn.spawn(plan, stdio, receipt)  # type: ignore[arg-type]

    def counting_undo_now(receipt: SpawnReceipt, stdio: ChildStdio) -> None:
        entries.append(threading.current_thread().name)
        if len(entries) == 1:
            inside.set()
            release.wait(PATIENCE)
        real_undo_now(receipt, stdio)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_receipt, "_undo_now", counting_undo_now)
        job = _spawner_thread.Job(slow_spawn, (plan, stdio, receipt))
        receipt.job = job
        _spawner_thread._job_queue().put(job)  # what run_in_spawner_thread does, unwaited
        undo(receipt, stdio)  # the interrupted caller leaves the job to the spawner thread
        gate.set()
        assert inside.wait(PATIENCE)
        undo(receipt, stdio)  # a second undo (the dropped handle's __del__) while it runs
        release.set()
        assert job.done.acquire(timeout=PATIENCE)
    assert entries == [_spawner_thread.THREAD_NAME]


def test_a_forked_child_leaving_a_scope_leaves_the_parents_children_alone() -> None:
    done = run_script(
        """
    import os, sys
    import tether

    with tether.Supervisor(grace=5) as sup:
        child = sup.spawn(["sleep", "60"])
        pid = os.fork()
        if pid == 0:
            try:
                child.send_signal(15)
            except RuntimeError as exc:
                print("refused:", exc, flush=True)
            sys.exit(0)  # leaves the with block in the forked child too
        os.waitpid(pid, 0)
        print("alive after the fork child left:", child.poll() is None, flush=True)
    print(child.status)
    """
    )
    lines = done.stdout.decode().splitlines()
    assert lines[0].startswith("refused: process "), done.stderr
    assert lines[1:] == ["alive after the fork child left: True", "killed by SIGTERM"]

"""A soak: thousands of mixed spawn / kill / timeout / drop / scope cycles in a storm of
interrupts, ending with nothing left behind.

A raising ``SIGALRM`` handler fires every :data:`STORM_PERIOD` seconds for the whole run
and raises while tether code is on the stack, so the cycles are cut short at every step
over and over. The driver keeps every handle a call did return (its own code is never
interrupted) and stops them all once the storm is over; what a cut-short call never
returned is tether's to clean up. The autouse leak guard then checks 0 children, 0
zombies, 0 fds and 0 threads left, and the test checks that the background reaper holds
nothing.

``make test`` runs :data:`DEFAULT_CYCLES` cycles; the issue's 20,000 are run by hand::

    TETHER_SOAK_CYCLES=20000 .venv/bin/pytest tests/test_soak.py -s --timeout 3600
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable

import pytest

import tether
from tests.test_interrupts import Interrupted, interrupts
from tether._core._reaper import REAPER

DEFAULT_CYCLES = 400
STORM_PERIOD = 0.0005


def _spawn_and_wait(owned: list[tether.Process]) -> None:
    process = tether.spawn(["true"])
    owned.append(process)
    process.wait()


def _spawn_and_kill(owned: list[tether.Process]) -> None:
    process = tether.spawn(["sleep", "60"])
    owned.append(process)
    process.kill()
    process.wait()


def _time_out(owned: list[tether.Process]) -> None:
    with contextlib.suppress(tether.TimeoutExpired):
        tether.run(["sleep", "60"], timeout=0.001, grace=0.001)


def _drop(owned: list[tether.Process]) -> None:
    tether.spawn(["true"])  # dropped at once: the background reaper reaps it


def _scope(owned: list[tether.Process]) -> None:
    with tether.Supervisor(grace=1) as sup:
        for _ in range(2):
            owned.append(sup.spawn(["sleep", "60"]))


CYCLES: tuple[Callable[[list[tether.Process]], None], ...] = (
    _spawn_and_wait,
    _spawn_and_kill,
    _time_out,
    _drop,
    _scope,
)


def _clean_up(owned: list[tether.Process]) -> None:
    """Stop what the cut-short cycles handed back (the storm is over)."""
    for process in owned:
        with contextlib.suppress(tether.StatusUnknownError, RuntimeError):
            process.kill()
            process.wait()


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # the dropped handles say so, rightly
def test_a_storm_of_interrupts_over_thousands_of_cycles_leaves_nothing() -> None:
    if sys.gettrace() is not None:
        # Seen once under coverage: the soak hung in coverage's own data lock
        # (Collector.lock_data, reached from a dropped handle's __del__), a lock of the
        # tracer's, not tether's. `make test-all` runs this untraced.
        pytest.skip("the soak deadlocks coverage's tracer (a lock of its own, not tether's)")
    cycles = int(os.environ.get("TETHER_SOAK_CYCLES", DEFAULT_CYCLES))
    owned: list[tether.Process] = []
    outcomes: Counter[str] = Counter()
    started = time.monotonic()
    with interrupts():
        signal.setitimer(signal.ITIMER_REAL, STORM_PERIOD, STORM_PERIOD)
        try:
            for index in range(cycles):
                cycle = CYCLES[index % len(CYCLES)]
                try:
                    cycle(owned)
                except Interrupted:
                    outcomes["interrupted"] += 1
                else:
                    outcomes["completed"] += 1
                if len(owned) > 256:  # bounded memory over long runs
                    with contextlib.suppress(Interrupted):
                        owned[:] = [process for process in owned if process.poll() is None]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    _clean_up(owned)
    del owned
    gc.collect()
    assert REAPER.wait_idle(timeout=30), "the reaper still holds children"
    elapsed = time.monotonic() - started
    print(  # shown with -s: the figure quoted in the notes
        f"\nsoak: {cycles} cycles in {elapsed:.1f} s, "
        f"{outcomes['completed']} completed, {outcomes['interrupted']} interrupted"
    )
    assert outcomes["interrupted"] > 0, "the storm never hit: the test proves nothing"

"""Durations: ``inf`` and months mean "that long", NaN and negatives are refused."""

from __future__ import annotations

import math
import time

import pytest

import tether
from tether._durations import (
    check_duration,
    deadline_after,
    poll_millis,
    poll_seconds,
    remaining,
)


def test_check_duration() -> None:
    assert check_duration(1, "grace") == 1.0
    assert check_duration(math.inf, "grace") == math.inf
    with pytest.raises(ValueError, match="NaN"):
        check_duration(math.nan, "grace")
    with pytest.raises(ValueError, match="negative"):
        check_duration(-0.5, "grace")
    with pytest.raises(TypeError):
        check_duration(True, "grace")
    with pytest.raises(TypeError):
        check_duration("5", "grace")  # type: ignore[arg-type]


def test_deadlines() -> None:
    assert deadline_after(None) is None
    assert deadline_after(math.inf) is None
    before = time.monotonic()
    deadline = deadline_after(90 * 86400)  # three months: a real deadline
    assert deadline is not None
    assert deadline >= before + 90 * 86400
    assert remaining(None) is None
    assert remaining(time.monotonic() - 5) == 0.0


def test_poll_timeouts_are_rounded_up_and_bounded() -> None:
    assert poll_millis(None) is None
    assert poll_millis(math.inf) is None
    assert poll_millis(0.0001) == 1
    assert poll_millis(0) == 0
    assert poll_millis(90 * 86400) == 2**31 - 1  # poll() takes a C int
    assert poll_seconds(math.inf) is None
    assert poll_seconds(90 * 86400) == (2**31 - 1) / 1000


@pytest.mark.parametrize("timeout", [math.inf, 90 * 86400.0])
def test_unbounded_waits_wait(timeout: float) -> None:
    process = tether.spawn(["true"])
    assert process.wait(timeout=timeout) == tether.Exited(0)
    assert tether.run(["true"], timeout=timeout).status == tether.Exited(0)


def test_stop_with_infinite_grace_does_not_kill_at_once() -> None:
    process = tether.spawn(["sleep", "60"])
    assert process.stop(grace=math.inf) == tether.Signaled(15)


def test_supervisor_with_infinite_grace_stops_politely() -> None:
    with tether.Supervisor(grace=math.inf) as sup:
        child = sup.spawn(["sleep", "60"])
        with pytest.raises(tether.TimeoutExpired):
            sup.wait_all(timeout=0.01)
    assert child.status == tether.Signaled(15)


def test_a_nan_timeout_is_refused_before_anything_happens() -> None:
    with tether.spawn(["sleep", "60"]) as process:
        with pytest.raises(ValueError, match="NaN"):
            process.wait(timeout=math.nan)
        assert process.poll() is None
    with pytest.raises(ValueError, match="NaN"):
        tether.run(["true"], timeout=math.nan)
    with tether.Supervisor() as sup:
        sup.spawn(["sleep", "60"])
        with pytest.raises(ValueError, match="NaN"):
            sup.wait_any(timeout=math.nan)

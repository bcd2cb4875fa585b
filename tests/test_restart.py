"""Tests for ``tether._supervise._restart``: backoff schedule, policy, and restart budget.

Everything is pure logic, so nothing here sleeps or starts a process: time comes from
:class:`FakeClock`, advanced by hand, and jitter from a constant ``random`` (0.5 gives a factor of
exactly 1, 0 the shortest delay the jitter allows, 1 the longest).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import signal

import pytest

from tether import Backoff, Continued, Exited, RestartPolicy, Signaled, Status, Stopped
from tether._supervise._restart import Decision, RestartTracker

OK = Exited(0)
FAIL = Exited(1)
KILLED = Signaled(signal.SIGKILL)


def middle() -> float:
    """A ``random`` that makes the jitter factor exactly 1."""
    return 0.5


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        assert seconds >= 0
        self.now += seconds


def tracker(
    mode: str = "on-failure",
    *,
    random: float = 0.5,
    max_restarts: int = 5,
    window: float = 60.0,
    reset_after: float = 10.0,
) -> tuple[RestartTracker, FakeClock]:
    """A tracker over a fresh fake clock, with a constant ``random``."""
    clock = FakeClock()
    policy = dataclasses.replace(
        RestartPolicy.parse(mode),
        max_restarts=max_restarts,
        window=window,
        reset_after=reset_after,
    )
    return RestartTracker(policy, clock, lambda: random), clock


def crash_quickly(t: RestartTracker, clock: FakeClock, status: Status = FAIL) -> Decision:
    """One short run (a millisecond) that ends with ``status``."""
    t.started()
    clock.advance(0.001)
    return t.exited(status)


# --- Backoff ------------------------------------------------------------------------------------


def test_backoff_defaults() -> None:
    assert Backoff() == Backoff(initial=0.1, factor=2.0, cap=30.0, jitter=0.1)


def test_backoff_doubles_from_initial_up_to_the_cap() -> None:
    delays = [Backoff().delay(n, middle) for n in range(13)]
    expected = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0, 30.0, 30.0]
    assert delays == pytest.approx(expected, rel=1e-12)


def test_backoff_with_custom_factor_and_cap() -> None:
    backoff = Backoff(initial=1.0, factor=3.0, cap=10.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(4)] == [1.0, 3.0, 9.0, 10.0]


def test_backoff_factor_one_is_constant() -> None:
    backoff = Backoff(initial=2.5, factor=1.0, jitter=0.0)
    assert {backoff.delay(n) for n in range(100)} == {2.5}


def test_backoff_zero_initial_restarts_at_once() -> None:
    backoff = Backoff(initial=0.0, cap=0.0)
    assert [backoff.delay(n, lambda: 1.0) for n in (0, 1, 5000)] == [0.0, 0.0, 0.0]


def test_backoff_huge_attempt_stays_at_the_cap() -> None:
    backoff = Backoff(jitter=0.0)
    assert backoff.delay(10_000) == 30.0  # 2.0 ** 10_000 overflows a float
    assert backoff.delay(10**100) == 30.0


@pytest.mark.parametrize("attempt", [0, 1, 4])
def test_jitter_bounds_below_the_cap(attempt: int) -> None:
    backoff = Backoff(jitter=0.1)
    base = 0.1 * 2**attempt
    assert backoff.delay(attempt, lambda: 0.0) == pytest.approx(base * 0.9)
    assert backoff.delay(attempt, lambda: 0.5) == pytest.approx(base)
    assert backoff.delay(attempt, lambda: 1.0) == pytest.approx(base * 1.1)
    nearly_one = backoff.delay(attempt, lambda: math.nextafter(1.0, 0.0))
    assert base * 1.1 - 1e-12 < nearly_one <= base * 1.1


def test_jitter_stays_within_bounds_for_any_draw() -> None:
    backoff = Backoff(initial=1.0, jitter=0.25)
    for step in range(101):
        delay = backoff.delay(0, functools.partial(float, step / 100))
        assert 0.75 <= delay <= 1.25


def test_jitter_at_the_cap_only_shortens() -> None:
    backoff = Backoff(jitter=0.1)
    assert backoff.delay(20, lambda: 0.0) == pytest.approx(27.0)
    assert backoff.delay(20, lambda: 1.0) == 30.0
    # Below the cap, a stretched delay that would pass the cap is cut off at it.
    assert backoff.delay(8, lambda: 1.0) == pytest.approx(28.16)  # 25.6 * 1.1
    assert Backoff(initial=28.0, jitter=0.1).delay(0, lambda: 1.0) == 30.0


def test_full_jitter_can_reach_zero() -> None:
    assert Backoff(initial=1.0, jitter=1.0).delay(0, lambda: 0.0) == 0.0
    assert Backoff(initial=1.0, jitter=1.0).delay(0, lambda: 1.0) == 2.0


def test_no_jitter_does_not_draw() -> None:
    def refuse() -> float:
        raise AssertionError("random() was called")

    assert Backoff(jitter=0.0).delay(3, refuse) == pytest.approx(0.8)


def test_default_random_is_used_and_bounded() -> None:
    backoff = Backoff(initial=1.0)
    for _ in range(200):
        assert 0.9 <= backoff.delay(0) <= 1.1


@pytest.mark.parametrize("draw", [-0.1, 1.5, math.nan])
def test_random_outside_unit_interval_is_refused(draw: float) -> None:
    with pytest.raises(ValueError, match=r"random\(\) must return a number in \[0, 1\]"):
        Backoff().delay(0, lambda: draw)


def test_delay_rejects_bad_attempts() -> None:
    with pytest.raises(ValueError, match="attempt must not be negative"):
        Backoff().delay(-1)
    with pytest.raises(TypeError, match="attempt must be an int"):
        Backoff().delay(1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="attempt must be an int"):
        Backoff().delay(True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial": -0.1}, "Backoff.initial must not be negative"),
        ({"factor": -2.0}, "Backoff.factor must be at least 1"),
        ({"factor": 0.5}, "Backoff.factor must be at least 1"),
        ({"cap": -1.0}, "Backoff.cap must not be negative"),
        ({"jitter": -0.1}, "Backoff.jitter must not be negative"),
        ({"jitter": 1.5}, r"Backoff.jitter must be in \[0, 1\]"),
        ({"initial": 31.0}, r"Backoff.initial \(31.0\) must not exceed Backoff.cap \(30.0\)"),
        ({"initial": 2.0, "cap": 1.0}, "must not exceed Backoff.cap"),
        ({"initial": math.nan}, "Backoff.initial must be a finite number"),
        ({"cap": math.inf}, "Backoff.cap must be a finite number"),
        ({"factor": math.inf}, "Backoff.factor must be a finite number"),
    ],
)
def test_backoff_validation(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)


def test_backoff_rejects_non_numbers() -> None:
    with pytest.raises(TypeError, match=r"Backoff.initial must be a number, not str"):
        Backoff(initial="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"Backoff.jitter must be a number, not bool"):
        Backoff(jitter=True)


def test_backoff_accepts_edge_values() -> None:
    Backoff(initial=0, factor=1, cap=0, jitter=0)
    Backoff(initial=5, cap=5, jitter=1)


def test_backoff_is_frozen_slotted_and_hashable() -> None:
    backoff = Backoff()
    with pytest.raises(dataclasses.FrozenInstanceError):
        backoff.initial = 1.0  # type: ignore[misc]
    assert not hasattr(backoff, "__dict__")
    assert hash(backoff) == hash(Backoff())


# --- RestartPolicy ------------------------------------------------------------------------------


def test_policy_defaults() -> None:
    policy = RestartPolicy()
    assert policy.mode == "never"
    assert policy.backoff == Backoff()
    assert (policy.max_restarts, policy.window, policy.reset_after) == (5, 60.0, 10.0)


@pytest.mark.parametrize(
    ("mode", "ok", "fail", "killed"),
    [
        ("never", False, False, False),
        ("on-failure", False, True, True),
        ("always", True, True, True),
    ],
)
def test_wants_restart(mode: str, ok: bool, fail: bool, killed: bool) -> None:
    policy = RestartPolicy.parse(mode)
    assert policy.wants_restart(OK) is ok
    assert policy.wants_restart(FAIL) is fail
    assert policy.wants_restart(KILLED) is killed
    assert policy.wants_restart(Exited(255)) is fail
    assert policy.wants_restart(Signaled(signal.SIGSEGV, core_dumped=True)) is killed


@pytest.mark.parametrize("mode", ["never", "on-failure", "always"])
@pytest.mark.parametrize("status", [Stopped(signal.SIGSTOP), Continued()])
def test_a_child_that_has_not_ended_is_not_restarted(mode: str, status: Status) -> None:
    assert RestartPolicy.parse(mode).wants_restart(status) is False


def test_wants_restart_rejects_non_status() -> None:
    with pytest.raises(TypeError, match="status must be a Status, not int"):
        RestartPolicy("always").wants_restart(1)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["never", "on-failure", "always"])
def test_parse_mode_names(mode: str) -> None:
    assert RestartPolicy.parse(mode) == RestartPolicy(mode=mode)  # type: ignore[arg-type]


def test_parse_none_is_never() -> None:
    assert RestartPolicy.parse(None) == RestartPolicy()
    assert RestartPolicy.parse(None).mode == "never"


def test_parse_passes_a_policy_through() -> None:
    policy = RestartPolicy("always", max_restarts=3, window=5.0)
    assert RestartPolicy.parse(policy) is policy


def test_parse_float_backoff_sets_initial() -> None:
    policy = RestartPolicy.parse("on-failure", 0.5)
    assert policy == RestartPolicy("on-failure", backoff=Backoff(initial=0.5))
    assert RestartPolicy.parse("always", backoff=2).backoff == Backoff(initial=2.0)


def test_parse_float_backoff_beyond_the_default_cap_raises_the_cap() -> None:
    assert RestartPolicy.parse("always", 45.0).backoff == Backoff(initial=45.0, cap=45.0)


def test_parse_backoff_object_replaces_the_policys() -> None:
    custom = Backoff(initial=1.0, factor=1.5, cap=5.0, jitter=0.0)
    assert RestartPolicy.parse("always", custom).backoff is custom
    policy = RestartPolicy("on-failure", max_restarts=2)
    assert RestartPolicy.parse(policy, custom) == RestartPolicy(
        "on-failure", backoff=custom, max_restarts=2
    )


def test_parse_rejects_unknown_modes_listing_the_known_ones() -> None:
    listing = r"expected one of 'never', 'on-failure', 'always'"
    for bad in ("sometimes", "on_failure", "Always", ""):
        with pytest.raises(ValueError, match=rf"unknown restart mode {bad!r}: {listing}"):
            RestartPolicy.parse(bad)


def test_parse_rejects_bad_types() -> None:
    with pytest.raises(TypeError, match="restart must be a mode name"):
        RestartPolicy.parse(1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Backoff.initial must not be negative"):
        RestartPolicy.parse("always", -1.0)
    with pytest.raises(TypeError, match=r"Backoff.initial must be a number"):
        RestartPolicy.parse("always", "1s")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"mode": "sometimes"}, ValueError, "unknown restart mode 'sometimes': expected one of"),
        ({"max_restarts": -1}, ValueError, "RestartPolicy.max_restarts must not be negative"),
        ({"max_restarts": 2.0}, TypeError, "RestartPolicy.max_restarts must be an int"),
        ({"window": -1.0}, ValueError, "RestartPolicy.window must not be negative"),
        ({"window": math.nan}, ValueError, "RestartPolicy.window must be a finite number"),
        ({"reset_after": -5}, ValueError, "RestartPolicy.reset_after must not be negative"),
        ({"backoff": 0.5}, TypeError, "RestartPolicy.backoff must be a Backoff, not float"),
    ],
)
def test_policy_validation(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_accepts_edge_values() -> None:
    RestartPolicy("always", max_restarts=0, window=0, reset_after=0)
    RestartPolicy("always", window=math.inf, reset_after=math.inf)


# --- RestartTracker: decisions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "status", "action"),
    [
        ("never", OK, "stop"),
        ("never", FAIL, "stop"),
        ("never", KILLED, "stop"),
        ("on-failure", OK, "stop"),
        ("on-failure", FAIL, "restart"),
        ("on-failure", KILLED, "restart"),
        ("always", OK, "restart"),
        ("always", FAIL, "restart"),
        ("always", KILLED, "restart"),
    ],
)
def test_tracker_follows_the_mode(mode: str, status: Status, action: str) -> None:
    t, clock = tracker(mode)
    decision = crash_quickly(t, clock, status)
    assert decision.action == action
    if action == "stop":
        assert decision == Decision("stop", 0.0, f"{status}: not restarting (restart={mode!r})")
        assert (t.attempt, t.restarts, t.history) == (0, 0, ())
    else:
        assert decision.delay == pytest.approx(0.1)
        assert (t.attempt, t.restarts, t.history) == (1, 1, (clock.now,))


def test_restart_reason_describes_the_exit_and_the_budget() -> None:
    t, clock = tracker("on-failure")
    assert crash_quickly(t, clock, KILLED).reason == (
        "killed by SIGKILL: restarting in 0.1s (restart 1 of 5 within 60s)"
    )
    assert crash_quickly(t, clock, Exited(3)).reason == (
        "exited with status 3: restarting in 0.2s (restart 2 of 5 within 60s)"
    )


def test_tracker_delays_follow_the_schedule_up_to_the_cap() -> None:
    t, clock = tracker("always", max_restarts=1000)
    delays = []
    for _ in range(12):
        decision = crash_quickly(t, clock)
        assert decision.action == "restart"
        delays.append(decision.delay)
        clock.advance(decision.delay)
    expected = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0, 30.0]
    assert delays == pytest.approx(expected, rel=1e-12)
    assert t.attempt == 12
    assert t.restarts == 12


def test_tracker_applies_jitter_from_its_random() -> None:
    low, clock = tracker("always", random=0.0)
    high, _ = tracker("always", random=1.0)
    assert crash_quickly(low, clock).delay == pytest.approx(0.09)
    assert crash_quickly(high, clock).delay == pytest.approx(0.11)


def test_a_long_run_resets_the_backoff() -> None:
    t, clock = tracker("on-failure", window=0)
    for _ in range(4):
        crash_quickly(t, clock)
    assert t.attempt == 4
    t.started()
    clock.advance(10.0)  # exactly reset_after: long enough
    decision = t.exited(FAIL)
    assert decision.delay == pytest.approx(0.1)
    assert t.attempt == 1
    assert crash_quickly(t, clock).delay == pytest.approx(0.2)


def test_a_run_just_short_of_reset_after_does_not_reset() -> None:
    t, clock = tracker("on-failure", window=0)
    for _ in range(3):
        crash_quickly(t, clock)
    t.started()
    clock.advance(9.999)
    assert t.exited(FAIL).delay == pytest.approx(0.8)
    assert t.attempt == 4


def test_the_delay_before_a_restart_is_not_part_of_the_run() -> None:
    t, clock = tracker("on-failure", window=0)
    decision = crash_quickly(t, clock)
    clock.advance(60.0)  # a long wait before the restart...
    t.started()
    clock.advance(0.001)  # ...then a short run
    assert t.exited(FAIL).delay == pytest.approx(0.2)
    assert decision.delay == pytest.approx(0.1)


def test_an_unrecorded_start_never_resets() -> None:
    t, clock = tracker("on-failure", window=0)
    crash_quickly(t, clock)
    clock.advance(3600.0)
    assert t.exited(FAIL).delay == pytest.approx(0.2)  # no started() for this run


def test_a_clean_stop_after_a_long_run_still_resets() -> None:
    t, clock = tracker("on-failure")
    crash_quickly(t, clock)
    t.started()
    clock.advance(30.0)
    assert t.exited(OK).action == "stop"
    assert t.attempt == 0


def test_reset_after_inf_never_resets_and_zero_always_does() -> None:
    never, clock = tracker("always", reset_after=math.inf, window=0)
    always, _ = tracker("always", reset_after=0, window=0)
    for _ in range(3):
        never.started()
        always.started()
        clock.advance(1e6)
        never.exited(OK)
        assert always.exited(OK).delay == pytest.approx(0.1)
    assert never.attempt == 3
    assert always.attempt == 1


# --- RestartTracker: the budget ----------------------------------------------------------------


def test_five_quick_failures_restart_and_the_sixth_gives_up() -> None:
    t, clock = tracker("on-failure")
    for n in range(5):
        decision = crash_quickly(t, clock)
        assert decision.action == "restart"
        assert decision.delay == pytest.approx(0.1 * 2**n)
        clock.advance(decision.delay)
    decision = crash_quickly(t, clock)
    assert decision.action == "give_up"
    assert decision.delay == 0.0
    assert decision.reason == "exited with status 1: 5 restarts within 60s: giving up"
    assert t.restarts == 5
    assert len(t.history) == 5
    assert t.attempt == 5  # giving up consumes no attempt


def test_giving_up_also_applies_to_signals_and_always() -> None:
    t, clock = tracker("always", max_restarts=2, window=10.0)
    assert crash_quickly(t, clock, OK).action == "restart"
    assert crash_quickly(t, clock, KILLED).action == "restart"
    decision = crash_quickly(t, clock, KILLED)
    assert decision == Decision(
        "give_up", 0.0, "killed by SIGKILL: 2 restarts within 10s: giving up"
    )


def test_a_stop_does_not_consume_the_budget() -> None:
    t, clock = tracker("on-failure", max_restarts=1)
    for _ in range(10):
        assert crash_quickly(t, clock, OK).action == "stop"
    assert crash_quickly(t, clock).action == "restart"
    assert crash_quickly(t, clock, OK).action == "stop"
    assert crash_quickly(t, clock).action == "give_up"


def test_restarts_spaced_beyond_the_window_never_exhaust_it() -> None:
    t, clock = tracker("on-failure", max_restarts=2, window=60.0)
    for _ in range(100):
        decision = crash_quickly(t, clock)
        assert decision.action == "restart"
        assert len(t.history) <= 2
        clock.advance(30.0)  # each restart a little more than 30 s after the one before
    assert t.restarts == 100


def test_the_window_slides() -> None:
    """Restarts at t = 0, 10, 20, 30, 40; at 59.999 all five still count, at 60 the first
    has left the window and one more restart is allowed, at 60.5 not yet another."""
    t, clock = tracker("on-failure")
    start = clock.now
    for _ in range(5):
        assert t.exited(FAIL).action == "restart"
        clock.advance(10.0)
    assert t.history == pytest.approx([start + 10.0 * n for n in range(5)])
    clock.now = start + 59.999
    assert t.exited(FAIL).action == "give_up"
    clock.now = start + 60.0  # exactly `window` after the first restart: out of the window
    assert len(t.history) == 4
    assert t.exited(FAIL).action == "restart"
    clock.now = start + 60.5
    assert t.exited(FAIL).action == "give_up"
    clock.now = start + 70.0
    assert t.exited(FAIL).action == "restart"
    assert t.history == pytest.approx(
        [start + 20.0, start + 30.0, start + 40.0, start + 60.0, start + 70.0]
    )


def test_giving_up_is_not_sticky() -> None:
    t, clock = tracker("on-failure", max_restarts=1, window=5.0)
    assert crash_quickly(t, clock).action == "restart"
    assert crash_quickly(t, clock).action == "give_up"
    clock.advance(5.0)
    assert crash_quickly(t, clock).action == "restart"


def test_history_is_read_at_the_current_time() -> None:
    t, clock = tracker("always", window=10.0)
    crash_quickly(t, clock)
    first = clock.now
    clock.advance(4.0)
    crash_quickly(t, clock)
    assert list(t.history) == [first, clock.now]
    clock.advance(6.0)
    assert list(t.history) == [clock.now - 6.0]
    clock.advance(10.0)
    assert list(t.history) == []
    assert t.restarts == 2


def test_the_budget_ignores_reset_after() -> None:
    """Runs of 11 s each reset the backoff, but six restarts in a minute are still too many."""
    t, clock = tracker("on-failure")
    actions = []
    for _ in range(6):
        t.started()
        clock.advance(11.0)
        decision = t.exited(FAIL)
        actions.append(decision.action)
        if decision.action == "restart":
            assert decision.delay == pytest.approx(0.1)
    assert actions == ["restart"] * 5 + ["give_up"]


def test_max_restarts_zero_gives_up_at_once() -> None:
    t, clock = tracker("always", max_restarts=0)
    assert crash_quickly(t, clock, OK) == Decision(
        "give_up", 0.0, "exited with status 0: no restarts allowed (max_restarts=0): giving up"
    )


def test_window_zero_turns_the_limit_off() -> None:
    t, clock = tracker("on-failure", max_restarts=0, window=0)
    for _ in range(50):
        decision = crash_quickly(t, clock)
        assert decision.action == "restart"
    assert decision.reason == "exited with status 1: restarting in 30s"
    assert t.history == ()
    assert t.restarts == 50


def test_infinite_window_is_a_lifetime_budget() -> None:
    t, clock = tracker("on-failure", max_restarts=3, window=math.inf)
    for _ in range(3):
        assert crash_quickly(t, clock).reason.endswith("in total)")
        clock.advance(1e9)
    decision = crash_quickly(t, clock)
    assert decision.reason == "exited with status 1: 3 restarts in total: giving up"


def test_reset_forgets_the_budget_and_the_attempt() -> None:
    t, clock = tracker("on-failure", max_restarts=2)
    crash_quickly(t, clock)
    crash_quickly(t, clock)
    assert crash_quickly(t, clock).action == "give_up"
    t.started()
    t.reset()
    assert (t.attempt, t.history) == (0, ())
    clock.advance(0.001)
    assert t.exited(FAIL).delay == pytest.approx(0.1)
    assert t.restarts == 3


# --- RestartTracker: misuse and plumbing -------------------------------------------------------


@pytest.mark.parametrize("status", [Stopped(signal.SIGTSTP), Continued()])
def test_exited_refuses_a_status_that_is_not_terminal(status: Status) -> None:
    t, _ = tracker("always")
    with pytest.raises(ValueError, match=f"the child has not terminated: it {status}"):
        t.exited(status)


def test_exited_refuses_non_status() -> None:
    t, _ = tracker("always")
    with pytest.raises(TypeError, match="status must be a Status, not int"):
        t.exited(0)  # type: ignore[arg-type]


def test_tracker_requires_a_policy() -> None:
    with pytest.raises(TypeError, match="policy must be a RestartPolicy, not str"):
        RestartTracker("always")  # type: ignore[arg-type]


def test_tracker_defaults_to_the_real_clock_and_random() -> None:
    t = RestartTracker(RestartPolicy("always"))
    t.started()
    decision = t.exited(OK)
    assert decision.action == "restart"
    assert 0.09 <= decision.delay <= 0.11
    assert t.policy == RestartPolicy("always")
    assert repr(t) == f"RestartTracker(policy={t.policy!r}, attempt=1, restarts=1)"


def test_tracker_is_slotted_and_final() -> None:
    t, _ = tracker()
    with pytest.raises(AttributeError):
        t.extra = 1  # type: ignore[attr-defined]


def test_decision_validation() -> None:
    with pytest.raises(ValueError, match="unknown action 'retry': expected one of 'stop'"):
        Decision("retry", 0.0, "")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Decision.delay must not be negative"):
        Decision("restart", -1.0, "")
    decision = Decision("restart", 1.0, "why")
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.delay = 2.0  # type: ignore[misc]

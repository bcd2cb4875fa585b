"""Keep-alive restarts: when to bring a child back, how long to wait first, and when to stop trying.

A supervisor that restarts whatever dies must answer three questions each time a child exits.
*Should it come back?* That is the :class:`RestartPolicy` mode: ``"never"``, ``"on-failure"``
(anything but ``Exited(0)``; a death by signal is a failure) or ``"always"``. *After how long?*
Restarting at once turns a program that crashes on start into a busy loop that floods the logs and
hammers whatever it talks to, so the delays grow geometrically (:class:`Backoff`): with the
defaults 0.1 s, 0.2 s, 0.4 s, 0.8 s, ... up to a 30 s ceiling. Each delay is multiplied by a random
factor in ``[1 - jitter, 1 + jitter]`` (10% by default) and then capped again, so that many
children which failed together, because the database they share went away, do not all come back
in the same instant; at the ceiling the delays are spread over ``[cap * (1 - jitter), cap]``.
*When to give up?* A child that keeps dying is not going to get better by itself. The policy
allows at most ``max_restarts`` restarts within any sliding window of ``window`` seconds (5 in 60
by default); the restart that would exceed it is refused and the child is given up as failed, for
a person or an outer supervisor to look at.

Two clocks run side by side. The *attempt* counter picks the delay and climbs with every restart;
a run that lasted at least ``reset_after`` seconds (10 by default) proves that the child did come
up, so the next restart starts the schedule again at ``initial``. The *budget* ignores how long
runs lasted and counts only when restarts were decided: a child that survives 11 s each time,
past ``reset_after``, still exhausts a budget of 5 in 60 s, because six restarts a minute is
itself a fault. Restarts spaced further apart than ``window / max_restarts`` never exhaust it.

The same ideas, in the programs people know:

* supervisord's ``autorestart`` (``false``, ``unexpected``, ``true``) is the mode. Its
  ``startsecs`` is ``reset_after``: a process that dies sooner has not *started*, and counts
  against ``startretries``, which are consecutive failed starts rather than a window; its delay
  between them grows by one second per attempt with no jitter and no cap.
* systemd's ``Restart=`` (``no``, ``on-failure``, ``always``) is the mode, and ``RestartSec=``
  is ``initial``; since systemd 254 ``RestartSteps=`` and ``RestartMaxDelaySec=`` grow it towards
  a ceiling, as ``factor`` and ``cap`` do here. ``StartLimitBurst=`` and
  ``StartLimitIntervalSec=`` are ``max_restarts`` and ``window``, and, as there, a window of 0
  turns the limit off. systemd's defaults (100 ms, 5 in 10 s) are tighter than ours; its
  interval restarts when it runs out rather than sliding.

Everything here is pure logic: :class:`RestartTracker` reads the time from an injected clock and
its jitter from an injected random source, and only *decides*; the supervisor that owns the child
sleeps and spawns.
"""

from __future__ import annotations

import math
import random as _random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final, Literal, TypeAlias

from typing_extensions import final

from tether._status import Status

__all__ = ["Action", "Backoff", "Decision", "RestartMode", "RestartPolicy", "RestartTracker"]

RestartMode: TypeAlias = Literal["never", "on-failure", "always"]
"""When a :class:`RestartPolicy` restarts a child that terminated."""

Action: TypeAlias = Literal["stop", "restart", "give_up"]
"""What a :class:`Decision` tells the supervisor to do."""

_MODES: Final[tuple[RestartMode, ...]] = ("never", "on-failure", "always")
_ACTIONS: Final[tuple[Action, ...]] = ("stop", "restart", "give_up")
_DEFAULT_CAP: Final = 30.0


def _check_number(
    owner: str, name: str, value: float, *, minimum: float = 0.0, infinite: bool = False
) -> None:
    """Raise unless ``value`` is a real number ``>= minimum`` (and finite, unless ``infinite``),
    naming ``owner.name`` in the message."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}.{name} must be a number, not {type(value).__name__}")
    if math.isnan(value) or (math.isinf(value) and not infinite):
        raise ValueError(f"{owner}.{name} must be a finite number, got {value!r}")
    if value < minimum:
        if minimum == 0:
            raise ValueError(f"{owner}.{name} must not be negative, got {value!r}")
        raise ValueError(f"{owner}.{name} must be at least {minimum:g}, got {value!r}")


def _within(window: float) -> str:
    """Name a budget window for people: ``within 60s``, ``within 0.5s``, ``in total``."""
    return f"within {window:g}s" if math.isfinite(window) else "in total"


@final
@dataclass(frozen=True, slots=True)
class Backoff:
    """An exponential schedule of restart delays, in seconds, with jitter and a ceiling.

    The delay before restart number ``attempt`` (0 for the first) is
    ``min(initial * factor ** attempt, cap)``, multiplied by a random factor in
    ``[1 - jitter, 1 + jitter]`` and capped at ``cap`` once more. ``factor=1`` gives a constant
    delay, ``jitter=0`` a deterministic one, ``initial=0`` restarts at once.
    """

    initial: float = 0.1
    """The delay before the first restart, in seconds."""
    factor: float = 2.0
    """How much each delay grows over the one before; at least 1."""
    cap: float = _DEFAULT_CAP
    """The longest delay, in seconds, jitter included; at least :attr:`initial`."""
    jitter: float = 0.1
    """The fraction by which a delay is randomly stretched or shrunk, in ``[0, 1]``."""

    def __post_init__(self) -> None:
        _check_number("Backoff", "initial", self.initial)
        _check_number("Backoff", "factor", self.factor, minimum=1.0)
        _check_number("Backoff", "cap", self.cap)
        _check_number("Backoff", "jitter", self.jitter)
        if self.jitter > 1:
            raise ValueError(f"Backoff.jitter must be in [0, 1], got {self.jitter!r}")
        if self.initial > self.cap:
            raise ValueError(
                f"Backoff.initial ({self.initial!r}) must not exceed Backoff.cap ({self.cap!r})"
            )

    def delay(self, attempt: int, random: Callable[[], float] = _random.random) -> float:
        """Return the delay in seconds before restart number ``attempt`` (0 for the first).

        ``random`` must return a number in ``[0, 1]``: 0 gives the shortest delay the jitter
        allows, 0.5 the unjittered one, 1 the longest. It is not called when :attr:`jitter` is 0.
        """
        if isinstance(attempt, bool) or not isinstance(attempt, int):
            raise TypeError(f"attempt must be an int, not {type(attempt).__name__}")
        if attempt < 0:
            raise ValueError(f"attempt must not be negative, got {attempt}")
        if self.initial == 0:
            return 0.0
        try:
            base = min(self.initial * self.factor**attempt, self.cap)
        except OverflowError:  # factor ** attempt beyond the largest float: far past the cap
            base = self.cap
        if self.jitter == 0:
            return base
        draw = random()
        if not 0.0 <= draw <= 1.0:
            raise ValueError(f"random() must return a number in [0, 1], got {draw!r}")
        return min(base * (1.0 + self.jitter * (2.0 * draw - 1.0)), self.cap)


@final
@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Whether a supervised child that terminated is restarted, after which delays, and how many
    restarts it may have before it is given up as failed.

    A supervisor applies the policy to each of its children (the private ``RestartTracker``
    keeps the count). :meth:`parse` accepts the shorthands a supervisor takes as arguments:
    ``restart="on-failure", backoff=0.5``.
    """

    mode: RestartMode = "never"
    """``"never"``, ``"on-failure"`` (any exit but ``Exited(0)``) or ``"always"``."""
    backoff: Backoff = Backoff()
    """The schedule of delays before each restart."""
    max_restarts: int = 5
    """How many restarts :attr:`window` may hold; one more and the child is given up. 0 means
    that every restart is refused."""
    window: float = 60.0
    """The length, in seconds, of the sliding window in which at most :attr:`max_restarts`
    restarts are allowed. 0 turns the limit off (:attr:`max_restarts` is then ignored);
    ``math.inf`` makes it a lifetime total."""
    reset_after: float = 10.0
    """A run that lasted at least this many seconds resets the backoff to its first delay;
    ``math.inf`` never resets it."""

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(_unknown_mode(self.mode))
        if not isinstance(self.backoff, Backoff):
            raise TypeError(
                f"RestartPolicy.backoff must be a Backoff, not {type(self.backoff).__name__}"
            )
        if isinstance(self.max_restarts, bool) or not isinstance(self.max_restarts, int):
            raise TypeError(
                f"RestartPolicy.max_restarts must be an int, not {type(self.max_restarts).__name__}"
            )
        if self.max_restarts < 0:
            raise ValueError(
                f"RestartPolicy.max_restarts must not be negative, got {self.max_restarts}"
            )
        _check_number("RestartPolicy", "window", self.window, infinite=True)
        _check_number("RestartPolicy", "reset_after", self.reset_after, infinite=True)

    @classmethod
    def parse(
        cls, restart: str | RestartPolicy | None, backoff: Backoff | float | None = None
    ) -> RestartPolicy:
        """Build a policy from the shorthands a supervisor accepts.

        ``restart`` is a mode name, a policy, or ``None`` for ``"never"``. ``backoff``, if given,
        replaces the policy's schedule: a :class:`Backoff`, or a number of seconds meaning
        ``Backoff(initial=seconds)`` (with the cap raised to match when it is longer than the
        default 30 s). Raises :exc:`ValueError` for an unknown mode, naming the known ones.
        """
        if restart is None:
            policy = cls()
        elif isinstance(restart, RestartPolicy):
            policy = restart
        elif isinstance(restart, str):
            policy = cls(mode=_parse_mode(restart))
        else:
            raise TypeError(
                "restart must be a mode name, a RestartPolicy or None, "
                f"not {type(restart).__name__}"
            )
        if backoff is None:
            return policy
        if not isinstance(backoff, Backoff):
            _check_number("Backoff", "initial", backoff)
            backoff = Backoff(initial=backoff, cap=max(_DEFAULT_CAP, backoff))
        return replace(policy, backoff=backoff)

    def wants_restart(self, status: Status) -> bool:
        """Return ``True`` if a child that ended with ``status`` should be restarted.

        ``"never"`` never restarts, ``"always"`` restarts any terminated child, and
        ``"on-failure"`` restarts one that did not exit with status 0. A :class:`Stopped` or
        :class:`Continued` child has not ended, and is never restarted. The restart budget is not
        consulted here: the supervisor's private ``RestartTracker`` does that.
        """
        if not isinstance(status, Status):
            raise TypeError(f"status must be a Status, not {type(status).__name__}")
        if not status.terminated or self.mode == "never":
            return False
        return self.mode == "always" or not status.success


def _unknown_mode(mode: object) -> str:
    """The message for a restart mode that is not one of :data:`_MODES`."""
    known = ", ".join(repr(name) for name in _MODES)
    return f"unknown restart mode {mode!r}: expected one of {known}"


def _parse_mode(name: str) -> RestartMode:
    """Return ``name`` as a :data:`RestartMode`, or raise :exc:`ValueError` listing the modes."""
    for mode in _MODES:
        if name == mode:
            return mode
    raise ValueError(_unknown_mode(name))


@final
@dataclass(frozen=True, slots=True)
class Decision:
    """What a :class:`RestartTracker` concluded when a child exited."""

    action: Action
    """``"stop"`` (the policy does not restart this exit), ``"restart"`` (after :attr:`delay`)
    or ``"give_up"`` (the restart budget is spent: the child has failed for good)."""
    delay: float
    """Seconds to wait before restarting; 0 unless :attr:`action` is ``"restart"``."""
    reason: str
    """Why, for people and logs: ``"killed by SIGKILL: restarting in 0.4s (restart 3 of 5
    within 60s)"``."""

    def __post_init__(self) -> None:
        if self.action not in _ACTIONS:
            known = ", ".join(repr(name) for name in _ACTIONS)
            raise ValueError(f"unknown action {self.action!r}: expected one of {known}")
        _check_number("Decision", "delay", self.delay)


@final
class RestartTracker:
    """The restart state of one supervised child, applying a :class:`RestartPolicy`.

    Call :meth:`started` each time the child is (re)started and :meth:`exited` each time it
    terminates, then do what the :class:`Decision` says::

        tracker = RestartTracker(RestartPolicy.parse("on-failure"))
        while True:
            child = tether.spawn(argv)
            tracker.started()
            decision = tracker.exited(child.wait())
            if decision.action != "restart":
                break
            time.sleep(decision.delay)

    ``clock`` must be monotonic (wall-clock jumps would corrupt the window) and ``random``
    must return numbers in ``[0, 1]``; tests pass fakes for both. A tracker is not thread-safe:
    it belongs to whoever supervises its child.
    """

    __slots__ = (
        "_attempt",
        "_clock",
        "_history",
        "_needs_ready",
        "_policy",
        "_random",
        "_ready",
        "_restarts",
        "_started",
    )

    def __init__(
        self,
        policy: RestartPolicy,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if not isinstance(policy, RestartPolicy):
            raise TypeError(f"policy must be a RestartPolicy, not {type(policy).__name__}")
        self._policy = policy
        self._clock = clock
        self._random = random
        self._attempt = 0
        self._restarts = 0
        self._history: deque[float] = deque()
        self._started: float | None = None
        self._needs_ready = False
        self._ready = False

    @property
    def policy(self) -> RestartPolicy:
        """The policy this tracker applies."""
        return self._policy

    @property
    def attempt(self) -> int:
        """Which delay of the backoff schedule the next restart gets: 0 for the first, reset to 0
        by a run that lasts at least :attr:`RestartPolicy.reset_after`."""
        return self._attempt

    @property
    def restarts(self) -> int:
        """How many restarts this tracker has decided on, in all."""
        return self._restarts

    @property
    def history(self) -> tuple[float, ...]:
        """The clock times at which the restarts still inside the window were decided, oldest
        first."""
        now = self._clock()
        return tuple(t for t in self._history if self._in_window(t, now))

    def started(self, *, needs_ready: bool = False) -> None:
        """Record that a run of the child begins now.

        ``needs_ready=True`` (a child spawned with ``ready=``): the run has come up only
        once :meth:`became_ready` is called. Until then it does not reset the backoff,
        however long it lasts, and an exit counts as a failed start (``"on-failure"``
        restarts even an ``Exited(0)``).
        """
        self._started = self._clock()
        self._needs_ready = needs_ready
        self._ready = False

    def became_ready(self) -> None:
        """Record that the current run said it is ready."""
        self._ready = True

    def exited(self, status: Status) -> Decision:
        """Record that the child ended with ``status`` and decide what happens next.

        A run that lasted at least :attr:`RestartPolicy.reset_after` since :meth:`started`
        resets :attr:`attempt` first (a run whose start was not recorded never does, nor
        one started with ``needs_ready=True`` that never became ready). Then the
        decision is ``"stop"`` if the policy does not restart this status; ``"give_up"`` if the
        window already holds :attr:`RestartPolicy.max_restarts` restarts (never when the window
        is 0); else ``"restart"``, after the backoff delay for :attr:`attempt`, which the restart
        advances; the restart is counted in the window at the time of this call. Giving up is not
        sticky: the decision is made afresh on every call. Raises :exc:`ValueError` for a status
        that is not terminal.
        """
        if not isinstance(status, Status):
            raise TypeError(f"status must be a Status, not {type(status).__name__}")
        if not status.terminated:
            raise ValueError(f"the child has not terminated: it {status}")
        now = self._clock()
        policy = self._policy
        came_up = self._ready or not self._needs_ready
        if came_up and self._started is not None and now - self._started >= policy.reset_after:
            self._attempt = 0
        self._started = None
        failed_start = not came_up and policy.mode == "on-failure"
        if not (policy.wants_restart(status) or failed_start):
            return Decision("stop", 0.0, f"{status}: not restarting (restart={policy.mode!r})")
        limited = policy.window > 0
        while self._history and not self._in_window(self._history[0], now):
            self._history.popleft()
        if limited and len(self._history) >= policy.max_restarts:
            if policy.max_restarts == 0:
                budget = "no restarts allowed (max_restarts=0)"
            else:
                budget = f"{policy.max_restarts} restarts {_within(policy.window)}"
            return Decision("give_up", 0.0, f"{status}: {budget}: giving up")
        delay = policy.backoff.delay(self._attempt, self._random)
        self._attempt += 1
        self._restarts += 1
        reason = f"{status}{'' if came_up else ' before it was ready'}: restarting in {delay:.3g}s"
        if limited:
            self._history.append(now)
            reason += (
                f" (restart {len(self._history)} of {policy.max_restarts} {_within(policy.window)})"
            )
        return Decision("restart", delay, reason)

    def reset(self) -> None:
        """Forget the attempt counter, the window and any run in progress, as after
        ``systemctl reset-failed``: for a child started again by hand after it was given up.
        :attr:`restarts` keeps counting."""
        self._attempt = 0
        self._history.clear()
        self._started = None

    def _in_window(self, t: float, now: float) -> bool:
        """``True`` if a restart decided at ``t`` still counts against the budget at ``now``."""
        return now - t < self._policy.window

    def __repr__(self) -> str:
        return (
            f"RestartTracker(policy={self._policy!r}, attempt={self._attempt}, "
            f"restarts={self._restarts})"
        )

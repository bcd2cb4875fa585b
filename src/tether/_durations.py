"""Durations and deadlines: one way to turn "wait this long" into something the kernel takes.

A timeout is a number of seconds, ``None`` meaning "for ever". ``math.inf`` and very
large numbers (months) mean the same as ``None``, as they do in ``subprocess`` and anyio:
naive code turns them into ``OverflowError`` (``poll`` takes a C ``int`` of
milliseconds) or, worse, into an immediate timeout. NaN and negative durations are
mistakes and raise ``ValueError``. ``poll`` and ``epoll`` count whole milliseconds, so a
wait is rounded *up*: it never returns before its time.

A deadline is a point on ``time.monotonic()``'s clock, or ``None``; :func:`remaining`
turns it back into a timeout that never goes below zero.
"""

from __future__ import annotations

import math
import time

__all__ = ["check_duration", "deadline_after", "poll_millis", "poll_seconds", "remaining"]

_MAX_POLL_MILLIS = 2**31 - 1  # poll() and epoll_wait() take a C int: about 24.8 days


def check_duration(value: float, name: str) -> float:
    """*value* as a float of seconds; ``ValueError`` for NaN or a negative number.

    ``math.inf`` is accepted and means "for ever"; ``bool`` and non-numbers are a
    ``TypeError``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    seconds = float(value)
    if math.isnan(seconds):
        raise ValueError(f"{name} must be a number of seconds, not NaN")
    if seconds < 0:
        raise ValueError(f"{name} must not be negative, not {value!r}")
    return seconds


def deadline_after(timeout: float | None) -> float | None:
    """The deadline *timeout* seconds from now; None for no timeout (``None`` or ``inf``).

    NaN is a ``ValueError``: it would otherwise compare false with every clock reading.
    """
    if timeout is None or math.isinf(timeout):
        return None
    if math.isnan(timeout):
        raise ValueError("a timeout must be a number of seconds, not NaN")
    return time.monotonic() + timeout


def remaining(deadline: float | None) -> float | None:
    """Seconds left until *deadline*, never below zero; None without a deadline."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def poll_millis(timeout: float | None) -> int | None:
    """*timeout* as ``poll``'s whole milliseconds, rounded up; None (block) without one.

    A wait longer than ``poll`` can express (about 24.8 days) is cut to that: callers
    hold a deadline and look at the clock again when the wait returns.
    """
    if timeout is None or math.isinf(timeout):
        return None
    return min(math.ceil(timeout * 1000), _MAX_POLL_MILLIS)


def poll_seconds(timeout: float | None) -> float | None:
    """*timeout* cut to what ``poll`` can express, for APIs that take seconds (selectors)."""
    if timeout is None or math.isinf(timeout):
        return None
    return min(timeout, _MAX_POLL_MILLIS / 1000)

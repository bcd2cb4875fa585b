"""Command-line values: durations, signals and ``prlimit(1)``-style limits, parsed strictly.

The hazard is the silent reinterpretation: ``prlimit --as=1G`` once meant one byte,
``timeout 1x`` is an error only if the parser says so, and a limit that does not fit
its resource's unit must not be rounded into one that does. Every value is parsed in
full or refused with a one-line ``ValueError`` naming it; the command line turns that
into exit status 125.
"""

from __future__ import annotations

import math
import re
import resource
import signal

from ..limits import Limits

__all__ = ["LIMIT_OPTIONS", "PRESETS", "parse_duration", "parse_limit", "parse_signal"]

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)?")
_SECONDS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

LIMIT_OPTIONS = {
    "as": "address_space",
    "core": "core",
    "cpu": "cpu",
    "data": "data",
    "fsize": "fsize",
    "locks": "locks",
    "memlock": "memlock",
    "msgqueue": "msgqueue",
    "nice": "nice",
    "nofile": "nofile",
    "nproc": "nproc",
    "rss": "rss",
    "rtprio": "rtprio",
    "rttime": "rttime",
    "sigpending": "sigpending",
    "stack": "stack",
}
"""``prlimit(1)``'s option names, and the :class:`tether.Limits` field of each."""

PRESETS = ("sandbox", "no-core-dumps", "max-open-files")
"""The names ``--preset`` takes: the presets of :mod:`tether.limits`."""


def parse_duration(text: str) -> float:
    """Seconds from ``timeout(1)``'s spelling: a number with ``ms``, ``s``, ``m``, ``h`` or
    ``d``; ``inf`` (or ``infinity``) for ever. Negative, NaN and anything else: ValueError."""
    cleaned = text.strip().lower()
    if cleaned in ("inf", "infinity"):
        return math.inf
    match = _DURATION.fullmatch(cleaned)
    if match is None:
        raise ValueError(f"invalid duration {text!r} (a number with ms, s, m, h or d)")
    return float(match[1]) * _SECONDS[match[2]]


def parse_signal(text: str) -> int:
    """A signal number from ``TERM``, ``SIGTERM``, ``sigterm`` or ``15``."""
    cleaned = text.strip().upper()
    if cleaned.isdigit():
        number = int(cleaned)
        if 0 < number < signal.NSIG:
            return number
        raise ValueError(f"invalid signal number {text!r}")
    name = cleaned if cleaned.startswith("SIG") else "SIG" + cleaned
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ValueError(f"unknown signal {text!r}") from None


def parse_limit(option: str, text: str) -> Limits:
    """``--OPTION=SOFT[:HARD]`` as a :class:`Limits` with that one field.

    ``N`` sets both; ``SOFT:HARD`` each; ``SOFT:`` and ``:HARD`` leave the other as this
    process has it (so the child inherits it). Sizes take ``K``, ``M``, ``G``, ``T``
    (powers of 1024, also ``KiB``...), times their units, and ``unlimited`` anything.
    """
    field = LIMIT_OPTIONS[option]
    current = resource.getrlimit(Limits(**{field: 0}).items()[0][1])
    if ":" in text:
        soft_text, _, hard_text = text.partition(":")
        if not soft_text and not hard_text:
            raise ValueError(f"--{option}={text}: give a soft or a hard limit")
        soft: int | str = soft_text or current[0]
        hard: int | str = hard_text or current[1]
        value: int | str | tuple[int | str, int | str] = (soft, hard)
    else:
        value = text
    if not text.strip():
        raise ValueError(f"--{option}: empty value")
    try:
        return Limits(**{field: value})
    except ValueError as exc:
        raise ValueError(f"--{option}={text}: {str(exc).split(': ', 1)[-1]}") from None

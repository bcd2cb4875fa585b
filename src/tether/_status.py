"""Wait statuses, decoded into small immutable values.

A *wait status* is not an exit code. When a parent reaps a child with ``waitpid(2)`` or
``wait4(2)``, the kernel hands back one 16-bit word that packs several facts together: the low
seven bits hold the number of the signal that killed the child (0 if it exited, 0x7f if it only
stopped), bit 0x80 says whether a core was dumped, and the high byte holds the exit code or the
stop signal. The single value 0xffff means the child was resumed by ``SIGCONT``. Read as an exit
code, the word is wrong in every case but success: ``exit(1)`` arrives as 256, and a child killed
by ``SIGKILL`` arrives as 9, indistinguishable from ``exit(9)`` once the bits are thrown away.
``waitid(2)`` reports the same facts already taken apart, as ``si_code`` and ``si_status``.

:func:`decode_status` and :func:`decode_waitid` turn either form into one of four frozen values,
:class:`Exited`, :class:`Signaled`, :class:`Stopped` and :class:`Continued`, all subclasses of
:class:`Status`, which can be compared, hashed, matched with ``match`` and printed for people.
"""

from __future__ import annotations

import os
import resource
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from signal import Signals
from typing import Final

from typing_extensions import Self, final

__all__ = [
    "Continued",
    "Exited",
    "Rusage",
    "Signaled",
    "Status",
    "Stopped",
    "decode_status",
    "decode_waitid",
    "rusage_of",
]

_NSIG: Final = signal.NSIG
_SIGRTMIN: Final = int(signal.SIGRTMIN)
_SIGRTMAX: Final = int(signal.SIGRTMAX)
_CLD_EXITED: Final = os.CLD_EXITED
_CLD_KILLED: Final = os.CLD_KILLED
_CLD_DUMPED: Final = os.CLD_DUMPED
_CLD_STOPPED: Final = os.CLD_STOPPED
_CLD_TRAPPED: Final = os.CLD_TRAPPED
_CLD_CONTINUED: Final = os.CLD_CONTINUED
# Iterating an enum skips aliases, so each number maps to its canonical name (SIGABRT, not SIGIOT).
_SIGNALS: Final[dict[int, Signals]] = {member.value: member for member in Signals}


def _normalise_signal(value: Signals | int) -> Signals | int:
    """Return ``value`` as a :class:`signal.Signals` member if it is one, else as a plain int."""
    if not isinstance(value, int):
        raise TypeError(f"signal must be an int, not {type(value).__name__}")
    member = _SIGNALS.get(value)
    if member is not None:
        return member
    if not 1 <= value < _NSIG:
        raise ValueError(f"signal number must be in 1..{_NSIG - 1}, got {value}")
    return int(value)


def signal_name(signum: Signals | int) -> str:
    """Name a signal the way ``kill -l`` does: ``SIGKILL``, ``SIGRTMIN+1``, ``SIGRTMAX-2``."""
    if isinstance(signum, Signals):
        return signum.name
    if _SIGRTMIN < signum < _SIGRTMAX:
        if signum - _SIGRTMIN <= _SIGRTMAX - signum:
            return f"SIGRTMIN+{signum - _SIGRTMIN}"
        return f"SIGRTMAX-{_SIGRTMAX - signum}"
    try:
        return Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@final
@dataclass(frozen=True, slots=True)
class Rusage:
    """Resources used by a reaped child (and the children it reaped)."""

    user_time: float
    """CPU time spent in user mode, in seconds."""
    system_time: float
    """CPU time spent in the kernel on the child's behalf, in seconds."""
    max_rss: int
    """Peak resident set size, in bytes."""

    @classmethod
    def from_struct(cls, ru: resource.struct_rusage) -> Rusage:
        """Build from the ``struct_rusage`` returned by :func:`os.wait4` or
        :func:`resource.getrusage` (Linux reports ``ru_maxrss`` in KiB)."""
        return cls(ru.ru_utime, ru.ru_stime, ru.ru_maxrss * 1024)

    @classmethod
    def from_values(
        cls, utime_sec: int, utime_usec: int, stime_sec: int, stime_usec: int, maxrss_kib: int
    ) -> Rusage:
        """Build from the raw fields of a C ``struct rusage`` (two ``timeval`` values and
        ``ru_maxrss`` in KiB)."""
        return cls(
            utime_sec + utime_usec / 1_000_000,
            stime_sec + stime_usec / 1_000_000,
            maxrss_kib * 1024,
        )


@dataclass(frozen=True, slots=True)
class Status(ABC):
    """What a wait reported about a child: :class:`Exited`, :class:`Signaled`, :class:`Stopped`
    or :class:`Continued`.

    Only the four subclasses are ever instantiated. Every variant answers the same questions
    (:attr:`returncode`, :attr:`exit_code`, :attr:`signal`, ...), answering ``None`` or ``False``
    where the question does not apply, so callers rarely need ``isinstance``. Equality and hashing
    ignore :attr:`rusage`. ``str(status)`` is a phrase: ``exited with status 3``, ``killed by
    SIGKILL (core dumped)``, ``stopped by SIGSTOP``, ``trapped by SIGTRAP`` or ``continued``.
    """

    rusage: Rusage | None = field(default=None, kw_only=True, compare=False)
    """Resources used by the child, when the wait that produced this status measured them."""

    @property
    @abstractmethod
    def returncode(self) -> int | None:
        """The :mod:`subprocess` convention: the exit code, or ``-N`` for a child killed by signal
        ``N``; ``None`` for :class:`Stopped` and :class:`Continued`, which are not terminal."""

    @property
    def terminated(self) -> bool:
        """``True`` if the child is gone (:class:`Exited` or :class:`Signaled`)."""
        return self.returncode is not None

    @property
    def success(self) -> bool:
        """``True`` only for ``Exited(0)``."""
        return False

    @property
    def exit_code(self) -> int | None:
        """The exit code of an :class:`Exited` child; ``None`` otherwise."""
        return None

    @property
    def signal(self) -> Signals | int | None:
        """The signal that killed (:class:`Signaled`) or stopped (:class:`Stopped`) the child;
        ``None`` otherwise."""
        return None

    @property
    def core_dumped(self) -> bool:
        """``True`` if the child was killed by a signal and the kernel wrote a core dump."""
        return False

    def with_rusage(self, rusage: Rusage | None) -> Self:
        """Return a copy of this status carrying ``rusage``."""
        return replace(self, rusage=rusage)

    def __repr__(self) -> str:
        args = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.name != "rusage"]
        if self.rusage is not None:
            args.append(f"rusage={self.rusage!r}")
        return f"{type(self).__name__}({', '.join(args)})"


# A subclass field that shadows a property of Status is declared with an explicit ``field()``:
# otherwise ``dataclass`` would find the inherited property and take it for the field's default.


@final
@dataclass(frozen=True, slots=True, repr=False)
class Exited(Status):
    """The child called ``exit()`` (or returned from ``main``) with :attr:`exit_code`."""

    exit_code: int = field()
    """The exit code, 0..255."""

    def __post_init__(self) -> None:
        if not isinstance(self.exit_code, int):
            raise TypeError(f"exit_code must be an int, not {type(self.exit_code).__name__}")
        if not 0 <= self.exit_code <= 255:
            raise ValueError(f"exit_code must be in 0..255, got {self.exit_code}")

    @property
    def returncode(self) -> int:
        """The exit code."""
        return self.exit_code

    @property
    def success(self) -> bool:
        """``True`` if the exit code is 0."""
        return self.exit_code == 0

    def __str__(self) -> str:
        return f"exited with status {self.exit_code}"


@final
@dataclass(frozen=True, slots=True, repr=False)
class Signaled(Status):
    """The child was killed by :attr:`signal`."""

    signal: Signals | int = field()
    """The fatal signal: a :class:`signal.Signals` member when the enum knows the number."""
    core_dumped: bool = False
    """``True`` if the kernel wrote a core dump."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "signal", _normalise_signal(self.signal))

    @property
    def returncode(self) -> int:
        """Minus the signal number, as :mod:`subprocess` reports it."""
        return -self.signal

    def __str__(self) -> str:
        suffix = " (core dumped)" if self.core_dumped else ""
        return f"killed by {signal_name(self.signal)}{suffix}"


@final
@dataclass(frozen=True, slots=True, repr=False)
class Stopped(Status):
    """The child was stopped by :attr:`signal` and can be resumed with ``SIGCONT``.

    :attr:`trapped` is ``True`` for a ptrace stop (``CLD_TRAPPED`` from ``waitid``); a raw wait
    status cannot tell the two apart, so :func:`decode_status` always reports ``False``.
    """

    signal: Signals | int = field()
    """The stop signal: a :class:`signal.Signals` member when the enum knows the number."""
    trapped: bool = False
    """``True`` if the child stopped under ptrace rather than by job control."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "signal", _normalise_signal(self.signal))

    @property
    def returncode(self) -> None:
        """Always ``None``: a stopped child has not finished."""
        return None

    def __str__(self) -> str:
        verb = "trapped" if self.trapped else "stopped"
        return f"{verb} by {signal_name(self.signal)}"


@final
@dataclass(frozen=True, slots=True, repr=False)
class Continued(Status):
    """The stopped child was resumed by ``SIGCONT``."""

    @property
    def returncode(self) -> None:
        """Always ``None``: a continued child has not finished."""
        return None

    def __str__(self) -> str:
        return "continued"


def decode_status(raw_wait_status: int) -> Status:
    """Decode the wait status returned by :func:`os.waitpid`, :func:`os.wait4` and friends.

    The result agrees with :func:`os.WIFEXITED` and the other ``os.W*`` functions for every value
    they accept, including words the kernel never produces: the core-dump bit of an exit is
    ignored (``0x80`` decodes as ``Exited(0)``), as is the high byte of a signal death. Raises
    :exc:`ValueError` for anything outside 0..0xffff (ptrace event bits included), for words no
    macro accepts (``0x??ff`` other than ``0xffff``), and for signal numbers 0 or ``>= NSIG``
    (``0x7f``, a stop by signal 0, among them).
    """
    raw = raw_wait_status
    if not 0 <= raw <= 0xFFFF:
        raise ValueError(f"wait status must be in 0..0xffff, got {raw!r}")
    low = raw & 0x7F
    try:
        if low == 0:
            return Exited(raw >> 8)
        if low != 0x7F:
            return Signaled(low, raw & 0x80 != 0)
        if raw & 0x80 == 0:
            return Stopped(raw >> 8)
    except ValueError as exc:
        raise ValueError(f"invalid wait status {raw:#06x}: {exc}") from exc
    if raw == 0xFFFF:
        return Continued()
    raise ValueError(f"invalid wait status {raw:#06x}")


def decode_waitid(si_code: int, si_status: int, rusage: Rusage | None = None) -> Status:
    """Decode the ``si_code`` and ``si_status`` of a ``waitid(2)`` result.

    ``CLD_EXITED`` gives :class:`Exited`, ``CLD_KILLED`` and ``CLD_DUMPED`` give
    :class:`Signaled`, ``CLD_STOPPED`` and ``CLD_TRAPPED`` give :class:`Stopped` and
    ``CLD_CONTINUED`` gives :class:`Continued` (its ``si_status``, always ``SIGCONT``, is ignored).
    The status carries *rusage*. Raises :exc:`ValueError` for any other ``si_code`` or an
    out-of-range ``si_status``.
    """
    # Every reap ends here, just after the child's exit evicted the caches: the common
    # results are built without the dataclass machinery (the values are the ones
    # __init__ would store), anything unusual takes the validating constructors.
    if si_code == _CLD_EXITED:
        if 0 <= si_status <= 255:
            status: Status = _new(Exited)
            _set_exit_code(status, si_status)
            _set_exited_rusage(status, rusage)
            return status
        return Exited(si_status, rusage=rusage)
    if si_code in (_CLD_KILLED, _CLD_DUMPED):
        member = _SIGNALS.get(si_status)
        if member is None:
            return Signaled(si_status, si_code == _CLD_DUMPED, rusage=rusage)
        status = _new(Signaled)
        _set_signal(status, member)
        _set_core_dumped(status, si_code == _CLD_DUMPED)
        _set_signaled_rusage(status, rusage)
        return status
    if si_code == _CLD_STOPPED:
        return Stopped(si_status, rusage=rusage)
    if si_code == _CLD_TRAPPED:
        return Stopped(si_status, True, rusage=rusage)
    if si_code == _CLD_CONTINUED:
        return Continued(rusage=rusage)
    raise ValueError(f"unknown waitid si_code {si_code!r}")


def rusage_of(user_time: float, system_time: float, max_rss: int) -> Rusage:
    """``Rusage(user_time, system_time, max_rss)`` without the dataclass ``__init__``, for
    the values a reap just measured (seconds, seconds, bytes)."""
    usage: Rusage = _new(Rusage)
    _set_user_time(usage, user_time)
    _set_system_time(usage, system_time)
    _set_max_rss(usage, max_rss)
    return usage


def _slot_setter(cls: type, name: str) -> Callable[[object, object], None]:
    """The ``__set__`` of the slot that *cls*'s instances read *name* from: the nearest in
    the MRO (on 3.10, ``slots=True`` gives a subclass its own slot for every inherited
    field, which hides the base class's)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            setter: Callable[[object, object], None] = vars(klass)[name].__set__
            return setter
    raise AttributeError(f"{cls.__name__} has no slot {name!r}")


# The slots' own descriptors store past the frozen __setattr__, as dataclass __init__ does.
_new = object.__new__
_set_exited_rusage = _slot_setter(Exited, "rusage")
_set_signaled_rusage = _slot_setter(Signaled, "rusage")
_set_exit_code = _slot_setter(Exited, "exit_code")
_set_signal = _slot_setter(Signaled, "signal")
_set_core_dumped = _slot_setter(Signaled, "core_dumped")
_set_user_time = _slot_setter(Rusage, "user_time")
_set_system_time = _slot_setter(Rusage, "system_time")
_set_max_rss = _slot_setter(Rusage, "max_rss")

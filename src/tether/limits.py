"""Resource limits (``RLIMIT_*``) for a child, written in units people use.

Every process carries a soft and a hard value for each of sixteen ``setrlimit(2)`` resources. The
kernel enforces the soft value; the process may move it anywhere up to the hard value, and may
lower the hard value, but raising a hard value needs ``CAP_SYS_RESOURCE`` (being root is not
enough: a container usually drops that capability). The kernel speaks in bare integers whose
unit depends on the resource: bytes, seconds, microseconds or counts.

:class:`Limits` holds one optional ``(soft, hard)`` pair per resource, accepts ``"512M"``,
``"10s"``, ``"500ms"`` and ``"unlimited"``, checks a request before it is used
(:meth:`Limits.check`), and applies it to a running process with ``prlimit(2)``
(:meth:`Limits.apply`). Limits are inherited across ``fork`` and ``execve``, so a set applied in
the child just before ``exec`` binds the new program and everything it starts.

Presets: :data:`NO_CORE_DUMPS`, :data:`MAX_OPEN_FILES` and :data:`SANDBOX`, each documented with
the reason for its numbers. Compose them with ``|``: ``SANDBOX | Limits(cpu="5s")``.
"""

from __future__ import annotations

import os
import re
import resource
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Final, TypeAlias

from typing_extensions import Self, final

__all__ = ["MAX_OPEN_FILES", "NO_CORE_DUMPS", "SANDBOX", "LimitValue", "Limits"]

LimitValue: TypeAlias = int | str | tuple[int | str, int | str]
"""What a :class:`Limits` field accepts: an int or a string with units (both soft and hard), or a
``(soft, hard)`` tuple of those."""

_INF: Final = resource.RLIM_INFINITY
_MAX: Final = 2**63 - 1  # CPython converts limits through a C long
_CAP_SYS_RESOURCE: Final = 24

# Units per kind, in the kernel's base unit. Sizes are matched case-insensitively, times exactly
# (so that "M" stays a size and "m" a minute).
_SIZE: Final = {"": 1, "b": 1} | {
    form: 1024**power
    for power, letter in enumerate("kmgt", start=1)
    for form in (letter, letter + "ib")
}
_S: Final = 10**6  # microseconds per second
_TIME_US: Final = {
    "us": 1,
    "µs": 1,
    "ms": 1000,
    "s": _S,
    "m": 60 * _S,
    "min": 60 * _S,
    "h": 3600 * _S,
}
_KINDS: Final = {
    "size": "a size in bytes (units K, M, G, T, KiB, MiB, GiB, TiB)",
    "s": "a time in seconds (units s, m or min, h)",
    "us": "a time in microseconds (units us, ms, s, m or min, h)",
    "count": "a count (no unit)",
}
# How repr writes each kind: the first unit that divides the value exactly.
_UNITS_OUT: Final[dict[str, list[tuple[str, int]]]] = {
    "size": [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1)],
    "s": [("h", 3600), ("min", 60), ("s", 1)],
    "us": [("h", 3600 * _S), ("min", 60 * _S), ("s", _S), ("ms", 1000), ("us", 1)],
    "count": [("", 1)],
}
_RESOURCES: Final[dict[str, tuple[int, str]]] = {
    "cpu": (resource.RLIMIT_CPU, "s"),
    "fsize": (resource.RLIMIT_FSIZE, "size"),
    "data": (resource.RLIMIT_DATA, "size"),
    "stack": (resource.RLIMIT_STACK, "size"),
    "core": (resource.RLIMIT_CORE, "size"),
    "rss": (resource.RLIMIT_RSS, "size"),
    "nproc": (resource.RLIMIT_NPROC, "count"),
    "nofile": (resource.RLIMIT_NOFILE, "count"),
    "memlock": (resource.RLIMIT_MEMLOCK, "size"),
    "address_space": (resource.RLIMIT_AS, "size"),
    "locks": (getattr(resource, "RLIMIT_LOCKS", 10), "count"),  # 10 on Linux; CPython lacks it
    "sigpending": (resource.RLIMIT_SIGPENDING, "count"),
    "msgqueue": (resource.RLIMIT_MSGQUEUE, "size"),
    "nice": (resource.RLIMIT_NICE, "count"),
    "rtprio": (resource.RLIMIT_RTPRIO, "count"),
    "rttime": (resource.RLIMIT_RTTIME, "us"),
}
_NUMBER: Final = re.compile(r"\s*(-?\d+(?:\.\d+)?)\s*([^\d\s.]*)\s*")


def _parse_one(name: str, kind: str, value: int | str) -> int:
    """Turn one soft or hard value into the kernel's integer, or raise naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"Limits.{name}: expected an int or a str, not {type(value).__name__}")
    if isinstance(value, str):
        if value.strip().lower() in ("unlimited", "infinity"):
            return _INF
        match = _NUMBER.fullmatch(value)
        if match is None:
            raise ValueError(f"Limits.{name}: cannot parse {value!r} as {_KINDS[kind]}")
        number, unit = Fraction(match[1]), match[2]
        if number < 0:
            raise ValueError(f"Limits.{name}: negative value {value!r}")
        if kind == "size" and unit.lower() in _SIZE:
            number *= _SIZE[unit.lower()]
        elif kind in ("s", "us") and unit in _TIME_US:
            number *= Fraction(_TIME_US[unit], _S if kind == "s" else 1)
        elif unit:
            family = "an unknown"
            if unit in _TIME_US or unit.lower() in _SIZE:
                family = "a time" if unit in _TIME_US else "a size"
            raise ValueError(
                f"Limits.{name}: {value!r} has {family} unit, but {name} is {_KINDS[kind]}"
            )
        if number.denominator != 1:
            raise ValueError(
                f"Limits.{name}: {value!r} is not a whole number of the kernel's unit; "
                f"{name} is {_KINDS[kind]}"
            )
        value = int(number)
    if value == _INF:
        return _INF
    if value < 0:
        raise ValueError(f"Limits.{name}: negative value {value}")
    if value > _MAX:
        raise ValueError(f"Limits.{name}: {value} is too large (the maximum is {_MAX})")
    return value


def _above(a: int, b: int) -> bool:
    """``a > b``, with :data:`resource.RLIM_INFINITY` above every number."""
    return a != b and (a == _INF or (b != _INF and a > b))


def _format(kind: str, value: int) -> str:
    """Write a kernel value back in the largest unit that divides it exactly."""
    if value == _INF:
        return "unlimited"
    if value == 0:
        return "0"
    unit, scale = next((u, s) for u, s in _UNITS_OUT[kind] if value % s == 0)
    return f"{value // scale}{unit}"


def _literal(kind: str, value: int) -> str:
    """:func:`_format` as Python source: a bare count stays an int, anything with a unit a str."""
    text = _format(kind, value)
    return text if text.isdigit() else repr(text)


def _has_cap_sys_resource() -> bool:
    """Whether this process may raise hard limits (``CAP_SYS_RESOURCE`` in its effective set)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_RESOURCE & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def _nr_open() -> int | None:
    """``fs.nr_open``, the ceiling on ``RLIMIT_NOFILE`` that no capability lifts."""
    try:
        with open("/proc/sys/fs/nr_open") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


@final
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Limits:
    """One optional ``(soft, hard)`` pair per ``RLIMIT_*`` resource; ``None`` leaves it inherited.

    Each field takes an int, a string with units or ``"unlimited"`` (for both soft and hard), or
    a ``(soft, hard)`` tuple of those. Sizes take ``K``, ``M``, ``G``, ``T`` (powers of 1024, any
    case, also ``KiB`` ...); times take ``us``, ``ms``, ``s``, ``m``/``min``, ``h``; a bare number
    is in the kernel's unit. Every set field is stored as ``(soft, hard)`` ints, with
    :data:`resource.RLIM_INFINITY` for unlimited, so ``Limits(cpu="1m") == Limits(cpu=60)``.
    Bad values raise :exc:`ValueError` naming the field, any negative number among them but
    :data:`resource.RLIM_INFINITY`: what ``getrlimit`` returns for unlimited must be accepted
    back, and in CPython it is ``-1``, so ``-1`` also means unlimited. Write ``"unlimited"``.
    """

    cpu: tuple[int, int] | None = None
    """CPU time in seconds: ``SIGXCPU`` at the soft limit (then every second), ``SIGKILL`` at
    the hard limit."""
    fsize: tuple[int, int] | None = None
    """Largest file the process may write, in bytes; beyond it ``SIGXFSZ``, or ``EFBIG`` where
    that signal is ignored (as Python does)."""
    data: tuple[int, int] | None = None
    """Data segment (heap and, since Linux 4.7, private mappings), in bytes."""
    stack: tuple[int, int] | None = None
    """Main thread stack, in bytes; also the default size of new thread stacks."""
    core: tuple[int, int] | None = None
    """Largest core dump, in bytes; 0 disables core dumps."""
    rss: tuple[int, int] | None = None
    """Resident set size in bytes; ignored by Linux since 2.6."""
    nproc: tuple[int, int] | None = None
    """Processes (threads included) of the *real user*: all of that user's processes count, not
    just this one's children. Checked at ``fork``; not enforced for root, nor for holders of
    ``CAP_SYS_RESOURCE`` or ``CAP_SYS_ADMIN``."""
    nofile: tuple[int, int] | None = None
    """Highest file descriptor number plus one; the hard limit cannot exceed ``fs.nr_open``."""
    memlock: tuple[int, int] | None = None
    """Memory locked with ``mlock`` and friends, in bytes."""
    address_space: tuple[int, int] | None = None
    """Virtual address space (``RLIMIT_AS``) in bytes; ``mmap`` and ``brk`` fail beyond it."""
    locks: tuple[int, int] | None = None
    """File locks; ignored by Linux since 2.4.25."""
    sigpending: tuple[int, int] | None = None
    """Signals queued for the real user."""
    msgqueue: tuple[int, int] | None = None
    """Bytes of POSIX message queues for the real user."""
    nice: tuple[int, int] | None = None
    """Ceiling on raising the nice value: the process may go down to nice ``20 - limit``."""
    rtprio: tuple[int, int] | None = None
    """Highest real-time priority the process may set."""
    rttime: tuple[int, int] | None = None
    """CPU time in microseconds under a real-time policy without a blocking system call."""

    if TYPE_CHECKING:  # what the constructor accepts; __post_init__ narrows it to the fields

        def __init__(
            self,
            *,
            cpu: LimitValue | None = None,
            fsize: LimitValue | None = None,
            data: LimitValue | None = None,
            stack: LimitValue | None = None,
            core: LimitValue | None = None,
            rss: LimitValue | None = None,
            nproc: LimitValue | None = None,
            nofile: LimitValue | None = None,
            memlock: LimitValue | None = None,
            address_space: LimitValue | None = None,
            locks: LimitValue | None = None,
            sigpending: LimitValue | None = None,
            msgqueue: LimitValue | None = None,
            nice: LimitValue | None = None,
            rtprio: LimitValue | None = None,
            rttime: LimitValue | None = None,
        ) -> None: ...

    def __post_init__(self) -> None:
        for name, (_, kind) in _RESOURCES.items():
            value: LimitValue | None = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, tuple):
                if len(value) != 2:
                    raise ValueError(f"Limits.{name}: expected (soft, hard), got {value!r}")
                soft, hard = (_parse_one(name, kind, v) for v in value)
            else:
                soft = hard = _parse_one(name, kind, value)
            if _above(soft, hard):
                soft_text, hard_text = _format(kind, soft), _format(kind, hard)
                raise ValueError(
                    f"Limits.{name}: soft limit {soft_text} is above hard limit {hard_text}"
                )
            object.__setattr__(self, name, (soft, hard))

    @classmethod
    def from_mapping(cls, limits: Mapping[str, LimitValue | None]) -> Self:
        """Build from ``{"nofile": 1024, ...}``; an unknown name raises :exc:`ValueError`."""
        for name in limits:
            if name not in _RESOURCES:
                raise ValueError(f"unknown limit {name!r}; known: {', '.join(_RESOURCES)}")
        return cls(**limits)

    @classmethod
    def read(cls, pid: int) -> Self:
        """The limits of a running process (0 for this one), every field set, via ``prlimit``."""
        return cls(**{name: _prlimit(name, pid) for name in _RESOURCES})

    def items(self) -> list[tuple[str, int, int, int]]:
        """``(field name, RLIMIT_* constant, soft, hard)`` for each set field, in field order."""
        return [
            (name, res, *pair)
            for name, (res, _) in _RESOURCES.items()
            if (pair := getattr(self, name)) is not None
        ]

    def check(
        self,
        current: Callable[[int], tuple[int, int]] = resource.getrlimit,
        privileged: bool | None = None,
    ) -> None:
        """Raise :exc:`ValueError` naming the first limit that :meth:`apply` would be refused.

        A hard limit above the current one (``current(RLIMIT_*)[1]``, this process's by default)
        needs ``privileged``, which defaults to holding ``CAP_SYS_RESOURCE`` (root normally
        does; root in a container often does not). ``nofile`` can never exceed ``fs.nr_open``.
        To check against another process, pass ``current=lambda r: resource.prlimit(pid, r)``.
        :attr:`nproc` is not checked: it counts every process of the real user, and the kernel
        does not enforce it for root.
        """
        if privileged is None:
            privileged = _has_cap_sys_resource()
        for name, res, _, hard in self.items():
            kind = _RESOURCES[name][1]
            if not privileged and _above(hard, current_hard := current(res)[1]):
                raise ValueError(
                    f"Limits.{name}: hard limit {_format(kind, hard)} is above the current hard "
                    f"limit {_format(kind, current_hard)}, and raising it needs CAP_SYS_RESOURCE"
                )
            if name == "nofile" and (nr_open := _nr_open()) is not None and _above(hard, nr_open):
                raise ValueError(f"Limits.nofile: hard limit {hard} is above fs.nr_open {nr_open}")

    def apply(self, pid: int | None = None) -> None:
        """Set every set field on a running process (``None`` or 0: this one) with ``prlimit``.

        Usable as a ``preexec_fn`` (``pid=None``). Fields are applied in order and an
        error stops there, leaving earlier fields applied; the error is re-raised as the same
        exception type with a message naming the limit.
        """
        for name, _, soft, hard in self.items():
            _prlimit(name, pid or 0, (soft, hard))

    def __or__(self, other: Limits) -> Limits:
        """A copy with every field set in ``other`` taking ``other``'s value."""
        if not isinstance(other, Limits):
            return NotImplemented
        return replace(self, **{name: (soft, hard) for name, _, soft, hard in other.items()})

    def __repr__(self) -> str:
        """``Limits(cpu=('30s', '35s'), nofile=256)``: ``eval`` gives an equal value back."""
        parts = []
        for name, _, soft, hard in self.items():
            kind = _RESOURCES[name][1]
            text = _literal(kind, soft)
            if soft != hard:
                text = f"({text}, {_literal(kind, hard)})"
            parts.append(f"{name}={text}")
        return f"Limits({', '.join(parts)})"


def _prlimit(name: str, pid: int, limits: tuple[int, int] | None = None) -> tuple[int, int]:
    """``resource.prlimit`` for one field, with errors re-raised naming it."""
    res = _RESOURCES[name][0]
    try:
        return resource.prlimit(pid, res) if limits is None else resource.prlimit(pid, res, limits)
    except OSError as exc:
        action = "read" if limits is None else f"set to {limits}"
        message = f"Limits.{name} could not be {action} for pid {pid}: {exc.strerror or exc}"
        raise type(exc)(exc.errno, message) from exc
    except ValueError as exc:
        raise ValueError(
            f"Limits.{name} could not be set to {limits} for pid {pid}: {exc}"
        ) from exc


NO_CORE_DUMPS: Final = Limits(core=0)
"""No core dumps: a crash of a child that holds secrets or large heaps writes nothing to disk."""

MAX_OPEN_FILES: Final = Limits(nofile=resource.getrlimit(resource.RLIMIT_NOFILE)[1])
"""``nofile`` soft limit raised to the hard limit, as read when :mod:`tether.limits` was imported
(later changes to this process's limits are not followed). The soft limit is often kept at 1024
for programs that still use ``select()``; servers that do not can take the whole hard limit."""

SANDBOX: Final = Limits(
    cpu=("30s", "35s"),
    address_space="2GiB",
    fsize="64MiB",
    nofile=256,
    core=0,
    nproc=64,
)
"""Bounds for running untrusted code; compose with ``|`` to adjust.

- ``cpu`` 30 s soft, 35 s hard: ``SIGXCPU`` first, which a program may catch to clean up, then
  ``SIGKILL`` five seconds later. CPU time, not wall time: pair it with a timeout.
- ``address_space`` 2 GiB: counts reserved, not used, memory. A Python 3.11 child that imports
  ``json``, ``ssl`` and ``decimal`` maps about 21 MiB, but each thread adds a stack
  (``RLIMIT_STACK``, often 8 MiB) and may add a 64 MiB glibc malloc arena (eight threads: about
  660 MiB), so 2 GiB leaves room for a couple of dozen threads yet stops runaway allocation.
  Runtimes that reserve address space up front (the JVM, Node's V8) need a larger value or
  ``address_space="unlimited"``, with a cgroup memory limit instead.
- ``fsize`` 64 MiB: enough for logs and scratch files, not enough to fill a disk.
- ``nofile`` 256: a program needs a few dozen descriptors; 256 stops descriptor leaks early.
- ``core`` 0: no core dumps of untrusted code to disk.
- ``nproc`` 64: stops fork bombs, but counts *every* process of the child's real user and is not
  enforced for root (or holders of ``CAP_SYS_RESOURCE``/``CAP_SYS_ADMIN``): run the sandbox as a
  dedicated user for it to mean anything.
"""

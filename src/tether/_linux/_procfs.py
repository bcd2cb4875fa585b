"""``/proc/PID/stat``: a process's state, parent and process group, parsed safely.

The line looks like ``1234 (comm) S 1 1234 ...``, and the hazard is the second field:
``comm`` is the executable's name (or whatever the process wrote to
``/proc/self/comm``), up to 15 bytes of anything but NUL, spaces and parentheses
included. A process named ``x) Z 1 1`` makes a parser that splits on spaces, or
stops at the first ``)``, read a zombie whose parent is init. Only the *last* ``)``
of the line ends the name (no field after it can hold one), so the line is split
there.

A process can vanish between listing ``/proc`` and reading its file, or between
opening the file and reading it (ESRCH): :func:`read_stat` then answers None. A
process that exited but is not reaped yet is still there, in state ``Z``.

Finding the members of a process group means reading every process's file, so
:func:`live_group_members` answers for many groups at once: a supervisor stopping a
thousand trees looks at ``/proc`` once per polling round, not once per tree.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import NamedTuple

__all__ = ["ProcStat", "live_group_members", "parse_stat", "read_stat"]

_READ_SIZE = 512  # the fields read here end within ~100 bytes; comm is at most 64 bytes


class ProcStat(NamedTuple):
    """The fields of ``/proc/PID/stat`` tether uses."""

    comm: str
    """The process's name (``comm``), decoded with replacement for bytes that are not UTF-8."""
    state: str
    """One letter: ``R`` running, ``S`` sleeping, ``Z`` zombie, ``X`` dead, ... (``proc(5)``)."""
    ppid: int
    """The parent's pid (0 for a process whose parent is outside our pid namespace)."""
    pgid: int
    """The process group id."""


def parse_stat(line: bytes) -> ProcStat:
    """Parse the text of a ``/proc/PID/stat`` file; ``ValueError`` if it is not one."""
    opening = line.find(b"(")
    closing = line.rfind(b")")
    if opening < 0 or closing < opening:
        raise ValueError(f"not a /proc/PID/stat line: {line[:100]!r}")
    fields = line[closing + 2 :].split(b" ", 3)
    if len(fields) < 3:
        raise ValueError(f"not a /proc/PID/stat line: {line[:100]!r}")
    comm = line[opening + 1 : closing].decode(errors="replace")
    return ProcStat(comm, fields[0].decode("ascii"), int(fields[1]), int(fields[2]))


def read_stat(pid: int) -> ProcStat | None:
    """The parsed ``/proc/<pid>/stat`` of process *pid*, or None once it has vanished."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        line = os.read(fd, _READ_SIZE)
    except ProcessLookupError:  # reaped after the open
        return None
    finally:
        os.close(fd)
    return parse_stat(line)


def live_group_members(pgids: Collection[int]) -> dict[int, list[int]]:
    """One scan of ``/proc``: for each process group in *pgids* that has a live member
    (not a zombie), the pids of those members. Groups without one are left out.

    Processes we may not read (``hidepid``) are not in a group of ours either.
    """
    found: dict[int, list[int]] = {}
    wanted = frozenset(pgids)
    if not wanted:
        return found
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = read_stat(int(name))
        except OSError:
            continue
        if stat is not None and stat.pgid in wanted and stat.state not in ("Z", "X"):
            found.setdefault(stat.pgid, []).append(int(name))
    return found

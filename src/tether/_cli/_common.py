"""What the commands share: exit statuses, spawn failures as statuses, argument helpers.

``timeout(1)`` fixed the statuses scripts expect: 125 when the tool fails, 126 when
the command is found but cannot be executed, 127 when it is not found, 128+N when the
command was killed by signal N. A :class:`tether.SpawnError` says which it was, and
where: a missing program (``ENOENT`` at ``exec``) is 127, any other ``exec`` failure
(``EACCES``, ``ENOEXEC``, a directory) 126, and a failure before ``exec`` (``chdir``,
``setrlimit``...) is tether's: 125.
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
from collections.abc import Callable
from typing import Any

from .._errors import SpawnError
from .._status import Status
from ..limits import Limits
from ._args import parse_duration, parse_signal

__all__ = [
    "CANNOT_EXECUTE",
    "NOT_FOUND",
    "TETHER_FAILED",
    "CommandError",
    "environment",
    "exit_status",
    "spawn_failure",
    "typed",
]

TETHER_FAILED = 125
CANNOT_EXECUTE = 126
NOT_FOUND = 127


class CommandError(Exception):
    """A failure a command reports as one line on stderr and exit *status*."""

    def __init__(self, message: str, status: int = TETHER_FAILED) -> None:
        super().__init__(message)
        self.status = status


def spawn_failure(exc: SpawnError) -> CommandError:
    """The one-line error and the ``timeout(1)`` status of a failed spawn."""
    what = exc.filename or (exc.argv[0] if exc.argv else "?")
    if exc.stage == "exec":
        status = NOT_FOUND if exc.errno == errno.ENOENT else CANNOT_EXECUTE
        return CommandError(f"cannot run {what!r}: {exc.strerror}", status)
    return CommandError(f"cannot start {what!r}: {exc.strerror} (at {exc.stage})")


def exit_status(status: Status) -> int:
    """The shell's status of a finished command: its exit code, or 128+N for signal N."""
    if status.exit_code is not None:
        return status.exit_code
    if status.signal is not None:
        return 128 + int(status.signal)
    return TETHER_FAILED


def typed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type=`` whose ValueError message reaches the user unchanged."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(parse, "__name__", "value").replace("parse_", "")
    return convert


DURATION = typed(parse_duration)
SIGNAL = typed(parse_signal)


def environment(assignments: list[str]) -> dict[str, str] | None:
    """This process's environment with each ``K=V`` of *assignments* applied (None: none)."""
    if not assignments:
        return None
    env = dict(os.environ)
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise CommandError(f"--env expects KEY=VALUE, not {assignment!r}")
        env[key] = value
    return env


def add_child_options(parser: Any) -> None:
    """``--cwd`` and the repeatable ``--env KEY=VALUE`` (for a parser or an argument group)."""
    parser.add_argument("--cwd", metavar="DIR", help="run CMD in DIR (default: the current one)")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set an environment variable for CMD (repeatable)",
    )


def add_limit_options(parser: argparse.ArgumentParser) -> None:
    """The ``prlimit(1)`` options and ``--preset``."""
    from ._args import LIMIT_OPTIONS, PRESETS, parse_limit

    group = parser.add_argument_group(
        "resource limits",
        "prlimit(1)'s spelling: --OPT=N sets soft and hard, --OPT=SOFT:HARD each, SOFT: or "
        ":HARD one of them; sizes take K, M, G, T (powers of 1024), times s, m, h; "
        "'unlimited' lifts a limit. A malformed value is refused (status 125), never "
        "truncated.",
    )
    for option in LIMIT_OPTIONS:
        group.add_argument(
            f"--{option}",
            metavar="SOFT[:HARD]",
            type=typed(functools.partial(parse_limit, option)),
            dest=f"limit_{option}",
            help=argparse.SUPPRESS if option in _QUIET_LIMITS else _LIMIT_HELP.get(option),
        )
    group.add_argument(
        "--preset",
        choices=PRESETS,
        type=str.lower,
        help="start from a preset of tether.limits; explicit options override it",
    )


_QUIET_LIMITS = ("locks", "rss")  # ignored by Linux: accepted, not advertised
_LIMIT_HELP = {
    "as": "address space in bytes (RLIMIT_AS)",
    "core": "largest core dump in bytes; 0 disables them",
    "cpu": "CPU seconds: SIGXCPU at the soft limit, SIGKILL at the hard one",
    "data": "data segment in bytes",
    "fsize": "largest file written, in bytes",
    "memlock": "locked memory in bytes",
    "msgqueue": "bytes of POSIX message queues",
    "nice": "ceiling of the nice value (20 - N)",
    "nofile": "open files (highest fd + 1)",
    "nproc": "processes of the real user (not enforced for root)",
    "rtprio": "highest real-time priority",
    "rttime": "real-time CPU time in microseconds",
    "sigpending": "queued signals",
    "stack": "main thread stack in bytes",
}


def collect_limits(args: argparse.Namespace) -> Limits | None:
    """The limits named on the command line, over the preset; None when there are none."""
    from .. import limits as presets
    from ._args import LIMIT_OPTIONS

    chosen: Limits | None = None
    if args.preset is not None:
        chosen = getattr(presets, args.preset.upper().replace("-", "_"))
    for option in LIMIT_OPTIONS:
        value: Limits | None = getattr(args, f"limit_{option}")
        if value is not None:
            chosen = value if chosen is None else chosen | value
    if chosen is not None:
        try:
            chosen.check()
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    return chosen

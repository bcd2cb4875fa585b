"""``tether run``: ``timeout(1)`` and ``prlimit(1)`` in one, with the whole tree stopped.

The command runs in a supervisor scope, so it leads a process group of its own (or a
cgroup, ``--kill cgroup``) and everything it started is stopped and reaped when it
ends or times out, not just the command itself. The hazards of a wrapper:

* **Exit statuses** are ``timeout(1)``'s: 124 timed out, 125 tether failed, 126 cannot
  execute, 127 not found, 128+N killed by signal N, and 137 when the command had to be
  killed with ``SIGKILL`` after the timeout (``-k``, or ``-s KILL``).
* **Signals** sent to the wrapper are forwarded to the command's group (see
  ``_forward``): the command does not get the terminal's signals itself.
* **Limits** are checked before anything starts: a malformed value, or a hard limit
  above what this process may set, is exit 125 with the limit named.
"""

from __future__ import annotations

import argparse
import signal
import sys
import textwrap
import warnings
from typing import Any

from .._core._process import DEFAULT_GRACE, Process
from .._durations import deadline_after, remaining
from .._errors import (
    KilledAfterGraceWarning,
    NotReadyError,
    SpawnError,
    SupervisedChildFailed,
    TimeoutExpired,
)
from .._status import Signaled, Status
from .._supervise._supervisor import KillMode, Supervisor
from ..daemon import notify
from ._common import (
    DURATION,
    SIGNAL,
    CommandError,
    add_child_options,
    add_limit_options,
    collect_limits,
    environment,
    exit_status,
    spawn_failure,
)
from ._forward import FORWARDED, Forwarder

__all__ = ["TIMED_OUT", "add_parser", "run_command"]

TIMED_OUT = 124
KILLED = 128 + signal.SIGKILL

DESCRIPTION = textwrap.dedent(
    """\
    Run CMD as a supervised child and exit with its status, like timeout(1) and
    prlimit(1) together. CMD leads a process group of its own; when it exits, times
    out or is signalled, everything left in its group (or cgroup) is stopped and
    reaped too.

    exit status:
      N        CMD exited with status N
      128+N    CMD was killed by signal N
      124      CMD timed out (unless --preserve-status)
      125      tether itself failed (bad usage, a malformed limit, a spawn failure
               before exec)
      126      CMD was found but cannot be executed
      127      CMD was not found
      137      CMD had to be killed with SIGKILL after the timeout (-k, or -s KILL)

    signals: HUP, INT, QUIT, TERM, USR1, USR2, ALRM, WINCH and CONT sent to tether are
    forwarded to CMD's process group (to CMD alone with --foreground or --kill process).
    """
)

EPILOG = textwrap.dedent(
    """\
    examples:
      tether run --timeout 10s -k 2s -- ./slow-job
      tether run --cpu=1 --as=512M --nofile=64:128 -v -- python3 untrusted.py
      tether run --preset sandbox --restart on-failure -- ./worker
    """
)


def add_parser(commands: Any) -> None:
    """Add ``run`` to the subcommands."""
    parser = commands.add_parser(
        "run",
        help="run a command with a timeout, resource limits and its whole tree stopped",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="tether run [options] -- CMD [ARG ...]",
    )
    timing = parser.add_argument_group("timeout (as timeout(1))")
    timing.add_argument(
        "--timeout",
        type=DURATION,
        metavar="DUR",
        help="stop CMD after DUR (a number with ms, s, m, h or d; default: never)",
    )
    timing.add_argument(
        "-s",
        "--signal",
        type=SIGNAL,
        default=signal.SIGTERM,
        metavar="SIG",
        help="the signal sent on timeout and when the scope ends (name or number; TERM)",
    )
    timing.add_argument(
        "-k",
        "--kill-after",
        type=DURATION,
        metavar="DUR",
        help="send SIGKILL if CMD still runs DUR after the signal (default: --grace)",
    )
    timing.add_argument(
        "--preserve-status",
        action="store_true",
        help="on timeout, exit with CMD's status rather than 124",
    )
    timing.add_argument(
        "--foreground",
        action="store_true",
        help="leave CMD in tether's process group (it may read the terminal); only CMD "
        "itself is signalled, its children are not stopped",
    )
    add_limit_options(parser)
    scope = parser.add_argument_group("supervision")
    scope.add_argument(
        "--kill",
        choices=("group", "cgroup", "process"),
        default="group",
        help="what is stopped: CMD's process group (default), its cgroup (needs cgroup v2 "
        "write access), or CMD alone",
    )
    scope.add_argument(
        "--grace",
        type=DURATION,
        default=DEFAULT_GRACE,
        metavar="DUR",
        help=f"seconds between the signal and SIGKILL when stopping (default {DEFAULT_GRACE:g}; "
        "'inf' never kills)",
    )
    scope.add_argument(
        "--restart",
        choices=("never", "on-failure", "always"),
        default="never",
        help="restart CMD when it exits (with backoff); the timeout covers all runs",
    )
    scope.add_argument(
        "--notify",
        action="store_true",
        help="give CMD a NOTIFY_SOCKET of its own and wait for its READY=1 (sd_notify); "
        "then tell our own service manager (when NOTIFY_SOCKET is set) that we are ready",
    )
    child = parser.add_argument_group("the child")
    add_child_options(child)
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print how CMD ended (its decoded status) on stderr",
    )
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run ``args.cmd`` as the options say; return the exit status."""
    if not args.cmd:
        raise CommandError("no command given (tether run [options] -- CMD ...)")
    limits = collect_limits(args)
    mode: KillMode = "process" if args.foreground else args.kill
    grace = args.kill_after if args.kill_after is not None else args.grace
    options: dict[str, Any] = {"limits": limits, "cwd": args.cwd, "env": environment(args.env)}
    timed_out = False
    status: Status | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KilledAfterGraceWarning)  # the status says it
        with Supervisor(kill=mode, grace=grace, stop_signal=args.signal) as sup:
            forwarder = Forwarder(FORWARDED, lambda sig: _forward(sup, sig, mode != "process"))
            try:
                if args.notify:
                    options["ready"] = "notify"
                try:
                    child = sup.spawn(args.cmd, restart=args.restart, **options)
                except SpawnError as exc:
                    raise spawn_failure(exc) from None
                except (ValueError, OSError) as exc:
                    raise CommandError(str(exc)) from None
                forwarder.start()
                deadline = deadline_after(args.timeout)
                try:
                    if args.notify:
                        _relay_readiness(child, remaining(deadline), args.verbose)
                    sup.wait_any(remaining(deadline))
                except TimeoutExpired:
                    timed_out = True
                except SupervisedChildFailed:
                    pass  # given up by the restart policy: its last status tells
            finally:
                forwarder.close()
        status = sup.statuses[0]
    if status is None:
        raise CommandError("the command's status was lost")
    if args.verbose:
        if timed_out:
            print(f"tether run: timed out after {args.timeout:g} s", file=sys.stderr)
        print(f"tether run: {args.cmd[0]} {status}", file=sys.stderr)
    if not timed_out or args.preserve_status:
        return exit_status(status)
    if isinstance(status, Signaled) and status.signal == signal.SIGKILL:
        return KILLED
    return TIMED_OUT


def _relay_readiness(child: Process, timeout: float | None, verbose: bool) -> None:
    """Wait for CMD's ``READY=1`` and pass it on to our own manager; a CMD that exits
    first is not an error here (its status is the answer)."""
    try:
        child.ready(timeout)
    except NotReadyError:
        return
    relayed = notify(ready=True)  # False: no NOTIFY_SOCKET of our own
    if verbose:
        told = ", told the service manager" if relayed else ""
        print(f"tether run: {child.args[0]} is ready{told}", file=sys.stderr)


def _forward(sup: Supervisor, sig: int, group: bool) -> None:
    for process in sup.children:
        process.send_signal(sig, group=group)

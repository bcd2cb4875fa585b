"""``tether daemon``: start a command detached, with a pid file and readiness, from a shell.

The shell's question is "did it start?", and the exit status must answer it: 0 only
once the daemon runs (after ``exec``, or after it sent ``READY=1`` when
``--ready-timeout`` is given), 1 when it is already running or did not become ready,
125/126/127 as ``tether run``. The daemon's pid is printed on stdout, and written to
the pid file, whose lock the daemon holds for as long as it lives.
"""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from .._errors import SpawnError
from ..daemon import AlreadyRunning, DaemonStartError, spawn_daemon
from ._common import (
    DURATION,
    CommandError,
    add_child_options,
    add_limit_options,
    collect_limits,
    environment,
    spawn_failure,
)

__all__ = ["add_parser", "daemon_command"]

NOT_STARTED = 1

DESCRIPTION = textwrap.dedent(
    """\
    Start CMD as a daemon: in a new session, re-parented to init, stdin from
    /dev/null and stdout and stderr to --log (or /dev/null). Print its pid and exit
    0 once it runs.

    --pidfile locks the file before CMD starts (a second start fails at once, naming
    the running pid), passes the locked fd to CMD so that the lock lives exactly as
    long as CMD, and writes CMD's pid into it. A file nobody holds a lock on is stale
    and is taken over.

    --ready-timeout gives CMD a NOTIFY_SOCKET (the systemd protocol: send READY=1, for
    instance with tether.daemon.notify or systemd-notify) and waits up to DUR for it.

    exit status: 0 started (and ready), 1 already running, exited before it was
    ready or not ready in time, 125 tether failed, 126 CMD cannot be executed, 127
    CMD not found.
    """
)


def add_parser(commands: Any) -> None:
    """Add ``daemon`` to the subcommands."""
    parser = commands.add_parser(
        "daemon",
        help="start a command detached, with a pid file and readiness",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="tether daemon [options] -- CMD [ARG ...]",
        epilog="example:\n  tether daemon --pidfile /run/app.pid --log /var/log/app.log "
        "--ready-timeout 30s -- ./app",
    )
    parser.add_argument("--pidfile", metavar="PATH", help="the pid file to lock and write")
    parser.add_argument(
        "--log", metavar="FILE", help="append CMD's stdout and stderr to FILE (default /dev/null)"
    )
    parser.add_argument(
        "--ready-timeout",
        type=DURATION,
        metavar="DUR",
        help="wait up to DUR for CMD to send READY=1 on its NOTIFY_SOCKET",
    )
    add_child_options(parser)
    add_limit_options(parser)
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.set_defaults(handler=daemon_command)


def daemon_command(args: argparse.Namespace) -> int:
    """Start ``args.cmd`` detached; print its pid; return the exit status."""
    if not args.cmd:
        raise CommandError("no command given (tether daemon [options] -- CMD ...)")
    options: dict[str, Any] = {
        "limits": collect_limits(args),
        "cwd": args.cwd,
        "env": environment(args.env),
    }
    log = None
    try:
        if args.log is not None:
            log = open(args.log, "ab")  # noqa: SIM115 - closed below, after the spawn
            options["stdout"] = options["stderr"] = log
        pid = spawn_daemon(
            args.cmd,
            pidfile=args.pidfile,
            notify=args.ready_timeout is not None,
            ready_timeout=args.ready_timeout,
            **options,
        )
    except SpawnError as exc:
        raise spawn_failure(exc) from None
    except (AlreadyRunning, DaemonStartError) as exc:
        raise CommandError(str(exc), NOT_STARTED) from None
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc)) from None
    finally:
        if log is not None:
            log.close()
    print(pid, flush=True)
    return 0

"""``tether init``: a container's PID 1 (or a subreaper) that reaps every orphan.

PID 1 has duties no ordinary program performs: the kernel re-parents every orphan of
the namespace to it, so it must reap them or they stay zombies; the kernel delivers it
only the signals it has a handler for, so it must forward ``docker stop``'s SIGTERM
itself; and when it exits, every process of the namespace is killed. The hazards:

* **Signals** are all blocked (before any thread could exist) and taken one at a time
  with ``sigwaitinfo``: no handler runs between bytecodes, no signal is lost while
  another is handled, and there is no polling (tini wakes every second). We use
  ``sigwaitinfo`` rather than a ``signalfd`` through ctypes: init has one thing to wait
  for, and that is a signal (``SIGCHLD`` included), so a blocking wait on the set is
  all a ``signalfd`` would give, with no fd to leak and no struct to decode.
  ``SIGSEGV``, ``SIGBUS``, ``SIGFPE``, ``SIGILL`` and ``SIGTRAP`` stay unblocked: they
  are faults of init itself and must kill it.
* **Reaping** never steals the main child's status: ``waitid(P_ALL, WNOWAIT)`` only
  peeks at which child has exited; the main child is reaped through its handle (its
  pidfd), any other by its pid. Nothing else here calls ``wait``.
* **Forwarding**: every signal but ``SIGCHLD`` goes to the child (``-g``: its process
  group). The job-control signals ``SIGTSTP``, ``SIGTTIN`` and ``SIGTTOU`` are forwarded
  like the rest; init itself never stops, since they are blocked.
* **The terminal**: when stdin is a terminal, the child's group is made its foreground
  group, so the child reads it and gets Ctrl-C; init, which blocks ``SIGTTOU``, may do
  that from the background.
* **Exit**: the child's code, 128+N when it died of signal N (PID 1 itself cannot die
  of a signal), each ``--remap-exit N`` turned into 0. With ``--wait-all``, init first
  waits until every other process it must reap has exited; with ``--kill-remaining``,
  it sends them SIGTERM, gives them GRACE, then SIGKILL, and reaps them all.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import textwrap
from typing import Any

from .._core._process import DEFAULT_GRACE, Process
from .._core._spawning import spawn
from .._durations import deadline_after, remaining
from .._errors import SpawnError
from .._linux._prctl import get_child_subreaper, set_child_subreaper, set_pdeathsig
from ._common import DURATION, SIGNAL, CommandError, exit_status, spawn_failure

__all__ = ["add_parser", "init_command"]

FAULTS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP})
BLOCKED = frozenset(signal.valid_signals()) - FAULTS - {signal.SIGKILL, signal.SIGSTOP}

DESCRIPTION = textwrap.dedent(
    """\
    Run CMD as the child of a minimal init: the PID 1 of a container (or of a PID
    namespace), or a subreaper elsewhere. tether init forwards every signal it
    receives but SIGCHLD to CMD (to its process group with -g), reaps every orphan
    re-parented to it, gives CMD the terminal's foreground when stdin is one, and
    exits with CMD's status (128+N when CMD was killed by signal N). Signals are
    taken with sigwaitinfo: nothing is polled.

    Job control: SIGTSTP, SIGTTIN and SIGTTOU are forwarded like the rest; tether
    init itself is never stopped by them.

    When CMD exits, the processes it left behind are, by default, left to the kernel
    (as PID 1, tether init's exit kills the whole namespace). --wait-all waits for
    them to exit first; --kill-remaining sends them SIGTERM, waits GRACE (default
    5 s), sends SIGKILL, and reaps them all.
    """
)


def add_parser(commands: Any) -> None:
    """Add ``init`` to the subcommands."""
    parser = commands.add_parser(
        "init",
        help="be PID 1 (or a subreaper): forward signals, reap orphans, pass the exit status",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="tether init [options] -- CMD [ARG ...]",
        epilog='example (a Dockerfile):\n  ENTRYPOINT ["tether", "init", "-g", "--"]\n'
        '  CMD ["python", "-m", "myservice"]',
    )
    parser.add_argument(
        "-g",
        "--group",
        action="store_true",
        help="forward signals to CMD's whole process group, not just CMD",
    )
    parser.add_argument(
        "-s",
        "--subreaper",
        action="store_true",
        help="when not PID 1, become a child subreaper so that orphans are re-parented "
        "to tether init and reaped",
    )
    parser.add_argument(
        "-p",
        "--pdeathsig",
        type=SIGNAL,
        metavar="SIG",
        help="get SIG when tether init's parent dies (PR_SET_PDEATHSIG)",
    )
    parser.add_argument(
        "-e",
        "--remap-exit",
        type=_exit_code,
        action="append",
        default=[],
        metavar="N",
        help="exit 0 when CMD exits with N (repeatable)",
    )
    ending = parser.add_mutually_exclusive_group()
    ending.add_argument(
        "--wait-all",
        action="store_true",
        help="after CMD exits, wait until every remaining child has exited",
    )
    ending.add_argument(
        "--kill-remaining",
        nargs="?",
        const=DEFAULT_GRACE,
        type=DURATION,
        metavar="GRACE",
        help="after CMD exits, SIGTERM the remaining processes, SIGKILL them after GRACE",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="say how CMD ended and how many orphans were reaped, on stderr",
    )
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.set_defaults(handler=init_command)


def _exit_code(text: str) -> int:
    if not text.isdigit() or int(text) > 255:
        raise argparse.ArgumentTypeError(f"invalid exit status {text!r} (0 to 255)")
    return int(text)


class _Init:
    """The state of the reaping loop: the main child and what has been reaped."""

    def __init__(self, child: Process, group: bool) -> None:
        self.child = child
        self.group = group
        self.orphans = 0
        self.children_left = True

    def reap(self) -> None:
        """Reap every exited child: the main one through its handle, the others by pid."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                self.children_left = False
                return
            if info is None:
                return
            if info.si_pid == self.child.pid and self.child.status is None:
                self.child.poll()
            else:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(info.si_pid, os.WNOHANG)
                    self.orphans += 1

    def forward(self, signum: int) -> None:
        """Pass *signum* to the main child (or its group) while it is unreaped."""
        with contextlib.suppress(ProcessLookupError):
            self.child.send_signal(signum, group=self.group)

    def take_signals(self, deadline: float | None, until_done: bool) -> None:
        """Handle signals until the main child is reaped (or, *until_done*, every child),
        or *deadline* passes."""
        while True:
            self.reap()
            if not self.children_left or (not until_done and self.child.status is not None):
                return
            left = remaining(deadline)
            if left is not None and left <= 0:
                return
            info = (
                signal.sigwaitinfo(BLOCKED) if left is None else signal.sigtimedwait(BLOCKED, left)
            )
            if info is None:
                return
            if info.si_signo != signal.SIGCHLD and self.child.status is None:
                self.forward(info.si_signo)


def init_command(args: argparse.Namespace) -> int:
    """Run ``args.cmd`` under this init; return the exit status."""
    if not args.cmd:
        raise CommandError("no command given (tether init [options] -- CMD ...)")
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, BLOCKED)
    was_subreaper = get_child_subreaper()
    try:
        return _run_init(args)
    finally:  # for callers in-process (tests); a real init exits here
        if not was_subreaper:
            set_child_subreaper(False)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)


def _run_init(args: argparse.Namespace) -> int:
    if args.pdeathsig is not None:
        set_pdeathsig(args.pdeathsig)
    if os.getpid() != 1:
        if args.subreaper:
            set_child_subreaper(True)
        elif args.verbose:
            print(
                "tether init: not PID 1 and no --subreaper: orphans are not re-parented "
                "to us and will not be reaped here",
                file=sys.stderr,
            )
    try:
        child = spawn(args.cmd, process_group=0)
    except SpawnError as exc:
        raise spawn_failure(exc) from None
    _give_terminal(child.pid)
    init = _Init(child, args.group)
    init.take_signals(None, until_done=False)
    status = child.status
    assert status is not None
    if args.verbose:
        print(f"tether init: {args.cmd[0]} {status}", file=sys.stderr)
    if args.wait_all:
        init.take_signals(None, until_done=True)
    elif args.kill_remaining is not None:
        _kill_remaining(init, args.kill_remaining)
    if args.verbose:
        print(f"tether init: reaped {init.orphans} orphans", file=sys.stderr)
    code = exit_status(status)
    return 0 if code in args.remap_exit else code


def _give_terminal(pgid: int) -> None:
    """Make the child's group the terminal's foreground group, when stdin is a terminal."""
    with contextlib.suppress(OSError):
        if os.isatty(0):
            os.tcsetpgrp(0, pgid)  # SIGTTOU is blocked: allowed from the background


def _kill_remaining(init: _Init, grace: float) -> None:
    """SIGTERM what is left, SIGKILL it after *grace*, and reap everything."""
    _signal_remaining(signal.SIGTERM)
    init.take_signals(None if math.isinf(grace) else deadline_after(grace), until_done=True)
    if init.children_left or _descendants():
        _signal_remaining(signal.SIGKILL)
        init.take_signals(None, until_done=True)


def _signal_remaining(signum: int) -> None:
    if os.getpid() == 1:
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signum)  # every process of the namespace but PID 1
        return
    for pid in _descendants():
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            continue
        try:
            if pid in _descendants():  # still ours now that the pidfd pins it
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(pidfd, signum)
        finally:
            os.close(pidfd)


def _descendants() -> set[int]:
    """The pids of every live descendant of this process, from ``/proc``."""
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] not in ("Z", "X"):
            parents.setdefault(int(fields[1]), []).append(int(name))
    found: set[int] = set()
    todo = [os.getpid()]
    while todo:
        for pid in parents.get(todo.pop(), []):
            if pid not in found:
                found.add(pid)
                todo.append(pid)
    return found

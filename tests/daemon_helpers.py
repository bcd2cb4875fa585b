"""Helpers for the daemon and command-line tests: scripts in fresh interpreters, and
ending daemons that are not our children.

A daemon outlives the launcher the test starts and is re-parented to init, so the
test cannot wait for it the usual way: it holds a pidfd of it, kills it through the
pidfd and polls the pidfd until the process is gone (and reaps it if this process
happens to be a subreaper that adopted it).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import textwrap

import tether

PY = sys.executable


def python(code: str, *args: str, timeout: float = 30, **options: object) -> tether.Completed:
    """Run *code* in a fresh interpreter (that imports tether) and capture its output."""
    return tether.run(
        [PY, "-c", textwrap.dedent(code), *args],
        capture=True,
        timeout=timeout,
        **options,  # type: ignore[arg-type]
    )


def stat_fields(pid: int) -> list[str]:
    """``/proc/PID/stat`` after the command name: state, ppid, pgrp, session, tty_nr, ..."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2 :].split()


def end_daemon(pid: int, sig: int | None = signal.SIGKILL, timeout: float = 30) -> None:
    """Signal *pid* through a pidfd (None: do not) and wait until it is gone; reap it if
    it is ours."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, sig)
        wait_gone(pidfd, timeout)
    finally:
        os.close(pidfd)


def wait_gone(pidfd: int, timeout: float = 30) -> None:
    """Poll *pidfd* until its process exits; reap it if it is our (adopted) child."""
    ready, _, _ = select.select([pidfd], [], [], timeout)
    assert ready, "the daemon did not exit in time"
    with contextlib.suppress(ChildProcessError):
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG)

"""The stop signal, followed by SIGCONT: how tether asks a child (or a tree) to stop.

A stopped child (SIGSTOP, Ctrl-Z) cannot act on SIGTERM until it runs again, so the
stop signal is followed by SIGCONT, as systemd does; a running child that does not
handle SIGCONT never notices it. ``Process.stop``, ``AsyncProcess.stop`` and the
supervisors' trees all stop this way.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

__all__ = ["check_stop_signal", "send_stop_signal"]


def check_stop_signal(sig: int) -> int:
    """*sig* as a signal number that can stop a child; 0 (a probe), a bool, a float or a
    number out of range is refused."""
    if isinstance(sig, bool) or not isinstance(sig, int):
        raise TypeError(f"the stop signal must be a signal number, not {sig!r}")
    if not 0 < sig < signal.NSIG:
        raise ValueError(
            f"the stop signal must be a signal number (1-{signal.NSIG - 1}), not {sig}"
        )
    return int(sig)


def send_stop_signal(send: Callable[[int], None], sig: int) -> None:
    """Send the stop signal *sig* through *send*, then SIGCONT so a stopped child can act.

    Not after SIGKILL (which needs no help) or SIGCONT itself.
    """
    send(sig)
    if sig not in (signal.SIGKILL, signal.SIGCONT):
        send(signal.SIGCONT)

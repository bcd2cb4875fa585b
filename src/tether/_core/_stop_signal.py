"""The stop signal, followed by SIGCONT: how tether asks a child (or a tree) to stop.

A stopped child (SIGSTOP, Ctrl-Z) cannot act on SIGTERM until it runs again, so the
stop signal is followed by SIGCONT, as systemd does; a running child that does not
handle SIGCONT never notices it. ``Process.stop``, ``AsyncProcess.stop`` and the
supervisors' trees all stop this way.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

__all__ = ["send_stop_signal"]


def send_stop_signal(send: Callable[[int], None], sig: int) -> None:
    """Send the stop signal *sig* through *send*, then SIGCONT so a stopped child can act.

    Not after SIGKILL (which needs no help) or SIGCONT itself.
    """
    send(sig)
    if sig not in (signal.SIGKILL, signal.SIGCONT):
        send(signal.SIGCONT)

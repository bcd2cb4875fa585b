"""An exit notification fd for a child that has no pidfd.

Without a pidfd there is no fd that turns readable when a process exits, and
waiting with a timeout by polling ``waitpid(WNOHANG)`` in a sleep loop is exactly
what tether avoids. Instead a thread blocks in ``waitid(P_PID, pid, WEXITED |
WNOWAIT)``, which returns when the child exits *without reaping it* (so its pid
stays reserved for the owner to reap), then writes one byte to a pipe. The read
end of that pipe then stands in for the pidfd wherever the code polls.

One thread per waited child is the price of the fallback; it exists only while
someone blocks on that child, and ends as soon as the child does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

_JOIN_PATIENCE = 5.0


class ExitNotifier:
    """A pipe whose read end becomes readable when child *pid* exits."""

    def __init__(self, pid: int) -> None:
        read_end, write_end = os.pipe()
        self.fileno = read_end
        self._thread = threading.Thread(
            target=_watch, args=(pid, write_end), name=f"tether-exit-watch-{pid}", daemon=True
        )
        try:
            self._thread.start()
        except BaseException:
            os.close(read_end)
            os.close(write_end)
            raise

    def close(self, *, child_reaped: bool) -> None:
        """Close the read end; once the child is reaped, also wait for the thread to end."""
        os.close(self.fileno)
        if child_reaped:
            self._thread.join(_JOIN_PATIENCE)


def _watch(pid: int, write_end: int) -> None:
    # Signals are for the program's threads: blocked here, they go to one that acts.
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        # ECHILD: reaped already, by our owner or stolen; either way it has exited.
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        with contextlib.suppress(OSError):  # EPIPE: nobody listens any more
            os.write(write_end, b"\0")
    finally:
        os.close(write_end)

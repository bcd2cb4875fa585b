"""Forwarding signals to a child with no handler in between: a thread in ``sigwaitinfo``.

A command-line wrapper must pass on what it receives (Ctrl-C from the terminal, a
``kill`` from a script) to the command it runs, which sits in a process group of its
own and does not get the terminal's signals directly. The hazards:

* A Python handler runs only in the main thread, between bytecodes; the main thread
  is blocked in a wait, and a handler that touches the supervisor there could find
  its lock held by the very wait it interrupted. So the signals are *blocked* in
  every thread (the mask is set before any thread starts, and threads inherit it),
  and one thread takes them with ``sigwaitinfo``: no handler, no polling, no lost
  signal (a blocked signal stays pending until taken).
* A process-directed signal is delivered to any thread that does not block it; with
  the default disposition, ``SIGTERM`` delivered to a stray thread kills the whole
  process. Blocking before the first thread exists closes that door.
* Stopping the thread: it waits for one more signal, ``SIGRTMAX``, sent to it alone
  with ``pthread_kill``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterable

__all__ = ["FORWARDED", "Forwarder"]

FORWARDED = frozenset(
    {
        signal.SIGHUP,
        signal.SIGINT,
        signal.SIGQUIT,
        signal.SIGTERM,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGALRM,
        signal.SIGWINCH,
        signal.SIGCONT,
    }
)
"""What ``tether run`` passes on to its command."""

_WAKE = signal.SIGRTMAX


class Forwarder:
    """Block *signals* now; from :meth:`start`, pass each one to *deliver* on a thread."""

    def __init__(self, signals: Iterable[int], deliver: Callable[[int], None]) -> None:
        self._signals = frozenset(int(s) for s in signals)
        self._deliver = deliver
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._previous = signal.pthread_sigmask(signal.SIG_BLOCK, {*self._signals, _WAKE})

    def start(self) -> None:
        """Start passing signals on (those that came before are still pending)."""
        self._thread = threading.Thread(target=self._serve, name="tether-forwarder", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the thread and restore the signal mask (a pending signal is then delivered)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping = True
            with contextlib.suppress(ProcessLookupError):
                signal.pthread_kill(thread.ident or 0, _WAKE)
            thread.join()
        signal.pthread_sigmask(signal.SIG_SETMASK, self._previous)

    def _serve(self) -> None:
        waited = {*self._signals, _WAKE}
        while True:
            signum = signal.sigwaitinfo(waited).si_signo
            if signum == _WAKE:
                if self._stopping:
                    return
                continue
            with contextlib.suppress(Exception):  # the child may be gone: nothing to do
                self._deliver(signum)

"""Signal handlers that wait while a scope stops its children.

Python runs signal handlers in the main thread at almost any bytecode boundary, and a
handler that raises (``KeyboardInterrupt`` from Ctrl-C, or a program's own) in the middle
of a scope's shutdown would leave children killed but unreaped, or still running.
``try``/``except`` cannot fence that off: the first bytecode of ``__exit__``, the entry
of an ``except`` clause and a loop's back-edge can each be where the exception lands.

So while a :class:`tether.Supervisor` scope is open in the main thread, every signal that
has a Python handler gets a wrapper in front of it (installed by :func:`shield`). The
wrapper calls the program's handler at once, as before; but when the interrupted code
is a protected function (``Supervisor.__exit__`` and everything it calls) and the handler
raises, the wrapper keeps the exception instead of letting it unwind the shutdown. The
shutdown sees that as a hurry (no more grace: SIGKILL now), and when it is done it raises
what was kept (:func:`take_interrupts`), so the program gets its ``KeyboardInterrupt``
after its children are gone. trio protects its own code from ``KeyboardInterrupt`` the
same way, by looking at the interrupted frames.

A handler installed after the scope was entered is not wrapped: it interrupts the
shutdown as it would any code (which still kills and reaps what it can). Scopes in other
threads need nothing: Python runs signal handlers only in the main thread.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any, TypeVar

__all__ = ["hurried", "protect", "shield", "take_interrupts", "unshield"]

_Handler = Callable[[int, "FrameType | None"], Any]
_F = TypeVar("_F", bound=Callable[..., Any])

_SIGNALS = tuple(sorted(signal.valid_signals()))
_protected: set[CodeType] = set()
_kept: list[BaseException] = []  # what handlers raised in protected code, oldest first
_owners: set[int] = set()  # the ids of the scopes open in the main thread


def protect(function: _F) -> _F:
    """Mark *function* as protected: a handler's exception in it, or in what it calls, waits."""
    _protected.add(function.__code__)
    return function


class _Wrapper:
    """The program's *handler* for one signal, behind the shield."""

    __slots__ = ("handler",)

    def __init__(self, handler: _Handler) -> None:
        self.handler = handler

    def __call__(self, signum: int, frame: FrameType | None) -> Any:
        if not _in_protected(frame):
            return self.handler(signum, frame)
        try:
            return self.handler(signum, frame)
        except BaseException as exc:  # a second signal landing here is kept by its own call
            _kept.append(exc)
            return None


def _in_protected(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code in _protected:
            return True
        frame = frame.f_back
    return False


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def shield(owner: object) -> None:
    """Scope *owner* opens: from the main thread, put the wrapper in front of every Python
    handler. Keyed by owner, so that an owner that an interrupt stopped halfway (before
    or after its entry counted) can always call :func:`unshield`."""
    if not _in_main_thread():
        return
    _owners.add(id(owner))  # first: an unshield always finds what this did
    for signum in _SIGNALS:
        handler = signal.getsignal(signum)
        if callable(handler) and not isinstance(handler, _Wrapper):
            signal.signal(signum, _Wrapper(handler))


def unshield(owner: object) -> None:
    """Scope *owner* has ended (a no-op if it never shielded): when it was the last one in
    the main thread, restore the handlers.

    A handler the program changed in the meantime is left as the program set it.
    """
    if not _in_main_thread() or id(owner) not in _owners:
        return
    _owners.discard(id(owner))
    if _owners:
        return
    for signum in _SIGNALS:
        handler = signal.getsignal(signum)
        if isinstance(handler, _Wrapper):
            signal.signal(signum, handler.handler)


def hurried() -> bool:
    """Whether a handler raised in protected code: the caller should kill now, not wait."""
    return bool(_kept) and _in_main_thread()


def take_interrupts() -> list[BaseException]:
    """What handlers raised in protected code since the last call (main thread only)."""
    if not _in_main_thread():
        return []
    taken = _kept[:]
    del _kept[: len(taken)]
    return taken

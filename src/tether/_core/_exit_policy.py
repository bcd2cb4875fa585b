"""What becomes of tether's children when the interpreter exits, or the process forks.

Interpreter exit: every child tether still owns, whether through a live handle
(``_registry``) or a dropped one held by the background reaper, is killed with SIGKILL
and reaped, so that a program that forgot a child leaves no orphan running. A child that
was ``detach()``-ed is left running: that is what detaching asks for.

``os.fork()``: the child process starts with no registrations. The handles and the
reaper's fds it inherited name its parent's children, not its own.
"""

from __future__ import annotations

import atexit
import contextlib
import os

from . import _registry
from ._reaper import REAPER

__all__: list[str] = []

_owner = os.getpid()


def _at_exit() -> None:
    if os.getpid() != _owner:
        return  # a forked child running its inherited atexit handlers: not our children
    for process in _registry.live():
        with contextlib.suppress(Exception):
            process.kill()
            process.wait()
    REAPER.kill_all()


def _after_fork_in_child() -> None:
    global _owner
    _owner = os.getpid()
    _registry.clear()
    REAPER.forget_after_fork()


atexit.register(_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)

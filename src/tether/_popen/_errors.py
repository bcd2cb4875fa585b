"""The drop-in's exceptions: the standard module's signatures, tether's classes.

Code written against ``subprocess`` builds these itself (``CalledProcessError(1,
cmd)``) and reads ``str()`` of them, so they take the standard constructor arguments
and print the standard messages; they are still :class:`tether.CalledProcessError` and
:class:`tether.TimeoutExpired` (and through them the ``subprocess`` classes), so every
``except`` clause, old or new, catches them. ``cmd`` is kept exactly as given (a string
stays a string), and both survive ``pickle``.
"""

from __future__ import annotations

import subprocess as _std
from typing import Any

from .._errors import CalledProcessError as _TetherCalledProcessError
from .._errors import TimeoutExpired as _TetherTimeoutExpired
from .._status import Exited, Signaled, Status

__all__ = ["CalledProcessError", "TimeoutExpired", "status_of_returncode"]


def status_of_returncode(returncode: int) -> Status | None:
    """The :class:`tether.Status` a subprocess-style return code stands for; None when
    it stands for none (a signal number that does not exist, an exit code above 255)."""
    try:
        if returncode < 0:
            return Signaled(-returncode)
        return Exited(returncode)
    except ValueError:
        return None


class CalledProcessError(_TetherCalledProcessError):
    """Raised by ``check_call``/``check_output``/``run(check=True)`` for a non-zero exit.

    The signature and message of :class:`subprocess.CalledProcessError`; also a
    :class:`tether.CalledProcessError`, whose ``status`` gives the decoded status.
    """

    def __init__(self, returncode: int, cmd: Any, output: Any = None, stderr: Any = None) -> None:
        _std.CalledProcessError.__init__(self, returncode, cmd, output, stderr)
        self.status = status_of_returncode(returncode)  # type: ignore[assignment]

    def __str__(self) -> str:
        return _std.CalledProcessError.__str__(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.returncode, self.cmd, self.output, self.stderr))


class TimeoutExpired(_TetherTimeoutExpired):
    """Raised when a wait, a ``communicate`` or a ``run`` runs out of time.

    The signature and message of :class:`subprocess.TimeoutExpired`; also a
    :class:`tether.TimeoutExpired`.
    """

    def __init__(self, cmd: Any, timeout: float, output: Any = None, stderr: Any = None) -> None:
        _std.TimeoutExpired.__init__(self, cmd, timeout, output, stderr)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.cmd, self.timeout, self.output, self.stderr))

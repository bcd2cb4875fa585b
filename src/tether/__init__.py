"""tether: child processes that are always reaped, signalled safely, and never outlive their scope.

Every child gets a pidfd from birth to reap; waits block on it with real timeouts;
signals go through it, so a recycled pid is never hit; statuses are decoded values,
not magic integers. See the README and ``docs/`` for the guide.
"""

from ._errors import (
    CalledProcessError,
    SpawnError,
    StatusUnknownError,
    TetherError,
    TimeoutExpired,
)
from ._process import DEFAULT_GRACE, Process, spawn
from ._run import Completed, SpawnOptions, run
from ._spawn import DEVNULL, PIPE, STDOUT
from ._status import Continued, Exited, Rusage, Signaled, Status, Stopped, decode_status

__all__ = [
    "DEFAULT_GRACE",
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "CalledProcessError",
    "Completed",
    "Continued",
    "Exited",
    "Process",
    "Rusage",
    "Signaled",
    "SpawnError",
    "SpawnOptions",
    "Status",
    "StatusUnknownError",
    "Stopped",
    "TetherError",
    "TimeoutExpired",
    "decode_status",
    "run",
    "spawn",
]

__version__ = "0.1.0.dev0"

"""tether: child processes that are always reaped, signalled safely, and never outlive their scope.

Every child gets a pidfd from birth to reap; waits block on it with real timeouts;
signals go through it, so a recycled pid is never hit; statuses are decoded values,
not magic integers. See the README and ``docs/`` for the guide.
"""

from ._aio._process import AsyncProcess, open_process, run_process
from ._core._process import DEFAULT_GRACE, Process, spawn
from ._core._run import Completed, run
from ._errors import (
    CalledProcessError,
    SpawnError,
    StatusUnknownError,
    TetherError,
    TimeoutExpired,
)
from ._linux._cgroup import CgroupError
from ._spawn import DEVNULL, PIPE, STDOUT, SpawnOptions
from ._status import Continued, Exited, Rusage, Signaled, Status, Stopped, decode_status
from ._supervise._async_supervisor import AsyncSupervisor
from ._supervise._records import Supervised, SupervisedChildFailed
from ._supervise._restart import Backoff, RestartMode, RestartPolicy
from ._supervise._supervisor import KilledAfterGraceWarning, KillMode, Supervisor
from .limits import Limits

__all__ = [
    "DEFAULT_GRACE",
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "AsyncProcess",
    "AsyncSupervisor",
    "Backoff",
    "CalledProcessError",
    "CgroupError",
    "Completed",
    "Continued",
    "Exited",
    "KillMode",
    "KilledAfterGraceWarning",
    "Limits",
    "Process",
    "RestartMode",
    "RestartPolicy",
    "Rusage",
    "Signaled",
    "SpawnError",
    "SpawnOptions",
    "Status",
    "StatusUnknownError",
    "Stopped",
    "Supervised",
    "SupervisedChildFailed",
    "Supervisor",
    "TetherError",
    "TimeoutExpired",
    "decode_status",
    "open_process",
    "run",
    "run_process",
    "spawn",
]

__version__ = "0.1.0.dev0"

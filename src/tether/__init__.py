"""tether: child processes that are always reaped, signalled safely, and never outlive their scope.

Every child gets a pidfd from birth to reap; waits block on it with real timeouts;
signals go through it, so a recycled pid is never hit; statuses are decoded values,
not magic integers. See the README and ``docs/`` for the guide.
"""

from . import _version
from ._aio._process import AsyncProcess, open_process, run_process
from ._core._process import DEFAULT_GRACE, Process
from ._core._run import Completed, run
from ._core._spawning import spawn
from ._errors import (
    CalledProcessError,
    CgroupError,
    KilledAfterGraceWarning,
    NamespaceError,
    NotReadyError,
    SpawnError,
    SpawnStage,
    StatusUnknownError,
    SupervisedChildFailed,
    TetherError,
    TimeoutExpired,
)
from ._spawn import DEVNULL, PIPE, STDOUT, Backend, SpawnOptions, backends
from ._status import Continued, Exited, Rusage, Signaled, Status, Stopped, decode_status
from ._supervise._async_supervisor import AsyncSupervisor
from ._supervise._records import Supervised
from ._supervise._restart import Backoff, RestartMode, RestartPolicy
from ._supervise._supervisor import KillMode, Supervisor
from .daemon import PidFile, daemonize, spawn_daemon
from .limits import Limits
from .subprocess import Popen

__all__ = [
    "DEFAULT_GRACE",
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "AsyncProcess",
    "AsyncSupervisor",
    "Backend",
    "Backoff",
    "CalledProcessError",
    "CgroupError",
    "Completed",
    "Continued",
    "Exited",
    "KillMode",
    "KilledAfterGraceWarning",
    "Limits",
    "NamespaceError",
    "NotReadyError",
    "PidFile",
    "Popen",
    "Process",
    "RestartMode",
    "RestartPolicy",
    "Rusage",
    "Signaled",
    "SpawnError",
    "SpawnOptions",
    "SpawnStage",
    "Status",
    "StatusUnknownError",
    "Stopped",
    "Supervised",
    "SupervisedChildFailed",
    "Supervisor",
    "TetherError",
    "TimeoutExpired",
    "backends",
    "daemonize",
    "decode_status",
    "open_process",
    "run",
    "run_process",
    "spawn",
    "spawn_daemon",
]

__version__ = _version.__version__


def __getattr__(name: str) -> object:
    """``tether.subprocess`` and ``tether.asyncio``, the drop-ins, imported on first use."""
    if name in ("subprocess", "asyncio"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _rehome_public_names() -> None:
    """Give every public class and function its public home, ``tether.X``.

    Tracebacks, reprs and the docs then say ``tether.SpawnError`` rather than the private
    module the name happens to be defined in (trio and anyio do the same).
    """
    namespace = globals()
    for name in __all__:
        member = namespace[name]
        if isinstance(member, type) or callable(member):
            module = getattr(member, "__module__", "")
            if module.startswith("tether._"):
                member.__module__ = __name__


_rehome_public_names()

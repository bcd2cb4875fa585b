"""``tether.daemon``: daemons, pid files, and the service manager's protocols.

Two ways to run in the background, and the hazards each one handles are told in the
module that implements it:

* :func:`daemonize` turns this Python program into a daemon (``_daemonize``): the
  double fork with a readiness pipe, so the launcher's exit code says whether the daemon
  started; a locked :class:`PidFile` (``_pidfile``) taken before the fork.
* :func:`spawn_daemon` starts a command detached, through the spawn engine
  (``_spawn_daemon``), and returns its pid.

Code that is run *by* a service manager instead talks to it with :func:`notify`,
:func:`watchdog_ping`, :func:`barrier` and :func:`listen_fds` (``_notify``): the
``NOTIFY_SOCKET`` and socket-activation protocols in plain Python.
"""

from __future__ import annotations

from ._daemonize import MANAGER_VARIABLES, Daemon, daemonize
from ._notify import LISTEN_FDS_START, barrier, listen_fds, notify, watchdog_ping
from ._pidfile import AlreadyRunning, PidFile
from ._spawn_daemon import DaemonStartError, spawn_daemon

__all__ = [
    "LISTEN_FDS_START",
    "MANAGER_VARIABLES",
    "AlreadyRunning",
    "Daemon",
    "DaemonStartError",
    "PidFile",
    "barrier",
    "daemonize",
    "listen_fds",
    "notify",
    "spawn_daemon",
    "watchdog_ping",
]

for _name in __all__:
    _member = globals()[_name]
    if getattr(_member, "__module__", "").startswith(__name__ + "._"):
        _member.__module__ = __name__
del _name, _member

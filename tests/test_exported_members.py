"""Pin the public surface: a name added or dropped must be a decision."""

from __future__ import annotations

import inspect

import pytest

import tether

EXPECTED = {
    "Backoff",
    "RestartMode",
    "RestartPolicy",
    "Supervised",
    "SupervisedChildFailed",
    "AsyncSupervisor",
    "CgroupError",
    "NamespaceError",
    "NotReadyError",
    "KillMode",
    "KilledAfterGraceWarning",
    "Supervisor",
    "AsyncProcess",
    "Backend",
    "SpawnStage",
    "backends",
    "DEFAULT_GRACE",
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "CalledProcessError",
    "Completed",
    "Continued",
    "Exited",
    "Limits",
    "Popen",
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
    "open_process",
    "run",
    "run_process",
    "spawn",
    "PidFile",
    "daemonize",
    "spawn_daemon",
}

DAEMON_EXPECTED = {
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
}


def test_public_names_are_pinned() -> None:
    assert set(tether.__all__) == EXPECTED


def test_every_public_name_exists_and_is_documented() -> None:
    for name in tether.__all__:
        member = getattr(tether, name)
        if inspect.isclass(member) or inspect.isfunction(member):
            assert member.__doc__, f"tether.{name} has no docstring"


def test_package_ships_py_typed() -> None:
    from importlib.resources import files

    assert files("tether").joinpath("py.typed").is_file()


PUBLIC_MODULE_HOMES = {
    "Limits": "tether.limits",
    "Popen": "tether.subprocess",
    "PidFile": "tether.daemon",
    "daemonize": "tether.daemon",
    "spawn_daemon": "tether.daemon",
}


def test_daemon_public_names_are_pinned_and_live_at_tether_daemon() -> None:
    import tether.daemon

    assert set(tether.daemon.__all__) == DAEMON_EXPECTED
    for name in tether.daemon.__all__:
        member = getattr(tether.daemon, name)
        if inspect.isclass(member) or inspect.isfunction(member):
            assert member.__doc__, f"tether.daemon.{name} has no docstring"
            assert member.__module__ == "tether.daemon", f"{name} says {member.__module__}"


def test_public_names_live_at_tether() -> None:
    """Tracebacks and reprs say ``tether.X``, never the private module that defines X."""
    for name in tether.__all__:
        member = getattr(tether, name)
        if inspect.isclass(member) or inspect.isfunction(member):
            home = PUBLIC_MODULE_HOMES.get(name, "tether")  # defined in a public module
            assert member.__module__ == home, f"tether.{name} says {member.__module__}"
    assert repr(tether.Exited) == "<class 'tether.Exited'>"


def test_backends_reports_each_backend() -> None:
    found = {backend.name: backend for backend in tether.backends()}
    assert list(found) == ["native", "posix_spawn", "fork"]
    native = found["native"]
    assert native.available
    assert native.reason is None
    assert native.auto_rank == 0
    assert native.refuses == ("preexec_fn",)
    assert found["fork"].refuses == ()
    assert "cwd" in found["posix_spawn"].refuses
    assert found["posix_spawn"].pidfd_at_birth is False
    with tether.spawn(["true"], backend="native") as process:
        process.wait()
    assert tether.backends()[0].pidfd_at_birth is True


def test_the_drop_ins_are_submodules() -> None:
    """``tether.subprocess`` and ``tether.asyncio`` load on first use; ``tether.Popen`` is
    the drop-in's class."""
    import tether.subprocess

    assert tether.Popen is tether.subprocess.Popen
    assert tether.asyncio.create_subprocess_exec.__module__ == "tether.asyncio"
    with pytest.raises(AttributeError):
        tether.no_such_name  # noqa: B018

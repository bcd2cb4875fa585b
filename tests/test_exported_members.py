"""Pin the public surface: a name added or dropped must be a decision."""

from __future__ import annotations

import inspect

import tether

EXPECTED = {
    "Backoff",
    "RestartMode",
    "RestartPolicy",
    "Supervised",
    "SupervisedChildFailed",
    "AsyncSupervisor",
    "CgroupError",
    "KillMode",
    "KilledAfterGraceWarning",
    "Supervisor",
    "AsyncProcess",
    "DEFAULT_GRACE",
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "CalledProcessError",
    "Completed",
    "Continued",
    "Exited",
    "Limits",
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

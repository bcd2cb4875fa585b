"""The exception tree: errno families, context, pickling, subprocess compatibility."""

from __future__ import annotations

import errno
import pickle
import subprocess

import pytest

import tether


@pytest.mark.parametrize(
    ("code", "family"),
    [
        (errno.ENOENT, FileNotFoundError),
        (errno.EACCES, PermissionError),
        (errno.EPERM, PermissionError),
        (errno.ENOTDIR, NotADirectoryError),
        (errno.EAGAIN, BlockingIOError),
        (errno.E2BIG, OSError),
    ],
)
def test_spawn_error_joins_the_errno_family(code: int, family: type[OSError]) -> None:
    error = tether.SpawnError(code, filename="prog", stage="exec", argv=["prog", "x"])
    assert isinstance(error, family)
    assert isinstance(error, tether.SpawnError)
    assert isinstance(error, tether.TetherError)
    assert (error.errno, error.filename, error.stage, error.argv) == (
        code,
        "prog",
        "exec",
        ("prog", "x"),
    )


def test_spawn_error_message_names_what_failed() -> None:
    error = tether.SpawnError(errno.ENOENT, filename="/srv", stage="chdir", argv=["ls"])
    assert str(error) == "[Errno 2] No such file or directory: '/srv' (stage: chdir, argv: ['ls'])"


def test_spawn_error_pickles() -> None:
    error = tether.SpawnError(errno.EACCES, filename="x", stage="exec", argv=["x"])
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert (again.errno, again.filename, again.stage, again.argv) == (
        errno.EACCES,
        "x",
        "exec",
        ("x",),
    )


def test_timeout_expired_is_a_subprocess_timeout() -> None:
    error = tether.TimeoutExpired(["sleep", "9"], 1.5, b"out", b"err")
    assert isinstance(error, subprocess.TimeoutExpired)
    assert (error.cmd, error.timeout, error.stdout, error.stderr) == (
        ["sleep", "9"],
        1.5,
        b"out",
        b"err",
    )
    again = pickle.loads(pickle.dumps(error))
    assert (again.cmd, again.timeout, again.output) == (["sleep", "9"], 1.5, b"out")


def test_status_unknown_is_a_child_process_error() -> None:
    error = tether.StatusUnknownError(1234, ["x"])
    assert isinstance(error, ChildProcessError)
    assert "1234" in str(error)


def _round_trip(error: BaseException) -> BaseException:
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert str(again) == str(error)
    return again


def test_every_tether_exception_pickles() -> None:
    """A ProcessPoolExecutor worker may raise any of them: each must come back whole."""
    unknown = _round_trip(tether.StatusUnknownError(1234, ["x", "y"]))
    assert isinstance(unknown, tether.StatusUnknownError)
    assert (unknown.pid, unknown.argv) == (1234, ("x", "y"))
    failed = _round_trip(
        tether.SupervisedChildFailed(("srv",), 77, tether.Exited(3), 5, "budget spent")
    )
    assert isinstance(failed, tether.SupervisedChildFailed)
    assert (failed.argv, failed.pid, failed.status, failed.restarts, failed.reason) == (
        ("srv",),
        77,
        tether.Exited(3),
        5,
        "budget spent",
    )
    cgroup = _round_trip(tether.CgroupError(errno.EACCES, "cannot create", "/sys/fs/cgroup/x"))
    assert isinstance(cgroup, tether.CgroupError)
    assert (cgroup.errno, cgroup.filename) == (errno.EACCES, "/sys/fs/cgroup/x")
    called = _round_trip(tether.CalledProcessError(["false"], tether.Exited(1), b"o", b"e"))
    assert isinstance(called, tether.CalledProcessError)
    assert (called.status, called.returncode, called.stdout) == (tether.Exited(1), 1, b"o")
    _round_trip(tether.TetherError("plain"))


def test_every_exception_and_warning_lives_in_one_module() -> None:
    from tether import _errors

    for name in tether.__all__:
        member = getattr(tether, name)
        if isinstance(member, type) and issubclass(member, (Exception, Warning)):
            assert member is getattr(_errors, name), f"tether.{name} is defined elsewhere"


def test_spawn_error_families_say_tether_spawn_error_in_tracebacks() -> None:
    import traceback

    error = tether.SpawnError(errno.ENOENT, filename="nope", stage="exec", argv=["nope"])
    assert type(error) is not tether.SpawnError  # the FileNotFoundError family
    assert (type(error).__module__, type(error).__qualname__) == ("tether", "SpawnError")
    text = "".join(traceback.format_exception_only(type(error), error))
    assert text.startswith("tether.SpawnError: [Errno 2]")


def test_spawn_stages_are_one_literal() -> None:
    from typing import get_args

    assert tether.SpawnStage is not None
    assert get_args(tether.SpawnStage)[0] == "fork"
    assert get_args(tether.SpawnStage)[-1] == "exec"

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

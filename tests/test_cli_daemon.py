"""``tether daemon``: spawn_daemon from the shell, with a pid file, a log and readiness.

In-process ``main()``; the daemons are not our children and are ended through pidfds.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.daemon_helpers import PY, end_daemon, stat_fields
from tether._cli import main
from tether.daemon import PidFile

READY = """
import signal, sys
from tether.daemon import notify
print("starting", flush=True)
if sys.argv[1] == "fail":
    raise SystemExit("no config")
notify(ready=True, status="serving")
signal.pause()
"""


def started_pid(capsys: pytest.CaptureFixture[str]) -> int:
    return int(capsys.readouterr().out)


def test_start_with_pidfile_log_and_readiness(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pidfile, log = tmp_path / "d.pid", tmp_path / "d.log"
    argv = [
        "daemon",
        "--pidfile",
        str(pidfile),
        "--log",
        str(log),
        "--ready-timeout",
        "30s",
        "--",
        PY,
        "-c",
        READY,
        "ok",
    ]
    assert main(argv) == 0
    pid = started_pid(capsys)
    try:
        assert PidFile.holder(pidfile) == pid
        assert log.read_text() == "starting\n", "ready means it ran this far"
        assert int(stat_fields(pid)[1]) != 0
        assert main(argv) == 1
        assert f"already running (pid {pid})" in capsys.readouterr().err
    finally:
        end_daemon(pid, signal.SIGTERM)


def test_a_daemon_that_fails_before_ready_fails_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "d.log"
    status = main(
        ["daemon", "--log", str(log), "--ready-timeout", "30", "--", PY, "-c", READY, "fail"]
    )
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith("tether daemon: daemon (pid ")
    assert "exited before it reported ready" in err
    end_daemon(int(err.split("(pid ")[1].split(")")[0]), sig=None)
    assert "no config" in log.read_text()


def test_without_readiness_it_returns_once_the_command_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["daemon", "--cwd", str(tmp_path), "--nofile=32", "--", "sleep", "60"]) == 0
    pid = started_pid(capsys)
    try:
        with open(f"/proc/{pid}/limits") as limits:
            assert any(
                row.split()[3:5] == ["32", "32"]
                for row in limits
                if row.startswith("Max open files")
            )
    finally:
        end_daemon(pid)


def test_exec_failures_are_126_and_127(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["daemon", "--", "/nonexistent/program"]) == 127
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    assert main(["daemon", "--", str(script)]) == 126
    assert main(["daemon", "--log", str(tmp_path / "no" / "such" / "dir"), "--", "true"]) == 125
    assert "No such file or directory" in capsys.readouterr().err.splitlines()[-1]

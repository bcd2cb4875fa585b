"""``tether run``: timeout(1)'s statuses, prlimit(1)'s limits, the whole tree stopped.

Most tests call ``main()`` in-process (the command's output goes to fd 1, read with
``capfd``); signal forwarding runs ``python -m tether`` as a child, since the signals
must reach a separate process.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

import pytest

import tether
from tests.daemon_helpers import PY
from tether._cli import main

TRAPS_TERM = "trap '' TERM; sleep 30"
"""A shell (and its sleep: ignored signals survive exec) that ignores SIGTERM."""


def test_the_command_status_is_passed_through(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--", "true"]) == 0
    assert main(["run", "--", "sh", "-c", "exit 3"]) == 3
    assert main(["run", "--", "sh", "-c", "kill -USR1 $$"]) == 128 + signal.SIGUSR1
    assert main(["run", "sh", "-c", "exit 4"]) == 4, "without --, the first word starts CMD"


def test_not_found_is_127_and_not_executable_126(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--", "/nonexistent/program"]) == 127
    assert "cannot run '/nonexistent/program'" in capfd.readouterr().err
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    assert main(["run", "--", str(script)]) == 126
    assert main(["run", "--", str(tmp_path)]) == 126, "a directory"
    assert main(["run", "--cwd", str(tmp_path / "missing"), "--", "true"]) == 125
    err = capfd.readouterr().err
    assert "cannot start 'true'" in err or "missing" in err


def test_a_timeout_is_124_and_leaves_no_survivor_in_the_tree(
    capfd: pytest.CaptureFixture[str],
) -> None:
    status = main(["run", "--timeout", "0.3", "-v", "--", "sh", "-c", "sleep 60 & echo $!; wait"])
    assert status == 124
    out, err = capfd.readouterr()
    assert "timed out after 0.3 s" in err
    assert "killed by SIGTERM" in err
    grandchild = int(out)
    try:
        with open(f"/proc/{grandchild}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
        assert state == "Z", "the backgrounded sleep is dead (at most not yet reaped by init)"
    except FileNotFoundError:
        pass  # gone altogether


def test_kill_after_is_137(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--timeout", "0.1", "-k", "0.1", "-v", "--", "sh", "-c", TRAPS_TERM]) == 137
    assert "killed by SIGKILL" in capfd.readouterr().err
    assert main(["run", "--timeout", "0.1", "-s", "KILL", "--", "sleep", "30"]) == 137


def test_preserve_status(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--timeout", "0.1", "--preserve-status", "--", "sleep", "30"]) == 143
    assert (
        main(["run", "--timeout", "0.1", "-s", "USR1", "--preserve-status", "--", "sleep", "30"])
        == 128 + signal.SIGUSR1
    )


def test_a_cpu_bound_child_under_cpu_1_dies_and_says_so(capfd: pytest.CaptureFixture[str]) -> None:
    """SIGXCPU at the soft limit; at a hard limit equal to it, the kernel's SIGKILL comes first."""
    spin = [PY, "-c", "while True: pass"]
    assert main(["run", "--cpu=1:2", "-v", "--", *spin]) == 128 + signal.SIGXCPU
    assert "killed by SIGXCPU" in capfd.readouterr().err
    assert main(["run", "--cpu=1", "-v", "--", *spin]) == 128 + signal.SIGKILL
    assert "killed by SIGKILL" in capfd.readouterr().err


def test_limits_reach_the_command(capfd: pytest.CaptureFixture[str]) -> None:
    shell = "ulimit -Sn; ulimit -Hn; ulimit -c; ulimit -Sv"
    assert (
        main(["run", "--nofile=64:128", "--core=0", "--as=512M:1G", "--", "sh", "-c", shell]) == 0
    )
    assert capfd.readouterr().out.split() == ["64", "128", "0", str(512 * 1024)]


def test_a_preset_and_an_override(capfd: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["run", "--preset", "sandbox", "--nofile=100", "--", "sh", "-c", "ulimit -n; ulimit -c"]
        )
        == 0
    )
    assert capfd.readouterr().out.split() == ["100", "0"]


def test_env_cwd_and_kill_process(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "run",
                "--env",
                "GREETING=hi",
                "--cwd",
                str(tmp_path),
                "--kill",
                "process",
                "--",
                "sh",
                "-c",
                "echo $GREETING; pwd",
            ]
        )
        == 0
    )
    assert capfd.readouterr().out.split() == ["hi", str(tmp_path)]


def test_foreground_keeps_the_command_in_our_process_group(
    capfd: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--foreground", "--", "sh", "-c", 'cut -d" " -f5 /proc/$$/stat']) == 0
    assert int(capfd.readouterr().out) == os.getpgrp()
    assert main(["run", "--", "sh", "-c", 'cut -d" " -f5 /proc/$$/stat; echo $$']) == 0
    pgid, pid = capfd.readouterr().out.split()
    assert pgid == pid, "by default CMD leads a group of its own"


def test_restart_on_failure(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    once = "test -e marker || { touch marker; exit 1; }; echo second run"
    assert (
        main(["run", "--restart", "on-failure", "--cwd", str(tmp_path), "--", "sh", "-c", once])
        == 0
    )
    assert capfd.readouterr().out == "second run\n"


FORWARDING = """
import signal, sys
def note(signum, frame):
    print(signal.Signals(signum).name, flush=True)
    if signum == signal.SIGTERM:
        sys.exit(7)
for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGUSR1, signal.SIGTERM):
    signal.signal(sig, note)
print("ready", flush=True)
while True:
    signal.pause()
"""


def test_signals_are_forwarded_to_the_command() -> None:
    with tether.spawn(
        [PY, "-m", "tether", "run", "--", PY, "-c", FORWARDING], stdout=tether.PIPE
    ) as wrapper:
        assert wrapper.stdout is not None
        assert wrapper.stdout.readline() == b"ready\n"
        for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGUSR1):
            wrapper.send_signal(sig)
            assert wrapper.stdout.readline().decode().strip() == sig.name
        wrapper.send_signal(signal.SIGTERM)
        assert wrapper.stdout.readline() == b"SIGTERM\n"
        assert wrapper.wait(timeout=30) == tether.Exited(7)


def test_python_m_tether_runs_main(monkeypatch: pytest.MonkeyPatch) -> None:
    import runpy

    monkeypatch.setattr(sys, "argv", ["tether", "run", "--", "sh", "-c", "exit 9"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("tether", run_name="__main__", alter_sys=False)
    assert info.value.code == 9


def test_the_console_script_and_python_m_tether_end_to_end() -> None:
    script = Path(PY).parent / "tether"
    assert script.exists(), "pip installs the console script beside the interpreter"
    missing = tether.run([str(script), "run", "--", "/nonexistent"], capture=True, timeout=30)
    assert missing.returncode == 127
    assert missing.stderr == b"tether run: cannot run '/nonexistent': No such file or directory\n"
    usage = tether.run(
        [PY, "-m", "tether", "run", "--as=1KB", "--", "true"], capture=True, timeout=30
    )
    assert usage.returncode == 125
    assert usage.stderr is not None
    assert len(usage.stderr.splitlines()) == 1


SAYS_READY = (
    "import os, socket; address = os.environ['NOTIFY_SOCKET'];"
    "address = '\\0' + address[1:] if address.startswith('@') else address;"
    "socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b'READY=1', address)"
)


def test_notify_waits_for_ready_and_tells_our_own_manager() -> None:
    manager = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    with manager:
        name = f"tether-test-manager-{os.getpid()}"
        manager.bind("\0" + name)
        env = {**os.environ, "NOTIFY_SOCKET": "@" + name}
        done = tether.run(
            [PY, "-m", "tether", "run", "--notify", "-v", "--", PY, "-c", SAYS_READY],
            capture=True,
            timeout=60,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        assert b"is ready, told the service manager" in done.stderr  # type: ignore[operator]
        manager.settimeout(10)
        assert manager.recv(4096).splitlines() == [b"READY=1"]


def test_notify_with_a_command_that_never_says_ready_reports_its_status(
    capfd: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--notify", "-v", "--", "sh", "-c", "exit 3"]) == 3
    err = capfd.readouterr().err
    assert "is ready" not in err
    assert "exited with status 3" in err

"""``tether init``: PID 1 of a new PID namespace, and a subreaper in-process.

The PID-1 tests run ``python -m tether init`` under ``unshare --pid --fork`` (util-linux):
inside, init is PID 1 and every orphan of the namespace is re-parented to it. They are
skipped, with the reason, where ``unshare`` is missing or may not make a PID namespace
(no root and no user namespaces). When init exits, the kernel kills the whole
namespace, so nothing is left behind. The in-process tests run ``main()`` with
``--subreaper`` (restored after) and never as PID 1.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

import tether
from tests.daemon_helpers import PY
from tether._cli import main


def _pid_namespaces() -> tuple[list[str], str | None]:
    """The unshare prefix that makes a PID namespace here, or the reason there is none."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return [], "unshare (util-linux) is not installed"
    prefixes = [[unshare, "--pid", "--fork"]]
    prefixes.append([unshare, "--user", "--map-root-user", "--pid", "--fork"])
    for prefix in prefixes:
        probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return prefix, None
    return [], f"unshare cannot make a PID namespace here: {probe.stderr.decode().strip()}"


UNSHARE, NO_NAMESPACES = _pid_namespaces()
needs_pid_namespace = pytest.mark.skipif(UNSHARE == [], reason=str(NO_NAMESPACES))


def init(*args: str) -> list[str]:
    return [*UNSHARE, PY, "-m", "tether", "init", *args]


HUNDRED_ORPHANS = """
import os
read_end, write_end = os.pipe()
for _ in range(100):
    if os.fork() == 0:
        os.close(write_end)
        os.read(read_end, 1)  # returns (EOF) once our parent, the last writer, is gone
        os._exit(0)
print(os.getpid(), os.getppid(), flush=True)
os._exit(5)  # orphans all 100; they exit as soon as they see it
"""


@needs_pid_namespace
def test_as_pid_1_it_reaps_100_orphaned_grandchildren() -> None:
    done = tether.run(
        init("-v", "--wait-all", "--", PY, "-c", HUNDRED_ORPHANS), capture=True, timeout=60
    )
    assert done.stdout == b"2 1\n", "the child is PID 2, its parent PID 1: tether init"
    assert done.returncode == 5
    assert b"reaped 100 orphans" in done.stderr, done.stderr  # type: ignore[operator]


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


def _only_child(pid: int) -> int:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        (child,) = f.read().split()
    return int(child)


@needs_pid_namespace
def test_as_pid_1_it_forwards_signals() -> None:
    with tether.spawn(init("--", PY, "-c", FORWARDING), stdout=tether.PIPE) as unshare:
        assert unshare.stdout is not None
        assert unshare.stdout.readline() == b"ready\n"
        pid_1 = _only_child(unshare.pid)  # tether init, as seen from our namespace
        for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGUSR1):
            os.kill(pid_1, sig)  # unshare's child: alive until the child below exits
            assert unshare.stdout.readline().decode().strip() == sig.name
        os.kill(pid_1, signal.SIGTERM)
        assert unshare.stdout.readline() == b"SIGTERM\n"
        assert unshare.wait(timeout=30) == tether.Exited(7)


@needs_pid_namespace
@pytest.mark.parametrize("code", [0, 1, 42, 126, 127, 128, 255])
def test_as_pid_1_exit_codes_pass_through(code: int) -> None:
    done = tether.run(init("--", "sh", "-c", f"exit {code}"), timeout=60)
    assert done.returncode == code


@needs_pid_namespace
def test_as_pid_1_a_child_killed_by_a_signal_is_128_plus_n() -> None:
    done = tether.run(init("--", "sh", "-c", "kill -TERM $$"), timeout=60)
    assert done.status == tether.Exited(128 + signal.SIGTERM), "PID 1 cannot die of a signal"


@needs_pid_namespace
def test_as_pid_1_kill_remaining_ends_what_ignores_sigterm() -> None:
    script = "(trap '' TERM; exec sleep 60) & echo started"
    done = tether.run(
        init("-v", "--kill-remaining=0.2", "--", "sh", "-c", script), capture=True, timeout=60
    )
    assert done.returncode == 0
    assert done.stdout == b"started\n"
    assert b"reaped 1 orphans" in done.stderr  # type: ignore[operator]


# --- in-process, as a subreaper ---------------------------------------------------------


def test_every_exit_code_0_to_255_passes_through() -> None:
    for code in range(256):
        assert main(["init", "--", "sh", "-c", f"exit {code}"]) == code


TERMINATING = [
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGKILL,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGPIPE,
    signal.SIGALRM,
    signal.SIGTERM,
    signal.SIGVTALRM,
    signal.SIGPROF,
]
"""Signals whose default action ends a process without a core dump."""


def test_a_signal_death_is_128_plus_n() -> None:
    for sig in TERMINATING:
        name = sig.name[3:]
        assert main(["init", "--", "sh", "-c", f"trap - {name}; kill -{name} $$"]) == 128 + sig


def test_remap_exit() -> None:
    assert main(["init", "-e", "3", "-e", "4", "--", "sh", "-c", "exit 3"]) == 0
    assert main(["init", "-e", "3", "--", "sh", "-c", "exit 5"]) == 5


# As a subreaper, init waits for (or kills) and reaps every child of its process: run it
# in a process of its own, never inside the test runner, whose other children (tether's
# lifeline among them) are not init's to wait for.


def test_a_subreaper_reaps_orphans_and_waits_for_them() -> None:
    script = "for i in 1 2 3; do (sleep 0.1 &); done; exit 4"
    argv = [PY, "-m", "tether", "init", "--subreaper", "-v", "--wait-all", "--", "sh", "-c"]
    done = tether.run([*argv, script], capture=True, timeout=60)
    assert done.returncode == 4
    assert b"sh exited with status 4" in done.stderr, done.stderr  # type: ignore[operator]
    assert b"reaped 3 orphans" in done.stderr  # type: ignore[operator]


def test_a_subreaper_kills_the_remaining() -> None:
    script = "(trap '' TERM; exec sleep 60) & exit 0"
    argv = [PY, "-m", "tether", "init", "--subreaper", "-v", "--kill-remaining=0.1", "--"]
    done = tether.run([*argv, "sh", "-c", script], capture=True, timeout=60)
    assert done.returncode == 0
    assert b"reaped 1 orphans" in done.stderr, done.stderr  # type: ignore[operator]


def test_not_pid_1_without_subreaper_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "-v", "--", "true"]) == 0
    assert "not PID 1 and no --subreaper" in capsys.readouterr().err


def test_signals_reach_the_child_from_another_thread(capfd: pytest.CaptureFixture[str]) -> None:
    """A signal sent to the init thread is forwarded (to the group, with -g)."""
    import threading

    main_thread = threading.get_ident()
    read_end, write_end = os.pipe()
    script = "trap 'echo got-usr1; exit 6' USR1; echo ready >&3; while :; do sleep 0.05; done"

    def send_when_ready() -> None:
        with os.fdopen(read_end, "rb") as ready:
            assert ready.readline() == b"ready\n"
        signal.pthread_kill(main_thread, signal.SIGUSR1)

    sender = threading.Thread(target=send_when_ready)
    sender.start()
    try:
        code = main(
            [
                "init",
                "-g",
                "--",
                "sh",
                "-c",
                f"exec 3>/proc/{os.getpid()}/fd/{write_end}; " + script,
            ]
        )
    finally:
        os.close(write_end)
        sender.join()
    assert code == 6
    assert "got-usr1" in capfd.readouterr().out


def test_a_missing_program_is_127(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--", "/nonexistent/program"]) == 127
    assert "cannot run" in capsys.readouterr().err


def _setsid_with_ctty() -> str | None:
    setsid = shutil.which("setsid")
    if setsid is None:
        return None
    usage = subprocess.run([setsid, "--help"], capture_output=True, timeout=30, check=False)
    return setsid if b"--ctty" in usage.stdout else None


SETSID = _setsid_with_ctty()


@pytest.mark.skipif(SETSID is None, reason="setsid --ctty (util-linux) is not available")
def test_the_child_gets_the_terminals_foreground() -> None:
    """Under a terminal (a pty made our controlling one by setsid --ctty), CMD's process
    group becomes the terminal's foreground group: its pgrp equals the tty's tpgid."""
    assert SETSID is not None
    master, slave = os.openpty()
    try:
        # init hands the terminal over just after the spawn (a documented window): the
        # shell looks until it is in the foreground, for 2 s at most, then says what it saw
        shell = (
            "i=0; while [ $i -lt 200 ]; do set -- $(cut -d' ' -f5,8 /proc/$$/stat); "
            '[ "$1" = "$2" ] && break; i=$((i+1)); sleep 0.01; done; echo "$1 $2"'
        )
        command = [SETSID, "--ctty", PY, "-m", "tether", "init", "--", "sh", "-c", shell]
        with tether.spawn(command, stdin=slave, stdout=slave, stderr=slave) as session:
            os.close(slave)
            slave = -1
            output = b""
            while True:
                try:
                    chunk = os.read(master, 1024)
                except OSError:  # EIO: every holder of the slave side is gone
                    break
                if not chunk:
                    break
                output += chunk
            assert session.wait(timeout=30) == tether.Exited(0)
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)
    pgrp, tpgid = output.split()
    assert pgrp == tpgid

"""``tether.daemon.spawn_daemon``: a command started detached, through the spawn engine.

The daemon is re-parented away from us, so each test ends it through a pidfd
(``end_daemon``); the intermediate process is our child and must be reaped before
``spawn_daemon`` returns, which the autouse leak guard checks (a zombie is a leak).
"""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest

import tether
from tests.daemon_helpers import PY, end_daemon, stat_fields
from tether.daemon import AlreadyRunning, DaemonStartError, PidFile, spawn_daemon


def test_the_daemon_is_detached_and_the_intermediate_reaped() -> None:
    pid = spawn_daemon(["sleep", "60"])
    try:
        _, ppid, _, session, tty = stat_fields(pid)[:5]
        assert int(ppid) != os.getpid(), "not our child"
        assert int(session) not in (os.getsid(0), pid), "a new session it does not lead"
        assert int(tty) == 0
        assert os.readlink(f"/proc/{pid}/fd/1") == "/dev/null"
    finally:
        end_daemon(pid)


STARTED = """
import signal
from tether.daemon import notify
print("started", flush=True)
notify(ready=True)
signal.pause()
"""


def test_the_spawn_options_apply_to_the_daemon(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    with open(log, "ab") as out:
        pid = spawn_daemon(
            [PY, "-c", STARTED],
            limits=tether.Limits(nofile=(64, 128)),
            env={"MARK": "daemon-env"},
            cwd=tmp_path,
            stdout=out,
            notify=True,  # READY=1 after the print: then the log holds it
        )
    try:
        with open(f"/proc/{pid}/limits") as limits:
            line = next(row for row in limits if row.startswith("Max open files"))
        assert line.split()[3:5] == ["64", "128"]
        with open(f"/proc/{pid}/environ", "rb") as environ:
            assert b"MARK=daemon-env" in environ.read().split(b"\0")
        assert os.readlink(f"/proc/{pid}/cwd") == str(tmp_path)
    finally:
        end_daemon(pid)
    assert log.read_text() == "started\n"


def test_exec_failures_reach_the_caller(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        spawn_daemon(["/nonexistent/program"])
    assert isinstance(missing.value, tether.SpawnError)
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(PermissionError) as denied:
        spawn_daemon([str(script)])
    assert denied.value.errno == errno.EACCES
    assert isinstance(denied.value, tether.SpawnError)
    assert denied.value.stage == "exec"
    with pytest.raises(tether.SpawnError) as bad_cwd:
        spawn_daemon(["true"], cwd=tmp_path / "missing")
    assert bad_cwd.value.stage == "chdir"


def test_pipes_are_refused() -> None:
    with pytest.raises(ValueError, match="stdout=PIPE"):
        spawn_daemon(["true"], stdout=tether.PIPE)


def test_the_pid_file_is_held_by_the_daemon(tmp_path: Path) -> None:
    path = tmp_path / "d.pid"
    pid = spawn_daemon(["sleep", "60"], pidfile=path)
    try:
        assert path.read_text() == f"{pid}\n"
        assert PidFile.holder(path) == pid
        with pytest.raises(AlreadyRunning, match=f"pid {pid}"):
            spawn_daemon(["sleep", "60"], pidfile=path)
    finally:
        end_daemon(pid)
    assert PidFile.holder(path) is None, "the lock died with the daemon"
    again = spawn_daemon(["sleep", "60"], pidfile=PidFile(path))
    try:
        assert PidFile.holder(path) == again
    finally:
        end_daemon(again)


def test_a_failed_start_leaves_no_pid_file(tmp_path: Path) -> None:
    path = tmp_path / "d.pid"
    with pytest.raises(FileNotFoundError):
        spawn_daemon(["/nonexistent/program"], pidfile=path)
    assert not path.exists()


NOTIFYING = """
import signal, sys
from tether.daemon import notify
notify(status="warming up")
if sys.argv[1] == "fail":
    notify(status="bad config")
    raise SystemExit(3)
notify(ready=True)
signal.pause()
"""


def test_notify_waits_for_ready() -> None:
    pid = spawn_daemon([PY, "-c", NOTIFYING, "ok"], notify=True, ready_timeout=30)
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            assert any(v.startswith(b"NOTIFY_SOCKET=@") for v in environ.read().split(b"\0"))
        assert stat_fields(pid)[0] not in "ZX", "still running"
    finally:
        end_daemon(pid)


def test_a_daemon_that_exits_before_ready_is_reported() -> None:
    with pytest.raises(DaemonStartError, match="exited before it reported ready") as info:
        spawn_daemon([PY, "-c", NOTIFYING, "fail"], notify=True, ready_timeout=30)
    assert info.value.status == "bad config"
    assert "bad config" in str(info.value)
    end_daemon(info.value.pid)


def test_a_daemon_that_never_says_ready_times_out_and_is_left_running() -> None:
    with pytest.raises(DaemonStartError, match=r"did not report ready within 0\.1 s") as info:
        spawn_daemon(["sleep", "60"], notify=True, ready_timeout=0.1)
    pid = info.value.pid
    try:
        assert stat_fields(pid)[0] not in "ZX", "still running"
    finally:
        end_daemon(pid, signal.SIGTERM)


def test_spawn_daemon_works_from_a_threaded_process() -> None:
    """The intermediate is a fork of a process with threads: it must not deadlock."""
    import threading

    stop = threading.Event()
    workers = [threading.Thread(target=stop.wait) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        pids = [spawn_daemon(["sleep", "60"]) for _ in range(20)]
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    for pid in pids:
        end_daemon(pid)
    assert len(set(pids)) == 20


def test_spawn_daemon_interrupted_anywhere_leaves_no_daemon_nobody_knows() -> None:
    """A one-shot SIGALRM raises at a random moment of each spawn_daemon (the storm of
    ``test_interrupts``). Every daemon either comes back as a pid (ended here) or is killed
    before the exception propagates; a mark in each daemon's environment finds any that
    got away. The leak guard checks that the intermediates were reaped and no fd leaked."""
    import random
    import secrets
    import time

    from tests.test_interrupts import Interrupted, interrupts

    mark = f"TETHER_STORM={secrets.token_hex(8)}".encode()
    env = {"PATH": os.environ["PATH"], "TETHER_STORM": mark.split(b"=")[1].decode()}
    chance = random.Random(0x5EED)
    started: list[int] = []
    interrupted = 0
    deadline = time.monotonic() + 3
    with interrupts():
        while time.monotonic() < deadline and len(started) + interrupted < 150:
            signal.setitimer(signal.ITIMER_REAL, chance.uniform(0.000_01, 0.02))
            try:
                started.append(spawn_daemon(["sleep", "60"], env=env))
            except Interrupted:
                interrupted += 1
            signal.setitimer(signal.ITIMER_REAL, 0)
    for pid in started:
        end_daemon(pid)
    assert interrupted > 0, "the storm never hit: the test proves nothing"
    assert _marked_alive(mark) == [], "a daemon outlived its interrupted spawn_daemon"


def _marked_alive(mark: bytes) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as environ:
                if mark not in environ.read().split(b"\0"):
                    continue
            if stat_fields(int(name))[0] not in "ZX":
                found.append(int(name))
        except OSError:
            continue
    return found


def test_the_intermediate_fork_without_the_c_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the extension was not built, the intermediate comes from ``os.fork``."""
    from tether.daemon import _spawn_daemon

    monkeypatch.setattr(_spawn_daemon._native, "available", False)
    pid = spawn_daemon(["sleep", "60"])
    try:
        assert int(stat_fields(pid)[1]) != os.getpid()
    finally:
        end_daemon(pid)
    with pytest.raises(FileNotFoundError):
        spawn_daemon(["sh", "-c", "exit 0"], cwd="/nonexistent/dir")

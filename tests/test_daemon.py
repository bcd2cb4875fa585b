"""``tether.daemon.daemonize`` and ``PidFile``.

Every ``daemonize`` runs in a fresh interpreter (``python -c``), never in the test
runner, which must not be forked. The daemon it makes is not our child: the tests
find its pid in the pid file, check it through ``/proc``, and end it through a pidfd
(``end_daemon``). ``PidFile`` is tested in-process: it only opens and locks files.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.daemon_helpers import end_daemon, python, stat_fields
from tether.daemon import AlreadyRunning, PidFile

DAEMON = """
import logging, os, signal, sys
from tether.daemon import daemonize
pidfile, log, mode = sys.argv[1:4]
logging.basicConfig(filename=log, level=logging.INFO, format="%(message)s")
print(f"launcher {os.getpid()}", flush=True)
daemon = daemonize(pidfile=pidfile, ready_timeout=float(sys.argv[4]) if len(sys.argv) > 4 else 30)
logging.info("daemon %d cwd %s umask %o", os.getpid(), os.getcwd(), os.umask(0))
if mode == "raise":
    raise ValueError("bad config 42")
if mode == "silent":
    signal.pause()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
daemon.ready()
logging.info("still logging after ready")
while True:
    signal.pause()
"""


def read_pid(path: Path) -> int:
    return int(path.read_text())


def test_a_daemon_is_detached_locked_and_a_second_start_fails_naming_it(tmp_path: Path) -> None:
    pidfile, log = tmp_path / "d.pid", tmp_path / "d.log"
    first = python(DAEMON, str(pidfile), str(log), "ok")
    assert first.returncode == 0, first.stderr
    pid = read_pid(pidfile)
    try:
        launcher = int(first.stdout.split()[1])  # type: ignore[union-attr]
        _, ppid, _, session, tty = stat_fields(pid)[:5]
        assert int(ppid) != launcher, "re-parented"
        assert int(session) != pid, "not a session leader: can never get a terminal"
        assert int(session) != os.getsid(0), "a session of its own"
        assert int(tty) == 0, "no controlling terminal"
        assert PidFile.holder(pidfile) == pid, "the pid file is locked by the daemon"
        assert oct(pidfile.stat().st_mode & 0o777) == "0o644"
        fds = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        fds = {fd: target for fd, target in fds.items() if not target.startswith("pipe:")}
        assert fds == {
            0: "/dev/null",
            1: "/dev/null",
            2: "/dev/null",
            3: str(log),
            4: str(pidfile),
        }, (
            "stdio, the log handler's file and the pid file (and the readiness pipe, which "
            "may be closing as the launcher exits): everything else closed"
        )
        assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"

        second = python(DAEMON, str(pidfile), str(log), "ok")
        assert second.returncode != 0
        assert f"already running (pid {pid})" in second.stderr.decode()  # type: ignore[union-attr]
        assert read_pid(pidfile) == pid, "the holder's file is untouched"
        assert f"daemon {pid} cwd / umask 22" in log.read_text()
        assert "still logging after ready" in log.read_text()
    finally:
        end_daemon(pid, signal.SIGTERM)
    assert not pidfile.exists(), "removed on a clean exit"


def test_a_daemon_that_raises_during_start_makes_the_launcher_fail(tmp_path: Path) -> None:
    pidfile, log = tmp_path / "d.pid", tmp_path / "d.log"
    result = python(DAEMON, str(pidfile), str(log), "raise")
    assert result.returncode == 1
    err = result.stderr.decode()  # type: ignore[union-attr]
    assert "failed to start" in err
    assert "ValueError: bad config 42" in err
    pid = int(err.split("(pid ")[1].split(")")[0])
    end_daemon(pid, sig=None)  # it exits on its own (after its atexit)
    assert not pidfile.exists(), "its atexit removed the pid file"


def test_a_daemon_that_never_reports_ready_fails_the_launcher_after_the_timeout(
    tmp_path: Path,
) -> None:
    pidfile, log = tmp_path / "d.pid", tmp_path / "d.log"
    result = python(DAEMON, str(pidfile), str(log), "silent", "0.2")
    assert result.returncode == 1
    assert "did not report ready within 0.2 s" in result.stderr.decode()  # type: ignore[union-attr]
    end_daemon(read_pid(pidfile))


def test_a_stale_pid_file_is_reclaimed_after_a_daemon_is_killed(tmp_path: Path) -> None:
    pidfile, log = tmp_path / "d.pid", tmp_path / "d.log"
    assert python(DAEMON, str(pidfile), str(log), "ok").returncode == 0
    first = read_pid(pidfile)
    end_daemon(first, signal.SIGKILL)  # no clean-up: the file stays, unlocked
    assert read_pid(pidfile) == first
    assert PidFile.holder(pidfile) is None
    again = python(DAEMON, str(pidfile), str(log), "ok")
    assert again.returncode == 0, again.stderr
    second = read_pid(pidfile)
    try:
        assert second != first
        assert PidFile.holder(pidfile) == second
    finally:
        end_daemon(second, signal.SIGTERM)


def test_daemonize_refuses_while_other_threads_run() -> None:
    result = python(
        """
        import threading
        from tether.daemon import daemonize
        stop = threading.Event()
        threading.Thread(target=stop.wait, name="worker").start()
        try:
            daemonize()
        except RuntimeError as exc:
            print(exc)
        finally:
            stop.set()
        """
    )
    assert result.returncode == 0
    out = result.stdout.decode()  # type: ignore[union-attr]
    assert "must run before any thread starts" in out
    assert "worker" in out


def test_daemonize_refuses_after_tether_started_its_own_threads() -> None:
    result = python(
        """
        import tether
        from tether.daemon import daemonize
        tether.spawn(["sleep", "30"]).detach()  # starts tether-reaper
        try:
            daemonize()
        except RuntimeError as exc:
            print(exc)
        """
    )
    assert "tether-reaper" in result.stdout.decode()  # type: ignore[union-attr]


def test_under_a_service_manager_daemonize_stays_in_the_foreground(tmp_path: Path) -> None:
    result = python(
        """
        import os
        from tether.daemon import daemonize
        daemon = daemonize()
        print(daemon.detached, os.getpid(), daemon.reason)
        """,
        env={**os.environ, "INVOCATION_ID": "abc"},
    )
    assert result.returncode == 0, result.stderr
    detached, _, reason = result.stdout.decode().split(" ", 2)  # type: ignore[union-attr]
    assert detached == "False"
    assert reason.startswith("INVOCATION_ID is set")


# --- PidFile, in-process --------------------------------------------------------------


def test_pid_file_lock_write_and_release(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    with PidFile(path) as held:
        assert held.held
        assert read_pid(path) == os.getpid()
        assert PidFile.holder(path) == os.getpid()
        with pytest.raises(AlreadyRunning, match=rf"already running \(pid {os.getpid()}\)") as info:
            PidFile(path).acquire()
        assert info.value.pid == os.getpid()
        held.write(12345)
        assert path.read_text() == "12345\n"
    assert not path.exists()
    assert PidFile.holder(path) is None


def test_pid_file_mode_is_0644_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    old = os.umask(0o077)
    try:
        with PidFile(path):
            assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_a_stale_pid_file_is_taken_over_in_place(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    path.write_text("999999999999\n")
    inode = path.stat().st_ino
    assert PidFile.holder(path) is None, "liveness is the lock, not the pid"
    with PidFile(path):
        assert path.stat().st_ino == inode
        assert read_pid(path) == os.getpid()


def test_the_unlink_race_cannot_give_two_owners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A starter that opened the file just before its holder unlinked it locks the
    unlinked inode; the inode check after locking makes it start over and find the
    new holder, instead of believing itself the owner."""
    path = tmp_path / "x.pid"
    first = PidFile(path)
    first.acquire()
    late = os.open(path, os.O_RDWR | os.O_CLOEXEC)  # opened before the unlink
    first.release()  # unlinks, then unlocks
    second = PidFile(path)
    second.acquire()  # a new file at the path
    try:
        real_open = os.open
        opens: list[int] = []

        def open_late_first(*args: object, **kwargs: object) -> int:
            if not opens:
                opens.append(late)
                return late
            fd = real_open(*args, **kwargs)  # type: ignore[arg-type]
            opens.append(fd)
            return fd

        monkeypatch.setattr(os, "open", open_late_first)
        with pytest.raises(AlreadyRunning) as info:
            PidFile(path).acquire()
        monkeypatch.undo()
        assert info.value.pid == os.getpid()
        assert len(opens) == 2, "locked the unlinked inode, saw it, started over"
        assert second.held
    finally:
        second.release()


def test_pid_file_misuse(tmp_path: Path) -> None:
    held = PidFile(tmp_path / "x.pid")
    with pytest.raises(RuntimeError, match="not held"):
        held.write()
    held.release()  # a no-op when not held
    with held, pytest.raises(RuntimeError, match="held already"):
        held.acquire()
    assert "not held" in repr(held)
    assert PidFile.holder(tmp_path / "missing.pid") is None


def test_a_pid_file_taken_before_a_fork_is_held_by_the_child_until_it_exits(
    tmp_path: Path,
) -> None:
    """flock belongs to the open file description: a child holding the fd keeps the lock."""
    import tether

    path = tmp_path / "x.pid"
    held = PidFile(path)
    held.acquire()
    assert held.fd is not None
    child = tether.spawn(["sleep", "30"], pass_fds=[held.fd])
    held._let_go()  # we close our copy; the sleep holds the lock
    try:
        assert PidFile.holder(path) == os.getpid()
        with pytest.raises(AlreadyRunning):
            PidFile(path).acquire()
    finally:
        child.kill()
        child.wait()
    with PidFile(path):
        pass


def test_stdio_can_go_to_a_file_opened_for_appending(tmp_path: Path) -> None:
    out = tmp_path / "out.log"
    out.write_text("earlier\n")
    result = python(
        """
        import os, sys
        from tether.daemon import daemonize
        daemon = daemonize(stdout=sys.argv[1], stderr=sys.argv[1], umask=0o027)
        fds = []
        for fd in sorted(os.listdir("/proc/self/fd"), key=int):
            try:
                if os.readlink(f"/proc/self/fd/{fd}") == sys.argv[1]:
                    fds.append(fd)
            except FileNotFoundError:  # the listing's own fd
                pass
        print(os.getpid(), fds)
        print("to stderr", file=sys.stderr, flush=True)
        print(oct(os.umask(0)), os.getcwd(), flush=True)
        daemon.ready()
        """,
        str(out),
    )
    assert result.returncode == 0, result.stderr
    earlier, listing, to_stderr, settings = out.read_text().splitlines()
    pid, fds = listing.split(" ", 1)
    end_daemon(int(pid), sig=None)
    assert earlier == "earlier"
    assert fds == "['1', '2']", "the fd opened from the path is closed once in place"
    assert to_stderr == "to stderr"
    assert settings == "0o27 /"

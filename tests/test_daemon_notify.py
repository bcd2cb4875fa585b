"""``notify``, ``watchdog_ping``, ``barrier`` and ``listen_fds`` against a fake manager.

The fake manager is a datagram socket bound in the test's directory (or in the
abstract namespace); the test reads what was sent, as systemd would.
"""

from __future__ import annotations

import array
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_helpers import python
from tether.daemon import barrier, listen_fds, notify, watchdog_ping


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A fake service manager's notification socket, named in NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    with sock:
        yield sock


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().splitlines()


def test_notify_sends_each_field(manager: socket.socket) -> None:
    assert notify(ready=True, status="serving 3 clients", mainpid=42, extra={"X_CUSTOM": "1"})
    assert received(manager) == ["READY=1", "STATUS=serving 3 clients", "MAINPID=42", "X_CUSTOM=1"]
    assert notify(stopping=True, errno=5)
    assert received(manager) == ["STOPPING=1", "ERRNO=5"]
    assert notify(reloading=True)
    reloading, monotonic = received(manager)
    assert reloading == "RELOADING=1"
    assert monotonic.startswith("MONOTONIC_USEC=")
    assert int(monotonic.split("=")[1]) > 0


def test_notify_to_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"tether-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify(ready=True)
        assert received(sock) == ["READY=1"]


def test_without_a_manager_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify(ready=True) is False
    assert barrier() is False
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    assert watchdog_ping() is False


def test_errors_are_reported_not_swallowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    with pytest.raises(FileNotFoundError):
        notify(ready=True)
    monkeypatch.setenv("NOTIFY_SOCKET", "relative/path")
    with pytest.raises(ValueError, match="absolute path"):
        notify(ready=True)
    monkeypatch.setenv("NOTIFY_SOCKET", "@")
    with pytest.raises(ValueError, match="abstract name"):
        notify(ready=True)


def test_bad_messages_are_refused(manager: socket.socket) -> None:
    with pytest.raises(ValueError, match="at least one"):
        notify()
    with pytest.raises(ValueError, match="single line"):
        notify(status="two\nlines")
    with pytest.raises(ValueError, match="not a notification key"):
        notify(extra={"A=B": "1"})


def test_watchdog_honours_its_variables(
    manager: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_ping() is False
    monkeypatch.setenv("WATCHDOG_USEC", "0")
    assert watchdog_ping() is False
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_ping() is False, "meant for another process"
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_ping() is True
    assert received(manager) == ["WATCHDOG=1"]
    monkeypatch.delenv("WATCHDOG_PID")
    assert watchdog_ping() is True
    assert received(manager) == ["WATCHDOG=1"]


def test_barrier_returns_once_the_manager_closes_the_fd(manager: socket.socket) -> None:
    def serve() -> None:
        fds = array.array("i")
        message, ancillary, _, _ = manager.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
        for level, kind, data in ancillary:
            assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        assert message == b"BARRIER=1\n"
        for fd in fds:
            os.close(fd)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        assert barrier(timeout=30) is True
    finally:
        thread.join()


def test_barrier_times_out_when_the_manager_keeps_the_fd(manager: socket.socket) -> None:
    with pytest.raises(TimeoutError, match="BARRIER"):
        barrier(timeout=0.05)
    # the message (and the fd it carries) is still queued: take it and close the fd
    fds = array.array("i")
    _, ancillary, _, _ = manager.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
    for _, _, data in ancillary:
        fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    for fd in fds:
        os.close(fd)
    with pytest.raises(ValueError, match="NaN"):
        barrier(timeout=float("nan"))


def test_listen_fds_takes_the_fds_meant_for_this_process() -> None:
    """In a fresh interpreter, where fds 3 and 4 may be taken over for the test."""
    result = python(
        """
        import os, socket
        from tether.daemon import listen_fds
        a, b = socket.socketpair()
        os.dup2(a.fileno(), 3)
        os.dup2(b.fileno(), 4)
        os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="2", LISTEN_FDNAMES="web:admin")
        print(listen_fds(), os.get_inheritable(3), "LISTEN_PID" in os.environ, listen_fds())
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"[(3, 'web'), (4, 'admin')] False False []\n"


def test_listen_fds_checks_the_pid_and_the_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_FDS", "1")
    assert listen_fds(unset_environment=False) == [], "meant for another process"
    assert os.environ["LISTEN_FDS"] == "1"
    monkeypatch.setenv("LISTEN_PID", "x")
    with pytest.raises(ValueError, match="malformed"):
        listen_fds()
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "2")
    monkeypatch.setenv("LISTEN_FDNAMES", "only-one")
    with pytest.raises(ValueError, match="names 1 fds"):
        listen_fds()

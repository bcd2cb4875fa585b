"""The parts of ``daemonize`` that can run in the test runner itself (never forking it).

``test_daemon.py`` checks the whole double fork in fresh interpreters; here, in-process:
the launcher's reading of the readiness pipe, the daemon's reporting side, the stdio
targets, the fds kept for logging, the thread census, the refusals (all of which happen
before any fork) and the foreground mode under a service manager.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.daemon import AlreadyRunning, Daemon, PidFile, daemonize
from tether.daemon import _daemonize as parts


@pytest.fixture
def no_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in parts.MANAGER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def worker() -> Iterator[threading.Thread]:
    """A thread that runs for the test: daemonize must refuse before it forks."""
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="test-worker")
    thread.start()
    yield thread
    stop.set()
    thread.join()


def word(data: bytes, timeout: float | None = 30, close: bool = True) -> tuple[int, str]:
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    if close:
        os.close(write_end)
    try:
        return parts._await_word(read_end, timeout)
    finally:
        if not close:
            os.close(write_end)


def test_the_launcher_reads_the_daemons_word() -> None:
    assert word(b"P42\nR\n") == (0, "")
    code, message = word(b"P42\nETraceback...\nValueError: bad\n")
    assert code == 1
    assert message.startswith("daemon (pid 42) failed to start:\nTraceback")
    assert word(b"P42\n") == (1, "daemon (pid 42) exited before it reported ready")
    assert word(b"") == (1, "daemon exited before it reported ready")
    assert word(b"Edaemonize failed: OSError()") == (1, "daemonize failed: OSError()")
    assert word(b"P42\n", timeout=0.01, close=False) == (
        1,
        "daemon (pid 42) did not report ready within 0.01 s; left running",
    )


def reporting_daemon() -> tuple[Daemon, int]:
    read_end, write_end = os.pipe()
    daemon = Daemon(detached=True, reason=None, pidfile=None)
    daemon._pipe = write_end
    return daemon, read_end


def read_all(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as pipe:
        return pipe.read()


def test_ready_fail_and_the_context_manager_report_once() -> None:
    daemon, read_end = reporting_daemon()
    assert not daemon.is_ready
    daemon.ready()
    daemon.ready()  # a second report is a no-op
    assert daemon.is_ready
    assert read_all(read_end) == b"R\n"
    assert "detached" in repr(daemon)
    assert daemon.pid == os.getpid()

    daemon, read_end = reporting_daemon()
    with pytest.raises(ValueError, match="boom"), daemon:
        raise ValueError("boom")
    report = read_all(read_end)
    assert report.startswith(b"ETraceback")
    assert b"ValueError: boom" in report

    daemon, read_end = reporting_daemon()
    with daemon:
        daemon.fail("no config")
    assert read_all(read_end) == b"Eno config"


def test_an_uncaught_exception_reaches_the_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, value, tb: seen.append(value))
    daemon, read_end = reporting_daemon()
    daemon._previous_hook = sys.excepthook
    monkeypatch.setattr(sys, "excepthook", daemon._excepthook)
    error = RuntimeError("start-up failed")
    sys.excepthook(RuntimeError, error, None)
    assert seen == [error], "the previous hook still runs"
    assert b"RuntimeError: start-up failed" in read_all(read_end)
    assert sys.excepthook is not daemon._excepthook, "the hook is removed once reported"


def test_stdio_targets(tmp_path: Path) -> None:
    assert parts._open_target(None, 1) == -1
    assert parts._open_target(2, 2) == 2
    with pytest.raises(OSError, match="Bad file descriptor"):
        parts._open_target(10_000, 1)
    log = tmp_path / "out.log"
    fd = parts._open_target(log, 1)
    try:
        assert not os.get_inheritable(fd)
        os.write(fd, b"x")
    finally:
        os.close(fd)
    fd = parts._open_target(str(log), 0)
    try:
        assert os.read(fd, 10) == b"x"
    finally:
        os.close(fd)
    with open(log, "rb") as opened:
        assert parts._open_target(opened, 0) == opened.fileno()


def test_the_streams_of_logging_handlers_are_kept(tmp_path: Path) -> None:
    logger = logging.getLogger("tests.daemon.parts")
    handler = logging.FileHandler(tmp_path / "log")
    logger.addHandler(handler)
    try:
        assert handler.stream.fileno() in parts._logging_fds()
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_other_threads_are_named(worker: threading.Thread) -> None:
    found = parts.other_threads()
    assert f"test-worker ({worker.native_id})" in found


@pytest.mark.usefixtures("no_manager")
def test_daemonize_refuses_to_fork_a_threaded_process(
    tmp_path: Path, worker: threading.Thread
) -> None:
    path = tmp_path / "d.pid"
    with pytest.raises(RuntimeError, match="test-worker"):
        daemonize(pidfile=path)
    assert not path.exists(), "the pid file it took is given back"
    held = PidFile(path)
    held.acquire()
    try:
        with pytest.raises(RuntimeError, match="must run before any thread starts"):
            daemonize(pidfile=held)
        assert held.held, "a PidFile the caller holds stays held"
    finally:
        held.release()


@pytest.mark.usefixtures("no_manager")
def test_daemonize_refuses_outside_the_main_thread() -> None:
    errors: list[BaseException] = []

    def call() -> None:
        try:
            daemonize()
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join()
    assert "main thread" in str(errors[0])


def test_a_held_pid_file_stops_a_second_instance_before_anything(tmp_path: Path) -> None:
    path = tmp_path / "d.pid"
    with PidFile(path), pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}"):
        daemonize(pidfile=path, foreground=True)


def test_under_a_service_manager_ready_sends_ready_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    address = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(address))
        monkeypatch.setenv("NOTIFY_SOCKET", str(address))
        with caplog.at_level(logging.INFO, logger="tether.daemon"):
            daemon = daemonize(pidfile=tmp_path / "d.pid")
        try:
            assert not daemon.detached
            assert daemon.reason == "NOTIFY_SOCKET is set: a service manager runs this process"
            assert "not detaching" in caplog.text
            assert "foreground" in repr(daemon)
            daemon.ready(status="up")
            assert manager.recv(100) == b"READY=1\nSTATUS=up\n"
            assert (tmp_path / "d.pid").read_text() == f"{os.getpid()}\n"
        finally:
            assert daemon.pidfile is not None
            daemon.pidfile.release()


@pytest.mark.usefixtures("no_manager")
def test_foreground_true_never_forks() -> None:
    daemon = daemonize(foreground=True)
    assert not daemon.detached
    assert daemon.reason == "foreground=True was passed"
    daemon.ready()  # no NOTIFY_SOCKET: nothing to tell

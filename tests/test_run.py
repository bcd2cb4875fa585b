"""tether.run: output capture, input, EPIPE, timeouts, check."""

from __future__ import annotations

import pickle
import signal
import subprocess
import sys
import time

import pytest

import tether

PY = sys.executable


def test_capture_both_streams(backend: str) -> None:
    done = tether.run(["sh", "-c", "echo out; echo err >&2; exit 3"], capture=True, backend=backend)
    assert done == tether.Completed(done.args, tether.Exited(3), b"out\n", b"err\n")
    assert done.returncode == 3
    assert done.args == ("sh", "-c", "echo out; echo err >&2; exit 3")


def test_without_capture_output_is_none() -> None:
    done = tether.run(["true"])
    assert (done.stdout, done.stderr, done.returncode) == (None, None, 0)
    done.check_returncode()


def test_large_input_and_output_do_not_deadlock() -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB: far more than a pipe holds
    done = tether.run(["cat"], input=payload, capture=True, check=True)
    assert done.stdout == payload


def test_child_that_never_reads_stdin() -> None:
    done = tether.run(["true"], input=b"x" * 1_000_000, check=True)
    assert done.status.success


def test_child_that_reads_a_little_then_exits() -> None:
    done = tether.run(["head", "-c", "5"], input=b"y" * 1_000_000, capture=True, check=True)
    assert done.stdout == b"yyyyy"


def test_child_that_closes_stdout_early() -> None:
    script = "exec 1>&-; echo still-running >&2"
    done = tether.run(["sh", "-c", script], capture=True, check=True)
    assert (done.stdout, done.stderr) == (b"", b"still-running\n")


def test_timeout_stops_the_child_and_keeps_partial_output() -> None:
    script = "import sys, time; print('before', flush=True); time.sleep(60)"
    started = time.monotonic()
    with pytest.raises(tether.TimeoutExpired) as caught:
        tether.run([PY, "-c", script], capture=True, timeout=1.0)
    assert time.monotonic() - started < 30
    assert isinstance(caught.value, subprocess.TimeoutExpired)
    assert caught.value.stdout == b"before\n"
    assert caught.value.timeout == 1.0
    assert caught.value.cmd == [PY, "-c", script]


def test_timeout_escalates_for_a_child_ignoring_sigterm() -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    with pytest.raises(tether.TimeoutExpired) as caught:
        tether.run([PY, "-c", script], capture=True, timeout=1.0, grace=0.1)
    assert caught.value.stdout == b"ready\n"


def test_check_raises_called_process_error() -> None:
    with pytest.raises(tether.CalledProcessError) as caught:
        tether.run(["sh", "-c", "echo nope >&2; exit 4"], capture=True, check=True)
    error = caught.value
    assert isinstance(error, subprocess.CalledProcessError)
    assert (error.returncode, error.stderr, error.status) == (4, b"nope\n", tether.Exited(4))
    assert str(error) == "Command ['sh', '-c', 'echo nope >&2; exit 4'] exited with status 4."
    again = pickle.loads(pickle.dumps(error))
    assert (again.returncode, again.status, again.stderr) == (4, tether.Exited(4), b"nope\n")


def test_check_reports_a_signal() -> None:
    with pytest.raises(tether.CalledProcessError, match="killed by SIGTERM") as caught:
        tether.run(["sh", "-c", "kill -TERM $$"], check=True)
    assert caught.value.returncode == -signal.SIGTERM


@pytest.mark.parametrize(
    ("options", "clash"),
    [
        ({"input": b"x", "stdin": tether.DEVNULL}, "stdin and input"),
        ({"capture": True, "stdout": 1}, "stdout and capture"),
    ],
)
def test_conflicting_options(options: dict[str, object], clash: str) -> None:
    with pytest.raises(ValueError, match=clash):
        tether.run(["true"], **options)  # type: ignore[arg-type]


def test_spawn_failure_propagates() -> None:
    with pytest.raises(FileNotFoundError):
        tether.run(["surely-no-such-program-tether"], capture=True)

"""AsyncProcess, open_process, run_process: waits, pipes, timeouts and cancellation.

Every test runs on asyncio and on trio (the ``anyio_backend`` fixture below); the
waiting and cancellation scenarios also run on the forced no-pidfd fallback
(``pidfd_mode``). Children that must be running when the test acts print "ready"
first; nothing here sleeps to synchronise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import anyio
import pytest

import tether
from tether._aio import _process as _async
from tether._core import _reaper

PY = sys.executable
WAIT_FOR_STDIN = "import sys; print('ready', flush=True); sys.stdin.read()"
IGNORE_TERM = (
    "import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); sys.stdin.read()"
)

pytestmark = pytest.mark.anyio


async def read_line(stream: anyio.abc.ByteReceiveStream | None) -> bytes:
    """Read from *stream* up to and including the first newline (or to EOF)."""
    assert stream is not None
    line = b""
    while not line.endswith(b"\n"):
        try:
            line += await stream.receive(1)
        except anyio.EndOfStream:
            break
    return line


async def started(script: str, **options: object) -> _async.AsyncProcess:
    """Open a Python child with stdin/stdout piped; return once it has printed "ready"."""
    process = await _async.open_process(
        [PY, "-c", script],
        stdin=tether.PIPE,
        stdout=tether.PIPE,
        **options,  # type: ignore[arg-type]
    )
    assert await read_line(process.stdout) == b"ready\n"
    return process


def spy_on_open_process(monkeypatch: pytest.MonkeyPatch) -> list[_async.AsyncProcess]:
    """Record every AsyncProcess that run_process (or open_process) makes."""
    opened: list[_async.AsyncProcess] = []
    real = _async.wrap

    def recording(process: tether.Process) -> _async.AsyncProcess:
        handle = real(process)
        opened.append(handle)
        return handle

    monkeypatch.setattr(_async, "wrap", recording)
    return opened


# --- waiting --------------------------------------------------------------------------


async def test_wait_returns_and_caches_the_status(pidfd_mode: str) -> None:
    process = await _async.open_process(["sh", "-c", "exit 7"])
    assert "sh" in repr(process)
    status = await process.wait()
    assert status == tether.Exited(7)
    assert process.status is status
    assert process.returncode == 7
    assert process.poll() is status
    assert await process.wait() is status
    assert process.pidfd is None
    assert status.rusage is not None
    assert repr(process).startswith("<tether.AsyncProcess pid=")
    assert "exited with status 7" in repr(process)


async def test_killed_by_a_signal(pidfd_mode: str) -> None:
    process = await _async.open_process(["sh", "-c", "kill -TERM $$"])
    assert await process.wait() == tether.Signaled(signal.SIGTERM)
    assert process.returncode == -signal.SIGTERM


async def test_signal_sent_to_a_running_child(pidfd_mode: str) -> None:
    async with await started(WAIT_FOR_STDIN) as process:
        assert process.poll() is None
        assert "running" in repr(process)
        if pidfd_mode == "pidfd":
            assert process.pidfd is not None
        process.send_signal(signal.SIGUSR1)
        assert await process.wait() == tether.Signaled(signal.SIGUSR1)
        process.kill()  # after the reap: a no-op
        process.terminate()


async def test_many_tasks_waiting_get_the_same_status(pidfd_mode: str) -> None:
    statuses: list[tether.Status] = []
    async with await started(WAIT_FOR_STDIN) as process:

        async def waiter() -> None:
            statuses.append(await process.wait())

        async with anyio.create_task_group() as tasks:
            for _ in range(8):
                tasks.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            process.send_signal(signal.SIGUSR1)
    assert len(statuses) == 8
    assert all(status is statuses[0] for status in statuses)
    assert statuses[0] == tether.Signaled(signal.SIGUSR1)


async def test_other_waiters_carry_on_when_the_watching_one_is_cancelled(
    pidfd_mode: str,
) -> None:
    statuses: list[tether.Status] = []
    async with await started(WAIT_FOR_STDIN) as process:
        first = anyio.CancelScope()

        async def first_waiter() -> None:
            with first:
                await process.wait()

        async def waiter() -> None:
            statuses.append(await process.wait())

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(first_waiter)  # starts first, so it watches the fd
            await anyio.wait_all_tasks_blocked()
            tasks.start_soon(waiter)
            tasks.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            first.cancel()
            await anyio.wait_all_tasks_blocked()
            assert process.poll() is None
            process.kill()
    assert first.cancelled_caught
    assert statuses == [tether.Signaled(signal.SIGKILL)] * 2


async def test_cancelled_wait_leaves_the_child_running(pidfd_mode: str) -> None:
    async with await started(WAIT_FOR_STDIN) as process:
        with anyio.move_on_after(0.05) as scope:
            await process.wait()
        assert scope.cancelled_caught
        assert process.poll() is None
        if pidfd_mode == "pidfd":
            assert process.pidfd is not None, "the pidfd was given back, not closed"
        assert process.stdin is not None
        await process.stdin.aclose()
        assert await process.wait() == tether.Exited(0)


async def test_no_thread_is_started_to_wait_on_a_pidfd() -> None:
    async with await started(WAIT_FOR_STDIN) as process:
        threads = threading.active_count()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(process.wait)
            await anyio.wait_all_tasks_blocked()
            assert threading.active_count() == threads
            process.kill()
        assert threading.active_count() == threads
    assert process.status == tether.Signaled(signal.SIGKILL)


# --- stopping and cancellation --------------------------------------------------------


async def test_leaving_async_with_stops_reaps_and_closes(pidfd_mode: str) -> None:
    async with await started(WAIT_FOR_STDIN) as process:
        pass
    assert process.status == tether.Signaled(signal.SIGTERM)
    with pytest.raises(anyio.ClosedResourceError):
        await read_line(process.stdout)


async def test_cancellation_inside_async_with_reaps_before_the_scope_exits(
    pidfd_mode: str,
) -> None:
    with anyio.CancelScope() as scope:
        async with await started(WAIT_FOR_STDIN) as process:
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert process.status == tether.Signaled(signal.SIGTERM)


async def test_exception_inside_async_with_stops_the_child_and_propagates() -> None:
    with pytest.raises(KeyError):
        async with await started(WAIT_FOR_STDIN) as process:
            raise KeyError("boom")
    assert process.status == tether.Signaled(signal.SIGTERM)


async def test_stop_escalates_to_sigkill_after_the_grace(pidfd_mode: str) -> None:
    async with await started(IGNORE_TERM) as process:
        started_at = time.monotonic()
        assert await process.stop(grace=0.2) == tether.Signaled(signal.SIGKILL)
        assert time.monotonic() - started_at >= 0.2
        assert await process.stop() == tether.Signaled(signal.SIGKILL)


async def test_stop_is_shielded_from_a_cancelled_caller() -> None:
    async with await started(WAIT_FOR_STDIN) as process:
        with anyio.CancelScope() as scope:
            scope.cancel()
            assert await process.stop(grace=30) == tether.Signaled(signal.SIGTERM)
            await anyio.sleep_forever()  # the cancellation arrives at the next checkpoint
        assert scope.cancelled_caught


async def test_stop_validates_grace() -> None:
    async with await started(WAIT_FOR_STDIN) as process:
        with pytest.raises(ValueError, match="grace"):
            await process.stop(grace=-1)


async def test_cancelled_before_open_process_starts_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_async, "start", lambda *a, **k: pytest.fail("spawned"))
    with anyio.CancelScope() as scope:
        scope.cancel()
        await _async.open_process(["sleep", "60"])
        pytest.fail("open_process returned under a cancelled scope")
    assert scope.cancelled_caught


async def test_cancelling_run_process_kills_and_reaps_the_child(
    pidfd_mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = spy_on_open_process(monkeypatch)
    script = (
        "import os, signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "os.write(int(sys.argv[1]), b'ready'); os.close(int(sys.argv[1])); "
        "print('partial', flush=True)\nwhile True: signal.pause()"
    )
    read_end, write_end = os.pipe()
    try:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(
                    lambda: _async.run_process(
                        [PY, "-c", script, str(write_end)],
                        pass_fds=[write_end],
                        capture=True,
                        timeout=60,
                        grace=0.2,
                    )
                )
                await anyio.wait_readable(read_end)
                assert os.read(read_end, 5) == b"ready"
                started_at = time.monotonic()
                scope.cancel()
        assert time.monotonic() - started_at >= 0.2, "SIGTERM is ignored: SIGKILL after grace"
    finally:
        os.close(read_end)
        os.close(write_end)
    assert scope.cancelled_caught, "a cancellation, not a TimeoutExpired"
    [process] = opened
    assert process.status == tether.Signaled(signal.SIGKILL)


# --- pipes ----------------------------------------------------------------------------


async def test_echo_through_cat(backend: str) -> None:
    async with await _async.open_process(
        ["cat"], stdin=tether.PIPE, stdout=tether.PIPE, backend=backend
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is None
        assert process.backend == backend
        await process.stdin.send(b"hello\n")
        assert await read_line(process.stdout) == b"hello\n"
        await process.stdin.aclose()
        with pytest.raises(anyio.EndOfStream):
            await process.stdout.receive()
        assert await process.wait() == tether.Exited(0)


async def test_writing_to_a_child_that_does_not_read_is_a_broken_resource() -> None:
    async with await _async.open_process(["true"], stdin=tether.PIPE) as process:
        assert await process.wait() == tether.Exited(0)
        assert process.stdin is not None
        with pytest.raises(anyio.BrokenResourceError):
            await process.stdin.send(b"x" * 100_000)


async def test_closing_a_stream_wakes_its_reader() -> None:
    async with await started(WAIT_FOR_STDIN) as process:
        assert process.stdout is not None
        stdout = process.stdout
        async with anyio.create_task_group() as tasks:

            async def reader() -> None:
                with pytest.raises(anyio.ClosedResourceError):
                    await stdout.receive()

            tasks.start_soon(reader)
            await anyio.wait_all_tasks_blocked()
            await stdout.aclose()
        await stdout.aclose()  # twice is fine
        with pytest.raises(anyio.ClosedResourceError):
            await stdout.receive()


# --- run_process ----------------------------------------------------------------------


async def test_run_process_captures_both_streams() -> None:
    done = await _async.run_process(["sh", "-c", "echo out; echo err >&2; exit 3"], capture=True)
    assert done == tether.Completed(done.args, tether.Exited(3), b"out\n", b"err\n")
    assert done.returncode == 3


async def test_run_process_without_capture() -> None:
    done = await _async.run_process(["true"])
    assert (done.stdout, done.stderr, done.returncode) == (None, None, 0)


async def test_run_process_large_input_and_output_do_not_deadlock(pidfd_mode: str) -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB each way: far more than a pipe holds
    done = await _async.run_process(["cat"], input=payload, capture=True, check=True)
    assert done.stdout == payload
    assert done.stderr == b""


async def test_run_process_child_that_never_reads_stdin() -> None:
    done = await _async.run_process(["true"], input=b"x" * 1_000_000, check=True)
    assert done.status.success


async def test_run_process_check_raises_called_process_error() -> None:
    with pytest.raises(tether.CalledProcessError) as caught:
        await _async.run_process(["sh", "-c", "echo nope >&2; exit 4"], capture=True, check=True)
    assert isinstance(caught.value, subprocess.CalledProcessError)
    assert (caught.value.returncode, caught.value.stderr) == (4, b"nope\n")


async def test_run_process_timeout_keeps_partial_output(pidfd_mode: str) -> None:
    argv = ["sh", "-c", "echo before; exec sleep 60"]
    with pytest.raises(tether.TimeoutExpired) as caught:
        await _async.run_process(argv, capture=True, timeout=0.5)
    assert isinstance(caught.value, subprocess.TimeoutExpired)
    assert caught.value.stdout == b"before\n"
    assert caught.value.stderr == b""
    assert caught.value.timeout == 0.5
    assert caught.value.cmd == argv


async def test_run_process_timeout_escalates_for_a_child_ignoring_sigterm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened = spy_on_open_process(monkeypatch)
    argv = ["sh", "-c", "trap '' TERM; echo ready; exec sleep 60"]
    with pytest.raises(tether.TimeoutExpired) as caught:
        await _async.run_process(argv, capture=True, timeout=0.5, grace=0.1)
    assert caught.value.stdout == b"ready\n"
    assert opened[0].status == tether.Signaled(signal.SIGKILL)


@pytest.mark.parametrize(
    ("options", "clash"),
    [
        ({"input": b"x", "stdin": tether.DEVNULL}, "stdin and input"),
        ({"capture": True, "stdout": 1}, "stdout and capture"),
        ({"grace": -1}, "grace"),
    ],
)
async def test_run_process_rejects_bad_options(options: dict[str, object], clash: str) -> None:
    with pytest.raises(ValueError, match=clash):
        await _async.run_process(["true"], **options)  # type: ignore[arg-type]


async def test_run_process_spawn_failure_propagates() -> None:
    with pytest.raises(FileNotFoundError):
        await _async.run_process(["surely-no-such-program-tether"], capture=True)


# --- native asyncio cancellation ------------------------------------------------------


def test_native_asyncio_cancel_inside_stop_still_reaps() -> None:
    """A ``Task.cancel`` reaches into anyio shields; ``stop`` then kills and reaps at once."""
    import asyncio

    async def main() -> None:
        async with await started(IGNORE_TERM) as process:
            stopping = asyncio.ensure_future(process.stop(grace=30))
            await asyncio.sleep(0)  # the task runs up to its wait on the pidfd
            assert not stopping.done()
            stopping.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stopping
            assert process.status == tether.Signaled(signal.SIGKILL)

    started_at = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - started_at < 20, "the grace period was cut short"


async def test_detach_and_limits_pass_through(anyio_backend: str) -> None:
    process = await tether.open_process(
        ["sh", "-c", "read line"], stdin=tether.PIPE, limits=tether.Limits(core=0)
    )
    async with process:
        assert process.limits().core == (0, 0)
        process.set_limits(tether.Limits(core=(0, 0), nofile=(50, 60)))
        assert process.limits().nofile == (50, 60)
        process.detach()
    # leaving the block closed stdin, so sh exits and the reaper reaps it
    assert _reaper.REAPER.wait_idle(timeout=30)


async def test_run_process_ends_when_the_child_exits(anyio_backend: str) -> None:
    script = "sleep 30 & echo started; echo $! >&2"
    with anyio.fail_after(20):
        done = await tether.run_process(["sh", "-c", script], capture=True, start_new_session=True)
    assert done.stdout == b"started\n"
    group = os.getpgid(int(done.stderr or b"0"))  # the orphaned sleep's own group
    assert group != os.getpgid(0)
    os.killpg(group, signal.SIGKILL)


class _Interrupt(BaseException):
    """Stands for KeyboardInterrupt, which asyncio re-raises out of the event loop itself."""


@pytest.mark.parametrize("error", [_Interrupt, ValueError])
async def test_a_lone_exception_leaves_run_process_unwrapped(
    monkeypatch: pytest.MonkeyPatch, error: type[BaseException]
) -> None:
    """An interrupt inside run_process is itself, not a group of one, on asyncio and trio."""

    async def collect(stream: object, into: list[bytes]) -> None:
        raise error

    monkeypatch.setattr(_async, "_collect", collect)
    with pytest.raises(error):  # one task fails: stdout alone is collected
        await tether.run_process(["sleep", "60"], stdout=tether.PIPE, grace=0.5)

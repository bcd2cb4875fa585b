"""The direct wait on an exit fd (``_aio._readable``): asyncio's reader, trio's wait, anyio's.

Every test runs on asyncio and on trio. What must hold on each: a waiter wakes when the
child exits; a cancelled waiter leaves no reader and no callback behind, at each await;
several waiters of one fd (on asyncio, where they share one reader) all wake, and
cancelling one keeps the others waiting; a wait after the sync side reaped the child
returns its status; and the anyio fallback still works for any other loop.
"""

from __future__ import annotations

import asyncio
import sys
import threading

import anyio
import anyio.lowlevel
import pytest

import tether
from tether._aio import _process as _async
from tether._aio import _readable

PY = sys.executable
WAIT_FOR_STDIN = "import sys; print('ready', flush=True); sys.stdin.read()"

pytestmark = pytest.mark.anyio


async def started() -> _async.AsyncProcess:
    """A Python child that waits on its stdin, once it has said so."""
    process = await _async.open_process(
        [PY, "-c", WAIT_FOR_STDIN], stdin=tether.PIPE, stdout=tether.PIPE
    )
    assert process.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        line += await process.stdout.receive(1)
    assert line == b"ready\n"
    return process


def reader_gone(fd: int) -> bool:
    """Nothing waits on *fd* through ``_readable`` (and, on asyncio, the loop has no reader)."""
    loop = asyncio._get_running_loop()
    if loop is None:
        return not _readable._readers
    return not _readable._readers and not loop.remove_reader(fd)


async def test_the_direct_path_is_taken_and_cleared(anyio_backend: str) -> None:
    async with await started() as process:
        fd = process.pidfd
        assert fd is not None
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(process.wait)
            await anyio.wait_all_tasks_blocked()
            loop = asyncio._get_running_loop()
            if anyio_backend == "asyncio":
                assert loop is not None
                assert list(_readable._readers) == [(loop, fd)]
            else:
                assert loop is None
                assert not _readable._readers
            process.kill()
        assert reader_gone(fd)
        assert process.pidfd is None


@pytest.mark.parametrize("checkpoints", [0, 1, 3])
async def test_a_cancelled_wait_leaves_nothing_registered(checkpoints: int) -> None:
    """Cancelled at once, or after a few loop turns: no reader, no callback, child kept."""
    async with await started() as process:
        fd = process.pidfd
        assert fd is not None
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(process.wait)
                for _ in range(checkpoints):
                    await anyio.lowlevel.checkpoint()
                scope.cancel()
        assert reader_gone(fd)
        assert process.poll() is None
        assert process.pidfd == fd, "given back, not closed"
        process.kill()
        assert (await process.wait()).returncode == -9
        assert reader_gone(fd)


async def test_cancelling_the_direct_wait_itself(anyio_backend: str) -> None:
    async with await started() as process:
        fd = process.pidfd
        assert fd is not None
        with anyio.move_on_after(0.01) as scope:
            await _readable.wait_readable(fd)
        assert scope.cancelled_caught
        assert reader_gone(fd)
        process.kill()
        await _readable.wait_readable(fd)
        assert reader_gone(fd)
        assert process.poll() is not None


async def test_two_direct_waiters_of_one_fd(anyio_backend: str) -> None:
    """asyncio: two waiters share one reader, a cancelled one leaves the other waiting.
    trio refuses a second waiter of one fd, as it does through anyio."""
    async with await started() as process:
        fd = process.pidfd
        assert fd is not None
        woken: list[str] = []

        async def waiter(name: str) -> None:
            await _readable.wait_readable(fd)
            woken.append(name)

        if anyio_backend == "trio":
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(waiter, "first")
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(anyio.BusyResourceError):  # anyio's error, as before
                    await _readable.wait_readable(fd)
                process.kill()
            assert woken == ["first"]
            return
        cancelled = anyio.CancelScope()

        async def cancelled_waiter() -> None:
            with cancelled:
                await waiter("cancelled")

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(waiter, "first")
            tasks.start_soon(cancelled_waiter)
            tasks.start_soon(waiter, "second")
            await anyio.wait_all_tasks_blocked()
            assert len(next(iter(_readable._readers.values()))) == 3
            cancelled.cancel()
            await anyio.wait_all_tasks_blocked()
            assert len(next(iter(_readable._readers.values()))) == 2
            process.kill()
        assert sorted(woken) == ["first", "second"]
        assert reader_gone(fd)
        assert (await process.wait()).returncode == -9


async def test_wait_after_the_sync_side_reaped(anyio_backend: str) -> None:
    async with await started() as process:
        process.kill()
        status = process._process.wait()
        assert await process.wait() is status
        assert process.pidfd is None


async def test_sync_reap_while_a_task_awaits(anyio_backend: str) -> None:
    """A thread reaps with ``Process.wait`` while a task awaits the same exit fd."""
    async with await started() as process:
        fd = process.pidfd
        assert fd is not None
        from_thread: list[tether.Status] = []
        thread = threading.Thread(target=lambda: from_thread.append(process._process.wait()))
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(process.wait)
            await anyio.wait_all_tasks_blocked()
            thread.start()
            process.kill()
        thread.join()
        assert from_thread == [process.status]
        assert process.status is not None
        assert process.status.returncode == -9
        assert reader_gone(fd)
        assert process.pidfd is None


async def test_the_anyio_fallback_for_other_loops(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither asyncio's loop nor a trio run found: anyio's wait_readable does the wait."""
    calls: list[int] = []
    real = anyio.wait_readable

    async def counting(fd: int) -> None:
        calls.append(fd)
        await real(fd)

    monkeypatch.setattr(_readable, "_running_loop", lambda: None)
    monkeypatch.setattr(anyio, "wait_readable", counting)
    if anyio_backend == "trio":
        monkeypatch.delitem(sys.modules, "trio")
    async with await started() as process:
        fd = process.pidfd
        assert fd is not None
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(process.wait)
            await anyio.wait_all_tasks_blocked()
            process.kill()
        assert calls.count(fd) == 1  # the pipes wait through anyio too
        assert not _readable._readers


def test_outside_any_trio_run_trio_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """trio imported but not running (an asyncio program next to trio code): asyncio's path."""
    import trio  # noqa: F401  # imported, as in a program that also uses trio

    async def main() -> tether.Status:
        async with await started() as process:
            fd = process.pidfd
            assert fd is not None
            waiting = asyncio.ensure_future(process.wait())
            await asyncio.sleep(0)
            assert list(_readable._readers) == [(asyncio.get_running_loop(), fd)]
            process.kill()
            return await waiting

    assert asyncio.run(main()).returncode == -9
    assert not _readable._readers


async def test_a_loop_without_readers_falls_back_to_anyio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio._get_running_loop()
    if loop is None:
        pytest.skip("asyncio only")
    real_add = loop.add_reader
    used: list[int] = []

    def refuse(*args: object) -> None:
        raise NotImplementedError

    async def through_anyio(fd: int) -> None:  # anyio's own wait, on the real reader
        used.append(fd)
        future = loop.create_future()
        real_add(fd, future.set_result, None)
        try:
            await future
        finally:
            loop.remove_reader(fd)

    monkeypatch.setattr(loop, "add_reader", refuse)
    monkeypatch.setattr(anyio, "wait_readable", through_anyio)
    async with await started() as process:
        fd = process.pidfd
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(process.wait)
            await anyio.wait_all_tasks_blocked()
            process.kill()
        assert used.count(fd) == 1  # the pipes wait through anyio too
        assert not _readable._readers


# --- AsyncProcess.wait's own path: the loop's awaitable, no frame of ours around it ----


async def test_a_wake_before_the_child_can_be_reaped_waits_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fd wakes the watcher while the child still runs: it waits again, nothing leaks."""
    wakes: list[int] = []
    real = _async.readable

    def spurious_once(fd: int) -> object:
        wakes.append(fd)
        if len(wakes) == 1:
            return anyio.lowlevel.checkpoint()  # back at once, the child still running
        return real(fd)

    monkeypatch.setattr(_async, "readable", spurious_once)
    async with await started() as process:
        fd = process.pidfd
        assert fd is not None
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(process.wait)
            await anyio.wait_all_tasks_blocked()
            assert wakes[:1] == [fd]
            assert process.poll() is None
            process.kill()
        assert process.status is not None
        assert process.status.returncode == -9
        assert reader_gone(fd)
        assert process.pidfd is None


async def test_a_foreign_trio_waiter_of_the_pidfd_gives_anyios_busy_error(
    anyio_backend: str,
) -> None:
    """Someone else awaits the pidfd with trio: wait() raises as anyio would, and gives the
    fd back, so a later wait still works."""
    if anyio_backend != "trio":
        pytest.skip("asyncio shares one reader between waiters")
    import trio

    async with await started() as process:
        fd = process.pidfd
        assert fd is not None
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(trio.lowlevel.wait_readable, fd)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(anyio.BusyResourceError):
                await process.wait()
            assert not process._watching
            process.kill()
        assert (await process.wait()).returncode == -9
        assert process.pidfd is None


async def test_open_process_checks_for_cancellation_without_yielding() -> None:
    """No turn of the loop before the spawn (the wait that follows yields), but a cancelled
    caller still gets no child: see test_async's cancelled-scope tests."""
    ran: list[str] = []

    async def other_task() -> None:
        ran.append("other")

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(other_task)
        process = await _async.open_process(["true"])
        assert ran == [], "open_process let another task run before it returned"
        assert (await process.wait()).returncode == 0
    assert ran == ["other"]


async def test_run_process_under_a_cancelled_scope_starts_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_async, "start", lambda *a, **k: pytest.fail("spawned"))
    with anyio.CancelScope() as scope:
        scope.cancel()
        await _async.run_process(["true"])
        pytest.fail("run_process returned under a cancelled scope")
    assert scope.cancelled_caught


class Boom(Exception):
    """Stands for an exception a signal handler raises in the middle of tether's code."""


async def test_an_exception_while_giving_the_fd_back_still_ends_the_watch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another task could never watch (nor wait for) the child again otherwise."""
    async with await started() as process:
        sync = process._process
        real = type(sync)._return_exit_fd
        raised: list[bool] = []

        def give_back_then_raise(self: tether.Process, lease: object) -> None:
            real(self, lease)  # type: ignore[arg-type]
            if self is sync and not raised:
                raised.append(True)
                raise Boom

        # on the class: Process has __slots__, so an instance attribute cannot shadow it
        monkeypatch.setattr(type(sync), "_return_exit_fd", give_back_then_raise)
        with anyio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(Boom):
                await process.wait()  # cancelled while awaiting the fd, then the give-back raises
        assert raised == [True]
        assert not process._watching
        assert process.pidfd is not None
        assert sync._borrowers == 0
        process.kill()
        assert (await process.wait()).returncode == -9

"""``tether.asyncio``: ``create_subprocess_exec``/``_shell`` with asyncio's interface.

These run on asyncio only (the module is asyncio's drop-in; trio users have
``tether.open_process``), each in a fresh event loop.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import tether
from tether import asyncio as tether_asyncio


def _run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(main())  # type: ignore[arg-type]


def test_exec_with_pipes_communicates() -> None:
    async def main() -> tuple[Any, ...]:
        process = await tether_asyncio.create_subprocess_exec(
            "cat", stdin=tether_asyncio.PIPE, stdout=tether_asyncio.PIPE
        )
        assert isinstance(process.stdin, asyncio.StreamWriter)
        assert isinstance(process.stdout, asyncio.StreamReader)
        assert process.returncode is None
        out, err = await process.communicate(b"hello")
        return out, err, process.returncode, repr(process) == f"<Process {process.pid}>"

    assert _run(main) == (b"hello", None, 0, True)


def test_shell_streams_and_exit_code() -> None:
    async def main() -> tuple[Any, ...]:
        process = await tether_asyncio.create_subprocess_shell(
            "echo $((2 + 3)); echo oops >&2; exit 4",
            stdout=tether_asyncio.PIPE,
            stderr=tether_asyncio.PIPE,
        )
        assert process.stdout is not None
        line = await process.stdout.readline()
        out, err = await process.communicate()
        return line, out, err, process.returncode, process.popen.status

    assert _run(main) == (b"5\n", b"", b"oops\n", 4, tether.Exited(4))


def test_many_waiters_one_status_and_signals_after_the_reap_are_dropped() -> None:
    async def main() -> tuple[Any, ...]:
        process = await tether_asyncio.create_subprocess_exec("sleep", "60")
        waiters = [asyncio.ensure_future(process.wait()) for _ in range(3)]
        await asyncio.sleep(0)
        waiters[0].cancel()  # a cancelled waiter leaves the others waiting
        process.terminate()
        codes = await asyncio.gather(*waiters[1:])
        process.kill()  # reaped already: nothing happens
        process.send_signal(signal.SIGTERM)
        return tuple(codes), await process.wait(), waiters[0].cancelled()

    assert _run(main) == ((-signal.SIGTERM, -signal.SIGTERM), -signal.SIGTERM, True)


def test_a_child_that_never_reads_stdin_is_no_error() -> None:
    async def main() -> tuple[Any, ...]:
        process = await tether_asyncio.create_subprocess_exec(
            "true", stdin=tether_asyncio.PIPE, stdout=tether_asyncio.PIPE
        )
        out, _ = await process.communicate(b"x" * 1_000_000)
        return out, process.returncode

    assert _run(main) == (b"", 0)


def test_text_mode_and_shell_misuse_are_refused_as_asyncio_refuses_them() -> None:
    async def main() -> None:
        for bad in ({"text": True}, {"universal_newlines": True}, {"encoding": "utf-8"}):
            with pytest.raises(ValueError, match="must be"):
                await tether_asyncio.create_subprocess_exec("true", **bad)
        with pytest.raises(ValueError, match="errors must be None"):
            await tether_asyncio.create_subprocess_exec("true", errors="strict")
        with pytest.raises(ValueError, match="bufsize must be 0"):
            await tether_asyncio.create_subprocess_exec("true", bufsize=1)
        with pytest.raises(ValueError, match="shell must be False"):
            await tether_asyncio.create_subprocess_exec("true", shell=True)
        with pytest.raises(ValueError, match="shell must be True"):
            await tether_asyncio.create_subprocess_shell("true", shell=False)
        with pytest.raises(ValueError, match="cmd must be a string"):
            await tether_asyncio.create_subprocess_shell(["true"])  # type: ignore[arg-type]
        with pytest.raises(FileNotFoundError):
            await tether_asyncio.create_subprocess_exec("/no/such/program")

    _run(main)


def test_popen_arguments_and_tether_extras_pass_through(tmp_path: Any) -> None:
    async def main() -> bytes:
        process = await tether_asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import os, resource as r; print(os.getcwd(), r.getrlimit(r.RLIMIT_NOFILE)[0])",
            stdout=tether_asyncio.PIPE,
            cwd=tmp_path,
            limits=tether.Limits(nofile=64),
        )
        out, _ = await process.communicate()
        return out

    assert _run(main) == f"{tmp_path} 64\n".encode()


def test_a_cancelled_spawn_await_leaves_no_child() -> None:
    """Cancelled while connecting the pipes, the start kills and reaps its child."""

    async def main() -> None:
        task = asyncio.ensure_future(
            tether_asyncio.create_subprocess_exec(
                "sleep", "60", stdout=tether_asyncio.PIPE, stderr=tether_asyncio.PIPE
            )
        )
        await asyncio.sleep(0)  # the child exists; the pipes are being connected
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    _run(main)

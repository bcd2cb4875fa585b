"""The C floor: build ``floor/floor.c`` and drive it from a benchmark script.

A ratio against ``subprocess`` says how tether compares with the standard library; a
ratio against the C floor says how much of the time is left for any library to win.
``floor.c`` times, in its own process, a spawn+reap of ``/bin/true`` with
``posix_spawn`` + ``waitpid`` and with ``vfork`` + ``execve`` + ``waitpid``, and a kill
-> reap through a pidfd (``pidfd_send_signal`` -> ``poll`` -> ``waitid(P_PIDFD)``),
passing the children the C ``environ`` as tether's native backend does for ``env=None``.

:func:`build_floor` compiles it with ``cc -O2`` into ``floor/build/`` (git-ignored),
named after a hash of the source and of the compiler's version, so an edit or a new
compiler rebuilds it and nothing else does. :class:`Floor` runs it as one long-lived
server process: a script asks it for a batch (``floor.spawn(50)``) between its own
contenders' batches, so the floor is interleaved with them like any other contender,
and the clock runs inside the C program (starting it is never timed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import TracebackType

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "floor" / "floor.c"
BUILD = HERE / "floor" / "build"
TRUE = "/bin/true"
SLEEP = shutil.which("sleep") or "/bin/sleep"

FLOOR_SPAWN = "C posix_spawn+waitpid"
FLOOR_VFORK = "C vfork+execve+waitpid"
FLOOR_REAP = "C pidfd_send_signal->poll->waitid"


class FloorError(RuntimeError):
    """The C floor could not be built or did not answer as it should."""


def compiler() -> str:
    """The C compiler: ``$CC`` if set, else ``cc``; a clear error when there is none."""
    name = os.environ.get("CC", "cc")
    path = shutil.which(name)
    if path is None:
        raise FloorError(
            f"no C compiler ({name!r} not found on PATH): the benchmarks build their C floor "
            f"from {SOURCE}; install gcc (Debian: apt-get install gcc) or set CC"
        )
    return path


def build_floor() -> Path:
    """Compile ``floor.c`` with ``cc -O2`` unless a build of this source exists; its path."""
    cc = compiler()
    version = subprocess.run([cc, "--version"], capture_output=True, check=False).stdout
    digest = hashlib.sha256(SOURCE.read_bytes() + b"\0" + version).hexdigest()[:16]
    binary = BUILD / f"floor-{digest}"
    if binary.exists():
        return binary
    BUILD.mkdir(parents=True, exist_ok=True)
    partial = BUILD / f".floor-{digest}.{os.getpid()}"
    result = subprocess.run(
        [cc, "-O2", "-Wall", "-Wextra", "-o", str(partial), str(SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise FloorError(f"{cc} -O2 {SOURCE} failed:\n{result.stderr}")
    partial.replace(binary)  # atomic: a concurrent build of the same source is harmless
    return binary


def child_argv(binary: Path, delay_us: int, fd: int) -> list[str]:
    """argv of the tiny child of ``bench_zombies.py``: sleeps, writes ``PID NS`` to *fd*."""
    return [str(binary), "--child", str(delay_us), str(fd)]


class Floor:
    """A running ``floor`` server; each method runs one batch and returns µs per operation.

    Use it as a context manager: leaving it ends the server (it exits on end of input)
    and reaps it.
    """

    def __init__(self, binary: Path | None = None) -> None:
        self.binary = build_floor() if binary is None else binary
        self._process = subprocess.Popen(
            [str(self.binary), TRUE, SLEEP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def __enter__(self) -> Floor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        process = self._process
        if process.returncode is not None:
            return
        try:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=30)
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            if process.stdout is not None:
                process.stdout.close()

    def _batch(self, mode: str, n: int) -> list[float]:
        process = self._process
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(f"{mode} {n}\n")
        process.stdin.flush()
        line = process.stdout.readline()
        if not line:
            raise FloorError(f"the floor ended without answering {mode} {n}")
        answer = json.loads(line)
        if "error" in answer:
            raise FloorError(f"floor {mode} {n}: {answer['error']}")
        samples = answer["ns"]
        if answer["mode"] != mode or len(samples) != n:
            raise FloorError(f"floor {mode} {n}: unexpected answer {line!r}")
        return [ns / 1000 for ns in samples]

    def spawn(self, n: int) -> list[float]:
        """*n* x ``posix_spawn`` + ``waitpid`` of ``/bin/true``: µs each."""
        return self._batch("spawn", n)

    def vfork(self, n: int) -> list[float]:
        """*n* x ``vfork`` + ``execve`` + ``waitpid`` of ``/bin/true``: µs each."""
        return self._batch("vfork", n)

    def reap(self, n: int) -> list[float]:
        """*n* ``sleep`` children killed one by one: µs from the signal to ``waitid``."""
        return self._batch("reap", n)

"""A short tour of what tether guarantees, with real child processes.

Run with ``make demo``. Each step prints what happened and checks it, so the demo
fails loudly if a guarantee is broken. Grandchildren are watched through pidfds
the demo opens itself: "dead" below is the kernel's word, not ours.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
import warnings

import anyio
import sniffio

import tether

PY = sys.executable
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ignoring SIGTERM', flush=True); time.sleep(600)"
)
TREE = "sleep 600 & sleep 600 & echo $! ; wait"  # a shell with two grandchildren


def step(title: str) -> None:
    print(f"\n== {title}")


def dead(pidfd: int) -> bool:
    """Whether the process behind *pidfd* has exited (it turns readable)."""
    return bool(select.select([pidfd], [], [], 5)[0])


def supervisor_stops_a_tree() -> None:
    step("A Supervisor scope stops every tree it started, however it ends")
    pins: list[int] = []
    started = time.monotonic()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", tether.KilledAfterGraceWarning)
            with tether.Supervisor(grace=0.5) as sup:
                shell = sup.spawn(["sh", "-c", TREE], stdout=tether.PIPE)
                stubborn = sup.spawn([PY, "-c", STUBBORN], stdout=tether.PIPE)
                assert shell.stdout is not None
                assert stubborn.stdout is not None
                pins.append(os.pidfd_open(int(shell.stdout.readline())))
                print(f"  {stubborn.stdout.readline().decode().strip()} (pid {stubborn.pid})")
                print(f"  shell {shell.pid} runs sleep grandchildren in its process group")
                raise RuntimeError("the body failed")
    except RuntimeError as error:
        print(f"  scope left by: {error}; stopped in {time.monotonic() - started:.2f}s")
    for child in (shell, stubborn):
        print(f"  {' '.join(child.args)[:40]!r:44} -> {child.status}")
    for warning in caught:
        print(f"  warning: {warning.message}")
    print(f"  grandchild sleep dead: {all(dead(pin) for pin in pins)}")
    for pin in pins:
        os.close(pin)
    assert shell.status is not None
    assert stubborn.status == tether.Signaled(signal.SIGKILL)


async def async_scope_cancelled() -> None:
    step("An AsyncSupervisor scope cancelled from outside stops its children too")
    with anyio.move_on_after(0.3):
        async with tether.AsyncSupervisor(grace=1) as sup:
            child = await sup.start(["sleep", "600"])
            await anyio.sleep_forever()
    loop = sniffio.current_async_library()
    print(f"  {loop}: cancelled after 0.3s -> child {child.pid} {child.status}")
    assert child.status == tether.Signaled(signal.SIGTERM)


def limits_in_the_child() -> None:
    step("Child-side setup in C between clone and exec: limits, proven by /proc")
    limits = tether.Limits(nofile=(64, 128), core=0, cpu="30s")
    with tether.spawn(["sleep", "600"], limits=limits) as process:
        with open(f"/proc/{process.pid}/limits") as proc_limits:
            lines = [line.rstrip() for line in proc_limits if "open files" in line]
        print(f"  backend={process.backend}: {lines[0]}")
        print(f"  read back: {process.limits().nofile} (soft, hard)")


def timeout_stops_a_stubborn_child() -> None:
    step("run() with a timeout: SIGTERM, a grace period, then SIGKILL")
    started = time.monotonic()
    try:
        tether.run([PY, "-c", STUBBORN], capture=True, timeout=0.5, grace=0.3)
    except tether.TimeoutExpired as expired:
        print(f"  timed out after {expired.timeout}s; output so far: {expired.stdout!r}")
    print(f"  the child was killed and reaped after {time.monotonic() - started:.2f}s")


def errors_say_where() -> None:
    step("A failed spawn says what failed, where; nothing is left behind")
    for argv, options in ((["no-such-program", "--flag"], {}), (["ls"], {"cwd": "/no/such"})):
        try:
            tether.spawn(argv, **options)  # type: ignore[arg-type]
        except FileNotFoundError as error:
            print(f"  {type(error).__name__}: {error}")


def stolen_status_is_recovered() -> None:
    step("Another library reaps our child with waitpid(-1): the status survives")
    process = tether.spawn(["sh", "-c", "exit 42"])
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
    stolen_pid, _ = os.waitpid(-1, 0)
    print(f"  a foreign waitpid(-1) reaped pid {stolen_pid}")
    try:
        status = process.wait()
    except tether.StatusUnknownError:
        print("  this kernel (< 6.15) kept no record: tether says 'unknown', never 0")
    else:
        print(f"  tether still reports: {status} (kept on the pidfd by Linux 6.15+)")
        assert status == tether.Exited(42)


def main() -> None:
    supervisor_stops_a_tree()
    for backend in ("asyncio", "trio"):
        anyio.run(async_scope_cancelled, backend=backend)
    limits_in_the_child()
    timeout_stops_a_stubborn_child()
    errors_say_where()
    stolen_status_is_recovered()
    print("\nEvery child above was reaped; none outlived its scope.")


if __name__ == "__main__":
    main()

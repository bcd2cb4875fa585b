"""A short tour of what tether guarantees today, with real child processes.

Run with ``make demo``. Each step prints what happened and checks it, so the demo
fails loudly if a guarantee is broken.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import tether

PY = sys.executable
STUBBORN = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ignoring SIGTERM', flush=True); time.sleep(60)"
)


def step(title: str) -> None:
    print(f"\n== {title}")


def decoded_statuses() -> None:
    step("Statuses are decoded values, not magic integers")
    for argv in (["sh", "-c", "exit 3"], ["sh", "-c", "kill -KILL $$"], ["true"]):
        process = tether.spawn(argv)
        status = process.wait()
        usage = status.rusage
        assert usage is not None
        print(
            f"  {' '.join(argv)!r:28} -> {status!s:22} returncode={status.returncode:<4}"
            f" backend={process.backend} cpu={usage.user_time + usage.system_time:.4f}s"
        )


def timeout_stops_a_stubborn_child() -> None:
    step("A timeout stops the child: SIGTERM, a grace period, then SIGKILL")
    started = time.monotonic()
    try:
        tether.run([PY, "-c", STUBBORN], capture=True, timeout=0.5, grace=0.3)
    except tether.TimeoutExpired as expired:
        print(f"  timed out after {expired.timeout}s; output so far: {expired.stdout!r}")
    print(f"  the child was killed and reaped after {time.monotonic() - started:.2f}s")


def scope_exit_stops_the_child() -> None:
    step("Leaving a `with` block by exception stops and reaps the child")
    try:
        with tether.spawn([PY, "-c", "import time; time.sleep(60)"]) as process:
            raise RuntimeError("something went wrong in the parent")
    except RuntimeError as error:
        print(f"  {error!s}: child {process.pid} -> {process.status}")
    assert process.status is not None


def errors_say_where() -> None:
    step("A failed spawn says what failed, where; nothing is left behind")
    for argv, options in ((["no-such-program", "--flag"], {}), (["ls"], {"cwd": "/no/such/dir"})):
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


def signals_never_hit_a_recycled_pid() -> None:
    step("After the reap, signals are dropped: a recycled pid is never hit")
    process = tether.spawn(["true"])
    process.wait()
    process.send_signal(signal.SIGKILL)
    print(f"  kill() after reap of pid {process.pid}: no-op, pidfd={process.pidfd}")


def main() -> None:
    decoded_statuses()
    timeout_stops_a_stubborn_child()
    scope_exit_stops_the_child()
    errors_say_where()
    stolen_status_is_recovered()
    signals_never_hit_a_recycled_pid()
    print("\nEvery child above was reaped; none outlived its scope.")


if __name__ == "__main__":
    main()

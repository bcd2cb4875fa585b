"""Zombie lifespan under load: how long each exited child stays unreaped.

Method
------
A pool of ``--workers`` children (default 8) runs at once; as each is reaped, the
next one starts, until ``--children`` have run. Every child is the C floor's tiny
child (``floor --child DELAY_US 1``, see ``_floor.py``): it sleeps DELAY_US, then
writes ``PID NS`` to its stdout, NS read from ``CLOCK_MONOTONIC`` just before it calls
``_exit(0)``, in one ``write(2)`` to a pipe shared by the batch. The delays are drawn
uniformly from 0 to ``--max-delay`` ms (default 20), once per round, and every
contender runs the same list in that round. The reaper records ``time.monotonic_ns()``
(the same clock) as soon as the reap returns; the sample is the difference, the
zombie's lifespan as each waiter sees it: the kernel's teardown of the child and
wake-up of the waiter, plus whatever the waiter does before it gets there (thread
hand-offs, an event loop's turn, a busy main thread).

Contenders, each with its own pool:

* ``tether wait() (threads)``: one thread per worker, each ``tether.spawn(...)`` then
  ``Process.wait()``; the time is taken when ``wait()`` returns.
* ``tether reaper (detach)``: the main thread spawns and ``detach()``-es each child, so
  tether's background reaper (one thread, one epoll) reaps it. The script wraps the
  reaper's reap call (``tether._core._reap.reap_pidfd``) for that contender's
  batches only, to take the time when it returns and to learn that a slot is free.
* ``tether await wait() [asyncio]``, ``[trio]``: one task per worker,
  ``tether.open_process`` then ``await wait()``.
* ``SIGCHLD handler``: ``os.posix_spawn`` from the main thread, and a Python
  ``SIGCHLD`` handler that loops ``waitpid(-1, WNOHANG)`` and takes the time of each
  reap; the main thread sleeps in ``select`` on ``signal.set_wakeup_fd``'s pipe.
  The classic hand-written reaper.
* ``asyncio.create_subprocess_exec``: one task per worker, ``await
  Process.wait()`` (asyncio's child watcher: a thread per child up to 3.11, a pidfd
  from 3.12 where it can).

In the single-threaded contenders (the event loops, the SIGCHLD handler's main thread)
starting the next children takes turns with noticing exits, so an exit that lands
while the loop is busy spawning waits for it: that is the load this measures.

Each round runs the contenders in a freshly shuffled order, after one untimed
warm-up batch each; every status must be exit 0 and every child must have reported.
Reported per contender over all its samples: median, p10, p90 and p99 (µs), and the
ratio of the median and the p99 to the ``SIGCHLD handler``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import gc
import os
import random
import select
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

import tether
import tether._core._reap as tether_reap
from _common import (
    add_run_options,
    environment,
    format_machine,
    make_parser,
    parse_common,
    positive_int,
    render_table,
    write_document,
)
from _floor import build_floor, child_argv

DEFAULT_ROUNDS = 8
DEFAULT_CHILDREN = 64
QUICK_ROUNDS = 2
QUICK_CHILDREN = 24
DEFAULT_WORKERS = 8
DEFAULT_MAX_DELAY_MS = 20
PIPE_SIZE = 1 << 20
"""The shared pipe's capacity: the children's lines are read after the batch."""
MAX_CHILDREN = 20_000
"""At ~25 bytes a line, what the pipe holds."""
REFERENCE = "SIGCHLD handler"


@dataclass(frozen=True)
class Batch:
    """One batch's work: the child's binary, the delays (µs), the pool size, the pipe."""

    binary: Path
    delays_us: list[int]
    workers: int
    write_fd: int

    def argv(self, delay_us: int) -> list[str]:
        return child_argv(self.binary, delay_us, 1)


Reaps = dict[int, int]
"""pid -> ``time.monotonic_ns()`` when its reap returned."""


@dataclass(frozen=True)
class Contender:
    name: str
    run: Callable[[Batch], Reaps]


@dataclass(frozen=True)
class Summary:
    """A contender's lifespans (µs) per round, and their statistics over all samples."""

    name: str
    lifespans_us: list[list[float]]
    median_us: float
    p10_us: float
    p90_us: float
    p99_us: float
    vs_reference_median: float
    vs_reference_p99: float


def check_exit(name: str, code: int | None) -> None:
    if code != 0:
        raise RuntimeError(f"{name}: a child exited with {code}, not 0")


# --- contenders -----------------------------------------------------------------------


def tether_threads(batch: Batch) -> Reaps:
    reaps: Reaps = {}
    delays: Iterator[int] = iter(batch.delays_us)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while True:
                with lock:
                    delay = next(delays, None)
                if delay is None:
                    return
                process = tether.spawn(batch.argv(delay), stdout=batch.write_fd)
                status = process.wait()
                reaps[process.pid] = time.monotonic_ns()
                check_exit("tether wait()", status.returncode)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(batch.workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return reaps


def tether_reaper(batch: Batch) -> Reaps:
    reaps: Reaps = {}
    codes: list[int | None] = []
    freed = threading.Semaphore(0)
    original = tether_reap.reap_pidfd

    def timed_reap(pidfd: int, pid: int) -> tether.Status | None:
        # Runs on tether's reaper thread: record only, never raise there.
        status = original(pidfd, pid)
        if status is not None:
            reaps[pid] = time.monotonic_ns()
            codes.append(status.returncode)
            freed.release()
        return status

    def wait_for_a_slot() -> None:
        if not freed.acquire(timeout=30):
            raise RuntimeError("tether reaper: a detached child was not reaped in 30 s")

    tether_reap.reap_pidfd = timed_reap  # type: ignore[assignment]
    try:
        running = 0
        for delay in batch.delays_us:
            if running == batch.workers:
                wait_for_a_slot()
                running -= 1
            tether.spawn(batch.argv(delay), stdout=batch.write_fd).detach()
            running += 1
        for _ in range(running):
            wait_for_a_slot()
    finally:
        tether_reap.reap_pidfd = original
    for code in codes:
        check_exit("tether reaper", code)
    return reaps


def tether_async(loop: str) -> Callable[[Batch], Reaps]:
    async def pool(batch: Batch) -> Reaps:
        reaps: Reaps = {}
        delays = iter(batch.delays_us)

        async def worker() -> None:
            for delay in delays:
                process = await tether.open_process(batch.argv(delay), stdout=batch.write_fd)
                status = await process.wait()
                reaps[process.pid] = time.monotonic_ns()
                check_exit(f"tether await wait() [{loop}]", status.returncode)

        async with anyio.create_task_group() as group:
            for _ in range(batch.workers):
                group.start_soon(worker)
        return reaps

    def run(batch: Batch) -> Reaps:
        return anyio.run(pool, batch, backend=loop)

    return run


def asyncio_exec(batch: Batch) -> Reaps:
    async def pool() -> Reaps:
        reaps: Reaps = {}
        delays = iter(batch.delays_us)

        async def worker() -> None:
            for delay in delays:
                process = await asyncio.create_subprocess_exec(
                    *batch.argv(delay), stdout=batch.write_fd
                )
                code = await process.wait()
                reaps[process.pid] = time.monotonic_ns()
                check_exit("asyncio", code)

        await asyncio.gather(*(worker() for _ in range(batch.workers)))
        return reaps

    return asyncio.run(pool())


def sigchld_handler(batch: Batch) -> Reaps:
    """A hand-written reaper: SIGCHLD handler + ``waitpid(-1, WNOHANG)`` loop."""
    reaps: Reaps = {}
    codes: dict[int, int] = {}

    def on_sigchld(signum: int, frame: object) -> None:
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            reaps[pid] = time.monotonic_ns()
            codes[pid] = os.waitstatus_to_exitcode(wait_status)

    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    actions = [(os.POSIX_SPAWN_DUP2, batch.write_fd, 1)]
    old_wakeup = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    old_handler = signal.signal(signal.SIGCHLD, on_sigchld)
    started = 0
    try:
        deadline = time.monotonic() + 30
        while len(reaps) < len(batch.delays_us):
            while started - len(reaps) < batch.workers and started < len(batch.delays_us):
                argv = batch.argv(batch.delays_us[started])
                os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
                started += 1
            select.select([wake_r], [], [], 1.0)
            while True:
                try:
                    if not os.read(wake_r, 4096):
                        break
                except BlockingIOError:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("SIGCHLD handler: children not reaped within 30 s")
    finally:
        signal.signal(signal.SIGCHLD, old_handler)
        signal.set_wakeup_fd(old_wakeup)
        os.close(wake_r)
        os.close(wake_w)
        while len(reaps) < started:  # after a failure: reap what is left, blocking
            on_sigchld(signal.SIGCHLD, None)
            if len(reaps) < started:
                time.sleep(0.001)
    for code in codes.values():
        check_exit(REFERENCE, code)
    return reaps


def default_contenders() -> list[Contender]:
    return [
        Contender("tether wait() (threads)", tether_threads),
        Contender("tether reaper (detach)", tether_reaper),
        Contender("tether await wait() [asyncio]", tether_async("asyncio")),
        Contender("tether await wait() [trio]", tether_async("trio")),
        Contender(REFERENCE, sigchld_handler),
        Contender("asyncio.create_subprocess_exec", asyncio_exec),
    ]


# --- measuring ------------------------------------------------------------------------


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def run_batch(
    contender: Contender, binary: Path, delays_us: list[int], workers: int
) -> list[float]:
    """Run one batch of *contender*; the lifespans (µs), in the order the children exited."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        gc.collect()
        try:
            reaps = contender.run(Batch(binary, delays_us, workers, write_fd))
        finally:
            os.close(write_fd)
        lines = read_all(read_fd).decode().split()
    finally:
        os.close(read_fd)
    exits = {int(pid): int(ns) for pid, ns in zip(lines[::2], lines[1::2], strict=True)}
    if len(exits) != len(delays_us) or exits.keys() != reaps.keys():
        raise RuntimeError(
            f"{contender.name}: {len(delays_us)} children, {len(exits)} reported their "
            f"exit, {len(reaps)} reaped, {len(exits.keys() ^ reaps.keys())} unmatched"
        )
    order = sorted(exits, key=exits.__getitem__)
    return [(reaps[pid] - exits[pid]) / 1000 for pid in order]


def measure(
    contenders: Sequence[Contender], args: argparse.Namespace, binary: Path, rng: random.Random
) -> dict[str, list[list[float]]]:
    samples: dict[str, list[list[float]]] = {c.name: [] for c in contenders}
    order = list(contenders)
    max_delay_us = args.max_delay * 1000
    for _ in range(args.rounds):
        delays = [rng.randint(0, max_delay_us) for _ in range(args.children)]
        rng.shuffle(order)
        for contender in order:
            samples[contender.name].append(run_batch(contender, binary, delays, args.workers))
    return samples


def p99(values: Sequence[float]) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def summarise(samples: dict[str, list[list[float]]]) -> list[Summary]:
    flat = {name: [x for batch in rounds for x in batch] for name, rounds in samples.items()}
    ref_median = statistics.median(flat[REFERENCE])
    ref_p99 = p99(flat[REFERENCE])
    summaries = []
    for name, values in flat.items():
        deciles = statistics.quantiles(values, n=10, method="inclusive")
        median = statistics.median(values)
        tail = p99(values)
        summaries.append(
            Summary(
                name=name,
                lifespans_us=samples[name],
                median_us=median,
                p10_us=deciles[0],
                p90_us=deciles[-1],
                p99_us=tail,
                vs_reference_median=median / ref_median,
                vs_reference_p99=tail / ref_p99,
            )
        )
    return summaries


# --- output ---------------------------------------------------------------------------


def format_header(env: dict[str, Any]) -> str:
    return "\n".join(
        [
            "zombie lifespan under load: a child's exit (CLOCK_MONOTONIC, in the child) "
            "-> its reap returns",
            format_machine(env),
            f"pool of {env['workers']} children at a time, each sleeping 0-{env['max_delay_ms']}"
            f" ms; {env['rounds']} rounds x {env['children']} children per contender, "
            f"shuffled order per round (seed {env['seed']})",
        ]
    )


def format_table(summaries: Sequence[Summary]) -> str:
    columns = [
        "contender",
        "median µs",
        "p10 µs",
        "p90 µs",
        "p99 µs",
        f"median x {REFERENCE}",
        f"p99 x {REFERENCE}",
    ]
    rows = [
        [
            s.name,
            f"{s.median_us:.1f}",
            f"{s.p10_us:.1f}",
            f"{s.p90_us:.1f}",
            f"{s.p99_us:.1f}",
            f"{s.vs_reference_median:.2f}",
            f"{s.vs_reference_p99:.2f}",
        ]
        for s in summaries
    ]
    return render_table(columns, rows)


def write_json(path: Path, env: dict[str, Any], summaries: Sequence[Summary]) -> None:
    document = {
        "environment": env,
        "reference": REFERENCE,
        "results": [vars(s) for s in summaries],
    }
    write_document(path, document)


def children_count(text: str) -> int:
    value = positive_int(text)
    if value > MAX_CHILDREN:
        raise argparse.ArgumentTypeError(f"at most {MAX_CHILDREN}, not {value}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=DEFAULT_ROUNDS,
        help=f"timed rounds (default {DEFAULT_ROUNDS})",
    )
    parser.add_argument(
        "--children",
        type=children_count,
        default=DEFAULT_CHILDREN,
        help=f"children per contender per round (default {DEFAULT_CHILDREN}, "
        f"at most {MAX_CHILDREN})",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=DEFAULT_WORKERS,
        help=f"children running at once (default {DEFAULT_WORKERS})",
    )
    parser.add_argument(
        "--max-delay",
        type=int,
        default=DEFAULT_MAX_DELAY_MS,
        metavar="MS",
        help=f"each child sleeps 0..MS ms before exiting (default {DEFAULT_MAX_DELAY_MS})",
    )
    add_run_options(
        parser,
        quick_help=f"smoke run: {QUICK_ROUNDS} rounds of {QUICK_CHILDREN} children "
        "(overrides --rounds/--children)",
    )
    args = parse_common(parser, argv, rounds=QUICK_ROUNDS, children=QUICK_CHILDREN)
    if args.max_delay < 0:
        parser.error("--max-delay must be at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    binary = build_floor()
    env = environment(
        rounds=args.rounds,
        children=args.children,
        workers=args.workers,
        max_delay_ms=args.max_delay,
        seed=args.seed,
    )
    print(format_header(env), flush=True)
    contenders = default_contenders()
    rng = random.Random(args.seed)
    warm_up = [rng.randint(0, args.max_delay * 1000) for _ in range(args.workers * 2)]
    for contender in contenders:  # every status and every report is checked
        run_batch(contender, binary, warm_up, args.workers)
    samples = measure(contenders, args, binary, rng)
    summaries = summarise(samples)
    print()
    print(format_table(summaries))
    if args.json is not None:
        write_json(args.json, env, summaries)
    return 0


if __name__ == "__main__":
    sys.exit(main())

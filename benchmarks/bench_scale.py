"""Many concurrent children: spawn N, then kill and reap them all; time and threads.

Method
------
For each count N (``--counts``, default 100, 1,000 and 10,000) and each contender:

1. Spawn N ``sleep 600`` children back to back, keeping every handle (timed:
   ``spawn``). The children get no pipes: they inherit the benchmark's stdio.
2. Set up the waits, untimed. Async contenders start one waiting task per child in
   a task group and let every task reach its wait (each counts itself in just
   before it awaits, and nothing in between suspends, so once all have counted in
   all are blocked in their wait). The sync contender has nothing to set up.
3. Kill every child with its handle's ``kill()`` (SIGKILL) and reap them all
   (timed: ``kill+reap``, from the first kill until the last status is in: the
   task group's end for async contenders, the last ``wait()`` for the sync one).
   Every status must say SIGKILL.

The contenders:

* ``tether [asyncio]`` / ``tether [trio]``: ``await tether.open_process(argv)``, one
  task per child awaiting ``AsyncProcess.wait()``; one ``anyio.run(...,
  backend=...)`` per run;
* ``tether sync``: ``tether.spawn(argv)``, then ``kill()`` each, then ``wait()``
  each, in the main thread (no helper threads);
* ``asyncio.create_subprocess_exec``: one task per child awaiting ``Process.wait()``,
  up to ``--asyncio-max`` children (default 1,000): on Python 3.8-3.11 asyncio's
  default ``ThreadedChildWatcher`` runs one thread per child, so 10,000 children
  would mean 10,000 threads. The header names the watcher in use.

Threads are counted at four points (start, after spawning, once the waits are set
up, after reaping), twice each: ``threading.active_count()`` (Python threads) and
the entries of ``/proc/self/task`` (every OS thread of the process). The peak is
the largest of the four.

Every child is killed and reaped even when a run fails (try/finally). The soft
``RLIMIT_NOFILE`` is raised to the hard limit first: tether holds a pidfd per
child, so N children need N fds and then some.

Each (count, contender) pair runs ``--repeats`` times (default 1); per count the
contenders run in a freshly shuffled order each repeat. Reported: the median of the
repeats' times (total and per child), and the thread counts of the repeat with the
highest peak.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import resource
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio

import tether
from _common import (
    add_run_options,
    async_environment,
    counts_list,
    format_libraries,
    format_machine,
    make_parser,
    parse_common,
    positive_int,
    render_table,
    write_document,
)
from bench_reap import Child, asyncio_wait, check, tether_wait

SLEEP = [shutil.which("sleep") or "/bin/sleep", "600"]
DEFAULT_COUNTS = (100, 1_000, 10_000)
DEFAULT_REPEATS = 1
DEFAULT_ASYNCIO_MAX = 1_000
QUICK_COUNTS = (10, 100)
QUICK_REPEATS = 1
SPARE_FDS = 100
"""File descriptors to keep free beyond one per child (stdio, the loops' own, imports)."""
REAP_TIMEOUT = 300.0
"""Seconds an async run may take to reap its killed children before it fails."""
ASYNCIO = "asyncio.create_subprocess_exec"
POINTS = ("start", "spawned", "waiting", "reaped")

C = TypeVar("C", bound=Child)


@dataclass(frozen=True)
class Threads:
    """Thread counts at one point: Python's view and the kernel's."""

    python: int
    """``threading.active_count()``: the threads Python knows of."""
    tasks: int
    """Entries of ``/proc/self/task``: every OS thread of the process."""

    @classmethod
    def now(cls) -> Threads:
        return cls(threading.active_count(), len(os.listdir("/proc/self/task")))


@dataclass(frozen=True)
class Run:
    """One run of a contender with *count* children."""

    contender: str
    count: int
    spawn_s: float
    reap_s: float
    threads: dict[str, Threads]

    @property
    def peak(self) -> Threads:
        points = self.threads.values()
        return Threads(max(t.python for t in points), max(t.tasks for t in points))


@dataclass(frozen=True)
class ScaleContender:
    name: str
    run: Callable[[int], Run]
    max_count: int | None = None


@dataclass(frozen=True)
class Row:
    """The repeats of one contender at one count, summarised."""

    contender: str
    count: int
    runs: list[Run]
    spawn_s: float
    reap_s: float
    threads: dict[str, Threads]
    """The thread counts of the repeat with the highest OS-thread peak."""


# --- the two kinds of contender -------------------------------------------------------


def sync_scale(
    name: str, spawn: Callable[[], C], wait: Callable[[C], int | None]
) -> ScaleContender:
    """Spawn all, kill all, wait for each, in the calling thread."""

    def run(count: int) -> Run:
        threads = {"start": Threads.now()}
        children: list[C] = []
        try:
            start = time.perf_counter_ns()
            for _ in range(count):
                children.append(spawn())
            spawned = time.perf_counter_ns()
            threads["spawned"] = threads["waiting"] = Threads.now()
            killing = time.perf_counter_ns()
            for child in children:
                child.kill()
            codes = [wait(child) for child in children]
            reaped = time.perf_counter_ns()
            threads["reaped"] = Threads.now()
        finally:
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                wait(child)
        for code in codes:
            check(name, code)
        return Run(name, count, (spawned - start) / 1e9, (reaped - killing) / 1e9, threads)

    return ScaleContender(name, run)


def async_scale(
    name: str,
    loop: str,
    spawn: Callable[[], Awaitable[C]],
    wait: Callable[[C], Awaitable[int | None]],
    max_count: int | None = None,
) -> ScaleContender:
    """Spawn all, start one waiting task per child, kill all; one loop run per run."""

    async def in_loop(count: int) -> Run:
        threads = {"start": Threads.now()}
        children: list[C] = []
        codes: list[int | None] = []
        waiting = 0

        async def reap(child: C) -> None:
            nonlocal waiting
            waiting += 1  # nothing suspends from here until the wait blocks
            codes.append(await wait(child))

        try:
            start = time.perf_counter_ns()
            for _ in range(count):
                children.append(await spawn())
            spawned = time.perf_counter_ns()
            threads["spawned"] = Threads.now()
            with anyio.fail_after(REAP_TIMEOUT):
                async with anyio.create_task_group() as group:
                    for child in children:
                        group.start_soon(reap, child)
                    while waiting < count:
                        await anyio.sleep(0.001)
                    threads["waiting"] = Threads.now()
                    killing = time.perf_counter_ns()
                    for child in children:
                        child.kill()
            reaped = time.perf_counter_ns()
            threads["reaped"] = Threads.now()
        finally:
            with anyio.CancelScope(shield=True):
                for child in children:
                    with contextlib.suppress(ProcessLookupError):
                        child.kill()
                    await wait(child)
        for code in codes:
            check(full_name, code)
        if len(codes) != count:
            raise RuntimeError(f"{full_name}: {len(codes)} statuses for {count} children")
        return Run(full_name, count, (spawned - start) / 1e9, (reaped - killing) / 1e9, threads)

    def run(count: int) -> Run:
        return anyio.run(in_loop, count, backend=loop)

    full_name = f"{name} [{loop}]"
    return ScaleContender(full_name, run, max_count)


# --- contenders -----------------------------------------------------------------------


async def tether_open() -> tether.AsyncProcess:
    return await tether.open_process(SLEEP)


async def asyncio_open() -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*SLEEP)


def default_contenders(asyncio_max: int) -> list[ScaleContender]:
    return [
        async_scale("tether", "asyncio", tether_open, tether_wait),
        async_scale("tether", "trio", tether_open, tether_wait),
        sync_scale("tether sync", lambda: tether.spawn(SLEEP), lambda p: p.wait().returncode),
        async_scale(ASYNCIO, "asyncio", asyncio_open, asyncio_wait, max_count=asyncio_max),
    ]


# --- measuring ------------------------------------------------------------------------


def raise_nofile(counts: Sequence[int]) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; fail if the largest count won't fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    needed = max(counts) + SPARE_FDS
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} < {needed}, needed for {max(counts)}")
    return soft, hard


def measure(
    contenders: Sequence[ScaleContender],
    counts: Sequence[int],
    repeats: int,
    rng: random.Random,
) -> list[Row]:
    rows: list[Row] = []
    for count in counts:
        playing = [c for c in contenders if c.max_count is None or count <= c.max_count]
        runs: dict[str, list[Run]] = {c.name: [] for c in playing}
        for _ in range(repeats):
            rng.shuffle(playing)
            for contender in playing:
                gc.collect()
                run = contender.run(count)
                print(f"  {format_run(run)}", flush=True)
                runs[contender.name].append(run)
        for contender in contenders:
            if contender.name in runs:
                rows.append(summarise(contender.name, count, runs[contender.name]))
    return rows


def summarise(name: str, count: int, runs: list[Run]) -> Row:
    busiest = max(runs, key=lambda r: r.peak.tasks)
    return Row(
        contender=name,
        count=count,
        runs=runs,
        spawn_s=statistics.median(r.spawn_s for r in runs),
        reap_s=statistics.median(r.reap_s for r in runs),
        threads=busiest.threads,
    )


# --- output ---------------------------------------------------------------------------


def format_run(run: Run) -> str:
    peak = run.peak
    return (
        f"{run.count} x {run.contender}: spawn {run.spawn_s:.3f} s, "
        f"kill+reap {run.reap_s:.3f} s, OS threads {run.threads['start'].tasks} -> {peak.tasks}"
    )


def format_header(env: dict[str, Any]) -> str:
    counts = ", ".join(f"{n:,}" for n in env["counts"])
    soft, hard = env["rlimit_nofile_before"]
    return "\n".join(
        [
            f"{counts} concurrent {' '.join(SLEEP)} children: spawn all, then kill and reap all",
            format_machine(env),
            format_libraries(env),
            f"RLIMIT_NOFILE soft {soft} -> {env['rlimit_nofile'][0]} (hard {hard}); "
            f"{env['repeats']} repeat(s) per count, shuffled order (seed {env['seed']}); "
            f"{ASYNCIO} up to {env['asyncio_max']:,} children",
        ]
    )


def _threads_cells(threads: dict[str, Threads], kind: str) -> str:
    values = [getattr(threads[point], kind) for point in POINTS]
    return f"{values[0]} / {max(values)} / {values[-1]}"


def format_table(count: int, rows: Sequence[Row], skipped: Sequence[str]) -> str:
    columns = [
        f"{count:,} children",
        "spawn s",
        "µs/child",
        "kill+reap s",
        "µs/child",
        "py threads start/peak/end",
        "OS threads start/peak/end",
    ]
    cells = [
        [
            r.contender,
            f"{r.spawn_s:.3f}",
            f"{r.spawn_s / count * 1e6:.1f}",
            f"{r.reap_s:.3f}",
            f"{r.reap_s / count * 1e6:.1f}",
            _threads_cells(r.threads, "python"),
            _threads_cells(r.threads, "tasks"),
        ]
        for r in rows
    ]
    cells += [[name, "skipped", "-", "-", "-", "-", "-"] for name in skipped]
    return render_table(columns, cells)


def write_json(path: Path, env: dict[str, Any], rows: Sequence[Row]) -> None:
    def plain(run: Run) -> dict[str, Any]:
        return {
            "spawn_s": run.spawn_s,
            "reap_s": run.reap_s,
            "threads": {point: vars(t) for point, t in run.threads.items()},
        }

    document = {
        "environment": env,
        "results": [
            {
                "contender": r.contender,
                "count": r.count,
                "spawn_s": r.spawn_s,
                "reap_s": r.reap_s,
                "runs": [plain(run) for run in r.runs],
            }
            for r in rows
        ],
    }
    write_document(path, document)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    default_counts = ",".join(map(str, DEFAULT_COUNTS))
    parser.add_argument(
        "--counts",
        type=counts_list,
        default=None,
        metavar="N,N,...",
        help=f"numbers of concurrent children (default {default_counts})",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        default=DEFAULT_REPEATS,
        help=f"runs per count and contender (default {DEFAULT_REPEATS})",
    )
    parser.add_argument(
        "--asyncio-max",
        type=positive_int,
        default=DEFAULT_ASYNCIO_MAX,
        metavar="N",
        help=f"largest count {ASYNCIO} runs at (default {DEFAULT_ASYNCIO_MAX})",
    )
    quick_counts = ",".join(map(str, QUICK_COUNTS))
    add_run_options(
        parser,
        quick_help=f"smoke run: counts {quick_counts} unless --counts is given, "
        f"{QUICK_REPEATS} repeat",
        seed_help="seed for the run order",
    )
    args = parse_common(parser, argv, repeats=QUICK_REPEATS)
    if args.counts is None:
        args.counts = list(QUICK_COUNTS if args.quick else DEFAULT_COUNTS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    before = raise_nofile(args.counts)
    env = async_environment(
        rlimit_nofile_before=list(before),
        counts=args.counts,
        repeats=args.repeats,
        asyncio_max=args.asyncio_max,
        seed=args.seed,
    )
    contenders = default_contenders(args.asyncio_max)
    print(format_header(env), flush=True)
    rows = measure(contenders, args.counts, args.repeats, random.Random(args.seed))
    for count in args.counts:
        print()
        skipped = [
            f"{c.name} (> {c.max_count:,})"
            for c in contenders
            if c.max_count is not None and count > c.max_count
        ]
        print(format_table(count, [r for r in rows if r.count == count], skipped))
    if args.json is not None:
        write_json(args.json, env, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

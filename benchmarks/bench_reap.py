"""Reap latency: the time from sending SIGKILL to a blocked child until the wait returns.

Method
------
Every contender spawns ``sleep 60`` children its own way and waits for them its own
way:

* synchronous: ``tether`` ``Process.wait()`` and ``Process.wait(timeout=10)``;
  ``subprocess.Popen.wait()`` and ``Popen.wait(timeout=10)`` (with a timeout,
  CPython's ``Popen.wait`` polls ``waitpid(WNOHANG)`` between sleeps of 1, 2, 4 ...
  ms, capped at 50 ms; without one it blocks in ``waitpid``);
* asynchronous, inside a running loop: tether's ``await AsyncProcess.wait()`` on
  asyncio and on trio; asyncio's ``Process.wait()`` (``create_subprocess_exec``);
  anyio's ``Process.wait()`` (``anyio.open_process``, no pipes) on asyncio and on
  trio; trio's ``Process.wait()`` (``trio.lowlevel.open_process``).

A batch (``--children`` children) goes like this, for the async contenders inside
one ``anyio.run(..., backend=...)`` of their own:

1. Spawn the batch's children with the contender's API (untimed).
2. Wait until every child is ``sleep`` blocked in its sleep: ``/proc/PID/stat``
   shows the command ``sleep`` (so it has exec'd) and state ``S`` (untimed).
3. For each child in turn: ``t0 = perf_counter_ns()``; the contender's
   ``kill()`` (SIGKILL); its wait, which returns the reaped status; ``t1``. The
   sample is ``t1 - t0``; the status must say SIGKILL.

The other children of the batch sleep on meanwhile, so every kill finds the same
state. All children are killed and reaped even when a batch fails (try/finally).

The C floor (``benchmarks/floor/floor.c``, see ``_floor.py``) is one more contender,
``C pidfd_send_signal->poll->waitid``: its server process spawns the batch's ``sleep``
children with ``posix_spawn`` + ``pidfd_open``, waits the same way until each is
asleep, then times in C, child by child, ``pidfd_send_signal(SIGKILL)`` ->
``poll(POLLIN)`` on the pidfd -> ``waitid(P_PIDFD, WEXITED)``: the steps of tether's
``kill()`` + ``wait()`` without any Python, as issue 13 defines the floor. Since then
tether's untimed ``wait()`` sleeps in ``waitid(WNOWAIT)`` rather than ``poll``; the bare
contender ``bare pidfd_send_signal->waitid(WNOWAIT)->waitid`` (``_bare.py``) takes that
road from Python with no library around it (``os.posix_spawn`` + ``os.pidfd_open``, then
``signal.pidfd_send_signal``, a blocking ``os.waitid(WNOWAIT)``, ``os.waitid``,
``os.close``): the least any Python library can spend on it, shown beside the targets as
``bare x``.

R rounds (``--rounds``) run the contenders in a freshly shuffled order, one batch
each, after one untimed warm-up batch each. Reported per contender, over all its
samples: median, 10th and 90th percentiles (µs), and the ratio of the median to
``Popen.wait()`` (a bare blocking ``waitpid``), to anyio on asyncio and to the C
floor. Targets (issue 13) are judged as in ``bench_async.py``, on the per-round
medians (ratio of medians, and the paired ratio: median and p10..p90 over rounds):
``tether wait()`` at most 1.0x ``Popen.wait()`` and 1.3x the C floor; the timed waits
and the async waits against their peers are shown without a limit (the async reap
targets are judged in ``bench_async.py``). Most of every latency is the kernel's
(delivering SIGKILL, tearing the child down, waking the waiter), which the C floor
measures alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import anyio.abc
import trio
import trio.lowlevel

import tether
from _bare import BARE_REAP, BareChild, wait_blocking
from _common import (
    Stats,
    Target,
    Verdict,
    add_common_arguments,
    async_environment,
    format_libraries,
    format_machine,
    format_verdicts,
    judge,
    make_parser,
    parse_common,
    render_table,
    verdicts_json,
    write_document,
)
from _floor import FLOOR_REAP, Floor

SLEEP = [shutil.which("sleep") or "/bin/sleep", "60"]
KILLED = -signal.SIGKILL
TIMEOUT = 10.0
DEFAULT_ROUNDS = 25
DEFAULT_CHILDREN = 16
QUICK_ROUNDS = 3
QUICK_CHILDREN = 4
SETTLE_TIMEOUT = 10.0
"""Seconds a batch's children may take to reach their sleep before the run fails."""
BASELINE = "Popen.wait()"
REFERENCE = "anyio Process.wait() [asyncio]"


class Child(Protocol):
    """What every library's process handle offers."""

    @property
    def pid(self) -> int: ...

    def kill(self) -> None: ...


C = TypeVar("C", bound=Child)

Batch = Callable[[int], list[int]]
"""Runs one batch of *n* children; returns the kill-to-reap latencies in ns."""


@dataclass(frozen=True)
class ReapContender:
    name: str
    loop: str | None
    """``asyncio`` or ``trio``, or None for a synchronous contender."""
    batch: Batch


@dataclass(frozen=True)
class Summary:
    """A contender's latencies (µs) per round, and their statistics over all samples."""

    name: str
    latencies_us: list[list[float]]
    median_us: float
    p10_us: float
    p90_us: float
    vs_baseline: float
    vs_reference: float
    vs_c_floor: float


# --- waiting for the children to block ------------------------------------------------


def not_sleeping(pids: Sequence[int]) -> list[int]:
    """The *pids* that are not yet the ``sleep`` command in state S (interruptible sleep)."""
    pending = []
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text()
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        state = stat[stat.rindex(")") + 2]
        if comm != "sleep" or state != "S":
            pending.append(pid)
    return pending


def settle(pids: Sequence[int]) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while pending := not_sleeping(pids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"children {pending} did not reach their sleep")
        time.sleep(0.001)


async def settle_async(pids: Sequence[int]) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while pending := not_sleeping(pids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"children {pending} did not reach their sleep")
        await anyio.sleep(0.001)


def check(name: str, code: int | None) -> None:
    if code != KILLED:
        raise RuntimeError(f"{name}: expected return code {KILLED} (SIGKILL), got {code}")


# --- the two kinds of contender -------------------------------------------------------


def sync_contender(
    name: str, spawn: Callable[[], C], wait: Callable[[C], int | None]
) -> ReapContender:
    """A contender whose *wait* blocks the calling thread."""

    def batch(n: int) -> list[int]:
        children: list[C] = []
        latencies = []
        try:
            for _ in range(n):
                children.append(spawn())
            settle([child.pid for child in children])
            while children:
                child = children[0]
                start = time.perf_counter_ns()
                child.kill()
                code = wait(child)
                latencies.append(time.perf_counter_ns() - start)
                children.pop(0)
                check(name, code)
        finally:
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                wait(child)
        return latencies

    return ReapContender(name, None, batch)


def async_contender(
    name: str,
    loop: str,
    spawn: Callable[[], Awaitable[C]],
    wait: Callable[[C], Awaitable[int | None]],
) -> ReapContender:
    """A contender that spawns and waits inside an event loop (one loop run per batch)."""

    async def in_loop(n: int) -> list[int]:
        children: list[C] = []
        latencies = []
        try:
            for _ in range(n):
                children.append(await spawn())
            await settle_async([child.pid for child in children])
            while children:
                child = children[0]
                start = time.perf_counter_ns()
                child.kill()
                code = await wait(child)
                latencies.append(time.perf_counter_ns() - start)
                children.pop(0)
                check(name, code)
        finally:
            with anyio.CancelScope(shield=True):
                for child in children:
                    with contextlib.suppress(ProcessLookupError):
                        child.kill()
                    await wait(child)
        return latencies

    def batch(n: int) -> list[int]:
        return anyio.run(in_loop, n, backend=loop)

    return ReapContender(f"{name} [{loop}]", loop, batch)


# --- contenders -----------------------------------------------------------------------


def popen() -> subprocess.Popen[bytes]:
    return subprocess.Popen(SLEEP)


async def tether_open() -> tether.AsyncProcess:
    return await tether.open_process(SLEEP)


async def tether_wait(process: tether.AsyncProcess) -> int | None:
    return (await process.wait()).returncode


async def asyncio_open() -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*SLEEP)


async def asyncio_wait(process: asyncio.subprocess.Process) -> int | None:
    return await process.wait()


async def anyio_open() -> anyio.abc.Process:
    return await anyio.open_process(SLEEP, stdin=None, stdout=None, stderr=None)


async def anyio_wait(process: anyio.abc.Process) -> int | None:
    return await process.wait()


async def trio_open() -> trio.Process:
    return await trio.lowlevel.open_process(SLEEP)


async def trio_wait(process: trio.Process) -> int | None:
    return await process.wait()


def default_contenders() -> list[ReapContender]:
    return [
        sync_contender("tether wait()", lambda: tether.spawn(SLEEP), lambda p: p.wait().returncode),
        sync_contender(
            f"tether wait(timeout={TIMEOUT:g})",
            lambda: tether.spawn(SLEEP),
            lambda p: p.wait(TIMEOUT).returncode,
        ),
        sync_contender(BASELINE, popen, lambda p: p.wait()),
        sync_contender(f"Popen.wait(timeout={TIMEOUT:g})", popen, lambda p: p.wait(TIMEOUT)),
        sync_contender(BARE_REAP, lambda: BareChild(SLEEP), wait_blocking),
        async_contender("tether await wait()", "asyncio", tether_open, tether_wait),
        async_contender("tether await wait()", "trio", tether_open, tether_wait),
        async_contender("asyncio Process.wait()", "asyncio", asyncio_open, asyncio_wait),
        async_contender("anyio Process.wait()", "asyncio", anyio_open, anyio_wait),
        async_contender("anyio Process.wait()", "trio", anyio_open, anyio_wait),
        async_contender("trio Process.wait()", "trio", trio_open, trio_wait),
    ]


def floor_contender(floor: Floor) -> ReapContender:
    """The C floor's kill -> reap, served by *floor* (µs from C, returned as ns)."""

    def batch(n: int) -> list[int]:
        return [round(us * 1000) for us in floor.reap(n)]

    return ReapContender(FLOOR_REAP, None, batch)


TARGETS = (
    Target("tether wait()", BASELINE, 1.0, bare=BARE_REAP),
    Target("tether wait()", FLOOR_REAP, 1.3, bare=BARE_REAP),
    Target(f"tether wait(timeout={TIMEOUT:g})", f"Popen.wait(timeout={TIMEOUT:g})", None),
    Target(f"tether wait(timeout={TIMEOUT:g})", FLOOR_REAP, None),
    Target(BASELINE, FLOOR_REAP, None),
    Target("tether wait()", BARE_REAP, None),
    Target("tether await wait() [asyncio]", "asyncio Process.wait() [asyncio]", None),
    Target("tether await wait() [asyncio]", REFERENCE, None),
    Target("tether await wait() [trio]", "trio Process.wait() [trio]", None),
    Target("tether await wait() [trio]", "anyio Process.wait() [trio]", None),
)


# --- measuring ------------------------------------------------------------------------


def measure(
    contenders: Sequence[ReapContender], rounds: int, children: int, rng: random.Random
) -> dict[str, list[list[float]]]:
    """Latencies (µs) per contender name, one list per round, shuffled order per round."""
    samples: dict[str, list[list[float]]] = {c.name: [] for c in contenders}
    order = list(contenders)
    for _ in range(rounds):
        rng.shuffle(order)
        for contender in order:
            gc.collect()
            latencies = contender.batch(children)
            samples[contender.name].append([ns / 1000 for ns in latencies])
    return samples


def summarise(samples: dict[str, list[list[float]]]) -> list[Summary]:
    flat = {name: [x for batch in rounds for x in batch] for name, rounds in samples.items()}
    medians = {name: statistics.median(values) for name, values in flat.items()}
    summaries = []
    for name, values in flat.items():
        stats = Stats.of(values)
        summaries.append(
            Summary(
                name=name,
                latencies_us=samples[name],
                median_us=stats.median,
                p10_us=stats.p10,
                p90_us=stats.p90,
                vs_baseline=medians[name] / medians[BASELINE],
                vs_reference=medians[name] / medians[REFERENCE],
                vs_c_floor=medians[name] / medians[FLOOR_REAP],
            )
        )
    return summaries


def round_medians(samples: dict[str, list[list[float]]]) -> dict[str, list[float]]:
    """Per contender, the median latency of each round: the values targets are paired on."""
    return {name: [statistics.median(b) for b in rounds] for name, rounds in samples.items()}


# --- output ---------------------------------------------------------------------------


def format_header(env: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"reap latency: SIGKILL to {' '.join(SLEEP)} -> the wait returns",
            format_machine(env),
            format_libraries(env),
            f"{env['rounds']} rounds x {env['children']} children per contender "
            f"(one loop run per batch for async ones), shuffled order per round "
            f"(seed {env['seed']})",
        ]
    )


def format_table(summaries: Sequence[Summary]) -> str:
    columns = [
        "contender",
        "median µs",
        "p10 µs",
        "p90 µs",
        f"x {BASELINE}",
        "x anyio[asyncio]",
        "x C floor",
    ]
    rows = [
        [
            s.name,
            f"{s.median_us:.1f}",
            f"{s.p10_us:.1f}",
            f"{s.p90_us:.1f}",
            f"{s.vs_baseline:.2f}",
            f"{s.vs_reference:.2f}",
            f"{s.vs_c_floor:.2f}",
        ]
        for s in summaries
    ]
    return render_table(columns, rows)


def write_json(
    path: Path, env: dict[str, Any], summaries: Sequence[Summary], verdicts: Sequence[Verdict]
) -> None:
    document = {
        "environment": env,
        "baseline": BASELINE,
        "reference": REFERENCE,
        "c_floor": FLOOR_REAP,
        "results": [vars(s) for s in summaries],
        "targets": verdicts_json(verdicts),
    }
    write_document(path, document)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    add_common_arguments(
        parser,
        rounds=DEFAULT_ROUNDS,
        batch=DEFAULT_CHILDREN,
        quick_rounds=QUICK_ROUNDS,
        quick_batch=QUICK_CHILDREN,
        batch_help="children (samples) per contender per round",
        batch_flag="--children",
    )
    return parse_common(parser, argv, rounds=QUICK_ROUNDS, children=QUICK_CHILDREN)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    env = async_environment(rounds=args.rounds, children=args.children, seed=args.seed)
    print(format_header(env), flush=True)
    with Floor() as floor:
        contenders = [*default_contenders(), floor_contender(floor)]
        for contender in contenders:  # warm-up: every status is checked
            contender.batch(args.children)
        samples = measure(contenders, args.rounds, args.children, random.Random(args.seed))
    summaries = summarise(samples)
    per_round = round_medians(samples)
    verdicts = [judge(target, per_round, FLOOR_REAP) for target in TARGETS]
    print()
    print(format_table(summaries))
    print()
    print(format_verdicts(verdicts))
    if args.json is not None:
        write_json(args.json, env, summaries, verdicts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

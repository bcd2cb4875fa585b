"""Async spawn+reap latency of ``/bin/true``: tether on asyncio and trio vs asyncio, anyio, trio.

Method
------
Every contender is a coroutine function that starts ``/bin/true``, waits for it,
reaps it and returns its exit code, on one event loop (asyncio or trio):

* ``tether.open_process [asyncio|trio]``: ``await (await tether.open_process(argv)).wait()``;
* ``tether.run_process [asyncio|trio]``: ``await tether.run_process(argv)`` (no capture);
* ``asyncio.create_subprocess_exec``: ``await (await create_subprocess_exec(*argv)).wait()``;
* ``anyio.open_process [asyncio|trio]``: ``await (await anyio.open_process(argv,
  stdin=None, stdout=None, stderr=None)).wait()`` (``anyio.run_process`` would capture
  the output through pipes, and ``open_process`` pipes all three streams by default);
* ``trio.run_process``: ``await trio.run_process(argv, stdin=None, check=False)``
  (its default ``stdin=b""`` would add a pipe and a feeding task);
* ``trio.lowlevel.open_process``: ``await (await trio.lowlevel.open_process(argv)).wait()``;
* ``os.posix_spawn (raw, blocking)``: the floor of ``bench_spawn.py``, ``os.posix_spawn``
  plus a blocking ``os.waitpid``, called inside an asyncio loop (which it blocks):
  the least Python can do, so the part of every other row that no library controls
  (starting, running and ending ``/bin/true``);
* ``bare posix_spawn+add_reader(pidfd) [asyncio]`` and ``bare
  posix_spawn+wait_readable(pidfd) [trio]`` (``_bare.py``): ``os.posix_spawn`` and
  ``os.pidfd_open``, the pidfd awaited with the loop's own primitive, ``os.waitid``:
  an async spawn+reap with no library around it, shown as ``bare x`` beside the
  targets.

So no contender opens a pipe: every child inherits the benchmark's stdio.

Each batch runs in an event loop of its own: one ``anyio.run(batch, backend=...)``
per batch, i.e. a fresh asyncio loop (``asyncio.Runner``) or a fresh ``trio.run``,
so that no contender inherits another's loop state (registered fds, a child
watcher's handlers, caches). The native asyncio and trio contenders call only their
own APIs inside it. The clock runs inside the loop, around the batch's spawns, so
starting and closing the loop is not timed. The rest follows ``bench_spawn.py``:

1. Warm-up: one untimed batch per contender, every exit code checked.
2. R rounds (``--rounds``): the contenders run in a freshly shuffled order; each
   runs N spawns back to back (``--batch``) in one loop run; the mean time per spawn
   of that batch is one sample. The garbage collector runs before each batch.
3. Per contender: the median of its R batch means, their 10th and 90th percentiles,
   and the ratio of its median to ``anyio.open_process [asyncio]``'s, to the anyio
   contender on the same loop and to the floor.
4. Targets: for each (contender, reference) pair, the ratio of medians and the
   *paired* ratio (per round, the contender's batch mean over the reference's in the
   same round; median and p10..p90 over rounds), which cancels load that lasts a
   round. Beside them, the ratio of the parts above the floor,
   ``(contender - floor) / (reference - floor)`` on medians: what the libraries
   themselves add, without the child's own run time that both pay.

The C floor (``C posix_spawn+waitpid``, see ``_floor.py``) runs as one more
contender, outside any loop: its server process times each spawn+reap in C.

Async reap latency
------------------
A second part times kill -> the wait returns, the way ``bench_reap.py`` does (its
contender machinery is reused): each contender spawns ``--reap-children`` ``sleep``
children in one loop run, waits untimed until all are asleep, then child by child
times ``kill()`` + its own ``await wait()``. The contenders: tether on asyncio and on
trio; asyncio's ``Process.wait()`` with a ``PidfdChildWatcher`` (asyncio 3.12+ picks
it by itself when pidfds work; on 3.10/3.11 this script installs one for that
contender's batches and puts the default watcher back afterwards);
``trio.lowlevel.open_process``; anyio on both loops; the bare waits of ``_bare.py``
(``loop.add_reader`` and ``trio.lowlevel.wait_readable`` on a pidfd, then
``os.waitid``); and the C floor's ``pidfd_send_signal -> poll -> waitid``. Each round
runs them in a freshly shuffled order, after the spawn+reap rounds.

Targets (issue 13): async spawn+reap of ``tether.open_process`` at most 0.80x
``anyio.open_process`` on the same loop; async reap latency at most 1.0x asyncio's
``PidfdChildWatcher`` on asyncio and at most 0.85x ``trio.lowlevel.open_process``'s
on trio (judged on per-round medians).

Add a contender by appending an :class:`AsyncContender` to :func:`default_contenders`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import trio
import trio.lowlevel

import tether
from _bare import (
    BARE_SPAWN_ASYNCIO,
    BARE_SPAWN_TRIO,
    BARE_WAIT_ASYNCIO,
    BARE_WAIT_TRIO,
    BareChild,
    spawn_asyncio,
    spawn_trio,
    wait_asyncio,
    wait_trio,
)
from _common import (
    TRUE,
    BatchContender,
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
    positive_int,
    raw_posix_spawn,
    render_table,
    verdicts_json,
    write_document,
)
from _floor import FLOOR_REAP, FLOOR_SPAWN, Floor
from bench_reap import (
    SLEEP,
    ReapContender,
    anyio_open,
    anyio_wait,
    async_contender,
    asyncio_open,
    asyncio_wait,
    floor_contender,
    round_medians,
    tether_open,
    tether_wait,
    trio_open,
    trio_wait,
)
from bench_reap import measure as measure_reap

DEFAULT_ROUNDS = 20
DEFAULT_BATCH = 30
QUICK_ROUNDS = 4
QUICK_BATCH = 8
DEFAULT_REAP_CHILDREN = 10
QUICK_REAP_CHILDREN = 3
ASYNCIO_PIDFD = "asyncio Process.wait() [asyncio, PidfdChildWatcher]"
LOOPS = ("asyncio", "trio")
REFERENCE = "anyio.open_process [asyncio]"
FLOOR = "os.posix_spawn (raw, blocking)"

SpawnReap = Callable[[], Awaitable[int | None]]
"""Spawns, waits for and reaps one child inside a running loop; returns its exit code."""


@dataclass(frozen=True)
class AsyncContender:
    """One way to spawn and reap ``/bin/true`` on one event loop (``asyncio`` or ``trio``)."""

    name: str
    loop: str
    run: SpawnReap


@dataclass(frozen=True)
class Summary:
    """A contender's batch means (µs per spawn) and their statistics."""

    name: str
    loop: str
    batch_means_us: list[float]
    median_us: float
    p10_us: float
    p90_us: float
    vs_reference: float
    vs_same_loop: float
    vs_floor: float
    vs_c_floor: float


# --- contenders -----------------------------------------------------------------------


async def tether_open_process() -> int | None:
    process = await tether.open_process([TRUE])
    return (await process.wait()).returncode


async def tether_run_process() -> int | None:
    return (await tether.run_process([TRUE])).returncode


async def asyncio_exec() -> int | None:
    process = await asyncio.create_subprocess_exec(TRUE)
    return await process.wait()


async def anyio_open_process() -> int | None:
    process = await anyio.open_process([TRUE], stdin=None, stdout=None, stderr=None)
    return await process.wait()


async def trio_run_process() -> int | None:
    return (await trio.run_process([TRUE], stdin=None, check=False)).returncode


async def trio_open_process() -> int | None:
    process = await trio.lowlevel.open_process([TRUE])
    return await process.wait()


async def raw_blocking() -> int | None:
    return raw_posix_spawn()


async def bare_spawn_asyncio() -> int | None:
    return await spawn_asyncio([TRUE])


async def bare_spawn_trio() -> int | None:
    return await spawn_trio([TRUE])


def anyio_name(loop: str) -> str:
    return f"anyio.open_process [{loop}]"


def default_contenders() -> list[AsyncContender]:
    contenders = []
    for loop in LOOPS:
        contenders += [
            AsyncContender(f"tether.open_process [{loop}]", loop, tether_open_process),
            AsyncContender(f"tether.run_process [{loop}]", loop, tether_run_process),
            AsyncContender(anyio_name(loop), loop, anyio_open_process),
        ]
    return [
        *contenders,
        AsyncContender("asyncio.create_subprocess_exec", "asyncio", asyncio_exec),
        AsyncContender("trio.run_process", "trio", trio_run_process),
        AsyncContender("trio.lowlevel.open_process", "trio", trio_open_process),
        AsyncContender(FLOOR, "asyncio", raw_blocking),
        AsyncContender(BARE_SPAWN_ASYNCIO, "asyncio", bare_spawn_asyncio),
        AsyncContender(BARE_SPAWN_TRIO, "trio", bare_spawn_trio),
    ]


TARGETS = (
    Target("tether.open_process [asyncio]", REFERENCE, 0.80, bare=BARE_SPAWN_ASYNCIO),
    Target("tether.open_process [trio]", anyio_name("trio"), 0.80, bare=BARE_SPAWN_TRIO),
    Target("tether.open_process [trio]", REFERENCE, None),
    Target("tether.open_process [asyncio]", "asyncio.create_subprocess_exec", None),
    Target("tether.open_process [trio]", "trio.lowlevel.open_process", None),
    Target("tether.run_process [trio]", "trio.run_process", None),
    Target(FLOOR, FLOOR_SPAWN, None),
    Target("tether.open_process [asyncio]", BARE_SPAWN_ASYNCIO, None),
    Target("tether.open_process [trio]", BARE_SPAWN_TRIO, None),
)


# --- async reap latency ---------------------------------------------------------------


class PidfdWatcher:
    """asyncio's ``PidfdChildWatcher`` for the batches of one contender, on Python < 3.12.

    3.12+ picks a pidfd watcher by itself (where pidfds work), so there this does
    nothing. Before, the default is the ``ThreadedChildWatcher`` (a thread per child):
    :meth:`install` (inside the running loop, before the first spawn of a batch) puts a
    ``PidfdChildWatcher`` attached to that loop in its place, :meth:`restore` (after
    the batch) puts the default back.
    """

    def __init__(self) -> None:
        self._original: asyncio.AbstractChildWatcher | None = None
        self._installed = False

    def install(self) -> None:
        if sys.version_info >= (3, 12) or self._installed:
            return
        policy = asyncio.get_event_loop_policy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._original = policy.get_child_watcher()
            watcher = asyncio.PidfdChildWatcher()
            watcher.attach_loop(asyncio.get_running_loop())
            policy.set_child_watcher(watcher)
        self._installed = True

    def restore(self) -> None:
        if not self._installed:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.get_event_loop_policy().set_child_watcher(self._original)
        self._installed = False


def asyncio_pidfd_contender() -> ReapContender:
    """asyncio's ``create_subprocess_exec`` + ``Process.wait()`` on a pidfd watcher."""
    watcher = PidfdWatcher()

    async def spawn() -> asyncio.subprocess.Process:
        watcher.install()
        return await asyncio_open()

    inner = async_contender("asyncio Process.wait()", "asyncio", spawn, asyncio_wait)

    def batch(n: int) -> list[int]:
        try:
            return inner.batch(n)
        finally:
            watcher.restore()

    return ReapContender(ASYNCIO_PIDFD, "asyncio", batch)


def reap_contenders(floor: Floor) -> list[ReapContender]:
    return [
        async_contender("tether await wait()", "asyncio", tether_open, tether_wait),
        async_contender("tether await wait()", "trio", tether_open, tether_wait),
        asyncio_pidfd_contender(),
        async_contender("trio Process.wait()", "trio", trio_open, trio_wait),
        async_contender("anyio Process.wait()", "asyncio", anyio_open, anyio_wait),
        async_contender("anyio Process.wait()", "trio", anyio_open, anyio_wait),
        async_contender(BARE_WAIT_ASYNCIO, "asyncio", bare_open, wait_asyncio),
        async_contender(BARE_WAIT_TRIO, "trio", bare_open, wait_trio),
        floor_contender(floor),
    ]


async def bare_open() -> BareChild:
    return BareChild(SLEEP)


BARE_REAP_ASYNCIO = f"{BARE_WAIT_ASYNCIO} [asyncio]"
BARE_REAP_TRIO = f"{BARE_WAIT_TRIO} [trio]"

REAP_TARGETS = (
    Target("tether await wait() [asyncio]", ASYNCIO_PIDFD, 1.0, bare=BARE_REAP_ASYNCIO),
    Target("tether await wait() [trio]", "trio Process.wait() [trio]", 0.85, bare=BARE_REAP_TRIO),
    Target("tether await wait() [asyncio]", "anyio Process.wait() [asyncio]", None),
    Target("tether await wait() [trio]", "anyio Process.wait() [trio]", None),
    Target("tether await wait() [asyncio]", FLOOR_REAP, None),
    Target("tether await wait() [trio]", FLOOR_REAP, None),
)


@dataclass(frozen=True)
class ReapSummary:
    """A reap contender's latencies (µs) per round and their statistics over all samples."""

    name: str
    latencies_us: list[list[float]]
    median_us: float
    p10_us: float
    p90_us: float
    vs_c_floor: float


def summarise_reap(samples: dict[str, list[list[float]]]) -> list[ReapSummary]:
    flat = {name: [x for batch in rounds for x in batch] for name, rounds in samples.items()}
    floor = statistics.median(flat[FLOOR_REAP])
    summaries = []
    for name, values in flat.items():
        stats = Stats.of(values)
        summaries.append(
            ReapSummary(
                name, samples[name], stats.median, stats.p10, stats.p90, stats.median / floor
            )
        )
    return summaries


def format_reap_table(summaries: Sequence[ReapSummary]) -> str:
    columns = ["reap latency (kill -> wait returns)", "median µs", "p10 µs", "p90 µs", "x C floor"]
    rows = [
        [s.name, f"{s.median_us:.1f}", f"{s.p10_us:.1f}", f"{s.p90_us:.1f}", f"{s.vs_c_floor:.2f}"]
        for s in summaries
    ]
    return render_table(columns, rows)


# --- measuring ------------------------------------------------------------------------


async def _timed_batch(run: SpawnReap, batch: int, name: str) -> int:
    """Inside the loop: *batch* spawn+reaps back to back; the elapsed ns."""
    start = time.perf_counter_ns()
    for _ in range(batch):
        code = await run()
        if code != 0:
            raise RuntimeError(f"{name}: {TRUE} exited with {code}")
    return time.perf_counter_ns() - start


def time_batch(contender: AsyncContender | BatchContender, batch: int) -> float:
    """One batch in a fresh event loop (the C floor: in its own process); mean µs per spawn."""
    gc.collect()
    if isinstance(contender, BatchContender):
        return statistics.fmean(contender.batch(batch))
    elapsed = anyio.run(_timed_batch, contender.run, batch, contender.name, backend=contender.loop)
    return elapsed / batch / 1000


def measure(
    contenders: Sequence[AsyncContender | BatchContender],
    rounds: int,
    batch: int,
    rng: random.Random,
) -> dict[str, list[float]]:
    """Batch means per contender name, one per round, in shuffled order each round."""
    means: dict[str, list[float]] = {c.name: [] for c in contenders}
    order = list(contenders)
    for _ in range(rounds):
        rng.shuffle(order)
        for contender in order:
            means[contender.name].append(time_batch(contender, batch))
    return means


def summarise(
    contenders: Sequence[AsyncContender | BatchContender], means: dict[str, list[float]]
) -> list[Summary]:
    """Statistics per contender; the C floor's ``loop`` is ``none`` (it runs in no loop)."""
    medians = {name: statistics.median(values) for name, values in means.items()}
    summaries = []
    for c in contenders:
        stats = Stats.of(means[c.name])
        loop = c.loop if isinstance(c, AsyncContender) else "none"
        same_loop = REFERENCE if loop == "none" else anyio_name(loop)
        summaries.append(
            Summary(
                name=c.name,
                loop=loop,
                batch_means_us=means[c.name],
                median_us=stats.median,
                p10_us=stats.p10,
                p90_us=stats.p90,
                vs_reference=medians[c.name] / medians[REFERENCE],
                vs_same_loop=medians[c.name] / medians[same_loop],
                vs_floor=medians[c.name] / medians[FLOOR],
                vs_c_floor=medians[c.name] / medians[FLOOR_SPAWN],
            )
        )
    return summaries


# --- environment and output -----------------------------------------------------------


def format_header(env: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"async spawn+reap of {TRUE}, sequential, one event loop run per batch",
            format_machine(env),
            format_libraries(env),
            f"{env['rounds']} rounds x {env['batch']} spawns per contender, "
            f"shuffled order per round (seed {env['seed']}); then reap latency: "
            f"{env['rounds']} rounds x {env['reap_children']} children per contender",
        ]
    )


def format_table(summaries: Sequence[Summary]) -> str:
    columns = [
        "contender",
        "median µs",
        "p10 µs",
        "p90 µs",
        "x anyio[asyncio]",
        "x anyio[same]",
        "x floor",
        "x C floor",
    ]
    rows = [
        [
            s.name,
            f"{s.median_us:.1f}",
            f"{s.p10_us:.1f}",
            f"{s.p90_us:.1f}",
            f"{s.vs_reference:.2f}",
            f"{s.vs_same_loop:.2f}",
            f"{s.vs_floor:.2f}",
            f"{s.vs_c_floor:.2f}",
        ]
        for s in summaries
    ]
    return render_table(columns, rows)


def write_json(
    path: Path,
    env: dict[str, Any],
    summaries: Sequence[Summary],
    verdicts: Sequence[Verdict],
    reap: tuple[Sequence[ReapSummary], Sequence[Verdict]],
) -> None:
    reap_summaries, reap_verdicts = reap
    document = {
        "environment": env,
        "reference": REFERENCE,
        "floor": FLOOR,
        "c_floor": FLOOR_SPAWN,
        "results": [vars(s) for s in summaries],
        "targets": verdicts_json(verdicts),
        "reap": {
            "c_floor": FLOOR_REAP,
            "results": [vars(s) for s in reap_summaries],
            "targets": verdicts_json(reap_verdicts),
        },
    }
    write_document(path, document)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    add_common_arguments(
        parser,
        rounds=DEFAULT_ROUNDS,
        batch=DEFAULT_BATCH,
        quick_rounds=QUICK_ROUNDS,
        quick_batch=QUICK_BATCH,
        batch_help="spawns per contender per round, in one loop run",
    )
    parser.add_argument(
        "--reap-children",
        type=positive_int,
        default=DEFAULT_REAP_CHILDREN,
        help=f"reap latency: children (samples) per contender per round "
        f"(default {DEFAULT_REAP_CHILDREN}; --quick: {QUICK_REAP_CHILDREN})",
    )
    return parse_common(
        parser, argv, rounds=QUICK_ROUNDS, batch=QUICK_BATCH, reap_children=QUICK_REAP_CHILDREN
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    env = async_environment(
        rounds=args.rounds, batch=args.batch, reap_children=args.reap_children, seed=args.seed
    )
    print(format_header(env), flush=True)
    rng = random.Random(args.seed)
    with Floor() as floor:
        contenders = [*default_contenders(), BatchContender(FLOOR_SPAWN, floor.spawn)]
        for contender in contenders:  # warm-up: every exit code is checked
            time_batch(contender, args.batch)
        means = measure(contenders, args.rounds, args.batch, rng)
        reapers = reap_contenders(floor)
        for reaper in reapers:  # warm-up: every status is checked
            reaper.batch(args.reap_children)
        reap_samples = measure_reap(reapers, args.rounds, args.reap_children, rng)
    summaries = summarise(contenders, means)
    verdicts = [judge(target, means, FLOOR) for target in TARGETS]
    reap_summaries = summarise_reap(reap_samples)
    per_round = round_medians(reap_samples)
    reap_verdicts = [judge(target, per_round, FLOOR_REAP) for target in REAP_TARGETS]
    print()
    print(format_table(summaries))
    print()
    print(format_verdicts(verdicts))
    print()
    print(format_reap_table(reap_summaries))
    print()
    print(format_verdicts(reap_verdicts))
    if args.json is not None:
        write_json(args.json, env, summaries, verdicts, (reap_summaries, reap_verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())

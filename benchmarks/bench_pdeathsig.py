"""The cost of ``pdeathsig`` spawns from a worker thread: the hop to tether's spawner thread.

Linux fires ``PR_SET_PDEATHSIG`` when the *thread* that created the child exits, so
``tether.spawn(..., pdeathsig=...)`` called from any thread but the main thread is
handed to tether's long-lived spawner thread, and the caller blocks until that
thread has spawned the child (see ``tether/_spawn/_spawner_thread.py``). This
benchmark prices that hop with the native backend, spawning ``/bin/true``.

Method
------
Four cases, each timed in the thread that calls ``tether.spawn``:

* ``main``: the main thread, no ``pdeathsig``;
* ``main +pdeathsig``: the main thread with ``pdeathsig=SIGKILL`` (spawned in place);
* ``worker``: a worker thread, no ``pdeathsig`` (spawned in place);
* ``worker +pdeathsig``: a worker thread with ``pdeathsig=SIGKILL``, i.e. through
  the spawner thread.

The worker is one long-lived thread started before the warm-up. It receives whole
batches over a queue and times them itself, so neither thread creation nor the
main-to-worker hand-off is on the clock. The warm-up checks exit codes and the
backend, and that the spawner thread exists after, and only after, the first
``worker +pdeathsig`` spawn.

R rounds (``--rounds``): the cases run in a freshly shuffled order; each runs a
batch of N spawns (``--batch``). Two means per spawn are recorded per batch:
``spawn`` (the ``tether.spawn`` call alone, which returns once the vfork-style child
has exec'd) and ``spawn+reap`` (the call plus ``wait()``). Reported per case: the
median of the batch means with their 10th and 90th percentiles. The hop is
reported as the median over rounds of the paired difference (same round, so same
machine conditions) between ``worker +pdeathsig`` and ``worker``; the same is done
for ``worker +pdeathsig`` against ``main +pdeathsig`` and for the in-child cost of
arming the signal (``main +pdeathsig`` against ``main``).
"""

from __future__ import annotations

import argparse
import functools
import gc
import queue
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import tether
from _common import (
    TRUE,
    Stats,
    add_common_arguments,
    environment,
    format_machine,
    make_parser,
    parse_common,
    render_table,
    write_document,
)
from tether._spawn._spawner_thread import THREAD_NAME

T = TypeVar("T")

BACKEND = "native"
PDEATHSIG = signal.SIGKILL
DEFAULT_ROUNDS = 25
DEFAULT_BATCH = 40
QUICK_ROUNDS = 3
QUICK_BATCH = 10
MAIN = "main"
MAIN_PDS = "main +pdeathsig"
WORKER = "worker"
WORKER_PDS = "worker +pdeathsig"


@dataclass(frozen=True)
class Case:
    """Where ``tether.spawn`` is called from, and whether with ``pdeathsig``."""

    name: str
    in_worker: bool
    pdeathsig: bool


CASES = (
    Case(MAIN, in_worker=False, pdeathsig=False),
    Case(MAIN_PDS, in_worker=False, pdeathsig=True),
    Case(WORKER, in_worker=True, pdeathsig=False),
    Case(WORKER_PDS, in_worker=True, pdeathsig=True),
)

DIFFERENCES = (
    ("thread hop", WORKER_PDS, WORKER),
    ("worker vs main thread", WORKER_PDS, MAIN_PDS),
    ("arming pdeathsig", MAIN_PDS, MAIN),
)
"""(label, case, reference): the paired differences reported under the table."""


@dataclass(frozen=True)
class Batch:
    """Mean µs per spawn of one batch: the ``tether.spawn`` call, and spawn plus reap."""

    spawn_us: float
    total_us: float


@dataclass(frozen=True)
class Summary:
    name: str
    spawn_us: list[float]
    total_us: list[float]
    spawn: Stats
    total: Stats


@dataclass(frozen=True)
class Difference:
    label: str
    case: str
    reference: str
    spawn: Stats
    total: Stats


class Worker:
    """One long-lived thread that runs the callables it is handed, one at a time."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[tuple[object, BaseException | None]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="bench-worker", daemon=True)
        self._thread.start()

    def call(self, function: Callable[[], T]) -> T:
        """``function()`` run on the worker thread; its result, or its exception raised."""
        self._jobs.put(function)
        result, error = self._results.get()
        if error is not None:
            raise error
        return result  # type: ignore[return-value]

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._results.put((job(), None))
            except BaseException as exc:  # handed to the caller, who re-raises it
                self._results.put((None, exc))


def spawn_once(pdeathsig: bool) -> tuple[int, int | None, str]:
    """Spawn and reap ``/bin/true``; return the ns spent in ``tether.spawn``, the exit
    code and the backend that ran.
    """
    start = time.perf_counter_ns()
    process = tether.spawn([TRUE], backend=BACKEND, pdeathsig=PDEATHSIG if pdeathsig else None)
    spawned = time.perf_counter_ns() - start
    return spawned, process.wait().returncode, process.backend


def time_batch(pdeathsig: bool, batch: int) -> Batch:
    """Run *batch* spawns in the calling thread; the mean µs per spawn, two ways."""
    gc.collect()
    spawn_ns = 0
    start = time.perf_counter_ns()
    for _ in range(batch):
        spawn_ns += spawn_once(pdeathsig)[0]
    elapsed = time.perf_counter_ns() - start
    return Batch(spawn_ns / batch / 1000, elapsed / batch / 1000)


def run_case(case: Case, batch: int, worker: Worker) -> Batch:
    if case.in_worker:
        return worker.call(lambda: time_batch(case.pdeathsig, batch))
    return time_batch(case.pdeathsig, batch)


def spawner_thread_alive() -> bool:
    return any(thread.name == THREAD_NAME for thread in threading.enumerate())


def check_batch(case: Case, batch: int) -> None:
    """Run *batch* untimed spawns, failing on a non-zero exit code or another backend."""
    for _ in range(batch):
        _, code, backend = spawn_once(case.pdeathsig)
        if code != 0 or backend != BACKEND:
            raise RuntimeError(f"{case.name}: exit code {code}, backend {backend}")


def warm_up(batch: int, worker: Worker) -> None:
    """One untimed batch per case; checks that only ``worker +pdeathsig`` used the hop."""
    if spawner_thread_alive():
        raise RuntimeError(f"the {THREAD_NAME} thread runs before any pdeathsig spawn")
    for case in CASES:
        if case.in_worker:
            worker.call(functools.partial(check_batch, case, batch))
        else:
            check_batch(case, batch)
        hopped = case.in_worker and case.pdeathsig
        if spawner_thread_alive() != hopped:
            state = "missing" if hopped else "started"
            raise RuntimeError(f"{case.name}: the {THREAD_NAME} thread is {state}")


def measure(rounds: int, batch: int, worker: Worker, rng: random.Random) -> dict[str, list[Batch]]:
    """The batches per case name, one per round, in shuffled order each round."""
    batches: dict[str, list[Batch]] = {case.name: [] for case in CASES}
    order = list(CASES)
    for _ in range(rounds):
        rng.shuffle(order)
        for case in order:
            batches[case.name].append(run_case(case, batch, worker))
    return batches


def summarise(batches: dict[str, list[Batch]]) -> tuple[list[Summary], list[Difference]]:
    summaries = []
    for name, values in batches.items():
        spawn = [b.spawn_us for b in values]
        total = [b.total_us for b in values]
        summaries.append(Summary(name, spawn, total, Stats.of(spawn), Stats.of(total)))
    differences = []
    for label, case, reference in DIFFERENCES:
        pairs = list(zip(batches[case], batches[reference], strict=True))
        differences.append(
            Difference(
                label=label,
                case=case,
                reference=reference,
                spawn=Stats.of([a.spawn_us - b.spawn_us for a, b in pairs]),
                total=Stats.of([a.total_us - b.total_us for a, b in pairs]),
            )
        )
    return summaries, differences


def pdeathsig_environment(rounds: int, batch: int, seed: int) -> dict[str, Any]:
    return environment(
        machine={"switch_interval_s": sys.getswitchinterval()},
        backend=BACKEND,
        pdeathsig=PDEATHSIG.name,
        rounds=rounds,
        batch=batch,
        seed=seed,
    )


def format_header(env: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"spawn+reap of {TRUE}, {env['backend']} backend: pdeathsig={env['pdeathsig']} "
            "from the main thread vs a worker thread (hop to the spawner thread)",
            format_machine(env),
            f"{env['rounds']} rounds x {env['batch']} spawns per case, "
            f"shuffled order per round (seed {env['seed']})",
        ]
    )


def _cells(stats: Stats, signed: bool = False) -> list[str]:
    spec = "+.1f" if signed else ".1f"
    spread = f"{format(stats.p10, spec)} .. {format(stats.p90, spec)}"
    return [format(stats.median, spec), spread]


def format_tables(summaries: Sequence[Summary], differences: Sequence[Difference]) -> str:
    stats = ["spawn µs", "p10 .. p90", "spawn+reap µs", "p10 .. p90"]
    rows = [[s.name, *_cells(s.spawn), *_cells(s.total)] for s in summaries]
    diff_rows = [
        [f"{d.label} ({d.case} - {d.reference})", *_cells(d.spawn, True), *_cells(d.total, True)]
        for d in differences
    ]
    return "\n\n".join(
        [
            render_table(["case (median of batch means)", *stats], rows),
            render_table(["paired difference (median over rounds)", *stats], diff_rows),
        ]
    )


def write_json(
    path: Path,
    env: dict[str, Any],
    summaries: Sequence[Summary],
    differences: Sequence[Difference],
) -> None:
    def plain(item: Summary | Difference) -> dict[str, Any]:
        fields = dict(vars(item))
        fields["spawn"], fields["total"] = vars(item.spawn), vars(item.total)
        return fields

    document = {
        "environment": env,
        "results": [plain(s) for s in summaries],
        "differences": [plain(d) for d in differences],
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
        batch_help="spawns per case per round",
    )
    return parse_common(parser, argv, rounds=QUICK_ROUNDS, batch=QUICK_BATCH)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    env = pdeathsig_environment(args.rounds, args.batch, args.seed)
    print(format_header(env), flush=True)
    worker = Worker()
    try:
        warm_up(args.batch, worker)
        batches = measure(args.rounds, args.batch, worker, random.Random(args.seed))
    finally:
        worker.close()
    summaries, differences = summarise(batches)
    print()
    print(format_tables(summaries, differences))
    if args.json is not None:
        write_json(args.json, env, summaries, differences)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sequential spawn+reap latency of ``/bin/true``: tether's backends against the stdlib.

Method
------
Every contender is a named callable that starts ``/bin/true``, waits for it, reaps
it and returns its exit code. All contenders run interleaved in this one process,
so that machine noise (other load, frequency scaling, cache state) falls on all of
them alike:

1. Warm-up: each contender runs one batch that is thrown away (and its exit codes
   are checked, so a broken contender fails loudly instead of timing an error).
2. R rounds (``--rounds``). In each round the contenders run in a freshly shuffled
   order; each runs N spawns back to back (``--batch``) and the mean time per spawn
   of that batch is recorded. The garbage collector runs before each batch so that
   one contender's garbage is not collected on another's clock.
3. Per contender, report the median of its R batch means, their 10th and 90th
   percentiles (the spread across rounds), and the ratio of its median to the
   median of the floor (raw ``os.posix_spawn`` + ``os.waitpid``, the least work
   Python can do) and of the baseline (``subprocess.Popen``).

The ``tether auto`` row is named after the backend ``"auto"`` resolves to for a
plain argv (``native`` whenever the C extension was built), so the table shows which
backend it actually timed.

Add a contender by appending a :class:`Contender` to :func:`default_contenders`.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tether

TRUE = "/bin/true"
DEFAULT_ROUNDS = 30
DEFAULT_BATCH = 50
QUICK_ROUNDS = 5
QUICK_BATCH = 20
FLOOR = "os.posix_spawn (raw)"
BASELINE = "subprocess.Popen"

Runner = Callable[[], int | None]
"""Spawns, waits for and reaps one child; returns its exit code (None if it has none)."""


@dataclass(frozen=True)
class Contender:
    """One way to spawn and reap ``/bin/true``; ``run`` returns the child's exit code."""

    name: str
    run: Runner


@dataclass(frozen=True)
class Summary:
    """A contender's batch means (µs per spawn) and the statistics reported for them."""

    name: str
    batch_means_us: list[float]
    median_us: float
    p10_us: float
    p90_us: float
    vs_floor: float
    vs_baseline: float


def tether_spawn(backend: str) -> Runner:
    """A runner for ``tether.spawn`` with *backend*."""

    def run() -> int | None:
        status = tether.spawn([TRUE], backend=backend).wait()
        return status.returncode

    return run


def popen() -> int:
    return subprocess.Popen([TRUE]).wait()


def raw_posix_spawn() -> int:
    pid = os.posix_spawn(TRUE, [TRUE], os.environ)
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status)


def default_contenders(auto: str) -> list[Contender]:
    """The contenders; *auto* is the backend ``"auto"`` resolves to, noted in its name."""
    return [
        Contender("tether native", tether_spawn("native")),
        Contender("tether posix_spawn", tether_spawn("posix_spawn")),
        Contender("tether fork", tether_spawn("fork")),
        Contender(f"tether auto (-> {auto})", tether_spawn("auto")),
        Contender(BASELINE, popen),
        Contender(FLOOR, raw_posix_spawn),
    ]


def time_batch(run: Runner, batch: int) -> float:
    """Run *run* *batch* times back to back; return the mean µs per call."""
    gc.collect()
    start = time.perf_counter_ns()
    for _ in range(batch):
        run()
    elapsed = time.perf_counter_ns() - start
    return elapsed / batch / 1000


def warm_up(contenders: Sequence[Contender], batch: int) -> None:
    """Run one untimed batch of each contender, failing on a non-zero exit code."""
    for contender in contenders:
        for _ in range(batch):
            code = contender.run()
            if code != 0:
                raise RuntimeError(f"{contender.name}: {TRUE} exited with {code}")


def measure(
    contenders: Sequence[Contender], rounds: int, batch: int, rng: random.Random
) -> dict[str, list[float]]:
    """Batch means per contender name, one per round, in shuffled order each round."""
    means: dict[str, list[float]] = {c.name: [] for c in contenders}
    order = list(contenders)
    for _ in range(rounds):
        rng.shuffle(order)
        for contender in order:
            means[contender.name].append(time_batch(contender.run, batch))
    return means


def percentiles(values: Sequence[float]) -> tuple[float, float]:
    """The 10th and 90th percentiles of *values* (inclusive method)."""
    if len(values) < 2:
        return values[0], values[0]
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    return deciles[0], deciles[-1]


def summarise(means: dict[str, list[float]]) -> list[Summary]:
    medians = {name: statistics.median(values) for name, values in means.items()}
    summaries = []
    for name, values in means.items():
        p10, p90 = percentiles(values)
        summaries.append(
            Summary(
                name=name,
                batch_means_us=values,
                median_us=medians[name],
                p10_us=p10,
                p90_us=p90,
                vs_floor=medians[name] / medians[FLOOR],
                vs_baseline=medians[name] / medians[BASELINE],
            )
        )
    return summaries


def auto_backend() -> str:
    """The backend ``tether.spawn`` picks for a plain argv."""
    process = tether.spawn([TRUE])
    process.wait()
    return process.backend


def environment(rounds: int, batch: int, seed: int) -> dict[str, Any]:
    affinity = len(os.sched_getaffinity(0))
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": affinity,
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "tether": tether.__version__,
        "auto_backend": auto_backend(),
        "rounds": rounds,
        "batch": batch,
        "seed": seed,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def format_machine(env: dict[str, Any]) -> str:
    """The header line that describes the machine and the software (from :func:`environment`)."""
    load = "/".join(f"{value:.2f}" for value in env["load_average"])
    return (
        f"Python {env['python']} ({env['implementation']}), kernel {env['kernel']}, "
        f"{env['cpu_count']} CPUs ({env['usable_cpus']} usable, load {load}), "
        f"tether {env['tether']}"
    )


def format_header(env: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"spawn+reap of {TRUE}, sequential",
            format_machine(env),
            f"{env['rounds']} rounds x {env['batch']} spawns per contender, "
            f"shuffled order per round (seed {env['seed']}); auto -> {env['auto_backend']}",
        ]
    )


def render_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """*rows* under *columns*, the first column left-aligned and the others right-aligned."""
    widths = [max(len(row[i]) for row in [columns, *rows]) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    rule = "-" * len(line(columns))
    return "\n".join([line(columns), rule, *(line(row) for row in rows)])


def format_table(summaries: Sequence[Summary]) -> str:
    columns = ["contender", "median µs", "p10 µs", "p90 µs", "x raw", "x Popen"]
    rows = [
        [
            s.name,
            f"{s.median_us:.1f}",
            f"{s.p10_us:.1f}",
            f"{s.p90_us:.1f}",
            f"{s.vs_floor:.2f}",
            f"{s.vs_baseline:.2f}",
        ]
        for s in summaries
    ]
    return render_table(columns, rows)


def write_json(path: Path, env: dict[str, Any], summaries: Sequence[Summary]) -> None:
    document = {
        "environment": env,
        "floor": FLOOR,
        "baseline": BASELINE,
        "results": [vars(s) for s in summaries],
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=DEFAULT_ROUNDS,
        help=f"timed rounds (default {DEFAULT_ROUNDS})",
    )
    parser.add_argument(
        "--batch",
        type=positive_int,
        default=DEFAULT_BATCH,
        help=f"spawns per contender per round (default {DEFAULT_BATCH})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_ROUNDS} rounds of {QUICK_BATCH} (overrides --rounds/--batch)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for the round order")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.batch = QUICK_ROUNDS, QUICK_BATCH
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**32)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    env = environment(args.rounds, args.batch, args.seed)
    contenders = default_contenders(env["auto_backend"])
    print(format_header(env), flush=True)
    warm_up(contenders, args.batch)
    means = measure(contenders, args.rounds, args.batch, random.Random(args.seed))
    summaries = summarise(means)
    print()
    print(format_table(summaries))
    if args.json is not None:
        write_json(args.json, env, summaries)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

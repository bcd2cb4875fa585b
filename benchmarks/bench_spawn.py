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
   median of the floor (raw ``os.posix_spawn`` + ``os.waitpid`` with ``os.environ``),
   of the same with a prebuilt environment (``os.posix_spawn (raw, prebuilt env)``:
   a ``dict`` of bytes built once, the least work Python can do), of the baseline
   (``subprocess.Popen``) and of the C floor.
4. Targets (issue 13), judged on the per-round batch means as in ``bench_async.py``:
   ``tether native`` at most 1.03x the prebuilt raw floor and 0.97x ``Popen``; the
   ``posix_spawn`` backend at most 1.10x the prebuilt raw floor. Beside them, shown
   only: tether and ``Popen`` against ``os.environ``'s raw floor and the C floor.

The C floor (``benchmarks/floor/floor.c``, built by ``_floor.py`` with ``cc -O2``)
runs two more contenders in a server process of its own: ``posix_spawn`` + ``waitpid``
and ``vfork`` + ``execve`` + ``waitpid`` of ``/bin/true``, with the C ``environ`` (what
tether's native backend passes for ``env=None``), timed per spawn in C; a batch of it
is one request to the server, interleaved with the Python contenders like any other.

The ``tether auto`` row is named after the backend ``"auto"`` resolves to for a
plain argv (``native`` whenever the C extension was built), so the table shows which
backend it actually timed.

Add a contender by appending a :class:`Contender` to :func:`default_contenders`.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tether
from _common import (
    BASELINE,
    FLOOR,
    RAW_PREBUILT,
    TRUE,
    BatchContender,
    Contender,
    Runner,
    Target,
    Verdict,
    add_common_arguments,
    environment,
    format_machine,
    format_verdicts,
    judge,
    make_parser,
    parse_common,
    percentiles,
    popen,
    raw_posix_spawn,
    raw_posix_spawn_prebuilt,
    render_table,
    tether_spawn,
    verdicts_json,
    write_document,
)
from _floor import FLOOR_SPAWN, FLOOR_VFORK, Floor

DEFAULT_ROUNDS = 20
DEFAULT_BATCH = 40
QUICK_ROUNDS = 4
QUICK_BATCH = 10


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
    vs_prebuilt: float
    vs_c_floor: float


def default_contenders(auto: str) -> list[Contender]:
    """The contenders; *auto* is the backend ``"auto"`` resolves to, noted in its name."""
    return [
        Contender("tether native", tether_spawn("native")),
        Contender("tether posix_spawn", tether_spawn("posix_spawn")),
        Contender("tether fork", tether_spawn("fork")),
        Contender(f"tether auto (-> {auto})", tether_spawn("auto")),
        Contender(BASELINE, popen),
        Contender(FLOOR, raw_posix_spawn),
        Contender(RAW_PREBUILT, raw_posix_spawn_prebuilt()),
    ]


def floor_contenders(floor: Floor) -> list[BatchContender]:
    """The C floor's two spawn+reap contenders, served by *floor*."""
    return [BatchContender(FLOOR_SPAWN, floor.spawn), BatchContender(FLOOR_VFORK, floor.vfork)]


AnyContender = Contender | BatchContender

TARGETS = (
    Target("tether native", RAW_PREBUILT, 1.03),
    Target("tether native", BASELINE, 0.97),
    Target("tether posix_spawn", RAW_PREBUILT, 1.10),
    Target("tether native", FLOOR, None),
    Target("tether native", FLOOR_SPAWN, None),
    Target(BASELINE, FLOOR_SPAWN, None),
    Target(RAW_PREBUILT, FLOOR_SPAWN, None),
)


def time_batch(run: Runner | BatchContender, batch: int) -> float:
    """Run *run* *batch* times back to back; return the mean µs per call."""
    gc.collect()
    if isinstance(run, BatchContender):
        return statistics.fmean(run.batch(batch))
    start = time.perf_counter_ns()
    for _ in range(batch):
        run()
    elapsed = time.perf_counter_ns() - start
    return elapsed / batch / 1000


def warm_up(contenders: Sequence[AnyContender], batch: int) -> None:
    """Run one untimed batch of each contender, failing on a non-zero exit code."""
    for contender in contenders:
        if isinstance(contender, BatchContender):
            contender.batch(batch)  # the C floor checks every exit status itself
            continue
        for _ in range(batch):
            code = contender.run()
            if code != 0:
                raise RuntimeError(f"{contender.name}: {TRUE} exited with {code}")


def measure(
    contenders: Sequence[AnyContender], rounds: int, batch: int, rng: random.Random
) -> dict[str, list[float]]:
    """Batch means per contender name, one per round, in shuffled order each round."""
    means: dict[str, list[float]] = {c.name: [] for c in contenders}
    order = list(contenders)
    for _ in range(rounds):
        rng.shuffle(order)
        for contender in order:
            runner = contender if isinstance(contender, BatchContender) else contender.run
            means[contender.name].append(time_batch(runner, batch))
    return means


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
                vs_prebuilt=medians[name] / medians[RAW_PREBUILT],
                vs_c_floor=medians[name] / medians[FLOOR_SPAWN],
            )
        )
    return summaries


def auto_backend() -> str:
    """The backend ``tether.spawn`` picks for a plain argv."""
    process = tether.spawn([TRUE])
    process.wait()
    return process.backend


def spawn_environment(rounds: int, batch: int, seed: int) -> dict[str, Any]:
    return environment(auto_backend=auto_backend(), rounds=rounds, batch=batch, seed=seed)


def format_header(env: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"spawn+reap of {TRUE}, sequential",
            format_machine(env),
            f"{env['rounds']} rounds x {env['batch']} spawns per contender, "
            f"shuffled order per round (seed {env['seed']}); auto -> {env['auto_backend']}",
        ]
    )


def format_table(summaries: Sequence[Summary]) -> str:
    columns = [
        "contender",
        "median µs",
        "p10 µs",
        "p90 µs",
        "x raw",
        "x prebuilt",
        "x Popen",
        "x C",
    ]
    rows = [
        [
            s.name,
            f"{s.median_us:.1f}",
            f"{s.p10_us:.1f}",
            f"{s.p90_us:.1f}",
            f"{s.vs_floor:.2f}",
            f"{s.vs_prebuilt:.2f}",
            f"{s.vs_baseline:.2f}",
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
        "floor": FLOOR,
        "baseline": BASELINE,
        "prebuilt_floor": RAW_PREBUILT,
        "c_floor": FLOOR_SPAWN,
        "c_floor_vfork": FLOOR_VFORK,
        "results": [vars(s) for s in summaries],
        "targets": verdicts_json(verdicts),
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
        batch_help="spawns per contender per round",
    )
    return parse_common(parser, argv, rounds=QUICK_ROUNDS, batch=QUICK_BATCH)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    env = spawn_environment(args.rounds, args.batch, args.seed)
    print(format_header(env), flush=True)
    with Floor() as floor:
        contenders = [*default_contenders(env["auto_backend"]), *floor_contenders(floor)]
        warm_up(contenders, args.batch)
        means = measure(contenders, args.rounds, args.batch, random.Random(args.seed))
    summaries = summarise(means)
    verdicts = [judge(target, means, FLOOR_SPAWN) for target in TARGETS]
    print()
    print(format_table(summaries))
    print()
    print(format_verdicts(verdicts))
    if args.json is not None:
        write_json(args.json, env, summaries, verdicts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

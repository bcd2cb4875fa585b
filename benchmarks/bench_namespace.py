"""The price of ``kill="namespace"``: spawn+reap of a supervised child, against group mode.

In namespace mode every supervised child costs a second process, the namespace's init
(``_nsinit``, spawned with ``CLONE_NEWPID``), a socket pair (its lifeline), a ``setns``
there and back around the child's own clone, one ``sendmsg`` of the child's pidfd, and,
when the tree is closed, the init's exit (the kernel tears the namespace down) and its
reap. This benchmark prices all of that against ``kill="group"``, the default.

Method
------
Two contenders, ``group`` and ``namespace``, each one ``tether.Supervisor(kill=MODE)``
scope per batch: enter the scope, then N times (``--batch``) ``sup.spawn([/bin/true])``
and ``wait()``, then leave the scope, which closes every tree (namespace mode: reaps
every init). The sample is the mean time per child of the whole batch, scope entry and
exit included, so the init's spawn and reap are on the clock wherever they happen.
Every child must exit with status 0 on the native backend; the warm-up batch checks it.

R rounds (``--rounds``): the contenders run in a freshly shuffled order each round
(``--seed`` repeats an order). Reported per contender: the median of the batch means,
with their 10th and 90th percentiles; then the ratio namespace / group as the median
over rounds of the paired ratio (same round, same machine conditions). Needs root
(``CAP_SYS_ADMIN``) and the native spawner: without them the script says why and exits 2.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

MODES = ("group", "namespace")
DEFAULT_ROUNDS = 15
DEFAULT_BATCH = 20
QUICK_ROUNDS = 3
QUICK_BATCH = 10


def run_batch(mode: str, batch: int, check: bool = False) -> float:
    """One scope of *batch* sequential spawn+reaps; the mean µs per child."""
    gc.collect()
    start = time.perf_counter_ns()
    with tether.Supervisor(kill=mode) as sup:  # type: ignore[arg-type]
        for _ in range(batch):
            process = sup.spawn([TRUE])
            status = process.wait()
            if check and (status != tether.Exited(0) or process.backend != "native"):
                raise RuntimeError(f"{mode}: {status}, backend {process.backend}")
    return (time.perf_counter_ns() - start) / batch / 1000


def measure(rounds: int, batch: int, rng: random.Random) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    order = list(MODES)
    for _ in range(rounds):
        rng.shuffle(order)
        for mode in order:
            samples[mode].append(run_batch(mode, batch))
    return samples


def format_tables(samples: dict[str, list[float]]) -> str:
    rows = []
    for mode, values in samples.items():
        stats = Stats.of(values)
        rows.append([mode, f"{stats.median:.1f}", f"{stats.p10:.1f} .. {stats.p90:.1f}"])
    ratios = Stats.of(
        [ns / group for ns, group in zip(samples["namespace"], samples["group"], strict=True)]
    )
    ratio_row = [
        "namespace / group (paired, per round)",
        f"{ratios.median:.2f}x",
        f"{ratios.p10:.2f} .. {ratios.p90:.2f}",
    ]
    return render_table(
        ["kill mode (median of batch means)", "spawn+reap µs per child", "p10 .. p90"],
        [*rows, ratio_row],
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    add_common_arguments(
        parser,
        rounds=DEFAULT_ROUNDS,
        batch=DEFAULT_BATCH,
        quick_rounds=QUICK_ROUNDS,
        quick_batch=QUICK_BATCH,
        batch_help="children spawned and reaped per scope (one sample)",
    )
    return parse_common(parser, argv, rounds=QUICK_ROUNDS, batch=QUICK_BATCH)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    env: dict[str, Any] = environment(rounds=args.rounds, batch=args.batch, seed=args.seed)
    print(
        f"spawn+reap of {TRUE} under Supervisor(kill=MODE), one scope per batch\n"
        f"{format_machine(env)}\n"
        f"{args.rounds} rounds x {args.batch} children per mode, "
        f"shuffled order per round (seed {args.seed})",
        flush=True,
    )
    try:
        for mode in MODES:
            run_batch(mode, args.batch, check=True)
    except tether.NamespaceError as exc:
        print(f"namespace mode cannot run here: {exc}", file=sys.stderr)
        return 2
    samples = measure(args.rounds, args.batch, random.Random(args.seed))
    print()
    print(format_tables(samples))
    if args.json is not None:
        write_document(Path(args.json), {"environment": env, "samples": samples})
    return 0


if __name__ == "__main__":
    sys.exit(main())

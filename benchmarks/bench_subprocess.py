"""tether.subprocess against the standard subprocess: ``run`` with captured output, and
how soon ``Popen.wait(timeout)`` returns once the child exits.

Method (as the other scripts, see benchmarks/README.md): both contenders run in one
process, interleaved round after round in a freshly shuffled order (``--seed``), each
round a batch whose mean is one sample; the result is the median of the samples with
their p10..p90 spread. The garbage collector runs before each batch.

* ``run``: ``run([TRUE_PRINTER], capture_output=True)`` where the child prints one line;
  the time of the whole call (spawn, read, reap).
* ``wait(timeout)``: the child blocks reading its stdin; the parent closes the pipe (the
  child exits at once), then times ``wait(timeout=10)`` from that moment. The standard
  module polls with ``time.sleep`` (0.5 ms doubling to 50 ms) until CPython 3.15;
  tether blocks on the pidfd.

Usage: ``.venv/bin/python benchmarks/bench_subprocess.py [--rounds N] [--batch N]
[--quick] [--seed N] [--json PATH]``; ``--json`` writes the environment, every batch
mean and the statistics.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import subprocess as std
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import Stats, environment, write_document
from tether import subprocess as drop_in

MODULES: dict[str, Any] = {"subprocess": std, "tether.subprocess": drop_in}
DEFAULT_ROUNDS = 10
DEFAULT_BATCH = 10
QUICK_ROUNDS = 3
QUICK_BATCH = 5


def run_captured(module: Any) -> None:
    done = module.run(["echo", "hello"], capture_output=True)
    assert done.stdout == b"hello\n"
    assert done.returncode == 0


def wait_latency(module: Any) -> float:
    process = module.Popen(["sh", "-c", "read line; exit 0"], stdin=module.PIPE)
    process.stdin.close()  # EOF: the child exits now
    start = time.perf_counter()
    code = process.wait(timeout=10)
    elapsed = time.perf_counter() - start
    assert code == 0
    return elapsed


def _batch(task: Callable[[Any], float | None], module: Any, size: int) -> float:
    gc.collect()
    total = 0.0
    for _ in range(size):
        start = time.perf_counter()
        measured = task(module)
        total += measured if measured is not None else time.perf_counter() - start
    return total / size


def _quantile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--quick", action="store_true", help=f"a smoke run: {QUICK_ROUNDS} rounds of {QUICK_BATCH}"
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results")
    options = parser.parse_args()
    quick = (QUICK_ROUNDS, QUICK_BATCH)
    rounds, batch = quick if options.quick else (options.rounds, options.batch)
    seed = options.seed if options.seed is not None else random.randrange(2**32)
    chance = random.Random(seed)
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
        f"{rounds} rounds x {batch}, seed {seed}"
    )
    tasks: dict[str, Callable[[Any], float | None]] = {
        "run(capture_output=True)": run_captured,  # type: ignore[dict-item]
        "wait(timeout) after exit": wait_latency,
    }
    measures = []
    for name, task in tasks.items():
        for module in MODULES.values():
            task(module)  # a checked warm-up
        samples: dict[str, list[float]] = {label: [] for label in MODULES}
        for _ in range(rounds):
            order = list(MODULES.items())
            chance.shuffle(order)
            for label, module in order:
                samples[label].append(_batch(task, module, batch))
        print(f"\n{name}")
        base = statistics.median(samples["subprocess"])
        for label, values in samples.items():
            median = statistics.median(values)
            low, high = _quantile(values, 0.1) * 1e6, _quantile(values, 0.9) * 1e6
            print(
                f"  {label:<18} median {median * 1e6:9.1f} us   "
                f"p10..p90 {low:9.1f}..{high:9.1f} us"
                f"   x{median / base:.2f} of subprocess"
            )
        measures.append(
            {
                "name": name,
                "results": [
                    {
                        "name": label,
                        "batch_means_us": [value * 1e6 for value in values],
                        **{f"{k}_us": v * 1e6 for k, v in vars(Stats.of(values)).items()},
                        "vs_baseline": statistics.median(values) / base,
                    }
                    for label, values in samples.items()
                ],
            }
        )
    if options.json is not None:
        env = environment(rounds=rounds, batch=batch, seed=seed)
        write_document(
            options.json, {"environment": env, "baseline": "subprocess", "measures": measures}
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

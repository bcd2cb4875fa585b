"""Scaffolding shared by the ``bench_*.py`` scripts.

Command line (:func:`make_parser`, :func:`add_common_arguments`, :func:`parse_common`),
the environment header (:func:`environment`, :func:`async_environment`,
:func:`format_machine`, :func:`format_libraries`), output (:func:`render_table`,
:func:`write_document`), statistics and performance targets (:class:`Stats`,
:func:`judge`, :func:`format_verdicts`), the synchronous spawn+reap runners that
``bench_spawn.py``, ``bench_heap.py`` and ``bench_async.py`` time (raw
``os.posix_spawn`` with ``os.environ`` and with a prebuilt environment among them),
and :class:`BatchContender`, the shape of a contender that times itself (the C floor
of ``_floor.py``).

The scripts import it as a sibling module, so run them from the repository
(``.venv/bin/python benchmarks/bench_spawn.py``), not with ``-m``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import tether

TRUE = "/bin/true"
NEAR_FLOOR = 0.1
"""A reference less than this fraction above the floor gets no ``x above floor``."""

# --- spawn+reap runners (bench_spawn.py, bench_heap.py, bench_async.py) ---------------

FLOOR = "os.posix_spawn (raw)"
RAW_PREBUILT = "os.posix_spawn (raw, prebuilt env)"
BASELINE = "subprocess.Popen"

Runner = Callable[[], int | None]
"""Spawns, waits for and reaps one child; returns its exit code (None if it has none)."""


@dataclass(frozen=True)
class Contender:
    """One way to spawn and reap ``/bin/true``; ``run`` returns the child's exit code."""

    name: str
    run: Runner


def tether_spawn(backend: str) -> Runner:
    """A runner for ``tether.spawn`` with *backend*."""

    def run() -> int | None:
        status = tether.spawn([TRUE], backend=backend).wait()
        return status.returncode

    return run


def popen() -> int:
    return subprocess.Popen([TRUE]).wait()


def raw_posix_spawn() -> int:
    """``os.posix_spawn`` with ``os.environ`` (converted on every call) + ``os.waitpid``."""
    pid = os.posix_spawn(TRUE, [TRUE], os.environ)
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status)


def raw_posix_spawn_prebuilt() -> Runner:
    """``os.posix_spawn`` + ``os.waitpid`` with the environment built once, as bytes.

    The least Python can do: ``os.environ`` is a mapping that decodes every entry on
    each iteration, a ready ``dict`` of bytes is not. (tether's native backend passes
    the C ``environ`` itself for ``env=None``, which is cheaper still.)
    """
    env = dict(os.environb)
    argv = [TRUE.encode()]
    path = TRUE.encode()

    def run() -> int:
        pid = os.posix_spawn(path, argv, env)
        _, wait_status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(wait_status)

    return run


@dataclass(frozen=True)
class BatchContender:
    """A contender timed by batch, in its own clock: ``batch(n)`` returns µs per operation.

    The C floors (:class:`_floor.Floor`) are these: each call runs *n* operations in
    the C program, which times each one.
    """

    name: str
    batch: Callable[[int], list[float]]


# --- command line ---------------------------------------------------------------------


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def counts_list(text: str) -> list[int]:
    """``100,1_000`` -> ``[100, 1000]``: at least one count, each at least 1."""
    counts = [positive_int(part.replace("_", "")) for part in text.split(",") if part]
    if not counts:
        raise argparse.ArgumentTypeError("give at least one count")
    return counts


def make_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser described by the first line of the script's docstring *doc*."""
    return argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)


def add_rounds_and_batch(
    parser: argparse.ArgumentParser,
    *,
    rounds: int,
    batch: int,
    batch_help: str,
    rounds_help: str = "timed rounds",
    batch_flag: str = "--batch",
) -> None:
    """``--rounds`` and ``--batch`` (or *batch_flag*), with their defaults in the help."""
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=rounds,
        help=f"{rounds_help} (default {rounds})",
    )
    parser.add_argument(
        batch_flag,
        type=positive_int,
        default=batch,
        help=f"{batch_help} (default {batch})",
    )


def add_run_options(
    parser: argparse.ArgumentParser, *, quick_help: str, seed_help: str = "seed for the round order"
) -> None:
    """``--quick``, ``--seed`` and ``--json``: the options every script ends with."""
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--seed", type=int, default=None, help=seed_help)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results")


def add_common_arguments(
    parser: argparse.ArgumentParser,
    *,
    rounds: int,
    batch: int,
    quick_rounds: int,
    quick_batch: int,
    batch_help: str,
    batch_flag: str = "--batch",
) -> None:
    """``--rounds``, ``--batch`` (or *batch_flag*), ``--quick``, ``--seed`` and ``--json``.

    Pass ``rounds=quick_rounds`` and ``batch=quick_batch`` (named after *batch_flag*) to
    :func:`parse_common` as the ``--quick`` overrides.
    """
    add_rounds_and_batch(
        parser, rounds=rounds, batch=batch, batch_help=batch_help, batch_flag=batch_flag
    )
    add_run_options(
        parser,
        quick_help=f"smoke run: {quick_rounds} rounds of {quick_batch} "
        f"(overrides --rounds/{batch_flag})",
    )


def parse_common(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, **quick: Any
) -> argparse.Namespace:
    """Parse *argv*; under ``--quick`` set the attributes in *quick*; draw a seed if none."""
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in quick.items():
            setattr(args, name, value)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**32)
    return args


# --- environment ----------------------------------------------------------------------


def environment(*, machine: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The machine and the software, for the header and ``--json``.

    *machine* is inserted after the CPU counts, *extra* after tether's version; the
    date comes last.
    """
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        **(machine or {}),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "tether": tether.__version__,
        **extra,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def asyncio_child_watcher() -> str:
    """How asyncio learns that a child exited, on this Python."""
    if sys.version_info >= (3, 12):
        return "pidfd or thread (3.12+: no watcher objects)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        watcher = asyncio.get_event_loop_policy().get_child_watcher()
    return type(watcher).__name__


def async_environment(**extra: Any) -> dict[str, Any]:
    """:func:`environment` plus the async libraries and the fd limit (*extra* appended)."""
    return environment(
        anyio=metadata.version("anyio"),
        trio=metadata.version("trio"),
        asyncio_child_watcher=asyncio_child_watcher(),
        rlimit_nofile=list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        **extra,
    )


def format_machine(env: Mapping[str, Any]) -> str:
    """The header line that describes the machine and the software (from :func:`environment`)."""
    load = "/".join(f"{value:.2f}" for value in env["load_average"])
    return (
        f"Python {env['python']} ({env['implementation']}), kernel {env['kernel']}, "
        f"{env['cpu_count']} CPUs ({env['usable_cpus']} usable, load {load}), "
        f"tether {env['tether']}"
    )


def format_libraries(env: Mapping[str, Any]) -> str:
    """The header line for the async libraries (from :func:`async_environment`)."""
    return (
        f"anyio {env['anyio']}, trio {env['trio']}, "
        f"asyncio child watcher: {env['asyncio_child_watcher']}"
    )


# --- output ---------------------------------------------------------------------------


def render_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """*rows* under *columns*, the first column left-aligned and the others right-aligned."""
    widths = [max(len(row[i]) for row in [columns, *rows]) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    rule = "-" * len(line(columns))
    return "\n".join([line(columns), rule, *(line(row) for row in rows)])


def write_document(path: Path, document: Mapping[str, Any]) -> None:
    """Write *document* to *path* as indented UTF-8 JSON and say so."""
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwrote {path}")


# --- statistics and targets -----------------------------------------------------------


def percentiles(values: Sequence[float]) -> tuple[float, float]:
    """The 10th and 90th percentiles of *values* (inclusive method)."""
    if len(values) < 2:
        return values[0], values[0]
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    return deciles[0], deciles[-1]


@dataclass(frozen=True)
class Stats:
    median: float
    p10: float
    p90: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        p10, p90 = percentiles(values)
        return cls(statistics.median(values), p10, p90)


@dataclass(frozen=True)
class Target:
    """``contender`` should take at most ``limit`` times ``reference``'s time (None: shown only)."""

    contender: str
    reference: str
    limit: float | None
    bare: str | None = None
    """The bare contender of the contender's road (``_bare.py``): the same system calls
    with no library around them. Its own ratio to the reference is shown beside the
    verdict: a limit below it is out of reach of any library on that road."""


@dataclass(frozen=True)
class Verdict:
    target: Target
    ratio_of_medians: float
    paired: Stats
    above_floor: float | None
    """(contender - floor) / (reference - floor), on medians: the ratio of the parts
    the libraries control. None without a floor, or when the reference is within
    :data:`NEAR_FLOOR` of it (the quotient of two small differences is noise)."""
    verdict: str
    bare_ratio: float | None = None
    """The bare contender's ratio of medians to the reference (None without one)."""


def judge(target: Target, samples: Mapping[str, Sequence[float]], floor: str | None) -> Verdict:
    """Judge *target* on per-round *samples* (one value per round for each name).

    ``met`` / ``NOT met`` when the whole p10..p90 range of the paired ratio is on one
    side of the limit, ``borderline`` (with the ratio of medians deciding) otherwise.
    The limit applies to the whole time; the ratio above *floor* is shown beside it, and
    so is the ratio of the target's bare contender to the same reference, if it names one.
    """
    mine, theirs = samples[target.contender], samples[target.reference]
    ratio = statistics.median(mine) / statistics.median(theirs)
    above_floor = None
    if floor is not None:
        base = statistics.median(samples[floor])
        if statistics.median(theirs) > base * (1 + NEAR_FLOOR):
            above_floor = (statistics.median(mine) - base) / (statistics.median(theirs) - base)
    paired = Stats.of([a / b for a, b in zip(mine, theirs, strict=True)])
    limit = target.limit
    if limit is None:
        verdict = "(shown only)"
    elif paired.p90 <= limit:
        verdict = "met"
    elif paired.p10 > limit:
        verdict = "NOT met"
    else:
        verdict = "borderline (met)" if ratio <= limit else "borderline (NOT met)"
    bare_ratio = None
    if target.bare is not None:
        bare_ratio = statistics.median(samples[target.bare]) / statistics.median(theirs)
    return Verdict(target, ratio, paired, above_floor, verdict, bare_ratio)


def format_verdicts(verdicts: Sequence[Verdict]) -> str:
    columns = [
        "target",
        "limit",
        "x medians",
        "paired x",
        "p10 .. p90",
        "verdict",
        "x above floor",
        "bare x",
    ]
    rows = [
        [
            f"{v.target.contender} vs {v.target.reference}",
            "-" if v.target.limit is None else f"<= {v.target.limit:.2f}",
            f"{v.ratio_of_medians:.2f}",
            f"{v.paired.median:.2f}",
            f"{v.paired.p10:.2f} .. {v.paired.p90:.2f}",
            v.verdict,
            "-" if v.above_floor is None else f"{round(v.above_floor, 2) + 0.0:.2f}",
            "-" if v.bare_ratio is None else f"{v.bare_ratio:.2f}",
        ]
        for v in verdicts
    ]
    return render_table(columns, rows)


def verdicts_json(verdicts: Sequence[Verdict]) -> list[dict[str, Any]]:
    """The ``targets`` entry of a ``--json`` document."""
    return [
        {
            **vars(v.target),
            "ratio_of_medians": v.ratio_of_medians,
            "paired": vars(v.paired),
            "above_floor": v.above_floor,
            "verdict": v.verdict,
            "bare_ratio": v.bare_ratio,
        }
        for v in verdicts
    ]

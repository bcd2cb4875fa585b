"""Supervisor shutdown: the time for a scope of N children to stop every child and reap it.

Method
------
For each count N (``--counts``, default 1, 100 and 1,000), each API (``tether.Supervisor``
in the main thread; ``tether.AsyncSupervisor`` on asyncio and on trio, one
``anyio.run(..., backend=...)`` per run), each kill mode (``group``; ``cgroup`` when a
cgroup v2 directory is writable here, skipped with the reason otherwise; and
``group+subreaper``, group mode with ``subreaper=True``, where the grandchildren's
zombies wait for *us* to reap them; ``process``, the child alone, with the ``sleep``
kind only; ``namespace``, a PID namespace per child, when we may create one, i.e. as
root, skipped with the reason otherwise) and each child kind, one run goes like this:

1. Enter ``Supervisor(grace=30, kill=MODE)`` (``AsyncSupervisor``: ``async with``) and
   start N children with ``sup.spawn(argv)`` (``await sup.start(argv)``). Timed, but
   only reported in the progress lines and ``--json`` (``bench_scale.py`` is about
   spawning).
2. Still inside the body, wait (untimed) until every child's tree is in place and
   blocked, by scanning ``/proc``: the child and its own children (found by parent pid,
   since in ``process`` mode the child leads no group) are exactly the tree's
   processes, all in state ``S``, one of them the ``sleep`` command. A pidfd is
   opened on every grandchild (``os.pidfd_open``), to check afterwards that it is gone.
3. ``t0 = perf_counter_ns()`` as the body's last statement; ``t1`` as the first
   statement after the ``with`` (``async with``) block, i.e. once ``__exit__``
   (``__aexit__``) has returned. The sample is ``t1 - t0``: sending SIGTERM (and
   SIGCONT) to every tree, waiting for each child's exit and for the rest of its tree,
   reaping, closing pinned pidfds and removing cgroups.

The child kinds:

* ``sleep``: ``sleep 600``, which SIGTERM ends at once (one process per tree);
* ``sh+sleep``: ``sh -c 'sleep 600 & wait'``, a shell blocked in ``wait`` with a
  ``sleep 600`` grandchild in its process group (two processes per tree). SIGTERM
  ends both; the grandchild is then reaped by init (PID 1), not by us, except with
  ``subreaper=True``.

``--modes``, ``--apis`` and ``--kinds`` pick a subset (comma-separated), e.g.
``--counts 1000 --apis sync --modes group,group+subreaper`` for the 1,000-tree stop.

The grace period (30 s) is far longer than any stop takes, so SIGTERM alone ends
every tree and the time measured is the stop path, not the grace; a
``KilledAfterGraceWarning`` fails the run. After each run every child must have been
killed by SIGTERM (return code -15) and every grandchild's pidfd must read as exited.
Whatever goes wrong, every child is killed and reaped and every grandchild killed
(try/finally), beyond the supervisor's own guarantee.

The default run covers every kill mode and child kind with the ``sync`` API, once
each (``--repeats 1``), to fit the suite's time budget; ``--apis sync,asyncio,trio
--repeats 3`` is the full run (several minutes).

Each (count, contender) pair runs ``--repeats`` times (default 1); per count the
contenders run in a freshly shuffled order each repeat. Reported per count and
contender: the median stop time of the repeats, their range, and the median divided
by N (µs per child); then an overview of µs per child across the counts. The soft
``RLIMIT_NOFILE`` is raised to the hard limit first (each tree holds a few fds: the
child's pidfd, a pinned dup of it or a cgroup's watch fds, and our grandchild pidfd).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import resource
import select
import shlex
import shutil
import signal
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

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

GRACE = 30.0
"""Seconds of grace: far beyond any stop, so that SIGTERM alone ends every tree."""
STOPPED = -signal.SIGTERM
SLEEP = shutil.which("sleep") or "/bin/sleep"
SHELL = shutil.which("sh") or "/bin/sh"
DEFAULT_COUNTS = (1, 100, 1_000)
DEFAULT_REPEATS = 1
QUICK_COUNTS = (1, 20)
QUICK_REPEATS = 1
APIS = ("sync", "asyncio", "trio")
DEFAULT_APIS = ("sync",)
"""Every kill mode and child kind at 1,000 children, for all three APIs, would not fit
the suite's time budget: the async APIs run on request (``--apis sync,asyncio,trio``)."""
MODES = ("group", "group+subreaper", "cgroup", "process", "namespace")
"""A kill mode, ``+subreaper`` for ``subreaper=True``. (``process`` stops the child
alone, so it runs only with the ``sleep`` kind: a grandchild outliving the scope is
what it is for.)"""
FDS_PER_TREE = 5
"""File descriptors per tree, at most: pidfd, pinned dup or cgroup watch fds, ours."""
SPARE_FDS = 100
SETTLE_TIMEOUT = 120.0
"""Seconds the children of a run may take to reach their sleep before the run fails."""
SETTLE_POLL = 0.01


@dataclass(frozen=True)
class Kind:
    """What each child runs, and how many processes its tree has once settled."""

    name: str
    argv: tuple[str, ...]
    processes: int


KINDS = (
    Kind("sleep", (SLEEP, "600"), 1),
    Kind("sh+sleep", (SHELL, "-c", "sleep 600 & wait"), 2),
)


class Child(Protocol):
    """What ``tether.Process`` and ``tether.AsyncProcess`` share, as used here."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def kill(self) -> None: ...


@dataclass(frozen=True)
class Run:
    """One run of a contender with *count* children."""

    contender: str
    count: int
    spawn_s: float
    stop_s: float


@dataclass(frozen=True)
class Contender:
    api: str
    """``sync``, ``asyncio`` or ``trio``."""
    mode: str
    kind: Kind
    run: Callable[[int], Run] = field(compare=False)

    @property
    def name(self) -> str:
        return contender_name(self.api, self.mode, self.kind)


def contender_name(api: str, mode: str, kind: Kind) -> str:
    return f"{api} / {mode} / {kind.name}"


def scope_settings(mode: str) -> dict[str, Any]:
    """The supervisor settings of *mode* (``group``, ``group+subreaper``, ``cgroup``)."""
    kill, _, extra = mode.partition("+")
    return {"grace": GRACE, "kill": kill, "subreaper": extra == "subreaper"}


@dataclass(frozen=True)
class Row:
    """The repeats of one contender at one count, summarised."""

    contender: str
    count: int
    runs: list[Run]
    stop_s: float
    """The median over the repeats."""

    @property
    def us_per_child(self) -> float:
        return self.stop_s / self.count * 1e6


# --- the process table ----------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    pid: int
    comm: str
    state: str


def tree_members(leaders: set[int]) -> dict[int, list[Member]]:
    """Each child in *leaders* and its own children, from one scan of ``/proc``.

    By parent, not by process group: in ``kill="process"`` mode the child leads no
    group of its own. (The trees here are one or two levels deep.)
    """
    members: dict[int, list[Member]] = {leader: [] for leader in leaders}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue  # exited meanwhile
        close = stat.rindex(")")
        state, ppid = stat[close + 2 :].split(" ", 2)[:2]
        pid = int(name)
        leader = pid if pid in members else int(ppid)
        if leader in members:
            members[leader].append(Member(pid, stat[stat.index("(") + 1 : close], state))
    return members


def unsettled(leaders: Sequence[int], kind: Kind) -> tuple[list[int], list[int]]:
    """(leaders whose tree is not yet in place and blocked, pids of the settled grandchildren)."""
    pending, grandchildren = [], []
    for leader, members in tree_members(set(leaders)).items():
        settled = (
            len(members) == kind.processes
            and all(m.state == "S" for m in members)
            and [m.comm for m in members].count("sleep") == 1
        )
        if not settled:
            pending.append(leader)
        grandchildren += [m.pid for m in members if m.pid != leader]
    return pending, grandchildren


def settled_check(leaders: Sequence[int], kind: Kind, deadline: float) -> list[int] | None:
    """The grandchildren's pids once every tree is settled; None to poll again."""
    pending, grandchildren = unsettled(leaders, kind)
    if not pending:
        return grandchildren
    if time.monotonic() > deadline:
        raise RuntimeError(f"{len(pending)} of {len(leaders)} trees did not settle: {pending[:5]}")
    return None


def settle(leaders: Sequence[int], kind: Kind) -> list[int]:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while (grandchildren := settled_check(leaders, kind, deadline)) is None:
        time.sleep(SETTLE_POLL)
    return grandchildren


async def settle_async(leaders: Sequence[int], kind: Kind) -> list[int]:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while (grandchildren := settled_check(leaders, kind, deadline)) is None:
        await anyio.sleep(SETTLE_POLL)
    return grandchildren


# --- checks and clean-up --------------------------------------------------------------


def open_pidfds(pids: Sequence[int], into: list[int]) -> None:
    """Append a pidfd for each of *pids* to *into* (so that a failure still closes them)."""
    for pid in pids:
        into.append(os.pidfd_open(pid))


def exited(pidfds: Sequence[int]) -> int:
    """How many of *pidfds* read as exited (a pidfd polls readable once its process exits)."""
    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    return len(poller.poll(0))


def check(
    name: str,
    children: Sequence[Child],
    pidfds: Sequence[int],
    caught: list[warnings.WarningMessage],
) -> None:
    """Fail unless SIGTERM alone ended every tree within the grace period."""
    escalated = [w for w in caught if issubclass(w.category, tether.KilledAfterGraceWarning)]
    if escalated:
        raise RuntimeError(f"{name}: SIGTERM did not suffice: {escalated[0].message}")
    codes = [child.returncode for child in children]
    wrong = [code for code in codes if code != STOPPED]
    if wrong:
        raise RuntimeError(f"{name}: {len(wrong)} children not ended by SIGTERM: {wrong[:5]}")
    gone = exited(pidfds)
    if gone != len(pidfds):
        raise RuntimeError(f"{name}: {len(pidfds) - gone} grandchildren outlived __exit__")


def kill_grandchildren(pidfds: list[int]) -> None:
    """SIGKILL every grandchild still alive (a no-op after a good run) and close the pidfds."""
    while pidfds:
        fd = pidfds.pop()
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        os.close(fd)


def reap_sync(children: Sequence[tether.Process], pidfds: list[int]) -> None:
    kill_grandchildren(pidfds)
    for child in children:
        if child.status is None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            child.wait()


async def reap_async(children: Sequence[tether.AsyncProcess], pidfds: list[int]) -> None:
    kill_grandchildren(pidfds)
    with anyio.CancelScope(shield=True):
        for child in children:
            if child.status is None:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()


@contextlib.contextmanager
def recorded_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", tether.KilledAfterGraceWarning)
        yield caught


# --- the contenders -------------------------------------------------------------------


def sync_contender(mode: str, kind: Kind) -> Contender:
    name = contender_name("sync", mode, kind)

    def run(count: int) -> Run:
        children: list[tether.Process] = []
        pidfds: list[int] = []
        try:
            with recorded_warnings() as caught:
                start = time.perf_counter_ns()
                with tether.Supervisor(**scope_settings(mode)) as sup:
                    for _ in range(count):
                        children.append(sup.spawn(kind.argv))
                    spawned = time.perf_counter_ns()
                    open_pidfds(settle([c.pid for c in children], kind), pidfds)
                    stopping = time.perf_counter_ns()
                stopped = time.perf_counter_ns()
            check(name, children, pidfds, caught)
        finally:
            reap_sync(children, pidfds)
        return Run(name, count, (spawned - start) / 1e9, (stopped - stopping) / 1e9)

    return Contender("sync", mode, kind, run)


def async_contender(loop: str, mode: str, kind: Kind) -> Contender:
    name = contender_name(loop, mode, kind)

    async def in_loop(count: int) -> Run:
        children: list[tether.AsyncProcess] = []
        pidfds: list[int] = []
        try:
            with recorded_warnings() as caught:
                start = time.perf_counter_ns()
                async with tether.AsyncSupervisor(**scope_settings(mode)) as sup:
                    for _ in range(count):
                        children.append(await sup.start(kind.argv))
                    spawned = time.perf_counter_ns()
                    open_pidfds(await settle_async([c.pid for c in children], kind), pidfds)
                    stopping = time.perf_counter_ns()
                stopped = time.perf_counter_ns()
            check(name, children, pidfds, caught)
        finally:
            await reap_async(children, pidfds)
        return Run(name, count, (spawned - start) / 1e9, (stopped - stopping) / 1e9)

    def run(count: int) -> Run:
        return anyio.run(in_loop, count, backend=loop)

    return Contender(loop, mode, kind, run)


def default_contenders(
    modes: Sequence[str], apis: Sequence[str] = APIS, kinds: Sequence[Kind] = KINDS
) -> list[Contender]:
    contenders = []
    for api in apis:
        for mode in modes:
            for kind in kinds:
                if mode == "process" and kind.processes > 1:
                    continue  # the grandchild is meant to outlive the scope
                if api == "sync":
                    contenders.append(sync_contender(mode, kind))
                else:
                    contenders.append(async_contender(api, mode, kind))
    return contenders


# --- the environment ------------------------------------------------------------------


def cgroup_problem() -> str | None:
    """Why ``kill="cgroup"`` cannot run here (None if it can): enter a scope, spawn one child."""
    try:
        with tether.Supervisor(grace=GRACE, kill="cgroup") as sup:
            sup.spawn(["/bin/true"]).wait()
    except tether.CgroupError as exc:
        return str(exc)
    return None


def namespace_problem() -> str | None:
    """Why ``kill="namespace"`` cannot run here (None if it can); it needs root."""
    try:
        with tether.Supervisor(grace=GRACE, kill="namespace") as sup:
            sup.spawn(["/bin/true"]).wait()
    except tether.NamespaceError as exc:
        return str(exc)
    return None


def cgroup_location() -> str:
    """The cgroup2 mount (from ``/proc/self/mountinfo``) and our cgroup, for the header."""
    mount = None
    with open("/proc/self/mountinfo", encoding="utf-8") as lines:
        for line in lines:
            fields, _, rest = line.partition(" - ")
            if rest.split(" ", 1)[0] == "cgroup2":
                mount = fields.split(" ")[4]
                break
    if mount is None:
        return "no cgroup2 mount"
    with open("/proc/self/cgroup", encoding="utf-8") as lines:
        own = next((line[3:].rstrip("\n") for line in lines if line.startswith("0::")), "?")
    return f"cgroup2 at {mount}, our cgroup {own}"


def init_name() -> str:
    """PID 1's command: it reaps the orphaned grandchildren, and how soon matters in group mode."""
    try:
        return Path("/proc/1/comm").read_text().strip()
    except OSError:
        return "?"


def raise_nofile(counts: Sequence[int]) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; fail if the largest count won't fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    needed = max(counts) * FDS_PER_TREE + SPARE_FDS
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} < {needed}, needed for {max(counts)}")
    return soft, hard


# --- measuring ------------------------------------------------------------------------


def measure(
    contenders: Sequence[Contender], counts: Sequence[int], repeats: int, rng: random.Random
) -> list[Row]:
    rows: list[Row] = []
    for count in counts:
        runs: dict[str, list[Run]] = {c.name: [] for c in contenders}
        order = list(contenders)
        for _ in range(repeats):
            rng.shuffle(order)
            for contender in order:
                gc.collect()
                run = contender.run(count)
                print(f"  {format_run(run)}", flush=True)
                runs[contender.name].append(run)
        rows += [
            Row(c.name, count, runs[c.name], statistics.median(r.stop_s for r in runs[c.name]))
            for c in contenders
        ]
    return rows


# --- output ---------------------------------------------------------------------------


def format_run(run: Run) -> str:
    return (
        f"{run.count:,} x {run.contender}: spawn {run.spawn_s:.3f} s, "
        f"stop {run.stop_s * 1e3:.1f} ms ({run.stop_s / run.count * 1e6:.1f} µs/child)"
    )


def format_header(env: dict[str, Any]) -> str:
    counts = ", ".join(f"{n:,}" for n in env["counts"])
    soft, hard = env["rlimit_nofile_before"]
    kinds = "; ".join(f"{k.name}: {shlex.join(k.argv)}" for k in KINDS)
    cgroup = env["cgroup"] if env["cgroup_skipped"] is None else "cgroup mode SKIPPED"
    return "\n".join(
        [
            f"supervisor shutdown of {counts} children (__exit__ after the body, all reaped), "
            f"grace {GRACE:g} s, stop signal SIGTERM",
            format_machine(env),
            format_libraries(env),
            f"children: {kinds}; PID 1 (reaps orphans): {env['init']}",
            f"{cgroup}; RLIMIT_NOFILE soft {soft} -> {env['rlimit_nofile'][0]} (hard {hard}); "
            f"{env['repeats']} repeat(s) per count, shuffled order (seed {env['seed']})",
        ]
    )


def format_range(values: Sequence[float]) -> str:
    return f"{min(values):.1f} .. {max(values):.1f}"


def format_table(count: int, rows: Sequence[Row], skipped: Sequence[str]) -> str:
    columns = [
        f"{count:,} children (api / kill / child)",
        "stop ms",
        "min .. max ms",
        "µs/child",
        "spawn s",
    ]
    cells = [
        [
            r.contender,
            f"{r.stop_s * 1e3:.1f}",
            format_range([x.stop_s * 1e3 for x in r.runs]),
            f"{r.us_per_child:.1f}",
            f"{statistics.median(x.spawn_s for x in r.runs):.3f}",
        ]
        for r in rows
    ]
    cells += [[name, "skipped", "-", "-", "-"] for name in skipped]
    return render_table(columns, cells)


def format_overview(counts: Sequence[int], rows: Sequence[Row]) -> str:
    columns = ["µs/child (median stop / N)", *(f"N = {n:,}" for n in counts)]
    by_name: dict[str, dict[int, Row]] = {}
    for r in rows:
        by_name.setdefault(r.contender, {})[r.count] = r
    cells = [
        [name, *(f"{per_count[n].us_per_child:.1f}" for n in counts)]
        for name, per_count in by_name.items()
    ]
    return render_table(columns, cells)


def write_json(path: Path, env: dict[str, Any], rows: Sequence[Row]) -> None:
    document = {
        "environment": env,
        "results": [
            {
                "contender": r.contender,
                "count": r.count,
                "stop_s": r.stop_s,
                "us_per_child": r.us_per_child,
                "runs": [{"spawn_s": x.spawn_s, "stop_s": x.stop_s} for x in r.runs],
            }
            for r in rows
        ],
    }
    write_document(path, document)


def choice_list(choices: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated subset of *choices*."""

    def parse(text: str) -> list[str]:
        picked = [item.strip() for item in text.split(",") if item.strip()]
        wrong = [item for item in picked if item not in choices]
        if wrong or not picked:
            raise argparse.ArgumentTypeError(f"choose among {','.join(choices)}, not {text!r}")
        return picked

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = make_parser(__doc__)
    default_counts = ",".join(map(str, DEFAULT_COUNTS))
    parser.add_argument(
        "--counts",
        type=counts_list,
        default=None,
        metavar="N,N,...",
        help=f"children per scope (default {default_counts})",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        default=DEFAULT_REPEATS,
        help=f"runs per count and contender (default {DEFAULT_REPEATS})",
    )
    for option, choices, default in (
        ("--modes", MODES, MODES),
        ("--apis", APIS, DEFAULT_APIS),
        ("--kinds", tuple(k.name for k in KINDS), tuple(k.name for k in KINDS)),
    ):
        parser.add_argument(
            option,
            type=choice_list(choices),
            default=list(default),
            metavar="X,Y,...",
            help=f"a subset of {','.join(choices)} (default {','.join(default)})",
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
    skipped_reason = cgroup_problem()
    namespace_reason = namespace_problem()
    env = async_environment(
        rlimit_nofile_before=list(before),
        cgroup=cgroup_location(),
        init=init_name(),
        cgroup_skipped=skipped_reason,
        namespace_skipped=namespace_reason,
        counts=args.counts,
        repeats=args.repeats,
        grace=GRACE,
        seed=args.seed,
    )
    print(format_header(env), flush=True)
    modes = args.modes
    kinds = [k for k in KINDS if k.name in args.kinds]
    skipped: list[str] = []
    if skipped_reason is not None and "cgroup" in modes:
        print(f'kill="cgroup" skipped: cgroups cannot be created here: {skipped_reason}')
        modes = [m for m in modes if m != "cgroup"]
        skipped = [
            f"{api} / cgroup / {kind.name} (cgroup not writable)"
            for api in args.apis
            for kind in kinds
        ]
    if namespace_reason is not None and "namespace" in modes:
        print(f'kill="namespace" skipped: {namespace_reason}')
        modes = [m for m in modes if m != "namespace"]
        skipped += [
            f"{api} / namespace / {kind.name} (no PID namespace here)"
            for api in args.apis
            for kind in kinds
        ]
    contenders = default_contenders(modes, args.apis, kinds)
    rows = measure(contenders, args.counts, args.repeats, random.Random(args.seed))
    for count in args.counts:
        print()
        print(format_table(count, [r for r in rows if r.count == count], skipped))
    print()
    print(format_overview(args.counts, rows))
    if args.json is not None:
        write_json(args.json, env, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

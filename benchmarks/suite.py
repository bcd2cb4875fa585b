"""Run every benchmark script, print one table, keep the results (``make bench``).

The hazard: a suite that stops at the first failing script loses the other results,
and one that carries on quietly publishes figures from a run that was not whole. So
each script runs as its own subprocess (``--json PATH``, its output shown as it
comes), one after another; a script that fails is reported at the end and makes the
suite exit non-zero, but every other script still runs and everything is written:
``suite.json`` (the machine, each script's argv, exit status, wall time and whole JSON
with every sample) and the PNG plots, in ``benchmarks/results/<date>/`` (``--quick`` or
``--only``: a scratch folder under /tmp, not kept). A full run with no failure also
names its folder in ``benchmarks/results/LATEST``, which ``tools/bench_figures.py``
reads.

The per-script options below keep ``make bench`` under 5 minutes and ``make
bench-quick`` under 1 minute on 2 CPUs; the total time is printed at the end.

    .venv/bin/python benchmarks/suite.py [--quick] [--only bench_spawn,...] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _summary import ShapeError, format_number, format_ratio, measures

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
LATEST = RESULTS / "LATEST"


@dataclass(frozen=True)
class Script:
    """A benchmark script and the options the suite passes to it."""

    name: str
    full: tuple[str, ...] = ()
    quick: tuple[str, ...] = ("--quick",)
    needs_root: bool = False
    optional: bool = False
    """Run only when the file exists (a script another branch adds)."""


# The defaults of the scripts add up to ~6.5 minutes; these trims fit 5 minutes.
SCRIPTS = (
    Script("bench_spawn", ("--rounds", "20", "--batch", "40")),
    Script("bench_subprocess", ("--rounds", "10", "--batch", "15")),
    Script("bench_async", ("--rounds", "20", "--batch", "30")),
    Script("bench_reap", ("--rounds", "30")),
    Script("bench_heap", ("--passes", "2")),
    Script("bench_scale", ("--repeats", "1")),
    # --quick's 1 and 100 children x 18 contenders take 15-35 s alone; 1 and 20 smoke it.
    Script("bench_supervisor", ("--repeats", "2"), ("--quick", "--counts", "1,20")),
    Script("bench_pdeathsig", ("--rounds", "20")),
    Script("bench_namespace", ("--rounds", "15", "--batch", "30"), needs_root=True),
    Script("bench_zombies", optional=True),
)


def machine() -> dict[str, Any]:
    """The machine and software the run describes (for suite.json and the titles)."""
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        glibc = None
    return {
        "hostname": platform.node(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "mem_total_mib": _mem_total_mib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "glibc": glibc,
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "tether": _tether_version(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--", "src", "benchmarks")),
    }


def _cpu_model() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else None


def _mem_total_mib() -> int | None:
    try:
        found = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
    except OSError:
        return None
    return int(found.group(1)) // 1024 if found else None


def _tether_version() -> str:
    import tether

    return tether.__version__


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _accepts_json(path: Path) -> bool:
    """Whether the script has a ``--json`` option (from its ``--help``)."""
    done = subprocess.run(
        [sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=60
    )
    return done.returncode == 0 and "--json" in done.stdout


_SUBPROCESS_LINE = re.compile(
    r"^\s+(?P<name>\S+)\s+median\s+(?P<median>[\d.]+) us\s+"
    r"p10\.\.p90\s+(?P<p10>[\d.]+)\.\.\s*(?P<p90>[\d.]+) us"
)


def parse_subprocess_output(text: str) -> dict[str, dict[str, dict[str, float]]]:
    """``bench_subprocess.py``'s printed tables: {title: {module: {median_us, ...}}}."""
    tables: dict[str, dict[str, dict[str, float]]] = {}
    title = None
    for line in text.splitlines():
        row = _SUBPROCESS_LINE.match(line)
        if row:
            if title is None:
                raise ShapeError(f"a row before any title: {line!r}")
            tables.setdefault(title, {})[row["name"]] = {
                "median_us": float(row["median"]),
                "p10_us": float(row["p10"]),
                "p90_us": float(row["p90"]),
            }
        elif line and not line.startswith(" ") and not line.startswith("Python "):
            title = line.strip()
    return tables


def run_script(script: Script, quick: bool, scratch: Path) -> dict[str, Any]:
    """Run one script; its entry in suite.json (``status`` ok, failed or skipped)."""
    path = HERE / f"{script.name}.py"
    if not path.exists():
        if script.optional:
            return {"status": "skipped", "reason": "not in this checkout"}
        return {"status": "failed", "reason": f"{path} is missing"}
    if script.needs_root and os.geteuid() != 0:
        return {"status": "skipped", "reason": "needs root"}
    argv = [str(path), *(script.quick if quick else script.full)]
    json_path = scratch / f"{script.name}.json"
    if _accepts_json(path):
        argv += ["--json", str(json_path)]
    print(f"\n=== {script.name}: {' '.join(argv[1:]) or '(defaults)'}", flush=True)
    start = time.monotonic()
    output: list[str] = []
    with subprocess.Popen(
        [sys.executable, *argv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            sys.stdout.write(line)
            output.append(line)
        returncode = child.wait()
    entry: dict[str, Any] = {
        "argv": [
            f"benchmarks/{path.name}",
            *(a if a != str(json_path) else json_path.name for a in argv[1:]),
        ],
        "returncode": returncode,
        "wall_s": round(time.monotonic() - start, 3),
    }
    text = "".join(output)
    if script.needs_root and returncode == 2 and "cannot run here" in text:
        return {**entry, "status": "skipped", "reason": text.strip().splitlines()[-1]}
    if returncode != 0:
        return {**entry, "status": "failed", "reason": "".join(output[-15:])}
    document: dict[str, Any] | None = None
    try:
        if "--json" in argv:
            document = json.loads(json_path.read_text())
        if script.name == "bench_subprocess":
            document = {**(document or {}), "parsed": parse_subprocess_output(text)}
        if document is None:
            return {**entry, "status": "failed", "reason": "no --json option and no reader"}
        measures(script.name, document)
    except (OSError, ValueError) as exc:  # ShapeError is a ValueError, and so is bad JSON
        return {**entry, "status": "failed", "json": document, "reason": f"unreadable: {exc}"}
    return {**entry, "status": "ok", "json": document}


def format_suite_table(scripts: dict[str, dict[str, Any]]) -> str:
    """One table for the whole run: per measure, its contenders and their figures."""
    columns = ["measure / contender", "median", "p10", "p90", "x stdlib", "x floor", "note"]
    rows: list[list[str]] = []
    for name, entry in scripts.items():
        if entry["status"] != "ok":
            rows.append([f"{name}: {entry['status'].upper()}", "", "", "", "", "", ""])
            continue
        for measure in measures(name, entry["json"]):
            refs = ", ".join(
                f"{label} = {value}"
                for label, value in (("stdlib", measure.stdlib), ("floor", measure.floor))
                if value
            )
            rows.append([f"{measure.title} ({measure.unit})", "", "", "", "", "", refs])
            for r in measure.rows:
                rows.append(
                    [
                        f"  {r.contender}",
                        format_number(r.median),
                        format_number(r.p10),
                        format_number(r.p90),
                        format_ratio(r.x_stdlib),
                        format_ratio(r.x_floor),
                        r.note,
                    ]
                )
            rows += [[f"  target: {v}", "", "", "", "", "", ""] for v in measure.verdicts]
    # Titles and targets (rows with no figures) may run past the first column.
    sized = [columns, *(row for row in rows if row[1])]
    widths = [max(len(row[i]) for row in sized) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        if not cells[1]:
            return (cells[0] + "  " + cells[-1]).rstrip()
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:-1], widths[1:-1], strict=True))
        return "  ".join([first, *rest, cells[-1]]).rstrip()

    return "\n".join([line(columns), "-" * sum(widths[:-1]) + "-" * 12, *map(line, rows)])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every script's --quick, not kept")
    parser.add_argument("--only", default=None, help="comma-separated script names to run")
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = parser.parse_args(argv)
    known = {s.name for s in SCRIPTS}
    args.only = None if args.only is None else [n.strip() for n in args.only.split(",")]
    if args.only and set(args.only) - known:
        parser.error(f"unknown scripts {sorted(set(args.only) - known)}; known: {sorted(known)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    kept = not args.quick and args.only is None and args.out is None
    if args.out is not None:
        out = args.out
    elif kept:
        out = RESULTS / today
    else:
        label = "quick" if args.quick else "partial"
        out = Path(tempfile.mkdtemp(prefix=f"tether-bench-{label}-{today}-"))
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    document: dict[str, Any] = {
        "suite": {
            "date": today,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "quick": args.quick,
        },
        "machine": machine(),
        "scripts": {},
    }
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as scratch:
        for script in SCRIPTS:
            if args.only is None or script.name in args.only:
                entry = run_script(script, args.quick, Path(scratch))
                document["scripts"][script.name] = entry
    total = time.monotonic() - started
    document["suite"]["total_s"] = round(total, 1)
    document["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    (out / "suite.json").write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    print("\n" + format_suite_table(document["scripts"]))
    if not args.no_plots:
        from _plots import write_plots

        for png in write_plots(document, out):
            print(f"plot: {png}")
    failed = [n for n, e in document["scripts"].items() if e["status"] == "failed"]
    print(f"\nwrote {out / 'suite.json'}")
    if kept and not failed:
        LATEST.write_text(today + "\n")
        print(f"{LATEST} -> {today}; now run tools/bench_figures.py")
    elif kept:
        print(f"{LATEST} left as it was: the run is not whole")
    for name, entry in document["scripts"].items():
        wall = f"{entry['wall_s']:6.1f} s" if "wall_s" in entry else "     - "
        print(f"  {wall}  {name}: {entry['status']}  {entry.get('reason', '')}".rstrip())
    print(f"total {total:.1f} s")
    if failed:
        print(f"\nFAILED: {', '.join(failed)}", file=sys.stderr)
        for name in failed:
            print(f"--- {name}:\n{document['scripts'][name]['reason']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

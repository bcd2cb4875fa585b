"""The suite's PNG plots, drawn from a suite.json document (matplotlib, Agg backend).

The hazard: a plot read without its context misleads (a median without its spread, a
time without its unit, a run from a loaded laptop taken for a quiet server). So every
plot shows the spread (p10..p90 whiskers, or min..max of the runs), names its unit on
the axis, and carries the run's date and machine in its title; spawn-type bars draw
the floor (the least any contender can cost) as a line across. Everything is read
through ``_summary.measures``, the same figures the suite's table and the README show.

matplotlib comes with the ``bench`` extra (``make bench`` installs it).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from _summary import Measure, suite_measures

DPI = 110
STDLIB = ("subprocess", "Popen", "asyncio", "os.", "C ")
"""Contender names of the standard library (and the C floor), drawn grey."""


def machine_line(suite: Mapping[str, Any]) -> str:
    """``2026-11-29, 2 CPUs, kernel 6.1, Python 3.11.7, glibc 2.36, load 1.2``."""
    m = suite["machine"]
    load = m.get("load_average") or [0.0]
    parts = [
        suite["suite"]["date"],
        f"{m.get('usable_cpus') or m.get('cpu_count')} CPUs",
        f"kernel {m.get('kernel')}",
        f"Python {m.get('python')}",
    ]
    if m.get("glibc"):
        parts.append(str(m["glibc"]))
    end = m.get("load_average_end")
    parts.append(f"load {load[0]:.1f}" + (f" at start, {end[0]:.1f} at end" if end else ""))
    return ", ".join(parts)


def _bars(ax: Axes, measure: Measure, all_tether: bool = False) -> None:
    """Horizontal bars (median) with p10..p90 whiskers, the floor as a dashed line.

    *all_tether*: every row is a way of using tether (modes or cases, not libraries).
    """
    rows = list(reversed(measure.rows))
    names = [r.contender for r in rows]
    medians = [r.median for r in rows]
    low = [r.median - (r.p10 if r.p10 is not None else r.median) for r in rows]
    high = [(r.p90 if r.p90 is not None else r.median) - r.median for r in rows]
    colors = [
        "#1f77b4"
        if all_tether or r.contender.startswith("tether")
        else "#888888"
        if r.contender in (measure.floor, measure.stdlib) or r.contender.startswith(STDLIB)
        else "#ff7f0e"
        for r in rows
    ]
    ax.barh(names, medians, xerr=[low, high], color=colors, capsize=3, ecolor="#333333")
    right = max(r.median + h for r, h in zip(rows, high, strict=True))
    for y, (r, h) in enumerate(zip(rows, high, strict=True)):
        ax.text(r.median + h + right * 0.01, y, f"{r.median:,.0f}", va="center", fontsize=8)
    ax.set_xlim(0, right * 1.12)
    kinds = {"#1f77b4": "tether", "#ff7f0e": "other libraries", "#888888": "stdlib / floor"}
    handles: list[Any] = [Patch(color=c, label=label) for c, label in kinds.items() if c in colors]
    if measure.floor:
        floor = measure.row(measure.floor).median
        handles.append(ax.axvline(floor, color="#2ca02c", linestyle="--", label="floor"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    ax.set_xlabel(f"median, {measure.unit} (whiskers: p10..p90 across rounds)")
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="x", alpha=0.3)


def _lines(
    ax: Axes, measures: Sequence[Measure], xs: Sequence[int], xlabel: str, unit: str
) -> None:
    """One line per contender through the measures (one measure per x), with spreads."""
    names: list[str] = []
    for measure in measures:
        names += [r.contender for r in measure.rows if r.contender not in names]
    for name in names:
        points = [
            (x, r)
            for x, measure in zip(xs, measures, strict=True)
            for r in measure.rows
            if r.contender == name
        ]
        px = [x for x, _ in points]
        py = [r.median for _, r in points]
        lo = [r.median - (r.p10 if r.p10 is not None else r.median) for _, r in points]
        hi = [(r.p90 if r.p90 is not None else r.median) - r.median for _, r in points]
        ax.errorbar(px, py, yerr=[lo, hi], marker="o", capsize=3, label=name)
    _log_axes(ax, xs)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(unit)


def _log_axes(ax: Axes, xs: Sequence[int]) -> None:
    """Log-log, with the measured x values and plain numbers (1, 2, 5 per decade) on y."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"{x:,}" for x in xs])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.6g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(alpha=0.3, which="both")


def _save(fig: Any, path: Path, title: str, suite: Mapping[str, Any]) -> Path:
    fig.suptitle(f"{title}\n{machine_line(suite)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _bar_figure(
    measure_list: Sequence[Measure],
    path: Path,
    title: str,
    suite: Mapping[str, Any],
    all_tether: bool = False,
) -> Path:
    height = sum(1.2 + 0.32 * len(m.rows) for m in measure_list)
    fig, axes = plt.subplots(len(measure_list), 1, figsize=(10, max(3.0, height)), squeeze=False)
    for ax, measure in zip(axes[:, 0], measure_list, strict=True):
        _bars(ax, measure, all_tether)
        ax.set_title(measure.title, fontsize=9)
    return _save(fig, path, title, suite)


def _supervisor(chosen: Sequence[Measure], path: Path, suite: Mapping[str, Any]) -> Path:
    """One panel per kill mode; a line per API (colour) and child (solid: one process)."""
    xs = [int(m.key.rsplit("-", 1)[1]) for m in chosen]
    modes: list[str] = []
    for measure in chosen:
        for r in measure.rows:
            mode = r.contender.split(" / ")[1] if r.contender.count(" / ") == 2 else "other"
            modes += [mode] if mode not in modes else []
    fig, axes = plt.subplots(1, len(modes), figsize=(4.2 * len(modes), 4.8), squeeze=False)
    colors = {"sync": "#1f77b4", "asyncio": "#ff7f0e", "trio": "#2ca02c"}
    for ax, mode in zip(axes[0], modes, strict=True):
        names = {
            r.contender
            for m in chosen
            for r in m.rows
            if (r.contender.split(" / ")[1] if r.contender.count(" / ") == 2 else "other") == mode
        }
        for name in sorted(names):
            points = [
                (x, m.row(name))
                for x, m in zip(xs, chosen, strict=True)
                if name in {r.contender for r in m.rows}
            ]
            api, _, child = [*name.split(" / "), "", ""][:3] if mode != "other" else (name, "", "")
            ax.errorbar(
                [x for x, _ in points],
                [r.median for _, r in points],
                yerr=[
                    [r.median - (r.p10 or r.median) for _, r in points],
                    [(r.p90 or r.median) - r.median for _, r in points],
                ],
                marker="o",
                capsize=3,
                color=colors.get(api),
                linestyle="--" if child.startswith("sh") else "-",
                label=f"{api} / {child}" if child else name,
            )
        _log_axes(ax, xs)
        ax.set_xlabel("children in the scope (log)")
        ax.set_title(f"kill={mode}", fontsize=9)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("stop of the scope, ms (log; bars: min..max)")
    title = "scope shutdown per kill mode (dashed: a shell with a grandchild)"
    return _save(fig, path, title, suite)


def write_plots(suite: Mapping[str, Any], out: Path) -> list[Path]:
    """Draw every plot the suite's results allow into *out*; the PNGs written."""
    found = suite_measures(suite)
    written = []
    bar_plots = {
        "bench_spawn": ("spawn", "spawn+reap per contender (sync)"),
        "bench_reap": ("reap", "reap latency: SIGKILL -> wait returns"),
        "bench_async": ("async", "async spawn+reap per contender"),
        "bench_subprocess": ("subprocess", "tether.subprocess against subprocess"),
        "bench_pdeathsig": ("pdeathsig", "pdeathsig from a worker thread"),
        "bench_namespace": ("namespace", "kill='namespace' against kill='group'"),
        "bench_zombies": ("zombies", "zombie lifespan under load"),
    }
    for script, (name, title) in bar_plots.items():
        if script in found:
            only_tether = script in ("bench_pdeathsig", "bench_namespace")
            path = out / f"{name}.png"
            written.append(_bar_figure(found[script], path, title, suite, only_tether))
    if "bench_heap" in found:
        sizes = found["bench_heap"]
        xs = [int(m.key.split("-")[1]) for m in sizes]
        fig, ax = plt.subplots(figsize=(9, 5.5))
        _lines(ax, sizes, xs, "parent's resident heap, MiB (log)", "spawn+reap, µs (log)")
        ax.legend(fontsize=8)
        written.append(_save(fig, out / "heap.png", "spawn+reap against the heap", suite))
    if "bench_scale" in found:
        fig, axes = plt.subplots(1, 2, figsize=(12, 5))
        for ax, what in zip(axes, ("spawn", "kill+reap"), strict=True):
            chosen = [m for m in found["bench_scale"] if m.key.startswith(f"scale-{what}-")]
            xs = [int(m.key.rsplit("-", 1)[1]) for m in chosen]
            _lines(ax, chosen, xs, "concurrent children (log)", f"{what} all, ms (log)")
            ax.set_title(what, fontsize=9)
        axes[0].legend(fontsize=7)
        written.append(_save(fig, out / "scale.png", "N children at once", suite))
    if "bench_supervisor" in found:
        written.append(_supervisor(found["bench_supervisor"], out / "supervisor.png", suite))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Redraw the plots of a kept run from its suite.json: ``_plots.py RESULTS_DIR``."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("folder", type=Path, help="a run's folder, with its suite.json")
    args = parser.parse_args(argv)
    suite = json.loads((args.folder / "suite.json").read_text())
    for png in write_plots(suite, args.folder):
        print(f"plot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

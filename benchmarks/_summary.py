"""What each benchmark script's ``--json`` says, as rows of one table.

The hazard: every script writes its own JSON shape (the scripts predate the suite,
and another script may add keys at any time), so a reader that guesses a key prints a
wrong figure without noticing. This module is the one place that knows those shapes:
:func:`measures` turns one script's document into :class:`Measure` tables (median,
p10/p90, ratio to the standard library and to the floor) and raises
:class:`ShapeError` on a document it cannot read, instead of skipping it. The suite's
table (``suite.py``), the plots (``_plots.py``) and the README/docs figures
(``tools/bench_figures.py``) all read the results through it.

It imports nothing from tether or the scripts, so it can read a suite.json anywhere.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Doc = Mapping[str, Any]


class ShapeError(ValueError):
    """A script's JSON lacks what this module reads from it."""


@dataclass(frozen=True)
class Row:
    """One contender's figures in one measure (times in the measure's unit)."""

    contender: str
    median: float
    p10: float | None = None
    p90: float | None = None
    x_stdlib: float | None = None
    """median / the standard library's median in the same measure."""
    x_floor: float | None = None
    """median / the floor's median (the C floor when the script has one)."""
    note: str = ""
    threads: int | None = None
    """The most OS threads the process had during the contender's runs (bench_scale)."""


@dataclass(frozen=True)
class Measure:
    """One table: what was timed, its unit, the reference names and the rows."""

    key: str
    title: str
    unit: str
    rows: list[Row]
    stdlib: str | None = None
    floor: str | None = None
    verdicts: list[str] = field(default_factory=list)

    def row(self, contender: str) -> Row:
        """The row of *contender* (``ShapeError`` when absent)."""
        for row in self.rows:
            if row.contender == contender:
                return row
        raise ShapeError(f"{self.key}: no contender {contender!r}")


def _get(doc: Doc, key: str) -> Any:
    try:
        return doc[key]
    except (KeyError, TypeError):
        raise ShapeError(f"missing key {key!r}") from None


def _ratio(value: float, base: float | None) -> float | None:
    return None if base is None or base == 0 else value / base


def _stats(values: Sequence[float]) -> tuple[float, float, float]:
    if not values:
        raise ShapeError("no samples")
    if len(values) < 2:
        return values[0], values[0], values[0]
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    return statistics.median(values), deciles[0], deciles[-1]


def c_floor_name(names: Sequence[str]) -> str | None:
    """The C floor's contender among *names* (named ``C ...`` or ``... (C floor)``)."""
    for name in names:
        if name.startswith("C ") or "C floor" in name:
            return name
    return None


def _timed_rows(
    results: Sequence[Doc], stdlib: str | None, floor: str | None, name_key: str = "name"
) -> list[Row]:
    """Rows from ``median_us``/``p10_us``/``p90_us`` results, ratios computed here."""
    medians = {_get(r, name_key): float(_get(r, "median_us")) for r in results}
    base = medians.get(stdlib) if stdlib else None
    low = medians.get(floor) if floor else None
    return [
        Row(
            contender=_get(r, name_key),
            median=float(r["median_us"]),
            p10=float(_get(r, "p10_us")),
            p90=float(_get(r, "p90_us")),
            x_stdlib=_ratio(float(r["median_us"]), base),
            x_floor=_ratio(float(r["median_us"]), low),
        )
        for r in results
    ]


def _floor_of(doc: Doc, names: Sequence[str]) -> str | None:
    c_floor = c_floor_name(names)
    if c_floor is not None:
        return c_floor
    floor = doc.get("floor")
    return floor if floor in names else None


def _verdicts(doc: Doc) -> list[str]:
    return [
        f"{t['contender']} vs {t['reference']}: x{t['ratio_of_medians']:.2f}"
        + ("" if t.get("limit") is None else f" (limit {t['limit']:.2f})")
        + f": {t['verdict']}"
        + ("" if t.get("bare_ratio") is None else f"; bare x{t['bare_ratio']:.2f}")
        for t in doc.get("targets", [])
    ]


def spawn(doc: Doc) -> list[Measure]:
    results = _get(doc, "results")
    names = [_get(r, "name") for r in results]
    stdlib, floor = doc.get("baseline", "subprocess.Popen"), _floor_of(doc, names)
    rows = _timed_rows(results, stdlib, floor)
    return [Measure("spawn", "spawn+reap of /bin/true (sync)", "µs", rows, stdlib, floor)]


def async_(doc: Doc) -> list[Measure]:
    results = _get(doc, "results")
    names = [_get(r, "name") for r in results]
    stdlib = next((n for n in names if n.startswith("asyncio.create_subprocess_exec")), None)
    floor = _floor_of(doc, names)
    rows = _timed_rows(results, stdlib, floor)
    title = "spawn+reap of /bin/true (async)"
    return [Measure("async", title, "µs", rows, stdlib, floor, _verdicts(doc))]


def reap(doc: Doc) -> list[Measure]:
    results = _get(doc, "results")
    names = [_get(r, "name") for r in results]
    stdlib, floor = _get(doc, "baseline"), _floor_of(doc, names)
    if floor == stdlib:
        floor = None
    rows = _timed_rows(results, stdlib, floor)
    title = "reap latency: SIGKILL -> wait returns"
    return [Measure("reap", title, "µs", rows, stdlib, floor, _verdicts(doc))]


def heap(doc: Doc) -> list[Measure]:
    out = []
    for size in _get(doc, "sizes"):
        results = _get(size, "results")
        names = [_get(r, "name") for r in results]
        floor = _floor_of(doc, names)
        rows = _timed_rows(results, "subprocess.Popen", floor)
        mib = _get(size, "size_mib")
        title = f"spawn+reap with a {mib:,} MiB heap in the parent"
        out.append(Measure(f"heap-{mib}", title, "µs", rows, "subprocess.Popen", floor))
    return out


def _runs_rows(results: Sequence[Doc], count: int, key: str, scale: float) -> list[Row]:
    rows = []
    for r in results:
        if _get(r, "count") != count:
            continue
        runs = _get(r, "runs")
        values = [float(_get(run, key)) * scale for run in runs]
        peaks = [
            int(point["tasks"])
            for run in runs
            for point in run.get("threads", {}).values()
            if "tasks" in point
        ]
        threads = max(peaks) if peaks else None
        rows.append(
            Row(
                contender=_get(r, "contender"),
                median=float(_get(r, key)) * scale,
                p10=min(values),
                p90=max(values),
                note=f"{len(values)} runs: min..max"
                + ("" if threads is None else f"; OS threads up to {threads:,}"),
                threads=threads,
            )
        )
    return rows


def _counts(results: Sequence[Doc]) -> list[int]:
    return sorted({int(_get(r, "count")) for r in results})


def scale(doc: Doc) -> list[Measure]:
    results = _get(doc, "results")
    out = []
    for count in _counts(results):
        for key, what in (("spawn_s", "spawn"), ("reap_s", "kill+reap")):
            rows = _runs_rows(results, count, key, 1e3)
            stdlib = next((r.contender for r in rows if r.contender.startswith("asyncio.")), None)
            base = next((r.median for r in rows if r.contender == stdlib), None)
            rows = [Row(**{**vars(r), "x_stdlib": _ratio(r.median, base)}) for r in rows]
            title = f"{count:,} concurrent children: {what}"
            out.append(Measure(f"scale-{what}-{count}", title, "ms", rows, stdlib))
    return out


def supervisor(doc: Doc) -> list[Measure]:
    results = _get(doc, "results")
    return [
        Measure(
            f"supervisor-{count}",
            f"scope shutdown, {count:,} children",
            "ms",
            _runs_rows(results, count, "stop_s", 1e3),
        )
        for count in _counts(results)
    ]


def pdeathsig(doc: Doc) -> list[Measure]:
    rows = [
        Row(
            contender=_get(r, "name"),
            median=float(_get(_get(r, "total"), "median")),
            p10=float(r["total"]["p10"]),
            p90=float(r["total"]["p90"]),
        )
        for r in _get(doc, "results")
    ]
    return [Measure("pdeathsig", "spawn+reap with pdeathsig (thread hop)", "µs", rows)]


def namespace(doc: Doc) -> list[Measure]:
    samples = _get(doc, "samples")
    rows = []
    for mode, values in samples.items():
        median, p10, p90 = _stats([float(v) for v in values])
        rows.append(Row(mode, median, p10, p90))
    if "group" in samples and "namespace" in samples:
        pairs = zip(samples["namespace"], samples["group"], strict=True)
        ratio = _stats([a / b for a, b in pairs])
        rows = [
            Row(**{**vars(r), "note": f"paired x{ratio[0]:.2f} of group"})
            if r.contender == "namespace"
            else r
            for r in rows
        ]
    title = "supervised spawn+reap per kill mode"
    return [Measure("namespace", title, "µs", rows)]


def subprocess_(doc: Doc) -> list[Measure]:
    """From the suite's reading of the script's printed table (``parsed``)."""
    out = []
    for title, rows in _get(doc, "parsed").items():
        base = rows.get("subprocess", {}).get("median_us")
        out.append(
            Measure(
                "subprocess-" + ("wait" if title.startswith("wait") else "run"),
                f"drop-in: {title}",
                "µs",
                [
                    Row(
                        name,
                        float(v["median_us"]),
                        float(v["p10_us"]),
                        float(v["p90_us"]),
                        x_stdlib=_ratio(float(v["median_us"]), base),
                    )
                    for name, v in rows.items()
                ],
                "subprocess",
            )
        )
    if not out:
        raise ShapeError("no table parsed from bench_subprocess.py's output")
    return out


def generic(name: str, doc: Doc) -> list[Measure]:
    """Any ``results`` list of ``median_us``/``p10_us``/``p90_us`` entries (new scripts)."""
    results = _get(doc, "results")
    if not isinstance(results, list) or not results:
        raise ShapeError("no results")
    key = "name" if "name" in results[0] else "contender"
    names = [_get(r, key) for r in results]
    floor = _floor_of(doc, names)
    stdlib = doc.get("baseline") if doc.get("baseline") in names else None
    rows = _timed_rows(results, stdlib, floor, key)
    return [Measure(name, name, "µs", rows, stdlib, floor, _verdicts(doc))]


READERS: dict[str, Callable[[Doc], list[Measure]]] = {
    "bench_spawn": spawn,
    "bench_subprocess": subprocess_,
    "bench_async": async_,
    "bench_reap": reap,
    "bench_heap": heap,
    "bench_scale": scale,
    "bench_supervisor": supervisor,
    "bench_pdeathsig": pdeathsig,
    "bench_namespace": namespace,
}


def measures(script: str, doc: Doc) -> list[Measure]:
    """The measures in *script*'s document (``ShapeError`` names the script)."""
    reader = READERS.get(script)
    try:
        return reader(doc) if reader else generic(script, doc)
    except ShapeError as exc:
        raise ShapeError(f"{script}: {exc}") from None


def suite_measures(suite: Doc) -> dict[str, list[Measure]]:
    """Every script's measures in a suite.json document, by script (ok scripts only)."""
    out = {}
    for script, entry in _get(suite, "scripts").items():
        if entry.get("status") == "ok" and entry.get("json") is not None:
            out[script] = measures(script, entry["json"])
    return out


def format_number(value: float | None, digits: int = 1) -> str:
    """``1,234.5`` (or ``-`` for None)."""
    return "-" if value is None else f"{value:,.{digits}f}"


def format_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"

"""The benchmark figures in README.md and docs/benchmarks.md come from a kept run.

``tools/bench_figures.py --check`` on the repository must pass (the README's table is
what the script writes from ``benchmarks/results/LATEST``), and the rendering is tested
on a small synthetic suite.json (no benchmark runs here).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


figures = _load("bench_figures", ROOT / "tools" / "bench_figures.py")
suite_runner = _load("bench_suite", ROOT / "benchmarks" / "suite.py")
summary = sys.modules["_summary"]


def test_repository_figures_match_the_latest_run() -> None:
    assert figures.main(["--check"]) == 0


def test_latest_names_a_kept_run_with_its_plots() -> None:
    name, suite = figures.load_latest(ROOT)
    assert suite["suite"]["date"] == name
    assert suite["suite"]["quick"] is False
    assert (ROOT / "benchmarks" / "results" / name / "spawn.png").exists()


def _timed(name: str, median: float, p10: float, p90: float) -> dict[str, Any]:
    return {"name": name, "median_us": median, "p10_us": p10, "p90_us": p90}


def synthetic_suite() -> dict[str, Any]:
    spawn = {
        "floor": "os.posix_spawn (raw)",
        "baseline": "subprocess.Popen",
        "results": [
            _timed("tether native", 1100.0, 1000.0, 1300.0),
            _timed("subprocess.Popen", 1000.0, 900.0, 1200.0),
            _timed("os.posix_spawn (raw)", 800.0, 750.0, 900.0),
        ],
    }
    reap = {
        "baseline": "Popen.wait()",
        "results": [
            _timed("tether wait()", 200.0, 150.0, 300.0),
            _timed("tether wait(timeout=10)", 210.0, 160.0, 320.0),
            _timed("Popen.wait()", 250.0, 200.0, 400.0),
            _timed("Popen.wait(timeout=10)", 1400.0, 1200.0, 2000.0),
        ],
        "targets": [
            {
                "contender": "tether wait(timeout=10)",
                "reference": "Popen.wait(timeout=10)",
                "limit": 0.2,
                "ratio_of_medians": 0.15,
                "verdict": "met",
            }
        ],
    }
    dropin = {
        "parsed": {
            "wait(timeout) after exit": {
                "subprocess": {"median_us": 1200.0, "p10_us": 1100.0, "p90_us": 1600.0},
                "tether.subprocess": {"median_us": 600.0, "p10_us": 550.0, "p90_us": 900.0},
            }
        }
    }
    scale = {
        "results": [
            {
                "contender": contender,
                "count": count,
                "spawn_s": spawn_s * count,
                "reap_s": 0.0001 * count,
                "runs": [
                    {
                        "spawn_s": spawn_s * count,
                        "reap_s": 0.0001 * count,
                        "threads": {
                            "start": {"tasks": 1},
                            "spawned": {"tasks": 1 + threads * count},
                        },
                    }
                ],
            }
            for count in (100, 1000)
            for contender, spawn_s, threads in (
                ("tether sync", 0.001, 0),
                ("asyncio.create_subprocess_exec [asyncio]", 0.002, 1),
            )
        ]
    }
    heap = {
        "floor": "os.posix_spawn (raw)",
        "sizes": [
            {
                "size_mib": size,
                "results": [
                    _timed("tether native", 1000.0, 900.0, 1100.0),
                    _timed("tether fork", 3000.0 * size / 10, 2900.0, 3500.0 * size / 10),
                    _timed("subprocess.Popen", 1000.0, 900.0, 1100.0),
                    _timed("os.posix_spawn (raw)", 900.0, 800.0, 1000.0),
                ],
            }
            for size in (10, 1024)
        ],
    }
    ok = {"status": "ok", "returncode": 0, "wall_s": 1.0}
    return {
        "suite": {"date": "2026-01-02", "quick": False, "total_s": 100.0},
        "machine": {
            "cpu_count": 2,
            "usable_cpus": 2,
            "kernel": "6.1.0",
            "python": "3.11.7",
            "implementation": "CPython",
            "glibc": "glibc 2.36",
            "load_average": [0.5, 0.4, 0.3],
            "tether": "0.1.0",
            "git_commit": "0123456789abcdef",
        },
        "scripts": {
            "bench_spawn": {**ok, "json": spawn},
            "bench_reap": {**ok, "json": reap},
            "bench_subprocess": {**ok, "json": dropin},
            "bench_scale": {**ok, "json": scale},
            "bench_heap": {**ok, "json": heap},
            "bench_namespace": {"status": "skipped", "reason": "needs root"},
            "bench_zombies": {"status": "failed", "returncode": 1, "reason": "boom"},
        },
    }


def make_repo(root: Path, suite: dict[str, Any], *, docs: bool = True) -> None:
    results = root / "benchmarks" / "results"
    (results / "2026-01-02").mkdir(parents=True)
    (results / "2026-01-02" / "suite.json").write_text(json.dumps(suite))
    (results / "2026-01-02" / "spawn.png").write_bytes(b"png")
    (results / "LATEST").write_text("2026-01-02\n")
    block = f"{figures.START}\nold figures\n{figures.END}\n"
    (root / "README.md").write_text(f"# tether\n\nintro\n\n{block}\nthe rest\n")
    if docs:
        (root / "docs").mkdir()
        (root / "docs" / "benchmarks.md").write_text(f"# Benchmarks\n\nmethod\n\n{block}")


def test_writes_the_readme_headline_table(tmp_path: Path) -> None:
    make_repo(tmp_path, synthetic_suite(), docs=False)
    assert figures.main(["--check", "--root", str(tmp_path)]) == 1
    assert figures.main(["--root", str(tmp_path)]) == 0
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("# tether\n\nintro\n\n" + figures.START + "\n")
    assert text.endswith(figures.END + "\n\nthe rest\n")
    assert "old figures" not in text
    assert "Measured 2026-01-02" in text
    assert "2 CPUs, Linux 6.1.0, CPython 3.11.7, glibc 2.36" in text
    lines = text.splitlines()
    spawn = next(line for line in lines if line.startswith("| spawn+reap"))
    assert spawn == (
        "| spawn+reap `/bin/true`: `tether native` vs `subprocess.Popen` (floor: "
        "`os.posix_spawn (raw)`) | 1,100.0 µs | 1,000.0 µs | 800.0 µs | 1.10x | 1.38x |"
    )
    timeout = next(line for line in lines if "wait(timeout=10)" in line)
    assert "| 0.15x |" in timeout
    dropin = next(line for line in lines if "`tether.subprocess`" in line)
    assert "| 0.50x | - |" in dropin
    scale = next(line for line in lines if line.startswith("| 1,000 children at once, spawn"))
    assert "| 0.50x |" in scale
    threads = next(line for line in lines if "at once, OS threads" in line)
    assert threads.endswith("| 1 | 1,001 | - | - | - |")
    assert not (tmp_path / "docs").exists()
    assert figures.main(["--check", "--root", str(tmp_path)]) == 0


def test_writes_the_docs_tables_and_plots(tmp_path: Path) -> None:
    make_repo(tmp_path, synthetic_suite())
    assert figures.main(["--root", str(tmp_path)]) == 0
    text = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert text.startswith("# Benchmarks\n\nmethod\n\n" + figures.START)
    assert "![spawn](../benchmarks/results/2026-01-02/spawn.png)" in text
    assert "heap.png" not in text  # only the plots that exist
    assert "**spawn+reap with a 1,024 MiB heap in the parent**" in text
    assert "| `tether fork` | 307,200.0 |" in text
    assert "- target tether wait(timeout=10) vs Popen.wait(timeout=10): x0.15" in text
    assert "bench_zombies" not in text  # a failed script has no figures
    assert figures.main(["--check", "--root", str(tmp_path)]) == 0
    (tmp_path / "docs" / "benchmarks.md").write_text(text.replace("307,200.0", "1.0"))
    assert figures.main(["--check", "--root", str(tmp_path)]) == 1


def test_missing_markers_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_repo(tmp_path, synthetic_suite())
    (tmp_path / "README.md").write_text("# tether\n")
    assert figures.main(["--root", str(tmp_path)]) == 2
    assert "README.md: want one" in capsys.readouterr().err


def test_missing_or_unreadable_run_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_repo(tmp_path, synthetic_suite())
    (tmp_path / "benchmarks" / "results" / "LATEST").write_text("2030-01-01\n")
    assert figures.main(["--root", str(tmp_path)]) == 2
    assert "cannot read the kept run" in capsys.readouterr().err
    broken = synthetic_suite()
    del broken["scripts"]["bench_spawn"]["json"]["results"][0]["median_us"]
    (tmp_path / "benchmarks" / "results" / "LATEST").write_text("2026-01-02\n")
    (tmp_path / "benchmarks" / "results" / "2026-01-02" / "suite.json").write_text(
        json.dumps(broken)
    )
    assert figures.main(["--root", str(tmp_path)]) == 2
    assert "bench_spawn: missing key 'median_us'" in capsys.readouterr().err


def test_summary_reads_namespace_and_supervisor() -> None:
    (ns,) = summary.measures(
        "bench_namespace", {"samples": {"group": [1.0, 2.0, 3.0], "namespace": [2.0, 4.0, 6.0]}}
    )
    assert ns.row("group").median == 2.0
    assert ns.row("namespace").note == "paired x2.00 of group"
    doc = {
        "results": [
            {
                "contender": "sync / group / sleep",
                "count": 1,
                "stop_s": 0.002,
                "runs": [{"stop_s": 0.001}, {"stop_s": 0.002}, {"stop_s": 0.004}],
            },
        ]
    }
    (sup,) = summary.measures("bench_supervisor", doc)
    row = sup.row("sync / group / sleep")
    assert (row.median, row.p10, row.p90) == (2.0, 1.0, 4.0)
    with pytest.raises(summary.ShapeError, match="bench_supervisor: missing key 'results'"):
        summary.measures("bench_supervisor", {})


def test_parse_subprocess_output() -> None:
    text = (
        "Python 3.11.7, 2 CPUs, load 1.00, 3 rounds x 5, seed 1\n\n"
        "run(capture_output=True)\n"
        "  subprocess         median    2344.0 us   p10..p90    2083.3..   3595.6 us"
        "   x1.00 of subprocess\n"
        "  tether.subprocess  median    2482.1 us   p10..p90    2266.4..   2892.8 us"
        "   x1.06 of subprocess\n"
    )
    parsed = suite_runner.parse_subprocess_output(text)
    assert parsed == {
        "run(capture_output=True)": {
            "subprocess": {"median_us": 2344.0, "p10_us": 2083.3, "p90_us": 3595.6},
            "tether.subprocess": {"median_us": 2482.1, "p10_us": 2266.4, "p90_us": 2892.8},
        }
    }
    with pytest.raises(summary.ShapeError, match="before any title"):
        suite_runner.parse_subprocess_output(text.split("run(", 1)[1].split("\n", 1)[1])


def test_suite_table_lists_failures_and_ratios() -> None:
    table = suite_runner.format_suite_table(synthetic_suite()["scripts"])
    assert "bench_zombies: FAILED" in table
    assert "bench_namespace: SKIPPED" in table
    spawn = next(line for line in table.splitlines() if line.startswith("  tether native"))
    assert spawn.split()[-2:] == ["1.10", "1.38"]


def test_plots_from_the_synthetic_run(tmp_path: Path) -> None:
    """In a child process: matplotlib keeps its font files open for the process's life."""
    if importlib.util.find_spec("matplotlib") is None:  # not imported here: numpy's threads
        pytest.skip("matplotlib comes with the bench extra")
    (tmp_path / "suite.json").write_text(json.dumps(synthetic_suite()))
    script = (
        "import json, pathlib, sys; import _plots; out = pathlib.Path(sys.argv[1]); "
        "suite = json.loads((out / 'suite.json').read_text()); "
        "print(' '.join(sorted(p.name for p in _plots.write_plots(suite, out))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=ROOT / "benchmarks",
        capture_output=True,
        text=True,
        check=True,
        timeout=50,
    )
    names = done.stdout.split()
    assert names == ["heap.png", "reap.png", "scale.png", "spawn.png", "subprocess.png"]
    for name in names:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


GOOD = """
import json, sys
doc = {"baseline": "subprocess.Popen", "results": [
    {"name": n, "median_us": m, "p10_us": m, "p90_us": m}
    for n, m in (("tether native", 11.0), ("subprocess.Popen", 10.0))]}
if "--help" in sys.argv:
    print("usage: --json PATH")
else:
    print("a table")
    open(sys.argv[sys.argv.index("--json") + 1], "w").write(json.dumps(doc))
"""


def fake_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripts: dict[str, str]) -> None:
    """Point the runner at *scripts* (name -> source) in *tmp_path*/bench."""
    here = tmp_path / "bench"
    here.mkdir()
    for name, source in scripts.items():
        (here / f"{name}.py").write_text(source)
    monkeypatch.setattr(suite_runner, "HERE", here)
    monkeypatch.setattr(suite_runner, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(suite_runner, "LATEST", tmp_path / "results" / "LATEST")
    monkeypatch.setattr(
        suite_runner,
        "SCRIPTS",
        (
            suite_runner.Script("bench_spawn", ("--rounds", "1")),
            suite_runner.Script("bench_reap"),
            suite_runner.Script("bench_zombies", optional=True),
        ),
    )


def test_suite_runs_on_after_a_failure_and_keeps_no_latest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = "import sys\nprint('boom: no such thing')\nsys.exit(3)\n"
    fake_suite(tmp_path, monkeypatch, {"bench_spawn": GOOD, "bench_reap": broken})
    out = tmp_path / "out"
    assert suite_runner.main(["--no-plots", "--out", str(out)]) == 1
    suite = json.loads((out / "suite.json").read_text())
    spawn, reap = suite["scripts"]["bench_spawn"], suite["scripts"]["bench_reap"]
    assert spawn["status"] == "ok"
    assert spawn["argv"] == [
        "benchmarks/bench_spawn.py",
        "--rounds",
        "1",
        "--json",
        "bench_spawn.json",
    ]
    assert spawn["json"]["results"][0]["median_us"] == 11.0
    assert spawn["wall_s"] > 0
    assert (reap["status"], reap["returncode"]) == ("failed", 3)
    assert "boom: no such thing" in reap["reason"]
    assert suite["scripts"]["bench_zombies"]["status"] == "skipped"
    assert suite["machine"]["cpu_count"] >= 1
    assert not (tmp_path / "results").exists()
    err = capsys.readouterr().err
    assert "FAILED: bench_reap" in err


def test_suite_keeps_a_whole_run_and_names_it_latest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unreadable = GOOD.replace('"median_us"', '"mean_us"')
    fake_suite(tmp_path, monkeypatch, {"bench_spawn": GOOD, "bench_reap": GOOD})
    assert suite_runner.main(["--no-plots"]) == 0
    (day,) = [p.name for p in (tmp_path / "results").iterdir() if p.is_dir()]
    assert (tmp_path / "results" / "LATEST").read_text() == f"{day}\n"
    (tmp_path / "bench" / "bench_reap.py").write_text(unreadable)
    (tmp_path / "results" / "LATEST").write_text("before\n")
    assert suite_runner.main(["--no-plots"]) == 1
    suite = json.loads((tmp_path / "results" / day / "suite.json").read_text())
    assert "missing key 'median_us'" in suite["scripts"]["bench_reap"]["reason"]
    assert (tmp_path / "results" / "LATEST").read_text() == "before\n"

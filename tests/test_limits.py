"""Tests for ``tether.limits``: parsing units, validation, composition, and real children."""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tether import limits as limits_module
from tether.limits import MAX_OPEN_FILES, NO_CORE_DUMPS, SANDBOX, Limits

INF = resource.RLIM_INFINITY
KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40

FIELD_ORDER = [
    "cpu",
    "fsize",
    "data",
    "stack",
    "core",
    "rss",
    "nproc",
    "nofile",
    "memlock",
    "address_space",
    "locks",
    "sigpending",
    "msgqueue",
    "nice",
    "rtprio",
    "rttime",
]
CONSTANTS = {
    "cpu": resource.RLIMIT_CPU,
    "fsize": resource.RLIMIT_FSIZE,
    "data": resource.RLIMIT_DATA,
    "stack": resource.RLIMIT_STACK,
    "core": resource.RLIMIT_CORE,
    "rss": resource.RLIMIT_RSS,
    "nproc": resource.RLIMIT_NPROC,
    "nofile": resource.RLIMIT_NOFILE,
    "memlock": resource.RLIMIT_MEMLOCK,
    "address_space": resource.RLIMIT_AS,
    "locks": 10,  # RLIMIT_LOCKS, which CPython's resource module does not export
    "sigpending": resource.RLIMIT_SIGPENDING,
    "msgqueue": resource.RLIMIT_MSGQUEUE,
    "nice": resource.RLIMIT_NICE,
    "rtprio": resource.RLIMIT_RTPRIO,
    "rttime": resource.RLIMIT_RTTIME,
}
# The rows of /proc/<pid>/limits, by field.
PROC_NAMES = {
    "cpu": "Max cpu time",
    "fsize": "Max file size",
    "data": "Max data size",
    "stack": "Max stack size",
    "core": "Max core file size",
    "rss": "Max resident set",
    "nproc": "Max processes",
    "nofile": "Max open files",
    "memlock": "Max locked memory",
    "address_space": "Max address space",
    "locks": "Max file locks",
    "sigpending": "Max pending signals",
    "msgqueue": "Max msgqueue size",
    "nice": "Max nice priority",
    "rtprio": "Max realtime priority",
    "rttime": "Max realtime timeout",
}


def parse_proc_limits(pid: int) -> dict[str, tuple[int, int]]:
    """Read ``/proc/<pid>/limits`` into ``{"Max open files": (soft, hard), ...}``."""
    with open(f"/proc/{pid}/limits") as f:
        header, *rows = f.read().splitlines()
    assert header.split() == ["Limit", "Soft", "Limit", "Hard", "Limit", "Units"]
    table = {}
    for row in rows:  # the kernel prints "%-25s %-20s %-20s %-10s"
        soft, hard = (INF if v == "unlimited" else int(v) for v in row[26:].split()[:2])
        table[row[:26].strip()] = (soft, hard)
    return table


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        # sizes, in bytes, binary multiples, any case
        ("fsize", 512, 512),
        ("fsize", "512", 512),
        ("fsize", "512B", 512),
        ("fsize", "512K", 512 * KiB),
        ("fsize", "512M", 512 * MiB),
        ("address_space", "2G", 2 * GiB),
        ("data", "1T", TiB),
        ("stack", "8KiB", 8 * KiB),
        ("stack", "8MiB", 8 * MiB),
        ("memlock", "1GiB", GiB),
        ("msgqueue", "1TiB", TiB),
        ("core", "4k", 4 * KiB),
        ("core", "4m", 4 * MiB),
        ("core", "4gib", 4 * GiB),
        ("rss", " 16 M ", 16 * MiB),
        ("fsize", "1.5G", 3 * GiB // 2),
        ("fsize", "0", 0),
        # cpu, in seconds
        ("cpu", 10, 10),
        ("cpu", "10", 10),
        ("cpu", "10s", 10),
        ("cpu", "5m", 300),
        ("cpu", "2min", 120),
        ("cpu", "1h", 3600),
        ("cpu", "3000ms", 3),
        ("cpu", "1.5m", 90),
        # rttime, in microseconds
        ("rttime", 250, 250),
        ("rttime", "250", 250),
        ("rttime", "100us", 100),
        ("rttime", "100µs", 100),
        ("rttime", "500ms", 500_000),
        ("rttime", "2s", 2_000_000),
        ("rttime", "1m", 60_000_000),
        ("rttime", "0.5ms", 500),
        # counts
        ("nofile", 1024, 1024),
        ("nofile", "1024", 1024),
        ("nproc", "64", 64),
        ("sigpending", 100, 100),
        ("locks", "7", 7),
        ("nice", 20, 20),
        ("rtprio", "99", 99),
        # unlimited, in every spelling
        ("cpu", "unlimited", INF),
        ("fsize", "UNLIMITED", INF),
        ("nofile", "infinity", INF),
        ("rttime", INF, INF),
    ],
)
def test_parses_one_value_for_soft_and_hard(field: str, value: Any, expected: int) -> None:
    assert getattr(Limits(**{field: value}), field) == (expected, expected)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("address_space", ("512M", "1G"), (512 * MiB, GiB)),
        ("nofile", (100, "unlimited"), (100, INF)),
        ("cpu", ("30s", "35s"), (30, 35)),
        ("rttime", ("500ms", "1s"), (500_000, 1_000_000)),
        ("stack", (INF, "unlimited"), (INF, INF)),
        ("core", (0, 0), (0, 0)),
    ],
)
def test_parses_soft_hard_tuples(field: str, value: Any, expected: tuple[int, int]) -> None:
    assert getattr(Limits(**{field: value}), field) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # a unit on the wrong kind of field
        ({"nofile": "2G"}, r"Limits\.nofile: '2G' has a size unit, but nofile is a count"),
        ({"nproc": "10s"}, r"Limits\.nproc: '10s' has a time unit"),
        ({"cpu": "512M"}, r"Limits\.cpu: '512M' has a size unit, but cpu is a time in seconds"),
        ({"rttime": "1K"}, r"Limits\.rttime: '1K' has a size unit"),
        ({"fsize": "10s"}, r"Limits\.fsize: '10s' has a time unit, but fsize is a size"),
        ({"fsize": "5min"}, r"Limits\.fsize: '5min' has a time unit"),
        # unknown units and garbage
        ({"fsize": "5x"}, r"Limits\.fsize: '5x' has an unknown unit"),
        ({"cpu": "10sec"}, r"Limits\.cpu: '10sec' has an unknown unit"),
        ({"fsize": "5PiB"}, r"Limits\.fsize: '5PiB' has an unknown unit"),
        ({"nofile": "abc"}, r"Limits\.nofile: cannot parse 'abc' as a count"),
        ({"nofile": ""}, r"Limits\.nofile: cannot parse ''"),
        ({"fsize": "M"}, r"Limits\.fsize: cannot parse 'M'"),
        # fractions of the kernel's unit
        ({"cpu": "500ms"}, r"Limits\.cpu: '500ms' is not a whole number"),
        ({"nofile": "1.5"}, r"Limits\.nofile: '1.5' is not a whole number"),
        ({"fsize": "0.3K"}, r"Limits\.fsize: '0.3K' is not a whole number"),
        # negative and too large
        ({"nofile": -5}, r"Limits\.nofile: negative value -5"),
        ({"nofile": "-5"}, r"Limits\.nofile: negative value '-5'"),
        ({"fsize": "-1"}, r"Limits\.fsize: negative value '-1'"),
        ({"cpu": (-2, 10)}, r"Limits\.cpu: negative value -2"),
        ({"fsize": 2**63}, r"Limits\.fsize: \d+ is too large"),
        ({"fsize": "8388608T"}, r"Limits\.fsize: \d+ is too large"),
        # soft above hard
        ({"nofile": (2048, 1024)}, r"Limits\.nofile: soft limit 2048 is above hard limit 1024"),
        ({"cpu": ("1h", "10s")}, r"Limits\.cpu: soft limit 1h is above hard limit 10s"),
        ({"core": ("unlimited", 0)}, r"Limits\.core: soft limit unlimited is above hard limit 0"),
        ({"fsize": ("2G", "1G")}, r"Limits\.fsize: soft limit 2GiB is above hard limit 1GiB"),
        # malformed tuples
        ({"nofile": (1, 2, 3)}, r"Limits\.nofile: expected \(soft, hard\)"),
        ({"nofile": (1,)}, r"Limits\.nofile: expected \(soft, hard\)"),
    ],
)
def test_rejects_bad_values_naming_the_field(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Limits(**kwargs)


@pytest.mark.parametrize("value", [1.5, True, [1, 2], b"10", (1, None), (1.0, 2)])
def test_rejects_wrong_types(value: Any) -> None:
    with pytest.raises(TypeError, match=r"Limits\.nofile: expected an int or a str"):
        Limits(nofile=value)


def test_unknown_field_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Limits(files=10)  # type: ignore[call-arg]


# --- normalisation ---------------------------------------------------------------------------


def test_stores_soft_hard_ints_and_leaves_the_rest_unset() -> None:
    limits = Limits(cpu="1m", fsize=("1K", "unlimited"))
    assert limits.cpu == (60, 60)
    assert limits.fsize == (KiB, INF)
    assert all(type(v) is int for v in (*limits.cpu, *limits.fsize))
    unset = [f.name for f in dataclasses.fields(limits) if getattr(limits, f.name) is None]
    assert unset == [name for name in FIELD_ORDER if name not in ("cpu", "fsize")]


def test_equal_limits_written_differently_compare_and_hash_equal() -> None:
    a = Limits(cpu="1m", address_space="1G", nofile="100")
    b = Limits(cpu=60, address_space=(GiB, GiB), nofile=(100, 100))
    assert a == b
    assert hash(a) == hash(b)
    assert a != Limits(cpu=61, address_space="1G", nofile=100)
    assert Limits() == Limits()


def test_is_frozen() -> None:
    limits = Limits(nofile=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.nofile = (1, 1)  # type: ignore[misc]
    assert not hasattr(limits, "__dict__")


# --- composition -----------------------------------------------------------------------------


def test_or_lets_fields_set_on_the_right_win() -> None:
    combined = SANDBOX | Limits(cpu="5s", stack="16M")
    assert combined.cpu == (5, 5)
    assert combined.stack == (16 * MiB, 16 * MiB)
    for name in ("address_space", "fsize", "nofile", "core", "nproc"):
        assert getattr(combined, name) == getattr(SANDBOX, name)
    assert SANDBOX.cpu == (30, 35)  # the preset is untouched


def test_or_with_empty_limits_is_identity() -> None:
    assert SANDBOX | Limits() == SANDBOX
    assert Limits() | SANDBOX == SANDBOX
    assert NO_CORE_DUMPS | Limits(nofile=10) | Limits(core="1M") == Limits(core="1M", nofile=10)


def test_or_with_something_else_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        SANDBOX | {"cpu": 5}  # type: ignore[operator]


# --- items and constants ---------------------------------------------------------------------


def test_field_order_and_constructor_match_the_resource_table() -> None:
    assert [f.name for f in dataclasses.fields(Limits)] == FIELD_ORDER
    parameters = inspect.signature(Limits).parameters.values()
    assert [p.name for p in parameters] == FIELD_ORDER
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is None for p in parameters)


def test_items_are_in_field_order_with_the_rlimit_constants() -> None:
    everything = Limits(**dict.fromkeys(reversed(FIELD_ORDER), (1, 2)))
    assert everything.items() == [(name, CONSTANTS[name], 1, 2) for name in FIELD_ORDER]
    assert Limits(nofile=(10, 20), cpu="unlimited").items() == [
        ("cpu", resource.RLIMIT_CPU, INF, INF),
        ("nofile", resource.RLIMIT_NOFILE, 10, 20),
    ]
    assert Limits().items() == []


# --- check -----------------------------------------------------------------------------------


def fake_current(nofile: tuple[int, int] = (1024, 4096)) -> Any:
    """A ``getrlimit`` that reports ``nofile`` for RLIMIT_NOFILE, 8 MiB for the stack, one hour
    of CPU and unlimited for everything else."""
    table = {
        resource.RLIMIT_NOFILE: nofile,
        resource.RLIMIT_STACK: (8 * MiB, 8 * MiB),
        resource.RLIMIT_CPU: (60, 3600),
    }
    return lambda res: table.get(res, (INF, INF))


@pytest.mark.parametrize(
    "limits",
    [
        Limits(),
        Limits(nofile=4096),
        Limits(nofile=(100, 200)),
        Limits(nofile=(4096, 4096), stack="8M", cpu="1h", address_space="unlimited"),
        Limits(stack=("1M", "8M")),
    ],
)
def test_check_accepts_lowering_or_keeping_hard_limits(limits: Limits) -> None:
    limits.check(fake_current(), privileged=False)
    limits.check(fake_current(), privileged=True)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (
            Limits(nofile=(1024, 8192)),
            r"Limits\.nofile: hard limit 8192 is above the current hard limit 4096",
        ),
        (
            Limits(cpu=("1h", "unlimited")),
            r"Limits\.cpu: hard limit unlimited is above the current hard limit 1h",
        ),
        (
            Limits(cpu=10, stack="16M"),
            r"Limits\.stack: hard limit 16MiB is above the current hard limit 8MiB, "
            r"and raising it needs CAP_SYS_RESOURCE",
        ),
    ],
)
def test_check_refuses_raising_hard_limits_unprivileged(limits: Limits, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        limits.check(fake_current(), privileged=False)
    limits.check(fake_current(), privileged=True)


def test_check_sees_any_value_below_an_unlimited_hard_limit() -> None:
    Limits(nofile=(10**6, 10**6)).check(fake_current(nofile=(1024, INF)), privileged=False)


def test_check_refuses_nofile_above_nr_open_even_privileged() -> None:
    nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    limits = Limits(nofile=nr_open + 1)
    with pytest.raises(ValueError, match=rf"Limits\.nofile: hard limit {nr_open + 1} is above"):
        limits.check(fake_current(nofile=(INF, INF)), privileged=True)
    Limits(nofile=nr_open).check(fake_current(nofile=(INF, INF)), privileged=True)


def test_check_defaults_to_this_process_and_its_capabilities() -> None:
    Limits.read(0).check()  # what we have is always allowed
    hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
    Limits(core=(0, hard)).check()


def test_check_default_privilege_comes_from_cap_sys_resource(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raising = Limits(nofile=(1024, 8192))
    monkeypatch.setattr(limits_module, "_has_cap_sys_resource", lambda: False)
    with pytest.raises(ValueError, match=r"Limits\.nofile"):
        raising.check(fake_current())
    monkeypatch.setattr(limits_module, "_has_cap_sys_resource", lambda: True)
    raising.check(fake_current())


# --- from_mapping ----------------------------------------------------------------------------


def test_from_mapping_builds_limits() -> None:
    built = Limits.from_mapping({"nofile": 1024, "cpu": "10s", "core": None})
    assert built == Limits(nofile=1024, cpu=10)
    assert Limits.from_mapping({}) == Limits()


@pytest.mark.parametrize("name", ["foo", "as", "RLIMIT_NOFILE", "Nofile"])
def test_from_mapping_rejects_unknown_names(name: str) -> None:
    known = ", ".join(FIELD_ORDER)
    with pytest.raises(ValueError, match=re.escape(f"unknown limit {name!r}; known: {known}")):
        Limits.from_mapping({"nofile": 10, name: 5})


def test_from_mapping_still_validates_values() -> None:
    with pytest.raises(ValueError, match=r"Limits\.nofile: '2G' has a size unit"):
        Limits.from_mapping({"nofile": "2G"})


# --- repr ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "text"),
    [
        (Limits(), "Limits()"),
        (
            Limits(nofile=1024, address_space="1G", cpu=10),
            "Limits(cpu='10s', nofile=1024, address_space='1GiB')",
        ),
        (Limits(cpu=300, rttime="1500ms"), "Limits(cpu='5min', rttime='1500ms')"),
        (Limits(cpu=7200, rttime=250), "Limits(cpu='2h', rttime='250us')"),
        (Limits(core=0, rttime=0, cpu=0), "Limits(cpu=0, core=0, rttime=0)"),
        (
            Limits(fsize=1000, data="1536K", stack="1T"),
            "Limits(fsize='1000B', data='1536KiB', stack='1TiB')",
        ),
        (Limits(fsize="unlimited"), "Limits(fsize='unlimited')"),
        (Limits(nofile=(256, "unlimited")), "Limits(nofile=(256, 'unlimited'))"),
        (Limits(cpu=("30s", "35s")), "Limits(cpu=('30s', '35s'))"),
        (
            SANDBOX,
            "Limits(cpu=('30s', '35s'), fsize='64MiB', core=0, nproc=64, nofile=256, "
            "address_space='2GiB')",
        ),
    ],
)
def test_repr_shows_set_fields_in_human_units(limits: Limits, text: str) -> None:
    assert repr(limits) == text
    assert str(limits) == text


@pytest.mark.parametrize(
    "limits",
    [
        SANDBOX,
        Limits(**dict.fromkeys(FIELD_ORDER, (1, 2))),
        Limits(**dict.fromkeys(FIELD_ORDER, (3 * KiB, 5 * MiB))),
        Limits(**dict.fromkeys(FIELD_ORDER, (3600, INF))),
        Limits(cpu=(59, 61), rttime=(1_001_000, 60_000_000), fsize=(GiB + 1, TiB * 3)),
    ],
)
def test_repr_evaluates_to_the_same_limits(limits: Limits) -> None:
    assert eval(repr(limits), {"Limits": Limits}) == limits


# --- presets ---------------------------------------------------------------------------------


def test_presets() -> None:
    assert Limits(core=(0, 0)) == NO_CORE_DUMPS
    assert NO_CORE_DUMPS.items() == [("core", resource.RLIMIT_CORE, 0, 0)]
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert MAX_OPEN_FILES.items() == [("nofile", resource.RLIMIT_NOFILE, hard, hard)]
    assert SANDBOX.cpu == (30, 35)
    assert SANDBOX.address_space == (2 * GiB, 2 * GiB)
    assert SANDBOX.fsize == (64 * MiB, 64 * MiB)
    assert SANDBOX.nofile == (256, 256)
    assert SANDBOX.core == (0, 0)
    assert SANDBOX.nproc == (64, 64)
    assert set(limits_module.__all__) == {
        "Limits",
        "LimitValue",
        "MAX_OPEN_FILES",
        "NO_CORE_DUMPS",
        "SANDBOX",
    }


def test_max_open_files_has_soft_equal_to_hard() -> None:
    assert MAX_OPEN_FILES.nofile is not None
    soft, hard = MAX_OPEN_FILES.nofile
    assert soft == hard == resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    MAX_OPEN_FILES.check()  # only raises the soft limit: always allowed


def test_sandbox_lets_a_python_child_start() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import json, ssl, decimal; print(1)"],
        preexec_fn=SANDBOX.apply,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "1\n", "")


def test_sandbox_limits_are_in_force_in_the_child() -> None:
    code = (
        "import resource, sys\nfor res in map(int, sys.argv[1:]): print(*resource.getrlimit(res))\n"
    )
    items = SANDBOX.items()
    result = subprocess.run(
        [sys.executable, "-c", code, *(str(res) for _, res, _, _ in items)],
        preexec_fn=SANDBOX.apply,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    reported = [tuple(map(int, line.split())) for line in result.stdout.splitlines()]
    assert reported == [(soft, hard) for _, _, soft, hard in items]


# --- the kernel agrees with the units --------------------------------------------------------


def test_fsize_is_in_bytes(tmp_path: Path) -> None:
    target = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"f = open({str(target)!r}, 'wb', buffering=0)\nwhile 1: f.write(b'x')",
        ],
        preexec_fn=Limits(fsize="1K").apply,
        capture_output=True,
        timeout=30,
        check=False,
    )
    # Python ignores SIGXFSZ, so the write past the limit fails with EFBIG instead.
    assert result.returncode == 1
    assert b"OSError: [Errno 27] File too large" in result.stderr
    assert target.stat().st_size == KiB


def test_cpu_is_in_seconds() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "while True: pass"],
        preexec_fn=Limits(cpu=(1, 3)).apply,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == -signal.SIGXCPU


# --- read and apply on a real child ----------------------------------------------------------


def test_read_self_matches_getrlimit_and_proc() -> None:
    mine = Limits.read(0)
    proc = parse_proc_limits(os.getpid())
    for name, res, soft, hard in mine.items():
        assert (soft, hard) == resource.getrlimit(res), name
        assert (soft, hard) == proc[PROC_NAMES[name]], name
    assert [name for name, *_ in mine.items()] == FIELD_ORDER


def test_apply_and_read_on_a_running_child() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        before = Limits.read(child.pid)
        Limits(nofile=(100, 200), core=0).apply(child.pid)

        proc = parse_proc_limits(child.pid)
        assert proc["Max open files"] == (100, 200)
        assert proc["Max core file size"] == (0, 0)

        after = Limits.read(child.pid)
        assert after.nofile == (100, 200)
        assert after.core == (0, 0)
        untouched = {name for name in FIELD_ORDER if name not in ("nofile", "core")}
        for name in untouched:
            assert getattr(after, name) == getattr(before, name) == proc[PROC_NAMES[name]], name
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == before.nofile  # not ours

        # Raising the hard limit back needs CAP_SYS_RESOURCE: check() and the kernel must agree.
        raising = Limits(nofile=(100, 300))
        try:
            raising.check(current=lambda res: resource.prlimit(child.pid, res))
        except ValueError:
            with pytest.raises(PermissionError, match=r"Limits\.nofile could not be set"):
                raising.apply(child.pid)
            assert Limits.read(child.pid).nofile == (100, 200)
        else:
            raising.apply(child.pid)
            assert Limits.read(child.pid).nofile == (100, 300)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
    assert child.returncode == 0


def test_apply_and_read_name_the_limit_when_the_process_is_gone() -> None:
    missing = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    with pytest.raises(
        ProcessLookupError, match=rf"Limits\.nofile could not be set .* pid {missing}"
    ):
        Limits(nofile=10).apply(missing)
    with pytest.raises(
        ProcessLookupError, match=rf"Limits\.cpu could not be read for pid {missing}"
    ):
        Limits.read(missing)


def test_apply_stops_at_the_first_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_prlimit(pid: int, res: int, limits: tuple[int, int] | None = None) -> tuple[int, int]:
        calls.append(res)
        if res == resource.RLIMIT_NOFILE:
            raise ValueError("current limit exceeds maximum limit")
        return (0, 0)

    monkeypatch.setattr(resource, "prlimit", fake_prlimit)
    missing = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # never this process
    with pytest.raises(
        ValueError, match=rf"Limits\.nofile could not be set to \(1, 1\) for pid {missing}"
    ):
        Limits(core=0, nofile=1, address_space=1).apply(missing)
    assert calls == [resource.RLIMIT_CORE, resource.RLIMIT_NOFILE]

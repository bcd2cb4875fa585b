"""The native spawner's fast paths: reused child stacks and clone3(CLONE_CLEAR_SIGHAND).

Both save work on every spawn and both have a hazard. A reused stack must never be
used by two spawns at once (threads), must still carry the outcome of a child cloned
without CLONE_VM (one that changes its ids), and must not be shared with a forked
child of ours. A child cloned with CLONE_CLEAR_SIGHAND must end with the same signal
dispositions as one that resets them itself: handled ones at SIG_DFL, ignored ones
ignored, SIGPIPE and SIGXFSZ at SIG_DFL unless ``restore_signals=False``. Each test
runs on both clone paths where it matters.
"""

from __future__ import annotations

import ctypes
import errno
import os
import pathlib
import platform
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

import pytest

import tether
import tether._native
from tether import _spawn
from tether._spawn import _native as _native_backend
from tether._spawn import _plan, _posix_spawn

pytestmark = pytest.mark.skipif(not tether._native.available, reason="native spawner not built")

PY = sys.executable
STACK_SLOTS = 8  # _spawner.c's pool


class StrSubclass(str):
    """An argument that is a str without being one exactly."""


@pytest.fixture(params=["clone3", "clone"])
def clone_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each way the C spawner can clone: clone3 with CLONE_CLEAR_SIGHAND, then clone()."""
    spawner = tether._native.spawner
    if request.param == "clone":
        spawner.clone3_clear_sighand(False)
    try:
        yield str(request.param)
    finally:
        spawner.clone3_clear_sighand(True)


def _mask(status: bytes, name: bytes) -> int:
    for line in status.splitlines():
        if line.startswith(name + b":"):
            return int(line.split()[1], 16)
    raise AssertionError(f"{name!r} not in /proc status")


def _bit(sig: int) -> int:
    return 1 << (sig - 1)


def _child_status(**options: object) -> bytes:
    done = tether.run(
        ["cat", "/proc/self/status"],
        backend="native",
        capture=True,
        check=True,
        **options,  # type: ignore[arg-type]
    )
    assert done.stdout is not None
    return done.stdout


@pytest.mark.parametrize("ids", ["keeps", "same", "helper", "copy"])
@pytest.mark.parametrize("restore", [True, False], ids=["restore", "keep_ignored"])
def test_dispositions_are_the_same_on_both_clone_paths(
    clone_path: str, ids: str, restore: bool
) -> None:
    # "helper" and "copy": the two ways a child that changes its ids is made (through
    # the id helper's exec, or on a copy of our memory); "same": ids set to our own.
    spawner = tether._native.spawner
    registered = spawner.id_helper()
    if ids in ("helper", "copy") and os.geteuid() != 0:
        pytest.skip("changing ids needs root")
    if ids == "copy":
        spawner.set_id_helper(None)
    handled = signal.signal(signal.SIGUSR1, lambda *_: None)
    ignored = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        options: dict[str, object] = {"restore_signals": restore}
        if ids != "keeps":
            options["user"] = os.getuid() if ids == "same" else 65534
        status = _child_status(**options)
    finally:
        spawner.set_id_helper(registered)
        signal.signal(signal.SIGUSR1, handled)
        signal.signal(signal.SIGUSR2, ignored)
    used = tether._native.spawner.clone3_clear_sighand()
    if clone_path == "clone":
        assert used is False
    elif platform.machine() == "x86_64":
        assert used is not None, "the first spawn decides whether clone3 works"
    assert _mask(status, b"SigCgt") == 0  # no handler of ours survives into the child
    assert _mask(status, b"SigBlk") == 0
    ignored_in_child = _mask(status, b"SigIgn")
    assert ignored_in_child & _bit(signal.SIGUSR2), "an ignored signal stays ignored"
    python_ignores = _bit(signal.SIGPIPE) | _bit(signal.SIGXFSZ)
    if restore:
        assert not ignored_in_child & python_ignores
    else:
        assert ignored_in_child & python_ignores == python_ignores


def test_a_failure_is_reported_through_a_reused_stack(clone_path: str) -> None:
    tether.spawn(["true"], backend="native").wait()  # the pool holds a stack now
    for options in ({}, {"user": os.getuid()}):
        with pytest.raises(tether.SpawnError) as caught:
            tether.spawn(["true"], backend="native", cwd="/no/such/dir", **options)  # type: ignore[arg-type]
        assert (caught.value.stage, caught.value.errno) == ("chdir", errno.ENOENT)
        assert tether.spawn(["true"], backend="native", **options).wait().returncode == 0  # type: ignore[arg-type]


def test_concurrent_spawns_from_more_threads_than_cached_stacks(clone_path: str) -> None:
    threads = STACK_SLOTS * 2
    per_thread = 6
    start = threading.Barrier(threads)
    codes: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def spawner(index: int) -> None:
        try:
            start.wait()
            for round_ in range(per_thread):
                code = (index * per_thread + round_) % 200
                options = {"user": os.getuid()} if round_ % 3 == 0 else {}
                process = tether.spawn(
                    ["sh", "-c", f"exit {code}"],
                    backend="native",
                    **options,  # type: ignore[arg-type]
                )
                got = process.wait().returncode
                with lock:
                    codes.append(got - code)
        except BaseException as exc:  # reported by the main thread
            with lock:
                errors.append(exc)

    workers = [threading.Thread(target=spawner, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors
    assert codes == [0] * (threads * per_thread), "every child ran its own argv"
    assert 1 <= tether._native.spawner.cached_stacks() <= STACK_SLOTS


_FORKED = """
import os, sys
import tether, tether._native
spawner = tether._native.spawner
assert tether.spawn(["true"], backend="native").wait().returncode == 0
assert spawner.cached_stacks() >= 1
pid = os.fork()
if pid == 0:
    code = 10 if spawner.cached_stacks() != 0 else 0  # inherited stacks were dropped
    code += tether.spawn(["sh", "-c", "exit 3"], backend="native").wait().returncode
    again = tether.spawn(["sh", "-c", "exit 4"], backend="native", user=os.getuid())
    code += again.wait().returncode
    os._exit(code)
status = os.waitpid(pid, 0)[1]
assert tether.spawn(["true"], backend="native").wait().returncode == 0
print(os.waitstatus_to_exitcode(status), spawner.cached_stacks())
"""


def test_a_forked_child_does_not_share_our_cached_stacks() -> None:
    done = tether.run([PY, "-c", _FORKED], capture=True, check=True)
    assert done.stdout is not None
    code, cached = done.stdout.split()
    assert int(code) == 7  # 3 + 4: both spawns of the forked child ran, on its own stacks
    assert int(cached) >= 1


# --- ids: only a change of uid or gid leaves CLONE_VM ------------------------------------

PR_GET_DUMPABLE = 3


@pytest.mark.skipif(os.geteuid() != 0, reason="setgroups needs CAP_SETGID")
@pytest.mark.parametrize(
    "options",
    [
        {"extra_groups": [4, 65534]},
        {"user": 0, "group": 0, "extra_groups": [4, 65534]},
    ],
    ids=["extra_groups", "same_ids"],
)
def test_a_child_that_keeps_our_ids_shares_memory_and_leaves_us_dumpable(
    clone_path: str, options: dict[str, object]
) -> None:
    # These children keep CLONE_VM: the kernel marks an mm non-dumpable only when euid,
    # egid, fsuid or fsgid change. Were that wrong, our own mm would be marked here.
    done = tether.run(["id", "-G"], backend="native", capture=True, check=True, **options)  # type: ignore[arg-type]
    assert done.stdout is not None
    assert sorted(int(gid) for gid in done.stdout.split()) == [0, 4, 65534]
    libc = ctypes.CDLL(None)
    assert libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="changing ids needs root")
def test_a_child_that_changes_ids_still_leaves_us_dumpable(clone_path: str) -> None:
    done = tether.run(["id", "-u"], backend="native", user=65534, capture=True, check=True)
    assert done.stdout == b"65534\n"
    assert ctypes.CDLL(None).prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1


# --- auto: never a slower backend than one the options allow -----------------------------

SPEED_ORDER = ("native", "posix_spawn", "fork")
"""Fastest first, as measured (benchmarks/bench_spawn.py, bench_heap.py): native and
posix_spawn are vfork-style, native with no Python around the clone and no thread hop;
fork copies the page tables. A native child that changes ids is cloned fork-style but
still beats the fork backend, which adds Python in the child."""

AUTO_CASES: list[dict[str, object]] = [
    {},
    {"stdout": tether.PIPE, "start_new_session": True},
    {"process_group": 0},
    {"cwd": "/"},
    {"umask": 0o22},
    {"limits": tether.Limits(core=0)},
    {"pdeathsig": signal.SIGTERM},
    {"no_new_privs": True},
    {"user": os.getuid()},
    {"group": os.getgid()},
    {"extra_groups": [os.getgid()]},
    {"cgroup": "/sys/fs/cgroup"},
    {"preexec_fn": lambda: None},
    {"restore_signals": False, "env": {"A": "1"}, "executable": "/bin/true"},
]


@pytest.mark.parametrize("with_native", [True, False], ids=["native_built", "no_native"])
@pytest.mark.parametrize("options", AUTO_CASES, ids=lambda options: "+".join(options) or "plain")
def test_auto_never_picks_a_slower_backend_than_the_options_allow(
    options: dict[str, object], with_native: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not with_native:
        monkeypatch.setattr(_spawn, "AUTO_ORDER", ("posix_spawn", "fork"))
    assert tuple(name for name in SPEED_ORDER if name in _spawn.AUTO_ORDER) == _spawn.AUTO_ORDER
    plan = _spawn.make_plan(["true"], **options)  # type: ignore[arg-type]
    chosen = _spawn.choose_backend(plan, "auto").NAME
    allowed = []
    for name in _spawn.AUTO_ORDER:
        try:
            backend = _spawn.choose_backend(plan, name)
        except ValueError:
            continue
        if backend is _posix_spawn and _posix_spawn.blocked_by_fds(plan):
            continue
        allowed.append(name)
    assert allowed, "fork takes every plan"
    assert chosen == min(allowed, key=SPEED_ORDER.index)


# --- the plain plan: a shortcut, never a different plan ----------------------------------


@pytest.mark.parametrize("argv", [["true"], ["/bin/true", "a b", "\udcff"], [b"/bin/sh", b"-c"]])
def test_the_plain_plan_is_the_plan_the_full_path_makes(argv: list[str | bytes]) -> None:
    plain = _spawn.make_plan(argv)
    assert plain == _spawn.make_plan(argv, backend="fork")
    assert plain == _spawn.make_plan(argv, start_new_session=False)  # the full path
    assert plain == _spawn.make_plan(argv, restore_signals=True, pass_fds=(), env=None)


@pytest.mark.parametrize(
    ("argv", "error", "message"),
    [
        ("true", TypeError, "argv must be a sequence of arguments, not a single string"),
        ([], ValueError, "argv must not be empty"),
        (["tr\0ue"], ValueError, "argv contains a NUL byte"),
        ([""], ValueError, "the program name must not be empty"),
        ([3], TypeError, "expected str, bytes or os.PathLike object"),
    ],
)
def test_the_plain_path_checks_argv_as_the_full_path_does(
    argv: object, error: type[Exception], message: str
) -> None:
    for options in ({}, {"cwd": None, "umask": None, "start_new_session": False}):
        with pytest.raises(error, match=message):
            _spawn.make_plan(argv, **options)  # type: ignore[arg-type]


ARGVS = [
    ["true"],
    ("/bin/true", "a b", "\udcff", ""),
    [b"/bin/sh", b"-c"],
    ["/bin/sh", b"-c", pathlib.PurePosixPath("x")],
    [StrSubclass("/bin/true")],
]


@pytest.mark.parametrize("argv", ARGVS, ids=lambda argv: type(argv).__name__ + str(len(argv)))
def test_a_list_or_tuple_argv_encodes_as_any_other_iterable(argv: Sequence[object]) -> None:
    args, encoded = _plan._encode_argv(argv)  # type: ignore[arg-type]
    assert (args, encoded) == _plan._encode_argv(iter(argv))  # type: ignore[arg-type]
    assert encoded == tuple(os.fsencode(arg) for arg in argv)  # type: ignore[arg-type]
    assert all(type(arg) is str for arg in args)


@pytest.mark.parametrize(
    ("argv", "error", "message"),
    [
        (["/bin/true", "a\0b"], ValueError, "argv contains a NUL byte: 'a\\\\x00b'"),
        (("/bin/true", b"\0"), ValueError, "argv contains a NUL byte: b'\\\\x00'"),
        (["/bin/true", "\ud800"], UnicodeEncodeError, "surrogates not allowed"),
        (["/bin/true", None], TypeError, "expected str, bytes or os.PathLike object"),
    ],
)
def test_a_list_argv_fails_as_any_other_iterable(
    argv: list[object], error: type[Exception], message: str
) -> None:
    for given in (argv, iter(argv)):
        with pytest.raises(error, match=message):
            _plan._encode_argv(given)  # type: ignore[arg-type]


@pytest.mark.parametrize("options", AUTO_CASES, ids=lambda options: "+".join(options) or "plain")
def test_only_a_plain_plan_takes_the_constant_spawner_arguments(
    options: dict[str, object],
) -> None:
    plan = _spawn.make_plan(["true"], **options)  # type: ignore[arg-type]
    stdio = _spawn.ChildStdio()
    if not options:
        assert plan[4:] == _plan.PLAIN_OPTIONS
    if plan[4:] == _plan.PLAIN_OPTIONS:
        assert _native_backend.spawner_options(plan, stdio) == _native_backend._PLAIN_ARGS


@pytest.mark.parametrize("name", list(_spawn.BACKENDS))
def test_a_plain_plan_is_one_every_backend_accepts(name: str) -> None:
    """choose_backend skips the eligibility check for a plain plan: it must find nothing."""
    plan = _spawn.make_plan(["true"], backend=name)
    assert plan[4:] == _plan.PLAIN_OPTIONS
    assert _spawn.ineligible_reason(_spawn.BACKENDS[name], plan) is None
    if _spawn.BACKENDS[name].AVAILABLE:
        assert _spawn.choose_backend(plan, name) is _spawn.BACKENDS[name]
    else:
        with pytest.raises(ValueError, match="was not built"):
            _spawn.choose_backend(plan, name)


def test_a_preexec_fn_that_claims_to_equal_none_is_still_refused_by_native() -> None:
    """The plain-plan shortcut compares fields with ==: a callable whose __eq__ says yes
    to everything must not slip past the native backend's refusal."""

    class EqualsAnything:
        def __call__(self) -> None:
            pass

        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = object.__hash__

    plan = _spawn.make_plan(["true"], preexec_fn=EqualsAnything())
    with pytest.raises(ValueError, match="cannot honour the preexec_fn option"):
        _spawn.choose_backend(plan, "native")
    assert _spawn.choose_backend(plan, "auto") is _spawn.BACKENDS["fork"]

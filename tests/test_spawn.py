"""Spawning: backends, options, PATH search, bad input, fd hygiene, signal state."""

from __future__ import annotations

import errno
import logging
import os
import resource
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether
import tether._native
import tether._spawn
from tests.spawn_paths import python_posix_spawn
from tether._linux import _pidfd
from tether._spawn import _posix_spawn

PY = sys.executable
LIST_FDS = (  # the fd that listdir used is closed again by the time exists() looks
    "import os; names = sorted(os.listdir('/proc/self/fd'), key=int); "
    "print(' '.join(n for n in names if os.path.exists('/proc/self/fd/' + n)))"
)


def run_out(argv: list[str], **options: object) -> bytes:
    done = tether.run(argv, capture=True, check=True, **options)  # type: ignore[arg-type]
    assert done.stdout is not None
    return done.stdout


# --- backends -----------------------------------------------------------------------


def test_each_backend_spawns_and_reports_itself(backend: str, pidfd_mode: str) -> None:
    process = tether.spawn(["sh", "-c", "exit 3"], backend=backend)
    assert process.backend == backend
    assert (process.pidfd is not None) == (pidfd_mode == "pidfd")
    assert process.wait() == tether.Exited(3)


OPTION_CASES: list[tuple[str, dict[str, object], str, str]] = [
    # (case, options, backend with the native spawner, backend without it)
    ("plain", {}, "native", "posix_spawn"),
    ("pipes and session", {"stdout": -1, "start_new_session": True}, "native", "posix_spawn"),
    ("process group", {"process_group": 0}, "native", "posix_spawn"),
    ("cwd", {"cwd": "/"}, "native", "fork"),
    ("umask", {"umask": 0o22}, "native", "fork"),
    ("limits", {"limits": tether.Limits(core=0)}, "native", "fork"),
    ("pdeathsig", {"pdeathsig": signal.SIGTERM}, "native", "fork"),
    ("no_new_privs", {"no_new_privs": True}, "native", "fork"),
    ("user", {"user": os.getuid()}, "native", "fork"),
    ("extra_groups", {"extra_groups": [os.getgid()]}, "native", "fork"),
    ("preexec_fn", {"preexec_fn": lambda: None}, "fork", "fork"),
]


@pytest.mark.parametrize(
    ("options", "with_native", "without_native"),
    [case[1:] for case in OPTION_CASES],
    ids=[case[0] for case in OPTION_CASES],
)
def test_auto_picks_the_fastest_backend_that_fits(
    options: dict[str, object],
    with_native: str,
    without_native: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert tether._native.available, "the build must compile the native spawner here"
    for expected in (with_native, without_native):
        process = tether.spawn(["true"], **options)  # type: ignore[arg-type]
        if process.stdout is not None:
            process.stdout.close()
        assert process.backend == expected
        assert process.wait().success
        monkeypatch.setattr(tether._spawn, "AUTO_ORDER", ("posix_spawn", "fork"))


@pytest.mark.parametrize(
    ("backend_name", "option", "value"),
    [
        ("posix_spawn", "cwd", "/"),
        ("posix_spawn", "umask", 0o22),
        ("posix_spawn", "preexec_fn", lambda: None),
        ("posix_spawn", "limits", tether.Limits(core=0)),
        ("posix_spawn", "user", 0),
        ("native", "preexec_fn", lambda: None),
    ],
)
def test_a_named_backend_refuses_what_it_cannot_do(
    backend_name: str, option: str, value: object
) -> None:
    with pytest.raises(ValueError, match=f"{backend_name} backend cannot honour the {option}"):
        tether.spawn(["true"], backend=backend_name, **{option: value})  # type: ignore[arg-type]


def test_unknown_backend_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown backend 'vfork'"):
        tether.spawn(["true"], backend="vfork")


# --- failures to start --------------------------------------------------------------


def test_missing_program_repeated_leaves_nothing_behind(backend: str) -> None:
    for name in ("surely-no-such-program-tether", "/no/such/dir/program"):
        for _ in range(500):
            with pytest.raises(FileNotFoundError) as caught:
                tether.spawn([name, "arg"], backend=backend)
        error = caught.value
        assert isinstance(error, tether.SpawnError)
        assert error.errno == errno.ENOENT
        assert error.filename == name
        assert error.stage == "exec"
        assert error.argv == (name, "arg")


def test_bad_cwd_reports_chdir(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError) as caught:
        tether.spawn(["true"], cwd=missing)
    assert caught.value.stage == "chdir"  # type: ignore[attr-defined]
    assert caught.value.filename == str(missing)
    with pytest.raises(FileNotFoundError):
        os.chdir(missing)  # the same errno a direct chdir gives


def _write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_unrunnable_files(tmp_path: Path, backend: str) -> None:
    not_executable = _write(tmp_path / "plain", "#!/bin/sh\n", 0o644)
    garbage = _write(tmp_path / "garbage", "\x01\x02 not a program\n", 0o755)
    with pytest.raises(PermissionError) as caught:
        tether.spawn([str(not_executable)], backend=backend)
    assert caught.value.errno == errno.EACCES
    with pytest.raises(PermissionError) as caught:
        tether.spawn([str(tmp_path)], backend=backend)
    assert caught.value.errno == errno.EACCES
    with pytest.raises(tether.SpawnError) as exec_format:
        tether.spawn([str(garbage)], backend=backend)
    assert exec_format.value.errno == errno.ENOEXEC
    assert exec_format.value.stage == "exec"


def test_path_search_skips_directories_and_unexecutables(tmp_path: Path, backend: str) -> None:
    dirs = [tmp_path / name for name in ("a", "b", "c")]
    for directory in dirs:
        directory.mkdir()
    _write(dirs[0] / "prog", "#!/bin/sh\necho wrong\n", 0o644)
    (dirs[1] / "prog").mkdir()
    _write(dirs[2] / "prog", "#!/bin/sh\necho right\n", 0o755)
    env = {"PATH": os.pathsep.join(map(str, dirs))}
    assert run_out(["prog"], env=env, backend=backend) == b"right\n"
    only_bad = {"PATH": os.pathsep.join(map(str, dirs[:2]))}
    with pytest.raises(PermissionError):
        tether.spawn(["prog"], env=only_bad, backend=backend)
    with pytest.raises(FileNotFoundError):
        tether.spawn(["prog"], env={"PATH": str(tmp_path / "none")}, backend=backend)


def test_relative_program_runs_from_cwd(tmp_path: Path) -> None:
    _write(tmp_path / "here.sh", "#!/bin/sh\necho here\n", 0o755)
    assert run_out(["./here.sh"], cwd=tmp_path) == b"here\n"


def test_executable_replaces_the_program_but_not_argv0(backend: str) -> None:
    out = run_out(["pretend-name", "-c", "echo $0"], executable="/bin/sh", backend=backend)
    assert out == b"pretend-name\n"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"argv": []},
        {"argv": ["tr\0ue"]},
        {"argv": ["true", "a\0b"]},
        {"argv": ["true"], "cwd": "/tm\0p"},
        {"argv": ["true"], "executable": "/bin/tr\0ue"},
        {"argv": ["true"], "env": {"K\0": "v"}},
        {"argv": ["true"], "env": {"K": "v\0"}},
        {"argv": ["true"], "env": {"K=V": "v"}},
        {"argv": ["true"], "env": {"": "v"}},
        {"argv": ["true"], "start_new_session": True, "process_group": 0},
        {"argv": ["true"], "process_group": -1},
        {"argv": ["true"], "umask": 0o1000},
        {"argv": ["true"], "pass_fds": [-1]},
        {"argv": ["true"], "stdin": tether.STDOUT},
    ],
)
def test_bad_input_is_a_value_error_before_any_process(kwargs: dict[str, object]) -> None:
    argv = kwargs.pop("argv")
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        tether.spawn(argv, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("argv", ["true", b"true", None, [1]])
def test_wrongly_typed_argv_is_a_type_error(argv: object) -> None:
    with pytest.raises(TypeError):
        tether.spawn(argv)  # type: ignore[arg-type]


def test_too_large_arguments_fail_with_e2big(backend: str) -> None:
    with pytest.raises(tether.SpawnError) as one_string:
        tether.spawn(["true", "x" * (128 * 1024 + 1)], backend=backend)
    assert one_string.value.errno == errno.E2BIG
    with pytest.raises(tether.SpawnError) as in_total:
        tether.spawn(["true", *["y" * 100_000] * 400], backend=backend)
    assert in_total.value.errno == errno.E2BIG


# --- environment --------------------------------------------------------------------


def test_empty_env_is_empty(backend: str) -> None:
    assert run_out(["/usr/bin/env"], env={}, backend=backend) == b""


def test_env_duplicates_last_wins_and_bytes_work(backend: str) -> None:
    env: dict[object, object] = {"A": "1", b"A": b"2", b"B": b"\xff"}
    out = run_out(["/usr/bin/env"], env=env, backend=backend)  # type: ignore[arg-type]
    assert sorted(out.splitlines()) == [b"A=2", b"B=\xff"]


def test_env_none_inherits(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_TEST_MARK", "inherited")
    assert b"TETHER_TEST_MARK=inherited" in run_out(["/usr/bin/env"], backend=backend)


# --- stdio and fds ------------------------------------------------------------------


def test_only_stdio_and_pass_fds_reach_the_child(backend: str) -> None:
    leaky_read, leaky_write = os.pipe()
    passed_read, passed_write = os.pipe()
    try:
        os.set_inheritable(leaky_read, True)
        out = run_out([PY, "-c", LIST_FDS], pass_fds=[passed_read], backend=backend)
    finally:
        for fd in (leaky_read, leaky_write, passed_read, passed_write):
            os.close(fd)
    assert out.split() == [b"0", b"1", b"2", str(passed_read).encode()]


def test_high_numbered_pass_fd(backend: str) -> None:
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    high = limit - 1
    source = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(source, high, inheritable=False)
        out = run_out([PY, "-c", LIST_FDS], pass_fds=[high], backend=backend)
    finally:
        os.close(source)
        os.close(high)
    assert out.split() == [b"0", b"1", b"2", str(high).encode()]


@pytest.fixture
def fd_above_soft_limit() -> Iterator[int]:
    """An inheritable fd numbered above the soft RLIMIT_NOFILE, which is lowered under it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    high = soft - 1
    lowered = max(int(name) for name in os.listdir("/proc/self/fd")) + 32
    if lowered >= high:
        pytest.skip("the soft RLIMIT_NOFILE is too low to open an fd above a lowered one")
    source = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.dup2(source, high, inheritable=True)
    finally:
        os.close(source)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        yield high
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        os.close(high)


def test_inheritable_fd_above_the_soft_limit_never_reaches_the_child(
    backend: str, fd_above_soft_limit: int
) -> None:
    if backend == "posix_spawn" and not _posix_spawn._closes_from:
        # without closefrom, glibc cannot name it in a file action: refused, clearly
        with pytest.raises(tether.SpawnError, match="above the soft RLIMIT_NOFILE") as caught:
            tether.spawn(["true"], backend=backend)
        assert (caught.value.errno, caught.value.stage) == (errno.EBADF, "close_fds")
        return
    assert run_out([PY, "-c", LIST_FDS], backend=backend).split() == [b"0", b"1", b"2"]


def test_auto_passes_over_posix_spawn_when_an_fd_above_the_limit_would_leak(
    fd_above_soft_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tether._spawn, "AUTO_ORDER", ("posix_spawn", "fork"))  # no extension
    python_posix_spawn(monkeypatch)
    process = tether.spawn([PY, "-c", LIST_FDS], stdout=tether.PIPE)
    with process:
        assert process.stdout is not None
        assert process.stdout.read().split() == [b"0", b"1", b"2"]
    assert process.backend == "fork"


def test_stdio_choices(backend: str, tmp_path: Path) -> None:
    script = "import sys; sys.stdout.write(sys.stdin.read().upper()); sys.stderr.write('E')"
    to_devnull = tether.run([PY, "-c", script], stdin=tether.DEVNULL, capture=True)
    assert (to_devnull.stdout, to_devnull.stderr) == (b"", b"E")
    merged = tether.run(
        [PY, "-c", script], input=b"ab", stdout=tether.PIPE, stderr=tether.STDOUT, backend=backend
    )
    assert merged.stdout == b"ABE"
    assert merged.stderr is None
    target = tmp_path / "out.txt"
    with target.open("wb") as file:
        tether.run([PY, "-c", script], input=b"f", stdout=file, stderr=file.fileno(), check=True)
    assert target.read_bytes() == b"FE"


def test_swapped_standard_streams_are_not_clobbered(
    backend: str, capfd: pytest.CaptureFixture[str]
) -> None:
    tether.run(["sh", "-c", "echo out; echo err >&2"], stdout=2, stderr=1, backend=backend)
    captured = capfd.readouterr()
    assert (captured.out, captured.err) == ("err\n", "out\n")


def test_closed_fd_as_stdin_is_reported(backend: str) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    os.close(write_end)
    with pytest.raises(tether.SpawnError) as caught:
        tether.spawn(["true"], stdin=read_end, backend=backend)
    assert caught.value.errno == errno.EBADF
    assert caught.value.stage == "fd_map"


def test_emfile_while_creating_pipes_closes_every_partial_fd() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(name) for name in os.listdir("/proc/self/fd"))
    fillers = []  # fill the gaps below the highest fd, so exactly three slots stay free
    while (fd := os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)) < highest:
        fillers.append(fd)
    os.close(fd)
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 4, hard))
    try:
        with pytest.raises(OSError, match="Too many open files") as caught:
            tether.spawn(["true"], stdin=tether.PIPE, stdout=tether.PIPE, stderr=tether.PIPE)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for fd in fillers:
            os.close(fd)
    assert caught.value.errno == errno.EMFILE


def test_pidfd_shortage_falls_back_for_that_child(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_more_fds(*args: object) -> int:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(os, "pidfd_open", no_more_fds)
    python_posix_spawn(monkeypatch)  # the C spawn's shortage: tests/test_posix_spawn_c.py
    # posix_spawn's child gets its pidfd in C, recorded before control returns
    monkeypatch.setattr(tether._native.spawner, "pidfd_open_into", no_more_fds)
    process = tether.spawn(["sh", "-c", "exit 4"], backend="posix_spawn")
    monkeypatch.undo()
    assert process.pidfd is None
    assert _pidfd.pidfds_available(), "a shortage must not disable pidfds for good"
    assert process.wait() == tether.Exited(4)
    later = tether.spawn(["true"])
    assert later.pidfd is not None
    assert later.wait().success


# --- child-side setup ---------------------------------------------------------------


def _status_field(text: bytes, name: bytes) -> int:
    for line in text.splitlines():
        if line.startswith(name + b":"):
            return int(line.split()[1], 16)
    raise AssertionError(f"{name!r} not in /proc status")


def test_signal_state_is_reset(backend: str) -> None:
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
    try:
        status = run_out(["cat", "/proc/self/status"], backend=backend)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR2])
        signal.signal(signal.SIGUSR1, previous)
    bit = {sig: 1 << (sig - 1) for sig in signal.Signals}
    assert _status_field(status, b"SigBlk") == 0
    ignored = _status_field(status, b"SigIgn")
    assert not ignored & (bit[signal.SIGPIPE] | bit[signal.SIGXFSZ])
    assert not _status_field(status, b"SigCgt")


def test_restore_signals_false_keeps_sigpipe_ignored(backend: str) -> None:
    status = run_out(["cat", "/proc/self/status"], backend=backend, restore_signals=False)
    assert _status_field(status, b"SigIgn") & (1 << (signal.SIGPIPE - 1))


def test_new_session_and_process_group(backend: str) -> None:
    script = "import os; print(os.getpid(), os.getsid(0), os.getpgid(0))"
    pid, sid, pgid = map(
        int, run_out([PY, "-c", script], start_new_session=True, backend=backend).split()
    )
    assert pid == sid == pgid
    pid, sid, pgid = map(int, run_out([PY, "-c", script], process_group=0, backend=backend).split())
    assert pid == pgid
    assert sid == os.getsid(0)


def test_cwd_and_umask(tmp_path: Path) -> None:
    out = run_out(["sh", "-c", "pwd; umask"], cwd=tmp_path, umask=0o027)
    assert out.split() == [str(tmp_path).encode(), b"0027"]


def test_preexec_fn_runs_in_the_child_and_its_failure_is_reported(tmp_path: Path) -> None:
    assert run_out(["pwd"], preexec_fn=lambda: os.chdir(tmp_path)) == f"{tmp_path}\n".encode()
    assert os.getcwd() != str(tmp_path)

    def explode() -> None:
        raise RuntimeError("boom")

    with pytest.raises(tether.SpawnError, match="preexec_fn raised RuntimeError: boom") as caught:
        tether.spawn(["true"], preexec_fn=explode)
    assert caught.value.stage == "preexec_fn"


# --- concurrency --------------------------------------------------------------------


def test_spawn_storm_from_eight_threads(backend: str) -> None:
    """Eight spawning threads while two others churn the allocator and hold locks."""
    if backend == "fork" and sys.gettrace() is not None:
        # A fork child of a threaded parent runs Python before exec, traced by the
        # inherited tracer, which may wait for a lock another thread held at the fork.
        # `make test-all` runs this untraced on every interpreter.
        pytest.skip("the fork backend under a tracer (coverage) can deadlock its child")
    errors: list[BaseException] = []
    start = threading.Barrier(10)
    done_spawning = threading.Event()
    busy_lock = threading.Lock()
    logger = logging.getLogger("tether.tests.storm")

    def worker(index: int) -> None:
        try:
            start.wait()
            for round_ in range(15):
                token = f"{index}-{round_}".encode()
                done = tether.run(["cat"], input=token, capture=True, backend=backend)
                assert done.stdout == token
        except BaseException as exc:
            errors.append(exc)

    def churn() -> None:
        start.wait()
        while not done_spawning.is_set():
            with busy_lock:  # held while forks happen: a child must never need it
                blocks = [bytearray(4096 * n) for n in range(1, 64)]
                logger.debug("churned %d blocks", len(blocks))

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    churners = [threading.Thread(target=churn) for _ in range(2)]
    for thread in (*workers, *churners):
        thread.start()
    for thread in workers:
        thread.join()
    done_spawning.set()
    for thread in churners:
        thread.join()
    assert not errors


# --- out of processes -----------------------------------------------------------------


def _pids_cgroup_root() -> Path | None:
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            options = line.split(" - ", 1)[1].split()
            if options[0] == "cgroup" and "pids" in options[2].split(","):
                return Path(fields[4])
    return None


def test_eagain_from_pids_max_is_a_blocking_io_error(backend: str) -> None:
    root = _pids_cgroup_root()
    if os.geteuid() != 0 or root is None or not os.access(root, os.W_OK):
        pytest.skip("needs root and a writable cgroup v1 pids hierarchy")
    with open("/proc/self/cgroup") as own:
        here = next(line.split(":", 2)[2].strip() for line in own if ":pids:" in line)
    home = root / here.lstrip("/")
    jail = home / f"tether-test-{os.getpid()}"
    jail.mkdir()
    try:
        (jail / "cgroup.procs").write_text(str(os.getpid()))
        # Migration may exceed the limit, forks may not: with 0, no task can be added,
        # however many threads come and go meanwhile.
        (jail / "pids.max").write_text("0")
        try:
            with pytest.raises(BlockingIOError) as caught:
                tether.spawn(["true"], backend=backend)
        finally:
            (home / "cgroup.procs").write_text(str(os.getpid()))
    finally:
        jail.rmdir()
    assert isinstance(caught.value, tether.SpawnError)
    assert caught.value.errno == errno.EAGAIN
    assert caught.value.stage == "fork"


@pytest.mark.parametrize("option", ["text", "capture_output", "shell", "close_fds"])
def test_unknown_options_are_refused(option: str) -> None:
    with pytest.raises(TypeError, match=f"unknown spawn option.*{option}"):
        tether.spawn(["true"], **{option: True})  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=option):
        tether.run(["true"], **{option: True})  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "report",
    [b"", b"exec", b"exec:", b"bogus:2:", b"exec:two:", b"exec:99999:", b"exec:0:", b"\xff:2:"],
)
def test_a_malformed_fork_report_is_reported_not_guessed(report: bytes) -> None:
    from tether._spawn import _fork, make_plan

    error = _fork._decode_report(report, make_plan(["true"]))
    assert error.errno == errno.EIO
    assert error.stage == "fork"
    assert "malformed" in str(error.strerror)


def test_a_well_formed_fork_report_keeps_its_fields() -> None:
    from tether._spawn import _fork, make_plan

    error = _fork._decode_report(b"chdir:2:", make_plan(["true"], cwd="/nowhere"))
    assert (error.errno, error.stage, error.filename) == (errno.ENOENT, "chdir", "/nowhere")
    raised = _fork._decode_report(b"preexec_fn:0:ValueError: no", make_plan(["true"]))
    assert raised.errno is None
    assert raised.stage == "preexec_fn"
    assert "ValueError: no" in str(raised)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"env": [("A", "1")]}, TypeError),
        ({"env": "A=1"}, TypeError),
        ({"extra_groups": [None]}, TypeError),
        ({"pass_fds": [2**31]}, ValueError),
        ({"stdout": 2**40}, ValueError),
        ({"process_group": True}, TypeError),
        ({"process_group": 1.5}, TypeError),
    ],
)
def test_bad_input_is_refused_before_any_process_exists(
    options: dict[str, object], error: type[Exception]
) -> None:
    with pytest.raises(error):
        tether.spawn(["true"], **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(("sig", "error"), [(0, ValueError), (15.5, TypeError), (True, TypeError)])
def test_stop_refuses_what_is_not_a_stop_signal(sig: object, error: type[Exception]) -> None:
    with tether.spawn(["sleep", "60"]) as process:
        with pytest.raises(error):
            process.stop(sig=sig)  # type: ignore[arg-type]
        assert process.poll() is None, "a refused stop leaves the child alone"


def test_set_limits_takes_only_limits() -> None:
    with tether.spawn(["sleep", "60"]) as process, pytest.raises(TypeError):
        process.set_limits({"nofile": 64})  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [b"bytes", bytearray(b"x"), memoryview(b"y")])
def test_run_takes_bytes_like_input(value: bytes) -> None:
    assert tether.run(["cat"], input=value, capture=True).stdout == bytes(value)


def test_run_refuses_text_input_before_spawning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tether._core._spawning, "start", lambda p: pytest.fail("spawned"))
    with pytest.raises(TypeError, match="bytes-like"):
        tether.run(["cat"], input="text")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options", [case[1] for case in OPTION_CASES], ids=[c[0] for c in OPTION_CASES]
)
def test_the_auto_shortcut_agrees_with_the_full_search(options: dict[str, object]) -> None:
    """``auto`` returns the native backend for any plan without ``preexec_fn`` before it
    searches: that is right only while native accepts every other option."""
    from tether._spawn import AUTO_ORDER, BACKENDS, choose_backend, ineligible_reason, make_plan

    plan = make_plan(["true"], **options)  # type: ignore[arg-type]
    searched = next(
        BACKENDS[name] for name in AUTO_ORDER if ineligible_reason(BACKENDS[name], plan) is None
    )
    assert choose_backend(plan, "auto") is searched

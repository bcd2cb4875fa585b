"""The native spawner, proven from the outside: /proc of the child shows each option.

Each test starts a child that waits on its stdin, reads what the kernel says about
it under /proc/PID, then lets it go. Options shared with the other backends are
also covered by test_spawn.py, which runs over every backend.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
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
from tests.fdlimits import no_free_fds
from tether._linux import _pidfd
from tether._spawn import (
    BACKENDS,
    ChildStdio,
    SpawnReceipt,
    make_plan,
    start_child,
    undo,
)

PY = sys.executable
PR_GET_DUMPABLE = 3
WAIT = "import sys; print('ready', flush=True); sys.stdin.read()"

pytestmark = pytest.mark.skipif(not tether._native.available, reason="native spawner not built")


@contextlib.contextmanager
def waiting_child(**options: object) -> Iterator[tether.Process]:
    """A native child that has printed "ready" and waits until the block ends."""
    process = tether.spawn(
        [PY, "-c", WAIT],
        backend="native",
        stdin=tether.PIPE,
        stdout=tether.PIPE,
        **options,  # type: ignore[arg-type]
    )
    with process:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        yield process


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as status:
        return dict(line.rstrip("\n").split(":\t", 1) for line in status if ":\t" in line)


def proc_limits(pid: int) -> dict[str, tuple[str, str]]:
    found = {}
    with open(f"/proc/{pid}/limits") as limits:
        next(limits)
        for line in limits:
            name, soft, hard = line[:26].strip(), line[26:47].strip(), line[47:68].strip()
            found[name] = (soft, hard)
    return found


def test_clone_returns_the_pidfd_from_birth() -> None:
    with waiting_child() as process:
        assert process.backend == "native"
        assert process.pidfd is not None
        assert tether._native.clone_pidfd_used() is True
        info = os.readlink(f"/proc/self/fd/{process.pidfd}")
        assert "pidfd" in info
        with open(f"/proc/self/fdinfo/{process.pidfd}") as fdinfo:
            assert f"Pid:\t{process.pid}\n" in fdinfo.read()


def test_limits_are_applied_before_exec() -> None:
    limits = tether.Limits(nofile=(64, 128), core=0, cpu=("20s", "30s"))
    with waiting_child(limits=limits) as process:
        seen = proc_limits(process.pid)
    assert seen["Max open files"] == ("64", "128")
    assert seen["Max core file size"] == ("0", "0")
    assert seen["Max cpu time"] == ("20", "30")


def test_signal_state_and_no_new_privs() -> None:
    previous = signal.signal(signal.SIGUSR1, lambda *_: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
    try:
        with waiting_child(no_new_privs=True) as process:
            status = proc_status(process.pid)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR2])
        signal.signal(signal.SIGUSR1, previous)
    assert int(status["SigBlk"], 16) == 0  # (SigIgn is Python's own here: see test_spawn)
    assert status["NoNewPrivs"] == "1"


@pytest.mark.skipif(os.geteuid() != 0, reason="changing credentials needs root")
def test_credentials() -> None:
    nobody = 65534
    # cat, not Python: nobody may not read root's Python. The ids are set before exec,
    # so /proc shows them as soon as spawn() returns.
    process = tether.spawn(
        ["cat"], user=nobody, group=nobody, extra_groups=[nobody, 4], stdin=tether.PIPE
    )
    with process:
        assert process.backend == "native"
        status = proc_status(process.pid)
    libc = ctypes.CDLL(None)
    assert libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1, "the child's setuid touched our mm"
    assert status["Uid"].split() == [str(nobody)] * 4
    assert status["Gid"].split() == [str(nobody)] * 4
    assert sorted(status["Groups"].split()) == ["4", str(nobody)]


def test_cwd_umask_session_and_fds(tmp_path: Path) -> None:
    passed_read, passed_write = os.pipe()
    leaky_read, leaky_write = os.pipe()
    os.set_inheritable(leaky_read, True)
    try:
        with waiting_child(
            cwd=tmp_path, umask=0o077, start_new_session=True, pass_fds=[passed_read]
        ) as process:
            cwd = os.readlink(f"/proc/{process.pid}/cwd")
            status = proc_status(process.pid)
            fds = sorted(int(fd) for fd in os.listdir(f"/proc/{process.pid}/fd"))
            sid, pgid = os.getsid(process.pid), os.getpgid(process.pid)
    finally:
        for fd in (passed_read, passed_write, leaky_read, leaky_write):
            os.close(fd)
    assert cwd == str(tmp_path)
    assert status["Umask"] == "0077"
    assert sid == pgid == process.pid
    assert fds == [0, 1, 2, passed_read]


@pytest.mark.parametrize(
    ("options", "stage", "code"),
    [
        ({"cwd": "/no/such/dir"}, "chdir", errno.ENOENT),
        ({"process_group": 2**22}, "setpgid", errno.EPERM),  # no such group in our session
    ],
)
def test_failures_report_their_stage(options: dict[str, object], stage: str, code: int) -> None:
    with pytest.raises(tether.SpawnError) as caught:
        tether.spawn(["true"], backend="native", **options)  # type: ignore[arg-type]
    assert (caught.value.stage, caught.value.errno) == (stage, code)


def test_a_refused_rlimit_is_reported_by_the_child() -> None:
    # Limits.check() refuses this before any spawn; the plan is forged here to prove
    # that the child still reports a refusal (a race with a lowered limit) properly.
    plan = make_plan(["true"])._replace(limits=((resource.RLIMIT_NOFILE, 2**31 - 1, 2**31 - 1),))
    receipt, stdio = SpawnReceipt(), ChildStdio()
    with pytest.raises(tether.SpawnError) as caught:
        start_child(plan, BACKENDS["native"], receipt, stdio)
    assert (caught.value.stage, caught.value.errno) == ("setrlimit", errno.EPERM)
    assert receipt.pid == 0  # the failed child was reaped: nothing to undo
    undo(receipt, stdio)


def _cgroup2_mount() -> Path | None:
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            if line.split(" - ", 1)[1].split()[0] == "cgroup2":
                return Path(fields[4])
    return None


def test_cgroup_placement() -> None:
    mount = _cgroup2_mount()
    if os.geteuid() != 0 or mount is None or not os.access(mount, os.W_OK):
        pytest.skip("needs root and a writable cgroup v2 mount")
    group = mount / f"tether-test-{os.getpid()}"
    group.mkdir()
    try:
        with waiting_child(cgroup=group) as process, open(f"/proc/{process.pid}/cgroup") as f:
            lines = f.read().splitlines()
        assert f"0::/{group.name}" in lines
    finally:
        group.rmdir()


def test_missing_cgroup_is_reported_before_spawn(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        tether.spawn(["true"], cgroup=tmp_path / "nope")
    assert caught.value.stage == "cgroup"  # type: ignore[attr-defined]


def test_no_pidfd_mode_still_spawns(no_pidfd: None) -> None:
    process = tether.spawn(["sh", "-c", "exit 5"], backend="native")
    assert process.pidfd is None
    assert process.wait() == tether.Exited(5)


# --- pdeathsig ------------------------------------------------------------------------


def test_pdeathsig_child_outlives_the_short_lived_thread_that_spawned_it() -> None:
    handles: list[tether.Process] = []

    def short_lived() -> None:
        handles.append(
            tether.spawn(
                [PY, "-c", WAIT], pdeathsig=signal.SIGKILL, stdin=tether.PIPE, stdout=tether.PIPE
            )
        )

    worker = threading.Thread(target=short_lived)
    worker.start()
    worker.join()
    (process,) = handles
    with process:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        assert process.poll() is None, "the thread's exit must not kill the child"
        assert proc_status(process.pid)["PPid"] == str(os.getpid())


PARENT_SCRIPT = """
import signal, sys, tether
child = tether.spawn([sys.executable, "-c", "import time; time.sleep(60)"],
                     pdeathsig=signal.SIGKILL)
print(child.pid, flush=True)
sys.stdin.read()
"""


def test_pdeathsig_child_dies_with_its_parent_process() -> None:
    parent = tether.spawn([PY, "-c", PARENT_SCRIPT], stdin=tether.PIPE, stdout=tether.PIPE)
    with parent:
        assert parent.stdout is not None
        grandchild = int(parent.stdout.readline())
        pidfd = os.pidfd_open(grandchild)  # its pid is held: the parent has not reaped it
        try:
            parent.kill()
            assert parent.wait() == tether.Signaled(signal.SIGKILL)
            assert _pidfd.wait_readable(pidfd, 30), "the grandchild outlived its parent"
        finally:
            os.close(pidfd)


def test_no_fd_for_the_pidfd_falls_back_for_that_child() -> None:
    with no_free_fds():
        process = tether.spawn(["sh", "-c", "exit 6"], backend="native")
    assert process.pidfd is None
    assert _pidfd.pidfds_available()
    assert process.wait() == tether.Exited(6)


def test_limits_of_a_running_child_can_be_read_and_changed() -> None:
    with waiting_child(limits=tether.Limits(nofile=(64, 128))) as process:
        assert process.limits().nofile == (64, 128)
        process.set_limits(tether.Limits(nofile=(32, 100), core=0))
        assert proc_limits(process.pid)["Max open files"] == ("32", "100")
        assert process.limits().core == (0, 0)
    with pytest.raises(ProcessLookupError):
        process.limits()
    with pytest.raises(ProcessLookupError):
        process.set_limits(tether.Limits(core=0))


@pytest.mark.skipif(os.geteuid() != 0, reason="changing credentials needs root")
@pytest.mark.parametrize("path", ["native", "native_copy", "fork"])
def test_pdeathsig_survives_a_change_of_ids(path: str) -> None:
    # native: through the id helper, which arms it after the ids change; native_copy:
    # the helper switched off, the child changes them on a copy of our memory.
    script = f"""
import signal, sys, tether, tether._native
if {path == "native_copy"!r}:
    tether._native.spawner.set_id_helper(None)
child = tether.spawn(["sleep", "60"], pdeathsig=signal.SIGKILL, user=65534, group=65534,
                     backend={path.split("_")[0]!r})
print(child.pid, flush=True)
sys.stdin.read()
"""
    parent = tether.spawn([PY, "-c", script], stdin=tether.PIPE, stdout=tether.PIPE)
    with parent:
        assert parent.stdout is not None
        grandchild = int(parent.stdout.readline())
        pidfd = os.pidfd_open(grandchild)
        try:
            parent.kill()
            parent.wait()
            assert _pidfd.wait_readable(pidfd, 30), "the ids change disarmed pdeathsig"
        finally:
            os.close(pidfd)


def test_the_c_stage_names_are_the_python_literal() -> None:
    """``_spawner.c`` names its stages as ``tether.SpawnStage`` does, in the same order."""
    from typing import get_args

    c_stages = tether._native.spawner.STAGES
    python_stages = get_args(tether.SpawnStage)
    assert set(c_stages) <= set(python_stages)
    assert set(python_stages) - set(c_stages) == {"fork", "preexec_fn"}
    assert list(c_stages) == [stage for stage in python_stages if stage in c_stages]


def test_the_stub_file_declares_exactly_what_the_extension_exports() -> None:
    """``_spawner.pyi`` is what mypy checks callers against: a function missing from it,
    or one it names that the C module no longer has, would go unnoticed."""
    import ast

    from tether._native import spawner

    stub = Path(tether._native.__file__).with_name("_spawner.pyi")
    body = ast.parse(stub.read_text()).body
    declared = {node.name for node in body if isinstance(node, ast.FunctionDef)} | {
        node.target.id
        for node in body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }
    exported = {name for name in vars(spawner) if not name.startswith("_")}
    assert declared == exported

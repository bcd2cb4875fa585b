"""The id helper (``_native/_setids.c``): a change of ids on a memory map of the child's own.

A native child that changes its user or group ids must not do it on the parent's
memory (the kernel would mark the *parent* non-dumpable). It does every other step of
its setup there, then execs the id helper, which changes the ids on a fresh map and
execs the program; without the helper, the child is cloned with a copy of the parent's
memory. Each behaviour here is checked on both paths ("helper" and "copy"), and the
helper's own protocol (its report pipe and command block) is checked by running it by
hand. The cost of each path is in benchmarks/bench_heap.py, not here.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether
import tether._native

PY = sys.executable
NOBODY = 65534
PR_GET_DUMPABLE = 3

pytestmark = [
    pytest.mark.skipif(not tether._native.available, reason="native spawner not built"),
]
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing ids needs root")


def helper_path() -> str:
    path = tether._native.id_helper()
    assert path is not None, "the id helper was not built or not registered"
    return path


@pytest.fixture(params=["helper", "copy"])
def id_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each way a native child changes its ids: through the helper, or on a copy."""
    spawner = tether._native.spawner
    registered = spawner.id_helper()
    if request.param == "copy":
        spawner.set_id_helper(None)
    else:
        assert registered is not None, "the id helper was not built or not registered"
    try:
        yield str(request.param)
    finally:
        spawner.set_id_helper(registered)


def test_the_helper_is_built_next_to_the_spawner_and_registered() -> None:
    path = Path(helper_path())
    assert path.name == tether._native.ID_HELPER_NAME
    assert path.parent == Path(tether._native.spawner.__file__).resolve().parent
    assert os.access(path, os.X_OK)


@as_root
def test_a_change_of_ids_keeps_every_other_option(id_path: str, tmp_path: Path) -> None:
    kept_read, kept_write = os.pipe()
    high = os.dup2(kept_write, 97, inheritable=False)
    try:
        process = tether.spawn(
            ["cat"],
            user=NOBODY,
            group=NOBODY,
            extra_groups=[4],
            cwd=tmp_path,
            umask=0o027,
            env={"ONLY": "this"},
            pass_fds=[high],
            start_new_session=True,
            limits=tether.Limits(nofile=(50, 60)),
            no_new_privs=True,
            stdin=tether.PIPE,
            stdout=tether.PIPE,
        )
        with process:
            assert process.backend == "native"
            assert process.stdin is not None
            assert process.stdout is not None
            # Until cat echoes, its exec may not have set up its /proc/PID/environ yet.
            process.stdin.write(b"echo\n")
            process.stdin.flush()
            assert process.stdout.readline() == b"echo\n"
            proc = Path(f"/proc/{process.pid}")
            status = dict(
                line.split(":\t", 1) for line in (proc / "status").read_text().splitlines()
            )
            environ = (proc / "environ").read_bytes()
            fds = sorted(int(name) for name in os.listdir(proc / "fd"))
            cwd = os.readlink(proc / "cwd")
            limits = (proc / "limits").read_text()
            session = os.getsid(process.pid)
    finally:
        for fd in (kept_read, kept_write, high):
            os.close(fd)
    assert status["Uid"].split() == [str(NOBODY)] * 4
    assert status["Gid"].split() == [str(NOBODY)] * 4
    assert status["Groups"].split() == ["4"]
    assert status["Umask"].strip() == "0027"
    assert status["NoNewPrivs"].strip() == "1"
    assert environ == b"ONLY=this\0"
    assert fds == [0, 1, 2, high], "the helper's report pipe or command block leaked"
    assert cwd == str(tmp_path)
    assert "Max open files            50                   60" in limits
    assert session == process.pid
    libc = ctypes.CDLL(None)
    assert libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1, "the child's setuid touched our mm"


@as_root
def test_the_inherited_environment_and_argv0_reach_the_program(
    id_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_ID_HELPER_TEST", "inherited value")
    done = tether.run(
        ["sh", "-c", 'echo "$0|$TETHER_ID_HELPER_TEST|$(id -u)"'],
        user=NOBODY,
        capture=True,
        check=True,
    )
    assert done.stdout == b"sh|inherited value|65534\n"


@as_root
def test_a_program_that_cannot_be_exec_d_as_the_new_user_is_a_spawn_error(
    id_path: str, tmp_path: Path
) -> None:
    hidden = tmp_path / "private"
    hidden.mkdir(mode=0o700)
    program = hidden / "prog"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    with pytest.raises(tether.SpawnError) as caught:
        tether.spawn([str(program)], user=NOBODY)
    assert caught.value.errno == errno.EACCES  # root may run it, nobody may not reach it
    assert caught.value.stage == "exec"


@as_root
@pytest.mark.parametrize("backend", ["native", "fork"])
def test_a_refused_change_of_ids_is_a_setuid_spawn_error(backend: str) -> None:
    # A process that is not root (it gave its ids up) may not become nobody: both paths
    # say so, at the setuid stage. Spawned once before, so that nothing is left to import
    # from files the new uid may not read.
    script = f"""
import errno, os, tether
tether.run(["true"], backend={backend!r}, check=True)
os.setresgid(1000, 1000, 1000)
os.setresuid(1000, 1000, 1000)
try:
    tether.spawn(["true"], user={NOBODY}, backend={backend!r})
except tether.SpawnError as error:
    print(error.stage, errno.errorcode[error.errno])
"""
    done = tether.run([PY, "-c", script], capture=True, check=True)
    assert done.stdout == b"setuid EPERM\n"


@as_root
def test_privileges_an_exec_would_not_carry_fall_back_to_the_copy() -> None:
    # Without CAP_SETUID in the bounding set, root keeps it in this process, but an exec
    # (the helper's) does not get it back: the helper is refused, the copy path succeeds,
    # and the spawner stops using the helper.
    script = f"""
import ctypes, tether, tether._native
assert tether._native.id_helper() is not None
PR_CAPBSET_DROP, CAP_SETUID = 24, 7
assert ctypes.CDLL(None, use_errno=True).prctl(PR_CAPBSET_DROP, CAP_SETUID, 0, 0, 0) == 0
done = tether.run(["id", "-u"], user={NOBODY}, capture=True, check=True)
print(done.stdout.decode().strip(), tether._native.id_helper())
"""
    done = tether.run([PY, "-c", script], capture=True, check=True)
    assert done.stdout == f"{NOBODY} None\n".encode()


@as_root
def test_a_change_of_ids_goes_through_the_registered_helper(tmp_path: Path) -> None:
    # A stand-in that leaves a mark and execs the real helper: proof that the helper
    # path is the one taken (the copy path would never run it).
    spawner = tether._native.spawner
    registered = spawner.id_helper()
    mark = tmp_path / "ran"
    stand_in = tmp_path / "stand-in"
    stand_in.write_text(f'#!/bin/sh\necho "$@" > {mark}\nexec {helper_path()} "$@"\n')
    stand_in.chmod(0o755)
    spawner.set_id_helper(os.fsencode(stand_in))
    try:
        done = tether.run(["id", "-u"], user=NOBODY, capture=True, check=True)
        assert spawner.id_helper() == os.fsencode(stand_in)
    finally:
        spawner.set_id_helper(registered)
    assert done.stdout == b"65534\n"
    # REPORT_FD BLOCK_FD PARENT_PID PDEATHSIG CAPS GID UID NGROUPS: no command, no env
    report_fd, block_fd, parent, pdeathsig, _, *ids = mark.read_text().split()
    assert ids == ["-1", str(NOBODY), "-1"]
    assert (parent, pdeathsig) == (str(os.getpid()), "0")
    assert int(report_fd) > 2
    assert int(block_fd) > 2


@as_root
def test_a_busy_helper_fails_one_spawn_over_to_the_copy_and_stays_in_use(tmp_path: Path) -> None:
    # ETXTBSY (the file open for writing) is this spawn's trouble, not the helper's.
    spawner = tether._native.spawner
    registered = spawner.id_helper()
    stand_in = tmp_path / "_setids"
    stand_in.write_bytes(Path(helper_path()).read_bytes())
    stand_in.chmod(0o755)
    spawner.set_id_helper(os.fsencode(stand_in))
    try:
        with open(stand_in, "r+b"):
            done = tether.run(["id", "-u"], user=NOBODY, capture=True, check=True)
        assert done.stdout == b"65534\n"
        assert spawner.id_helper() == os.fsencode(stand_in)
        done = tether.run(["id", "-u"], user=NOBODY, capture=True, check=True)
        assert done.stdout == b"65534\n"
        assert spawner.id_helper() == os.fsencode(stand_in)
    finally:
        spawner.set_id_helper(registered)


@as_root
def test_too_many_groups_are_a_setgroups_spawn_error(id_path: str) -> None:
    too_many = 65537  # NGROUPS_MAX + 1
    with pytest.raises(tether.SpawnError) as caught:
        tether.spawn(["true"], user=NOBODY, extra_groups=list(range(too_many)))
    assert caught.value.stage == "setgroups"
    assert caught.value.errno == errno.EINVAL


@as_root
@pytest.mark.parametrize("path", ["helper", "copy"])
def test_a_capability_the_caller_dropped_is_not_regained_by_the_helper_s_exec(path: str) -> None:
    # Root without CAP_SETUID in its effective and permitted sets (the bounding set still
    # has it, so an exec by root would get it back) may not become nobody on either path.
    script = f"""
import ctypes, errno, tether, tether._native
if {path == "copy"!r}:
    tether._native.spawner.set_id_helper(None)
tether.run(["true"], check=True)
libc = ctypes.CDLL(None, use_errno=True)
header = (ctypes.c_uint32 * 2)(0x20080522, 0)
data = (ctypes.c_uint32 * 6)()
assert libc.capget(header, data) == 0
CAP_SETUID = 7
data[0] &= ~(1 << CAP_SETUID)  # effective
data[1] &= ~(1 << CAP_SETUID)  # permitted
assert libc.capset(header, data) == 0, ctypes.get_errno()
try:
    tether.spawn(["true"], user={NOBODY})
except tether.SpawnError as error:
    print(error.stage, errno.errorcode[error.errno], tether._native.id_helper() is not None)
"""
    done = tether.run([PY, "-c", script], capture=True, check=True)
    assert done.stdout == f"setuid EPERM {path == 'helper'}\n".encode()


@as_root
@pytest.mark.parametrize("missing", ["absent", "not_executable"])
def test_a_helper_that_cannot_run_is_dropped_and_the_spawn_still_made(
    missing: str, tmp_path: Path
) -> None:
    spawner = tether._native.spawner
    registered = spawner.id_helper()
    stand_in = tmp_path / "_setids"
    if missing == "not_executable":
        stand_in.write_bytes(Path(helper_path()).read_bytes())
        stand_in.chmod(0o644)
    spawner.set_id_helper(os.fsencode(stand_in))
    try:
        done = tether.run(["id", "-u"], user=NOBODY, capture=True, check=True)
        assert done.stdout == b"65534\n"
        assert spawner.id_helper() is None
    finally:
        spawner.set_id_helper(registered)
    assert ctypes.CDLL(None).prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 1


@as_root
def test_children_that_change_ids_from_many_threads_at_once(id_path: str) -> None:
    import threading

    outputs: list[bytes] = []
    errors: list[BaseException] = []

    def spawn_some() -> None:
        try:
            for _ in range(5):
                done = tether.run(["id", "-u"], user=NOBODY, capture=True, check=True)
                outputs.append(done.stdout or b"")
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=spawn_some) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert outputs == [b"65534\n"] * 20


def test_set_id_helper_refuses_bad_paths() -> None:
    spawner = tether._native.spawner
    registered = spawner.id_helper()
    try:
        with pytest.raises(TypeError):
            spawner.set_id_helper("/a/str")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="not a usable path"):
            spawner.set_id_helper(b"")
        with pytest.raises(ValueError, match="not a usable path"):
            spawner.set_id_helper(b"/a\0b")
        with pytest.raises(ValueError, match="not a usable path"):
            spawner.set_id_helper(b"/" * 5000)
    finally:
        spawner.set_id_helper(registered)
    assert spawner.id_helper() == registered


# --- the helper's protocol, by hand --------------------------------------------------------


ALL_CAPABILITIES = ":".join(["ffffffffffffffff"] * 3)
"""The helper's CAPS argument that narrows nothing."""
KEEP_IDS = ("-1", "-1", "-1")
"""GID, UID and NGROUPS that change nothing."""


def _run_helper(
    block: bytes,
    *ids: str,
    parent: int | None = None,
    pdeathsig: int = 0,
    capabilities: str = ALL_CAPABILITIES,
) -> tuple[tether.Status, bytes, bytes]:
    """Run the helper with *block* as its command: (status, report, stdout)."""
    report_read, report_write = os.pipe()
    command = os.memfd_create("command")
    os.write(command, block)
    parent = os.getpid() if parent is None else parent
    try:
        process = tether.spawn(
            [
                helper_path(),
                str(report_write),
                str(command),
                str(parent),
                str(int(pdeathsig)),
                capabilities,
                *ids,
            ],
            pass_fds=[report_write, command],
            env={},
            stdout=tether.PIPE,
        )
        with process:
            os.close(report_write)
            report_write = -1
            assert process.stdout is not None
            out = process.stdout.read()
            report = b""
            while chunk := os.read(report_read, 64):
                report += chunk
            status = process.wait()
    finally:
        for fd in (report_read, report_write, command):
            if fd >= 0:
                os.close(fd)
    return status, report, out


def _exit_code(status: tether.Status) -> int:
    assert isinstance(status, tether.Exited)
    return status.exit_code


def test_the_helper_execs_the_block_s_command_with_its_environment_and_reports_nothing() -> None:
    block = b"/bin/sh\0" + b"3\0" + b"named\0-c\0echo $0 $A; ls /proc/self/fd\0" + b"A=1\0B=2\0"
    status, report, out = _run_helper(block, *KEEP_IDS)
    assert _exit_code(status) == 0
    assert report == b"", "a successful exec closes the report pipe with nothing written"
    assert out.split(b"\n")[0] == b"named 1"
    assert sorted(int(fd) for fd in out.split()[2:]) == [0, 1, 2, 3]  # 3: ls's own listing


def test_the_helper_reports_a_failed_exec_as_errno_and_step() -> None:
    status, report, _ = _run_helper(b"/nonexistent/prog\0" + b"1\0" + b"prog\0", *KEEP_IDS)
    assert _exit_code(status) == 127
    assert struct.unpack("ii", report) == (errno.ENOENT, 6)


@pytest.mark.parametrize(
    "block",
    [b"", b"/bin/true\0", b"/bin/true\0" + b"x\0", b"/bin/true\0" + b"3\0" + b"true\0"],
    ids=["empty", "no_count", "bad_count", "short_argv"],
)
def test_the_helper_reports_a_malformed_command_block(block: bytes) -> None:
    status, report, _ = _run_helper(block, *KEEP_IDS)
    assert _exit_code(status) == 127
    reported_errno, step = struct.unpack("ii", report)
    assert step == 1
    assert reported_errno != 0


TRUE_BLOCK = b"/bin/true\0" + b"1\0" + b"true\0"


@pytest.mark.parametrize(
    ("capabilities", "ids"),
    [
        ("ff:ff", KEEP_IDS),
        ("ff:ff:ff:ff", KEEP_IDS),
        ("-1:0:0", KEEP_IDS),
        (ALL_CAPABILITIES, ("-1", "-1")),
        (ALL_CAPABILITIES, ("-1", "-1", "2", "5")),
        (ALL_CAPABILITIES, ("-1", "-1", "1", "5", "6")),
        (ALL_CAPABILITIES, ("-1", "-2", "-1")),
        (ALL_CAPABILITIES, ("4294967295", "-1", "-1")),
        (ALL_CAPABILITIES, ("-1", "-1", "1", "x")),
    ],
    ids=[
        "caps_short",
        "caps_long",
        "caps_signed",
        "ids_missing",
        "group_missing",
        "group_extra",
        "uid_below_range",
        "gid_above_range",
        "group_not_a_number",
    ],
)
def test_the_helper_reports_bad_arguments_rather_than_running_anything(
    capabilities: str, ids: tuple[str, ...]
) -> None:
    # Started by the spawner (a report fd open), bad arguments are a report like any
    # failed step: never a silent exit the spawner would take for the program's own.
    status, report, out = _run_helper(TRUE_BLOCK, *ids, capabilities=capabilities)
    assert _exit_code(status) == 127
    assert struct.unpack("ii", report) == (errno.EINVAL, 1)
    assert out == b""


def test_the_helper_sends_the_parent_death_signal_when_the_parent_is_gone_already() -> None:
    # PARENT_PID is not our parent: as if the spawner died before the signal was armed.
    status, report, _ = _run_helper(
        TRUE_BLOCK, *KEEP_IDS, parent=os.getppid(), pdeathsig=signal.SIGKILL
    )
    assert status == tether.Signaled(signal.SIGKILL)
    assert report == b""


@pytest.mark.parametrize(
    "args",
    [[], ["x", "4", "1", "0", "-1", "-1", "-1"], ["3", "4", "1", "0", "-1", "-1", "2", "5"]],
    ids=["none", "not_a_number", "report_fd_not_open"],
)
def test_the_helper_started_by_hand_explains_itself(args: list[str]) -> None:
    done = tether.run([helper_path(), *args], capture=True)
    assert isinstance(done.status, tether.Exited)
    assert done.status.exit_code == 2
    assert done.stderr is not None
    assert b"usage: _setids" in done.stderr


@as_root
def test_a_child_in_a_pid_namespace_changes_its_ids_through_either_path(id_path: str) -> None:
    # kill="namespace" children are born into their namespace from our side (setns): the
    # helper runs there too, where our pid reads as 0, and pdeathsig is armed after it.
    with tether.Supervisor(kill="namespace") as sup:
        process = sup.spawn(
            ["sh", "-c", 'echo "$(id -u) $$"'],
            user=NOBODY,
            group=NOBODY,
            pdeathsig=signal.SIGKILL,
            stdout=tether.PIPE,
        )
        assert process.stdout is not None
        out = process.stdout.read()
        assert process.wait() == tether.Exited(0)
    uid, pid_inside = out.split()
    assert uid == b"65534"
    assert int(pid_inside) != process.pid  # a pid of the child's own namespace

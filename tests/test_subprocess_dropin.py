"""``tether.subprocess`` as a drop-in: the surface beyond CPython's own tests.

CPython's ``test.test_subprocess`` runs against the drop-in in ``make conformance``;
these tests pin what it does not reach: the exceptions' classes and pickling, the
errors of a failed spawn, text mode, resumable ``communicate``, fds, ``preexec_fn``,
credentials, EPIPE, the Ctrl-C courtesy wait, and interrupts landing anywhere.
"""

from __future__ import annotations

import errno
import os
import pickle
import signal
import subprocess as std
import sys
from typing import Any

import pytest

import tether
from tests.test_interrupts import _storm_loop
from tether import subprocess
from tether._core._reaper import REAPER

PY = sys.executable


def _py(code: str) -> list[str]:
    return [PY, "-c", code]


def test_the_module_offers_the_standard_names() -> None:
    for name in std.__all__:
        assert hasattr(subprocess, name), name
    assert set(subprocess.__all__) == set(std.__all__)
    assert subprocess.list2cmdline(["a b", "c"]) == std.list2cmdline(["a b", "c"])
    assert (subprocess.PIPE, subprocess.STDOUT, subprocess.DEVNULL) == (
        std.PIPE,
        std.STDOUT,
        std.DEVNULL,
    )
    assert tether.Popen is subprocess.Popen
    assert subprocess.Popen[bytes].__origin__ is subprocess.Popen  # type: ignore[attr-defined]


def test_exceptions_are_the_standard_ones_and_tethers() -> None:
    error = subprocess.CalledProcessError(3, "cmd", b"out", b"err")
    assert isinstance(error, std.CalledProcessError)
    assert isinstance(error, tether.CalledProcessError)
    assert str(error) == str(std.CalledProcessError(3, "cmd"))
    assert error.status == tether.Exited(3)
    assert subprocess.CalledProcessError(-9, "x").status == tether.Signaled(signal.SIGKILL)
    assert subprocess.CalledProcessError(-99999, "x").status is None
    timeout = subprocess.TimeoutExpired("cmd", 1.5, b"o")
    assert isinstance(timeout, std.TimeoutExpired)
    assert isinstance(timeout, tether.TimeoutExpired)
    assert timeout.cmd == "cmd"  # a string stays a string
    assert str(timeout) == str(std.TimeoutExpired("cmd", 1.5))
    for original in (error, timeout):
        copy = pickle.loads(pickle.dumps(original))
        assert type(copy) is type(original)
        assert (copy.cmd, copy.output, copy.stderr) == (
            original.cmd,
            original.output,
            original.stderr,
        )
        assert str(copy) == str(original)


def test_run_captures_and_checks_like_the_standard_module() -> None:
    done = subprocess.run(_py("print('out'); import sys; sys.exit(3)"), capture_output=True)
    assert isinstance(done, std.CompletedProcess)
    assert (done.returncode, done.stdout, done.stderr) == (3, b"out\n", b"")
    with pytest.raises(std.CalledProcessError) as caught:
        done.check_returncode()
    assert isinstance(caught.value, tether.CalledProcessError)
    with pytest.raises(subprocess.CalledProcessError) as failed:
        subprocess.check_output(_py("print('partial'); raise SystemExit(2)"))
    assert failed.value.returncode == 2
    assert failed.value.output == b"partial\n"
    assert subprocess.call(["true"]) == 0
    assert subprocess.check_call(["true"]) == 0
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.check_call(["false"])
    assert subprocess.getstatusoutput("echo out; echo err >&2; exit 4") == (4, "out\nerr")
    assert subprocess.getoutput("printf 'x\\n\\n'") == "x\n"


def test_bad_arguments_are_refused_as_the_standard_module_refuses_them() -> None:
    with pytest.raises(ValueError, match="startupinfo"):
        subprocess.Popen(["true"], startupinfo=object())
    with pytest.raises(ValueError, match="creationflags"):
        subprocess.Popen(["true"], creationflags=1)
    with pytest.raises(ValueError, match="STDOUT"):
        subprocess.Popen(["true"], stdout=subprocess.STDOUT)
    with pytest.raises(TypeError, match="bufsize"):
        subprocess.Popen(["true"], bufsize="big")  # type: ignore[arg-type]
    with pytest.raises(std.SubprocessError, match="disambiguate"):
        subprocess.Popen(["true"], text=True, universal_newlines=False)
    with pytest.raises(ValueError, match="input"):
        subprocess.run(["true"], input=b"", stdin=subprocess.PIPE)
    with pytest.raises(ValueError, match="capture_output"):
        subprocess.run(["true"], capture_output=True, stdout=subprocess.PIPE)
    with pytest.raises(ValueError, match="stdout"):
        subprocess.check_output(["true"], stdout=subprocess.PIPE)
    with pytest.raises(ValueError, match="negative"):
        subprocess.Popen(["true"], user=-1)
    with pytest.raises(OverflowError):
        subprocess.Popen(["true"], group=2**64)
    with pytest.raises(ValueError, match="greater than maximum"):
        subprocess.Popen(["true"], extra_groups=[2**64])
    with pytest.raises(TypeError, match="path-like"):
        subprocess.Popen(tether_path(), shell=True)


def tether_path() -> os.PathLike[str]:
    import pathlib

    return pathlib.Path("/bin/true")


@pytest.mark.parametrize("program", ["/no/such/program", "no-such-program-anywhere"])
def test_a_missing_program_fails_as_with_the_standard_module(program: str) -> None:
    with pytest.raises(FileNotFoundError) as ours:
        subprocess.Popen([program, "x"])
    with pytest.raises(FileNotFoundError) as theirs:
        std.Popen([program, "x"])
    assert (ours.value.errno, ours.value.filename) == (theirs.value.errno, theirs.value.filename)


def test_a_bad_cwd_is_the_error_even_when_the_program_is_missing_too() -> None:
    with pytest.raises(FileNotFoundError) as caught:
        subprocess.Popen(["no-such-program-anywhere"], cwd="/no/such/dir")
    assert caught.value.filename == "/no/such/dir"
    with pytest.raises(NotADirectoryError) as not_dir:
        subprocess.Popen(["./x"], cwd="/etc/hostname")
    assert not_dir.value.errno == errno.ENOTDIR


def test_a_directory_as_program_is_a_permission_error(tmp_path: Any) -> None:
    with pytest.raises(PermissionError) as caught:
        subprocess.Popen([str(tmp_path)])
    assert caught.value.filename == str(tmp_path)


def test_communicate_with_input_text_and_newlines() -> None:
    code = "import sys; data = sys.stdin.read(); sys.stdout.write(data.upper() + '\\r\\nend\\r')"
    with subprocess.Popen(
        _py(code), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as process:
        out, err = process.communicate("héllo")
    assert (out, err) == ("HÉLLO\nend\n", None)
    assert process.returncode == 0
    assert process.status == tether.Exited(0)
    done = subprocess.run(
        _py("import sys; sys.stdout.buffer.write('ü'.encode('utf-16'))"),
        stdout=subprocess.PIPE,
        encoding="utf-16",
    )
    assert done.stdout == "ü"
    replaced = subprocess.run(
        _py("import sys; sys.stdout.buffer.write(b'\\xff')"),
        capture_output=True,
        encoding="ascii",
        errors="replace",
    )
    assert replaced.stdout == "\ufffd"


def test_communicate_resumes_after_a_timeout_and_loses_nothing() -> None:
    release_read, release_write = os.pipe()
    code = (
        "import os, sys; print('first', flush=True); "
        f"os.read({release_read}, 1); print('second', flush=True)"
    )
    try:
        with subprocess.Popen(
            _py(code), stdout=subprocess.PIPE, stdin=subprocess.PIPE, pass_fds=[release_read]
        ) as process:
            with pytest.raises(subprocess.TimeoutExpired) as caught:
                process.communicate(b"", timeout=0.2)
            assert caught.value.timeout == 0.2
            with pytest.raises(ValueError, match="after starting"):
                process.communicate(b"more")
            os.write(release_write, b"x")
            out, _ = process.communicate()
        assert out == b"first\nsecond\n"
    finally:
        os.close(release_read)
        os.close(release_write)


def test_communicate_survives_a_child_that_never_reads_stdin() -> None:
    """EPIPE on stdin is no error: the child exited without reading."""
    with subprocess.Popen(["true"], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as process:
        out, _ = process.communicate(b"x" * 1_000_000)
    assert (out, process.returncode) == (b"", 0)
    done = subprocess.run(["true"], input=b"y" * 1_000_000)
    assert done.returncode == 0


def test_shell_with_and_without_executable() -> None:
    assert subprocess.check_output("echo $0", shell=True) == b"/bin/sh\n"
    out = subprocess.check_output("import sys; print('py')", shell=True, executable=PY)
    assert out == b"py\n"


def test_pass_fds_and_close_fds(tmp_path: Any) -> None:
    read_end, write_end = os.pipe()
    try:
        os.set_inheritable(write_end, True)
        code = f"import os; os.write({write_end}, b'ok')"
        subprocess.check_call(_py(code), close_fds=False)
        assert os.read(read_end, 10) == b"ok"
        subprocess.check_call(_py(code), pass_fds=[write_end])
        assert os.read(read_end, 10) == b"ok"
        with pytest.raises(subprocess.CalledProcessError):
            subprocess.check_call(_py(code), stderr=subprocess.DEVNULL)  # closed by default
        with pytest.warns(RuntimeWarning, match="pass_fds overriding close_fds"):
            subprocess.check_call(_py(code), pass_fds=[write_end], close_fds=False)
        assert os.read(read_end, 10) == b"ok"
    finally:
        os.close(read_end)
        os.close(write_end)


def test_preexec_fn_runs_in_the_child_and_its_failure_is_the_standard_error() -> None:
    out = subprocess.check_output(
        _py("import os; print(os.environ.get('FRUIT'))"),
        preexec_fn=lambda: os.putenv("FRUIT", "apple"),
    )
    assert out == b"apple\n"
    assert subprocess.Popen(["true"], preexec_fn=os.getpid).wait() == 0

    def fail() -> None:
        raise RuntimeError("nope")

    with pytest.raises(std.SubprocessError, match=r"Exception occurred in preexec_fn\."):
        subprocess.run(["true"], preexec_fn=fail, stdout=subprocess.PIPE)


def test_an_fd_that_preexec_fn_opens_is_closed_before_exec() -> None:
    spare = os.dup(1)
    try:
        out = subprocess.check_output(
            _py(f"import os; print(os.path.exists('/proc/self/fd/{spare}'))"),
            preexec_fn=lambda: os.dup2(1, spare),
        )
        assert out == b"False\n"
    finally:
        os.close(spare)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing credentials needs root")
def test_user_and_group_as_root() -> None:
    out = subprocess.check_output(["id", "-u"], user=65534, group=65534, extra_groups=[])
    assert out == b"65534\n"
    assert subprocess.check_output(["id", "-G"], group="nogroup", extra_groups=[]).split() == [
        b"65534"
    ]


def test_bufsize_and_pipesize() -> None:
    with subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0) as p:
        assert type(p.stdout).__name__ == "FileIO"
        p.stdin.write(b"x")  # type: ignore[union-attr]
        p.stdin.close()  # type: ignore[union-attr]
        assert p.stdout.read() == b"x"  # type: ignore[union-attr]
    with (
        pytest.warns(RuntimeWarning, match="line buffering"),
        subprocess.Popen(["true"], stdout=subprocess.PIPE, bufsize=1) as p,
    ):
        pass
    import fcntl

    with subprocess.Popen(["true"], stdout=subprocess.PIPE, pipesize=65536 * 2) as p:
        assert fcntl.fcntl(p.stdout.fileno(), 1032) == 65536 * 2  # type: ignore[union-attr]


def test_repr_wait_poll_and_signals() -> None:
    process = subprocess.Popen(["sleep", "60"])
    assert repr(process).startswith("<Popen: returncode: None args: ['sleep', '60']")
    assert process.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=0)
    process.terminate()
    assert process.wait() == -signal.SIGTERM
    assert process.status == tether.Signaled(signal.SIGTERM)
    process.kill()  # after the reap: nothing, and no error
    process.send_signal(signal.SIGKILL)
    assert process.backend == "native"


def test_ctrl_c_in_wait_gives_the_child_a_quarter_second(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float | None] = []
    with subprocess.Popen(["sleep", "60"]) as process:
        real_wait = process._wait

        def interrupted_wait(timeout: float | None) -> int:
            calls.append(timeout)
            if len(calls) == 1:
                raise KeyboardInterrupt
            return real_wait(timeout=timeout)

        monkeypatch.setattr(process, "_wait", interrupted_wait)
        with pytest.raises(KeyboardInterrupt):
            process.wait()
        assert calls[1] == 0.25
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=0)
        process.kill()
    assert process.returncode == -signal.SIGKILL


# Without pipes: an interrupt between os.pipe() and its record in the engine's
# _spawn/_stdio.py can leak the pair today (tether.spawn(stdout=PIPE) does too).
def test_a_spawn_interrupted_anywhere_loses_nothing() -> None:
    done, interrupted = _storm_loop(lambda: subprocess.Popen(["true"]))
    assert interrupted > 0, "the storm never hit a spawn"
    for process in done:
        assert isinstance(process, subprocess.Popen)
        with process:
            process.communicate()
        assert process.returncode == 0


# An interrupt between Popen() returning and `with` taking it drops a running Popen, as
# with the standard module: it warns, and tether's reaper reaps the child.
@pytest.mark.filterwarnings("ignore:subprocess .* is still running:ResourceWarning")
def test_run_interrupted_anywhere_loses_nothing() -> None:
    done, interrupted = _storm_loop(lambda: subprocess.run(["true"]))
    assert interrupted > 0
    assert all(completed.returncode == 0 for completed in done)  # type: ignore[attr-defined]
    assert REAPER.wait_idle(timeout=30)


def test_every_backend_and_the_no_pidfd_fallback_behave_alike(
    backend: str, pidfd_mode: str
) -> None:
    release_read, release_write = os.pipe()
    try:
        with subprocess.Popen(
            _py(f"import os, sys; os.read({release_read}, 1); sys.stdout.write(sys.stdin.read())"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=[release_read],
            backend=backend,
        ) as process:
            with pytest.raises(subprocess.TimeoutExpired):
                process.wait(timeout=0.01)
            os.write(release_write, b"x")
            assert process.communicate(b"data") == (b"data", None)
        assert process.returncode == 0
        assert process.backend == backend
        with subprocess.Popen(["sleep", "60"], backend=backend) as sleeper:
            sleeper.kill()
        assert sleeper.returncode == -signal.SIGKILL
    finally:
        os.close(release_read)
        os.close(release_write)


def test_threads_waiting_on_one_child_all_get_its_return_code() -> None:
    import threading

    codes: list[int] = []
    with subprocess.Popen(["sh", "-c", "read x; exit 5"], stdin=subprocess.PIPE) as process:
        waiters = [threading.Thread(target=lambda: codes.append(process.wait())) for _ in range(4)]
        for waiter in waiters:
            waiter.start()
        process.stdin.close()  # type: ignore[union-attr]
        for waiter in waiters:
            waiter.join()
    assert codes == [5, 5, 5, 5]


def test_failed_spawns_leave_nothing_behind() -> None:
    for _ in range(200):
        with pytest.raises(FileNotFoundError):
            subprocess.Popen(
                ["/no/such/program"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        with pytest.raises(std.SubprocessError):
            subprocess.Popen(["true"], stdout=subprocess.PIPE, preexec_fn=_raise)


def _raise() -> None:
    raise OSError(errno.EPERM, "refused in preexec_fn")


def test_bad_input_is_refused_before_anything_exists() -> None:
    for bad in (["tr\0ue"], ["true", "a\0b"]):
        with pytest.raises(ValueError, match="NUL"):
            subprocess.Popen(bad)
    with pytest.raises(ValueError, match="illegal environment variable name"):
        subprocess.Popen(["true"], env={"A=B": "1"})
    with pytest.raises(IndexError):
        subprocess.Popen([])


def test_env_and_cwd_reach_the_child(tmp_path: Any) -> None:
    assert subprocess.check_output(["/usr/bin/env"], env={"ONLY": "me"}) == b"ONLY=me\n"
    assert subprocess.check_output(["pwd"], cwd=tmp_path, text=True) == f"{tmp_path}\n"
    assert subprocess.check_output(["/usr/bin/env"], env={}) == b""


def test_a_timed_out_call_kills_the_child_and_raises() -> None:
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        subprocess.call(["sleep", "60"], timeout=0.1)
    assert caught.value.cmd == ["sleep", "60"]


def test_kill_group_signals_the_whole_group(tmp_path: Any) -> None:
    with subprocess.Popen(
        ["sh", "-c", "sleep 60 & echo $!; wait"],
        stdout=subprocess.PIPE,
        start_new_session=True,
        kill_group=True,
    ) as process:
        grandchild = int(process.stdout.readline())  # type: ignore[union-attr]
        pidfd = os.pidfd_open(grandchild)
        try:
            process.kill()
            assert process.communicate() == (b"", None)
            import select

            assert select.select([pidfd], [], [], 30)[0], "the grandchild was killed too"
        finally:
            os.close(pidfd)
    assert process.returncode == -signal.SIGKILL


def test_the_sys_modules_switch_reaches_code_that_imports_subprocess_itself() -> None:
    code = (
        "import sys; from tether import subprocess as drop_in; "
        "sys.modules['subprocess'] = drop_in; "
        "import subprocess; assert subprocess is drop_in; "
        "print(subprocess.check_output(['echo', 'switched'], text=True), end='')"
    )
    assert std.check_output([PY, "-c", code]) == b"switched\n"


def test_credentials_are_checked_as_the_standard_module_checks_them() -> None:
    with pytest.raises(KeyError):
        subprocess.Popen(["true"], user="no-such-user-here")
    with pytest.raises(KeyError):
        subprocess.Popen(["true"], group="no-such-group-here")
    with pytest.raises(KeyError):
        subprocess.Popen(["true"], extra_groups=["no-such-group-here"])
    with pytest.raises(TypeError, match="User must be"):
        subprocess.Popen(["true"], user=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Group must be"):
        subprocess.Popen(["true"], group=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Items in extra_groups"):
        subprocess.Popen(["true"], extra_groups=[1.5])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="not a string"):
        subprocess.Popen(["true"], extra_groups="root")


@pytest.mark.skipif(os.geteuid() != 0, reason="changing credentials needs root")
def test_credentials_by_name_as_root() -> None:
    out = subprocess.check_output(["id", "-un"], user="nobody", group="nogroup", extra_groups=[])
    assert out == b"nobody\n"
    assert subprocess.check_output(["id", "-u"], user="root", extra_groups=["root"]) == b"0\n"


def test_a_buffer_size_of_its_own_for_each_pipe() -> None:
    with subprocess.Popen(
        ["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=4096
    ) as process:
        assert process.communicate(b"chunk") == (b"chunk", None)


def test_text_mode_without_an_encoding_warns_under_warn_default_encoding() -> None:
    code = (
        "import warnings; warnings.simplefilter('error', EncodingWarning); "
        "from tether import subprocess\n"
        "try:\n"
        "    subprocess.run(['true'], stdout=subprocess.PIPE, text=True)\n"
        "except EncodingWarning as warning:\n"
        "    print('warned', warning)\n"
    )
    out = std.check_output([PY, "-X", "warn_default_encoding", "-c", code], text=True)
    assert out == "warned 'encoding' argument not specified.\n"
    assert subprocess.run(["true"], stdout=subprocess.PIPE, text=True).stdout == ""

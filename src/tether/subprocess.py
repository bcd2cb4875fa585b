"""``from tether import subprocess``: the standard ``subprocess`` module, on pidfds.

A drop-in: the same names, signatures, behaviour and exceptions as the standard module
(its exceptions are subclasses of the standard ones, so ``except
subprocess.TimeoutExpired`` written against either catches them), with the hazards of
the standard ``Popen`` removed underneath: waits block on the child's pidfd instead of
sleeping in a loop, signals never reach a recycled pid, a dropped ``Popen`` is reaped by
a background thread rather than by the next ``Popen``, a status stolen by a foreign
reaper is recovered instead of reported as 0, and a timed-out ``run`` kills the
child's group when it leads one. See ``docs/subprocess.md``.

Third-party code that imports ``subprocess`` itself can be switched with
``sys.modules["subprocess"] = tether.subprocess`` before it is imported (with the
caveats in the migration guide).
"""

import subprocess as _std
from typing import Any as _Any

from ._popen._errors import CalledProcessError, TimeoutExpired
from ._popen._popen import Popen

__all__ = [
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "CalledProcessError",
    "CompletedProcess",
    "Popen",
    "SubprocessError",
    "TimeoutExpired",
    "call",
    "check_call",
    "check_output",
    "getoutput",
    "getstatusoutput",
    "run",
]

PIPE = _std.PIPE
"""Pipe the stream to or from the child: the standard constant (-1)."""
STDOUT = _std.STDOUT
"""Send stderr where stdout goes: the standard constant (-2)."""
DEVNULL = _std.DEVNULL
"""Connect the stream to ``/dev/null``: the standard constant (-3)."""

SubprocessError = _std.SubprocessError
list2cmdline = _std.list2cmdline

# Helpers of the standard module that other standard modules and tests reach for.
_args_from_interpreter_flags = _std._args_from_interpreter_flags  # type: ignore[attr-defined]
_optim_args_from_interpreter_flags = _std._optim_args_from_interpreter_flags  # type: ignore[attr-defined]


class CompletedProcess(_std.CompletedProcess):  # type: ignore[type-arg]
    """The result of :func:`run`: :class:`subprocess.CompletedProcess`, with a
    ``check_returncode`` that raises the drop-in's :class:`CalledProcessError`."""

    def check_returncode(self) -> None:
        """Raise :class:`CalledProcessError` if the exit code is non-zero."""
        if self.returncode:
            raise CalledProcessError(self.returncode, self.args, self.stdout, self.stderr)


def run(
    *popenargs: _Any,
    input: _Any = None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    **kwargs: _Any,
) -> CompletedProcess:
    """Run a command, wait for it, return a :class:`CompletedProcess`: ``subprocess.run``.

    On timeout the child is killed (with its process group, when it leads one) and
    :class:`TimeoutExpired` carries the output read so far; ``check=True`` raises
    :class:`CalledProcessError` for a non-zero exit.
    """
    if input is not None:
        if kwargs.get("stdin") is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        kwargs["stdin"] = PIPE
    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        kwargs["stdout"] = PIPE
        kwargs["stderr"] = PIPE
    with Popen(*popenargs, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except TimeoutExpired:
            _kill_for_timeout(process)
            process.wait()  # the exception already holds the output read so far
            raise
        except BaseException:
            process.kill()
            raise
        retcode = process.poll()
        assert retcode is not None, "communicate() waits for the child"
        if check and retcode:
            raise CalledProcessError(retcode, process.args, output=stdout, stderr=stderr)
    return CompletedProcess(process.args, retcode, stdout, stderr)


def call(*popenargs: _Any, timeout: float | None = None, **kwargs: _Any) -> int:
    """Run a command, wait for it, return its ``returncode``: ``subprocess.call``."""
    with Popen(*popenargs, **kwargs) as process:
        try:
            return process.wait(timeout=timeout)
        except TimeoutExpired:
            _kill_for_timeout(process)
            raise
        except BaseException:
            process.kill()
            raise


def check_call(*popenargs: _Any, **kwargs: _Any) -> int:
    """Run a command and wait; raise :class:`CalledProcessError` unless it exits 0."""
    retcode = call(*popenargs, **kwargs)
    if retcode:
        cmd = kwargs.get("args")
        if cmd is None:
            cmd = popenargs[0]
        raise CalledProcessError(retcode, cmd)
    return 0


def check_output(*popenargs: _Any, timeout: float | None = None, **kwargs: _Any) -> _Any:
    """Run a command and return its stdout; :class:`CalledProcessError` (with the output)
    unless it exits 0: ``subprocess.check_output``."""
    for keyword in ("stdout", "check"):
        if keyword in kwargs:
            raise ValueError(f"{keyword} argument not allowed, it will be overridden.")
    if "input" in kwargs and kwargs["input"] is None:
        # input=None has always meant empty input here (not "inherit stdin").
        text = any(
            kwargs.get(name) for name in ("universal_newlines", "text", "encoding", "errors")
        )
        kwargs["input"] = "" if text else b""
    return run(*popenargs, stdout=PIPE, timeout=timeout, check=True, **kwargs).stdout


def getstatusoutput(
    cmd: _Any, *, encoding: str | None = None, errors: str | None = None
) -> tuple[int, str]:
    """Run *cmd* in a shell; return ``(exitcode, output)``, stderr merged, one trailing
    newline removed: ``subprocess.getstatusoutput``."""
    try:
        data = check_output(
            cmd, shell=True, text=True, stderr=STDOUT, encoding=encoding, errors=errors
        )
        exitcode = 0
    except CalledProcessError as error:
        data = error.output
        exitcode = error.returncode
    if data[-1:] == "\n":
        data = data[:-1]
    return exitcode, data


def getoutput(cmd: _Any, *, encoding: str | None = None, errors: str | None = None) -> str:
    """Run *cmd* in a shell and return its output (stderr merged): ``subprocess.getoutput``."""
    return getstatusoutput(cmd, encoding=encoding, errors=errors)[1]


def _kill_for_timeout(process: _Any) -> None:
    # Popen may be mocked or replaced by a subclass of the standard class.
    getattr(process, "_kill_for_timeout", process.kill)()


def _rehome() -> None:
    for name in ("CalledProcessError", "CompletedProcess", "Popen", "TimeoutExpired"):
        member = globals()[name]
        member.__module__ = __name__
    for function in (call, check_call, check_output, getoutput, getstatusoutput, run):
        function.__module__ = __name__


_rehome()

"""``Popen``: the standard class, on tether's spawn engine and pidfd waiting.

The hazards of the standard ``Popen`` are in its waiting and signalling, not in its
interface, so the interface is kept whole (every constructor argument, the text and
buffering rules, ``communicate`` that resumes after a timeout, the ``KeyboardInterrupt``
courtesy wait) and the child underneath is a :class:`tether.Process`:

* ``wait(timeout)`` blocks on the pidfd, with no sleep loop;
* ``send_signal`` goes through the pidfd and never reaches a recycled pid;
* a ``Popen`` dropped while its child runs hands the child to tether's background
  reaper, instead of a list that only the next ``Popen`` looks at;
* a status taken by a foreign ``waitpid(-1)`` is recovered from the pidfd (Linux 6.15+)
  instead of being reported as 0; only where the kernel kept nothing is it 0, as in the
  standard module;
* after ``kill()``, ``communicate()`` stops reading once the child is gone, even if a
  grandchild holds the pipes.

The child is started with :func:`_core._spawning.prepare` outside the ``try`` and
``start`` inside it, so an exception at any point (a failed exec, Ctrl-C) kills and reaps
it and closes every pipe before it propagates.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess as _std
import sys
import time
import types
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any, AnyStr, Generic, TypedDict

from typing_extensions import Unpack

from .._core._lease import wait_for_exit
from .._core._process import Process
from .._core._spawning import abort, prepare, start
from .._errors import SpawnError, StatusUnknownError
from .._spawn import SpawnOptions
from .._status import Status
from ..limits import Limits
from ._errors import TimeoutExpired
from ._exchange import Exchange
from ._options import (
    close_inherited_after,
    command_line,
    extra_group_ids,
    group_id,
    inherited_fds,
    spawn_failure,
    text_encoding,
    user_id,
)
from ._streams import set_pipe_size, wrap_pipes

__all__ = ["Popen", "PopenExtras", "child_process"]


class PopenExtras(TypedDict, total=False):
    """tether's spawn options that ``Popen`` accepts beyond the standard ones."""

    backend: str
    limits: Limits | None
    pdeathsig: int | None
    no_new_privs: bool
    cgroup: str | bytes | os.PathLike[str] | os.PathLike[bytes] | None


class Popen(Generic[AnyStr]):
    """Execute a child program in a new process: :class:`subprocess.Popen`, on pidfds.

    Takes every argument of the standard class, with its meaning, plus tether's
    ``limits=``, ``pdeathsig=``, ``no_new_privs=``, ``cgroup=`` and ``backend=``, and
    ``kill_group=``: ``True`` makes :meth:`terminate` and :meth:`kill` signal the child's
    whole process group; the default (``None``) does so only for the kill that ends a
    timed-out :func:`run` or :func:`call` of a child that leads its own group
    (``start_new_session=True`` or ``process_group=0``). :attr:`status` gives the
    decoded :class:`tether.Status`.
    """

    _process: Process | None = None  # class defaults: __del__ may see a half-made object
    _child_created = False

    args: Any
    """The arguments the process was started with, as given (a string stays a string)."""
    stdin: IO[AnyStr] | None
    """Writable pipe to the child's stdin when ``stdin=PIPE``, else None."""
    stdout: IO[AnyStr] | None
    """Readable pipe from the child's stdout when ``stdout=PIPE``, else None."""
    stderr: IO[AnyStr] | None
    """Readable pipe from the child's stderr when ``stderr=PIPE``, else None."""
    pid: int
    """The child's pid."""
    returncode: int | None
    """None while the child runs; then its exit code, or minus the killing signal."""

    def __init__(
        self,
        args: Any,
        bufsize: int = -1,
        executable: Any = None,
        stdin: Any = None,
        stdout: Any = None,
        stderr: Any = None,
        preexec_fn: Callable[[], Any] | None = None,
        close_fds: bool = True,
        shell: bool = False,
        cwd: Any = None,
        env: Mapping[Any, Any] | None = None,
        universal_newlines: bool | None = None,
        startupinfo: Any = None,
        creationflags: int = 0,
        restore_signals: bool = True,
        start_new_session: bool = False,
        pass_fds: Iterable[int] = (),
        *,
        user: str | int | None = None,
        group: str | int | None = None,
        extra_groups: Iterable[str | int] | None = None,
        encoding: str | None = None,
        errors: str | None = None,
        text: bool | None = None,
        umask: int = -1,
        pipesize: int = -1,
        process_group: int | None = None,
        kill_group: bool | None = None,
        **extras: Unpack[PopenExtras],
    ) -> None:
        self._exchange = Exchange()
        self._sigkilled = False
        if bufsize is None:
            bufsize = -1
        if not isinstance(bufsize, int):
            raise TypeError("bufsize must be an integer")
        if stdout is _std.STDOUT:
            raise ValueError("STDOUT can only be used for stderr")
        if pipesize is None:
            pipesize = -1
        if not isinstance(pipesize, int):
            raise TypeError("pipesize must be an integer")
        if pass_fds and not close_fds:
            warnings.warn("pass_fds overriding close_fds.", RuntimeWarning, stacklevel=2)
            close_fds = True
        if startupinfo is not None:
            raise ValueError("startupinfo is only supported on Windows platforms")
        if creationflags != 0:
            raise ValueError("creationflags is only supported on Windows platforms")
        self.args = args
        self.stdin = self.stdout = self.stderr = None
        self.pid = 0
        self.returncode = None
        self.encoding = encoding
        self.errors = errors
        self.pipesize = pipesize
        if (
            text is not None
            and universal_newlines is not None
            and bool(universal_newlines) != bool(text)
        ):
            raise _std.SubprocessError(
                "Cannot disambiguate when both text and universal_newlines are "
                "supplied but different. Pass one or the other."
            )
        self.text_mode = bool(encoding or errors or text or universal_newlines)
        if self.text_mode and encoding is None:
            self.encoding = encoding = text_encoding()
        self._sigint_wait_secs = 0.25
        line_buffering = False
        if self.text_mode and bufsize == 1:
            line_buffering, bufsize = True, -1
        options: SpawnOptions = {
            "stdin": stdin,
            "stdout": stdout,
            "stderr": stderr,
            "preexec_fn": preexec_fn,
            "restore_signals": bool(restore_signals),
            "start_new_session": bool(start_new_session),
            "process_group": None if process_group is None or process_group < 0 else process_group,
            "umask": None if umask < 0 else umask & 0o777,
            "group": group_id(group),
            "extra_groups": extra_group_ids(extra_groups),
            "user": user_id(user),
        }
        options.update(extras)  # type: ignore[typeddict-item]
        argv, program = command_line(args, executable, shell)
        sys.audit("subprocess.Popen", program, argv, cwd, env)
        options["executable"] = program
        if cwd is not None:
            options["cwd"] = cwd
        if env is not None:
            options["env"] = env
        options["pass_fds"] = tuple(pass_fds) if close_fds else inherited_fds(())
        if preexec_fn is not None and close_fds:
            options["preexec_fn"] = close_inherited_after(preexec_fn, options["pass_fds"])
        self._kill_group = kill_group
        self._leads_group = bool(start_new_session) or process_group == 0
        try:
            process = prepare(argv, **options)
        except SpawnError as error:
            raise spawn_failure(error, program, cwd) from None
        try:
            start(process)
            self._take_over(process, bufsize, line_buffering, encoding, errors, pipesize)
        except BaseException as error:
            self._close_pipes_quietly()
            abort(process)
            self._process = None
            if isinstance(error, SpawnError):
                raise spawn_failure(error, program, cwd) from None
            raise

    def _take_over(
        self,
        process: Process,
        bufsize: int,
        line_buffering: bool,
        encoding: str | None,
        errors: str | None,
        pipesize: int,
    ) -> None:
        """Own the started child: its pid, and its pipes wrapped as the standard module does."""
        # Plain stores, no call between them: no signal handler can run halfway, so each
        # pipe is the Process's or ours, and the except clause of __init__ closes it.
        self._process, self._child_created, self.pid = process, True, process.pid
        self.stdin, self.stdout, self.stderr, process.stdin, process.stdout, process.stderr = (
            process.stdin,  # type: ignore[assignment]
            process.stdout,  # type: ignore[assignment]
            process.stderr,  # type: ignore[assignment]
            None,
            None,
            None,
        )
        pipes: tuple[IO[bytes] | None, ...] = (self.stdin, self.stdout, self.stderr)  # type: ignore[assignment]
        wrapped = wrap_pipes(pipes, bufsize, self.text_mode, line_buffering, encoding, errors)
        if pipesize > 0:
            set_pipe_size(pipes, pipesize)
        self.stdin, self.stdout, self.stderr = wrapped

    def _close_pipes_quietly(self) -> None:
        for pipe in (self.stdin, self.stdout, self.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError, ValueError):  # ValueError: detached
                    pipe.close()

    # --- the standard interface -------------------------------------------------------

    __class_getitem__: classmethod[Any, Any, Any] = classmethod(types.GenericAlias)

    @property
    def universal_newlines(self) -> bool:
        """An alias of ``text_mode``, as in the standard class."""
        return self.text_mode

    @universal_newlines.setter
    def universal_newlines(self, universal_newlines: bool) -> None:
        self.text_mode = bool(universal_newlines)

    @property
    def status(self) -> Status | None:
        """The decoded exit status once reaped (:class:`tether.Status`), else None.

        None also when another party reaped the child and the kernel kept no record of
        its status (``returncode`` is then 0, as in the standard module).
        """
        process = self._process
        return None if process is None else process.status

    @property
    def backend(self) -> str | None:
        """The tether spawn backend that started the child."""
        process = self._process
        return None if process is None else process.backend

    def poll(self) -> int | None:
        """Reap the child if it has exited; return ``returncode`` (None while it runs)."""
        process = self._process
        if self.returncode is None and process is not None:
            try:
                status = process.poll()
            except StatusUnknownError:
                self.returncode = 0  # the standard module's answer when the status is gone
                return 0
            if status is not None:
                self.returncode = status.returncode
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to exit, blocking on its pidfd; return ``returncode``.

        Raises :class:`TimeoutExpired` after *timeout* seconds, the child still running.
        On Ctrl-C it waits a further quarter second for the child (which got the SIGINT
        too) before the ``KeyboardInterrupt`` goes on, as the standard class does.
        """
        endtime = None if timeout is None else time.monotonic() + timeout
        try:
            return self._wait(timeout=timeout)
        except KeyboardInterrupt:
            self._courtesy_wait(endtime)
            raise

    def _wait(self, timeout: float | None) -> int:
        if self.returncode is not None:
            return self.returncode
        process = self._process
        if process is None:
            raise ChildProcessError(errno.ECHILD, "no child process was started")
        try:
            status = wait_for_exit(process, None if timeout is None else max(timeout, 0.0))
        except StatusUnknownError:
            self.returncode = 0
            return 0
        if status is None:
            raise TimeoutExpired(self.args, timeout)  # type: ignore[arg-type]
        self.returncode = code = status.returncode
        assert code is not None, "an exit status has a return code"
        return code

    def _courtesy_wait(self, endtime: float | None) -> None:
        wait_secs = self._sigint_wait_secs
        if endtime is not None:
            wait_secs = min(wait_secs, endtime - time.monotonic())
        self._sigint_wait_secs = 0  # only once
        with contextlib.suppress(TimeoutExpired):
            self._wait(timeout=max(wait_secs, 0.0))

    def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]:
        """Send *input* to stdin, read stdout and stderr to the end, wait for the child.

        Returns ``(stdout, stderr)`` (None for a stream not piped). After
        :class:`TimeoutExpired` it can be called again (without new input) and goes on
        where it stopped; nothing read is lost. After :meth:`kill`, it returns once the
        child is gone even if a grandchild still holds the pipes.
        """
        return self._exchange.communicate(self, input, timeout)

    def _timeout_error(
        self, timeout: float | None, stdout: list[bytes] | None, stderr: list[bytes] | None
    ) -> TimeoutExpired:
        return TimeoutExpired(
            self.args,
            timeout,  # type: ignore[arg-type]
            output=b"".join(stdout) if stdout else None,
            stderr=b"".join(stderr) if stderr else None,
        )

    def send_signal(self, sig: int) -> None:
        """Send *sig* to the child through its pidfd; nothing once it has been reaped."""
        process = self._process
        self.poll()  # as the standard class does: a child found gone is not signalled
        if self.returncode is not None or process is None:
            return
        if sig == signal.SIGKILL:
            self._sigkilled = True
        process.send_signal(sig)

    def terminate(self) -> None:
        """Send SIGTERM (to the whole group with ``kill_group=True``)."""
        self._signal_child_or_group(signal.SIGTERM, group=bool(self._kill_group))

    def kill(self) -> None:
        """Send SIGKILL (to the whole group with ``kill_group=True``)."""
        self._signal_child_or_group(signal.SIGKILL, group=bool(self._kill_group))

    def _kill_for_timeout(self) -> None:
        """The kill that ends a timed-out run: the group too when the child leads one."""
        group = self._kill_group if self._kill_group is not None else self._leads_group
        self._signal_child_or_group(signal.SIGKILL, group=group)

    def _signal_child_or_group(self, sig: int, *, group: bool) -> None:
        process = self._process
        if not group or process is None or self.returncode is not None:
            self.send_signal(sig)
            return
        if sig == signal.SIGKILL:
            self._sigkilled = True
        process.send_signal(sig, group=True)

    def __enter__(self) -> Popen[AnyStr]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, value: object, traceback: object
    ) -> None:
        if self.stdout is not None:
            self.stdout.close()
        if self.stderr is not None:
            self.stderr.close()
        try:
            if self.stdin is not None:
                self.stdin.close()
        finally:
            if exc_type is KeyboardInterrupt:
                if self._sigint_wait_secs > 0:
                    with contextlib.suppress(TimeoutExpired):
                        self._wait(timeout=self._sigint_wait_secs)
                self._sigint_wait_secs = 0
            else:
                self.wait()

    def __repr__(self) -> str:
        text = f"<{type(self).__name__}: returncode: {self.returncode} args: {self.args!r}>"
        if len(text) > 80:
            text = text[:76] + "...>"
        return text

    def __del__(self) -> None:
        process = self._process
        if process is None or self.returncode is not None:
            return
        with contextlib.suppress(Exception):
            self.poll()
        if self.returncode is None:
            warnings.warn(
                f"subprocess {self.pid} is still running",
                ResourceWarning,
                source=self,
                stacklevel=1,
            )
            with contextlib.suppress(Exception):
                process.detach()  # tether's background reaper reaps it when it exits


def child_process(popen: Popen[Any]) -> Process:
    """The :class:`tether.Process` inside a started *popen*: what ``tether.asyncio``
    leases the exit fd of."""
    process = popen._process
    if process is None:
        raise RuntimeError("this Popen has no child")
    return process

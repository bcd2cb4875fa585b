"""The spawn plan: every option of a spawn, validated and encoded before any process exists.

A plan is plain data. Building it checks the input (NUL bytes, ``=`` in environment
names, an empty argv, an unknown stdio value), encodes every string the way the
kernel will see it, and resolves the program through ``PATH`` the way ``execvpe``
would, so that the backends only copy bytes around and bad input never reaches a
child.
"""

from __future__ import annotations

import errno
import fcntl
import grp
import itertools
import os
import pwd
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any, NamedTuple, TypeAlias, TypedDict

from typing_extensions import Unpack

from .._errors import SpawnError, SpawnStage
from ..limits import Limits

PIPE = subprocess.PIPE
STDOUT = subprocess.STDOUT
DEVNULL = subprocess.DEVNULL

# Bytes are searched for one byte by its value: ``47 in data`` is a plain scan, where
# ``b"/" in data`` first tries the operand as an integer and formats a TypeError.
_NUL, _SLASH, _EQUALS = 0, ord("/"), ord("=")

RESTORED_SIGNALS = (int(signal.SIGPIPE), int(signal.SIGXFSZ))
"""The signals Python ignores and a child gets back at their default action."""
_MAX_FD = 2**31 - 1  # an fd is a C int
_MAX_PID = 2**22  # PID_MAX_LIMIT on 64-bit Linux
_NO_ID = 2**32 - 1  # (uid_t)-1 means "unchanged" to the kernel
_FS_ENCODING = sys.getfilesystemencoding()  # what os.fsencode uses, fixed at startup
_FS_ERRORS = sys.getfilesystemencodeerrors()
_FS_ENCODINGS, _FS_ERRORS_EACH = itertools.repeat(_FS_ENCODING), itertools.repeat(_FS_ERRORS)
_NUL_BYTE, _NO_BYTES, _ONLY_STR = b"\0", b"", {str}
_new_tuple = tuple.__new__  # SpawnPlan._make without its Python frame and length check

StrOrBytesPath: TypeAlias = "str | bytes | os.PathLike[str] | os.PathLike[bytes]"
StdioOption: TypeAlias = "int | IO[Any] | None"
"""``None`` (inherit), ``PIPE``, ``DEVNULL``, ``STDOUT`` (stderr only), an fd or a file object."""


class SpawnOptions(TypedDict, total=False):
    """The keyword options of :func:`tether.spawn`, each with its type and default.

    :func:`tether.run`, :func:`tether.open_process`, :func:`tether.run_process`,
    :meth:`tether.Supervisor.spawn` and :func:`tether.daemon.spawn_daemon` take the same
    options; annotate a function that passes them on with ``**options: Unpack[SpawnOptions]``.
    *StrOrBytesPath* below means ``str | bytes | os.PathLike[str] | os.PathLike[bytes]``;
    *StdioOption* means ``int | IO[Any] | None``. An option left out takes its default.

    Every option is checked before anything is created: what :func:`tether.spawn` raises for
    a bad one is listed there. The options that set the child up between fork and exec
    (``cwd``, ``umask``, ``preexec_fn``, ``limits``, ``pdeathsig``, ``no_new_privs``,
    ``user``, ``group``, ``extra_groups``, ``cgroup``) are not on ``posix_spawn``;
    ``preexec_fn`` is on ``fork`` only. The child takes its steps in a fixed order, each
    named in :attr:`tether.SpawnError.stage` when it fails: signal handlers reset
    (``signals``); ``setsid`` or ``setpgid``; fds 0-2 and ``pass_fds`` put in place
    (``fd_map``) and every other fd closed (``close_fds``); ``chdir``, then ``umask``;
    ``setrlimit``; joining the ``cgroup``; ``no_new_privs``; ``setgroups``, ``setgid``,
    ``setuid``; ``pdeathsig`` (after the ids, whose change would clear it); then ``exec``.
    So ``cwd``, ``limits`` and ``cgroup`` act with the parent's credentials. The ``fork``
    backend runs ``preexec_fn`` just before ``exec``.
    """

    backend: str
    """Default ``"auto"``. How the child is started: ``"native"`` (tether's C spawner,
    ``clone(CLONE_VFORK)``), ``"posix_spawn"``, ``"fork"``, or ``"auto"``: ``native``
    unless ``preexec_fn`` is given (then ``fork``); without the native spawner,
    ``posix_spawn`` unless an option it lacks is given (then ``fork``). :func:`tether.backends`
    lists the ones built here. An unknown backend, one not built, or one that cannot honour
    the other options is a ``ValueError``."""
    executable: StrOrBytesPath | None
    """Default ``None``. The program to run instead of ``argv[0]`` (which the child still sees
    as its name); looked up on ``PATH`` when it holds no ``/``."""
    env: Mapping[str, str] | Mapping[bytes, bytes] | None
    """Default ``None``: inherit ``os.environ``. Else the child's whole environment (``{}`` is
    empty); ``PATH`` lookups use its ``PATH``. A name with ``=`` or a NUL byte is a
    ``ValueError``."""
    cwd: StrOrBytesPath | None
    """Default ``None`` (the parent's). The child's working directory; one that does not exist
    is a :class:`tether.SpawnError` at stage ``"chdir"``. Not on ``posix_spawn``."""
    stdin: StdioOption
    """Default ``None``: inherit. ``PIPE`` (then :attr:`tether.Process.stdin` is a writable
    file), ``DEVNULL``, an fd, or a file object with a ``fileno()``. ``STDOUT`` is a
    ``ValueError`` here."""
    stdout: StdioOption
    """Default ``None``: inherit. As for ``stdin``; ``PIPE`` makes :attr:`tether.Process.stdout`
    readable."""
    stderr: StdioOption
    """Default ``None``: inherit. As for ``stdout``, and ``STDOUT`` sends it where stdout
    goes."""
    pass_fds: Iterable[int]
    """Default ``()``. Fds the child inherits under the same numbers, besides 0-2; every other
    fd is closed in the child. A non-integer is a ``TypeError``, a negative fd a ``ValueError``,
    an fd that is not open a :class:`tether.SpawnError`."""
    start_new_session: bool
    """Default ``False``. Call ``setsid()`` in the child: a new session and process group, no
    controlling terminal. Combined with ``process_group`` it is a ``ValueError``."""
    process_group: int | None
    """Default ``None``. ``0`` puts the child in a new process group of its own, a positive id
    into that existing group; negative is a ``ValueError``."""
    umask: int | None
    """Default ``None`` (inherited). The child's umask, ``0`` to ``0o777`` (else
    ``ValueError``). Not on ``posix_spawn``."""
    preexec_fn: Callable[[], object] | None
    """Default ``None``. Called in the child after every other setup step, just before exec;
    an exception from it fails the spawn with :class:`tether.SpawnError` (stage
    ``"preexec_fn"``). Needs the ``fork`` backend (``"auto"`` picks it); not callable is a
    ``TypeError``."""
    restore_signals: bool
    """Default ``True``. Reset ``SIGPIPE`` and ``SIGXFSZ``, which Python ignores, to their
    default actions in the child, as :mod:`subprocess` does."""
    limits: Limits | None
    """Default ``None``. A :class:`tether.limits.Limits` applied with ``setrlimit`` before exec,
    checked with :meth:`~tether.limits.Limits.check` first (a refusal is a ``ValueError``, not
    a ``Limits`` a ``TypeError``). Not on ``posix_spawn``."""
    pdeathsig: int | None
    """Default ``None`` (or ``0``): none. The signal the child gets when its parent dies
    (``PR_SET_PDEATHSIG``). The kernel ties it to the spawning *thread*, so when asked for off
    the main thread the spawn runs on tether's ``tether-spawner`` thread. Not a signal number:
    ``ValueError``. Not on ``posix_spawn``."""
    no_new_privs: bool
    """Default ``False``. Set ``PR_SET_NO_NEW_PRIVS`` in the child: exec never grants
    privileges (setuid bits, file capabilities). Not on ``posix_spawn``."""
    user: int | str | None
    """Default ``None`` (unchanged). A user name or uid the child switches to with
    ``setresuid`` (needs the privilege). An unknown name or an id out of range is a
    ``ValueError``, another type a ``TypeError``. Not on ``posix_spawn``."""
    group: int | str | None
    """Default ``None`` (unchanged). A group name or gid, set with ``setresgid``; errors as for
    ``user``. Not on ``posix_spawn``."""
    extra_groups: Iterable[int | str] | None
    """Default ``None``: inherit the supplementary groups. Names or gids set with
    ``setgroups``; ``[]`` clears them. A single string is a ``TypeError``. Not on
    ``posix_spawn``."""
    cgroup: StrOrBytesPath | None
    """Default ``None``. A cgroup v2 directory: the child writes itself into its
    ``cgroup.procs`` before exec, so it is born there. A directory without a ``cgroup.procs``
    we can open is a :class:`tether.SpawnError`. Not on ``posix_spawn``."""


_OPTION_NAMES = frozenset(SpawnOptions.__annotations__)

SETUP_OPTIONS = (
    "cwd",
    "umask",
    "preexec_fn",
    "limits",
    "pdeathsig",
    "no_new_privs",
    "user",
    "group",
    "extra_groups",
    "cgroup",
)
"""The options that set the child up between fork and exec: only some backends can."""


class SpawnPlan(NamedTuple):
    """Everything a backend needs to start one child, already validated and encoded.

    Immutable, and amended with ``_replace``. A named tuple rather than a dataclass: a
    plain spawn's plan is its four argv fields joined to a prebuilt tuple of defaults in
    one C call (:func:`_plain_plan`), where a dataclass ``__init__`` stores every field
    one by one (a frozen one through ``object.__setattr__``: about 3 µs a spawn).
    """

    args: tuple[str, ...]
    """The argv as text, for error messages and ``Process.args``."""
    argv: tuple[bytes, ...]
    program: bytes
    """What to execute: the executable as given when it holds a ``/``, else the PATH match."""
    program_name: str
    """The executable as the user named it, reported as ``filename`` when exec fails."""
    env: Mapping[bytes, bytes] | None
    """The child's whole environment; None inherits the parent's at spawn time."""
    cwd: bytes | None
    stdin: int | None
    """None (inherit), ``PIPE``, ``DEVNULL`` or an fd of the parent; likewise below."""
    stdout: int | None
    stderr: int | None
    """May also be ``STDOUT``."""
    pass_fds: tuple[int, ...]
    start_new_session: bool
    process_group: int | None
    umask: int | None
    preexec_fn: Callable[[], object] | None
    restore_signals: bool
    limits: tuple[tuple[int, int, int], ...] = ()
    """``(resource, soft, hard)`` triples to apply in the child."""
    pdeathsig: int = 0
    """The signal the child gets when the spawning thread dies; 0 for none."""
    no_new_privs: bool = False
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] | None = None
    """Supplementary groups to set; None leaves them as inherited."""
    cgroup: bytes | None = None
    """A cgroup directory whose ``cgroup.procs`` the child joins before exec."""
    pid_namespace: int | None = None
    """``kill="namespace"``: a pidfd of the namespace init the child is born under
    (the child stays ours); set by the supervisor, not a spawn option."""
    new_pid_namespace: bool = False
    """``kill="namespace"``: the child is PID 1 of a new PID namespace (the init)."""
    extra_fds: tuple[tuple[int, int], ...] = ()
    """``(source, target)`` fds of the parent given to the child as fd *target* (> 2),
    after the standard streams; set by the supervisor (``ready="fd:N"``), not a spawn
    option."""

    @property
    def kept_fds(self) -> tuple[int, ...]:
        """The fds above 2 the child keeps open: :attr:`pass_fds` and the extra targets."""
        return (*self.pass_fds, *(target for _, target in self.extra_fds))

    @property
    def default_signals(self) -> tuple[int, ...]:
        """Signals reset to their default action in the child: SIGPIPE and SIGXFSZ, which
        Python ignores, unless ``restore_signals=False``."""
        return RESTORED_SIGNALS if self.restore_signals else ()

    def failure(
        self, code: int | None, stage: SpawnStage, strerror: str | None = None
    ) -> SpawnError:
        """The error for this plan's child failing at *stage* with errno *code*.

        ``filename`` names what the failing call was given: the program for ``exec``,
        the directory for ``chdir``.
        """
        filename = None
        if stage == "exec":
            filename = self.program_name
        elif stage == "chdir" and self.cwd is not None:
            filename = os.fsdecode(self.cwd)
        return SpawnError(code, strerror, filename, stage=stage, argv=self.args)

    def needs(self) -> list[str]:
        """The options in use that only some backends can honour, in :data:`SETUP_OPTIONS` order."""
        if (
            self.cwd is None
            and self.umask is None
            and self.preexec_fn is None
            and not self.limits
            and not self.pdeathsig
            and not self.no_new_privs
            and self.uid is None
            and self.gid is None
            and self.groups is None
            and self.cgroup is None
        ):
            return []
        used = {
            "cwd": self.cwd is not None,
            "umask": self.umask is not None,
            "preexec_fn": self.preexec_fn is not None,
            "limits": bool(self.limits),
            "pdeathsig": bool(self.pdeathsig),
            "no_new_privs": self.no_new_privs,
            "user": self.uid is not None,
            "group": self.gid is not None,
            "extra_groups": self.groups is not None,
            "cgroup": self.cgroup is not None,
        }
        return [name for name in SETUP_OPTIONS if used[name]]


def make_plan(argv: Iterable[StrOrBytesPath], **options: Unpack[SpawnOptions]) -> SpawnPlan:
    """Validate and encode the options of a spawn; raise before anything is created.

    Every exec and exit evicts the interpreter's caches, so the code a plain spawn runs
    is kept short: argv is checked, encoded and decoded in one pass, and a spawn with no
    option but ``backend`` takes a path that skips the defaults.
    """
    if options and not _OPTION_NAMES.issuperset(options):
        unknown = options.keys() - _OPTION_NAMES
        raise TypeError(f"unknown spawn option(s): {', '.join(sorted(unknown))}")
    args, encoded_argv = _encode_argv(argv)
    if not options or (len(options) == 1 and "backend" in options):
        return _plain_plan(args, encoded_argv)
    env = options.get("env")
    cwd = options.get("cwd")
    executable = options.get("executable")
    encoded_env = None if env is None else _encode_env(env)
    encoded_cwd = None if cwd is None else _encode(cwd, "cwd")
    named = encoded_argv[0] if executable is None else _encode(executable, "executable")
    if not named:
        raise ValueError("the program name must not be empty")
    start_new_session = bool(options.get("start_new_session", False))
    process_group = options.get("process_group")
    if start_new_session and process_group is not None:
        raise ValueError(
            "start_new_session and process_group exclude each other: "
            "a new session already puts the child in a new process group"
        )
    if process_group is not None and (
        isinstance(process_group, bool) or not isinstance(process_group, int)
    ):
        raise TypeError(
            f"process_group must be a group id (0 for a new group), not {process_group!r}"
        )
    if process_group is not None and not 0 <= process_group <= _MAX_PID:
        raise ValueError(
            f"process_group must be 0 (a new group) or a group id, not {process_group}"
        )
    umask = options.get("umask")
    if umask is not None and not 0 <= umask <= 0o777:
        raise ValueError(f"umask must be between 0 and 0o777, not {umask:#o}")
    preexec_fn = options.get("preexec_fn")
    if preexec_fn is not None and not callable(preexec_fn):
        raise TypeError("preexec_fn must be callable")
    fds = tuple(sorted({_check_fd(fd, "pass_fds") for fd in options.get("pass_fds", ())}))
    stdio = (
        _stdio(options.get("stdin"), "stdin"),
        _stdio(options.get("stdout"), "stdout"),
        _stdio(options.get("stderr"), "stderr"),
    )
    _check_open((*stdio, *fds), args)
    cgroup = options.get("cgroup")
    extra_groups = options.get("extra_groups")
    limits = _limits(options.get("limits"))
    pdeathsig = _signal_number(options.get("pdeathsig"))
    uid = _credential(options.get("user"), "user")
    gid = _credential(options.get("group"), "group")
    groups = None if extra_groups is None else tuple(_group_ids(extra_groups))
    program = (
        named
        if _SLASH in named
        else resolve_program(named, _search_path(encoded_env), encoded_cwd, args)
    )
    return SpawnPlan(
        args=args,
        argv=encoded_argv,
        program=program,
        program_name=os.fsdecode(named),
        env=encoded_env,
        cwd=encoded_cwd,
        stdin=stdio[0],
        stdout=stdio[1],
        stderr=stdio[2],
        pass_fds=fds,
        start_new_session=start_new_session,
        process_group=process_group,
        umask=umask,
        preexec_fn=preexec_fn,
        restore_signals=bool(options.get("restore_signals", True)),
        limits=limits,
        pdeathsig=pdeathsig,
        no_new_privs=bool(options.get("no_new_privs", False)),
        uid=uid,
        gid=gid,
        groups=groups,
        cgroup=None if cgroup is None else _encode(cgroup, "cgroup"),
    )


def _plain_plan(args: tuple[str, ...], argv: tuple[bytes, ...]) -> SpawnPlan:
    """The plan of a spawn with every option at its default (``backend`` aside)."""
    named = argv[0]
    if not named:
        raise ValueError("the program name must not be empty")
    program = named if _SLASH in named else resolve_program(named, _search_path(None), None, args)
    return _new_tuple(SpawnPlan, (args, argv, program, args[0], *PLAIN_OPTIONS))


PLAIN_OPTIONS = SpawnPlan(
    (), (), b"", "", None, None, None, None, None, (), False, None, None, None, True
)[4:]
"""A plain plan's fields after its first four (argv and program): every option's default.
``plan[4:] == PLAIN_OPTIONS`` says a plan asks for nothing but its program and argv."""


def _encode_argv(argv: Iterable[StrOrBytesPath]) -> tuple[tuple[str, ...], tuple[bytes, ...]]:
    """argv as text (for messages and ``Process.args``) and as the kernel's bytes, in one
    pass: each argument encoded as ``os.fsencode`` does, checked, decoded back."""
    if type(argv) is list or type(argv) is tuple:
        given = tuple(argv)
        if set(map(type, given)) == _ONLY_STR:
            # The usual argv, all str: encoded in one C-level pass, NUL checked on the join.
            all_str = tuple(map(str.encode, given, _FS_ENCODINGS, _FS_ERRORS_EACH))
            if _NUL_BYTE not in _NO_BYTES.join(all_str):
                return given, all_str
    if isinstance(argv, (str, bytes)):
        raise TypeError("argv must be a sequence of arguments, not a single string")
    texts: list[str] = []
    encoded: list[bytes] = []
    for arg in argv:
        if type(arg) is str:  # encodes (or raises) and decodes back to itself
            data = arg.encode(_FS_ENCODING, _FS_ERRORS)
            text = arg
        else:
            data = os.fsencode(arg)
            text = data.decode(_FS_ENCODING, _FS_ERRORS)
        if _NUL in data:
            raise ValueError(f"argv contains a NUL byte: {arg!r}")
        encoded.append(data)
        texts.append(text)
    if not encoded:
        raise ValueError("argv must not be empty")
    return tuple(texts), tuple(encoded)


def _limits(limits: Limits | None) -> tuple[tuple[int, int, int], ...]:
    if limits is None:
        return ()
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a tether.Limits, not {limits!r}")
    limits.check()
    return tuple((resource, soft, hard) for _, resource, soft, hard in limits.items())


def _signal_number(value: int | None) -> int:
    if value is None or value == 0:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < signal.NSIG:
        raise ValueError(f"pdeathsig must be a signal number, not {value!r}")
    return int(value)


def _credential(value: int | str | None, what: str) -> int | None:
    """A uid (for ``user``) or gid (otherwise) from a name or a number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{what} must be a name or a number, not {value!r}")
    if isinstance(value, int):
        if not 0 <= value < _NO_ID:
            raise ValueError(f"{what} is out of range: {value}")
        return value
    try:
        if what == "user":
            return pwd.getpwnam(value).pw_uid
        return grp.getgrnam(value).gr_gid
    except KeyError:
        kind = "user" if what == "user" else "group"
        raise ValueError(f"unknown {kind} in {what}: {value!r}") from None


def _group_ids(groups: Iterable[int | str]) -> Iterable[int]:
    if isinstance(groups, (str, bytes)):
        raise TypeError("extra_groups must be a sequence of groups, not a single string")
    for group in groups:
        gid = _credential(group, "extra_groups")
        if gid is None:  # not an assert: validation must survive python -O
            raise TypeError(f"extra_groups must hold names or numbers, not {group!r}")
        yield gid


def resolve_program(
    name: bytes, search_path: bytes, cwd: bytes | None, args: tuple[str, ...]
) -> bytes:
    """Find *name* the way ``execvpe`` does, in the parent.

    A name holding ``/`` is used as it is (relative to the child's cwd). Otherwise each
    ``PATH`` entry is tried in order; directories and files without execute permission
    are skipped, and when nothing fits the error is EACCES if such a file was seen
    (as ``execvp`` reports), ENOENT otherwise.
    """
    if _SLASH in name:
        return name
    saw_unexecutable = False
    for entry in search_path.split(b":"):
        candidate = os.path.join(entry or b".", name)
        on_disk = candidate if cwd is None else os.path.join(cwd, candidate)
        try:
            mode = os.stat(on_disk).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and os.access(on_disk, os.X_OK):
            return candidate
        saw_unexecutable = True
    code = errno.EACCES if saw_unexecutable else errno.ENOENT
    raise SpawnError(code, filename=os.fsdecode(name), stage="exec", argv=args)


def _search_path(env: Mapping[bytes, bytes] | None) -> bytes:
    path = os.environb.get(b"PATH") if env is None else env.get(b"PATH")
    return os.fsencode(os.defpath) if path is None else path


def _encode(value: StrOrBytesPath, what: str) -> bytes:
    encoded = os.fsencode(value)
    if _NUL in encoded:
        raise ValueError(f"{what} contains a NUL byte: {value!r}")
    return encoded


def _encode_env(env: Mapping[str, str] | Mapping[bytes, bytes]) -> dict[bytes, bytes]:
    if not isinstance(env, Mapping):
        raise TypeError(f"env must be a mapping of names to values, not {type(env).__name__}")
    encoded: dict[bytes, bytes] = {}
    for key, value in env.items():
        name = _encode(key, "an environment variable name")
        if not name or _EQUALS in name:
            raise ValueError(f"illegal environment variable name: {key!r}")
        encoded[name] = _encode(value, f"environment variable {key!r}")
    return encoded


def _check_fd(fd: object, what: str) -> int:
    if isinstance(fd, bool) or not isinstance(fd, int):
        raise TypeError(f"{what} must hold file descriptor numbers, not {fd!r}")
    if not 0 <= fd < _MAX_FD:
        raise ValueError(f"{what} holds a file descriptor out of range: {fd}")
    return fd


def _check_open(fds: Iterable[int | None], args: tuple[str, ...]) -> None:
    """Refuse a closed fd now: the spawn itself may reuse its number for a pipe of its own."""
    for fd in fds:
        if fd is None or fd < 0:
            continue
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError as exc:
            raise SpawnError(exc.errno, f"fd {fd} is not open", stage="fd_map", argv=args) from None


def _stdio(value: StdioOption, name: str) -> int | None:
    if value is None or value in (PIPE, DEVNULL):
        return value
    if value == STDOUT:
        if name != "stderr":
            raise ValueError(f"STDOUT is only valid for stderr, not {name}")
        return STDOUT
    if isinstance(value, int) and not isinstance(value, bool):
        return _check_fd(value, name)
    fileno = getattr(value, "fileno", None)
    if fileno is None:
        raise TypeError(
            f"{name} must be None, PIPE, DEVNULL, an fd or a file object, not {value!r}"
        )
    return _check_fd(fileno(), name)

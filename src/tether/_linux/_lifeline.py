"""The lifeline: a helper process that ends a supervisor's cgroups when the supervisor dies.

No kernel mechanism kills a cgroup when the process that created it dies. A supervisor
in ``kill="cgroup"`` mode that is SIGKILLed (the OOM killer, ``kill -9``, a container
runtime's timeout) takes its direct children with it through ``pdeathsig``, but every
grandchild, ``setsid`` daemons included, lives on in the left-over ``tether-<pid>-<n>``
cgroups, which nobody removes. So the first cgroup-mode child of a process starts this
helper, one per supervising process: it holds a pidfd of the supervisor, learns the
cgroups the supervisor makes, and when the supervisor dies, for whatever reason, it
writes ``cgroup.kill`` in each, waits until ``cgroup.events`` says ``populated 0``,
removes them and exits.

It must not depend on anything the supervisor holds once it has started, and it must
start fast, so it is a script run by path with the interpreter isolated
(``python -I -S .../_lifeline.py OWNER``): the standard library only, no ``tether``
import, no site-packages. It runs in a session of its own (a signal to the
supervisor's process group or session does not reach it) with the terminal and stop
signals ignored; only SIGKILL or the supervisor's death ends it.

The supervisor talks to it through its stdin, a pipe of records ended by NUL (a path
can hold any byte but NUL): ``+PATH`` announces a cgroup *before* it is made (so a
supervisor killed between the ``mkdir`` and the message leaves nothing unknown; a path
that never came to exist is skipped), ``-PATH`` withdraws one the scope removed itself.
It answers ``ready`` on stdout once it holds the supervisor's pidfd. It learns of the
death from that pidfd, not from the end of the pipe: a child the supervisor forked may
hold the pipe open, and a supervisor that execs closes it without dying. Before acting
it reads what is left in the pipe, so an announcement written just before the death is
not lost.

:func:`stale` and :func:`release` are also used in-process: at start-up a supervisor
removes the ``tether-*`` cgroups left by a supervising process that died without its
lifeline (both SIGKILLed at once, say). A cgroup ``tether-P-N`` is stale when no
process P exists, or when P started after the cgroup was made (its pid was reused); a
cgroup of a live owner is never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import sys
import time

__all__ = ["release", "serve", "stale"]

PATIENCE = 10.0
"""Seconds to wait for a killed cgroup to empty before trying to remove it anyway."""
_IGNORED = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGPIPE", "SIGTSTP", "SIGTTIN", "SIGTTOU")
_NAME = re.compile(r"tether-([0-9]+)-[0-9]+")
_MARGIN = 1.0
"""Seconds of doubt between a cgroup's making and its owner's start (clock granularity)."""
_READ_SIZE = 65536
_PARENT_CHECK = 1.0


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _wait_empty(path: str, deadline: float) -> None:
    """Wait until ``cgroup.events`` of *path* says ``populated 0``, or until *deadline*."""
    fd = os.open(os.path.join(path, "cgroup.events"), os.O_RDONLY | os.O_CLOEXEC)
    try:
        with select.epoll() as watch:
            watch.register(fd, select.EPOLLPRI)
            while b"populated 1" in os.pread(fd, 4096, 0):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                watch.poll(left)
    finally:
        os.close(fd)


def _remove_tree(path: str) -> None:
    """``rmdir`` *path* and the cgroups below it, deepest first; a vanished one is fine."""
    try:
        with os.scandir(path) as entries:
            below = [entry.path for entry in entries if entry.is_dir(follow_symlinks=False)]
        for directory in below:
            _remove_tree(directory)
        os.rmdir(path)
    except FileNotFoundError:
        pass


def release(paths: list[str], patience: float = PATIENCE) -> list[str]:
    """Kill every process in the cgroups *paths*, wait for them to empty, remove them.

    Best effort, each path on its own: one that does not exist is done already. Returns
    the paths that could not be removed (with the reason), for the caller to report.
    """
    for path in paths:
        with contextlib.suppress(OSError):  # gone, or no cgroup.kill: rmdir will tell
            _write(os.path.join(path, "cgroup.kill"), b"1")
    deadline = time.monotonic() + patience
    failed: list[str] = []
    for path in paths:
        try:
            _wait_empty(path, deadline)
            _remove_tree(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            failed.append(f"{path}: {exc.strerror}")
    return failed


def _boot_seconds_at_start(pid: int) -> float | None:
    """When process *pid* started, in seconds since boot; None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            line = stat.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = line[line.rfind(b")") + 2 :].split()
    return int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime


def stale(parent: str, *, spare: int) -> list[str]:
    """The ``tether-<pid>-<n>`` cgroups directly under *parent* whose owner is gone.

    *spare* is a pid whose cgroups are never stale (ours). A cgroup is stale when its
    owner pid does not exist or started more than a second after the cgroup was made.
    """
    found: list[str] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return found
    for entry in entries:
        match = _NAME.fullmatch(entry.name)
        if match is None or int(match.group(1)) == spare:
            continue
        try:
            made = entry.stat(follow_symlinks=False).st_ctime
        except FileNotFoundError:
            continue
        started = _boot_seconds_at_start(int(match.group(1)))
        if started is not None:
            age = time.time() - made
            made_since_boot = time.clock_gettime(time.CLOCK_BOOTTIME) - age
            if started <= made_since_boot + _MARGIN:
                continue  # its owner (or possibly it) is alive: never touch it
        found.append(entry.path)
    return found


def _apply(records: list[bytes], live: set[str]) -> None:
    for record in records:
        path = os.fsdecode(record[1:])
        if record[:1] == b"+":
            live.add(path)
        elif record[:1] == b"-":
            live.discard(path)


def _drain(control: int, pending: bytes, live: set[str]) -> bytes:
    """Read what the pipe holds now (without blocking) into *live*; return the tail."""
    os.set_blocking(control, False)
    try:
        while True:
            try:
                data = os.read(control, _READ_SIZE)
            except BlockingIOError:
                break
            if not data:
                break
            pending += data
    finally:
        os.set_blocking(control, True)
    *records, pending = pending.split(b"\0")
    _apply(records, live)
    return pending


def serve(owner_pidfd: int, control: int, owner: int | None = None) -> set[str]:
    """Follow the announcements on *control* until the owner's pidfd says it died; then
    release every cgroup still announced. Returns the set that was released.

    Without a pidfd (*owner_pidfd* -1, a kernel or seccomp profile that refuses them),
    the owner is our parent *owner*, and its death shows as a new parent: checked every
    :data:`_PARENT_CHECK` seconds.
    """
    live: set[str] = set()
    pending = b""
    poller = select.poll()
    if owner_pidfd >= 0:
        poller.register(owner_pidfd, select.POLLIN)
    poller.register(control, select.POLLIN)
    timeout = None if owner_pidfd >= 0 else _PARENT_CHECK * 1000
    while True:
        ready = {fd for fd, _ in poller.poll(timeout)}
        if owner_pidfd in ready or (owner_pidfd < 0 and os.getppid() != owner):
            break
        if control in ready:
            data = os.read(control, _READ_SIZE)
            if not data:  # closed by an exec, or by a fork child's exit: keep watching
                poller.unregister(control)
                continue
            *records, pending = (pending + data).split(b"\0")
            _apply(records, live)
    with contextlib.suppress(OSError):
        pending = _drain(control, pending, live)
    release(sorted(live))
    return live


def main(argv: list[str]) -> int:  # pragma: no cover - runs as its own process (test_lifeline)
    """``_lifeline.py OWNER_PID``: stdin is the control pipe, stdout the ready handshake."""
    for name in _IGNORED:
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    owner = int(argv[1])
    try:
        owner_pidfd = os.pidfd_open(owner)
    except ProcessLookupError:
        owner_pidfd = -1
    except OSError:  # no pidfds here: watch our parent pid instead
        owner_pidfd = -1
    if os.getppid() != owner:  # died before we held it: act now
        live: set[str] = set()
        with contextlib.suppress(OSError):
            _drain(0, b"", live)
        release(sorted(live))
        return 0
    os.write(1, b"ready\n")
    os.close(1)
    serve(owner_pidfd, 0, owner)
    return 0


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(OSError):
        os.setsid()  # tether starts it in a session of its own already; here for direct use
    sys.exit(main(sys.argv))

"""The service manager's side channel: ``NOTIFY_SOCKET`` and socket activation, in plain Python.

A service that does *not* daemonize talks to its manager (systemd, or anything that
speaks the same protocol, such as ``tether daemon``) through a datagram socket named in
``NOTIFY_SOCKET``: ``READY=1`` when it serves, ``STATUS=...`` for humans,
``STOPPING=1``, ``RELOADING=1`` (with ``MONOTONIC_USEC``, as ``Type=notify-reload``
requires), ``WATCHDOG=1`` keep-alives, ``MAINPID=``. The hazards:

* The address is a filesystem path (``/run/...``) or, with a leading ``@``, a Linux
  abstract socket name (the ``@`` stands for a NUL byte). Anything else is refused.
* A send that fails is an error the caller sees (``OSError``): a service that believes
  it said ``READY=1`` when it did not is killed by its start timeout, with nothing in
  the log. No ``NOTIFY_SOCKET`` at all is not an error: not running under a manager,
  the calls return ``False``.
* ``BARRIER=1`` carries the write end of a pipe (``SCM_RIGHTS``); the manager closes it
  once every earlier message is processed, which the caller sees as a hang-up on the
  read end.
* Socket activation passes fds from 3 up; they are ours only if ``LISTEN_PID`` is our
  pid (a child that inherited the variables must not take its parent's sockets), and the
  variables are unset by default so our own children do not take them either.
"""

from __future__ import annotations

import array
import os
import select
import socket
import time
from collections.abc import Mapping

from .._durations import check_duration, poll_millis

__all__ = ["LISTEN_FDS_START", "barrier", "listen_fds", "notify", "watchdog_ping"]

LISTEN_FDS_START = 3
"""The first fd a socket-activated service receives (``SD_LISTEN_FDS_START``)."""


def _address(value: str) -> str | bytes:
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    raise ValueError(
        f"NOTIFY_SOCKET={value!r}: expected an absolute path or an abstract name starting with @"
    )


def _send(message: bytes, fds: tuple[int, ...] = ()) -> bool:
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return False
    address = _address(target)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        sent = sock.sendmsg([message], ancillary if fds else [], 0, address)
    if sent != len(message):
        raise OSError(f"NOTIFY_SOCKET={target}: sent {sent} of {len(message)} bytes")
    return True


def _field(name: str, value: str) -> str:
    if "\n" in value:
        raise ValueError(f"{name} must be a single line, not {value!r}")
    return f"{name}={value}"


def notify(
    *,
    ready: bool = False,
    status: str | None = None,
    stopping: bool = False,
    reloading: bool = False,
    mainpid: int | None = None,
    errno: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> bool:
    """Send one message to the service manager; ``False`` when ``NOTIFY_SOCKET`` is unset.

    ``ready`` sends ``READY=1``, ``status`` ``STATUS=...``, ``stopping`` ``STOPPING=1``,
    ``reloading`` ``RELOADING=1`` with ``MONOTONIC_USEC`` (the time now, as
    ``Type=notify-reload`` wants), ``mainpid`` ``MAINPID=N``, ``errno`` ``ERRNO=N``, and
    *extra* any other ``KEY=value`` pairs. Raises ``ValueError`` for a malformed address,
    a value with a newline or an empty message, and ``OSError`` when the send fails.
    """
    lines: list[str] = []
    if ready:
        lines.append("READY=1")
    if reloading:
        lines += ["RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}"]
    if stopping:
        lines.append("STOPPING=1")
    if status is not None:
        lines.append(_field("STATUS", status))
    if mainpid is not None:
        lines.append(f"MAINPID={int(mainpid)}")
    if errno is not None:
        lines.append(f"ERRNO={int(errno)}")
    for key, value in (extra or {}).items():
        if not key or "=" in key or "\n" in key:
            raise ValueError(f"not a notification key: {key!r}")
        lines.append(_field(key, value))
    if not lines:
        raise ValueError("notify() needs at least one thing to say")
    return _send(("\n".join(lines) + "\n").encode())


def watchdog_ping() -> bool:
    """Send ``WATCHDOG=1`` if the manager asked this process for keep-alives.

    That is: ``WATCHDOG_USEC`` is set and ``WATCHDOG_PID`` is unset or names this
    process. Returns whether a ping was sent; ``OSError`` if the send failed. Ping at
    least every ``WATCHDOG_USEC / 2`` microseconds.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return False
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return False
    return _send(b"WATCHDOG=1\n")


def barrier(timeout: float = 5.0) -> bool:
    """Wait until the manager has processed every message sent before (``BARRIER=1``).

    Returns ``False`` without a ``NOTIFY_SOCKET``; raises ``TimeoutError`` when the
    manager has not answered within *timeout* seconds.
    """
    timeout = check_duration(timeout, "timeout")
    if not os.environ.get("NOTIFY_SOCKET"):
        return False
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        try:
            _send(b"BARRIER=1\n", (write_end,))
        finally:
            os.close(write_end)  # the manager holds the only other copy
        poller = select.poll()
        poller.register(read_end, select.POLLIN)  # POLLHUP is always reported
        if not poller.poll(poll_millis(timeout)):
            raise TimeoutError(f"the service manager did not answer BARRIER=1 in {timeout} s")
        return True
    finally:
        os.close(read_end)


def listen_fds(*, unset_environment: bool = True) -> list[tuple[int, str]]:
    """The fds passed by socket activation, as ``(fd, name)`` pairs from fd 3 up.

    Empty unless ``LISTEN_PID`` names this process. Names come from
    ``LISTEN_FDNAMES`` (``"unknown"`` where none was given). Each fd is made
    close-on-exec. With *unset_environment* (the default), ``LISTEN_PID``,
    ``LISTEN_FDS`` and ``LISTEN_FDNAMES`` are removed so that children do not take
    them. Malformed variables raise ``ValueError``.
    """
    try:
        pid_text = os.environ.get("LISTEN_PID")
        count_text = os.environ.get("LISTEN_FDS")
        names_text = os.environ.get("LISTEN_FDNAMES")
        if pid_text is None or count_text is None:
            return []
        if not pid_text.isdigit() or not count_text.isdigit():
            raise ValueError(f"malformed LISTEN_PID={pid_text!r} or LISTEN_FDS={count_text!r}")
        if int(pid_text) != os.getpid():
            return []
        count = int(count_text)
        names = names_text.split(":") if names_text else []
        if names and len(names) != count:
            raise ValueError(f"LISTEN_FDNAMES names {len(names)} fds, LISTEN_FDS says {count}")
        found = []
        for index in range(count):
            fd = LISTEN_FDS_START + index
            os.set_inheritable(fd, False)
            found.append((fd, names[index] if names else "unknown"))
        return found
    finally:
        if unset_environment:
            for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
                os.environ.pop(name, None)

"""What tether has learned about this kernel, in one object: :data:`KERNEL`.

The hazard is learning a kernel fact from an error that has another cause. The
kernel reports a feature it lacks with a generic errno, and the same errno comes
back for a caller's mistake: ``pidfd_send_signal`` answers EINVAL both for an
unknown ``PIDFD_SIGNAL_PROCESS_GROUP`` flag (before Linux 6.9) and for a signal
number that does not exist. Taking the second for the first would turn group
signalling off for the rest of the process after one bad ``send_signal(999)``, and
grandchildren would then outlive their scope. So a fact is learned only from a
call whose failure can mean nothing else (a probe), and once learned it holds for
the life of the process: the kernel does not change under a running program.

Each fact is ``None`` until learned, then True (the kernel does it) or False (it
refused):

* ``pidfd_open``: ``pidfd_open`` (Linux 5.3), refused with ENOSYS on old kernels and
  EPERM under some seccomp profiles; learned from the first call. False sends every
  later spawn to the pid-based fallback.
* ``waitid_pidfd``: ``waitid(P_PIDFD)`` (Linux 5.4); learned from the ``WNOWAIT``
  check right after ``pidfd_open``, or from the first reap of a pidfd that was not
  opened here (``clone(CLONE_PIDFD)``).
* ``pidfd_group_signal``: ``PIDFD_SIGNAL_PROCESS_GROUP`` (Linux 6.9); learned by
  :func:`pidfd_group_signal` from signal 0 sent with the flag through a pidfd of
  this very process, to the group our pid names. The kernel checks the flags before
  anything else (every version since 5.1), signal 0 is valid and a pidfd of
  ourselves is always in our pid namespace, so EINVAL can only mean the flag is
  unknown; any other answer proves it was accepted, ESRCH included (we need not
  lead a group, and the group our pid names is then empty).

Whether ``clone(CLONE_PIDFD)`` worked is not kept here: the C spawner knows it
(``tether._native.clone_pidfd_used()``), and that layer sits above this one. So does
``clone3(CLONE_PIDFD_AUTOKILL)`` (Linux 7.1, EINVAL before), probed once by cloning a
child that exits at once (``tether._native.spawner.pidfd_autokill()``): where the kernel
has it, the init of each ``kill="namespace"`` child is cloned with it.

Tests may set a fact to simulate another kernel, and :meth:`KernelProbes.forget`
makes every fact be learned again.
"""

from __future__ import annotations

import errno
import os
import signal

from typing_extensions import final

__all__ = ["KERNEL", "PIDFD_SIGNAL_PROCESS_GROUP", "KernelProbes", "pidfd_group_signal"]

PIDFD_SIGNAL_PROCESS_GROUP = 4  # Linux 6.9
_CONCLUSIVE = frozenset({errno.EINVAL, errno.ESRCH, errno.EPERM})  # answers that tell


@final
class KernelProbes:
    """The kernel facts tether has learned so far; the one instance is :data:`KERNEL`."""

    __slots__ = ("pidfd_group_signal", "pidfd_open", "waitid_pidfd")

    def __init__(self) -> None:
        self.pidfd_open: bool | None = None
        """Whether ``pidfd_open`` works (False once refused for good)."""
        self.waitid_pidfd: bool | None = None
        """Whether ``waitid(P_PIDFD, ...)`` works."""
        self.pidfd_group_signal: bool | None = None
        """Whether ``pidfd_send_signal`` takes ``PIDFD_SIGNAL_PROCESS_GROUP``."""

    def forget(self) -> None:
        """Forget every fact, so each is probed again when next needed."""
        self.pidfd_open = self.waitid_pidfd = self.pidfd_group_signal = None

    def __repr__(self) -> str:
        facts = ", ".join(f"{name}={getattr(self, name)!r}" for name in sorted(self.__slots__))
        return f"KernelProbes({facts})"


KERNEL = KernelProbes()
"""What this process has learned about its kernel."""


def pidfd_group_signal() -> bool | None:
    """Whether ``pidfd_send_signal`` takes ``PIDFD_SIGNAL_PROCESS_GROUP``; probed once.

    None when it cannot be told yet: pidfds are refused, or no fd was free for the
    probe. The caller then falls back as it would on an older kernel, and the next
    call probes again.
    """
    known = KERNEL.pidfd_group_signal
    if known is not None:
        return known
    if KERNEL.pidfd_open is False:
        return None
    try:
        own = os.pidfd_open(os.getpid())
    except OSError:
        return None
    try:
        signal.pidfd_send_signal(own, 0, None, PIDFD_SIGNAL_PROCESS_GROUP)
    except OSError as exc:
        if exc.errno not in _CONCLUSIVE:
            raise
        KERNEL.pidfd_group_signal = exc.errno != errno.EINVAL
    else:
        KERNEL.pidfd_group_signal = True
    finally:
        os.close(own)
    return KERNEL.pidfd_group_signal

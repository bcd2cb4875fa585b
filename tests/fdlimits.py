"""Running out of file descriptors on purpose, and getting them back."""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Iterator


@contextlib.contextmanager
def no_free_fds(spare: int = 0) -> Iterator[None]:
    """Inside the block, opening more than *spare* fds fails with ``EMFILE``.

    Every gap below the highest open fd is filled and the soft ``RLIMIT_NOFILE`` lowered
    to just above it; both are undone when the block ends.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(name) for name in os.listdir("/proc/self/fd"))
    fillers = []
    try:
        while (fd := os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)) < highest:
            fillers.append(fd)
        os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1 + spare, hard))
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for fd in fillers:
            os.close(fd)

"""Exceptions out of tether's own task groups come out as they went in.

anyio task groups wrap what their tasks raise in a ``BaseExceptionGroup`` (always on
trio, often on asyncio), so a Ctrl-C during ``run_process`` would reach the caller as
``BaseExceptionGroup([KeyboardInterrupt()])`` on one event loop and as a bare
``KeyboardInterrupt`` on the other, and ``except KeyboardInterrupt`` would miss the
first. The task groups tether opens for its own work are an implementation detail: a
lone exception leaves them unwrapped; several stay grouped, since none of them may be
dropped.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found, unused-ignore]

__all__ = ["lone", "ungrouped"]


def lone(exc: BaseException) -> BaseException:
    """The exception inside groups of one (nested or not); *exc* itself otherwise."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


@contextlib.contextmanager
def ungrouped() -> Iterator[None]:
    """Re-raise a lone exception out of the task groups opened inside, unwrapped."""
    try:
        yield
    except BaseExceptionGroup as group:
        inner = lone(group)
        if inner is group:
            raise
        raise inner from None

"""Shared fixtures: the leak guard, and the backend / pidfd matrices."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import pytest

from tests import leakguard
from tether._linux import _pidfd


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail any test that leaves a child, a zombie, a thread or an fd behind."""
    before = leakguard.snapshot()
    yield
    found = leakguard.settle_and_check(before)
    if found:
        leakguard.reap_leaked_children(before)
        pytest.fail("test left behind: " + "; ".join(found), pytrace=False)


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Each event loop in turn; module scope runs all tests of one loop together."""
    return str(request.param)


@pytest.fixture(params=["native", "posix_spawn", "fork"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each spawn backend in turn."""
    return str(request.param)


def _refuse_pidfd_open(pid: int, flags: int = 0) -> int:
    raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))


@pytest.fixture
def no_pidfd(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make ``pidfd_open`` fail with ENOSYS, as under an old seccomp profile."""
    monkeypatch.setattr(os, "pidfd_open", _refuse_pidfd_open)
    _pidfd.disable_pidfds()  # as after the first refusal; the native spawner asks first
    yield
    _pidfd.reset_pidfd_probe()


@pytest.fixture(params=["pidfd", "no_pidfd"])
def pidfd_mode(request: pytest.FixtureRequest) -> str:
    """Run the test with pidfds and again on the forced no-pidfd fallback."""
    if request.param == "no_pidfd":
        request.getfixturevalue("no_pidfd")
    return str(request.param)

"""The code blocks of README.md and docs/*.md run in the test suite (sybil).

The hazard is an example that no longer does what its page says: docs drift from the code
unless every example runs and its shown output is compared. So pytest collects README.md and
every page directly under docs/ (``testpaths`` in pyproject.toml), and this file tells sybil
how to read them. The convention for writing a page:

* A fenced block marked ``python`` whose first line starts with ``>>>`` is a doctest: each
  ``>>>`` (and ``...``) statement runs and the lines after it, up to a blank line or the next
  ``>>>``, are the output it must print. ``...`` inside an output matches anything (doctest's
  ELLIPSIS is on), for pids, timings and paths. Write ``<BLANKLINE>`` for an empty output line.
* A ``python`` block that does not start with ``>>>`` runs as a script: for definitions that
  later blocks use. It must print nothing (its output would be checked by nobody).
* All blocks of one page share one namespace, in page order, so a later block may use what an
  earlier one defined; each page starts afresh.
* Blocks marked ``console``, ``text``, ``bash``, ``sh``, ``toml``, ``ini`` or anything other than
  ``python`` are not run: shell sessions, output listings, configuration.
* A ``python`` block that must not run (it needs root, a cgroup v2 delegation, a real
  service manager, or it is a fragment) is preceded by a skip directive with its reason, which
  pytest shows in its summary::

      <!-- skip: next "needs root to change the child's user" -->

  ``<!-- skip: start "reason" -->`` ... ``<!-- skip: end -->`` skips several. A skip without a
  reason is refused, so that no example is silently dropped.

Every page runs under the leak guard of tests/conftest.py: a page whose examples leave a
child, a zombie, a thread or an fd behind when its last example has run fails, as a test
would (the check is per page, so one example may start a child that a later one reaps).

Being the root conftest, it also gives the whole run (tests and pages) the default
dispositions of SIGINT and SIGQUIT, whoever started pytest (``pytest_configure``).
"""

from __future__ import annotations

import dataclasses
import doctest
import faulthandler
import os
import signal
from collections.abc import Iterable, Iterator

import pytest
from sybil import Document, Region, Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser
from tests import leakguard


class SkipWithReasonParser(SkipParser):
    """sybil's ``<!-- skip: ... -->``, refusing a ``start`` or ``next`` without a reason."""

    def __call__(self, document: Document) -> Iterable[Region]:
        for region in super().__call__(document):
            action, reason = region.parsed
            if action in ("start", "next") and not reason:
                line = document.text.count("\n", 0, region.start) + 1
                raise ValueError(
                    f"{document.path}, line {line}: 'skip: {action}' needs a reason, "
                    f'as in <!-- skip: {action} "needs root" -->'
                )
            yield region


def pytest_configure(config: pytest.Config) -> None:
    """Start from the default SIGINT and SIGQUIT, even when pytest was started ignoring them.

    A shell without job control starts a background job with both ignored, and an ignored
    signal stays ignored in every child (tether keeps ignored signals ignored, as subprocess
    does, and a shell cannot un-ignore one it inherited). The tests and examples that stop a
    child with SIGINT would then fail for a reason outside tether.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def _quiet_watchdog() -> None:
    """Stop the current test's faulthandler watchdog thread (``faulthandler_timeout``).

    pytest starts one such thread per test, so the first and the last example of a page see
    different ones, which the guard would report as a leak. pytest-timeout still bounds the
    test; the next test arms a new watchdog.
    """
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def page_leak_guard() -> Iterator[None]:
    """The leak guard of tests/conftest.py, around all the examples of one page.

    Per page, not per example: one ``>>>`` statement may start a child that a later one on
    the same page reaps, as a reader would write it.
    """
    _quiet_watchdog()
    before = leakguard.snapshot()
    yield
    _quiet_watchdog()
    # The last page's check may run after pytest has given fds 0-2 back from its capture.
    standard = {(fd, os.readlink(f"/proc/self/fd/{fd}")) for fd in (0, 1, 2)}
    before = dataclasses.replace(before, fds=before.fds | standard)
    found = leakguard.settle_and_check(before)
    if found:
        leakguard.reap_leaked_children(before)
        pytest.fail("the page's examples left behind: " + "; ".join(found), pytrace=False)


pytest_collect_file = Sybil(
    parsers=[
        PythonCodeBlockParser(doctest_optionflags=doctest.ELLIPSIS),
        SkipWithReasonParser(),
    ],
    patterns=["README.md", "docs/*.md"],
    fixtures=["page_leak_guard"],
).pytest()

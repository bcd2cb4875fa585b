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

Every example runs under the leak guard of tests/conftest.py: an example that leaves a child,
a zombie, a thread or an fd behind fails, as a test would.
"""

from __future__ import annotations

import doctest
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


@pytest.fixture
def docs_no_leaks() -> Iterator[None]:
    """The leak guard of tests/conftest.py, for the examples of the docs."""
    before = leakguard.snapshot()
    yield
    found = leakguard.settle_and_check(before)
    if found:
        leakguard.reap_leaked_children(before)
        pytest.fail("example left behind: " + "; ".join(found), pytrace=False)


pytest_collect_file = Sybil(
    parsers=[
        PythonCodeBlockParser(doctest_optionflags=doctest.ELLIPSIS),
        SkipWithReasonParser(),
    ],
    patterns=["README.md", "docs/*.md"],
    # The hand-written pages that issue 14's content pages replace (their examples predate
    # this convention): guide.md and migration.md are removed by that branch, and
    # daemons-and-cli.md is rewritten by it. Empty this list when merging it.
    excludes=["docs/guide.md", "docs/migration.md", "docs/daemons-and-cli.md"],
    fixtures=["docs_no_leaks"],
).pytest()

"""Run CPython's own ``test.test_subprocess`` against ``tether.subprocess``.

The interpreter's test module is imported and its module-global ``subprocess`` is
rebound to the drop-in, so every test that says ``subprocess.Popen(...)``,
``subprocess.run(...)``, ``subprocess.TimeoutExpired`` ... exercises tether. The same
tests are first run against the standard module on the same interpreter, in a fresh
process each, and the verdict is: every test that passes against the standard module
passes against the drop-in, except the tests listed in :data:`EXCLUDED` with their
reason (tests of CPython's internals: mocks of ``_posixsubprocess``, ``_USE_VFORK``,
``_waitpid_lock`` and the like; see docs/subprocess.md).

Usage::

    python tools/conformance.py            # both runs, the comparison, exit 1 on a regression
    python tools/conformance.py --only tether --verbose   # one run, with tracebacks

An interpreter without the ``test`` package (some distributions strip it) is reported
and exits 0 with nothing run: there is nothing to conform to.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import selectors
import subprocess
import sys
import tempfile
import types
import unittest
from typing import Any

# Test ids relative to test.test_subprocess ("Class.test_name", or "*.test_name" for a
# test in whichever class), with the reason each cannot apply to the drop-in. Tests that
# appear only on some versions are fine here.
_MOCKS_STANDARD_POPEN = (
    "mocks Popen._communicate and Popen._wait and swaps subprocess.Popen for a subclass "
    "of the standard class made at import: it exercises the standard class (the drop-in's "
    "Ctrl-C courtesy wait has its own test in tests/test_subprocess_dropin.py)"
)
_PURE_PYTHON_BRANCH = (
    "branches on subprocess._fork_exec (is the C helper _posixsubprocess in use?); the "
    "drop-in raises the C helper's SubprocessError('Exception occurred in preexec_fn.'), "
    "which tests/test_subprocess_dropin.py checks"
)
_ACTIVE_LIST = (
    "asserts that a dropped Popen is put in subprocess._active, the standard module's "
    "list for the next Popen to reap; the drop-in hands it to tether's reaper thread "
    "instead (tests/test_subprocess_better.py shows the difference)"
)
EXCLUDED: dict[str, str] = {
    "MiscTests.test_call_keyboardinterrupt_no_kill": _MOCKS_STANDARD_POPEN,
    "MiscTests.test_run_keyboardinterrupt_no_kill": _MOCKS_STANDARD_POPEN,
    "MiscTests.test_context_manager_keyboardinterrupt_no_kill": _MOCKS_STANDARD_POPEN,
    "POSIXProcessTestCase.test_preexec_errpipe_does_not_double_close_pipes": (
        "subclasses the standard Popen (made at import) and overrides its "
        "_execute_child, the standard class's private spawn step"
    ),
    "POSIXProcessTestCase.test_preexec_exception": _PURE_PYTHON_BRANCH,
    "POSIXProcessTestCase.test_surrogates_error_message": _PURE_PYTHON_BRANCH,
    "POSIXProcessTestCase.test_leak_fast_process_del_killed": _ACTIVE_LIST,
    "POSIXProcessTestCase.test_zombie_fast_process_del": _ACTIVE_LIST,
    "POSIXProcessTestCase.test_stopped": (
        "mocks os.waitpid to return a stopped status; the drop-in waits with "
        "waitid(P_PIDFD), which the mock does not reach"
    ),
    # In whichever class a version has it (ProcessTestCase, ProcessTestCaseNoPoll,
    # RunFuncTestCase on 3.10, POSIXProcessTestCase on 3.13).
    "*.test__use_vfork": "reads subprocess._USE_VFORK, a switch of _posixsubprocess",
    "ProcessTestCase.test_repr": (
        "mocks Popen._execute_child, the standard class's private spawn step, to make a "
        "Popen without a child (repr itself is checked in tests/test_subprocess_dropin.py)"
    ),
    "ProcessTestCaseNoPoll.test_repr": (
        "mocks Popen._execute_child, the standard class's private spawn step, to make a "
        "Popen without a child (repr itself is checked in tests/test_subprocess_dropin.py)"
    ),
}

_HARNESS_SHIMS = """\
The test module's setUp/tearDown reap the standard module's ``_active`` list through
``subprocess._cleanup()`` and assert it ends empty. The drop-in has no such list (a
dropped Popen goes to tether's reaper thread), so for the run the drop-in is given an
always-empty ``_active`` and a no-op ``_cleanup``: the truth about the drop-in.
"""


def _bind_drop_in(module: types.ModuleType) -> None:
    """Make the test module's ``subprocess`` the drop-in, with the harness shims."""
    import tether.subprocess as drop_in

    drop_in._active = []  # type: ignore[attr-defined]
    drop_in._cleanup = lambda: None  # type: ignore[attr-defined]
    # ProcessTestCaseNoPoll swaps this for select(); the drop-in's loop always polls, so
    # those tests run the same loop again.
    drop_in._PopenSelector = selectors.PollSelector  # type: ignore[attr-defined]
    module.subprocess = drop_in  # type: ignore[attr-defined]


class _Recorder(unittest.TextTestResult):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: dict[str, str] = {}

    def _note(self, test: unittest.TestCase, outcome: str) -> None:
        name = test.id().removeprefix("test.test_subprocess.")
        if self.outcomes.get(name) in (None, "pass"):  # a subtest failure wins
            self.outcomes[name] = outcome

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._note(test, "pass")

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._note(test, "fail")

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        self._note(test, "error")

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self._note(test, "skip")

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._note(test, "pass")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._note(test, "fail")

    def addSubTest(self, test: unittest.TestCase, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._note(test, "fail")


def is_excluded(name: str) -> bool:
    """Whether the test ``Class.test_name`` is in :data:`EXCLUDED`."""
    return name in EXCLUDED or "*." + name.rpartition(".")[2] in EXCLUDED


def _excluded(test: unittest.TestCase) -> bool:
    return is_excluded(test.id().removeprefix("test.test_subprocess."))


def _filter(suite: unittest.TestSuite) -> unittest.TestSuite:
    kept = unittest.TestSuite()
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            kept.addTest(_filter(item))
        elif not _excluded(item):
            kept.addTest(item)
    return kept


def run_one(target: str, output: str, verbose: bool) -> int:
    """Run the test module against *target* ("stdlib" or "tether") in this process."""
    try:
        import test.test_subprocess as module
    except ImportError as error:
        print(f"conformance: no test.test_subprocess here ({error})", file=sys.stderr)
        return 3
    if target == "tether":
        _bind_drop_in(module)
    suite = unittest.defaultTestLoader.loadTestsFromModule(module)
    if target == "tether":
        suite = _filter(suite)
    stream = sys.stderr if verbose else open(os.devnull, "w")  # noqa: SIM115
    runner = unittest.TextTestRunner(
        stream=stream, verbosity=2 if verbose else 0, resultclass=_Recorder
    )
    result = runner.run(suite)
    assert isinstance(result, _Recorder)
    with open(output, "w") as file:
        json.dump(result.outcomes, file, indent=0, sort_keys=True)
    return 0


def _interpreter() -> tuple[str, dict[str, str]]:
    """The base interpreter of this venv, and an environment that finds tether from it.

    ``test.test_subprocess`` skips a few tests in a venv (``test_executable_with_cwd``,
    ``..._without_cwd``), so both runs use the interpreter the venv was made from, with
    this process's ``sys.path`` (tether, its dependencies) on ``PYTHONPATH``.
    """
    base = getattr(sys, "_base_executable", "") or sys.executable
    if not os.path.exists(base):
        base = sys.executable
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(entry for entry in sys.path if entry)
    return base, env


def _run_child(target: str, verbose: bool) -> dict[str, str] | None:
    python, env = _interpreter()
    with tempfile.TemporaryDirectory() as scratch:
        output = os.path.join(scratch, "outcomes.json")
        command = [python, os.path.abspath(__file__), "--only", target, "--json", output]
        if verbose:
            command.append("--verbose")
        code = subprocess.call(command, cwd=scratch, env=env, timeout=1200)
        if code == 3:
            return None
        if code != 0 or not os.path.exists(output):
            raise SystemExit(f"conformance: the {target} run failed (exit {code})")
        with open(output) as file:
            outcomes: dict[str, str] = json.load(file)
            return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["stdlib", "tether"])
    parser.add_argument("--json", help="where --only writes the outcomes")
    parser.add_argument("--verbose", action="store_true")
    options = parser.parse_args()
    version = "{}.{}".format(*sys.version_info[:2])
    if options.only:
        return run_one(options.only, options.json or os.devnull, options.verbose)
    stdlib = _run_child("stdlib", False)
    if stdlib is None:
        print(
            f"conformance: CPython {version}: SKIPPED, this interpreter ships no "
            "test.test_subprocess (the test package is not installed)"
        )
        return 0
    tether = _run_child("tether", options.verbose)
    assert tether is not None
    standard_passes = [name for name, outcome in stdlib.items() if outcome == "pass"]
    excluded = [name for name in standard_passes if is_excluded(name)]
    passing = sorted(name for name in standard_passes if not is_excluded(name))
    regressions = [name for name in passing if tether.get(name) != "pass"]
    passed = len(passing) - len(regressions)
    print(
        f"conformance: CPython {version}: test.test_subprocess has {len(stdlib)} tests here; "
        f"{len(standard_passes)} pass against the standard module, of which {len(excluded)} "
        f"test CPython internals (excluded, see docs/subprocess.md); "
        f"{passed}/{len(passing)} of the others pass against tether.subprocess"
    )
    others = collections.Counter(outcome for outcome in stdlib.values() if outcome != "pass")
    if others:
        print(
            "  against the standard module, the rest: "
            + ", ".join(f"{count} {outcome}" for outcome, count in sorted(others.items()))
        )
    for name in regressions:
        print(f"  REGRESSION: {name}: {tether.get(name, 'not run')}")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())

"""Keep-alive: one supervised child across its restarts, and the error for giving it up.

``sup.spawn(argv, restart="on-failure")`` (``await sup.start(...)`` in async code) puts a
child under a :class:`~tether._restart.RestartPolicy`. The supervisor then keeps a
:class:`Supervised` record for it, and whatever watches the child's exits (a thread for
``Supervisor``, a task for ``AsyncSupervisor``) brings each exit here. The record asks
its :class:`~tether._restart.RestartTracker` what to do and moves through its states:

* ``"running"``: the current incarnation is alive (or has exited a moment ago and the
  exit is about to be looked at);
* ``"restarting"``: it exited, the policy wants it back, and the next incarnation is
  due at :attr:`Supervised.next_restart` (a time on the supervisor's clock);
* ``"exited"``: it exited and stays down (``"on-failure"`` after a success, or the
  scope was ending);
* ``"failed"``: the restart budget was spent, a restart could not be spawned, or the
  child's status was stolen; :attr:`Supervised.error` is the
  :class:`SupervisedChildFailed` that ``wait_any()``/``wait_all()`` raise, or that the
  scope raises when it ends if nobody has seen it yet. A failure is never swallowed.

Each exit and each restart is logged at INFO on the ``"tether.supervisor"`` logger and
giving up at ERROR, with the tracker's reason ("exited with status 1: restarting in
0.2s (restart 2 of 5 within 60s)"). A child spawned without a policy gets a record
too (so that ``sup.children`` lists every child), but no tracker and no log lines.

Records are plain state: the supervisor that owns one serialises every change (under
its lock in threads, in its event loop in tasks).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterable
from typing import Generic, Literal, TypeAlias, TypeVar

from typing_extensions import final

from .._errors import SupervisedChildFailed
from .._spawn import SpawnOptions, StrOrBytesPath
from .._status import Status
from ._readiness import Readiness, ReadyMode
from ._restart import Backoff, Decision, RestartPolicy, RestartTracker
from ._tree import ProcessTree

__all__ = [
    "State",
    "Supervised",
    "frozen_argv",
    "frozen_options",
    "logger",
    "parse_policy",
    "stop_leftovers",
]

logger = logging.getLogger("tether.supervisor")
"""Where exits and restarts (INFO) and give-ups (ERROR) of supervised children go."""

State: TypeAlias = Literal["running", "restarting", "exited", "failed"]
"""Where a :class:`Supervised` child stands; see the module documentation."""

H = TypeVar("H")


def parse_policy(
    restart: str | RestartPolicy | None, backoff: Backoff | float | None
) -> RestartPolicy | None:
    """The policy ``spawn(restart=..., backoff=...)`` asks for; None for a plain child."""
    if restart is None and backoff is None:
        return None
    policy = RestartPolicy.parse(restart, backoff)
    if policy.mode == "never":
        if backoff is not None:
            raise ValueError('backoff= needs a restart policy: restart="on-failure" or "always"')
        return None
    return policy


def frozen_argv(argv: Iterable[StrOrBytesPath]) -> Iterable[StrOrBytesPath]:
    """*argv* as a list that every restart can use again (a single string is left to fail)."""
    return argv if isinstance(argv, (str, bytes)) else list(argv)


def frozen_options(options: SpawnOptions) -> SpawnOptions:
    """A copy of *options* whose iterables survive being read once per incarnation."""
    frozen: SpawnOptions = {**options}
    if "pass_fds" in frozen:
        frozen["pass_fds"] = tuple(frozen["pass_fds"])
    extra = frozen.get("extra_groups")
    if extra is not None:
        frozen["extra_groups"] = tuple(extra)
    return frozen


def stop_leftovers(tree: ProcessTree, sig: int) -> None:
    """Signal what is left of an exited incarnation's tree before its restart."""
    if tree.closed:
        return
    try:
        if sig == signal.SIGKILL:
            tree.kill()
        else:
            tree.stop(sig)
    except Exception as exc:  # the scope's shutdown tries again, and reports
        logger.warning("could not signal what is left of %s: %r", list(tree.process.args), exc)


@final
class Supervised(Generic[H]):
    """One child of a supervisor, across its restarts: its current handle and its state.

    ``Supervisor.supervised`` (and ``AsyncSupervisor.supervised``) list one per child,
    in start order. :attr:`process` is the *current* incarnation: a restarted child has
    a new pid and a new handle (with new pipes, if it was spawned with ``PIPE``), while
    the handle ``spawn()`` returned stays the first one.
    """

    __slots__ = (
        "_argv",
        "_due",
        "_error",
        "_failure_seen",
        "_first",
        "_handed_out",
        "_handle",
        "_options",
        "_policy",
        "_ready",
        "_restarts",
        "_state",
        "_tracker",
        "_tree",
    )

    def __init__(
        self,
        handle: H,
        tree: ProcessTree,
        argv: Iterable[StrOrBytesPath],
        options: SpawnOptions,
        tracker: RestartTracker | None,
        ready: ReadyMode | None = None,
    ) -> None:
        self._handle = handle
        self._ready = ready
        self._tree = tree
        self._first = tree  # the incarnation whose handle spawn() returned
        self._argv = argv
        self._options = options
        self._tracker = tracker
        self._policy = RestartPolicy() if tracker is None else tracker.policy
        self._state: State = "running"
        self._restarts = 0
        self._due: float | None = None
        self._error: SupervisedChildFailed | None = None
        self._handed_out = False  # by wait_any()
        self._failure_seen = False  # the error was raised to the caller
        if tracker is not None:
            tracker.started(needs_ready=ready is not None)

    @property
    def process(self) -> H:
        """The handle of the current incarnation (the last one, once it stays down)."""
        return self._handle

    @property
    def args(self) -> tuple[str, ...]:
        """The argv the child is (re)started with."""
        return self._tree.process.args

    @property
    def policy(self) -> RestartPolicy:
        """The restart policy (mode ``"never"`` for a child spawned without one)."""
        return self._policy

    @property
    def restarts(self) -> int:
        """How many times the child has been restarted so far."""
        return self._restarts

    @property
    def ready(self) -> bool | None:
        """Whether the current incarnation has said it is ready; None without ``ready=``."""
        readiness = self._readiness()
        return None if readiness is None else readiness.check()

    @property
    def notify_status(self) -> str | None:
        """The last ``STATUS=`` text of the current incarnation (``ready="notify"``)."""
        readiness = self._readiness()
        return None if readiness is None else readiness.status_text

    @property
    def state(self) -> State:
        """``"running"``, ``"restarting"``, ``"exited"`` or ``"failed"``."""
        if self._tracker is None and self._tree.process.status is not None:
            return "exited"
        return self._state

    @property
    def failed(self) -> bool:
        """True once the child has been given up (see :attr:`error`)."""
        return self._state == "failed"

    @property
    def error(self) -> SupervisedChildFailed | None:
        """Why the child was given up; None unless :attr:`failed`."""
        return self._error

    @property
    def next_restart(self) -> float | None:
        """When the next incarnation is due, on the supervisor's clock; None unless restarting."""
        return self._due if self._state == "restarting" else None

    def __repr__(self) -> str:
        return (
            f"<tether.Supervised {self.state} pid={self._tree.process.pid} "
            f"restarts={self._restarts} restart={self._policy.mode!r} args={list(self.args)!r}>"
        )

    # --- driven by the supervisor ---------------------------------------------------

    def _settled(self) -> bool:
        """Whether no restart will follow (for waiters); a plain child is polled."""
        if self._tracker is None:
            return self._tree.process.poll() is not None
        return self._state in ("exited", "failed")

    def _on_exit(
        self, status: Status | None, *, scope_open: bool, clock: Callable[[], float]
    ) -> Decision | None:
        """Apply the policy to the exit of the current incarnation (None: status unknown).

        Returns the decision, or None when there was nothing to decide.
        """
        tracker = self._tracker
        if tracker is None or self._state != "running":
            return None
        pid = self._tree.process.pid
        if status is None:
            self._fail(None, "its exit status was taken by another party")
            return None
        readiness = self._readiness()
        if readiness is not None and readiness.check():
            tracker.became_ready()
        if not scope_open:
            self._state = "exited"
            logger.info("%s (pid %d) %s while its scope ends", self._name(), pid, status)
            return None
        decision = tracker.exited(status)
        if decision.action == "restart":
            self._state = "restarting"
            self._due = clock() + decision.delay
            logger.info("%s (pid %d) %s", self._name(), pid, decision.reason)
        elif decision.action == "stop":
            self._state = "exited"
            logger.info("%s (pid %d) %s", self._name(), pid, decision.reason)
        else:
            self._fail(status, decision.reason)
        return decision

    def _restarted(self, handle: H, tree: ProcessTree) -> None:
        """Make *handle* (in *tree*) the current incarnation."""
        assert self._tracker is not None, "only a child with a policy is restarted"
        self._handle = handle
        self._tree = tree
        self._state = "running"
        self._due = None
        self._restarts += 1
        self._tracker.started(needs_ready=self._ready is not None)
        logger.info(
            "%s restarted as pid %d (restart %d)", self._name(), tree.process.pid, self._restarts
        )

    def _fail(self, status: Status | None, reason: str, cause: BaseException | None = None) -> None:
        """Give the child up, keeping the error for the waiters and the end of the scope."""
        process = self._tree.process
        error = SupervisedChildFailed(process.args, process.pid, status, self._restarts, reason)
        error.__cause__ = cause
        self._error = error
        self._state = "failed"
        self._due = None
        logger.error("%s (pid %d) given up: %s", self._name(), process.pid, reason)

    def _unkeep(self, why: str) -> None:
        """Nothing keeps the child alive any more: from now on it is a plain child."""
        if self._tracker is not None and self._state in ("running", "restarting"):
            self._tracker = None
            self._state = "running"
            self._due = None
            logger.warning("%s is no longer kept alive: %s", self._name(), why)

    def _scope_ended(self) -> None:
        """The scope is ending: a restart that was waiting for its delay will not happen."""
        if self._state == "restarting":
            self._state = "exited"
            self._due = None
            logger.info("%s not restarted: its scope is ending", self._name())

    def _unseen_failure(self) -> SupervisedChildFailed | None:
        """The failure if it has not been raised to the caller yet, marking it raised."""
        if self._error is None or self._failure_seen:
            return None
        self._failure_seen = True
        return self._error

    def _readiness(self) -> Readiness | None:
        readiness = self._tree.process._readiness
        return readiness if isinstance(readiness, Readiness) else None

    def _name(self) -> str:
        return f"supervised child {list(self._tree.process.args)!r}"
